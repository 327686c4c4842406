//! [`LimitedBody`], the request body of streaming mode, and its timeout error.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use http_body_util::Limited;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// The boxed error of [`LimitedBody`], as in `http_body_util::Limited` and `tower::BoxError`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// Request body handed to the inner service in streaming mode.
    ///
    /// It wraps [`http_body_util::Limited`], so reading past the cap fails with a boxed
    /// [`http_body_util::LengthLimitError`]: exactly what axum's `Bytes`, `String` and `Json`
    /// extractors recognise and answer with `413`. Waiting on the body past the deadline fails with a
    /// boxed [`BodyTimeoutError`]. After either error the body ends.
    pub struct LimitedBody<B> {
        #[pin]
        inner: Limited<B>,
        timeout: Duration,
        // Created the first time the inner body makes us wait, so a body that is already in memory
        // (the common in-process case) never reads the clock nor touches the timer wheel. Boxed
        // because only that slow path needs it.
        deadline: Option<Pin<Box<Sleep>>>,
        failed: bool,
    }
}

impl<B> LimitedBody<B> {
    /// Wraps `body`, failing after `max_bytes` bytes or once reading has taken `timeout`.
    pub fn new(body: B, max_bytes: usize, timeout: Duration) -> Self {
        Self {
            inner: Limited::new(body, max_bytes),
            timeout,
            deadline: None,
            failed: false,
        }
    }
}

impl<B> fmt::Debug for LimitedBody<B> {
    // The inner body may hold anything a client sent; show the limits only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitedBody")
            .field("timeout", &self.timeout)
            .field("deadline_started", &self.deadline.is_some())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Err(error))) => {
                *this.failed = true;
                // `Limited`'s own box is passed on untouched: axum downcasts it to
                // `LengthLimitError` directly, and a wrapper would turn its 413 into a 400.
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                let timeout = *this.timeout;
                let sleep = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        *this.failed = true;
                        Poll::Ready(Some(Err(Box::new(BodyTimeoutError { _private: () }))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

/// The error of a [`LimitedBody`] whose deadline passed before the body was complete.
///
/// Downcast a body error to this type to answer `408` yourself; axum's extractors, which do not know
/// it, answer `400 Failed to buffer the request body`.
#[derive(Debug)]
#[non_exhaustive]
pub struct BodyTimeoutError {
    _private: (),
}

impl fmt::Display for BodyTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body timeout")
    }
}

impl std::error::Error for BodyTimeoutError {}
