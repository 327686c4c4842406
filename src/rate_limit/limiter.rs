//! The fixed-window counters, in a [`ShardedLru`] that evicts the least recently touched key.

use std::fmt;
use std::future::{Ready, ready};
use std::hash::Hash;
use std::sync::Arc;

use http::Request;

use super::config::RateLimitConfig;
use crate::clock::{SharedClock, SystemClock};
use crate::keyed::{
    KeyExtractor, KeyHasher, ShardedLru, Unavailable, WhenFull, WindowHit, WindowStore,
};

/// A request over its key's quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    /// Milliseconds until the key's window ends.
    pub retry_after_ms: u64,
}

impl Limited {
    /// Seconds until the window ends, rounded up, at least 1: the `Retry-After` value.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ms.div_ceil(1_000).max(1)
    }
}

/// The counters of a fixed-window rate limit, shareable between layers: the in-memory
/// [`WindowStore`].
///
/// Cloning shares the counters: every clone, and every layer and service built from one, counts
/// into the same state. The keys are `u64`s from the stable [`KeyHasher`]
/// ([`hash_request`](Self::hash_request), [`hash`](Self::hash)); two distinct keys share a counter
/// only if their 64-bit hashes collide.
///
/// # Counting
///
/// A key's window starts at its first request (or its first request after the previous window
/// ended) and lasts `window`; a request at exactly `start + window` opens a new window. Every
/// request counts, rejected ones too, so a client that keeps hammering stays limited until the
/// window ends; with quota `n` the `n + 1`-th request of a window is the first rejected.
///
/// # Memory
///
/// The windows live in a [`ShardedLru`] of `max_tracked_keys` entries. What is guaranteed:
///
/// - the number of tracked keys never exceeds `max_tracked_keys`, whatever the number of distinct
///   keys;
/// - when a new key arrives in a full shard, the least recently touched key **of that shard** is
///   evicted (exact LRU within the shard). It is therefore *approximately* the globally least
///   recently touched key: another shard may hold an older one. With one shard (caps below 128) it
///   is exact.
///
/// An evicted key loses its count and starts a fresh window at its next request. That is the price
/// of bounded memory: a flood of distinct keys can push out the counters of quiet keys.
#[derive(Clone)]
pub struct FixedWindowLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    window_ms: u64,
    max_requests: u32,
    config: RateLimitConfig,
    hasher: KeyHasher,
    clock: SharedClock,
    windows: ShardedLru<Window>,
}

/// One key's window.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: u64,
    count: u32,
}

impl fmt::Debug for FixedWindowLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedWindowLimiter")
            .field("config", &self.inner.config)
            .field("windows", &self.inner.windows)
            .finish()
    }
}

