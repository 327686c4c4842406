//! [`SqliteStore`]: flows and tasks in one SQLite file, durable on every answer.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::changes::{Change, ChangeFeed, ChangeKind, ChangeSender, ChangeSubscription};
use super::migrate::{self, Migration};
use super::{
    CancelOutcome, FlowEnd, Mutation, MutationOutcome, NewFlow, NewTask, RunTaskOutcome,
    StoreConfig, StoreError, TaskFlowStore, TaskUpdate, TaskUpdateOutcome, mark_cancelled,
};
use crate::clock::{SharedClock, SystemClock};
use crate::taskflow::model::{
    Flow, FlowStatus, NotifyPolicy, Runtime, SyncMode, Task, TaskStatus, TaskSummary, id_string,
    parse_id,
};
use crate::taskflow::notify::{CancelHook, CancelImmediately, ask_to_cancel};

#[cfg(feature = "events")]
mod ledger;

/// How long a statement waits for another process's write lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Expired flows one sweep step removes, so other writes interleave with a long sweep.
const SWEEP_BATCH: usize = 500;
/// Read connections, each on its own thread.
const READERS: usize = 2;

static MIGRATIONS: [Migration; 2] = [
    Migration {
        version: 1,
        name: "flows, tasks and per-owner counters",
        sql: "
CREATE TABLE owners (
    owner_key TEXT PRIMARY KEY,
    flows INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TABLE flows (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_id TEXT NOT NULL UNIQUE,
    owner_key TEXT NOT NULL,
    sync_mode TEXT NOT NULL,
    controller_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    status TEXT NOT NULL,
    notify_policy TEXT NOT NULL,
    goal TEXT NOT NULL,
    current_step TEXT,
    blocked_task_id TEXT,
    blocked_summary TEXT,
    state_json TEXT,
    wait_json TEXT,
    cancel_requested_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    ended_at INTEGER,
    terminal_at INTEGER,
    cancel_pending INTEGER NOT NULL,
    flow_bytes INTEGER NOT NULL
);
CREATE INDEX flows_by_owner ON flows (owner_key, created_at DESC, seq DESC);
CREATE INDEX flows_by_expiry ON flows (terminal_at) WHERE terminal_at IS NOT NULL;
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL UNIQUE,
    flow_seq INTEGER NOT NULL REFERENCES flows (seq) ON DELETE CASCADE,
    runtime TEXT NOT NULL,
    source_id TEXT,
    child_session_key TEXT,
    parent_flow_id TEXT NOT NULL,
    parent_task_id TEXT,
    agent_id TEXT,
    run_id TEXT,
    label TEXT,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    notify_policy TEXT NOT NULL,
    prefer_metadata INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    last_event_at INTEGER,
    progress_summary TEXT,
    owner_key TEXT NOT NULL,
    requester_session_key TEXT NOT NULL,
    task_bytes INTEGER NOT NULL
);
CREATE INDEX tasks_by_flow ON tasks (flow_seq, seq);
CREATE INDEX tasks_by_run_id ON tasks (flow_seq, run_id) WHERE run_id IS NOT NULL;
",
    },
    Migration {
        version: 2,
        name: "event routes' idempotency keys",
        // The key is kept as its SHA-256: a fixed size whatever a sender puts in a header or body.
        // `claim_token` is the claim's while the delivery is handled, NULL once it is recorded;
        // `expires_at` is when the claim lapses or the record is forgotten.
        sql: "
CREATE TABLE idempotency_keys (
    route_id TEXT NOT NULL,
    key_hash BLOB NOT NULL,
    claim_token INTEGER,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (route_id, key_hash)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
",
    },
];

const FLOW_COLUMNS: &str = "flow_id, sync_mode, owner_key, controller_id, revision, status, \
    notify_policy, goal, current_step, blocked_task_id, blocked_summary, state_json, wait_json, \
    cancel_requested_at, created_at, updated_at, ended_at, seq, cancel_pending, flow_bytes";

const TASK_COLUMNS: &str = "task_id, runtime, source_id, child_session_key, parent_flow_id, \
    parent_task_id, agent_id, run_id, label, task, status, notify_policy, prefer_metadata, \
    created_at, started_at, ended_at, last_event_at, progress_summary, owner_key, \
    requester_session_key, seq, task_bytes";

/// The durable [`TaskFlowStore`]: one SQLite file in WAL mode with `synchronous=FULL`, so an
/// answer is on disk before it is sent and a `SIGKILL` right after loses nothing.
///
/// **Threads, not the runtime.** SQLite calls block, so none runs on an async task: one writer
/// thread owns the only write connection and runs the changes waiting for it (up to 64) as one
/// `BEGIN IMMEDIATE` transaction, each in a savepoint of its own, answering each through a oneshot
/// channel once the commit is on disk (group commit: concurrent writers share one `fsync`); two reader threads answer reads from connections of their
/// own. WAL lets them read while the writer commits, so a read never waits behind an `fsync`
/// (the cost of every write), and a read sees every change acknowledged before it was asked.
/// The single writer is no loss: SQLite takes one writer at a time anyway, and one thread keeps
/// its prepared statements warm.
///
/// **Checks inside the write.** The revision check, the caps (counter rows per owner, updated in
/// the same transaction) and `run_task`'s `runId` idempotency run inside the write transaction,
/// so they also hold for several processes on one file (`busy_timeout` makes them take turns).
/// Change notifications reach this process's subscribers only.
///
/// **Caller JSON as text.** `stateJson` and `waitJson` are stored as the JSON text they arrived
/// as (key order and numbers kept), `NULL` for unset and `null` for a stored `null`.
///
/// Cheap to clone: clones share the threads, which stop when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: mpsc::Sender<(WriteJob, Flush)>,
    readers: mpsc::Sender<ReadJob>,
    clock: SharedClock,
    config: StoreConfig,
    hook: Arc<dyn CancelHook>,
    changes: ChangeSender,
}

