use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::limiter::InFlightLimiter;
use crate::clock::SharedClock;
use crate::keyed::SlotStore;

/// A request's in-flight slot: the store's lease, and for a store whose leases expire, what it
/// takes to renew it.
pub(crate) struct Slot<L: SlotStore> {
    lease: L::Lease,
    // Boxed so a slot that is never renewed (in memory) costs one pointer, and no clock read.
    renewal: Option<Box<Renewal<L>>>,
}

struct Renewal<L: SlotStore> {
    store: L,
    clock: SharedClock,
    /// Half the lease: renewing this often leaves a whole half for the renewal to arrive.
    renew_after_ms: u64,
    renewed_at_ms: u64,
    renewing: Option<(L::RenewFuture, u64)>,
}

impl<L: SlotStore + Clone> Slot<L> {
    pub(crate) fn new(store: &L, lease: L::Lease) -> Self {
        let renewal = store.lease_terms().map(|terms| {
            let length_ms = u64::try_from(terms.length.as_millis()).unwrap_or(u64::MAX);
            Box::new(Renewal {
                store: store.clone(),
                renewed_at_ms: terms.clock.monotonic_millis(),
                clock: terms.clock,
                renew_after_ms: length_ms / 2,
                renewing: None,
            })
        });
        Self { lease, renewal }
    }
}

impl<L: SlotStore> Slot<L> {
    /// Renews the lease once more than half of it has passed since the last renewal. Never waits
    /// for the answer: the renewal is polled here, with the caller's `cx`, until it arrives.
    #[inline]
    pub(crate) fn keep_alive(&mut self, cx: &mut Context<'_>) {
        if let Some(renewal) = &mut self.renewal {
            renewal.keep_alive(&self.lease, cx);
        }
    }
}

impl<L: SlotStore> Renewal<L> {
    fn keep_alive(&mut self, lease: &L::Lease, cx: &mut Context<'_>) {
        if self.renewing.is_none() {
            let now = self.clock.monotonic_millis();
            if now.saturating_sub(self.renewed_at_ms) <= self.renew_after_ms {
                return;
            }
            self.renewing = Some((self.store.renew(lease), now));
        }
        if let Some((renew, started_at_ms)) = &mut self.renewing {
            if let Poll::Ready(answer) = Pin::new(renew).poll(cx) {
                // A renewal the store could not make is tried again on the next poll: the lease
                // still has up to half its length to run.
                if answer.is_ok() {
                    self.renewed_at_ms = *started_at_ms;
                }
                self.renewing = None;
            }
        }
    }
}

pin_project! {
    /// Response body of [`InFlightLimit`](crate::InFlightLimit): the inner body, holding the
    /// request's in-flight slot until the body ends, fails or is dropped.
    ///
    /// With a store whose leases expire ([`SlotStore::lease_terms`]), polling the body renews the
    /// lease once more than half of it has passed since the last renewal.
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
        if let Some(slot) = this.slot.as_mut() {
            slot.keep_alive(cx);
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
