//! The backend seam: what a store of keyed state answers, possibly asynchronously, possibly not at
//! all.
//!
//! Each limiter asks its store one question per request through one of these traits. The in-memory
//! stores ([`FixedWindowLimiter`](crate::rate_limit::FixedWindowLimiter),
//! [`InFlightLimiter`](crate::in_flight::InFlightLimiter), [`AuthLockout`](crate::auth::AuthLockout)) answer at
//! once, with [`std::future::Ready`] futures: nothing is boxed and the layers decide in `call` as
//! before. A store shared by replicas (Redis, SPEC §7) answers later and may fail with
//! [`Unavailable`]; its futures are the associated types, so the memory path pays nothing for the
//! possibility.
//!
//! Keys are the `u64`s of the store's [`KeyHasher`]: bounded, and the same on every replica that
//! shares the hasher's secret.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::hash::KeyHasher;
use crate::clock::SharedClock;
#[cfg(feature = "rate-limit")]
use crate::rate_limit::Limited;

/// A shared-state backend could not answer (unreachable, timed out, refused).
///
/// Never returned by the in-memory stores. A shared store that falls back to in-process state
/// (`onUnavailable: "local"`, SPEC §7) never returns it either; one configured to refuse
/// (`"reject"`) does, and the request is then answered `503 Service Unavailable`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unavailable {
    _private: (),
}

impl Unavailable {
    /// The error.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shared state unavailable")
    }
}

impl std::error::Error for Unavailable {}

#[cfg(feature = "rate-limit")]
/// One request counted in its key's fixed window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowHit {
    /// Requests counted in the window so far, this one included.
    pub count: u32,
    /// The quota the store counts against.
    pub max_requests: u32,
    /// Milliseconds until the window ends.
    pub resets_in_ms: u64,
}

#[cfg(feature = "rate-limit")]
impl WindowHit {
    /// `Some` when this request is over the quota, with the time left as its `Retry-After`.
    #[inline]
    pub fn limited(&self) -> Option<Limited> {
        (self.count > self.max_requests).then_some(Limited {
            retry_after_ms: self.resets_in_ms,
        })
    }
}

#[cfg(feature = "rate-limit")]
/// Fixed-window counters (SPEC §2.3): the rate limiter's store.
pub trait WindowStore {
    /// The answer to [`hit`](Self::hit): [`Ready`](std::future::Ready) in memory.
    type HitFuture: Future<Output = Result<WindowHit, Unavailable>> + Unpin;

    /// The hasher that makes this store's keys.
    fn key_hasher(&self) -> KeyHasher;

    /// Counts one request for `key` in its window, opening a new window when there is none.
    fn hit(&self, key: u64) -> Self::HitFuture;
}

/// How long a shared store's lease lasts unless renewed, and the clock that measures it: what
/// [`RenewAtHalfLease`] works from.
#[derive(Clone, Debug)]
pub struct LeaseTerms {
    /// How long a lease lasts after it is taken or renewed.
    pub length: Duration,
    /// The clock the renewals are timed by (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub clock: SharedClock,
}

/// What the in-flight response future and body keep beside a lease to keep it alive.
pub trait LeaseRenewal<Lease> {
    /// Called on every poll of the response future and of the body, with the task's context:
    /// renews `lease` when it is due, never waiting for the store's answer.
    fn poll_renew(&mut self, lease: &Lease, cx: &mut Context<'_>);
}

/// The renewal of a lease that lasts until it is dropped (in memory): nothing to renew, no clock
/// to read, and nothing kept beside the lease.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRenewal;

impl<Lease> LeaseRenewal<Lease> for NoRenewal {
    #[inline]
    fn poll_renew(&mut self, _lease: &Lease, _cx: &mut Context<'_>) {}
}

/// Renews a lease through its store once more than half of [`LeaseTerms::length`] has passed
/// since the last renewal, checked whenever the response is polled: no timer per request, a lease
/// whose body still streams never lapses, and the slots of a crashed replica come back after
/// `length` (SPEC §7 asks for at most 30 s).
///
/// A renewal the store could not make is tried again on the next poll: the lease still has up to
/// half its length to run.
pub struct RenewAtHalfLease<S: SlotStore> {
    store: S,
    clock: SharedClock,
    renew_after_ms: u64,
    renewed_at_ms: u64,
    renewing: Option<(S::RenewFuture, u64)>,
}

impl<S: SlotStore> RenewAtHalfLease<S> {
    /// The renewal of a lease of `store` taken now, on `terms`.
    pub fn new(store: S, terms: LeaseTerms) -> Self {
        let length_ms = u64::try_from(terms.length.as_millis()).unwrap_or(u64::MAX);
        Self {
            store,
            renewed_at_ms: terms.clock.monotonic_millis(),
            clock: terms.clock,
            renew_after_ms: length_ms / 2,
            renewing: None,
        }
    }
}

impl<S: SlotStore> fmt::Debug for RenewAtHalfLease<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenewAtHalfLease")
            .field("renew_after_ms", &self.renew_after_ms)
            .field("renewed_at_ms", &self.renewed_at_ms)
            .field("renewing", &self.renewing.is_some())
            .finish()
    }
}

