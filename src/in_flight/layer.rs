use tower_layer::Layer;

use super::config::InFlightConfig;
use super::limiter::InFlightLimiter;
use super::service::InFlightLimit;
use crate::keyed::{KeyExtractor, NormalizedPathAndPeerIp};

/// Layer of [`InFlightLimit`].
///
/// The layer owns one [`InFlightLimiter`]; every service it builds, and every clone of the layer or
/// of those services, counts into that one limiter.
#[derive(Clone, Debug)]
pub struct InFlightLimitLayer<K = NormalizedPathAndPeerIp> {
    limiter: InFlightLimiter,
    key: K,
}

impl InFlightLimitLayer {
    /// A layer with a new limiter, keyed by normalised path and socket peer IP.
    pub fn new(config: InFlightConfig) -> Self {
        Self::with_limiter(InFlightLimiter::new(config))
    }

    /// A layer counting into an existing `limiter`, shared with whoever else holds it.
    pub fn with_limiter(limiter: InFlightLimiter) -> Self {
        Self {
            limiter,
            key: NormalizedPathAndPeerIp::new(),
        }
    }
}

impl<K> InFlightLimitLayer<K> {
    /// Keys requests with `key` instead.
    pub fn key_extractor<K2: KeyExtractor>(self, key: K2) -> InFlightLimitLayer<K2> {
        InFlightLimitLayer {
            limiter: self.limiter,
            key,
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &InFlightLimiter {
        &self.limiter
    }

    /// The key extractor.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<S, K: Clone> Layer<S> for InFlightLimitLayer<K> {
    type Service = InFlightLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit::from_parts(inner, self.limiter.clone(), self.key.clone())
    }
}
