//! [`SharedAnswer`]: the answer of a shared store, ready at once or after a round trip.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The answer of a Redis store: ready at once (no shared state configured, Redis marked down, or
/// a lockout state already read with the in-flight slot), or after one round trip (boxed: the
/// round trip costs far more than the box).
pub struct SharedAnswer<T> {
    kind: Kind<T>,
}

enum Kind<T> {
    Ready(Option<T>),
    Pending(Pin<Box<dyn Future<Output = T> + Send>>),
}

impl<T> SharedAnswer<T> {
    pub(crate) fn ready(value: T) -> Self {
        Self {
            kind: Kind::Ready(Some(value)),
        }
    }

    pub(crate) fn pending(future: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            kind: Kind::Pending(Box::pin(future)),
        }
    }
}

impl<T> fmt::Debug for SharedAnswer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Ready(_) => "ready",
            Kind::Pending(_) => "pending",
        };
        f.debug_tuple("SharedAnswer").field(&state).finish()
    }
}

impl<T: Unpin> Future for SharedAnswer<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().kind {
            Kind::Ready(value) => match value.take() {
                Some(value) => Poll::Ready(value),
                // Polled after it answered: a caller bug, never a panic on the request path.
                None => Poll::Pending,
            },
            Kind::Pending(future) => future.as_mut().poll(cx),
        }
    }
}
