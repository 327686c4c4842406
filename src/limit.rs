//! [`InvalidLimit`], the error of every layer's configuration, and the serde readers the
//! configuration types share.
//!
//! Each layer has one configuration type with plain integers and [`Duration`]s; a value the layer
//! cannot work with (a zero quota, a zero window, a cap of no keys) is refused by that type's
//! `validate`, naming the field, rather than quietly turned into something else.

use std::fmt;
use std::time::Duration;

#[cfg(feature = "serde")]
use serde::{Deserialize, Deserializer};

/// A configuration value a layer cannot work with, naming the field as the JSON5 `limits` spell it
/// (`maxRequests`, `windowMs`, …).
///
/// ```
/// # #[cfg(feature = "rate-limit")] {
/// use tower_webhooks::rate_limit::RateLimitConfig;
/// let error = RateLimitConfig::new().max_requests(0).validate().unwrap_err();
/// assert_eq!(error.field(), "maxRequests");
/// assert_eq!(error.to_string(), "maxRequests: must be an integer >= 1");
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidLimit {
    field: &'static str,
    message: &'static str,
}

impl InvalidLimit {
    pub(crate) const fn new(field: &'static str, message: &'static str) -> Self {
        Self { field, message }
    }

    /// The field, spelled as in the JSON5 `limits` (`windowMs`, `maxTrackedKeys`, …).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    pub fn message(&self) -> &'static str {
        self.message
    }
}

impl fmt::Display for InvalidLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidLimit {}

/// The message of a zero count: the same words the configuration loader uses.
pub(crate) const NOT_POSITIVE: &str = "must be an integer >= 1";
/// The message of a duration under one millisecond, the unit every limit counts time in.
pub(crate) const UNDER_A_MILLISECOND: &str = "must be at least 1 ms";

/// `Err` naming `field` when `value` is zero.
pub(crate) fn positive(field: &'static str, value: u64) -> Result<(), InvalidLimit> {
    if value == 0 {
        Err(InvalidLimit::new(field, NOT_POSITIVE))
    } else {
        Ok(())
    }
}

/// `Err` naming `field` when `value` is under one millisecond.
pub(crate) fn at_least_a_millisecond(
    field: &'static str,
    value: Duration,
) -> Result<(), InvalidLimit> {
    if value < Duration::from_millis(1) {
        Err(InvalidLimit::new(field, UNDER_A_MILLISECOND))
    } else {
        Ok(())
    }
}

/// Whole milliseconds, saturating: every limiter counts time in milliseconds.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(feature = "serde")]
/// Reads a count that must not be zero, so a deserialised configuration is as valid as a
/// validated one.
pub(crate) fn deserialize_positive<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Copy + TryInto<u64>,
{
    let value = T::deserialize(deserializer)?;
    match value.try_into() {
        Ok(0) => Err(serde::de::Error::custom(NOT_POSITIVE)),
        _ => Ok(value),
    }
}

#[cfg(feature = "serde")]
/// Reads a `…Ms` field: whole milliseconds, at least one.
pub(crate) fn deserialize_millis<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    deserialize_positive::<D, u64>(deserializer).map(Duration::from_millis)
}
