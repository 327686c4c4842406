use std::fmt;
use std::future::{Ready, ready};
use std::hash::Hash;
use std::sync::Arc;

use http::Request;

use super::config::InFlightConfig;
use crate::keyed::{
    Keep, KeyExtractor, KeyHasher, NoRenewal, ShardedLru, SlotStore, Unavailable, WhenFull,
};

/// The in-flight counters, shareable between layers: the in-memory [`SlotStore`].
///
/// Cloning shares the counters. A key is tracked exactly while it has at least one request in
/// flight: its entry is removed when its last slot is released, so idle keys cost nothing.
///
/// # Bound
///
/// At most `max_tracked_keys` keys are tracked, counted over the whole limiter (not per shard): the
/// counts live in a [`ShardedLru`] in [`WhenFull::Refuse`] mode. When that many keys have requests
/// in flight, a request with a **new** key is refused (fail closed) rather than evicting a key whose
/// requests are still running, which would let it exceed its own limit. Keys already tracked are
/// unaffected.
///
/// Keys are `u64`s from the stable [`KeyHasher`], as in
/// [`FixedWindowLimiter`](crate::rate_limit::FixedWindowLimiter).
#[derive(Clone)]
pub struct InFlightLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    max_per_key: u32,
    config: InFlightConfig,
    hasher: KeyHasher,
    counts: ShardedLru<u32>,
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
        Self::with_hasher(config, KeyHasher::default())
    }

    /// A new limiter whose keys come from `hasher`: replicas that share the hasher's secret derive
    /// the same keys.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](InFlightConfig::validate); the message names the field.
    pub fn with_hasher(config: InFlightConfig, hasher: KeyHasher) -> Self {
        let config = config
            .validate()
            .unwrap_or_else(|invalid| panic!("invalid InFlightConfig: {invalid}"));
        Self {
            inner: Arc::new(Inner {
                max_per_key: config.max_per_key,
                config,
                hasher,
                counts: ShardedLru::new(config.max_tracked_keys, WhenFull::Refuse),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> InFlightConfig {
        self.inner.config
    }

    /// The key of `request` under `extractor`.
    #[inline]
    pub fn hash_request<K: KeyExtractor, B>(&self, extractor: &K, request: &Request<B>) -> u64 {
        let mut material = self.inner.hasher.material();
        extractor.key_material(request, &mut material);
        material.finish()
    }

    /// Any `Hash` value as a key; see [`FixedWindowLimiter::hash`](crate::rate_limit::FixedWindowLimiter::hash).
    pub fn hash<T: Hash + ?Sized>(&self, value: &T) -> u64 {
        let mut material = self.inner.hasher.material();
        value.hash(&mut material);
        material.finish()
    }

    /// Takes a slot for `key`, or `None` if the key has all its slots taken, or if it is new and the
    /// tracked-key cap is reached.
    #[inline]
    pub fn try_acquire(&self, key: u64) -> Option<InFlightPermit> {
        let inner = &*self.inner;
        let mut shard = inner.counts.shard(key);
        let count = shard.insert_with(key, || 0, |_| false).ok()?;
        if *count >= inner.max_per_key {
            return None;
        }
        *count += 1;
        drop(shard);
        Some(InFlightPermit {
            inner: Arc::clone(&self.inner),
            key,
        })
    }

    /// Requests of `key` in flight now.
    pub fn in_flight(&self, key: u64) -> u32 {
        self.inner.counts.shard(key).peek(key).copied().unwrap_or(0)
    }

    /// How many keys have requests in flight now.
    pub fn tracked_keys(&self) -> usize {
        self.inner.counts.len()
    }

    /// Whether both handles share one set of counters.
    pub fn same_limiter(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Inner {
    #[inline]
    fn release(&self, key: u64) {
        self.counts.shard(key).update_or_remove(key, |count| {
            *count -= 1;
            if *count == 0 { Keep::No } else { Keep::Yes }
        });
    }
}

impl SlotStore for InFlightLimiter {
    type Lease = InFlightPermit;
    type Renewal = NoRenewal;
    type AcquireFuture = Ready<Result<Option<InFlightPermit>, Unavailable>>;
    type RenewFuture = Ready<Result<(), Unavailable>>;

    fn key_hasher(&self) -> KeyHasher {
        self.inner.hasher
    }

    #[inline]
    fn acquire(&self, key: u64) -> Self::AcquireFuture {
        ready(Ok(self.try_acquire(key)))
    }

    #[inline]
    fn renewal(&self) -> NoRenewal {
        // A lease in memory lasts until it is dropped: nothing to renew, no clock to read.
        NoRenewal
    }

    fn renew(&self, _lease: &InFlightPermit) -> Self::RenewFuture {
        ready(Ok(()))
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
    }

    #[test]
    fn a_new_key_beyond_the_cap_is_refused_and_the_refusal_leaves_no_trace() {
        let limiter = limiter(1, 2);
        let held = [
            limiter.try_acquire(1).unwrap(),
            limiter.try_acquire(2).unwrap(),
        ];
        assert!(limiter.try_acquire(3).is_none());
        assert_eq!(limiter.tracked_keys(), 2);
        assert_eq!(limiter.in_flight(3), 0);
        drop(held);
        assert!(limiter.try_acquire(3).is_some());
    }
}
