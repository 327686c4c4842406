//! `sharedState` (SPEC §7): the Redis the replicas share their limiters through.
//!
//! ```json5
//! sharedState: "redis://127.0.0.1:6379",
//! sharedState: { source: "env", provider: "default", id: "WEBHOOKS_REDIS_URL" },
//! sharedState: { url: "redis://…", keyPrefix: "tower-webhooks:", onUnavailable: "local",
//!                timeoutMs: 50, leaseMs: 30000 },
//! ```
//!
//! The URL is held as a [`SecretInput`]: it may carry a password, so it never appears in an
//! error, a log or `--check-config`.

use std::time::Duration;

use serde_json::Value;

use super::error::ConfigError;
use super::secrets::SecretInput;
use super::value::{deny_unknown, join, positive_int, string};
use crate::redis::{OnUnavailable, SharedStateConfig};

/// A parsed `sharedState`: where Redis is (secret not yet resolved) and how to use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedStateSource {
    /// `url`: a `redis://` URL, written out or a SecretRef.
    pub url: SecretInput,
    /// Everything else: `keyPrefix`, `onUnavailable`, `timeoutMs`, `leaseMs`.
    pub config: SharedStateConfig,
}

impl SharedStateSource {
    pub(crate) fn from_value(value: &Value, path: &str) -> Result<Self, ConfigError> {
        let Value::Object(map) = value else {
            return Ok(Self {
                url: url(value, path)?,
                config: SharedStateConfig::new(),
            });
        };
        if !map.contains_key("url") && map.contains_key("source") {
            // A SecretRef naming the URL.
            return Ok(Self {
                url: url(value, path)?,
                config: SharedStateConfig::new(),
            });
        }
        deny_unknown(
            map,
            path,
            &["url", "keyPrefix", "onUnavailable", "timeoutMs", "leaseMs"],
        )?;
        let url = match map.get("url") {
            Some(value) => url(value, &join(path, "url"))?,
            None => return Err(ConfigError::invalid(join(path, "url"), "is required")),
        };
        let mut config = SharedStateConfig::new();
        if let Some(prefix) = map.get("keyPrefix") {
            config.key_prefix = string(prefix, &join(path, "keyPrefix"))?;
        }
        if let Some(word) = map.get("onUnavailable") {
            let at = join(path, "onUnavailable");
            config.on_unavailable = word
                .as_str()
                .and_then(OnUnavailable::from_word)
                .ok_or_else(|| ConfigError::invalid(&at, r#"must be "local" or "reject""#))?;
        }
        if let Some(ms) = map.get("timeoutMs") {
            config.timeout = millis_within(ms, &join(path, "timeoutMs"), 1, 10_000)?;
        }
        if let Some(ms) = map.get("leaseMs") {
            config.lease = millis_within(ms, &join(path, "leaseMs"), 100, 30_000)?;
        }
        Ok(Self { url, config })
    }
}

/// Whole milliseconds from `min` to `max`.
fn millis_within(value: &Value, path: &str, min: u64, max: u64) -> Result<Duration, ConfigError> {
    let range = || ConfigError::invalid(path, format!("must be an integer from {min} to {max}"));
    let ms = positive_int(value, path, u64::MAX).map_err(|_| range())?;
    if ms < min || ms > max {
        return Err(range());
    }
    Ok(Duration::from_millis(ms))
}

/// The URL: a plain string must be a `redis://` URL; a SecretRef is checked once resolved.
fn url(value: &Value, path: &str) -> Result<SecretInput, ConfigError> {
    let input = SecretInput::from_value(value, path)?;
    if let SecretInput::Plain(url) = &input {
        check_scheme(url.expose(), path)?;
    }
    Ok(input)
}

/// Refuses a URL that is not `redis://…`, without quoting it (it may carry a password).
pub(crate) fn check_scheme(url: &str, path: &str) -> Result<(), ConfigError> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme) if scheme.eq_ignore_ascii_case("redis") => Ok(()),
        _ => Err(ConfigError::invalid(
            path,
            "must be a redis:// URL (the only shared-state backend)",
        )),
    }
}
