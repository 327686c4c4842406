//! The `limits` section (SPEC §2.5): every number of the request pipeline, overridable.

use std::time::Duration;

use serde_json::Value;

use super::ConfigError;
use super::value::{Object, deny_unknown, index, join, object, positive_int};
use crate::auth::LockoutConfig;
use crate::body_limit::BodyLimitConfig;
use crate::client_ip::TrustedProxies;
use crate::in_flight::InFlightConfig;
use crate::limit::InvalidLimit;
use crate::rate_limit::RateLimitConfig;
use crate::taskflow::StoreConfig;

/// Every tunable number of the request pipeline, plus the trusted proxies.
///
/// `Default` gives the contract's numbers. Each section is the configuration type of its layer, so
/// the pipeline hands them over as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `limits.rateLimit`: the fixed-window rate limit (§2.3).
    pub rate_limit: RateLimitConfig,
    /// `limits.inFlight`: the in-flight limit (§2.4).
    pub in_flight: InFlightConfig,
    /// `limits.body`: the body size and time cap (§2 step 7).
    pub body: BodyLimitConfig,
    /// `limits.authFailures`: the brute-force guard (§2.2).
    pub auth_failures: LockoutConfig,
    /// `limits.trustedProxies`: proxies whose `X-Forwarded-For` is believed. Default: none.
    pub trusted_proxies: TrustedProxies,
    /// `limits.store`: caps and retention of the in-memory TaskFlow store that
    /// [`WebhookPipeline::in_memory`](crate::WebhookPipeline::in_memory) builds (§2.5):
    /// `maxFlowsPerOwner` (10,000), `maxTasksPerFlow` (1,000), `maxBytesPerOwner` (67,108,864, the
    /// JSON size of an owner's flows and tasks) and `retentionMs` (604,800,000, 7 days).
    pub store: StoreConfig,
}

// Counts and byte sizes become `usize`; capping them at `u32::MAX` keeps the check identical on
// 32- and 64-bit targets. Durations get the same cap (about 49 days): far beyond any sensible window,
// and small enough that no layer can overflow an `Instant` by adding one.
const MAX_COUNT: u64 = u32::MAX as u64;
const MAX_MS: u64 = u32::MAX as u64;
// Retention is added to epoch milliseconds with saturating arithmetic, never to an `Instant`, so it
// needs no such cap; weeks or months are sensible. 2^53 - 1 is the largest integer a JSON5 number
// holds exactly.
const MAX_RETENTION_MS: u64 = (1 << 53) - 1;

