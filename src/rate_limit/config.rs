//! [`RateLimitConfig`]: the one configuration of the fixed-window rate limit.

use std::time::Duration;

#[cfg(feature = "serde")]
use serde::Deserialize;

use crate::limit::{InvalidLimit, at_least_a_millisecond, positive};
#[cfg(feature = "serde")]
use crate::limit::{deserialize_millis, deserialize_positive};

/// Window length, quota and tracked-key cap of a fixed-window rate limit (SPEC §2.3), `limits.rateLimit`
/// in the configuration file.
///
/// Plain data: read the fields, set them directly or with the setter of the same name. None may be
/// zero (nor the window under a millisecond, the unit windows are counted in):
/// [`validate`](Self::validate) says which field is wrong, and every constructor that takes the
/// configuration checks it. Deserialises from the camelCase keys of the file (`windowMs`,
/// `maxRequests`, `maxTrackedKeys`), missing keys keeping their defaults (feature `serde`).
///
/// ```
/// use std::time::Duration;
/// use tower_webhooks::rate_limit::RateLimitConfig;
///
/// let config = RateLimitConfig::new().window(Duration::from_secs(10)).max_requests(5);
/// assert_eq!((config.window, config.max_requests, config.max_tracked_keys), (Duration::from_secs(10), 5, 4_096));
/// assert_eq!(config.validate(), Ok(config));
///
/// # #[cfg(feature = "serde")] {
/// let config: RateLimitConfig = serde_json::from_str(r#"{"windowMs": 1000}"#).unwrap();
/// assert_eq!(config.window, Duration::from_secs(1));
/// assert!(serde_json::from_str::<RateLimitConfig>(r#"{"maxRequests": 0}"#).is_err());
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
pub struct RateLimitConfig {
    /// `windowMs`: how long a key's window lasts from its first request. Default 60 s.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "windowMs", deserialize_with = "deserialize_millis")
    )]
    pub window: Duration,
    /// `maxRequests`: requests a key may make per window; the next one is refused. Default 120.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "deserialize_positive"))]
    pub max_requests: u32,
    /// `maxTrackedKeys`: keys remembered at most; beyond it the least recently touched are
    /// forgotten. Default 4,096.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "deserialize_positive"))]
    pub max_tracked_keys: usize,
}

impl Default for RateLimitConfig {
    /// Window 60,000 ms, 120 requests per window, 4,096 tracked keys (SPEC §2.3).
    fn default() -> Self {
        Self {
            window: Duration::from_millis(60_000),
            max_requests: 120,
            max_tracked_keys: 4_096,
        }
    }
}

impl RateLimitConfig {
    /// The defaults of SPEC §2.3.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long a key's window lasts.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets how many requests a key may make per window; the next one is refused.
    pub fn max_requests(mut self, max_requests: u32) -> Self {
        self.max_requests = max_requests;
        self
    }

    /// Sets how many keys are tracked at most.
    pub fn max_tracked_keys(mut self, max_tracked_keys: usize) -> Self {
        self.max_tracked_keys = max_tracked_keys;
        self
    }

    /// The configuration if every field is usable, or the first that is not.
    pub fn validate(self) -> Result<Self, InvalidLimit> {
        at_least_a_millisecond("windowMs", self.window)?;
        positive("maxRequests", self.max_requests.into())?;
        positive("maxTrackedKeys", self.max_tracked_keys as u64)?;
        Ok(self)
    }
}
