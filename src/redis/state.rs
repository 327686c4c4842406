//! [`RedisState`]: one connection per process, the scripts, and whether Redis is answering.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script};

use super::config::{OnUnavailable, SharedStateConfig};
use super::scripts;

/// How often a replica whose Redis stopped answering asks again (a `PING`); until one is
/// answered, decisions go straight to the fallback instead of each waiting for the timeout.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// The fallback is logged at most this often (SPEC §7: at most once a minute).
const WARN_EVERY_MS: u64 = 60_000;
/// How long a connection attempt may take, at start-up and on each reconnect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Redis could not be reached at start-up, or the URL is not a Redis URL. Its text never holds the
/// URL (it may carry a password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectError {
    reason: &'static str,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for ConnectError {}

/// The connection to Redis that a process's three shared stores use, with their configuration.
///
/// Cloning shares it. Every decision is one script run (`EVALSHA`) over one multiplexed
/// connection that reconnects by itself. When Redis does not answer within
/// [`timeout`](SharedStateConfig::timeout) the decision falls back
/// ([`OnUnavailable`]) and Redis is marked down: later decisions fall back at once, without
/// waiting, while a background task `PING`s every 250 ms; the first answer brings every store
/// back to shared state, with no restart.
#[derive(Clone)]
pub struct RedisState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) connection: ConnectionManager,
    pub(crate) config: SharedStateConfig,
    pub(crate) scripts: scripts::Scripts,
    /// Distinguishes this process's in-flight leases from every other replica's.
    pub(crate) replica: String,
    pub(crate) next_lease: AtomicU64,
    /// The leases this process holds, id → slot set: renewed together by `renew_leases`.
    pub(crate) leases: Mutex<HashMap<String, String>>,
    down: AtomicBool,
    fallbacks: AtomicU64,
    started: Instant,
    /// Milliseconds since `started` of the last fallback warning, plus one (0: never warned).
    warned_at: AtomicU64,
}

impl fmt::Debug for RedisState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("RedisState")
            .field("config", &self.inner.config)
            .field("available", &self.is_available())
            .field("fallbacks", &self.fallbacks())
            .finish_non_exhaustive()
    }
}

impl RedisState {
    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`, or `rediss://`
    /// is refused: this build has no TLS) and loads the scripts.
    ///
    /// Needs a Tokio runtime: the connection and the probe run on it.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](SharedStateConfig::validate); the message names the field.
    pub async fn connect(url: &str, config: SharedStateConfig) -> Result<Self, ConnectError> {
        let config = config
            .validate()
            .unwrap_or_else(|invalid| panic!("invalid SharedStateConfig: {invalid}"));
        let client = redis::Client::open(url).map_err(|_| ConnectError {
            reason: "not a usable redis:// URL",
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let unreachable = ConnectError {
            reason: "Redis is unreachable",
        };
        let connecting = ConnectionManager::new_with_config(client, manager_config);
        let mut connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| unreachable.clone())?
            .map_err(|_| unreachable.clone())?;
        let scripts = scripts::Scripts::new();
        let loading = scripts.load(&mut connection);
        tokio::time::timeout(CONNECT_TIMEOUT, loading)
            .await
            .map_err(|_| unreachable.clone())?
            .map_err(|_| ConnectError {
                reason: "Redis refused the scripts (Redis 7 or later is needed)",
            })?;
        let state = Self {
            inner: Arc::new(Inner {
                connection,
                config,
                scripts,
                replica: uuid::Uuid::new_v4().simple().to_string(),
                next_lease: AtomicU64::new(0),
                leases: Mutex::new(HashMap::new()),
                down: AtomicBool::new(false),
                fallbacks: AtomicU64::new(0),
                started: Instant::now(),
                warned_at: AtomicU64::new(0),
            }),
        };
        tokio::spawn(probe(Arc::downgrade(&state.inner)));
        tokio::spawn(renew_leases(Arc::downgrade(&state.inner)));
        Ok(state)
    }

    /// The configuration.
    pub fn config(&self) -> &SharedStateConfig {
        &self.inner.config
    }

    /// `false` while Redis is marked down (a decision timed out or failed and no `PING` has been
    /// answered since).
    pub fn is_available(&self) -> bool {
        !self.inner.down.load(Ordering::Relaxed)
    }

    /// Decisions taken by the in-process limiters because Redis could not answer
    /// (`webhook_shared_state_fallbacks_total`).
    pub fn fallbacks(&self) -> u64 {
        self.inner.fallbacks.load(Ordering::Relaxed)
    }

    /// Runs `script` with `keys` and `args`, waiting at most the timeout; `None` (and Redis marked
    /// down) when it does not answer.
    pub(crate) fn run<T: FromRedisValue + Send + 'static>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[u64],
    ) -> Option<impl Future<Output = Option<T>> + Send + 'static> {
        let mut command = script_command(script, keys);
        command.arg(args);
        self.query(command)
    }

    /// Sends `command`, waiting at most the timeout; `None` (and Redis marked down) when it does
    /// not answer. `None` at once, without asking, while Redis is marked down.
    pub(crate) fn query<T: FromRedisValue + Send + 'static>(
        &self,
        mut command: redis::Cmd,
    ) -> Option<impl Future<Output = Option<T>> + Send + 'static> {
        if !self.is_available() {
            return None;
        }
        let mut connection = self.inner.connection.clone();
        let state = self.clone();
        Some(async move {
            let answer = tokio::time::timeout(
                state.inner.config.timeout,
                command_query(&mut command, &mut connection),
            )
            .await;
            match answer {
                Ok(Ok(value)) => Some(value),
                Ok(Err(error))
                    if error.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    // Redis restarted and lost the scripts: load them again, decide locally now.
                    let _ = state.inner.scripts.load(&mut connection).await;
                    state.mark_down();
                    None
                }
                _ => {
                    state.mark_down();
                    None
                }
            }
        })
    }

    /// Sends one command that nobody waits for (releasing a lease), if a runtime is there to run it.
    pub(crate) fn send_and_forget(&self, command: redis::Cmd) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (a test dropping a lease after its runtime): the lease lapses by itself.
            return;
        };
        let mut connection = self.inner.connection.clone();
        let timeout = self.inner.config.timeout.max(Duration::from_secs(1));
        runtime.spawn(async move {
            let _ = tokio::time::timeout(timeout, command.query_async::<()>(&mut connection)).await;
        });
    }

    /// What a decision gets when Redis did not answer: `Some(local answer)` with
    /// `onUnavailable: "local"` (counted, logged at most once a minute), `None` with `"reject"`.
    pub(crate) fn fallback<T>(&self, local: impl FnOnce() -> T) -> Option<T> {
        match self.inner.config.on_unavailable {
            OnUnavailable::Reject => None,
            OnUnavailable::Local => {
                self.inner.fallbacks.fetch_add(1, Ordering::Relaxed);
                self.warn_at_most_once_a_minute();
                Some(local())
            }
        }
    }

    fn warn_at_most_once_a_minute(&self) {
        let inner = &*self.inner;
        let now = u64::try_from(inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = inner.warned_at.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last - 1) >= WARN_EVERY_MS;
        if due
            && inner
                .warned_at
                .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "shared state unavailable: the in-process limiters decide until Redis answers again (onUnavailable: local)"
            );
        }
    }

    fn mark_down(&self) {
        self.inner.down.store(true, Ordering::Relaxed);
    }

    /// The Redis key of `key` in `space` (`rl`, `if`, `af`, `lk`): the prefix, the space and the
    /// key as 16 hex digits, so every key has the same length.
    pub(crate) fn key(&self, space: &str, key: u64) -> String {
        format!("{}{space}:{key:016x}", self.inner.config.key_prefix)
    }
}

