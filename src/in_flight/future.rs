use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::{InFlightBody, Slot};
use super::limiter::InFlightLimiter;
use crate::body::ResponseBody;
use crate::keyed::LeaseRenewal;
use crate::keyed::seam::Waiting;
use crate::keyed::{SlotStore, Unavailable};
use crate::rejection::Rejection;
#[cfg(feature = "telemetry")]
use crate::rejection::RejectionReason;

/// The in-flight rejection: the client may retry as soon as a slot frees, so say one second.
pub(crate) const IN_FLIGHT_REJECTION: Rejection = Rejection::TooManyRequests {
    retry_after_secs: 1,
};

pin_project! {
    /// Response future of [`InFlightLimit`](crate::InFlightLimit).
    ///
    /// Holds the request's slot while the inner future runs, then moves it into the response body.
    /// Dropping the future, or the inner service failing, frees the slot. With the in-memory
    /// store the slot is taken in `call`; a store that answers later keeps the request and the
    /// inner service (the one `poll_ready` was driven on) in a box until it does.
    pub struct InFlightResponseFuture<S, R, L = InFlightLimiter>
    where
        S: Service<R>,
        L: SlotStore,
    {
        #[pin]
        kind: Kind<S, R, L>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, R, L>
    where
        S: Service<R>,
        L: SlotStore,
    {
        Called { #[pin] future: S::Future, slot: Option<Slot<L>> },
        Rejected { rejection: Option<Rejection> },
        Waiting { waiting: Box<Waiting<S, R, (L::AcquireFuture, L)>> },
    }
}

/// What a store's answer means for the request: its lease, or the rejection.
#[inline]
pub(crate) fn verdict<T>(answer: Result<Option<T>, Unavailable>) -> Result<T, Rejection> {
    match answer {
        Ok(Some(lease)) => Ok(lease),
        Ok(None) => Err(IN_FLIGHT_REJECTION),
        Err(_unavailable) => Err(Rejection::ServiceUnavailable),
    }
}

impl<S: Service<R>, R, L: SlotStore> InFlightResponseFuture<S, R, L> {
    pub(crate) fn called(future: S::Future, slot: Slot<L>) -> Self {
        Self {
            kind: Kind::Called {
                future,
                slot: Some(slot),
            },
        }
    }

    pub(crate) fn rejected(rejection: Rejection) -> Self {
        Self {
            kind: Kind::Rejected {
                rejection: Some(rejection),
            },
        }
    }

    pub(crate) fn waiting(waiting: Box<Waiting<S, R, (L::AcquireFuture, L)>>) -> Self {
        Self {
            kind: Kind::Waiting { waiting },
        }
    }
}

impl<S: Service<R>, R, L: SlotStore> std::fmt::Debug for InFlightResponseFuture<S, R, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Called { slot, .. } => f
                .debug_struct("InFlightResponseFuture::Called")
                .field("holds_slot", &slot.is_some())
                .finish(),
            Kind::Rejected { rejection } => f
                .debug_tuple("InFlightResponseFuture::Rejected")
                .field(rejection)
                .finish(),
            Kind::Waiting { .. } => f.write_str("InFlightResponseFuture::Waiting"),
        }
    }
}

impl<S, R, L, B> Future for InFlightResponseFuture<S, R, L>
where
    S: Service<R, Response = Response<B>>,
    L: SlotStore + Clone,
{
    type Output = Result<Response<ResponseBody<InFlightBody<B, L>>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().kind.project() {
                KindProj::Called { future, slot } => {
                    // A slow handler must not let its lease lapse either.
                    if let Some((lease, renewal)) = slot.as_mut() {
                        renewal.poll_renew(lease, cx);
                    }
                    let result = ready!(future.poll(cx));
                    // On error the slot is dropped here; on success it travels with the body.
                    let slot = slot.take();
                    let response = result?;
                    return Poll::Ready(Ok(
                        response.map(|body| ResponseBody::new(InFlightBody::new(body, slot)))
                    ));
                }
                KindProj::Rejected { rejection } => {
                    // Polling again after completion is a caller bug; answer 500 rather than panic.
                    let rejection = rejection.take().unwrap_or(Rejection::InternalServerError);
                    let response = rejection.into_response();
                    // The same 429 as a rate limit's; metrics and the access log tell them apart.
                    #[cfg(feature = "telemetry")]
                    if rejection == IN_FLIGHT_REJECTION {
                        crate::telemetry::record_rejection(RejectionReason::InFlight);
                    }
                    return Poll::Ready(Ok(response));
                }
                KindProj::Waiting { waiting } => {
                    let (acquire, store) = &mut waiting.answer;
                    let answer = ready!(Pin::new(acquire).poll(cx));
                    let slot = verdict(answer).map(|lease| (lease, store.renewal()));
                    let called = slot.and_then(|slot| Ok((waiting.proceed(Ok(()))?, slot)));
                    match called {
                        Ok((future, slot)) => Kind::Called {
                            future,
                            slot: Some(slot),
                        },
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
