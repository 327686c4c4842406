//! The brute-force guard: after too many failed authentications from one client IP, that IP is
//! refused for a while, whatever it presents.

use std::fmt;
use std::future::{Ready, ready};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "serde")]
use serde::Deserialize;

use crate::clock::{SharedClock, SystemClock};
use crate::keyed::{KeyHasher, LockState, LockoutStore, ShardedLru, Unavailable, WhenFull};
use crate::limit::{InvalidLimit, at_least_a_millisecond, millis, positive};
#[cfg(feature = "serde")]
use crate::limit::{deserialize_millis, deserialize_positive};

/// Failure count, window, lockout length and tracked-IP cap of the brute-force guard (SPEC §2.2),
/// `limits.authFailures` in the configuration file.
///
/// Defaults are the contract's: 20 failures within 60 s lock an IP out for 60 s; at most 4,096 IPs
/// are tracked. Plain data like every layer's configuration: fields, setters of the same name, and
/// [`validate`](Self::validate), which refuses a zero naming the field. Deserialises from `max`,
/// `windowMs`, `lockoutMs` and `maxTrackedIps`.
///
/// ```
/// use std::time::Duration;
/// use tower_webhooks::auth::LockoutConfig;
/// let config = LockoutConfig::new().max_failures(5).lockout(Duration::from_secs(300));
/// assert_eq!((config.max_failures, config.window), (5, Duration::from_secs(60)));
/// assert_eq!(LockoutConfig::new().max_failures(0).validate().unwrap_err().field(), "max");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
pub struct LockoutConfig {
    /// `max`: failures within `window` that lock the IP out. Default 20.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "max", deserialize_with = "deserialize_positive")
    )]
    pub max_failures: u32,
    /// `windowMs`: the window failures are counted in, anchored at an IP's first failure. Default
    /// 60 s.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "windowMs", deserialize_with = "deserialize_millis")
    )]
    pub window: Duration,
    /// `lockoutMs`: how long a locked-out IP is refused. Default 60 s.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "lockoutMs", deserialize_with = "deserialize_millis")
    )]
    pub lockout: Duration,
    /// `maxTrackedIps`: IPs remembered at most; beyond it the least recently touched that is not
    /// locked out is forgotten. Default 4,096.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "deserialize_positive"))]
    pub max_tracked_ips: usize,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            max_failures: 20,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
            max_tracked_ips: 4096,
        }
    }
}

impl LockoutConfig {
    /// The defaults of SPEC §2.2.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how many failures within the window lock an IP out.
    pub fn max_failures(mut self, max_failures: u32) -> Self {
        self.max_failures = max_failures;
        self
    }

    /// Sets the window failures are counted in.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets how long a locked-out IP is refused.
    pub fn lockout(mut self, lockout: Duration) -> Self {
        self.lockout = lockout;
        self
    }

    /// Sets how many IPs are tracked at most.
    pub fn max_tracked_ips(mut self, max_tracked_ips: usize) -> Self {
        self.max_tracked_ips = max_tracked_ips;
        self
    }

    /// The configuration if every field is usable, or the first that is not.
    pub fn validate(self) -> Result<Self, InvalidLimit> {
        positive("max", self.max_failures.into())?;
        at_least_a_millisecond("windowMs", self.window)?;
        at_least_a_millisecond("lockoutMs", self.lockout)?;
        positive("maxTrackedIps", self.max_tracked_ips as u64)?;
        Ok(self)
    }
}

/// Failed-authentication counts per client IP, shared by every route that holds a clone: the
/// in-memory [`LockoutStore`].
///
/// The contract locks an IP out "on every route", so the pipeline hands one `AuthLockout` to every
/// route's [`SharedSecretAuth`](crate::SharedSecretAuth). Memory is bounded: at most
/// `max_tracked_ips` entries in a [`ShardedLru`]; when a shard is full the least recently touched
/// entry that is not locked out is forgotten (a locked one only if all are locked), so a flood of
/// new addresses cannot lift an existing lockout while anything else can make room.
#[derive(Clone)]
pub struct AuthLockout {
    inner: Arc<Inner>,
}

struct Inner {
    config: LockoutConfig,
    window_ms: u64,
    lockout_ms: u64,
    clock: SharedClock,
    hasher: KeyHasher,
    entries: ShardedLru<Entry>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    window_start: u64,
    failures: u32,
    locked_until: Option<u64>,
}

impl Entry {
    fn is_locked(&self, now: u64) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }
}

impl AuthLockout {
    /// A lockout with `config`, on the system clock.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](LockoutConfig::validate); the message names the field.
    pub fn new(config: LockoutConfig) -> Self {
        Self::with_clock(config, SystemClock::shared())
    }

