//! Keyed state: the stable keyed hash, the one bounded map, and the backend seam every limiter
//! counts through.
//!
//! - [`KeyHasher`] turns a request's key material ([`KeyExtractor`]) into a `u64` with SipHash-1-3
//!   under a key derived from a fixed label and an optional secret: the same material gives the same
//!   key in every process, so replicas can share state (SPEC §7), and keys have a bounded length.
//! - [`ShardedLru`] is the bounded map behind the rate limiter, the in-flight limiter and the auth
//!   lockout: sharded, exact LRU per shard, caps that add up to the total, with a hook that lets the
//!   lockout keep locked clients while anything else can go, and a fail-closed mode for the
//!   in-flight counts.
//! - [`WindowStore`], [`SlotStore`] and [`LockoutStore`] are the seam a shared backend implements;
//!   the in-memory stores answer with ready futures (below).
//!
//! # The backend seam
//!
//! Every decision may be asynchronous and may fail ([`Unavailable`]). The in-memory stores'
//! futures are [`std::future::Ready`], and a layer polls the decision once in `call`: ready, it
//! decides there as always, with nothing boxed. Only an answer still pending keeps the request
//! (and the service `poll_ready` was driven on) in a boxed state of the response future; an
//! unavailable store is answered `503 Service Unavailable`. [`FixedWindowRateLimit`] counts
//! through [`WindowStore`] this way, [`InFlightLimit`] takes its slots through [`SlotStore`]
//! (leases renewed while the body streams, see [`RenewAtHalfLease`]), and [`SharedSecretAuth`] checks
//! and records through [`LockoutStore`].
//!
//! Every limiter and the pipeline take a [`KeyHasher`] (`with_hasher`), so replicas that share the
//! hasher's secret derive the same keys.
//!
//! [`FixedWindowRateLimit`]: crate::FixedWindowRateLimit
//! [`InFlightLimit`]: crate::InFlightLimit
//! [`SharedSecretAuth`]: crate::SharedSecretAuth

mod backend;
mod hash;
mod key;
mod map;
// The limiters ask their stores through it; the idempotency ledger of `events` alone does not.
#[cfg_attr(
    not(any(feature = "auth", feature = "rate-limit", feature = "in-flight")),
    allow(dead_code)
)]
pub(crate) mod seam;

pub use backend::{
    LeaseRenewal, LeaseTerms, LockState, LockoutStore, NoRenewal, RenewAtHalfLease, SlotStore,
    Unavailable,
};
#[cfg(feature = "rate-limit")]
pub use backend::{WindowHit, WindowStore};
pub use hash::{KeyHasher, KeyMaterial};
pub use key::{GlobalKey, KeyExtractor, NormalizedPathAndPeerIp, PathAndClientIp};
pub use map::{Keep, MapFull, ShardGuard, ShardedLru, WhenFull};
