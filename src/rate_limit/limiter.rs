//! The fixed-window counters: sharded, bounded, least-recently-touched eviction per shard.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;

use http::Request;
use parking_lot::Mutex;

use super::config::RateLimitConfig;
use super::key::KeyExtractor;
use crate::clock::{SharedClock, SystemClock};

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

/// The counters of a fixed-window rate limit, shareable between layers.
///
/// Cloning shares the counters: every clone, and every layer and service built from one, counts
/// into the same state. The keys are `u64` hashes made with a hasher seeded at random per limiter
/// ([`hash_request`](Self::hash_request), [`hash`](Self::hash)); two distinct keys share a counter
/// only if their hashes collide, which a client cannot arrange without knowing the seed.
///
/// # Counting
///
/// A key's window starts at its first request (or its first request after the previous window
/// ended) and lasts `window_ms`; a request at exactly `start + window_ms` opens a new window. Every
/// request counts, rejected ones too, so a client that keeps hammering stays limited until the
/// window ends; with quota `n` the `n + 1`-th request of a window is the first rejected.
///
/// # Memory
///
/// The keys are spread over up to 16 shards by hash, and the tracked-key cap is split between them
/// (the shard caps add up to exactly the cap; every shard has room for at least 64 keys, so a cap
/// below 128 is one shard). What is guaranteed:
///
/// - the number of tracked keys never exceeds `max_tracked_keys`, whatever the number of distinct
///   keys;
/// - when a new key arrives in a full shard, the least recently touched key **of that shard** is
///   evicted (exact LRU within the shard). It is therefore *approximately* the globally least
///   recently touched key: another shard may hold an older one. With one shard it is exact.
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
    hasher: RandomState,
    clock: SharedClock,
    shards: Box<[Mutex<Shard>]>,
}

