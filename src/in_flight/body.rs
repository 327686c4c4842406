use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::limiter::InFlightPermit;

pin_project! {
    /// Response body of [`InFlightLimit`](crate::InFlightLimit): the inner body, holding the
    /// request's in-flight slot until the body ends, fails or is dropped.
    pub struct InFlightBody<B> {
        #[pin]
        inner: B,
        permit: Option<InFlightPermit>,
    }
}

impl<B> InFlightBody<B> {
    pub(crate) fn new(inner: B, permit: Option<InFlightPermit>) -> Self {
        Self { inner, permit }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Whether this body still holds its in-flight slot.
    pub fn holds_slot(&self) -> bool {
        self.permit.is_some()
    }
}

impl<B: Default> Default for InFlightBody<B> {
    fn default() -> Self {
        Self::new(B::default(), None)
    }
}

impl<B> std::fmt::Debug for InFlightBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightBody")
            .field("holds_slot", &self.permit.is_some())
            .finish()
    }
}

impl<B: Body> Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        // The request is over once the body has ended or failed; a server may keep a finished body
        // around for a while (until the connection's next request), so free the slot now.
        let finished = match &frame {
            None | Some(Err(_)) => true,
            Some(Ok(_)) => this.inner.is_end_stream(),
        };
        if finished {
            this.permit.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
