//! [`RateLimitFuture`]: decided in `call` when the store answers at once, later when it does not.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::keyed::seam::Waiting;
use crate::keyed::{Unavailable, WindowHit};
use crate::rejection::Rejection;

pin_project! {
    /// Response future of [`FixedWindowRateLimit`](crate::FixedWindowRateLimit).
    ///
    /// With the in-memory store the decision is made in `call` and this is the inner future or a
    /// ready `429`. A store that answers later keeps the request and the inner service (the one
    /// `poll_ready` was driven on) in a box until it does: only that path allocates, and the
    /// future stays as small as the inner one.
    pub struct RateLimitFuture<S, R, H>
    where
        S: Service<R>,
    {
        #[pin]
        kind: Kind<S, R, H>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, R, H>
    where
        S: Service<R>,
    {
        Called { #[pin] future: S::Future },
        Rejected { rejection: Option<Rejection> },
        Waiting { waiting: Box<Waiting<S, R, H>> },
    }
}

impl<S: Service<R>, R, H> RateLimitFuture<S, R, H> {
    pub(crate) fn called(future: S::Future) -> Self {
        Self {
            kind: Kind::Called { future },
        }
    }

    pub(crate) fn rejected(rejection: Rejection) -> Self {
        Self {
            kind: Kind::Rejected {
                rejection: Some(rejection),
            },
        }
    }

    pub(crate) fn waiting(waiting: Box<Waiting<S, R, H>>) -> Self {
        Self {
            kind: Kind::Waiting { waiting },
        }
    }
}

impl<S: Service<R>, R, H> fmt::Debug for RateLimitFuture<S, R, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Called { .. } => f.write_str("RateLimitFuture::Called"),
            Kind::Rejected { rejection } => f
                .debug_tuple("RateLimitFuture::Rejected")
                .field(rejection)
                .finish(),
            Kind::Waiting { .. } => f.write_str("RateLimitFuture::Waiting"),
        }
    }
}

/// What a store's answer means for the request: call the inner service, or the rejection.
#[inline]
pub(crate) fn verdict(answer: Result<WindowHit, Unavailable>) -> Result<(), Rejection> {
    match answer {
        Ok(hit) => match hit.limited() {
            None => Ok(()),
            Some(limited) => Err(Rejection::TooManyRequests {
                retry_after_secs: limited.retry_after_secs(),
            }),
        },
        Err(_unavailable) => Err(Rejection::ServiceUnavailable),
    }
}

impl<S, R, H, B> Future for RateLimitFuture<S, R, H>
where
    S: Service<R, Response = Response<B>>,
    H: Future<Output = Result<WindowHit, Unavailable>> + Unpin,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().kind.project() {
                KindProj::Called { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::new)));
                }
                KindProj::Rejected { rejection } => {
                    // Polling again after completion is a caller bug; answer 500 rather than panic.
                    let rejection = rejection.take().unwrap_or(Rejection::InternalServerError);
                    return Poll::Ready(Ok(rejection.into_response()));
                }
                KindProj::Waiting { waiting } => {
                    let answer = ready!(Pin::new(&mut waiting.answer).poll(cx));
                    match waiting.proceed(verdict(answer)) {
                        Ok(future) => Kind::Called { future },
                        Err(rejection) => Kind::Rejected {
                            rejection: Some(rejection),
                        },
                    }
                }
            };
            self.as_mut().project().kind.set(next);
        }
    }
}
