//! [`VerifySignatureLayer`] and the [`VerifySignature`] service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::verifier::{InvalidSignatureConfig, SignatureVerifier, VerifySignatureConfig};
use crate::body::{BufferedBody, ResponseBody};
use crate::future::ResponseFuture;
use crate::rejection::Rejection;

/// Layer of [`VerifySignature`]. Holds one [`SignatureVerifier`] in an `Arc`: every service it
/// builds, and every clone of those, shares it.
#[derive(Clone, Debug)]
pub struct VerifySignatureLayer {
    verifier: Arc<SignatureVerifier>,
}

impl VerifySignatureLayer {
    /// A layer verifying with `config`; see [`SignatureVerifier::new`] for what is refused.
    pub fn new(config: VerifySignatureConfig) -> Result<Self, InvalidSignatureConfig> {
        SignatureVerifier::new(config).map(Self::from_verifier)
    }

    /// A layer sharing `verifier`.
    pub fn from_verifier(verifier: impl Into<Arc<SignatureVerifier>>) -> Self {
        Self {
            verifier: verifier.into(),
        }
    }

    /// The verifier.
    pub fn verifier(&self) -> &Arc<SignatureVerifier> {
        &self.verifier
    }
}

impl<S> Layer<S> for VerifySignatureLayer {
    type Service = VerifySignature<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifySignature {
            inner,
            verifier: Arc::clone(&self.verifier),
        }
    }
}

/// Passes a buffered request on only when its signature verifies, with a
/// [`VerifiedWebhook`](super::VerifiedWebhook) extension; otherwise answers `401` `unauthorized`
/// (no `WWW-Authenticate`) and logs the reason at `debug`. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct VerifySignature<S> {
    inner: S,
    verifier: Arc<SignatureVerifier>,
}

impl<S> VerifySignature<S> {
    /// Wraps `inner` with `config`.
    pub fn new(inner: S, config: VerifySignatureConfig) -> Result<Self, InvalidSignatureConfig> {
        Ok(VerifySignatureLayer::new(config)?.layer(inner))
    }

    /// A layer with `config`.
    pub fn layer(
        config: VerifySignatureConfig,
    ) -> Result<VerifySignatureLayer, InvalidSignatureConfig> {
        VerifySignatureLayer::new(config)
    }

    inner_service_accessors!();
}

impl<S, ResBody> Service<Request<BufferedBody>> for VerifySignature<S>
where
    S: Service<Request<BufferedBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<BufferedBody>) -> Self::Future {
        match self
            .verifier
            .verify(request.headers(), request.body().bytes())
        {
            Ok(verified) => {
                request.extensions_mut().insert(verified);
                ResponseFuture::called(self.inner.call(request))
            }
            Err(reason) => {
                tracing::debug!(
                    target: "tower_webhooks::signature",
                    scheme = self.verifier.scheme().name(),
                    %reason,
                    "webhook signature refused"
                );
                ResponseFuture::rejected(Rejection::UnauthorizedNoChallenge)
            }
        }
    }
}
