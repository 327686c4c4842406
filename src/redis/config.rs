//! [`SharedStateConfig`]: the key prefix, what to do when Redis cannot answer, and how long to wait.

use std::fmt;
use std::time::Duration;

use crate::limit::InvalidLimit;

/// What a decision does when Redis cannot answer within [`SharedStateConfig::timeout`]
/// (`onUnavailable`, SPEC §7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnUnavailable {
    /// `"local"` (default): the in-process limiter decides, so each replica enforces its own
    /// budgets until Redis is back; logged at most once a minute and counted.
    #[default]
    Local,
    /// `"reject"`: the request is answered `503 Service Unavailable` (plain text).
    Reject,
}

impl OnUnavailable {
    /// The configuration word: `local` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Reject => "reject",
        }
    }

    /// The mode named `word`, if any.
    pub fn from_word(word: &str) -> Option<Self> {
        match word {
            "local" => Some(Self::Local),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }
}

impl fmt::Display for OnUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the stores use Redis: everything of the `sharedState` object but its URL.
///
/// ```
/// use std::time::Duration;
/// use tower_webhooks::redis::{OnUnavailable, SharedStateConfig};
/// let config = SharedStateConfig::new()
///     .key_prefix("billing-webhooks:")
///     .on_unavailable(OnUnavailable::Reject)
///     .timeout(Duration::from_millis(20));
/// assert!(config.validate().is_ok());
/// assert_eq!(SharedStateConfig::new().timeout(Duration::ZERO).validate().unwrap_err().field(), "timeoutMs");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SharedStateConfig {
    /// `keyPrefix`: put before every key; replicas with the same prefix share state. Default
    /// `tower-webhooks:`.
    pub key_prefix: String,
    /// `onUnavailable`. Default [`OnUnavailable::Local`].
    pub on_unavailable: OnUnavailable,
    /// `timeoutMs`: the longest a decision waits for Redis before it falls back. Default 50 ms.
    pub timeout: Duration,
    /// `leaseMs`: how long an in-flight slot outlives its replica; renewed at half of it while
    /// the response streams. Default 30 s, the most SPEC §7 allows.
    pub lease: Duration,
}

/// The longest an in-flight lease may last: SPEC §7 frees a crashed replica's slots within 30 s.
pub const MAX_LEASE: Duration = Duration::from_secs(30);

impl Default for SharedStateConfig {
    fn default() -> Self {
        Self {
            key_prefix: "tower-webhooks:".into(),
            on_unavailable: OnUnavailable::Local,
            timeout: Duration::from_millis(50),
            lease: MAX_LEASE,
        }
    }
}

impl SharedStateConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key prefix.
    pub fn key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// Sets what happens when Redis cannot answer.
    pub fn on_unavailable(mut self, on_unavailable: OnUnavailable) -> Self {
        self.on_unavailable = on_unavailable;
        self
    }

    /// Sets the longest a decision waits for Redis.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long an in-flight lease lasts unless renewed.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The configuration if every field is usable, or the first that is not: a timeout of at
    /// least 1 ms and at most 10 s, a lease of at least 100 ms and at most 30 s.
    pub fn validate(self) -> Result<Self, InvalidLimit> {
        if self.timeout < Duration::from_millis(1) || self.timeout > Duration::from_secs(10) {
            return Err(InvalidLimit::new(
                "timeoutMs",
                "must be at least 1 and at most 10000",
            ));
        }
        if self.lease < Duration::from_millis(100) || self.lease > MAX_LEASE {
            return Err(InvalidLimit::new(
                "leaseMs",
                "must be at least 100 and at most 30000",
            ));
        }
        Ok(self)
    }
}
