use tower_layer::Layer;

use super::config::RateLimitConfig;
use super::limiter::FixedWindowLimiter;
use super::service::FixedWindowRateLimit;
use crate::clock::SystemClock;
use crate::keyed::{KeyExtractor, KeyHasher, PathAndClientIp, WindowStore};

/// Layer of [`FixedWindowRateLimit`].
///
/// The layer owns one store, by default a [`FixedWindowLimiter`] in memory; every service it builds,
/// and every clone of the layer or of those services, counts into that one store.
#[derive(Clone, Debug)]
pub struct FixedWindowRateLimitLayer<K = PathAndClientIp, W = FixedWindowLimiter> {
    store: W,
    key: K,
}

impl FixedWindowRateLimitLayer {
    /// A layer with a new limiter on the system clock, keyed by raw path and client IP.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](RateLimitConfig::validate); the message names the field.
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_limiter(FixedWindowLimiter::new(config))
    }

    /// A layer with a new limiter on the system clock whose keys come from `hasher`: replicas
    /// that share the hasher's secret derive the same keys.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](RateLimitConfig::validate); the message names the field.
    pub fn with_hasher(config: RateLimitConfig, hasher: KeyHasher) -> Self {
        Self::with_limiter(FixedWindowLimiter::with_hasher(
            config,
            SystemClock::shared(),
            hasher,
        ))
    }

    /// A layer counting into an existing `limiter`, shared with whoever else holds it.
    pub fn with_limiter(limiter: FixedWindowLimiter) -> Self {
        Self::with_store(limiter)
    }
}

impl<W: WindowStore> FixedWindowRateLimitLayer<PathAndClientIp, W> {
    /// A layer counting into `store`: in memory, or shared between replicas.
    pub fn with_store(store: W) -> Self {
        Self {
            store,
            key: PathAndClientIp::new(),
        }
    }
}

impl<K, W> FixedWindowRateLimitLayer<K, W> {
    /// Keys requests with `key` instead.
    pub fn key_extractor<K2: KeyExtractor>(self, key: K2) -> FixedWindowRateLimitLayer<K2, W> {
        FixedWindowRateLimitLayer {
            store: self.store,
            key,
        }
    }

    /// The store counted into: the limiter, in memory.
    pub fn limiter(&self) -> &W {
        &self.store
    }

    /// The key extractor.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<S, K: Clone, W: Clone> Layer<S> for FixedWindowRateLimitLayer<K, W> {
    type Service = FixedWindowRateLimit<S, K, W>;

    fn layer(&self, inner: S) -> Self::Service {
        FixedWindowRateLimit::from_parts(inner, self.store.clone(), self.key.clone())
    }
}
