//! The backend seam: what a store of keyed state answers, possibly asynchronously, possibly not at
//! all.
//!
//! Each limiter asks its store one question per request through one of these traits. The in-memory
//! stores ([`FixedWindowLimiter`](crate::FixedWindowLimiter),
//! [`InFlightLimiter`](crate::InFlightLimiter), [`AuthLockout`](crate::AuthLockout)) answer at
//! once, with [`std::future::Ready`] futures: nothing is boxed and the layers decide in `call` as
//! before. A store shared by replicas (Redis, SPEC §7) answers later and may fail with
//! [`Unavailable`]; its futures are the associated types, so the memory path pays nothing for the
//! possibility.
//!
//! Keys are the `u64`s of the store's [`KeyHasher`]: bounded, and the same on every replica that
//! shares the hasher's secret.

use std::fmt;
use std::future::Future;

use super::hash::KeyHasher;
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

/// In-flight slots held as leases (SPEC §2.4): the in-flight limiter's store.
pub trait SlotStore {
    /// One slot. Dropping it releases the slot; a shared store's leases also expire by themselves
    /// unless renewed, so the slots of a crashed replica come back.
    type Lease;
    /// The answer to [`acquire`](Self::acquire): [`Ready`](std::future::Ready) in memory.
    type AcquireFuture: Future<Output = Result<Option<Self::Lease>, Unavailable>> + Unpin;
    /// The answer to [`renew`](Self::renew).
    type RenewFuture: Future<Output = Result<(), Unavailable>> + Unpin;

    /// The hasher that makes this store's keys.
    fn key_hasher(&self) -> KeyHasher;

    /// A slot for `key`, or `None` when the key has all its slots taken or the store is full.
    fn acquire(&self, key: u64) -> Self::AcquireFuture;

    /// Extends `lease` while its response is still streaming. In memory a lease never expires and
    /// this does nothing.
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

    /// Counts a failed authentication for `key`, locking it out at the configured count.
    fn record_failure(&self, key: u64) -> Self::RecordFuture;

    /// Forgets the failures of `key` after a success, unless it is locked out.
    fn record_success(&self, key: u64) -> Self::RecordFuture;
}
