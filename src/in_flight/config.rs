//! [`InFlightConfig`]: the one configuration of the in-flight limit.

#[cfg(feature = "serde")]
use serde::Deserialize;

#[cfg(feature = "serde")]
use crate::limit::deserialize_positive;
use crate::limit::{InvalidLimit, positive};

/// Slots per key and tracked-key cap of an in-flight limit (SPEC §2.4), `limits.inFlight` in the
/// configuration file.
///
/// Plain data like every layer's configuration: fields, setters of the same name, and
/// [`validate`](Self::validate), which refuses a zero naming the field. Deserialises from
/// `maxPerKey` and `maxTrackedKeys`.
///
/// ```
/// use tower_webhooks::in_flight::InFlightConfig;
/// let config = InFlightConfig::new().max_per_key(2);
/// assert_eq!((config.max_per_key, config.max_tracked_keys), (2, 4_096));
/// assert_eq!(InFlightConfig::new().max_tracked_keys(0).validate().unwrap_err().field(), "maxTrackedKeys");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
pub struct InFlightConfig {
    /// `maxPerKey`: requests of one key in flight at once. Default 8.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "deserialize_positive"))]
    pub max_per_key: u32,
    /// `maxTrackedKeys`: keys with requests in flight at once; a new key beyond it is refused.
    /// Default 4,096.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "deserialize_positive"))]
    pub max_tracked_keys: usize,
}

impl Default for InFlightConfig {
    /// 8 in flight per key, 4,096 tracked keys (SPEC §2.4).
    fn default() -> Self {
        Self {
            max_per_key: 8,
            max_tracked_keys: 4_096,
        }
    }
}

impl InFlightConfig {
    /// The defaults of SPEC §2.4.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how many requests of one key may be in flight at once.
    pub fn max_per_key(mut self, max_per_key: u32) -> Self {
        self.max_per_key = max_per_key;
        self
    }

    /// Sets how many keys may have requests in flight at once.
    pub fn max_tracked_keys(mut self, max_tracked_keys: usize) -> Self {
        self.max_tracked_keys = max_tracked_keys;
        self
    }

    /// The configuration if every field is usable, or the first that is not.
    pub fn validate(self) -> Result<Self, InvalidLimit> {
        positive("maxPerKey", self.max_per_key.into())?;
        positive("maxTrackedKeys", self.max_tracked_keys as u64)?;
        Ok(self)
    }
}
