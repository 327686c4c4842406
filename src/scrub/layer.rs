use std::sync::Arc;

use tower_layer::Layer;

use super::config::ScrubConfig;
use super::service::ScrubOwnerMetadata;

/// Layer of [`ScrubOwnerMetadata`].
///
/// The configuration is put in an [`Arc`] once, here: applying the layer and cloning the service
/// only bump a reference count.
#[derive(Clone, Debug, Default)]
pub struct ScrubOwnerMetadataLayer {
    config: Arc<ScrubConfig>,
}

impl ScrubOwnerMetadataLayer {
    /// A layer scrubbing as `config` says. Takes a [`ScrubConfig`] or an `Arc` of one, to share it
    /// with other code.
    pub fn new(config: impl Into<Arc<ScrubConfig>>) -> Self {
        Self {
            config: config.into(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ScrubConfig {
        &self.config
    }
}

impl<S> Layer<S> for ScrubOwnerMetadataLayer {
    type Service = ScrubOwnerMetadata<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ScrubOwnerMetadata::from_shared(inner, Arc::clone(&self.config))
    }
}
