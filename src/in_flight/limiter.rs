use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Request;
use parking_lot::Mutex;

use super::config::InFlightConfig;
use crate::rate_limit::{KeyExtractor, PreHashed, shard_of};

/// The in-flight counters, shareable between layers.
///
/// Cloning shares the counters. A key is tracked exactly while it has at least one request in
/// flight: its entry is removed when its last slot is released, so idle keys cost nothing.
///
/// # Bound
///
/// At most `max_tracked_keys` keys are tracked, counted over the whole limiter (not per shard).
/// When that many keys have requests in flight, a request with a **new** key is refused (fail
/// closed) rather than evicting a key whose requests are still running, which would let it exceed
/// its own limit. Keys already tracked are unaffected.
///
/// Keys are `u64` hashes with a per-limiter random seed, as in
/// [`FixedWindowLimiter`](crate::FixedWindowLimiter).
#[derive(Clone)]
pub struct InFlightLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    max_per_key: u32,
    config: InFlightConfig,
    /// Keys present in the maps, plus transiently one per insertion being attempted. It never falls
    /// below the true count, so checking it keeps the true count under the cap.
    tracked: AtomicUsize,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<u64, u32, PreHashed>>]>,
}

impl fmt::Debug for InFlightLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightLimiter")
            .field("config", &self.inner.config)
            .field("tracked_keys", &self.tracked_keys())
            .finish()
    }
}

/// One in-flight slot; dropping it frees the slot.
pub struct InFlightPermit {
    inner: Arc<Inner>,
    key: u64,
}

impl fmt::Debug for InFlightPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightPermit").finish_non_exhaustive()
    }
}

impl Drop for InFlightPermit {
    fn drop(&mut self) {
        self.inner.release(self.key);
    }
}

impl InFlightLimiter {
    /// A new limiter.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](InFlightConfig::validate); the message names the field.
    pub fn new(config: InFlightConfig) -> Self {
        let config = config
            .validate()
            .unwrap_or_else(|invalid| panic!("invalid InFlightConfig: {invalid}"));
        // The cap is global here, so the shard count only spreads lock contention.
        let shards = (0..crate::rate_limit::shard_count(usize::MAX))
            .map(|_| Mutex::new(HashMap::with_hasher(PreHashed)))
            .collect();
        Self {
            inner: Arc::new(Inner {
                max_per_key: config.max_per_key,
                config,
                tracked: AtomicUsize::new(0),
                hasher: RandomState::new(),
                shards,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> InFlightConfig {
        self.inner.config
    }

    /// The key of `request` under `extractor`, hashed with this limiter's seed.
    pub fn hash_request<K: KeyExtractor, B>(&self, extractor: &K, request: &Request<B>) -> u64 {
        let mut state = self.inner.hasher.build_hasher();
        extractor.hash_key(request, &mut state);
        state.finish()
    }

    /// Any value hashed with this limiter's seed.
    pub fn hash<T: Hash + ?Sized>(&self, value: &T) -> u64 {
        self.inner.hasher.hash_one(value)
    }

    /// Takes a slot for `key`, or `None` if the key has all its slots taken, or if it is new and the
    /// tracked-key cap is reached.
    pub fn try_acquire(&self, key: u64) -> Option<InFlightPermit> {
        let inner = &*self.inner;
        let mut shard = inner.shards[shard_of(key, inner.shards.len())].lock();
        match shard.get_mut(&key) {
            Some(count) if *count >= inner.max_per_key => return None,
            Some(count) => *count += 1,
            None => {
                let cap = inner.config.max_tracked_keys;
                if inner.tracked.fetch_add(1, Ordering::AcqRel) >= cap {
                    inner.tracked.fetch_sub(1, Ordering::AcqRel);
                    return None;
                }
                shard.insert(key, 1);
            }
        }
        drop(shard);
        Some(InFlightPermit {
            inner: Arc::clone(&self.inner),
            key,
        })
    }

    /// Requests of `key` in flight now.
    pub fn in_flight(&self, key: u64) -> u32 {
        let inner = &*self.inner;
        let shard = inner.shards[shard_of(key, inner.shards.len())].lock();
        shard.get(&key).copied().unwrap_or(0)
    }

    /// How many keys have requests in flight now.
    pub fn tracked_keys(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether both handles share one set of counters.
    pub fn same_limiter(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Inner {
    fn release(&self, key: u64) {
        let mut shard = self.shards[shard_of(key, self.shards.len())].lock();
        if let Some(count) = shard.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                shard.remove(&key);
                self.tracked.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_key: u32, keys: usize) -> InFlightLimiter {
        InFlightLimiter::new(
            InFlightConfig::new()
                .max_per_key(per_key)
                .max_tracked_keys(keys),
        )
    }

    #[test]
    fn slots_per_key_are_counted_and_freed() {
        let limiter = limiter(2, 10);
        let a = limiter.try_acquire(1).unwrap();
        let b = limiter.try_acquire(1).unwrap();
        assert!(limiter.try_acquire(1).is_none());
        assert_eq!(limiter.in_flight(1), 2);
        drop(a);
        assert_eq!(limiter.in_flight(1), 1);
        let c = limiter.try_acquire(1).unwrap();
        drop((b, c));
        assert_eq!(limiter.in_flight(1), 0);
        assert_eq!(limiter.tracked_keys(), 0);
        assert_eq!(limiter.inner.tracked.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_new_key_beyond_the_cap_is_refused_and_the_refusal_leaves_no_trace() {
        let limiter = limiter(1, 2);
        let held = [
            limiter.try_acquire(1).unwrap(),
            limiter.try_acquire(2).unwrap(),
        ];
        assert!(limiter.try_acquire(3).is_none());
        assert_eq!(limiter.inner.tracked.load(Ordering::Relaxed), 2);
        assert_eq!(limiter.tracked_keys(), 2);
        drop(held);
        assert!(limiter.try_acquire(3).is_some());
    }
}
