use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::config::ScrubConfig;
use super::future::ScrubResponseFuture;
use super::layer::ScrubOwnerMetadataLayer;

/// Removes owner and session metadata from JSON responses (SPEC §4).
///
/// See the [module docs](crate::scrub) for how each kind of response body is handled.
#[derive(Clone, Debug)]
pub struct ScrubOwnerMetadata<S> {
    inner: S,
    config: Arc<ScrubConfig>,
}

impl<S> ScrubOwnerMetadata<S> {
    /// Wraps `inner`, scrubbing as `config` says.
    pub fn new(inner: S, config: impl Into<Arc<ScrubConfig>>) -> Self {
        Self::from_shared(inner, config.into())
    }

    pub(super) fn from_shared(inner: S, config: Arc<ScrubConfig>) -> Self {
        Self { inner, config }
    }

    /// A layer wrapping services in `ScrubOwnerMetadata`.
    pub fn layer(config: impl Into<Arc<ScrubConfig>>) -> ScrubOwnerMetadataLayer {
        ScrubOwnerMetadataLayer::new(config)
    }

    /// The configuration.
    pub fn config(&self) -> &ScrubConfig {
        &self.config
    }

    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ScrubOwnerMetadata<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes>,
{
    type Response = Response<crate::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ScrubResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ScrubResponseFuture::new(self.inner.call(request), Arc::clone(&self.config))
    }
}
