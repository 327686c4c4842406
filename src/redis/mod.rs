//! Shared state on Redis (SPEC §7): the rate windows, in-flight slots and auth lockout of every
//! replica with the same key prefix, with the numbers of one process.
//!
//! One [`RedisState`] per process holds the connection (redis-rs's `ConnectionManager`: one
//! multiplexed connection that reconnects by itself) and the [`SharedStateConfig`]. Three stores
//! implement the [backend seam](crate::keyed) over it, each with the in-process store beside it
//! for when Redis cannot answer:
//!
//! | store | seam | one decision |
//! |---|---|---|
//! | [`RedisWindowStore`] | [`WindowStore`](crate::keyed::WindowStore) | one script: `INCR`, the window's deadline on its first hit, the time left, the repair of a key without expiry |
//! | [`RedisSlotStore`] | [`SlotStore`](crate::keyed::SlotStore) | one script: drop lapsed leases, take one if fewer than the limit (and read the client's lockout state) |
//! | [`RedisLockoutStore`] | [`LockoutStore`](crate::keyed::LockoutStore) | read with the slot; a failure is one script, a success after failures one `DEL` |
//!
//! Round trips: none for a request refused before the rate limit (`405`); one for a `429` of the
//! rate limit or a `415`; two for an accepted request and for a `429` of the in-flight limit; a
//! `401` adds the failure it records. Releasing a slot after the response is one more command that
//! nobody waits for.
//!
//! Keys are `<keyPrefix><space>:<16 hex digits>`, the digits being the stable
//! [`KeyHasher`](crate::keyed::KeyHasher) key of the material (never the material itself, never a
//! per-process seed), and every key expires: a window with its window, a lease set with its
//! longest lease, a failure count with its window, a lock with its lockout.
//!
//! When Redis does not answer within [`SharedStateConfig::timeout`] (50 ms by default) a decision
//! falls back as [`OnUnavailable`] says: `Local` lets the in-process store decide (each replica
//! then enforces its own budgets; logged at most once a minute, counted in
//! [`RedisState::fallbacks`]) and `Reject` answers `503 Service Unavailable`. Redis is then
//! marked down, decisions fall back at once without waiting, and a `PING` every 250 ms brings
//! every store back to shared state as soon as Redis answers.
//!
//! Needs Redis 7 or later (`PEXPIRETIME`), one instance or a primary (not Redis Cluster).
//!
//! # A layer alone on Redis
//!
//! The rate limit in front of any handler, shared by every replica that connects with the same
//! prefix (and, when their hashers have a secret, the same secret):
//!
//! ```no_run
//! use std::convert::Infallible;
//! use tower::ServiceBuilder;
//! use tower_webhooks::rate_limit::{FixedWindowLimiter, FixedWindowRateLimitLayer, RateLimitConfig};
//! use tower_webhooks::redis::{RedisState, RedisWindowStore, SharedStateConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let shared = RedisState::connect("redis://127.0.0.1:6379", SharedStateConfig::new())
//!     .await
//!     .expect("Redis at start-up");
//! let local = FixedWindowLimiter::new(RateLimitConfig::new().max_requests(120));
//! let layer = FixedWindowRateLimitLayer::with_store(RedisWindowStore::new(shared, local));
//! let service = ServiceBuilder::new().layer(layer).service_fn(|_: http::Request<String>| async {
//!     Ok::<_, Infallible>(http::Response::new(String::from("ok")))
//! });
//! # let _ = service;
//! # }
//! ```

mod config;
mod future;
mod lockout;
mod scripts;
mod slots;
mod state;
mod window;

pub use config::{MAX_LEASE, OnUnavailable, SharedStateConfig};
pub use future::SharedAnswer;
pub use lockout::RedisLockoutStore;
pub use slots::{RedisLease, RedisSlotStore};
pub use state::{ConnectError, RedisState};
pub use window::RedisWindowStore;