/// One change, run inside the batch's transaction (`None`: the transaction could not begin); it
/// answers with what to do once the batch's commit is known, and sets the flag if it could not
/// undo a refused change (the whole batch must then be rolled back).
type WriteJob = Box<dyn FnOnce(Option<&Connection>, &mut bool) -> Finish + Send>;

/// Whether a change's commit must reach the disk before it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flush {
    /// `synchronous=FULL`: the WAL is `fsync`ed at commit. Every flow and task change.
    Always,
    /// `synchronous=NORMAL` when a whole batch is of these: committed (other connections and a
    /// restarted process see it) but flushed only by the next `Always` commit or checkpoint, so an
    /// operating-system crash or power loss before then may lose it. For what is worthless unless
    /// a later flushed commit follows (an idempotency claim, whose dispatch commits with a flush).
    WithTheNext,
}
/// Sends a change's answer once its batch's commit succeeded (`Ok`) or failed.
type Finish = Box<dyn FnOnce(&Result<(), StoreError>) + Send>;
/// Changes one commit carries at most: enough to share an `fsync` among many concurrent writers,
/// few enough that one batch stays short.
const MAX_BATCH: usize = 64;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

impl fmt::Debug for SqliteStore {
    // The path may name a customer; the config is safe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn failed(error: impl fmt::Display) -> StoreError {
    StoreError::PersistFailed(error.to_string())
}

fn stopped() -> StoreError {
    StoreError::PersistFailed("the SQLite store's threads have stopped".into())
}

