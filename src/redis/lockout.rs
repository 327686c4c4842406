//! [`RedisLockoutStore`]: failure counts and lockouts on Redis, the in-process lockout as fallback.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::future::SharedAnswer;
use super::state::RedisState;
use crate::auth::AuthLockout;
use crate::keyed::{KeyHasher, LockState, LockoutStore, ShardedLru, Unavailable, WhenFull};
use crate::limit::millis;

/// A lockout state read with an in-flight slot is used by the auth layer right after; one older
/// than this (the request never reached auth) is not used.
const PREFETCH_FRESH_FOR_MS: u128 = 1_000;
/// Lockout states read ahead and not yet used, at most (the oldest go first).
const PREFETCH_CAP: usize = 4_096;

/// The auth lockout's [`LockoutStore`] shared through Redis (SPEC §7): failures counted by every
/// replica lock the client out on all of them, with the numbers of
/// [`LockoutConfig`](crate::auth::LockoutConfig) (20 failures in 60 s lock out for 60 s).
///
/// Keys: `<keyPrefix>af:<16 hex digits>` (the failure count, expiring with its window) and
/// `<keyPrefix>lk:<16 hex digits>` (the lock, expiring with the lockout). A success deletes the
/// count. The check is one round trip, or none when [`RedisSlotStore`](super::RedisSlotStore) read
/// the client's state together with its in-flight slot (the pipeline sets that up with
/// [`RedisSlotStore::reading_lockout`](super::RedisSlotStore::reading_lockout)).
#[derive(Clone)]
pub struct RedisLockoutStore {
    local: AuthLockout,
    shared: Option<RedisState>,
    read_ahead: Arc<ShardedLru<(LockState, Instant)>>,
}

impl fmt::Debug for RedisLockoutStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLockoutStore")
            .field("local", &self.local)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl RedisLockoutStore {
    /// Lockouts shared through `shared`, kept by `local` when Redis cannot answer.
    pub fn new(shared: RedisState, local: AuthLockout) -> Self {
        Self::with(Some(shared), local)
    }

    /// No shared state: `local` decides everything.
    pub fn local_only(local: AuthLockout) -> Self {
        Self::with(None, local)
    }

    fn with(shared: Option<RedisState>, local: AuthLockout) -> Self {
        Self {
            local,
            shared,
            read_ahead: Arc::new(ShardedLru::new(PREFETCH_CAP, WhenFull::EvictLeastRecent)),
        }
    }

    /// The in-process lockout.
    pub fn local(&self) -> &AuthLockout {
        &self.local
    }

    /// The shared state, if any.
    pub fn shared(&self) -> Option<&RedisState> {
        self.shared.as_ref()
    }

    /// The settings (the in-process lockout's, which the shared one counts with).
    pub fn config(&self) -> &crate::auth::LockoutConfig {
        self.local.config()
    }

    /// IPs the in-process lockout tracks (it counts only without shared state or while Redis
    /// cannot answer).
    pub fn tracked_ips(&self) -> usize {
        self.local.tracked_ips()
    }

    /// Whether the in-process lockout has `ip` locked out; [`is_locked_shared`](Self::is_locked_shared)
    /// asks the store that decides.
    pub fn is_locked(&self, ip: std::net::IpAddr) -> bool {
        self.local.is_locked(ip)
    }

    /// Whether `ip` is locked out now, on Redis (or locally without shared state or when Redis
    /// cannot answer).
    pub async fn is_locked_shared(&self, ip: std::net::IpAddr) -> bool {
        let mut material = self.key_hasher().material();
        material.ip(ip);
        matches!(
            self.check(material.finish()).await,
            Ok(LockState::Locked { .. })
        )
    }

    pub(crate) fn keys(shared: &RedisState, key: u64) -> (String, String) {
        (shared.key("af", key), shared.key("lk", key))
    }

    pub(crate) fn lockout_ms(&self) -> u64 {
        millis(self.local.config().lockout)
    }

    /// Keeps the state of `key` read with an in-flight slot for the check that follows.
    pub(crate) fn read_ahead(&self, key: u64, state: LockState) {
        let mut shard = self.read_ahead.shard(key);
        if let Ok(entry) = shard.insert_with(key, || (state, Instant::now()), |_| true) {
            *entry = (state, Instant::now());
        }
    }

    fn take_read_ahead(&self, key: u64) -> Option<LockState> {
        if self.read_ahead.is_empty() {
            return None;
        }
        let (state, at) = self.read_ahead.shard(key).remove(key)?;
        (at.elapsed().as_millis() < PREFETCH_FRESH_FOR_MS).then_some(state)
    }

    fn unavailable<T>(
        shared: &RedisState,
        local: impl FnOnce() -> Result<T, Unavailable>,
    ) -> Result<T, Unavailable> {
        shared.fallback(local).unwrap_or(Err(Unavailable::new()))
    }
}