impl fmt::Debug for FixedWindowLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedWindowLimiter")
            .field("config", &self.inner.config)
            .field("shards", &self.inner.shards.len())
            .field("tracked_keys", &self.tracked_keys())
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

    /// A limiter reading `clock` (a [`ManualClock`](crate::ManualClock) in tests).
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](RateLimitConfig::validate); the message names the field.
    pub fn with_clock(config: RateLimitConfig, clock: SharedClock) -> Self {
        let config = config
            .validate()
            .unwrap_or_else(|invalid| panic!("invalid RateLimitConfig: {invalid}"));
        let cap = config.max_tracked_keys;
        let shards = split_cap(cap)
            .map(|shard_cap| Mutex::new(Shard::with_cap(shard_cap)))
            .collect();
        Self {
            inner: Arc::new(Inner {
                window_ms: crate::limit::millis(config.window),
                max_requests: config.max_requests,
                config,
                hasher: RandomState::new(),
                clock,
                shards,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> RateLimitConfig {
        self.inner.config
    }

    /// The key of `request` under `extractor`, hashed with this limiter's seed.
    pub fn hash_request<K: KeyExtractor, B>(&self, extractor: &K, request: &Request<B>) -> u64 {
        let mut state = self.inner.hasher.build_hasher();
        extractor.hash_key(request, &mut state);
        state.finish()
    }

    /// Any value hashed with this limiter's seed, for keys that do not come from a request.
    pub fn hash<T: Hash + ?Sized>(&self, value: &T) -> u64 {
        self.inner.hasher.hash_one(value)
    }

    /// Counts a request for `key` now (one clock read).
    pub fn hit(&self, key: u64) -> Result<(), Limited> {
        self.hit_at(key, self.inner.clock.monotonic_millis())
    }

    /// Counts a request for `key` at `now_ms` on the limiter's monotonic scale.
    pub fn hit_at(&self, key: u64, now_ms: u64) -> Result<(), Limited> {
        let inner = &*self.inner;
        inner.shards[shard_of(key, inner.shards.len())].lock().hit(
            key,
            now_ms,
            inner.window_ms,
            inner.max_requests,
        )
    }

    /// Requests counted for `key` in its current window, rejected ones included; `0` if the key is
    /// not tracked or its window has ended. Does not count as a touch.
    pub fn window_count(&self, key: u64) -> u32 {
        let inner = &*self.inner;
        let now = inner.clock.monotonic_millis();
        let shard = inner.shards[shard_of(key, inner.shards.len())].lock();
        match shard.index.get(&key) {
            Some(&i) if now.saturating_sub(shard.slots[i].window_start) < inner.window_ms => {
                shard.slots[i].count
            }
            _ => 0,
        }
    }

    /// How many keys are tracked now. Locks each shard in turn, so under concurrent traffic the
    /// sum is a snapshot per shard, never above the cap.
    pub fn tracked_keys(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().index.len()).sum()
    }

    /// Forgets every key.
    pub fn clear(&self) {
        for shard in self.inner.shards.iter() {
            shard.lock().clear();
        }
    }

    /// Whether both handles share one set of counters.
    pub fn same_limiter(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Most shards a limiter spreads its keys over: enough that two cores rarely meet on one lock.
const MAX_SHARDS: usize = 16;

/// The shard caps for a total cap: a power-of-two count of shards, each with room for at least one
/// key, whose caps add up to exactly `cap`.
pub(crate) fn split_cap(cap: usize) -> impl Iterator<Item = usize> {
    let shards = shard_count(cap);
    let (base, extra) = (cap / shards, cap % shards);
    (0..shards).map(move |i| base + usize::from(i < extra))
}

/// Fewest keys a shard is given room for, unless the whole cap is smaller: a shard with room for a
/// handful of keys would evict far earlier than the cap suggests.
const MIN_KEYS_PER_SHARD: usize = 64;

/// A power of two, at most [`MAX_SHARDS`], with at least [`MIN_KEYS_PER_SHARD`] keys per shard
/// (one shard for caps below twice that).
pub(crate) fn shard_count(cap: usize) -> usize {
    let limit = (cap / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
    // The largest power of two not above `limit`.
    1 << (usize::BITS - 1 - limit.leading_zeros())
}

/// The shard of a key. The bits used here are neither the low bits (the map's bucket index) nor
/// the top seven (the map's control byte), so keys in one shard still spread over its table.
pub(crate) fn shard_of(key: u64, shards: usize) -> usize {
    (key >> 40) as usize & (shards - 1)
}

/// The maps' hasher: keys are already uniformly distributed seeded hashes, so hashing them again
/// would only cost time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PreHashed;

impl BuildHasher for PreHashed {
    type Hasher = PreHashedHasher;

    fn build_hasher(&self) -> Self::Hasher {
        PreHashedHasher(0)
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PreHashedHasher(u64);

impl Hasher for PreHashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach this hasher; fold anything else in rather than drop it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const NIL: usize = usize::MAX;

/// One shard: a map from key to slot, and the slots in a doubly linked list from most to least
/// recently touched. Slots are reused in place, so a full shard never allocates.
struct Shard {
    index: HashMap<u64, usize, PreHashed>,
    slots: Vec<Slot>,
    head: usize,
    tail: usize,
    cap: usize,
}

struct Slot {
    key: u64,
    window_start: u64,
    count: u32,
    prev: usize,
    next: usize,
}

/// Room reserved up front per shard, so the default cap never reallocates on the request path
/// while a huge configured cap does not reserve memory it may never use.
const PREALLOCATE_PER_SHARD: usize = 1_024;

impl Shard {
    fn with_cap(cap: usize) -> Self {
        let reserve = cap.min(PREALLOCATE_PER_SHARD);
        Self {
            index: HashMap::with_capacity_and_hasher(reserve, PreHashed),
            slots: Vec::with_capacity(reserve),
            head: NIL,
            tail: NIL,
            cap,
        }
    }

    fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.head = NIL;
        self.tail = NIL;
    }

    fn hit(&mut self, key: u64, now: u64, window: u64, max: u32) -> Result<(), Limited> {
        let i = match self.index.get(&key) {
            Some(&i) => {
                self.move_to_front(i);
                i
            }
            None => self.insert(key, now),
        };
        let slot = &mut self.slots[i];
        // `saturating_sub`: a limiter shared by layers on different clocks may see time go back;
        // that keeps the current window rather than underflowing into a new one.
        if now.saturating_sub(slot.window_start) >= window {
            slot.window_start = now;
            slot.count = 0;
        }
        slot.count = slot.count.saturating_add(1);
        if slot.count <= max {
            Ok(())
        } else {
            Err(Limited {
                retry_after_ms: slot.window_start.saturating_add(window).saturating_sub(now),
            })
        }
    }

    fn insert(&mut self, key: u64, now: u64) -> usize {
        let fresh = Slot {
            key,
            window_start: now,
            count: 0,
            prev: NIL,
            next: NIL,
        };
        let i = if self.slots.len() < self.cap {
            self.slots.push(fresh);
            let i = self.slots.len() - 1;
            self.link_front(i);
            i
        } else {
            let i = self.tail;
            self.index.remove(&self.slots[i].key);
            self.unlink(i);
            self.slots[i] = fresh;
            self.link_front(i);
            i
        };
        self.index.insert(key, i);
        i
    }

    fn move_to_front(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.link_front(i);
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.slots[i].prev, self.slots[i].next);
        match prev {
            NIL => self.head = next,
            p => self.slots[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n].prev = prev,
        }
    }

    fn link_front(&mut self, i: usize) {
        self.slots[i].prev = NIL;
        self.slots[i].next = self.head;
        match self.head {
            NIL => self.tail = i,
            h => self.slots[h].prev = i,
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_caps_add_up_and_are_never_zero() {
        for cap in [1, 2, 3, 5, 15, 16, 17, 100, 4_096, 4_097] {
            let caps: Vec<usize> = split_cap(cap).collect();
            assert_eq!(caps.iter().sum::<usize>(), cap, "cap {cap}");
            assert!(caps.iter().all(|&c| c >= 1), "cap {cap}: {caps:?}");
            assert!(caps.len().is_power_of_two() && caps.len() <= MAX_SHARDS);
        }
        assert_eq!(shard_count(1), 1);
        assert_eq!(shard_count(127), 1);
        assert_eq!(shard_count(128), 2);
        assert_eq!(shard_count(1_000), 8);
        assert_eq!(shard_count(4_096), 16);
    }

    #[test]
    fn shard_evicts_its_least_recently_touched_key() {
        let mut shard = Shard::with_cap(3);
        for key in [1, 2, 3] {
            shard.hit(key, 0, 100, 10).unwrap();
        }
        // Touching 1 makes 2 the least recently touched.
        shard.hit(1, 1, 100, 10).unwrap();
        shard.hit(4, 2, 100, 10).unwrap();
        let mut keys: Vec<u64> = shard.index.keys().copied().collect();
        keys.sort_unstable();
        assert_eq!(keys, [1, 3, 4]);
        assert_eq!(shard.slots.len(), 3);
        // Key 1 kept its count: two hits so far.
        assert_eq!(shard.slots[shard.index[&1]].count, 2);
        // The list runs 4, 1, 3 from most to least recent.
        let mut order = Vec::new();
        let mut at = shard.head;
        while at != NIL {
            order.push(shard.slots[at].key);
            at = shard.slots[at].next;
        }
        assert_eq!(order, [4, 1, 3]);
        assert_eq!(shard.slots[shard.tail].key, 3);
    }

    #[test]
    fn cap_of_one_keeps_only_the_latest_key() {
        let mut shard = Shard::with_cap(1);
        shard.hit(1, 0, 100, 1).unwrap();
        assert!(shard.hit(1, 1, 100, 1).is_err());
        shard.hit(2, 2, 100, 1).unwrap();
        // 1 was evicted, so it starts afresh.
        shard.hit(1, 3, 100, 1).unwrap();
        assert_eq!(shard.index.len(), 1);
        assert_eq!((shard.head, shard.tail), (0, 0));
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
        let mut shard = Shard::with_cap(1);
        shard.hit(1, u64::MAX - 1, u64::MAX, 1).unwrap();
        let limited = shard.hit(1, u64::MAX, u64::MAX, 1).unwrap_err();
        assert_eq!(limited.retry_after_ms, 0);
    }
}
