//! [`RedisWindowStore`]: the fixed-window counters on Redis, the in-process limiter as fallback.

use std::fmt;

use super::future::SharedAnswer;
use super::state::RedisState;
use crate::keyed::{KeyHasher, Unavailable, WindowHit, WindowStore};
use crate::rate_limit::FixedWindowLimiter;

/// The rate limiter's [`WindowStore`] shared through Redis (SPEC §7): the 121st request of a key
/// inside its window is refused whichever replicas counted the first 120, and `Retry-After` is the
/// shared window's time left.
///
/// Each decision is one script: `INCR`, the deadline set on a window's first hit, the time left,
/// and the repair of a key left without expiry; every key expires with its window. Keys are
/// `<keyPrefix>rl:<16 hex digits>` of the local limiter's [`KeyHasher`], so replicas whose
/// hashers share a secret share windows. The window length and quota are the local limiter's.
///
/// Without shared state ([`local_only`](Self::local_only)) it is the local limiter with a
/// ready answer; when Redis cannot answer it is that limiter or `503`, see
/// [`OnUnavailable`](super::OnUnavailable).
#[derive(Clone)]
pub struct RedisWindowStore {
    local: FixedWindowLimiter,
    shared: Option<RedisState>,
    window_ms: u64,
}

impl fmt::Debug for RedisWindowStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisWindowStore")
            .field("local", &self.local)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl RedisWindowStore {
    /// Windows shared through `shared`, counted by `local` when Redis cannot answer.
    pub fn new(shared: RedisState, local: FixedWindowLimiter) -> Self {
        Self::with(Some(shared), local)
    }

    /// No shared state: `local` decides everything.
    pub fn local_only(local: FixedWindowLimiter) -> Self {
        Self::with(None, local)
    }

    fn with(shared: Option<RedisState>, local: FixedWindowLimiter) -> Self {
        Self {
            window_ms: crate::limit::millis(local.config().window),
            local,
            shared,
        }
    }

    /// The in-process limiter.
    pub fn local(&self) -> &FixedWindowLimiter {
        &self.local
    }

    /// The shared state, if any.
    pub fn shared(&self) -> Option<&RedisState> {
        self.shared.as_ref()
    }

    /// The settings (the in-process limiter's, which the shared windows count with).
    pub fn config(&self) -> crate::rate_limit::RateLimitConfig {
        self.local.config()
    }

    /// Keys the in-process limiter tracks (it counts only without shared state or while Redis
    /// cannot answer).
    pub fn tracked_keys(&self) -> usize {
        self.local.tracked_keys()
    }

    /// Counts a request for `key` at a clock reading of the caller's, `now_ms` in Unix
    /// milliseconds, instead of Redis's clock: for tests that compare the shared window with the
    /// in-memory one. Replicas must leave the clock to Redis ([`WindowStore::hit`]): their own
    /// clocks disagree.
    pub fn hit_at(&self, key: u64, now_ms: u64) -> SharedAnswer<Result<WindowHit, Unavailable>> {
        self.count(key, now_ms.max(1))
    }

    fn count(&self, key: u64, reading: u64) -> SharedAnswer<Result<WindowHit, Unavailable>> {
        let Some(shared) = &self.shared else {
            return SharedAnswer::ready(Ok(local_hit(&self.local, key)));
        };
        let max_requests = self.local.config().max_requests;
        let redis_key = shared.key("rl", key);
        let asked = shared.run::<(u64, i64)>(
            &shared.inner.scripts.window,
            &[&redis_key],
            &[self.window_ms, reading],
        );
        let Some(asked) = asked else {
            return SharedAnswer::ready(fallback(shared, &self.local, key));
        };
        let (shared, local) = (shared.clone(), self.local.clone());
        SharedAnswer::pending(async move {
            match asked.await {
                Some((count, left_ms)) => Ok(WindowHit {
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                    max_requests,
                    resets_in_ms: u64::try_from(left_ms).unwrap_or(0),
                }),
                None => fallback(&shared, &local, key),
            }
        })
    }
}

fn local_hit(local: &FixedWindowLimiter, key: u64) -> WindowHit {
    // The in-memory store's answer is ready and never `Unavailable`.
    let answer = WindowStore::hit(local, key).into_inner();
    answer.unwrap_or(WindowHit {
        count: 0,
        max_requests: local.config().max_requests,
        resets_in_ms: 0,
    })
}

fn fallback(
    shared: &RedisState,
    local: &FixedWindowLimiter,
    key: u64,
) -> Result<WindowHit, Unavailable> {
    shared
        .fallback(|| local_hit(local, key))
        .ok_or_else(Unavailable::new)
}

impl WindowStore for RedisWindowStore {
    type HitFuture = SharedAnswer<Result<WindowHit, Unavailable>>;

    fn key_hasher(&self) -> KeyHasher {
        WindowStore::key_hasher(&self.local)
    }

    #[inline]
    fn hit(&self, key: u64) -> Self::HitFuture {
        self.count(key, 0)
    }
}