/// A lockout state as the scripts answer it: `{kind, ms}`.
pub(crate) fn lock_state(kind: i64, ms: i64) -> LockState {
    match kind {
        2 => LockState::Locked {
            retry_after_secs: u64::try_from(ms).unwrap_or(0).div_ceil(1000).max(1),
        },
        1 => LockState::Tracked,
        _ => LockState::Clean,
    }
}

impl LockoutStore for RedisLockoutStore {
    type CheckFuture = SharedAnswer<Result<LockState, Unavailable>>;
    type RecordFuture = SharedAnswer<Result<(), Unavailable>>;

    fn key_hasher(&self) -> KeyHasher {
        LockoutStore::key_hasher(&self.local)
    }

    #[inline]
    fn nobody_failing(&self) -> bool {
        self.shared.is_none() && self.local.nobody_failing()
    }

    fn check(&self, key: u64) -> Self::CheckFuture {
        let Some(shared) = &self.shared else {
            return SharedAnswer::ready(self.local.check(key).into_inner());
        };
        if let Some(state) = self.take_read_ahead(key) {
            return SharedAnswer::ready(Ok(state));
        }
        let (failures, lock) = Self::keys(shared, key);
        let asked = shared.run::<(i64, i64)>(
            &shared.inner.scripts.check,
            &[&failures, &lock],
            &[self.lockout_ms()],
        );
        let local = self.local.clone();
        let Some(asked) = asked else {
            return SharedAnswer::ready(Self::unavailable(shared, || {
                local.check(key).into_inner()
            }));
        };
        let shared = shared.clone();
        SharedAnswer::pending(async move {
            match asked.await {
                Some((kind, ms)) => Ok(lock_state(kind, ms)),
                None => Self::unavailable(&shared, || local.check(key).into_inner()),
            }
        })
    }

    fn record_failure(&self, key: u64) -> Self::RecordFuture {
        let Some(shared) = &self.shared else {
            return SharedAnswer::ready(self.local.record_failure(key).into_inner());
        };
        let config = self.local.config();
        let (failures, lock) = Self::keys(shared, key);
        let asked = shared.run::<i64>(
            &shared.inner.scripts.fail,
            &[&failures, &lock],
            &[
                u64::from(config.max_failures),
                millis(config.window),
                self.lockout_ms(),
            ],
        );
        let local = self.local.clone();
        let Some(asked) = asked else {
            return SharedAnswer::ready(Self::unavailable(shared, || {
                local.record_failure(key).into_inner()
            }));
        };
        let shared = shared.clone();
        SharedAnswer::pending(async move {
            match asked.await {
                Some(_failures) => Ok(()),
                None => Self::unavailable(&shared, || local.record_failure(key).into_inner()),
            }
        })
    }

    fn record_success(&self, key: u64) -> Self::RecordFuture {
        let Some(shared) = &self.shared else {
            return SharedAnswer::ready(self.local.record_success(key).into_inner());
        };
        let (failures, _lock) = Self::keys(shared, key);
        let mut command = redis::cmd("DEL");
        command.arg(&failures);
        let asked = shared.query::<i64>(command);
        let local = self.local.clone();
        let Some(asked) = asked else {
            return SharedAnswer::ready(Self::unavailable(shared, || {
                local.record_success(key).into_inner()
            }));
        };
        let shared = shared.clone();
        SharedAnswer::pending(async move {
            match asked.await {
                Some(_deleted) => Ok(()),
                None => Self::unavailable(&shared, || local.record_success(key).into_inner()),
            }
        })
    }
}