impl FixedWindowLimiter {
    /// A limiter reading the system clock.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](RateLimitConfig::validate); the message names the field.
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_clock(config, SystemClock::shared())
    }

    /// A limiter reading `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests).
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](RateLimitConfig::validate); the message names the field.
    pub fn with_clock(config: RateLimitConfig, clock: SharedClock) -> Self {
        Self::with_hasher(config, clock, KeyHasher::default())
    }

    /// A new limiter reading `clock`, whose keys come from `hasher`: replicas that share the
    /// hasher's secret derive the same keys.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](RateLimitConfig::validate); the message names the field.
    pub fn with_hasher(config: RateLimitConfig, clock: SharedClock, hasher: KeyHasher) -> Self {
        let config = config
            .validate()
            .unwrap_or_else(|invalid| panic!("invalid RateLimitConfig: {invalid}"));
        Self {
            inner: Arc::new(Inner {
                window_ms: crate::limit::millis(config.window),
                max_requests: config.max_requests,
                config,
                hasher,
                clock,
                windows: ShardedLru::preallocated(
                    config.max_tracked_keys,
                    WhenFull::EvictLeastRecent,
                ),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> RateLimitConfig {
        self.inner.config
    }

    /// The key of `request` under `extractor`.
    #[inline]
    pub fn hash_request<K: KeyExtractor, B>(&self, extractor: &K, request: &Request<B>) -> u64 {
        let mut material = self.inner.hasher.material();
        extractor.key_material(request, &mut material);
        material.finish()
    }

    /// Any `Hash` value as a key, for keys that do not come from a request. `Hash` encodings are
    /// `std`'s, stable within one build; see [`KeyMaterial`](crate::keyed::KeyMaterial).
    pub fn hash<T: Hash + ?Sized>(&self, value: &T) -> u64 {
        let mut material = self.inner.hasher.material();
        value.hash(&mut material);
        material.finish()
    }

    /// Counts a request for `key` now (one clock read).
    #[inline]
    pub fn hit(&self, key: u64) -> Result<(), Limited> {
        self.count(key).limited().map_or(Ok(()), Err)
    }

    /// Counts a request for `key` at `now_ms` on the limiter's monotonic scale.
    pub fn hit_at(&self, key: u64, now_ms: u64) -> Result<(), Limited> {
        self.count_at(key, now_ms).limited().map_or(Ok(()), Err)
    }

    #[inline]
    fn count(&self, key: u64) -> WindowHit {
        self.count_at(key, self.inner.clock.monotonic_millis())
    }

    fn count_at(&self, key: u64, now: u64) -> WindowHit {
        let inner = &*self.inner;
        let mut shard = inner.windows.shard(key);
        let fresh = || Window {
            start: now,
            count: 0,
        };
        let window = match shard.insert_with(key, fresh, |_| true) {
            Ok(window) => window,
            // Only a `Refuse` map refuses; this one evicts.
            Err(_) => unreachable!("an evicting map has room for every key"),
        };
        count_in(window, now, inner.window_ms, inner.max_requests)
    }

    /// Requests counted for `key` in its current window, rejected ones included; `0` if the key is
    /// not tracked or its window has ended. Does not count as a touch.
    pub fn window_count(&self, key: u64) -> u32 {
        let inner = &*self.inner;
        let now = inner.clock.monotonic_millis();
        match inner.windows.shard(key).peek(key) {
            Some(window) if now.saturating_sub(window.start) < inner.window_ms => window.count,
            _ => 0,
        }
    }

    /// How many keys are tracked now (never above the cap).
    pub fn tracked_keys(&self) -> usize {
        self.inner.windows.len()
    }

    /// Forgets every key.
    pub fn clear(&self) {
        self.inner.windows.clear();
    }

    /// Whether both handles share one set of counters.
    pub fn same_limiter(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Counts one request in `window` at `now`, opening a new window if the old one has ended.
fn count_in(window: &mut Window, now: u64, window_ms: u64, max_requests: u32) -> WindowHit {
    // `saturating_sub`: a limiter shared by layers on different clocks may see time go back;
    // that keeps the current window rather than underflowing into a new one.
    if now.saturating_sub(window.start) >= window_ms {
        window.start = now;
        window.count = 0;
    }
    window.count = window.count.saturating_add(1);
    WindowHit {
        count: window.count,
        max_requests,
        resets_in_ms: window.start.saturating_add(window_ms).saturating_sub(now),
    }
}

impl WindowStore for FixedWindowLimiter {
    type HitFuture = Ready<Result<WindowHit, Unavailable>>;

    fn key_hasher(&self) -> KeyHasher {
        self.inner.hasher
    }

    #[inline]
    fn hit(&self, key: u64) -> Self::HitFuture {
        ready(Ok(self.count(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(window: &mut Window, now: u64, window_ms: u64, max: u32) -> Result<(), Limited> {
        count_in(window, now, window_ms, max)
            .limited()
            .map_or(Ok(()), Err)
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_at_least_one() {
        let secs = |ms| Limited { retry_after_ms: ms }.retry_after_secs();
        assert_eq!(secs(0), 1);
        assert_eq!(secs(1), 1);
        assert_eq!(secs(1_000), 1);
        assert_eq!(secs(1_001), 2);
        assert_eq!(secs(59_999), 60);
        assert_eq!(secs(u64::MAX), u64::MAX.div_ceil(1_000));
    }

    #[test]
    fn huge_window_does_not_overflow() {
        let mut window = Window {
            start: u64::MAX - 1,
            count: 0,
        };
        hit(&mut window, u64::MAX - 1, u64::MAX, 1).unwrap();
        let limited = hit(&mut window, u64::MAX, u64::MAX, 1).unwrap_err();
        assert_eq!(limited.retry_after_ms, 0);
    }

    #[test]
    fn cap_of_one_keeps_only_the_latest_key() {
        let limiter = FixedWindowLimiter::with_clock(
            RateLimitConfig::new().max_requests(1).max_tracked_keys(1),
            crate::clock::ManualClock::new(0),
        );
        limiter.hit_at(1, 0).unwrap();
        assert!(limiter.hit_at(1, 1).is_err());
        limiter.hit_at(2, 2).unwrap();
        // 1 was evicted, so it starts afresh.
        limiter.hit_at(1, 3).unwrap();
        assert_eq!(limiter.tracked_keys(), 1);
    }
}
