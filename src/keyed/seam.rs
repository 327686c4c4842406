//! What every layer that asks a store uses: poll the answer once in `call`, and when it is not
//! ready, keep the request with the service `poll_ready` was driven on until it is.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tower_service::Service;

use crate::rejection::Rejection;

/// Polls a store's answer once, in `call`, with a waker that does nothing: an in-memory answer is
/// ready, and one that is not is polled again, with the task's waker, by the response future.
#[inline]
pub(crate) fn poll_now<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// A request whose store has not answered yet, with what answering takes: the pending `answer`,
/// the request, and the service `poll_ready` was driven on.
pub(crate) struct Waiting<S, R, A> {
    pub(crate) answer: A,
    request: Option<R>,
    inner: S,
}

impl<S, R, A> Waiting<S, R, A> {
    /// Takes the ready service out of `service`, leaving a clone: the clone is not ready, but the
    /// next `poll_ready` makes it so, while the request goes on with the one that is.
    pub(crate) fn new(answer: A, request: R, service: &mut S) -> Box<Self>
    where
        S: Clone,
    {
        let clone = service.clone();
        let inner = std::mem::replace(service, clone);
        Box::new(Self {
            answer,
            request: Some(request),
            inner,
        })
    }

    /// The request, until it has gone on.
    // Only auth reads the request while it waits (for the client of a pending lockout check).
    #[cfg_attr(not(feature = "auth"), allow(dead_code))]
    pub(crate) fn request(&self) -> Option<&R> {
        self.request.as_ref()
    }

    /// Sends the request on if `decision` lets it through, else gives the rejection back. Polled
    /// again after the request went on (a caller bug), the answer is `500`, not a panic.
    pub(crate) fn proceed(
        &mut self,
        decision: Result<(), Rejection>,
    ) -> Result<S::Future, Rejection>
    where
        S: Service<R>,
    {
        decision?;
        let request = self.request.take().ok_or(Rejection::InternalServerError)?;
        Ok(self.inner.call(request))
    }
}
