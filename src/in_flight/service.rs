use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::body::InFlightBody;
use super::config::InFlightConfig;
use super::future::{InFlightResponseFuture, verdict};
use super::layer::InFlightLimitLayer;
use super::limiter::InFlightLimiter;
use crate::body::ResponseBody;
use crate::keyed::seam::{Waiting, poll_now};
use crate::keyed::{KeyExtractor, NormalizedPathAndPeerIp, SlotStore};

/// In-flight limit (SPEC §2.4): too many concurrent requests for a key ⇒ an immediate
/// `429 Too Many Requests` with `Retry-After: 1`.
///
/// Takes its slots from a [`SlotStore`]: by default the in-memory [`InFlightLimiter`], whose
/// answer is ready at once, so the decision is made in `call`. A store that answers later (shared
/// state) is awaited in the response future; one that is unavailable is answered
/// `503 Service Unavailable`.
///
/// See the [module docs](crate::in_flight) for how long a slot is held and the memory bound.
#[derive(Clone, Debug)]
pub struct InFlightLimit<S, K = NormalizedPathAndPeerIp, L = InFlightLimiter> {
    inner: S,
    store: L,
    key: K,
}

impl<S> InFlightLimit<S> {
    /// Wraps `inner` with a new limiter, keyed by normalised path and socket peer IP.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](InFlightConfig::validate); the message names the field.
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

impl<S, K, L> InFlightLimit<S, K, L> {
    /// Wraps `inner`, taking slots from `store` with keys from `key`.
    pub fn from_parts(inner: S, store: L, key: K) -> Self {
        Self { inner, store, key }
    }

    /// The store slots are taken from: the limiter, in memory.
    pub fn limiter(&self) -> &L {
        &self.store
    }

    inner_service_accessors!();
}

impl<S, K, L, ReqBody, ResBody> Service<Request<ReqBody>> for InFlightLimit<S, K, L>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyExtractor,
    L: SlotStore + Clone,
{
    type Response = Response<ResponseBody<InFlightBody<ResBody, L>>>;
    type Error = S::Error;
    type Future = InFlightResponseFuture<S, Request<ReqBody>, L>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let mut material = self.store.key_hasher().material();
        self.key.key_material(&request, &mut material);
        let mut acquire = self.store.acquire_for(material.finish(), &request);
        match poll_now(&mut acquire) {
            Poll::Ready(answer) => match verdict(answer) {
                Ok(lease) => InFlightResponseFuture::called(
                    self.inner.call(request),
                    (lease, self.store.renewal()),
                ),
                Err(rejection) => InFlightResponseFuture::rejected(rejection),
            },
            Poll::Pending => InFlightResponseFuture::waiting(Waiting::new(
                (acquire, self.store.clone()),
                request,
                &mut self.inner,
            )),
        }
    }
}
