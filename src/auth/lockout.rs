//! The brute-force guard: after too many failed authentications from one client IP, that IP is
//! refused for a while, whatever it presents.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;

use crate::clock::{SharedClock, SystemClock};
use crate::limit::{
    InvalidLimit, at_least_a_millisecond, deserialize_millis, deserialize_positive, millis, positive,
};

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
/// use tower_webhooks::LockoutConfig;
/// let config = LockoutConfig::new().max_failures(5).lockout(Duration::from_secs(300));
/// assert_eq!((config.max_failures, config.window), (5, Duration::from_secs(60)));
/// assert_eq!(LockoutConfig::new().max_failures(0).validate().unwrap_err().field(), "max");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct LockoutConfig {
    /// `max`: failures within `window` that lock the IP out. Default 20.
    #[serde(rename = "max", deserialize_with = "deserialize_positive")]
    pub max_failures: u32,
    /// `windowMs`: the window failures are counted in, anchored at an IP's first failure. Default
    /// 60 s.
    #[serde(rename = "windowMs", deserialize_with = "deserialize_millis")]
    pub window: Duration,
    /// `lockoutMs`: how long a locked-out IP is refused. Default 60 s.
    #[serde(rename = "lockoutMs", deserialize_with = "deserialize_millis")]
    pub lockout: Duration,
    /// `maxTrackedIps`: IPs remembered at most; beyond it the least recently touched that is not
    /// locked out is forgotten. Default 4,096.
    #[serde(deserialize_with = "deserialize_positive")]
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

/// What [`AuthLockout::check`] found about an IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockState {
    /// No failures on record.
    Clean,
    /// Failures on record, not (yet) locked: a success must reset them.
    Tracked,
    /// Locked out for this many more seconds (at least 1).
    Locked { retry_after_secs: u64 },
}

/// Failed-authentication counts per client IP, shared by every route that holds a clone.
///
/// The contract locks an IP out "on every route", so the pipeline hands one `AuthLockout` to every
/// route's [`SharedSecretAuth`](crate::SharedSecretAuth). Memory is bounded: at most
/// `max_tracked_ips` entries, split over shards; when a shard is full the least recently touched
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
    hasher: RandomState,
    shard_capacity: usize,
    shards: Box<[Mutex<HashMap<IpAddr, Entry>>]>,
    /// Entries across all shards. While it is zero (nobody has failed lately, the usual case) a
    /// check is one atomic load: no clock read, no hashing, no lock on the accept path.
    tracked: AtomicUsize,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    window_start: u64,
    failures: u32,
    locked_until: Option<u64>,
    last_touched: u64,
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

    /// A lockout with `config` reading `clock` (a [`ManualClock`](crate::ManualClock) in tests).
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](LockoutConfig::validate); the message names the field.
    pub fn with_clock(config: LockoutConfig, clock: SharedClock) -> Self {
        let config = config
            .validate()
            .unwrap_or_else(|invalid| panic!("invalid LockoutConfig: {invalid}"));
        let max = config.max_tracked_ips;
        // Shards keep unrelated IPs off one lock; their capacities add up to at most `max`.
        let shard_count = if max >= 64 { 16 } else { 1 };
        let shard_capacity = max / shard_count;
        let shards = (0..shard_count)
            .map(|_| Mutex::new(HashMap::new()))
            .collect();
        Self {
            inner: Arc::new(Inner {
                window_ms: millis(config.window),
                lockout_ms: millis(config.lockout),
                config,
                clock,
                hasher: RandomState::new(),
                shard_capacity,
                shards,
                tracked: AtomicUsize::new(0),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LockoutConfig {
        &self.inner.config
    }

    /// How many IPs are tracked now.
    pub fn tracked_ips(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.lock().len())
            .sum()
    }

    /// Whether `ip` is locked out now.
    pub fn is_locked(&self, ip: IpAddr) -> bool {
        matches!(self.check(ip), LockState::Locked { .. })
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, Entry>> {
        let index = self.inner.hasher.hash_one(ip) as usize % self.inner.shards.len();
        &self.inner.shards[index]
    }

    pub(crate) fn check(&self, ip: IpAddr) -> LockState {
        if self.inner.tracked.load(Ordering::Relaxed) == 0 {
            return LockState::Clean;
        }
        let mut shard = self.shard(&ip).lock();
        let Some(entry) = shard.get(&ip) else {
            return LockState::Clean;
        };
        let now = self.inner.clock.monotonic_millis();
        match entry.locked_until {
            Some(until) if now < until => LockState::Locked {
                retry_after_secs: (until - now).div_ceil(1000).max(1),
            },
            Some(_) => {
                self.forget(&mut shard, &ip);
                LockState::Clean
            }
            None if now.saturating_sub(entry.window_start) >= self.inner.window_ms => {
                self.forget(&mut shard, &ip);
                LockState::Clean
            }
            None => LockState::Tracked,
        }
    }

    pub(crate) fn record_success(&self, ip: IpAddr) {
        let mut shard = self.shard(&ip).lock();
        if shard
            .get(&ip)
            .is_some_and(|entry| entry.locked_until.is_none())
        {
            self.forget(&mut shard, &ip);
        }
    }

    fn forget(&self, shard: &mut HashMap<IpAddr, Entry>, ip: &IpAddr) {
        if shard.remove(ip).is_some() {
            self.inner.tracked.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_failure(&self, ip: IpAddr) {
        let inner = &*self.inner;
        let now = inner.clock.monotonic_millis();
        let mut shard = self.shard(&ip).lock();
        if !shard.contains_key(&ip) {
            if shard.len() >= inner.shard_capacity && evict_one(&mut shard, now) {
                inner.tracked.fetch_sub(1, Ordering::Relaxed);
            }
            inner.tracked.fetch_add(1, Ordering::Relaxed);
        }
        let entry = shard.entry(ip).or_insert(Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
            last_touched: now,
        });
        if entry.locked_until.is_some() {
            return;
        }
        if now.saturating_sub(entry.window_start) >= inner.window_ms {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_touched = now;
        if entry.failures >= inner.config.max_failures {
            entry.locked_until = Some(now.saturating_add(inner.lockout_ms));
        }
    }
}

/// Forgets the least recently touched entry that is not locked out (or, when all are, the least
/// recently touched one). Whether one was forgotten.
fn evict_one(shard: &mut HashMap<IpAddr, Entry>, now: u64) -> bool {
    let is_locked = |entry: &Entry| entry.locked_until.is_some_and(|until| now < until);
    let victim = shard
        .iter()
        .filter(|(_, entry)| !is_locked(entry))
        .min_by_key(|(_, entry)| entry.last_touched)
        .or_else(|| shard.iter().min_by_key(|(_, entry)| entry.last_touched))
        .map(|(ip, _)| *ip);
    victim.is_some_and(|ip| shard.remove(&ip).is_some())
}

impl fmt::Debug for AuthLockout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLockout")
            .field("config", &self.inner.config)
            .field("tracked_ips", &self.tracked_ips())
            .finish()
    }
}
