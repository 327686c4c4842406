//! [`RedisSlotStore`]: in-flight slots as leases on Redis, the in-process limiter as fallback.

use std::fmt;
use std::sync::atomic::Ordering;

use http::Request;

use super::future::SharedAnswer;
use super::lockout::{RedisLockoutStore, lock_state};
use super::state::{RedisState, script_command};
use crate::client_ip::ClientIp;
use crate::clock::SystemClock;
use crate::in_flight::{InFlightLimiter, InFlightPermit};
use crate::keyed::{KeyHasher, LockoutStore, NoRenewal, SlotStore, Unavailable};
use crate::limit::millis;

/// The in-flight limiter's [`SlotStore`] shared through Redis (SPEC §7): the 9th concurrent
/// request of a key is refused across replicas.
///
/// A slot is a lease: an id in the key's sorted set (`<keyPrefix>if:<16 hex digits>`) scored by
/// its deadline, taken by a script that first drops the leases past their deadline. While the
/// lease lives (its response is being handled or its body streams, however slowly) the process
/// renews it, with all its others in one script run every third of the lease length; dropping it
/// (response sent, dropped, or failed) removes it without waiting for Redis. A replica that dies
/// holding slots frees them when their leases run out:
/// [`lease`](super::SharedStateConfig::lease), 30 s by default.
///
/// The seam's per-poll renewal ([`RenewAtHalfLease`](crate::keyed::RenewAtHalfLease)) renews only
/// when the response is polled: a request waiting on a silent client is not, and its lease would
/// lapse while it still holds the slot. Hence the process-wide renewal, and [`NoRenewal`] here.
///
/// With [`reading_lockout`](Self::reading_lockout), the same script reads the auth lockout state
/// of the request's client, which the auth layer then uses without asking again: an accepted
/// request costs two round trips in all (the rate window, then the slot and the lockout).
#[derive(Clone)]
pub struct RedisSlotStore {
    local: InFlightLimiter,
    shared: Option<RedisState>,
    lockout: Option<RedisLockoutStore>,
}

impl fmt::Debug for RedisSlotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSlotStore")
            .field("local", &self.local)
            .field("shared", &self.shared.is_some())
            .field("reading_lockout", &self.lockout.is_some())
            .finish()
    }
}

/// An in-flight slot of a [`RedisSlotStore`]: a lease on Redis, or a local permit when Redis could
/// not answer (or there is no shared state). Dropping it frees the slot.
pub struct RedisLease {
    kind: LeaseKind,
}

enum LeaseKind {
    Shared {
        shared: RedisState,
        key: String,
        id: String,
    },
    Local(#[allow(dead_code)] InFlightPermit),
}

impl fmt::Debug for RedisLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            LeaseKind::Shared { .. } => "shared",
            LeaseKind::Local(_) => "local",
        };
        f.debug_struct("RedisLease").field("kind", &kind).finish()
    }
}

impl RedisLease {
    /// Whether the slot is held on Redis (`false`: in this process only).
    pub fn is_shared(&self) -> bool {
        matches!(self.kind, LeaseKind::Shared { .. })
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        if let LeaseKind::Shared { shared, key, id } = &self.kind {
            shared.inner.held_leases().remove(id);
            let mut release = redis::cmd("ZREM");
            release.arg(key.as_str()).arg(id.as_str());
            shared.send_and_forget(release);
        }
    }
}

impl RedisSlotStore {
    /// Slots shared through `shared`, taken from `local` when Redis cannot answer.
    pub fn new(shared: RedisState, local: InFlightLimiter) -> Self {
        Self::with(Some(shared), local)
    }

    /// No shared state: `local` decides everything.
    pub fn local_only(local: InFlightLimiter) -> Self {
        Self::with(None, local)
    }

    fn with(shared: Option<RedisState>, local: InFlightLimiter) -> Self {
        Self {
            local,
            shared,
            lockout: None,
        }
    }

    /// Reads, with each slot, the lockout state of the request's client in `lockout`, so that
    /// `lockout`'s next check of that client needs no round trip of its own.
    pub fn reading_lockout(mut self, lockout: RedisLockoutStore) -> Self {
        self.lockout = lockout.shared().is_some().then_some(lockout);
        self
    }

    /// The in-process limiter.
    pub fn local(&self) -> &InFlightLimiter {
        &self.local
    }

    /// The shared state, if any.
    pub fn shared(&self) -> Option<&RedisState> {
        self.shared.as_ref()
    }