/// `EVALSHA` of `script` with `keys` (the caller adds the arguments). Only the hash: the scripts
/// were loaded at connect (and again when Redis comes back, see `probe`), so a decision is one
/// round trip. With no `keys`, the caller writes the key count and keys itself.
pub(crate) fn script_command(script: &Script, keys: &[&str]) -> redis::Cmd {
    let mut command = redis::cmd("EVALSHA");
    command.arg(script.get_hash());
    if !keys.is_empty() {
        command.arg(keys.len()).arg(keys);
    }
    command
}

impl Inner {
    /// The leases this process holds. Inserts and removes are single calls, so a panic elsewhere
    /// cannot leave the map half written: a poisoned lock is used as it is.
    pub(crate) fn held_leases(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn command_query<T: FromRedisValue>(
    command: &mut redis::Cmd,
    connection: &mut ConnectionManager,
) -> redis::RedisResult<T> {
    command.query_async(connection).await
}

/// While Redis is marked down, `PING`s it every [`PROBE_EVERY`]; on the first answer it reloads the
/// scripts (a restarted Redis has none) and marks it available. Ends with the state.
async fn probe(state: Weak<Inner>) {
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(inner) = state.upgrade() else { return };
        if !inner.down.load(Ordering::Relaxed) {
            continue;
        }
        let mut connection = inner.connection.clone();
        let ping = async {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await?;
            inner.scripts.load(&mut connection).await
        };
        if let Ok(Ok(())) = tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
            inner.down.store(false, Ordering::Relaxed);
            tracing::info!("shared state available again: Redis answers");
        }
    }
}

/// Leases renewed by one script run at most: a bounded command however many are held.
const RENEW_BATCH: usize = 512;

/// Every third of the lease length, renews every lease this process holds, in batches of
/// [`RENEW_BATCH`]: a lease lives exactly as long as its response (its body streaming, however
/// slowly, or its handler working) plus at most one lease length after the process dies. Ends
/// with the state.
async fn renew_leases(state: Weak<Inner>) {
    let Some(every) = state.upgrade().map(|inner| inner.config.lease / 3) else {
        return;
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = state.upgrade() else { return };
        let held: Vec<(String, String)> = inner
            .held_leases()
            .iter()
            .map(|(id, key)| (id.clone(), key.clone()))
            .collect();
        let lease_ms = u64::try_from(inner.config.lease.as_millis()).unwrap_or(u64::MAX);
        for batch in held.chunks(RENEW_BATCH) {
            let keys: Vec<&str> = batch.iter().map(|(_, key)| key.as_str()).collect();
            let mut command = script_command(&inner.scripts.renew, &keys);
            command.arg(lease_ms);
            for (id, _) in batch {
                command.arg(id.as_str());
            }
            let mut connection = inner.connection.clone();
            // Not a decision: a renewal may wait longer than the decision timeout, and one that
            // fails is tried again next tick, with most of the lease still to run.
            let _ = tokio::time::timeout(every, command.query_async::<i64>(&mut connection)).await;
        }
    }
}