impl Limits {
    /// Reads a `limits` value; `path` is where it sits (for error messages).
    pub(crate) fn from_value(value: &Value, path: &str) -> Result<Self, ConfigError> {
        let map = object(value, path)?;
        deny_unknown(
            map,
            path,
            &[
                "rateLimit",
                "inFlight",
                "body",
                "authFailures",
                "trustedProxies",
                "store",
            ],
        )?;
        let mut limits = Limits::default();

        if let Some((m, p)) = section(map, "rateLimit", path)? {
            deny_unknown(m, &p, &["windowMs", "maxRequests", "maxTrackedKeys"])?;
            let mut r = limits.rate_limit;
            if let Some(ms) = int(m, "windowMs", &p, MAX_MS)? {
                r = r.window(Duration::from_millis(ms));
            }
            if let Some(n) = int(m, "maxRequests", &p, MAX_COUNT)? {
                // Bounded by MAX_COUNT, which is u32::MAX.
                r = r.max_requests(n as u32);
            }
            if let Some(n) = count(m, "maxTrackedKeys", &p)? {
                r = r.max_tracked_keys(n);
            }
            limits.rate_limit = r.validate().map_err(|e| invalid(&p, e))?;
        }
        if let Some((m, p)) = section(map, "inFlight", path)? {
            deny_unknown(m, &p, &["maxPerKey", "maxTrackedKeys"])?;
            let mut f = limits.in_flight;
            if let Some(n) = int(m, "maxPerKey", &p, MAX_COUNT)? {
                f = f.max_per_key(n as u32);
            }
            if let Some(n) = count(m, "maxTrackedKeys", &p)? {
                f = f.max_tracked_keys(n);
            }
            limits.in_flight = f.validate().map_err(|e| invalid(&p, e))?;
        }
        if let Some((m, p)) = section(map, "body", path)? {
            deny_unknown(m, &p, &["maxBytes", "timeoutMs"])?;
            let mut b = limits.body;
            if let Some(n) = count(m, "maxBytes", &p)? {
                b = b.max_bytes(n);
            }
            if let Some(ms) = int(m, "timeoutMs", &p, MAX_MS)? {
                b = b.timeout(Duration::from_millis(ms));
            }
            limits.body = b.validate().map_err(|e| invalid(&p, e))?;
        }
        if let Some((m, p)) = section(map, "authFailures", path)? {
            deny_unknown(m, &p, &["max", "windowMs", "lockoutMs"])?;
            let mut a = limits.auth_failures;
            if let Some(n) = int(m, "max", &p, MAX_COUNT)? {
                a = a.max_failures(n as u32);
            }
            if let Some(ms) = int(m, "windowMs", &p, MAX_MS)? {
                a = a.window(Duration::from_millis(ms));
            }
            if let Some(ms) = int(m, "lockoutMs", &p, MAX_MS)? {
                a = a.lockout(Duration::from_millis(ms));
            }
            limits.auth_failures = a.validate().map_err(|e| invalid(&p, e))?;
        }
        if let Some((m, p)) = section(map, "store", path)? {
            deny_unknown(
                m,
                &p,
                &[
                    "maxFlowsPerOwner",
                    "maxTasksPerFlow",
                    "maxBytesPerOwner",
                    "retentionMs",
                ],
            )?;
            let mut store = limits.store.clone();
            if let Some(cap) = count(m, "maxFlowsPerOwner", &p)? {
                store = store.max_flows_per_owner(Some(cap));
            }
            if let Some(cap) = count(m, "maxTasksPerFlow", &p)? {
                store = store.max_tasks_per_flow(Some(cap));
            }
            if let Some(cap) = count(m, "maxBytesPerOwner", &p)? {
                store = store.max_bytes_per_owner(Some(cap));
            }
            if let Some(v) = m.get("retentionMs") {
                let ms = positive_int(v, &join(&p, "retentionMs"), MAX_RETENTION_MS)?;
                store = store.retention(Some(Duration::from_millis(ms)));
            }
            limits.store = store;
        }
        if let Some(value) = map.get("trustedProxies") {
            let p = join(path, "trustedProxies");
            limits.trusted_proxies = trusted_proxies(value, &p)?;
        }
        Ok(limits)
    }
}

fn section<'a>(
    map: &'a Object,
    key: &str,
    path: &str,
) -> Result<Option<(&'a Object, String)>, ConfigError> {
    map.get(key)
        .map(|v| {
            let p = join(path, key);
            object(v, &p).map(|m| (m, p))
        })
        .transpose()
}

/// A positive integer up to `max`, if the key is there.
fn int(map: &Object, key: &str, path: &str, max: u64) -> Result<Option<u64>, ConfigError> {
    map.get(key)
        .map(|v| positive_int(v, &join(path, key), max))
        .transpose()
}

/// A layer's own refusal, at the path of the field it names.
fn invalid(section: &str, error: InvalidLimit) -> ConfigError {
    ConfigError::invalid(join(section, error.field()), error.message())
}

/// A count or byte size, if the key is there.
fn count(map: &Object, key: &str, path: &str) -> Result<Option<usize>, ConfigError> {
    map.get(key)
        .map(|v| {
            let n = positive_int(v, &join(path, key), MAX_COUNT)?;
            usize::try_from(n).map_err(|_| {
                ConfigError::invalid(join(path, key), format!("must be at most {}", usize::MAX))
            })
        })
        .transpose()
}

fn trusted_proxies(value: &Value, path: &str) -> Result<TrustedProxies, ConfigError> {
    let entries = value
        .as_array()
        .ok_or_else(|| ConfigError::invalid(path, "must be an array of CIDR blocks"))?;
    let mut cidrs = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let p = index(path, i);
        let s = entry
            .as_str()
            .ok_or_else(|| ConfigError::invalid(&p, "must be a string"))?;
        // Parsed one by one so the error names the offending index.
        TrustedProxies::parse([s]).map_err(|e| ConfigError::invalid(&p, e.to_string()))?;
        cidrs.push(s);
    }
    TrustedProxies::parse(cidrs).map_err(|e| ConfigError::invalid(path, e.to_string()))
}
