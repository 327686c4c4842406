use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::config::RateLimitConfig;
use super::layer::FixedWindowRateLimitLayer;
use super::limiter::FixedWindowLimiter;
use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::keyed::{KeyExtractor, PathAndClientIp};
use crate::rejection::Rejection;

/// Fixed-window rate limit (SPEC §2.3): over quota ⇒ `429 Too Many Requests` with `Retry-After`.
///
/// See the [module docs](crate::rate_limit) for the counting rules and the memory bound.
#[derive(Clone, Debug)]
pub struct FixedWindowRateLimit<S, K = PathAndClientIp> {
    inner: S,
    limiter: FixedWindowLimiter,
    key: K,
}

impl<S> FixedWindowRateLimit<S> {
    /// Wraps `inner` with a new limiter on the system clock, keyed by raw path and client IP.
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

impl<S, K> FixedWindowRateLimit<S, K> {
    /// Wraps `inner`, counting into `limiter` with keys from `key`.
    pub fn from_parts(inner: S, limiter: FixedWindowLimiter, key: K) -> Self {
        Self {
            inner,
            limiter,
            key,
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &FixedWindowLimiter {
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

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for FixedWindowRateLimit<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    K: KeyExtractor,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let key = self.limiter.hash_request(&self.key, &request);
        match self.limiter.hit(key) {
            Ok(()) => ResponseFuture::called(self.inner.call(request)),
            Err(limited) => ResponseFuture::rejected(Rejection::TooManyRequests {
                retry_after_secs: limited.retry_after_secs(),
            }),
        }
    }
}
