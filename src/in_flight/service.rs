use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::body::InFlightBody;
use super::config::InFlightConfig;
use super::future::InFlightResponseFuture;
use super::layer::InFlightLimitLayer;
use super::limiter::InFlightLimiter;
use crate::body::ResponseBody;
use crate::keyed::{KeyExtractor, NormalizedPathAndPeerIp};

/// In-flight limit (SPEC §2.4): too many concurrent requests for a key ⇒ an immediate
/// `429 Too Many Requests` with `Retry-After: 1`.
///
/// See the [module docs](crate::in_flight) for how long a slot is held and the memory bound.
#[derive(Clone, Debug)]
pub struct InFlightLimit<S, K = NormalizedPathAndPeerIp> {
    inner: S,
    limiter: InFlightLimiter,
    key: K,
}

impl<S> InFlightLimit<S> {
    /// Wraps `inner` with a new limiter, keyed by normalised path and socket peer IP.
    pub fn new(inner: S, config: InFlightConfig) -> Self {
        Self::from_parts(
            inner,
            InFlightLimiter::new(config),
            NormalizedPathAndPeerIp::new(),
        )
    }

    /// A layer with a new limiter; see [`InFlightLimitLayer::new`].
    pub fn layer(config: InFlightConfig) -> InFlightLimitLayer {
        InFlightLimitLayer::new(config)
    }
}

impl<S, K> InFlightLimit<S, K> {
    /// Wraps `inner`, counting into `limiter` with keys from `key`.
    pub fn from_parts(inner: S, limiter: InFlightLimiter, key: K) -> Self {
        Self {
            inner,
            limiter,
            key,
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &InFlightLimiter {
        &self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for InFlightLimit<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    K: KeyExtractor,
{
    type Response = Response<ResponseBody<InFlightBody<ResBody>>>;
    type Error = S::Error;
    type Future = InFlightResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let key = self.limiter.hash_request(&self.key, &request);
        match self.limiter.try_acquire(key) {
            Some(permit) => InFlightResponseFuture::called(self.inner.call(request), permit),
            None => InFlightResponseFuture::rejected(),
        }
    }
}
