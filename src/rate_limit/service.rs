use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::config::RateLimitConfig;
use super::future::{RateLimitFuture, verdict};
use super::layer::FixedWindowRateLimitLayer;
use super::limiter::FixedWindowLimiter;
use crate::body::ResponseBody;
use crate::keyed::seam::{Waiting, poll_now};
use crate::keyed::{KeyExtractor, PathAndClientIp, WindowStore};

/// Fixed-window rate limit (SPEC §2.3): over quota ⇒ `429 Too Many Requests` with `Retry-After`.
///
/// Counts into a [`WindowStore`]: by default the in-memory [`FixedWindowLimiter`], whose answer is
/// ready at once, so the decision is made in `call`. A store that answers later (shared state) is
/// awaited in the response future; one that is unavailable is answered `503 Service Unavailable`.
///
/// See the [module docs](crate::rate_limit) for the counting rules and the memory bound.
#[derive(Clone, Debug)]
pub struct FixedWindowRateLimit<S, K = PathAndClientIp, W = FixedWindowLimiter> {
    inner: S,
    store: W,
    key: K,
}

impl<S> FixedWindowRateLimit<S> {
    /// Wraps `inner` with a new limiter on the system clock, keyed by raw path and client IP.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](RateLimitConfig::validate); the message names the field.
    pub fn new(inner: S, config: RateLimitConfig) -> Self {
        Self::from_parts(
            inner,
            FixedWindowLimiter::new(config),
            PathAndClientIp::new(),
        )
    }

    /// A layer with a new limiter; see [`FixedWindowRateLimitLayer::new`].
    pub fn layer(config: RateLimitConfig) -> FixedWindowRateLimitLayer {
        FixedWindowRateLimitLayer::new(config)
    }
}

impl<S, K, W> FixedWindowRateLimit<S, K, W> {
    /// Wraps `inner`, counting into `store` with keys from `key`.
    pub fn from_parts(inner: S, store: W, key: K) -> Self {
        Self { inner, store, key }
    }

    /// The store counted into: the limiter, in memory.
    pub fn limiter(&self) -> &W {
        &self.store
    }

    inner_service_accessors!();
}

impl<S, K, W, ReqBody, ResBody> Service<Request<ReqBody>> for FixedWindowRateLimit<S, K, W>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyExtractor,
    W: WindowStore,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = RateLimitFuture<S, Request<ReqBody>, W::HitFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let mut material = self.store.key_hasher().material();
        self.key.key_material(&request, &mut material);
        let mut hit = self.store.hit(material.finish());
        match poll_now(&mut hit) {
            Poll::Ready(answer) => match verdict(answer) {
                Ok(()) => RateLimitFuture::called(self.inner.call(request)),
                Err(rejection) => RateLimitFuture::rejected(rejection),
            },
            Poll::Pending => RateLimitFuture::waiting(Waiting::new(hit, request, &mut self.inner)),
        }
    }
}
