//! [`IdempotencyLedger`]: where an event route remembers the deliveries it dispatched, and
//! [`MemoryLedger`], the in-process one.
//!
//! A key goes through two states. [`begin`](IdempotencyLedger::begin) claims it (in progress);
//! [`complete`](IdempotencyLedger::complete) records it once the dispatch succeeded (remembered
//! for the route's `ttlHours`); [`abandon`](IdempotencyLedger::abandon) lets it go when the
//! dispatch failed, so the sender's retry is dispatched. A delivery that finds its key recorded is a
//! duplicate; one that finds it claimed is answered `409 duplicate_in_progress` (SPEC §8 [better]:
//! the proposal records a key before dispatching, so a failed dispatch is never retried).
//!
//! A claim that is neither completed nor abandoned (the process died mid-dispatch, or the request
//! was dropped) holds its key for [`IN_PROGRESS_LEASE`] at most; after that the next delivery with
//! the key claims it afresh. The stores (SQLite, PostgreSQL) implement the same trait, so
//! de-duplication survives restarts and holds across replicas.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

use crate::clock::{SharedClock, SystemClock};
use crate::keyed::{Keep, KeyHasher, ShardedLru, WhenFull};

/// How long a claim holds its key when nobody completes or abandons it: five minutes, longer than
/// any sender waits for an answer (GitHub: 10 s; Stripe, Slack: seconds), so a retry never finds
/// the first delivery still being handled unless it really is.
pub const IN_PROGRESS_LEASE: Duration = Duration::from_secs(300);

/// The most keys [`MemoryLedger`] remembers per route by default; beyond, the oldest go first.
pub const DEFAULT_MAX_KEYS_PER_ROUTE: usize = 25_000;

/// A claim on a key, returned by [`begin`](IdempotencyLedger::begin): only its holder completes or
/// abandons the key, so a delivery that took over an expired claim is not undone by the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    token: u64,
    ttl: Duration,
}

impl Claim {
    /// A claim with `token` (unique among the key's claims) remembering the key for `ttl` once
    /// completed. For ledger implementations.
    pub fn new(token: u64, ttl: Duration) -> Self {
        Self { token, ttl }
    }

    /// The token.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// How long the key is remembered once completed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// What [`begin`](IdempotencyLedger::begin) found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Begin {
    /// The key was free (or its record had expired, or its claim had lapsed): it is now claimed.
    Begun(Claim),
    /// The key was dispatched within its TTL: answer `200 duplicate`, dispatch nothing.
    Duplicate,
    /// Another delivery with the key is being handled: answer `409 duplicate_in_progress`.
    InProgress,
}

/// The ledger could not be reached; the delivery is refused with `503` and nothing recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerUnavailable;

impl fmt::Display for LedgerUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the idempotency ledger is unavailable")
    }
}

impl std::error::Error for LedgerUnavailable {}

/// Where idempotency keys live: per route, claimed before dispatch, recorded after it.
///
/// A key goes through two states. [`begin`](Self::begin) claims it (in progress);
/// [`complete`](Self::complete) records it once the dispatch succeeded (remembered for the route's
/// `ttlHours`); [`abandon`](Self::abandon) lets it go when the dispatch failed, so the sender's retry
/// is dispatched. A delivery that finds its key recorded is a duplicate; one that finds it claimed
/// is answered `409 duplicate_in_progress`. A claim neither completed nor abandoned (the process
/// died mid-dispatch) holds its key for [`IN_PROGRESS_LEASE`] at most. The stores (SQLite,
/// PostgreSQL) implement the same trait, so de-duplication survives restarts and holds across
/// replicas.
pub trait IdempotencyLedger: Send + Sync + 'static {
    /// Claims `key` of `route`, unless it is recorded (within its TTL) or claimed (within
    /// [`IN_PROGRESS_LEASE`]); `ttl` is how long it is remembered once completed.
    fn begin(
        &self,
        route: &str,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Begin, LedgerUnavailable>> + Send;

    /// Records `key` as dispatched, for the claim's TTL. A claim that lapsed and was taken over
    /// changes nothing.
    fn complete(
        &self,
        route: &str,
        key: &str,
        claim: Claim,
    ) -> impl Future<Output = Result<(), LedgerUnavailable>> + Send;

    /// Lets `key` go after a failed dispatch, so a retry is dispatched. A claim that lapsed and was
    /// taken over changes nothing.
    fn abandon(
        &self,
        route: &str,
        key: &str,
        claim: Claim,
    ) -> impl Future<Output = Result<(), LedgerUnavailable>> + Send;
}

