use tower_layer::Layer;

use super::config::InFlightConfig;
use super::limiter::InFlightLimiter;
use super::service::InFlightLimit;
use crate::keyed::{KeyExtractor, KeyHasher, NormalizedPathAndPeerIp, SlotStore};

/// Layer of [`InFlightLimit`].
///
/// The layer owns one store, by default an [`InFlightLimiter`] in memory; every service it builds,
/// and every clone of the layer or of those services, takes slots from that one store.
#[derive(Clone, Debug)]
pub struct InFlightLimitLayer<K = NormalizedPathAndPeerIp, L = InFlightLimiter> {
    store: L,
    key: K,
}

impl InFlightLimitLayer {
    /// A layer with a new limiter, keyed by normalised path and socket peer IP.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](InFlightConfig::validate); the message names the field.
    pub fn new(config: InFlightConfig) -> Self {
        Self::with_limiter(InFlightLimiter::new(config))
    }

    /// A layer with a new limiter whose keys come from `hasher`: replicas that share the hasher's
    /// secret derive the same keys.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](InFlightConfig::validate); the message names the field.
    pub fn with_hasher(config: InFlightConfig, hasher: KeyHasher) -> Self {
        Self::with_limiter(InFlightLimiter::with_hasher(config, hasher))
    }

    /// A layer counting into an existing `limiter`, shared with whoever else holds it.
    pub fn with_limiter(limiter: InFlightLimiter) -> Self {
        Self::with_store(limiter)
    }
}

impl<L: SlotStore> InFlightLimitLayer<NormalizedPathAndPeerIp, L> {
    /// A layer taking slots from `store`: in memory, or shared between replicas.
    pub fn with_store(store: L) -> Self {
        Self {
            store,
            key: NormalizedPathAndPeerIp::new(),
        }
    }
}

impl<K, L> InFlightLimitLayer<K, L> {
    /// Keys requests with `key` instead.
    pub fn key_extractor<K2: KeyExtractor>(self, key: K2) -> InFlightLimitLayer<K2, L> {
        InFlightLimitLayer {
            store: self.store,
            key,
        }
    }

    /// The store slots are taken from: the limiter, in memory.
    pub fn limiter(&self) -> &L {
        &self.store
    }

    /// The key extractor.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<S, K: Clone, L: Clone> Layer<S> for InFlightLimitLayer<K, L> {
    type Service = InFlightLimit<S, K, L>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit::from_parts(inner, self.store.clone(), self.key.clone())
    }
}