    /// The settings (the in-process limiter's, which the shared slots count with).
    pub fn config(&self) -> crate::in_flight::InFlightConfig {
        self.local.config()
    }

    /// Keys with requests in flight on the in-process limiter (it counts only without shared
    /// state or while Redis cannot answer).
    pub fn tracked_keys(&self) -> usize {
        self.local.tracked_keys()
    }

    /// Leases of `key` held on Redis now, lapsed ones not counted; `None` when Redis does not
    /// answer (or there is no shared state).
    pub async fn held(&self, key: u64) -> Option<u64> {
        let shared = self.shared.as_ref()?;
        let mut command = redis::cmd("ZCOUNT");
        command
            .arg(shared.key("if", key))
            .arg(format!("({}", SystemClock::shared().epoch_millis()))
            .arg("+inf");
        shared.query::<u64>(command)?.await
    }

    fn local_lease(&self, key: u64) -> Option<RedisLease> {
        let permit = self.local.try_acquire(key)?;
        Some(RedisLease {
            kind: LeaseKind::Local(permit),
        })
    }

    fn take(
        &self,
        key: u64,
        client: Option<(u64, &RedisLockoutStore)>,
    ) -> SharedAnswer<Result<Option<RedisLease>, Unavailable>> {
        let Some(shared) = &self.shared else {
            return SharedAnswer::ready(Ok(self.local_lease(key)));
        };
        let slots = shared.key("if", key);
        let id = format!(
            "{}:{}",
            shared.inner.replica,
            shared.inner.next_lease.fetch_add(1, Ordering::Relaxed)
        );
        let per_key = u64::from(self.local.config().max_per_key);
        let lease_ms = millis(shared.config().lease);
        let mut command = script_command(&shared.inner.scripts.acquire, &[]);
        command
            .arg(if client.is_some() { 3 } else { 1 })
            .arg(&slots);
        let lockout_ms = match client {
            Some((client_key, lockout)) => {
                let (failures, lock) = RedisLockoutStore::keys(shared, client_key);
                command.arg(failures).arg(lock);
                lockout.lockout_ms()
            }
            None => 0,
        };
        command.arg(per_key).arg(lease_ms).arg(&id).arg(lockout_ms);
        let Some(asked) = shared.query::<(i64, i64, i64)>(command) else {
            return SharedAnswer::ready(self.fallback(shared, key));
        };
        let this = self.clone();
        let (shared, client_key) = (shared.clone(), client.map(|(k, _)| k));
        SharedAnswer::pending(async move {
            let Some((taken, kind, ms)) = asked.await else {
                return this.fallback(&shared, key);
            };
            if let (Some(client_key), Some(lockout)) = (client_key, &this.lockout) {
                if taken == 1 && kind >= 0 {
                    lockout.read_ahead(client_key, lock_state(kind, ms));
                }
            }
            if taken != 1 {
                return Ok(None);
            }
            shared.inner.held_leases().insert(id.clone(), slots.clone());
            Ok(Some(RedisLease {
                kind: LeaseKind::Shared {
                    shared,
                    key: slots,
                    id,
                },
            }))
        })
    }

    fn fallback(&self, shared: &RedisState, key: u64) -> Result<Option<RedisLease>, Unavailable> {
        shared
            .fallback(|| self.local_lease(key))
            .ok_or_else(Unavailable::new)
    }
}

impl SlotStore for RedisSlotStore {
    type Lease = RedisLease;
    type Renewal = NoRenewal;
    type AcquireFuture = SharedAnswer<Result<Option<RedisLease>, Unavailable>>;
    type RenewFuture = SharedAnswer<Result<(), Unavailable>>;

    fn key_hasher(&self) -> KeyHasher {
        SlotStore::key_hasher(&self.local)
    }

    fn acquire(&self, key: u64) -> Self::AcquireFuture {
        self.take(key, None)
    }

    fn acquire_for<B>(&self, key: u64, request: &Request<B>) -> Self::AcquireFuture {
        let client = self.lockout.as_ref().and_then(|lockout| {
            let ip = ClientIp::of(request).known()?;
            let mut material = lockout.key_hasher().material();
            material.ip(ip);
            Some((material.finish(), lockout))
        });
        self.take(key, client)
    }

    fn renewal(&self) -> NoRenewal {
        // The process renews all its leases together (`RedisState`), whether or not their
        // responses are polled: nothing travels with the lease.
        NoRenewal
    }

    fn renew(&self, _lease: &RedisLease) -> Self::RenewFuture {
        SharedAnswer::ready(Ok(()))
    }
}
