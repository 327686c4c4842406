//! The `limits` section (SPEC §2.5): every number of the request pipeline, overridable.

use std::time::Duration;

use serde_json::Value;

use super::ConfigError;
use super::value::{Object, deny_unknown, index, join, object, positive_int};
use crate::client_ip::TrustedProxies;
use crate::taskflow::MemoryStoreConfig;

/// Every tunable number of the request pipeline, plus the trusted proxies.
///
/// `Default` gives the contract's numbers. This is plain data: each layer has its own configuration
/// type, and the pipeline builder maps from this one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `limits.rateLimit`: the fixed-window rate limit (§2.3).
    pub rate_limit: RateLimitSettings,
    /// `limits.inFlight`: the in-flight limit (§2.4).
    pub in_flight: InFlightSettings,
    /// `limits.body`: the body size and time cap (§2 step 7).
    pub body: BodySettings,
    /// `limits.authFailures`: the brute-force guard (§2.2).
    pub auth_failures: AuthFailureSettings,
    /// `limits.trustedProxies`: proxies whose `X-Forwarded-For` is believed. Default: none.
    pub trusted_proxies: TrustedProxies,
    /// `limits.store`: caps and retention of the in-memory TaskFlow store that
    /// [`WebhookPipeline::in_memory`](crate::WebhookPipeline::in_memory) builds (§2.5):
    /// `maxFlowsPerOwner` (10,000), `maxTasksPerFlow` (1,000), `maxBytesPerOwner` (67,108,864, the
    /// JSON size of an owner's flows and tasks) and `retentionMs` (604,800,000, 7 days).
    pub store: MemoryStoreConfig,
}

/// `limits.rateLimit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// `windowMs`: window length in milliseconds. Default 60,000.
    pub window_ms: u64,
    /// `maxRequests`: requests allowed per key and window. Default 120.
    pub max_requests: u64,
    /// `maxTrackedKeys`: keys remembered at most. Default 4,096.
    pub max_tracked_keys: usize,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            window_ms: 60_000,
            max_requests: 120,
            max_tracked_keys: 4_096,
        }
    }
}

/// `limits.inFlight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlightSettings {
    /// `maxPerKey`: concurrent requests per key. Default 8.
    pub max_per_key: usize,
    /// `maxTrackedKeys`: keys remembered at most. Default 4,096.
    pub max_tracked_keys: usize,
}

impl Default for InFlightSettings {
    fn default() -> Self {
        Self {
            max_per_key: 8,
            max_tracked_keys: 4_096,
        }
    }
}

/// `limits.body`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodySettings {
    /// `maxBytes`: largest accepted body. Default 262,144.
    pub max_bytes: usize,
    /// `timeoutMs`: time allowed to read the whole body. Default 15,000.
    pub timeout_ms: u64,
}

impl Default for BodySettings {
    fn default() -> Self {
        Self {
            max_bytes: 262_144,
            timeout_ms: 15_000,
        }
    }
}

/// `limits.authFailures`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthFailureSettings {
    /// `max`: failed authentications per client IP and window before lockout. Default 20.
    pub max: u32,
    /// `windowMs`: the counting window. Default 60,000.
    pub window_ms: u64,
    /// `lockoutMs`: how long a locked-out IP is refused. Default 60,000.
    pub lockout_ms: u64,
}

impl Default for AuthFailureSettings {
    fn default() -> Self {
        Self {
            max: 20,
            window_ms: 60_000,
            lockout_ms: 60_000,
        }
    }
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
            let r = &mut limits.rate_limit;
            set(m, "windowMs", &p, MAX_MS, &mut r.window_ms)?;
            set(m, "maxRequests", &p, MAX_COUNT, &mut r.max_requests)?;
            set_usize(m, "maxTrackedKeys", &p, &mut r.max_tracked_keys)?;
        }
        if let Some((m, p)) = section(map, "inFlight", path)? {
            deny_unknown(m, &p, &["maxPerKey", "maxTrackedKeys"])?;
            let f = &mut limits.in_flight;
            set_usize(m, "maxPerKey", &p, &mut f.max_per_key)?;
            set_usize(m, "maxTrackedKeys", &p, &mut f.max_tracked_keys)?;
        }
        if let Some((m, p)) = section(map, "body", path)? {
            deny_unknown(m, &p, &["maxBytes", "timeoutMs"])?;
            let b = &mut limits.body;
            set_usize(m, "maxBytes", &p, &mut b.max_bytes)?;
            set(m, "timeoutMs", &p, MAX_MS, &mut b.timeout_ms)?;
        }
        if let Some((m, p)) = section(map, "authFailures", path)? {
            deny_unknown(m, &p, &["max", "windowMs", "lockoutMs"])?;
            let a = &mut limits.auth_failures;
            if let Some(v) = m.get("max") {
                // Bounded by MAX_COUNT, which is u32::MAX.
                a.max = positive_int(v, &join(&p, "max"), MAX_COUNT)? as u32;
            }
            set(m, "windowMs", &p, MAX_MS, &mut a.window_ms)?;
            set(m, "lockoutMs", &p, MAX_MS, &mut a.lockout_ms)?;
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

fn set(map: &Object, key: &str, path: &str, max: u64, slot: &mut u64) -> Result<(), ConfigError> {
    if let Some(v) = map.get(key) {
        *slot = positive_int(v, &join(path, key), max)?;
    }
    Ok(())
}

fn set_usize(map: &Object, key: &str, path: &str, slot: &mut usize) -> Result<(), ConfigError> {
    if let Some(n) = count(map, key, path)? {
        *slot = n;
    }
    Ok(())
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