impl<S: SlotStore> LeaseRenewal<S::Lease> for RenewAtHalfLease<S> {
    fn poll_renew(&mut self, lease: &S::Lease, cx: &mut Context<'_>) {
        if self.renewing.is_none() {
            let now = self.clock.monotonic_millis();
            if now.saturating_sub(self.renewed_at_ms) <= self.renew_after_ms {
                return;
            }
            self.renewing = Some((self.store.renew(lease), now));
        }
        if let Some((renew, started_at_ms)) = &mut self.renewing {
            if let Poll::Ready(answer) = Pin::new(renew).poll(cx) {
                if answer.is_ok() {
                    self.renewed_at_ms = *started_at_ms;
                }
                self.renewing = None;
            }
        }
    }
}

/// In-flight slots held as leases (SPEC §2.4): the in-flight limiter's store.
pub trait SlotStore {
    /// One slot. Dropping it releases the slot; a shared store's leases also expire by themselves
    /// unless renewed, so the slots of a crashed replica come back.
    type Lease;
    /// What keeps a lease alive while its response streams: [`NoRenewal`] when leases last until
    /// dropped (in memory: the lease travels alone), [`RenewAtHalfLease`] when they expire.
    type Renewal: LeaseRenewal<Self::Lease>;
    /// The answer to [`acquire`](Self::acquire): [`Ready`](std::future::Ready) in memory.
    type AcquireFuture: Future<Output = Result<Option<Self::Lease>, Unavailable>> + Unpin;
    /// The answer to [`renew`](Self::renew).
    type RenewFuture: Future<Output = Result<(), Unavailable>> + Unpin;

    /// The hasher that makes this store's keys.
    fn key_hasher(&self) -> KeyHasher;

    /// A slot for `key`, or `None` when the key has all its slots taken or the store is full.
    fn acquire(&self, key: u64) -> Self::AcquireFuture;

    /// A slot for `key` for `request`: what the in-flight layer calls. A shared store may read,
    /// in the same round trip, what the next layer will ask for `request` (the Redis store reads
    /// the auth lockout of its client, so an accepted request pays one round trip for both); the
    /// default is [`acquire`](Self::acquire).
    #[inline]
    fn acquire_for<B>(&self, key: u64, request: &http::Request<B>) -> Self::AcquireFuture {
        let _ = request;
        self.acquire(key)
    }

    /// The renewal of a lease just acquired.
    fn renewal(&self) -> Self::Renewal;

    /// Extends `lease` while its response is still streaming. Called by [`RenewAtHalfLease`];
    /// in memory a lease never expires and this does nothing.
    fn renew(&self, lease: &Self::Lease) -> Self::RenewFuture;
}

/// What a lockout store knows about a client (SPEC §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// No failures on record.
    Clean,
    /// Failures on record, not (yet) locked: a success must reset them.
    Tracked,
    /// Locked out for this many more seconds (at least 1).
    Locked {
        /// Seconds until the lockout ends, at least 1.
        retry_after_secs: u64,
    },
}

/// Failed-authentication counts and lockouts per client (SPEC §2.2): the auth lockout's store.
pub trait LockoutStore {
    /// The answer to [`check`](Self::check): [`Ready`](std::future::Ready) in memory.
    type CheckFuture: Future<Output = Result<LockState, Unavailable>> + Unpin;
    /// The answer to [`record_failure`](Self::record_failure) and
    /// [`record_success`](Self::record_success).
    type RecordFuture: Future<Output = Result<(), Unavailable>> + Unpin;

    /// The hasher that makes this store's keys.
    fn key_hasher(&self) -> KeyHasher;

    /// Whether `key` is locked out, has failures on record, or neither.
    fn check(&self, key: u64) -> Self::CheckFuture;

    /// `true` only when no client at all has failures on record, so [`check`](Self::check) would
    /// answer [`LockState::Clean`] for every key: the layer then skips hashing the key and asking.
    /// In memory this is one atomic load; a shared store answers `false` (always ask).
    #[inline]
    fn nobody_failing(&self) -> bool {
        false
    }

    /// Counts a failed authentication for `key`, locking it out at the configured count.
    fn record_failure(&self, key: u64) -> Self::RecordFuture;

    /// Forgets the failures of `key` after a success, unless it is locked out.
    fn record_success(&self, key: u64) -> Self::RecordFuture;
}
