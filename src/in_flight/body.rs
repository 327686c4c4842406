use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::limiter::InFlightLimiter;
use crate::keyed::{LeaseRenewal, SlotStore};

/// A request's in-flight slot: the store's lease, with what keeps it alive (nothing, in memory).
pub(crate) type Slot<L> = (<L as SlotStore>::Lease, <L as SlotStore>::Renewal);

pin_project! {
    /// Response body of [`InFlightLimit`](crate::InFlightLimit): the inner body, holding the
    /// request's in-flight slot until the body ends, fails or is dropped.
    ///
    /// Polling the body keeps the lease alive ([`SlotStore::Renewal`]): with a store whose leases
    /// expire, it renews the lease once more than half of it has passed since the last renewal.
    pub struct InFlightBody<B, L = InFlightLimiter>
    where
        L: SlotStore,
    {
        #[pin]
        inner: B,
        slot: Option<Slot<L>>,
    }
}

impl<B, L: SlotStore> InFlightBody<B, L> {
    pub(crate) fn new(inner: B, slot: Option<Slot<L>>) -> Self {
        Self { inner, slot }
    }

    inner_service_accessors!(body);

    /// Whether this body still holds its in-flight slot.
    pub fn holds_slot(&self) -> bool {
        self.slot.is_some()
    }
}

impl<B: Default, L: SlotStore> Default for InFlightBody<B, L> {
    fn default() -> Self {
        Self::new(B::default(), None)
    }
}

impl<B, L: SlotStore> std::fmt::Debug for InFlightBody<B, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightBody")
            .field("holds_slot", &self.slot.is_some())
            .finish()
    }
}

impl<B: Body, L: SlotStore> Body for InFlightBody<B, L> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if let Some((lease, renewal)) = this.slot.as_mut() {
            renewal.poll_renew(lease, cx);
        }
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        // The request is over once the body has ended or failed; a server may keep a finished body
        // around for a while (until the connection's next request), so free the slot now.
        let finished = match &frame {
            None | Some(Err(_)) => true,
            Some(Ok(_)) => this.inner.is_end_stream(),
        };
        if finished {
            this.slot.take();
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