impl<L: IdempotencyLedger> IdempotencyLedger for Arc<L> {
    fn begin(
        &self,
        route: &str,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Begin, LedgerUnavailable>> + Send {
        (**self).begin(route, key, ttl)
    }

    fn complete(
        &self,
        route: &str,
        key: &str,
        claim: Claim,
    ) -> impl Future<Output = Result<(), LedgerUnavailable>> + Send {
        (**self).complete(route, key, claim)
    }

    fn abandon(
        &self,
        route: &str,
        key: &str,
        claim: Claim,
    ) -> impl Future<Output = Result<(), LedgerUnavailable>> + Send {
        (**self).abandon(route, key, claim)
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    InProgress { token: u64, since_ms: u64 },
    Done { until_ms: u64 },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// A second, independent hash of the key: two keys whose map hashes collide must not pass for
    /// one another (a false duplicate would drop a delivery).
    check: u64,
    state: State,
}

/// The in-process [`IdempotencyLedger`]: per route a [`ShardedLru`] of at most 25,000 keys
/// (configurable), the oldest going first when a route is full (a key still being handled is the
/// last to go). Its futures are ready at once. Forgets everything on restart: use a store's ledger
/// when de-duplication must outlive the process or span replicas.
pub struct MemoryLedger {
    routes: RwLock<HashMap<Box<str>, Arc<ShardedLru<Entry>>>>,
    max_keys_per_route: usize,
    slot: KeyHasher,
    check: KeyHasher,
    clock: SharedClock,
    next_token: AtomicU64,
}

impl fmt::Debug for MemoryLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLedger")
            .field("routes", &self.routes.read().len())
            .field("max_keys_per_route", &self.max_keys_per_route)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLedger {
    /// A ledger of at most 25,000 keys per route, on the system clock.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_MAX_KEYS_PER_ROUTE)
    }

    /// A ledger of at most `max_keys_per_route` keys per route (at least one).
    pub fn with_capacity(max_keys_per_route: usize) -> Self {
        Self {
            routes: RwLock::new(HashMap::new()),
            max_keys_per_route: max_keys_per_route.max(1),
            slot: KeyHasher::default(),
            check: KeyHasher::with_secret(b"tower-webhooks idempotency check"),
            clock: SystemClock::shared(),
            next_token: AtomicU64::new(1),
        }
    }

    /// Reads time from `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Keys held for `route` (recorded or claimed, expired ones until they are overwritten).
    pub fn len(&self, route: &str) -> usize {
        self.routes.read().get(route).map_or(0, |map| map.len())
    }

    fn route(&self, route: &str) -> Arc<ShardedLru<Entry>> {
        if let Some(map) = self.routes.read().get(route) {
            return Arc::clone(map);
        }
        let mut routes = self.routes.write();
        Arc::clone(routes.entry(route.into()).or_insert_with(|| {
            Arc::new(ShardedLru::new(
                self.max_keys_per_route,
                WhenFull::EvictLeastRecent,
            ))
        }))
    }

    fn begin_now(&self, route: &str, key: &str, ttl: Duration) -> Begin {
        let now = self.clock.epoch_millis();
        let (slot, check) = (
            self.slot.hash_bytes(key.as_bytes()),
            self.check.hash_bytes(key.as_bytes()),
        );
        let map = self.route(route);
        let mut shard = map.shard(slot);
        if let Some(entry) = shard.peek(slot) {
            if entry.check == check {
                match entry.state {
                    State::Done { until_ms } if now < until_ms => return Begin::Duplicate,
                    State::InProgress { since_ms, .. }
                        if now < since_ms.saturating_add(millis(IN_PROGRESS_LEASE)) =>
                    {
                        return Begin::InProgress;
                    }
                    _ => {}
                }
            }
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let claimed = Entry {
            check,
            state: State::InProgress {
                token,
                since_ms: now,
            },
        };
        // Expired, lapsed or colliding: the slot is overwritten in place (its age is kept, so a
        // stale record does not jump the eviction queue).
        let present = shard.update_or_remove(slot, |entry| {
            *entry = claimed;
            Keep::Yes
        });
        if !present {
            // Evict a recorded key before one still being handled. An evicting map never refuses.
            let _ = shard.insert_with(
                slot,
                || claimed,
                |entry| matches!(entry.state, State::Done { .. }),
            );
        }
        Begin::Begun(Claim::new(token, ttl))
    }

    fn finish_now(&self, route: &str, key: &str, claim: Claim, complete: bool) {
        let now = self.clock.epoch_millis();
        let (slot, check) = (
            self.slot.hash_bytes(key.as_bytes()),
            self.check.hash_bytes(key.as_bytes()),
        );
        let map = self.route(route);
        let mut shard = map.shard(slot);
        let ours = |entry: &Entry| {
            entry.check == check
                && matches!(entry.state, State::InProgress { token, .. } if token == claim.token)
        };
        let present = shard.update_or_remove(slot, |entry| {
            if !ours(entry) {
                return Keep::Yes;
            }
            if complete {
                entry.state = State::Done {
                    until_ms: now.saturating_add(millis(claim.ttl)),
                };
                Keep::Yes
            } else {
                Keep::No
            }
        });
        // Evicted while in progress (the route filled up with newer claims): record it anyway, a
        // dispatched key must not be dispatched again.
        if !present && complete {
            let _ = shard.insert_with(
                slot,
                || Entry {
                    check,
                    state: State::Done {
                        until_ms: now.saturating_add(millis(claim.ttl)),
                    },
                },
                |entry| matches!(entry.state, State::Done { .. }),
            );
        }
    }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A claim token for a database ledger: random, so claims made by different processes on one
/// database never share one; below 2^63, so it fits a signed 64-bit column as it is.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn random_token() -> u64 {
    let (high, _) = uuid::Uuid::new_v4().as_u64_pair();
    (high >> 1).max(1)
}

/// What a database ledger stores for `key`: its SHA-256, a fixed size whatever the sender put in
/// a header or a body (a PostgreSQL index entry holds at most about 2.7 KB), and no NUL byte to
/// refuse.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn key_digest(key: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(key.as_bytes()).into()
}

// The futures are named (`Ready`), so a caller holding a `MemoryLedger` can see they never wait.
#[allow(refining_impl_trait)]
impl IdempotencyLedger for MemoryLedger {
    fn begin(
        &self,
        route: &str,
        key: &str,
        ttl: Duration,
    ) -> Ready<Result<Begin, LedgerUnavailable>> {
        ready(Ok(self.begin_now(route, key, ttl)))
    }

    fn complete(
        &self,
        route: &str,
        key: &str,
        claim: Claim,
    ) -> Ready<Result<(), LedgerUnavailable>> {
        self.finish_now(route, key, claim, true);
        ready(Ok(()))
    }

    fn abandon(
        &self,
        route: &str,
        key: &str,
        claim: Claim,
    ) -> Ready<Result<(), LedgerUnavailable>> {
        self.finish_now(route, key, claim, false);
        ready(Ok(()))
    }
}
