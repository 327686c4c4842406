use tower_layer::Layer;

use super::config::RateLimitConfig;
use super::limiter::FixedWindowLimiter;
use super::service::FixedWindowRateLimit;
use crate::keyed::{KeyExtractor, PathAndClientIp};

/// Layer of [`FixedWindowRateLimit`].
///
/// The layer owns one [`FixedWindowLimiter`]; every service it builds, and every clone of the layer
/// or of those services, counts into that one limiter.
#[derive(Clone, Debug)]
pub struct FixedWindowRateLimitLayer<K = PathAndClientIp> {
    limiter: FixedWindowLimiter,
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

    /// A layer counting into an existing `limiter`, shared with whoever else holds it.
    pub fn with_limiter(limiter: FixedWindowLimiter) -> Self {
        Self {
            limiter,
            key: PathAndClientIp::default(),
        }
    }
}

impl<K> FixedWindowRateLimitLayer<K> {
    /// Keys requests with `key` instead.
    pub fn key_extractor<K2: KeyExtractor>(self, key: K2) -> FixedWindowRateLimitLayer<K2> {
        FixedWindowRateLimitLayer {
            limiter: self.limiter,
            key,
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &FixedWindowLimiter {
        &self.limiter
    }

    /// The key extractor.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<S, K: Clone> Layer<S> for FixedWindowRateLimitLayer<K> {
    type Service = FixedWindowRateLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        FixedWindowRateLimit::from_parts(inner, self.limiter.clone(), self.key.clone())
    }
}