fn millis(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn opt_millis(value: Option<u64>) -> Option<i64> {
    value.map(millis)
}

fn json_text(value: &Option<Value>) -> Option<String> {
    value.as_ref().map(Value::to_string)
}

/// Opens a connection with the store's settings: WAL, `synchronous=FULL` (each commit is
/// `fsync`ed before it is acknowledged), foreign keys for the task cascade, `busy_timeout`.
fn connect(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Applies what the file lacks of [`MIGRATIONS`], under the write lock.
fn migrate(conn: &mut Connection, now: u64) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed)?;
    tx.execute_batch(migrate::SCHEMA_VERSION_TABLE)
        .map_err(failed)?;
    let current: i64 = tx
        .query_row(migrate::CURRENT_VERSION, [], |row| row.get(0))
        .map_err(failed)?;
    let current = u32::try_from(current).unwrap_or(u32::MAX);
    for step in migrate::pending(&MIGRATIONS, current)? {
        tx.execute_batch(step.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![step.version, step.name, millis(now)],
        )
        .map_err(failed)?;
    }
    tx.commit().map_err(failed)
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` with `config`, the system clock and
    /// [`CancelImmediately`]; see [`build`](Self::build).
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StoreError> {
        Self::build(
            path,
            config,
            SystemClock::shared(),
            Arc::new(CancelImmediately),
        )
    }

    /// Opens (creating if needed) the store at `path`, applies the migrations it lacks and starts
    /// its threads. Blocks while it opens the file: call it at startup (or in `spawn_blocking`).
    ///
    /// A file written by a newer version is refused with [`StoreError::SchemaTooNew`]; a file that
    /// cannot be opened or is not a database with [`StoreError::PersistFailed`].
    pub fn build(
        path: impl AsRef<Path>,
        config: StoreConfig,
        clock: SharedClock,
        hook: Arc<dyn CancelHook>,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut writer = connect(&path, false).map_err(failed)?;
        migrate(&mut writer, clock.epoch_millis())?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(connect(&path, true).map_err(failed)?);
        }

        let (write_jobs, write_queue) = mpsc::channel::<(WriteJob, Flush)>();
        thread::Builder::new()
            .name("sqlite-store-writer".into())
            .spawn(move || {
                let mut writer = writer;
                while let Ok(first) = write_queue.recv() {
                    // Group commit: whatever else is already waiting shares this transaction
                    // and its one `fsync`; each change runs in a savepoint of its own, so a
                    // refused one rolls back alone.
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match write_queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    if !commit_batch(&mut writer, batch) {
                        trace_warn!(
                            "SQLite store: synchronous=FULL could not be restored; writes stop"
                        );
                        break;
                    }
                }
            })
            .map_err(failed)?;
        let (read_jobs, read_queue) = mpsc::channel::<ReadJob>();
        let read_queue = Arc::new(Mutex::new(read_queue));
        for (n, reader) in readers.into_iter().enumerate() {
            let queue = Arc::clone(&read_queue);
            thread::Builder::new()
                .name(format!("sqlite-store-reader-{n}"))
                .spawn(move || {
                    loop {
                        // One thread waits on the queue at a time; the others wait for the lock.
                        let job = queue.lock().recv();
                        let Ok(job) = job else { break };
                        job(&reader);
                    }
                })
                .map_err(failed)?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: write_jobs,
                readers: read_jobs,
                clock,
                changes: ChangeSender::new(config.event_capacity),
                config,
                hook,
            }),
        })
    }

    /// The schema version this build writes.
    pub fn schema_version() -> u32 {
        migrate::latest(&MIGRATIONS)
    }

    /// The file the store writes.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `job` on the writer thread, in a savepoint of a `BEGIN IMMEDIATE` transaction that
    /// changes queued at the same time share. An `Err` rolls back this change alone; an `Ok` is
    /// answered once the transaction is committed, then its changes are announced.
    async fn write<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Write<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.write_flushed(Flush::Always, job).await
    }

    /// [`write`](Self::write), with its commit flushed as `flush` says.
    async fn write_flushed<R: Send + 'static>(
        &self,
        flush: Flush,
        job: impl FnOnce(&mut Write<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        let clock = Arc::clone(&self.inner.clock);
        let config = self.inner.config.clone();
        let changes = self.inner.changes.clone();
        let job: WriteJob = Box::new(move |conn, poisoned| {
            let outcome = match conn {
                Some(conn) => run_in_savepoint(conn, &clock, &config, job, poisoned),
                None => Err(failed("the write transaction could not begin")),
            };
            Box::new(move |commit: &Result<(), StoreError>| {
                let answer = match (outcome, commit) {
                    (Ok((value, made)), Ok(())) => {
                        for change in made {
                            changes.send(change);
                        }
                        Ok(value)
                    }
                    (Ok(_), Err(error)) => Err(error.clone()),
                    // Rolled back to its savepoint: certainly not made, whatever the commit did.
                    (Err(error), _) => Err(error),
                };
                let _ = reply.send(answer);
            })
        });
        self.inner
            .writer
            .send((job, flush))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs `job` on a reader thread.
    async fn read<R: Send + 'static>(
        &self,
        job: impl FnOnce(&Read<'_>) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        let now = self.inner.clock.epoch_millis();
        let cutoff = cutoff(&self.inner.config, now);
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(job(&Read { conn, cutoff }).map_err(failed));
        });
        self.inner.readers.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Terminal flows at or before this `terminal_at` have expired (`i64::MIN` without retention).
fn cutoff(config: &StoreConfig, now: u64) -> i64 {
    config
        .retention_millis()
        .map_or(i64::MIN, |retention| millis(now.saturating_sub(retention)))
}

/// Runs one batch of changes in one transaction and answers each once the commit is known. The
/// commit is flushed unless no change in the batch needs it. `false` if the connection can no
/// longer be trusted to flush, and the writer must stop.
fn commit_batch(conn: &mut Connection, batch: Vec<(WriteJob, Flush)>) -> bool {
    let lazy = batch.iter().all(|(_, flush)| *flush == Flush::WithTheNext)
        // If the setting cannot be changed the commit is flushed: slower, never less durable.
        && conn.pragma_update(None, "synchronous", "NORMAL").is_ok();
    let batch = batch.into_iter().map(|(job, _)| job);
    commit_jobs(conn, batch);
    // Never go on lazy: a later change would be answered before its flush. Stopping the writer
    // answers every later write `persist_failed` instead.
    !lazy || conn.pragma_update(None, "synchronous", "FULL").is_ok()
}

fn commit_jobs(conn: &mut Connection, batch: impl Iterator<Item = WriteJob>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            let error = Err(failed(error));
            for job in batch {
                job(None, &mut false)(&error);
            }
            return;
        }
    };
    let mut poisoned = false;
    let finishes: Vec<Finish> = batch.map(|job| job(Some(&tx), &mut poisoned)).collect();
    if poisoned {
        // A refused change could not be undone: nothing of this batch may be committed.
        drop(tx);
        let error = Err(failed(
            "a change could not be rolled back; the batch was abandoned",
        ));
        for finish in finishes {
            finish(&error);
        }
        return;
    }
    // Whether a failed COMMIT left the changes on disk cannot be known (an fsync error may come
    // after the WAL frames were written): say so rather than promise either way.
    let committed = tx
        .commit()
        .map_err(|e| StoreError::OutcomeUnknown(e.to_string()));
    for finish in finishes {
        finish(&committed);
    }
}

/// Runs `job` in a savepoint: kept when it answers `Ok`, rolled back when it answers `Err`.
fn run_in_savepoint<R>(
    conn: &Connection,
    clock: &SharedClock,
    config: &StoreConfig,
    job: impl FnOnce(&mut Write<'_>) -> Result<R, StoreError>,
    poisoned: &mut bool,
) -> Result<(R, Vec<Change>), StoreError> {
    conn.execute_batch("SAVEPOINT change").map_err(failed)?;
    // Read with the write lock held, so timestamps follow commit order.
    let now = clock.epoch_millis();
    let mut write = Write {
        tx: conn,
        now,
        cutoff: cutoff(config, now),
        config,
        changes: Vec::new(),
    };
    match job(&mut write) {
        Ok(answer) => match conn.execute_batch("RELEASE change") {
            Ok(()) => Ok((answer, write.changes)),
            Err(error) => {
                // Still inside the transaction but answered as failed: it must not commit.
                *poisoned = true;
                Err(failed(error))
            }
        },
        Err(error) => {
            if conn
                .execute_batch("ROLLBACK TO change; RELEASE change")
                .is_err()
            {
                *poisoned = true;
            }
            Err(error)
        }
    }
}

/// A flow row with what the store keeps beside the record.
struct FlowRow {
    flow: Flow,
    seq: i64,
    cancel_pending: bool,
    flow_bytes: usize,
}

/// A task row.
struct TaskRow {
    task: Task,
    bytes: usize,
}

fn parse_wire<T>(text: String, parse: impl Fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown value {text:?}").into(),
        )
    })
}

fn parse_uuid(text: String) -> rusqlite::Result<Uuid> {
    parse_wire(text, |t| Uuid::try_parse(t).ok())
}

fn parse_json(text: Option<String>) -> rusqlite::Result<Option<Value>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
    })
    .transpose()
}

fn u64_of(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn opt_u64(value: Option<i64>) -> Option<u64> {
    value.map(u64_of)
}

fn flow_row(row: &Row<'_>) -> rusqlite::Result<FlowRow> {
    let flow = Flow {
        flow_id: parse_uuid(row.get(0)?)?,
        sync_mode: parse_wire(row.get(1)?, SyncMode::from_wire)?,
        owner_key: Arc::from(row.get::<_, String>(2)?),
        controller_id: row.get(3)?,
        revision: u64_of(row.get(4)?),
        status: parse_wire(row.get(5)?, FlowStatus::from_wire)?,
        notify_policy: parse_wire(row.get(6)?, NotifyPolicy::from_wire)?,
        goal: row.get(7)?,
        current_step: row.get(8)?,
        blocked_task_id: row.get(9)?,
        blocked_summary: row.get(10)?,
        state_json: parse_json(row.get(11)?)?,
        wait_json: parse_json(row.get(12)?)?,
        cancel_requested_at: opt_u64(row.get(13)?),
        created_at: u64_of(row.get(14)?),
        updated_at: u64_of(row.get(15)?),
        ended_at: opt_u64(row.get(16)?),
    };
    Ok(FlowRow {
        flow,
        seq: row.get(17)?,
        cancel_pending: row.get(18)?,
        flow_bytes: usize::try_from(row.get::<_, i64>(19)?).unwrap_or(0),
    })
}

fn task_row(row: &Row<'_>) -> rusqlite::Result<TaskRow> {
    let owner: Arc<str> = Arc::from(row.get::<_, String>(18)?);
    let requester: String = row.get(19)?;
    let task = Task {
        task_id: parse_uuid(row.get(0)?)?,
        runtime: parse_wire(row.get(1)?, Runtime::from_wire)?,
        source_id: row.get(2)?,
        child_session_key: row.get(3)?,
        parent_flow_id: parse_uuid(row.get(4)?)?,
        parent_task_id: row.get(5)?,
        agent_id: row.get(6)?,
        run_id: row.get(7)?,
        label: row.get(8)?,
        task: row.get(9)?,
        status: parse_wire(row.get(10)?, TaskStatus::from_wire)?,
        notify_policy: parse_wire(row.get(11)?, NotifyPolicy::from_wire)?,
        prefer_metadata: row.get(12)?,
        created_at: u64_of(row.get(13)?),
        started_at: opt_u64(row.get(14)?),
        ended_at: opt_u64(row.get(15)?),
        last_event_at: opt_u64(row.get(16)?),
        progress_summary: row.get(17)?,
        requester_session_key: if *requester == *owner {
            Arc::clone(&owner)
        } else {
            Arc::from(requester)
        },
        owner_key: owner,
    };
    Ok(TaskRow {
        task,
        bytes: usize::try_from(row.get::<_, i64>(21)?).unwrap_or(0),
    })
}

/// `terminal_at`: what retention measures from, for a terminal flow.
fn terminal_at(flow: &Flow) -> Option<i64> {
    flow.status
        .is_terminal()
        .then(|| millis(flow.ended_at.unwrap_or(flow.updated_at)))
}

/// What a reader sees: committed rows, expired flows hidden.
struct Read<'a> {
    conn: &'a Connection,
    cutoff: i64,
}

impl Read<'_> {
    fn flow(&self, owner: Option<&str>, flow_id: &str) -> rusqlite::Result<Option<FlowRow>> {
        let Some(id) = parse_id(flow_id) else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {FLOW_COLUMNS} FROM flows WHERE flow_id = ?1 \
             AND (?2 IS NULL OR owner_key = ?2) AND (terminal_at IS NULL OR terminal_at > ?3)"
        );
        self.conn
            .prepare_cached(&sql)?
            .query_row(params![id_string(id), owner, self.cutoff], flow_row)
            .optional()
    }

    /// `owner`'s flows, newest first; `first_only` stops at one.
    fn flows(&self, owner: &str, limit: i64) -> rusqlite::Result<Vec<Arc<Flow>>> {
        let sql = format!(
            "SELECT {FLOW_COLUMNS} FROM flows WHERE owner_key = ?1 \
             AND (terminal_at IS NULL OR terminal_at > ?2) \
             ORDER BY created_at DESC, seq DESC LIMIT ?3"
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        let rows = statement.query_map(params![owner, self.cutoff, limit], flow_row)?;
        rows.map(|row| row.map(|row| Arc::new(row.flow))).collect()
    }

    fn tasks(&self, flow_seq: i64) -> rusqlite::Result<Vec<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE flow_seq = ?1 ORDER BY seq");
        let mut statement = self.conn.prepare_cached(&sql)?;
        let rows = statement.query_map([flow_seq], task_row)?;
        rows.map(|row| row.map(|row| row.task)).collect()
    }

    fn task(&self, task_id: &str) -> rusqlite::Result<Option<Task>> {
        let Some(id) = parse_id(task_id) else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {} FROM tasks t JOIN flows f ON f.seq = t.flow_seq \
             WHERE t.task_id = ?1 AND (f.terminal_at IS NULL OR f.terminal_at > ?2)",
            prefixed(TASK_COLUMNS, "t.")
        );
        self.conn
            .prepare_cached(&sql)?
            .query_row(params![id_string(id), self.cutoff], |row| {
                task_row(row).map(|r| r.task)
            })
            .optional()
    }
}

fn prefixed(columns: &str, prefix: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{prefix}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One write transaction, with the clock reading and the changes to announce after commit.
struct Write<'a> {
    tx: &'a Connection,
    now: u64,
    cutoff: i64,
    config: &'a StoreConfig,
    changes: Vec<Change>,
}

impl Write<'_> {
    /// Removes `owner`'s expired flows (all owners' with `None`, at most `limit`), keeping the
    /// counters right; returns how many flows went.
    fn prune(&mut self, owner: Option<&str>, limit: usize) -> Result<usize, StoreError> {
        if self.config.retention.is_none() {
            return Ok(0);
        }
        let expired: Vec<(i64, String, String, i64)> = {
            let mut statement = self
                .tx
                .prepare_cached(
                    "SELECT seq, flow_id, owner_key, flow_bytes FROM flows \
                     WHERE terminal_at <= ?1 AND (?2 IS NULL OR owner_key = ?2) LIMIT ?3",
                )
                .map_err(failed)?;
            let rows = statement
                .query_map(
                    params![self.cutoff, owner, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .map_err(failed)?;
            rows.collect::<rusqlite::Result<_>>().map_err(failed)?
        };
        for (seq, flow_id, owner_key, flow_bytes) in &expired {
            let flow_uuid = Uuid::try_parse(flow_id).map_err(failed)?;
            let tasks: Vec<(String, i64)> = {
                let mut statement = self
                    .tx
                    .prepare_cached("SELECT task_id, task_bytes FROM tasks WHERE flow_seq = ?1")
                    .map_err(failed)?;
                let rows = statement
                    .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(failed)?;
                rows.collect::<rusqlite::Result<_>>().map_err(failed)?
            };
            let task_bytes: i64 = tasks.iter().map(|(_, b)| b).sum();
            self.tx
                .prepare_cached("DELETE FROM flows WHERE seq = ?1")
                .and_then(|mut s| s.execute([seq]))
                .map_err(failed)?;
            self.tx
                .prepare_cached(
                    "UPDATE owners SET flows = flows - 1, bytes = bytes - ?2 WHERE owner_key = ?1",
                )
                .and_then(|mut s| s.execute(params![owner_key, flow_bytes + task_bytes]))
                .map_err(failed)?;
            for (task_id, _) in tasks {
                let task_uuid = Uuid::try_parse(&task_id).map_err(failed)?;
                self.changes
                    .push(Change::task(ChangeKind::TaskRemoved, flow_uuid, task_uuid));
            }
            self.changes
                .push(Change::flow(ChangeKind::FlowRemoved, flow_uuid));
        }
        Ok(expired.len())
    }

    /// Deletes at most `limit` idempotency keys whose record or claim has expired.
    fn forget_expired_keys(&mut self, limit: usize) -> Result<usize, StoreError> {
        self.tx
            .prepare_cached(
                "DELETE FROM idempotency_keys WHERE (route_id, key_hash) IN \
                 (SELECT route_id, key_hash FROM idempotency_keys WHERE expires_at <= ?1 LIMIT ?2)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    millis(self.now),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ])
            })
            .map_err(failed)
    }

    /// `(flows, bytes)` of `owner`.
    fn owner_counts(&self, owner: &str) -> Result<(usize, usize), StoreError> {
        let counts: Option<(i64, i64)> = self
            .tx
            .prepare_cached("SELECT flows, bytes FROM owners WHERE owner_key = ?1")
            .and_then(|mut s| {
                s.query_row([owner], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(failed)?;
        let (flows, bytes) = counts.unwrap_or((0, 0));
        Ok((
            usize::try_from(flows).unwrap_or(0),
            usize::try_from(bytes).unwrap_or(0),
        ))
    }

    fn add_to_owner(&self, owner: &str, flows: i64, bytes: i64) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO owners (owner_key, flows, bytes) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (owner_key) DO UPDATE SET flows = flows + ?2, bytes = bytes + ?3",
            )
            .and_then(|mut s| s.execute(params![owner, flows, bytes]))
            .map(drop)
            .map_err(failed)
    }

    fn flow(&self, owner: Option<&str>, flow_id: &str) -> Result<Option<FlowRow>, StoreError> {
        Read {
            conn: self.tx,
            cutoff: self.cutoff,
        }
        .flow(owner, flow_id)
        .map_err(failed)
    }

    fn task_rows(&self, flow_seq: i64) -> Result<Vec<TaskRow>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE flow_seq = ?1 ORDER BY seq");
        let mut statement = self.tx.prepare_cached(&sql).map_err(failed)?;
        let rows = statement.query_map([flow_seq], task_row).map_err(failed)?;
        rows.collect::<rusqlite::Result<_>>().map_err(failed)
    }

    fn insert_flow(&self, flow: &Flow, flow_bytes: usize) -> Result<i64, StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO flows (flow_id, sync_mode, owner_key, controller_id, revision, \
                 status, notify_policy, goal, current_step, blocked_task_id, blocked_summary, \
                 state_json, wait_json, cancel_requested_at, created_at, updated_at, ended_at, \
                 terminal_at, cancel_pending, flow_bytes) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
                 ?18, 0, ?19)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    flow.id_string(),
                    flow.sync_mode.as_str(),
                    &*flow.owner_key,
                    flow.controller_id,
                    millis(flow.revision),
                    flow.status.as_str(),
                    flow.notify_policy.as_str(),
                    flow.goal,
                    flow.current_step,
                    flow.blocked_task_id,
                    flow.blocked_summary,
                    json_text(&flow.state_json),
                    json_text(&flow.wait_json),
                    opt_millis(flow.cancel_requested_at),
                    millis(flow.created_at),
                    millis(flow.updated_at),
                    opt_millis(flow.ended_at),
                    terminal_at(flow),
                    i64::try_from(flow_bytes).unwrap_or(i64::MAX),
                ])
            })
            .map_err(failed)?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Writes `row` back (every mutable column) and announces the change.
    fn update_flow(&mut self, row: &FlowRow) -> Result<(), StoreError> {
        self.write_flow(row)?;
        self.changes
            .push(Change::flow(ChangeKind::FlowUpdated, row.flow.flow_id));
        Ok(())
    }

    /// Writes `row` back without announcing it: for the store's own bookkeeping
    /// (`cancel_pending`), which no reader sees.
    fn write_flow(&mut self, row: &FlowRow) -> Result<(), StoreError> {
        let flow = &row.flow;
        self.tx
            .prepare_cached(
                "UPDATE flows SET revision = ?2, status = ?3, current_step = ?4, \
                 blocked_task_id = ?5, blocked_summary = ?6, state_json = ?7, wait_json = ?8, \
                 cancel_requested_at = ?9, updated_at = ?10, ended_at = ?11, terminal_at = ?12, \
                 cancel_pending = ?13, flow_bytes = ?14 WHERE seq = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    row.seq,
                    millis(flow.revision),
                    flow.status.as_str(),
                    flow.current_step,
                    flow.blocked_task_id,
                    flow.blocked_summary,
                    json_text(&flow.state_json),
                    json_text(&flow.wait_json),
                    opt_millis(flow.cancel_requested_at),
                    millis(flow.updated_at),
                    opt_millis(flow.ended_at),
                    terminal_at(flow),
                    row.cancel_pending,
                    i64::try_from(row.flow_bytes).unwrap_or(i64::MAX),
                ])
            })
            .map(drop)
            .map_err(failed)
    }

    fn insert_task(&mut self, flow_seq: i64, task: &Task, bytes: usize) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO tasks (task_id, flow_seq, runtime, source_id, child_session_key, \
                 parent_flow_id, parent_task_id, agent_id, run_id, label, task, status, \
                 notify_policy, prefer_metadata, created_at, started_at, ended_at, \
                 last_event_at, progress_summary, owner_key, requester_session_key, task_bytes) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                 ?17, ?18, ?19, ?20, ?21, ?22)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    task.id_string(),
                    flow_seq,
                    task.runtime.as_str(),
                    task.source_id,
                    task.child_session_key,
                    id_string(task.parent_flow_id),
                    task.parent_task_id,
                    task.agent_id,
                    task.run_id,
                    task.label,
                    task.task,
                    task.status.as_str(),
                    task.notify_policy.as_str(),
                    task.prefer_metadata,
                    millis(task.created_at),
                    opt_millis(task.started_at),
                    opt_millis(task.ended_at),
                    opt_millis(task.last_event_at),
                    task.progress_summary,
                    &*task.owner_key,
                    &*task.requester_session_key,
                    i64::try_from(bytes).unwrap_or(i64::MAX),
                ])
            })
            .map_err(failed)?;
        self.changes.push(Change::task(
            ChangeKind::TaskCreated,
            task.parent_flow_id,
            task.task_id,
        ));
        Ok(())
    }

    /// Writes a changed task back, announces it and returns the change in its size.
    fn update_task(&mut self, row: &TaskRow) -> Result<i64, StoreError> {
        let task = &row.task;
        let bytes = task.stored_size();
        self.tx
            .prepare_cached(
                "UPDATE tasks SET status = ?2, started_at = ?3, ended_at = ?4, \
                 last_event_at = ?5, progress_summary = ?6, task_bytes = ?7 WHERE task_id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    task.id_string(),
                    task.status.as_str(),
                    opt_millis(task.started_at),
                    opt_millis(task.ended_at),
                    opt_millis(task.last_event_at),
                    task.progress_summary,
                    i64::try_from(bytes).unwrap_or(i64::MAX),
                ])
            })
            .map_err(failed)?;
        self.changes.push(Change::task(
            ChangeKind::TaskUpdated,
            task.parent_flow_id,
            task.task_id,
        ));
        Ok(delta(row.bytes, bytes))
    }

    /// Marks a flow `cancelled` (revision `+1`).
    fn finish_cancel(&self, row: &mut FlowRow) {
        mark_cancelled(&mut row.flow, self.now);
        row.cancel_pending = false;
    }

    /// Re-measures a changed flow; returns the change in its size.
    fn remeasure(row: &mut FlowRow) -> i64 {
        let old = row.flow_bytes;
        row.flow_bytes = row.flow.stored_size();
        delta(old, row.flow_bytes)
    }
}

fn delta(old: usize, new: usize) -> i64 {
    i64::try_from(new).unwrap_or(i64::MAX) - i64::try_from(old).unwrap_or(i64::MAX)
}

/// What step one of `cancel_flow` left to do.
#[allow(clippy::large_enum_variant)]
enum CancelStep {
    Answer(CancelOutcome),
    AskHook(Vec<Task>),
}

impl ChangeFeed for SqliteStore {
    fn subscribe(&self) -> ChangeSubscription {
        self.inner.changes.subscribe()
    }
}

impl TaskFlowStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.read(|r| r.conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn create_flow(&self, owner: &str, new: NewFlow) -> Result<Flow, StoreError> {
        let owner = owner.to_owned();
        self.write(move |w| {
            w.prune(Some(&owner), usize::MAX)?;
            let (flows, bytes) = w.owner_counts(&owner)?;
            if w.config.max_flows_per_owner.is_some_and(|cap| flows >= cap) {
                return Err(StoreError::CapacityExceeded);
            }
            let now = w.now;
            let flow = new.into_flow(Arc::from(owner.as_str()), now);
            let flow_bytes = flow.stored_size();
            if !w.config.fits(bytes, (0, flow_bytes)) {
                return Err(StoreError::CapacityExceeded);
            }
            w.insert_flow(&flow, flow_bytes)?;
            w.add_to_owner(&owner, 1, delta(0, flow_bytes))?;
            w.changes
                .push(Change::flow(ChangeKind::FlowCreated, flow.flow_id));
            Ok(flow)
        })
        .await
    }

    async fn get_flow(&self, owner: &str, flow_id: &str) -> Result<Option<Flow>, StoreError> {
        let (owner, flow_id) = (owner.to_owned(), flow_id.to_owned());
        self.read(move |r| Ok(r.flow(Some(&owner), &flow_id)?.map(|row| row.flow)))
            .await
    }

    async fn list_flows(&self, owner: &str) -> Result<Vec<Arc<Flow>>, StoreError> {
        let owner = owner.to_owned();
        self.read(move |r| r.flows(&owner, i64::MAX)).await
    }

    async fn find_latest_flow(&self, owner: &str) -> Result<Option<Flow>, StoreError> {
        let owner = owner.to_owned();
        self.read(move |r| {
            Ok(r.flows(&owner, 1)?
                .into_iter()
                .next()
                .map(Arc::unwrap_or_clone))
        })
        .await
    }

    async fn resolve_flow(&self, owner: &str, token: &str) -> Result<Option<Flow>, StoreError> {
        let (owner, token) = (owner.to_owned(), token.to_owned());
        self.read(move |r| {
            if let Some(row) = r.flow(Some(&owner), &token)? {
                return Ok(Some(row.flow));
            }
            if token != owner {
                return Ok(None);
            }
            let flows = r.flows(&owner, i64::MAX)?;
            let pick = flows
                .iter()
                .find(|f| !f.status.is_terminal())
                .or(flows.first());
            Ok(pick.map(|f| Flow::clone(f)))
        })
        .await
    }

    async fn mutate_flow(
        &self,
        owner: &str,
        flow_id: &str,
        expected_revision: u64,
        mutation: Mutation,
    ) -> Result<MutationOutcome, StoreError> {
        let (owner, flow_id) = (owner.to_owned(), flow_id.to_owned());
        self.write(move |w| {
            w.prune(Some(&owner), usize::MAX)?;
            let Some(mut row) = w.flow(Some(&owner), &flow_id)? else {
                return Ok(MutationOutcome::NotFound);
            };
            if row.flow.sync_mode != SyncMode::Managed {
                return Ok(MutationOutcome::NotManaged(row.flow));
            }
            if row.flow.revision != expected_revision {
                return Ok(MutationOutcome::RevisionConflict(row.flow));
            }
            mutation.apply(&mut row.flow, w.now);
            let old_bytes = row.flow_bytes;
            let grown = Write::remeasure(&mut row);
            let (_, stored) = w.owner_counts(&owner)?;
            if !w.config.fits(stored, (old_bytes, row.flow_bytes)) {
                return Err(StoreError::CapacityExceeded);
            }
            w.update_flow(&row)?;
            w.add_to_owner(&owner, 0, grown)?;
            Ok(MutationOutcome::Applied(row.flow))
        })
        .await
    }

    async fn run_task(
        &self,
        owner: &str,
        flow_id: &str,
        new: NewTask,
    ) -> Result<RunTaskOutcome, StoreError> {
        let (owner, flow_id) = (owner.to_owned(), flow_id.to_owned());
        self.write(move |w| {
            w.prune(Some(&owner), usize::MAX)?;
            let Some(row) = w.flow(Some(&owner), &flow_id)? else {
                return Ok(RunTaskOutcome::NotFound);
            };
            let flow = row.flow;
            if flow.sync_mode != SyncMode::Managed {
                return Ok(RunTaskOutcome::NotManaged(flow));
            }
            if flow.cancel_requested_at.is_some() {
                return Ok(RunTaskOutcome::CancelRequested(flow));
            }
            if flow.status.is_terminal() {
                return Ok(RunTaskOutcome::Terminal(flow));
            }
            if let Some(run_id) = &new.run_id {
                let sql = format!(
                    "SELECT {TASK_COLUMNS} FROM tasks WHERE flow_seq = ?1 AND run_id = ?2 \
                     ORDER BY seq"
                );
                let mut statement = w.tx.prepare_cached(&sql).map_err(failed)?;
                let mut rows = statement
                    .query_map(params![row.seq, run_id], task_row)
                    .map_err(failed)?;
                let existing = rows.find_map(|r| match r {
                    Ok(r) if new.is_repeat_of(&r.task) => Some(Ok(r.task)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                });
                if let Some(task) = existing {
                    let task = task.map_err(failed)?;
                    return Ok(RunTaskOutcome::Existing { flow, task });
                }
            }
            if let Some(cap) = w.config.max_tasks_per_flow {
                let count: i64 =
                    w.tx.prepare_cached("SELECT COUNT(*) FROM tasks WHERE flow_seq = ?1")
                        .and_then(|mut s| s.query_row([row.seq], |r| r.get(0)))
                        .map_err(failed)?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= cap {
                    return Err(StoreError::CapacityExceeded);
                }
            }
            let task = new.into_task(flow.flow_id, Arc::clone(&flow.owner_key), w.now);
            let bytes = task.stored_size();
            let (_, stored) = w.owner_counts(&owner)?;
            if !w.config.fits(stored, (0, bytes)) {
                return Err(StoreError::CapacityExceeded);
            }
            w.insert_task(row.seq, &task, bytes)?;
            w.add_to_owner(&owner, 0, delta(0, bytes))?;
            Ok(RunTaskOutcome::Created { flow, task })
        })
        .await
    }

    async fn cancel_flow(&self, owner: &str, flow_id: &str) -> Result<CancelOutcome, StoreError> {
        let (owner_key, id) = (owner.to_owned(), flow_id.to_owned());
        let step = self
            .write(move |w| {
                w.prune(Some(&owner_key), usize::MAX)?;
                let Some(mut row) = w.flow(Some(&owner_key), &id)? else {
                    return Ok(CancelStep::Answer(CancelOutcome::NotFound));
                };
                let tasks = w.task_rows(row.seq)?;
                let tasks_now = || tasks.iter().map(|t| t.task.clone()).collect::<Vec<_>>();
                if row.flow.status.is_terminal() {
                    return Ok(CancelStep::Answer(CancelOutcome::Terminal {
                        flow: row.flow,
                        tasks: tasks_now(),
                    }));
                }
                let active: Vec<Task> = tasks
                    .iter()
                    .filter(|t| t.task.status.is_active())
                    .map(|t| t.task.clone())
                    .collect();
                let first_request = row.flow.cancel_requested_at.is_none();
                if !first_request && !active.is_empty() {
                    return Ok(CancelStep::AskHook(active));
                }
                let now = w.now;
                if first_request {
                    Mutation::RequestCancel.apply(&mut row.flow, now);
                }
                if active.is_empty() {
                    w.finish_cancel(&mut row);
                } else {
                    row.cancel_pending = true;
                }
                let grown = Write::remeasure(&mut row);
                w.update_flow(&row)?;
                w.add_to_owner(&owner_key, 0, grown)?;
                if active.is_empty() {
                    return Ok(CancelStep::Answer(CancelOutcome::Cancelled {
                        flow: row.flow,
                        tasks: tasks_now(),
                    }));
                }
                Ok(CancelStep::AskHook(active))
            })
            .await?;
        let active = match step {
            CancelStep::Answer(answer) => return Ok(answer),
            CancelStep::AskHook(active) => active,
        };
        // Committed and holding nothing: the hook may take its time and may call the store.
        let stopped = ask_to_cancel(&*self.inner.hook, &active).await;
        let (owner_key, id) = (owner.to_owned(), flow_id.to_owned());
        self.write(move |w| {
            let Some(mut row) = w.flow(Some(&owner_key), &id)? else {
                return Ok(CancelOutcome::NotFound);
            };
            let mut tasks = w.task_rows(row.seq)?;
            if row.flow.status.is_terminal() {
                let tasks = tasks.into_iter().map(|t| t.task).collect();
                return Ok(if row.flow.status == FlowStatus::Cancelled {
                    CancelOutcome::Cancelled {
                        flow: row.flow,
                        tasks,
                    }
                } else {
                    CancelOutcome::Terminal {
                        flow: row.flow,
                        tasks,
                    }
                });
            }
            let mut grown = 0;
            for task in tasks
                .iter_mut()
                .filter(|t| t.task.status.is_active() && stopped.contains(&t.task.task_id))
            {
                TaskUpdate::Cancel.apply(&mut task.task, w.now);
                grown += w.update_task(task)?;
            }
            let still_active = tasks.iter().any(|t| t.task.status.is_active());
            if still_active {
                if !row.cancel_pending {
                    row.cancel_pending = true;
                    w.write_flow(&row)?;
                }
            } else {
                w.finish_cancel(&mut row);
                grown += Write::remeasure(&mut row);
                w.update_flow(&row)?;
            }
            w.add_to_owner(&owner_key, 0, grown)?;
            let tasks = tasks.into_iter().map(|t| t.task).collect();
            Ok(if still_active {
                CancelOutcome::Pending {
                    flow: row.flow,
                    tasks,
                }
            } else {
                CancelOutcome::Cancelled {
                    flow: row.flow,
                    tasks,
                }
            })
        })
        .await
    }

    async fn task_summary(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> Result<Option<TaskSummary>, StoreError> {
        let (owner, flow_id) = (owner.to_owned(), flow_id.to_owned());
        self.read(move |r| {
            let Some(row) = r.flow(Some(&owner), &flow_id)? else {
                return Ok(None);
            };
            Ok(Some(TaskSummary::from_tasks(&r.tasks(row.seq)?)))
        })
        .await
    }

    async fn list_tasks(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> Result<Option<Vec<Task>>, StoreError> {
        let (owner, flow_id) = (owner.to_owned(), flow_id.to_owned());
        self.read(move |r| {
            let Some(row) = r.flow(Some(&owner), &flow_id)? else {
                return Ok(None);
            };
            r.tasks(row.seq).map(Some)
        })
        .await
    }

    async fn flow_by_id(&self, flow_id: &str) -> Result<Option<Flow>, StoreError> {
        let flow_id = flow_id.to_owned();
        self.read(move |r| Ok(r.flow(None, &flow_id)?.map(|row| row.flow)))
            .await
    }

    async fn get_task(&self, task_id: &str) -> Result<Option<Task>, StoreError> {
        let task_id = task_id.to_owned();
        self.read(move |r| r.task(&task_id)).await
    }

    async fn update_task(
        &self,
        task_id: &str,
        update: TaskUpdate,
    ) -> Result<TaskUpdateOutcome, StoreError> {
        let task_id = task_id.to_owned();
        self.write(move |w| {
            let Some(task) = (Read {
                conn: w.tx,
                cutoff: w.cutoff,
            })
            .task(&task_id)
            .map_err(failed)?
            else {
                return Ok(TaskUpdateOutcome::NotFound);
            };
            let owner = Arc::clone(&task.owner_key);
            w.prune(Some(&owner), usize::MAX)?;
            let Some(mut flow) = w.flow(Some(&owner), &id_string(task.parent_flow_id))? else {
                return Ok(TaskUpdateOutcome::NotFound);
            };
            let mut tasks = w.task_rows(flow.seq)?;
            let Some(row) = tasks.iter_mut().find(|t| t.task.task_id == task.task_id) else {
                return Ok(TaskUpdateOutcome::NotFound);
            };
            if !update.apply(&mut row.task, w.now) {
                return Ok(TaskUpdateOutcome::Rejected(row.task.clone()));
            }
            let mut grown = w.update_task(row)?;
            let updated = row.task.clone();
            if flow.cancel_pending
                && !flow.flow.status.is_terminal()
                && tasks.iter().all(|t| !t.task.status.is_active())
            {
                w.finish_cancel(&mut flow);
                grown += Write::remeasure(&mut flow);
                w.update_flow(&flow)?;
            }
            w.add_to_owner(&owner, 0, grown)?;
            Ok(TaskUpdateOutcome::Updated(updated))
        })
        .await
    }

    async fn end_flow(
        &self,
        flow_id: &str,
        end: FlowEnd,
        state_json: Option<Value>,
    ) -> Result<Option<Flow>, StoreError> {
        let flow_id = flow_id.to_owned();
        self.write(move |w| {
            let Some(found) = w.flow(None, &flow_id)? else {
                return Ok(None);
            };
            let owner = Arc::clone(&found.flow.owner_key);
            w.prune(Some(&owner), usize::MAX)?;
            let Some(mut row) = w.flow(Some(&owner), &flow_id)? else {
                return Ok(None);
            };
            let now = w.now;
            end.apply(&mut row.flow, state_json, now);
            row.cancel_pending = false;
            let grown = Write::remeasure(&mut row);
            w.update_flow(&row)?;
            w.add_to_owner(&owner, 0, grown)?;
            Ok(Some(row.flow))
        })
        .await
    }

    async fn sweep_expired(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            // One batch per transaction, so webhook writes interleave with a long sweep.
            let batch = self.write(|w| w.prune(None, SWEEP_BATCH)).await?;
            removed += batch;
            if batch < SWEEP_BATCH {
                break;
            }
        }
        // Idempotency keys past their TTL (or lapsed claims) are not flows: not counted.
        while self.write(|w| w.forget_expired_keys(SWEEP_BATCH)).await? == SWEEP_BATCH {}
        Ok(removed)
    }
}