    /// A lockout with `config` reading `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests).
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](LockoutConfig::validate); the message names the field.
    pub fn with_clock(config: LockoutConfig, clock: SharedClock) -> Self {
        Self::with_hasher(config, clock, KeyHasher::default())
    }

    /// A lockout with `config` reading `clock`, whose keys come from `hasher`: replicas that share
    /// the hasher's secret derive the same keys.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](LockoutConfig::validate); the message names the field.
    pub fn with_hasher(config: LockoutConfig, clock: SharedClock, hasher: KeyHasher) -> Self {
        let config = config
            .validate()
            .unwrap_or_else(|invalid| panic!("invalid LockoutConfig: {invalid}"));
        Self {
            inner: Arc::new(Inner {
                window_ms: millis(config.window),
                lockout_ms: millis(config.lockout),
                config,
                clock,
                hasher,
                entries: ShardedLru::new(config.max_tracked_ips, WhenFull::EvictLeastRecent),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LockoutConfig {
        &self.inner.config
    }

    /// How many IPs are tracked now.
    pub fn tracked_ips(&self) -> usize {
        self.inner.entries.len()
    }

    /// The key of `ip` in this lockout's store.
    #[inline]
    pub fn key_of(&self, ip: IpAddr) -> u64 {
        let mut material = self.inner.hasher.material();
        material.ip(ip);
        material.finish()
    }

    /// Whether `ip` is locked out now.
    pub fn is_locked(&self, ip: IpAddr) -> bool {
        matches!(self.check_ip(ip), LockState::Locked { .. })
    }

    /// Whether `ip` is locked out, tracked or clean now.
    #[inline]
    pub(crate) fn check_ip(&self, ip: IpAddr) -> LockState {
        // Nobody has failed lately (the usual case): one atomic load, no hashing, no clock read,
        // no lock.
        if self.inner.entries.is_empty() {
            return LockState::Clean;
        }
        self.state(self.key_of(ip))
    }

    /// Whether `key` is locked out, tracked or clean now.
    #[inline]
    pub(crate) fn state(&self, key: u64) -> LockState {
        let inner = &*self.inner;
        if inner.entries.is_empty() {
            return LockState::Clean;
        }
        let mut shard = inner.entries.shard(key);
        let Some(entry) = shard.peek(key).copied() else {
            return LockState::Clean;
        };
        let now = inner.clock.monotonic_millis();
        match entry.locked_until {
            Some(until) if now < until => LockState::Locked {
                retry_after_secs: (until - now).div_ceil(1000).max(1),
            },
            Some(_) => {
                shard.remove(key);
                LockState::Clean
            }
            None if now.saturating_sub(entry.window_start) >= inner.window_ms => {
                shard.remove(key);
                LockState::Clean
            }
            None => LockState::Tracked,
        }
    }

    pub(crate) fn succeeded(&self, key: u64) {
        let mut shard = self.inner.entries.shard(key);
        if shard
            .peek(key)
            .is_some_and(|entry| entry.locked_until.is_none())
        {
            shard.remove(key);
        }
    }

    pub(crate) fn failed(&self, key: u64) {
        let inner = &*self.inner;
        let now = inner.clock.monotonic_millis();
        let mut shard = inner.entries.shard(key);
        let fresh = || Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
        };
        // A flood of new addresses must not lift a lockout: evict unlocked entries first.
        let Ok(entry) = shard.insert_with(key, fresh, |entry| !entry.is_locked(now)) else {
            return;
        };
        if entry.locked_until.is_some() {
            return;
        }
        if now.saturating_sub(entry.window_start) >= inner.window_ms {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= inner.config.max_failures {
            entry.locked_until = Some(now.saturating_add(inner.lockout_ms));
        }
    }
}

impl LockoutStore for AuthLockout {
    type CheckFuture = Ready<Result<LockState, Unavailable>>;
    type RecordFuture = Ready<Result<(), Unavailable>>;

    fn key_hasher(&self) -> KeyHasher {
        self.inner.hasher
    }

    #[inline]
    fn check(&self, key: u64) -> Self::CheckFuture {
        ready(Ok(self.state(key)))
    }

    #[inline]
    fn nobody_failing(&self) -> bool {
        self.inner.entries.is_empty()
    }

    fn record_failure(&self, key: u64) -> Self::RecordFuture {
        self.failed(key);
        ready(Ok(()))
    }

    fn record_success(&self, key: u64) -> Self::RecordFuture {
        self.succeeded(key);
        ready(Ok(()))
    }
}

impl fmt::Debug for AuthLockout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLockout")
            .field("config", &self.inner.config)
            .field("tracked_ips", &self.tracked_ips())
            .finish()
    }
}
