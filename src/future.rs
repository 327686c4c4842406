//! The response future shared by the middlewares that decide in `call` and do nothing afterwards.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;
use crate::rejection::Rejection;

pin_project! {
    /// Response future of [`RequirePost`](crate::RequirePost) and
    /// [`RequireJson`](crate::RequireJson): either the inner service's future, or a rejection that
    /// is ready at once.
    ///
    /// A rejection is kept as the small [`Rejection`] value and turned into a response only when
    /// polled, so the future stays small.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Rejected { rejection: Option<Rejection> },
    }
}

impl<F> ResponseFuture<F> {
    /// Waits for the inner service's future.
    pub(crate) fn called(future: F) -> Self {
        Self {
            kind: Kind::Called { future },
        }
    }

    /// Answers with `rejection` when first polled.
    pub(crate) fn rejected(rejection: Rejection) -> Self {
        Self {
            kind: Kind::Rejected {
                rejection: Some(rejection),
            },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Called { .. } => f.write_str("ResponseFuture::Called"),
            Kind::Rejected { rejection } => f
                .debug_tuple("ResponseFuture::Rejected")
                .field(rejection)
                .finish(),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::new)))
            }
            KindProj::Rejected { rejection } => {
                // Polling again after completion is a caller bug; answer 500 rather than panic.
                let rejection = rejection.take().unwrap_or(Rejection::InternalServerError);
                Poll::Ready(Ok(rejection.into_response()))
            }
        }
    }
}
