use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::body::InFlightBody;
use super::limiter::InFlightPermit;
use crate::body::ResponseBody;
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
    /// Dropping the future, or the inner service failing, frees the slot.
    pub struct InFlightResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F, permit: Option<InFlightPermit> },
        Rejected,
    }
}

impl<F> InFlightResponseFuture<F> {
    pub(crate) fn called(future: F, permit: InFlightPermit) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn rejected() -> Self {
        Self {
            kind: Kind::Rejected,
        }
    }
}

impl<F> std::fmt::Debug for InFlightResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Called { permit, .. } => f
                .debug_struct("InFlightResponseFuture::Called")
                .field("holds_slot", &permit.is_some())
                .finish(),
            Kind::Rejected => f.write_str("InFlightResponseFuture::Rejected"),
        }
    }
}

impl<F, B, E> Future for InFlightResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<InFlightBody<B>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, permit } => {
                let result = ready!(future.poll(cx));
                // On error the permit is dropped here; on success it travels with the body.
                let permit = permit.take();
                let response = result?;
                Poll::Ready(Ok(
                    response.map(|body| ResponseBody::new(InFlightBody::new(body, permit)))
                ))
            }
            KindProj::Rejected => {
                let response = IN_FLIGHT_REJECTION.into_response();
                // The same 429 as a rate limit's; metrics and the access log tell them apart.
                #[cfg(feature = "telemetry")]
                crate::telemetry::record_rejection(RejectionReason::InFlight);
                Poll::Ready(Ok(response))
            }
        }
    }
}
