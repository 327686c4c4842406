//! [`PostgresStore`]: TaskFlows in PostgreSQL, shared by every replica of the gateway.
//!
//! Any number of processes may use one database at once: they see the same flows in the same
//! `list_flows` order, the revision check holds across them (of several writers holding the same
//! revision, exactly one is applied), the caps hold across them, and a `run_task` repeated on two
//! replicas at once creates one task. A `2xx` answer means the change is committed
//! (`synchronous_commit` is left on).
//!
//! How:
//! - Every write locks its owner's counter row first (`taskflow_owners`), then reads what it
//!   changes and writes it back with `UPDATE … WHERE revision = $expected RETURNING`: the owner's
//!   flows and bytes are counted in that row, so the caps never race (a `count(*)` would, under
//!   READ COMMITTED), and the writes of one owner are serialised as the in-memory store's
//!   per-owner mutex serialises them. `create_flow` does the count and the insert in one statement.
//! - `run_task` is idempotent through a unique index on a digest of the fields
//!   [`NewTask::is_repeat_of`](crate::taskflow::NewTask::is_repeat_of) compares:
//!   `INSERT … ON CONFLICT DO NOTHING`, then the existing task is read.
//! - `stateJson` and `waitJson` are `json` columns (not `jsonb`, which reorders keys and respells
//!   numbers), so they come back exactly as stored.
//! - Statements are prepared once per connection and the statements of one step are pipelined:
//!   a read is one round trip, a mutation two, plus the commit.
//! - Every change sends `NOTIFY` with ids only, in its own transaction;
//!   [`subscribe`](super::ChangeFeed::subscribe) hears the changes of every replica (this
//!   process's own straight after their commit), and is told
//!   ([`ChangeEvent::Lagged`](super::ChangeEvent::Lagged)) when the feed's connection was lost and
//!   it may have missed some. [`connect`](PostgresStore::connect) returns once the feed listens.
//!
//! Tables are created by versioned migrations when the store connects, in the first schema of
//! the connection's `search_path`: `?options=-csearch_path%3Dwebhooks` in the URL puts them in
//! schema `webhooks`, which must exist. A database written by a newer version is refused.
//!
//! A database error answers `503` `persist_failed` and changes nothing; the pool reconnects by
//! itself when the database is back. A connection lost while a commit was in flight cannot tell
//! whether the change happened: that is logged as such (the client still gets `503`, and a retry
//! with the same `expectedRevision` or `runId` is safe). The URL's password never appears in an
//! error, a log line or `Debug`.
//!
//! ```no_run
//! # async fn run() -> Result<(), tower_webhooks::taskflow::StoreError> {
//! use tower_webhooks::taskflow::postgres::PostgresStore;
//! use tower_webhooks::taskflow::{StoreConfig, TaskFlowActionService, TaskFlowRoute};
//!
//! // The password, if any, belongs in a SecretRef or ~/.pgpass, not in a config file.
//! let store = PostgresStore::connect(
//!     "postgres://webhooks@127.0.0.1/webhooks?options=-csearch_path%3Dwebhooks",
//!     StoreConfig::new(),
//! )
//! .await?;
//! let service =
//!     TaskFlowActionService::new(store, TaskFlowRoute::new("hooks", "agent:main:hooks"));
//! # let _ = service;
//! # Ok(())
//! # }
//! ```

mod connection;
#[cfg(feature = "events")]
mod ledger;
mod listen;
mod rows;
mod schema;
mod sql;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

pub use connection::PostgresOptions;

use self::connection::{Checkout, DbFailure, Target};
use self::rows::{
    FlowRow, TaskRow, bytes_to_db, json_param, opt_text_param, opt_to_db, text_param, to_db,
};
use super::{
    CancelOutcome, Change, ChangeFeed, ChangeKind, ChangeSender, ChangeSubscription, FlowEnd,
    Mutation, MutationOutcome, NewFlow, NewTask, RunTaskOutcome, StoreConfig, StoreError,
    TaskFlowStore, TaskUpdate, TaskUpdateOutcome, mark_cancelled,
};
use crate::clock::{SharedClock, SystemClock};
use crate::taskflow::model::{
    Flow, FlowStatus, Runtime, SyncMode, Task, TaskStatus, TaskSummary, parse_id,
};
use crate::taskflow::notify::{CancelHook, CancelImmediately, ask_to_cancel};

/// The caps and retention a store enforces, as the tables count them.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_flows: i64,
    max_tasks: i64,
    max_bytes: i64,
    retention_ms: Option<u64>,
}

impl Limits {
    fn cap(cap: Option<usize>) -> i64 {
        cap.map_or(i64::MAX, |cap| i64::try_from(cap).unwrap_or(i64::MAX))
    }
}

/// The PostgreSQL [`TaskFlowStore`]; see the [module documentation](self).
///
/// Cheap to clone: clones share one pool and one change feed.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    target: Arc<Target>,
    limits: Limits,
    options: PostgresOptions,
    clock: SharedClock,
    hook: Arc<dyn CancelHook>,
    schema: String,
    channel: String,
    changes: ChangeSender,
    // Prefixes this store's `NOTIFY` payloads: its own subscribers hear its changes straight
    // after each commit, in commit order, and its feed skips the echo.
    origin: String,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl fmt::Debug for PostgresStore {
    // The URL may hold a password: show where the tables are, not how to reach them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("limits", &self.inner.limits)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

fn task_change(kind: ChangeKind, task: &Task) -> Change {
    Change::task(kind, task.parent_flow_id, task.task_id)
}

/// Flows removed in one sweep step at most: one owner's lock is held for no longer than that.
const SWEEP_BATCH: i64 = 500;

/// How [`PostgresStore::statement`] commits the one statement it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Autocommit {
    /// A read: nothing to commit, and a failure changed nothing.
    Read,
    /// A write, committed with the WAL flushed (`synchronous_commit` on).
    Write,
    /// A write with `synchronous_commit` off for its transaction: committed and seen by every
    /// replica at once, but flushed by the next synchronous commit (or within the WAL writer's
    /// delay), so a database crash before then may lose it. For what is worthless unless a later
    /// synchronous commit follows (an idempotency claim, whose dispatch commits synchronously and
    /// so flushes the claim before it).
    #[cfg(feature = "events")]
    UnflushedWrite,
}

/// The first step of `cancel_flow`: an answer already, or the tasks to ask the hook about. Lives
/// on the stack for one call, so the size difference between its variants is not worth a box.
#[allow(clippy::large_enum_variant)]
enum CancelStep {
    Answer(CancelOutcome),
    AskHook(Vec<Task>),
}

impl PostgresStore {
    /// Connects to `url`, applies the migrations this version needs, and starts the change feed.
    ///
    /// Fails if the database cannot be reached, the `search_path` names no existing schema, or
    /// the schema was written by a newer version. The error names the problem, never the URL's
    /// password.
    pub async fn connect(url: &str, config: StoreConfig) -> Result<Self, StoreError> {
        Self::build(
            url,
            config,
            PostgresOptions::default(),
            SystemClock::shared(),
            Arc::new(CancelImmediately),
        )
        .await
    }

    /// [`connect`](Self::connect) with pool `options`, a `clock` for every timestamp and for
    /// retention, and a `hook` for child-task cancellation.
    pub async fn build(
        url: &str,
        config: StoreConfig,
        options: PostgresOptions,
        clock: SharedClock,
        hook: Arc<dyn CancelHook>,
    ) -> Result<Self, StoreError> {
        let target = Arc::new(Target::parse(url, &options)?);
        let pool = target.pool(&options)?;
        let mut object = pool.get().await.map_err(|error| {
            StoreError::PersistFailed(target.redact(format!("cannot reach PostgreSQL: {error}")))
        })?;
        let migrated = schema::migrate(&mut object).await;
        if migrated.is_err() {
            // Its transaction may still be open: close the connection rather than pool it.
            drop(deadpool_postgres::Object::take(object));
        } else {
            drop(object);
        }
        let schema = migrated.map_err(|error| match error {
            schema::SchemaError::NoSchema => StoreError::PersistFailed(
                "PostgreSQL: the connection's search_path names no existing schema to create the \
                 tables in; create it, or name one with ?options=-csearch_path%3D<schema>"
                    .into(),
            ),
            schema::SchemaError::Refused(error) => error,
            schema::SchemaError::Driver(error) => {
                StoreError::PersistFailed(target.redact(format!(
                    "PostgreSQL: migrating the schema failed: {}",
                    connection::describe(&error)
                )))
            }
        })?;
        let channel = listen::channel_name(&schema);
        let changes = ChangeSender::new(config.event_capacity);
        let origin = Uuid::new_v4().simple().to_string();
        let (listening, listened) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen::run(
            Arc::clone(&target),
            channel.clone(),
            origin.clone(),
            changes.clone(),
            Duration::from_secs(30),
            Some(listening),
        ));
        // A store answers only once its feed listens: a subscriber then hears every change
        // committed after `connect` returned, on any replica.
        let feed = tokio::time::timeout(options.connect_timeout.saturating_mul(2), listened).await;
        match feed {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(reason))) => {
                listener.abort();
                return Err(StoreError::PersistFailed(format!(
                    "PostgreSQL: cannot listen for changes: {reason}"
                )));
            }
            Ok(Err(_)) | Err(_) => {
                listener.abort();
                return Err(StoreError::PersistFailed(
                    "PostgreSQL: the change feed did not start in time".into(),
                ));
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                target,
                limits: Limits {
                    max_flows: Limits::cap(config.max_flows_per_owner),
                    max_tasks: Limits::cap(config.max_tasks_per_flow),
                    max_bytes: Limits::cap(config.max_bytes_per_owner),
                    retention_ms: config.retention_millis(),
                },
                options,
                clock,
                hook,
                schema,
                channel,
                changes,
                origin,
                listener,
            }),
        })
    }

    /// The schema version this build writes.
    pub fn schema_version() -> u32 {
        schema::LATEST
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The `NOTIFY` payload of `change`: this store's origin and the change's ids, nothing else.
    fn payload(&self, change: Change) -> String {
        format!("{} {}", self.inner.origin, change.encode())
    }

    /// Tells this store's own subscribers about changes that are now committed (other replicas
    /// hear them through `NOTIFY`).
    fn announce(&self, changes: &[Change]) {
        for change in changes {
            self.inner.changes.send(*change);
        }
    }

    /// Now minus the retention period: a terminal flow that ended at or before it is expired.
    fn cutoff(&self) -> i64 {
        match self.inner.limits.retention_ms {
            Some(retention) => {
                to_db(self.inner.clock.epoch_millis()).saturating_sub(to_db(retention))
            }
            None => i64::MIN,
        }
    }

    /// Removes `owner`'s expired flows inside the caller's transaction, which holds the owner's
    /// lock; answers how many flows went and the changes to notify.
    async fn sweep_owner_locked(
        &self,
        client: &deadpool_postgres::Object,
        owner: &str,
        cutoff: i64,
    ) -> Result<(usize, Vec<Change>), StoreError> {
        let sweep = client
            .prepare_cached(sql::SWEEP_OWNER)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let (mut flows, mut payloads) = (0, Vec::new());
        loop {
            let rows = client
                .query(&sweep, &[&owner, &cutoff, &SWEEP_BATCH])
                .await
                .map_err(|e| self.failed(&e, false))?;
            let mut removed = 0;
            for row in &rows {
                let flow_id: Uuid = row.get(0);
                match row.get::<_, Option<Uuid>>(1) {
                    Some(task_id) => {
                        payloads.push(Change::task(ChangeKind::TaskRemoved, flow_id, task_id));
                    }
                    None => {
                        removed += 1;
                        payloads.push(Change::flow(ChangeKind::FlowRemoved, flow_id));
                    }
                }
            }
            flows += removed;
            if i64::try_from(removed).unwrap_or(i64::MAX) < SWEEP_BATCH {
                return Ok((flows, payloads));
            }
        }
    }

    /// Whether `owner` has room for `grow` more bytes, in a transaction holding the owner's lock.
    /// Expired flows count against no cap: when the count says no, they are removed first (in
    /// this transaction) and the count read again. Answers the notifications of what was removed.
    async fn room_for(
        &self,
        client: &deadpool_postgres::Object,
        owner: &str,
        owner_bytes: i64,
        grow: i64,
    ) -> Result<(bool, Vec<Change>), StoreError> {
        let max = self.inner.limits.max_bytes;
        if grow <= 0 || owner_bytes.saturating_add(grow) <= max {
            return Ok((true, Vec::new()));
        }
        if self.inner.limits.retention_ms.is_none() {
            return Ok((false, Vec::new()));
        }
        let (removed, payloads) = self
            .sweep_owner_locked(client, owner, self.cutoff())
            .await?;
        if removed == 0 {
            return Ok((false, payloads));
        }
        let lock = client
            .prepare_cached(sql::LOCK_OWNER)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let bytes: i64 = client
            .query_opt(&lock, &[&owner])
            .await
            .map_err(|e| self.failed(&e, false))?
            .map_or(0, |row| row.get(1));
        Ok((bytes.saturating_add(grow) <= max, payloads))
    }

    /// `notify` then `COMMIT`, pipelined.
    async fn notify_and_commit(
        &self,
        client: &deadpool_postgres::Object,
        changes: &[Change],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| self.failed(&e, true));
        }
        let notify = client
            .prepare_cached(sql::NOTIFY_MANY)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let payloads: Vec<String> = changes.iter().map(|c| self.payload(*c)).collect();
        let params: [&(dyn ToSql + Sync); 2] = [&self.inner.channel, &payloads];
        tokio::try_join!(
            biased;
            client.query(&notify, &params),
            client.batch_execute("COMMIT"),
        )
        .map_err(|e| self.failed(&e, true))?;
        self.announce(changes);
        Ok(())
    }

    /// Sends `NOTIFY` for `changes` inside the caller's transaction (heard once it commits).
    async fn notify_in_transaction(
        &self,
        client: &deadpool_postgres::Object,
        changes: &[Change],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let notify = client
            .prepare_cached(sql::NOTIFY_MANY)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let payloads: Vec<String> = changes.iter().map(|c| self.payload(*c)).collect();
        client
            .query(&notify, &[&self.inner.channel, &payloads])
            .await
            .map_err(|e| self.failed(&e, false))?;
        Ok(())
    }

    /// Sweeps `owner` in a transaction of its own: for a cap that expired flows may be holding.
    async fn sweep_owner(&self, owner: &str) -> Result<usize, StoreError> {
        let conn = self.checkout().await?;
        let client = conn.client();
        let lock = client
            .prepare_cached(sql::LOCK_OWNER)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let lock_params: [&(dyn ToSql + Sync); 1] = [&owner];
        tokio::try_join!(
            biased;
            client.batch_execute("BEGIN"),
            client.query_opt(&lock, &lock_params),
        )
        .map_err(|e| self.failed(&e, false))?;
        let (removed, payloads) = self
            .sweep_owner_locked(client, owner, self.cutoff())
            .await?;
        self.notify_and_commit(client, &payloads).await?;
        conn.release();
        Ok(removed)
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        if self.inner.limits.retention_ms.is_none() {
            return Ok(0);
        }
        let cutoff = self.cutoff();
        let mut removed = 0;
        loop {
            let owners = self
                .timed(
                    false,
                    self.read(sql::EXPIRED_OWNERS, &[&cutoff, &SWEEP_BATCH]),
                )
                .await?;
            for row in &owners {
                let owner: String = row.get(0);
                removed += self.timed(true, self.sweep_owner(&owner)).await?;
            }
            // Each owner listed is now clean up to `cutoff`; a full page means there may be more.
            if i64::try_from(owners.len()).unwrap_or(i64::MAX) < SWEEP_BATCH {
                return Ok(removed);
            }
        }
    }

    async fn checkout(&self) -> Result<Checkout, StoreError> {
        let object = self.inner.pool.get().await.map_err(|error| {
            let (DbFailure::NotApplied(text) | DbFailure::Unknown(text)) =
                DbFailure::pool(&self.inner.target, &error);
            StoreError::PersistFailed(text)
        })?;
        Ok(Checkout::new(object))
    }

    /// The store error for a failed call; logs an unknown commit outcome as such.
    fn failed(&self, error: &tokio_postgres::Error, committing: bool) -> StoreError {
        match DbFailure::from_driver(&self.inner.target, error, committing) {
            DbFailure::NotApplied(text) => StoreError::PersistFailed(text),
            DbFailure::Unknown(text) => unknown_outcome(text),
        }
    }

    /// Runs one operation within the operation timeout. A write that runs out of time may have
    /// committed or not: it is reported as an unknown outcome.
    async fn timed<T>(
        &self,
        write: bool,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.options.operation_timeout, operation).await {
            Ok(result) => result,
            Err(_) => {
                let text = format!(
                    "PostgreSQL did not answer within {:?}",
                    self.inner.options.operation_timeout
                );
                Err(if write {
                    unknown_outcome(text)
                } else {
                    StoreError::PersistFailed(text)
                })
            }
        }
    }

    /// Ends a transaction that changed nothing and hands the connection back.
    async fn roll_back(&self, conn: Checkout) -> Result<(), StoreError> {
        conn.client()
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| self.failed(&e, false))?;
        conn.release();
        Ok(())
    }

    /// `BEGIN`, the owner's row lock and one more read, pipelined: one round trip.
    async fn begin_locked(
        &self,
        conn: &Checkout,
        owner: &str,
        read: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Option<Row>, Vec<Row>), StoreError> {
        let client = conn.client();
        let (lock, read) = tokio::try_join!(
            client.prepare_cached(sql::LOCK_OWNER),
            client.prepare_cached(read)
        )
        .map_err(|e| self.failed(&e, false))?;
        let lock_params: [&(dyn ToSql + Sync); 1] = [&owner];
        let (_, owner_row, rows) = tokio::try_join!(
            biased;
            client.batch_execute("BEGIN"),
            client.query_opt(&lock, &lock_params),
            client.query(&read, params),
        )
        .map_err(|e| self.failed(&e, false))?;
        Ok((owner_row, rows))
    }

    /// Writes `changed` over `before` (checked and set on `before`'s revision) and commits, in
    /// one round trip. `None` if the revision moved, which the owner's lock rules out.
    async fn write_flow_and_commit(
        &self,
        conn: Checkout,
        before: &FlowRow,
        changed: &Flow,
        cancel_pending: bool,
    ) -> Result<Flow, StoreError> {
        self.write_flow_and_commit_after(conn, before, changed, cancel_pending, &[])
            .await
    }

    /// [`write_flow_and_commit`](Self::write_flow_and_commit) in a transaction that already made
    /// (and notified) the `earlier` changes: they are announced to this store's subscribers after
    /// the commit, before the flow's own.
    async fn write_flow_and_commit_after(
        &self,
        conn: Checkout,
        before: &FlowRow,
        changed: &Flow,
        cancel_pending: bool,
        earlier: &[Change],
    ) -> Result<Flow, StoreError> {
        let client = conn.client();
        let write = client
            .prepare_cached(sql::WRITE_FLOW)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let flow_bytes = bytes_to_db(changed.stored_size());
        let delta = flow_bytes - before.flow_bytes;
        let change = Change::flow(ChangeKind::FlowUpdated, changed.flow_id);
        let payload = self.payload(change);
        let (state_json, wait_json) = (
            json_param(&changed.state_json),
            json_param(&changed.wait_json),
        );
        let (expected, revision, status) = (
            to_db(before.flow.revision),
            to_db(changed.revision),
            changed.status.as_str(),
        );
        let (cancel_requested_at, updated_at, ended_at) = (
            opt_to_db(changed.cancel_requested_at),
            to_db(changed.updated_at),
            opt_to_db(changed.ended_at),
        );
        let owner: &str = &changed.owner_key;
        let params: [&(dyn ToSql + Sync); 18] = [
            &changed.flow_id,
            &expected,
            &revision,
            &status,
            &opt_text_param(&changed.current_step),
            &opt_text_param(&changed.blocked_task_id),
            &opt_text_param(&changed.blocked_summary),
            &state_json,
            &wait_json,
            &cancel_requested_at,
            &updated_at,
            &ended_at,
            &cancel_pending,
            &flow_bytes,
            &delta,
            &owner,
            &self.inner.channel,
            &payload,
        ];
        let (rows, ()) = tokio::try_join!(
            biased;
            client.query(&write, &params),
            client.batch_execute("COMMIT"),
        )
        .map_err(|e| self.failed(&e, true))?;
        conn.release();
        let row = rows.first().ok_or_else(|| {
            StoreError::PersistFailed("flow revision moved under its owner's lock".into())
        })?;
        self.announce(earlier);
        self.announce(&[change]);
        Ok(rows::flow(row, 0)?.flow)
    }

    async fn create(&self, owner: &str, new: NewFlow) -> Result<Flow, StoreError> {
        let now = self.inner.clock.epoch_millis();
        let flow = new.into_flow(Arc::from(owner), now);
        let size = bytes_to_db(flow.stored_size());
        let limits = self.inner.limits;
        // The statement's cap check guards an existing owner's row; a new owner's first flow is
        // checked here.
        if limits.max_flows < 1 || size > limits.max_bytes {
            return Err(StoreError::CapacityExceeded);
        }
        if self.insert_flow(owner, &flow, size).await? {
            return Ok(flow);
        }
        // Expired flows count against no cap: reclaim them, and if that made room, try again.
        if self.inner.limits.retention_ms.is_some()
            && self.sweep_owner(owner).await? > 0
            && self.insert_flow(owner, &flow, size).await?
        {
            return Ok(flow);
        }
        Err(StoreError::CapacityExceeded)
    }

    /// The counted insert of `create_flow`; `false` if a cap refused it.
    async fn insert_flow(&self, owner: &str, flow: &Flow, size: i64) -> Result<bool, StoreError> {
        let limits = self.inner.limits;
        let now = to_db(flow.created_at);
        let conn = self.checkout().await?;
        let client = conn.client();
        let statement = client
            .prepare_cached(sql::CREATE_FLOW)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let (state_json, wait_json) = (json_param(&flow.state_json), json_param(&flow.wait_json));
        let rows = client
            .query(
                &statement,
                &[
                    &owner,
                    &size,
                    &limits.max_flows,
                    &limits.max_bytes,
                    &flow.flow_id,
                    &flow.sync_mode.as_str(),
                    &text_param(&flow.controller_id),
                    &flow.status.as_str(),
                    &flow.notify_policy.as_str(),
                    &text_param(&flow.goal),
                    &opt_text_param(&flow.current_step),
                    &state_json,
                    &wait_json,
                    &now,
                    &opt_to_db(flow.ended_at),
                    &self.inner.channel,
                    &self.payload(Change::flow(ChangeKind::FlowCreated, flow.flow_id)),
                ],
            )
            .await
            .map_err(|e| self.failed(&e, true))?;
        conn.release();
        if rows.is_empty() {
            return Ok(false);
        }
        self.announce(&[Change::flow(ChangeKind::FlowCreated, flow.flow_id)]);
        Ok(true)
    }

    /// One statement in a transaction of its own, and the rows it returns. A connection lost while
    /// a write ran leaves its outcome unknown.
    async fn statement(
        &self,
        mode: Autocommit,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let conn = self.checkout().await?;
        let client = conn.client();
        let statement = client
            .prepare_cached(statement)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let rows = match mode {
            // Pipelined: one round trip. If the statement fails, `COMMIT` ends the aborted
            // transaction as a rollback, and the connection is closed rather than pooled.
            #[cfg(feature = "events")]
            Autocommit::UnflushedWrite => tokio::try_join!(
                client.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
                client.query(&statement, params),
                client.batch_execute("COMMIT"),
            )
            .map(|((), rows, ())| rows),
            Autocommit::Read | Autocommit::Write => client.query(&statement, params).await,
        }
        .map_err(|e| self.failed(&e, mode != Autocommit::Read))?;
        conn.release();
        Ok(rows)
    }

    /// One read-only query, no transaction.
    async fn read(
        &self,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.statement(Autocommit::Read, statement, params).await
    }

    async fn read_flow(
        &self,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Flow>, StoreError> {
        let rows = self.read(statement, params).await?;
        rows.first()
            .map(|row| rows::flow(row, 0).map(|r| r.flow))
            .transpose()
    }

    async fn mutate(
        &self,
        owner: &str,
        flow_id: &str,
        expected_revision: u64,
        mutation: Mutation,
    ) -> Result<MutationOutcome, StoreError> {
        let Some(id) = parse_id(flow_id) else {
            return Ok(MutationOutcome::NotFound);
        };
        let conn = self.checkout().await?;
        let (owner_row, rows) = self
            .begin_locked(&conn, owner, sql::GET_FLOW, &[&id, &owner, &self.cutoff()])
            .await?;
        let Some(row) = rows.first() else {
            self.roll_back(conn).await?;
            return Ok(MutationOutcome::NotFound);
        };
        let before = rows::flow(row, 0)?;
        if before.flow.sync_mode != SyncMode::Managed {
            self.roll_back(conn).await?;
            return Ok(MutationOutcome::NotManaged(before.flow));
        }
        if before.flow.revision != expected_revision {
            self.roll_back(conn).await?;
            return Ok(MutationOutcome::RevisionConflict(before.flow));
        }
        let mut changed = before.flow.clone();
        mutation.apply(&mut changed, self.inner.clock.epoch_millis());
        let owner_bytes: i64 = owner_row.as_ref().map_or(0, |r| r.get(1));
        let delta = bytes_to_db(changed.stored_size()) - before.flow_bytes;
        let (room, removed) = self
            .room_for(conn.client(), owner, owner_bytes, delta)
            .await?;
        if !room {
            self.roll_back(conn).await?;
            return Err(StoreError::CapacityExceeded);
        }
        self.notify_in_transaction(conn.client(), &removed).await?;
        let flow = self
            .write_flow_and_commit_after(conn, &before, &changed, before.cancel_pending, &removed)
            .await?;
        Ok(MutationOutcome::Applied(flow))
    }

    async fn run(
        &self,
        owner: &str,
        flow_id: &str,
        new: NewTask,
    ) -> Result<RunTaskOutcome, StoreError> {
        let Some(id) = parse_id(flow_id) else {
            return Ok(RunTaskOutcome::NotFound);
        };
        let repeat_key = rows::new_task_repeat_key(&new);
        let conn = self.checkout().await?;
        let client = conn.client();
        let (lock, get, find) = tokio::try_join!(
            client.prepare_cached(sql::LOCK_OWNER),
            client.prepare_cached(sql::GET_FLOW),
            client.prepare_cached(sql::FIND_REPEAT),
        )
        .map_err(|e| self.failed(&e, false))?;
        let lock_params: [&(dyn ToSql + Sync); 1] = [&owner];
        let cutoff = self.cutoff();
        let get_params: [&(dyn ToSql + Sync); 3] = [&id, &owner, &cutoff];
        let (_, owner_row, flow_rows, repeat) = tokio::try_join!(
            biased;
            client.batch_execute("BEGIN"),
            client.query_opt(&lock, &lock_params),
            client.query(&get, &get_params),
            async {
                match &repeat_key {
                    Some(key) => client.query_opt(&find, &[&id, key]).await,
                    None => Ok(None),
                }
            },
        )
        .map_err(|e| self.failed(&e, false))?;
        let Some(row) = flow_rows.first() else {
            self.roll_back(conn).await?;
            return Ok(RunTaskOutcome::NotFound);
        };
        let parent = rows::flow(row, 0)?;
        let flow = parent.flow;
        let refused = if flow.sync_mode != SyncMode::Managed {
            Some(RunTaskOutcome::NotManaged as fn(Flow) -> RunTaskOutcome)
        } else if flow.cancel_requested_at.is_some() {
            Some(RunTaskOutcome::CancelRequested as fn(Flow) -> RunTaskOutcome)
        } else if flow.status.is_terminal() {
            Some(RunTaskOutcome::Terminal as fn(Flow) -> RunTaskOutcome)
        } else {
            None
        };
        if let Some(refused) = refused {
            self.roll_back(conn).await?;
            return Ok(refused(flow));
        }
        if let Some(existing) = repeat {
            let task = rows::task(&existing, 0)?.task;
            if new.is_repeat_of(&task) {
                self.roll_back(conn).await?;
                return Ok(RunTaskOutcome::Existing { flow, task });
            }
        }
        let limits = self.inner.limits;
        if i64::from(parent.task_count) >= limits.max_tasks {
            self.roll_back(conn).await?;
            return Err(StoreError::CapacityExceeded);
        }
        let task = new.into_task(
            flow.flow_id,
            Arc::clone(&flow.owner_key),
            self.inner.clock.epoch_millis(),
        );
        let size = bytes_to_db(task.stored_size());
        let owner_bytes: i64 = owner_row.as_ref().map_or(0, |r| r.get(1));
        let (room, removed) = self.room_for(client, owner, owner_bytes, size).await?;
        if !room {
            self.roll_back(conn).await?;
            return Err(StoreError::CapacityExceeded);
        }
        self.notify_in_transaction(client, &removed).await?;
        let insert = client
            .prepare_cached(sql::INSERT_TASK)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let payload = self.payload(task_change(ChangeKind::TaskCreated, &task));
        let (owner_key, requester): (&str, &str) = (&task.owner_key, &task.requester_session_key);
        let (runtime, status, policy) = (
            task.runtime.as_str(),
            task.status.as_str(),
            task.notify_policy.as_str(),
        );
        let (created_at, started_at, ended_at, last_event_at) = (
            to_db(task.created_at),
            opt_to_db(task.started_at),
            opt_to_db(task.ended_at),
            opt_to_db(task.last_event_at),
        );
        let params: [&(dyn ToSql + Sync); 24] = [
            &task.task_id,
            &task.parent_flow_id,
            &repeat_key,
            &owner_key,
            &requester,
            &runtime,
            &opt_text_param(&task.source_id),
            &opt_text_param(&task.child_session_key),
            &opt_text_param(&task.parent_task_id),
            &opt_text_param(&task.agent_id),
            &opt_text_param(&task.run_id),
            &opt_text_param(&task.label),
            &text_param(&task.task),
            &status,
            &policy,
            &task.prefer_metadata,
            &created_at,
            &started_at,
            &ended_at,
            &last_event_at,
            &opt_text_param(&task.progress_summary),
            &size,
            &self.inner.channel,
            &payload,
        ];
        let (inserted, raced, ()) = tokio::try_join!(
            biased;
            client.query(&insert, &params),
            // Then read: if the insert met a task with the same key (a writer that did not take
            // the owner's lock), that task is the answer.
            async {
                match &repeat_key {
                    Some(key) => client.query_opt(&find, &[&id, key]).await,
                    None => Ok(None),
                }
            },
            client.batch_execute("COMMIT"),
        )
        .map_err(|e| self.failed(&e, true))?;
        conn.release();
        self.announce(&removed);
        if inserted.is_empty() {
            let existing = raced.ok_or_else(|| {
                StoreError::PersistFailed("run_task: neither inserted nor found".into())
            })?;
            let task = rows::task(&existing, 0)?.task;
            return Ok(RunTaskOutcome::Existing { flow, task });
        }
        self.announce(&[task_change(ChangeKind::TaskCreated, &task)]);
        Ok(RunTaskOutcome::Created { flow, task })
    }

    /// `BEGIN`, the owner's lock, the flow (if live and owned) and its tasks: one round trip.
    async fn begin_with_tasks(
        &self,
        conn: &Checkout,
        owner: &str,
        id: Uuid,
    ) -> Result<Option<(FlowRow, Vec<TaskRow>)>, StoreError> {
        let client = conn.client();
        let (lock, get, list) = tokio::try_join!(
            client.prepare_cached(sql::LOCK_OWNER),
            client.prepare_cached(sql::GET_FLOW),
            client.prepare_cached(sql::LIST_TASKS),
        )
        .map_err(|e| self.failed(&e, false))?;
        let cutoff = self.cutoff();
        let lock_params: [&(dyn ToSql + Sync); 1] = [&owner];
        let get_params: [&(dyn ToSql + Sync); 3] = [&id, &owner, &cutoff];
        let list_params: [&(dyn ToSql + Sync); 1] = [&id];
        let (_, _, flow_rows, task_rows) = tokio::try_join!(
            biased;
            client.batch_execute("BEGIN"),
            client.query_opt(&lock, &lock_params),
            client.query(&get, &get_params),
            client.query(&list, &list_params),
        )
        .map_err(|e| self.failed(&e, false))?;
        let Some(row) = flow_rows.first() else {
            return Ok(None);
        };
        let flow = rows::flow(row, 0)?;
        let tasks = task_rows
            .iter()
            .map(|row| rows::task(row, 0))
            .collect::<Result<Vec<TaskRow>, _>>()?;
        Ok(Some((flow, tasks)))
    }

    /// Step one of `cancel_flow`: records the request (and, with no active task, the end) and
    /// commits; or answers at once.
    async fn request_cancel(&self, owner: &str, id: Uuid) -> Result<CancelStep, StoreError> {
        let conn = self.checkout().await?;
        let Some((before, tasks)) = self.begin_with_tasks(&conn, owner, id).await? else {
            self.roll_back(conn).await?;
            return Ok(CancelStep::Answer(CancelOutcome::NotFound));
        };
        let tasks: Vec<Task> = tasks.into_iter().map(|t| t.task).collect();
        if before.flow.status.is_terminal() {
            self.roll_back(conn).await?;
            return Ok(CancelStep::Answer(CancelOutcome::Terminal {
                flow: before.flow,
                tasks,
            }));
        }
        let active: Vec<Task> = tasks
            .iter()
            .filter(|t| t.status.is_active())
            .cloned()
            .collect();
        let first_request = before.flow.cancel_requested_at.is_none();
        if !first_request && !active.is_empty() {
            // A repeat while the cancellation is pending: nothing new to record, ask again.
            self.roll_back(conn).await?;
            return Ok(CancelStep::AskHook(active));
        }
        let now = self.inner.clock.epoch_millis();
        let mut flow = before.flow.clone();
        if first_request {
            Mutation::RequestCancel.apply(&mut flow, now);
        }
        if active.is_empty() {
            mark_cancelled(&mut flow, now);
        }
        // Pending until the last active task ends, should the rest of `cancel_flow` never run.
        let pending = !active.is_empty();
        let flow = self
            .write_flow_and_commit(conn, &before, &flow, pending)
            .await?;
        Ok(if active.is_empty() {
            CancelStep::Answer(CancelOutcome::Cancelled { flow, tasks })
        } else {
            CancelStep::AskHook(active)
        })
    }

    /// Step three of `cancel_flow`: marks the tasks the hook stopped (if still active) and, when
    /// none is left active, the flow; commits.
    async fn settle_cancel(
        &self,
        owner: &str,
        id: Uuid,
        stopped: &[Uuid],
    ) -> Result<CancelOutcome, StoreError> {
        let conn = self.checkout().await?;
        let Some((before, mut tasks)) = self.begin_with_tasks(&conn, owner, id).await? else {
            self.roll_back(conn).await?;
            return Ok(CancelOutcome::NotFound);
        };
        if before.flow.status.is_terminal() {
            self.roll_back(conn).await?;
            let tasks = tasks.into_iter().map(|t| t.task).collect();
            let flow = before.flow;
            // `cancelled` meanwhile: its last task ended and finished this cancellation.
            return Ok(if flow.status == FlowStatus::Cancelled {
                CancelOutcome::Cancelled { flow, tasks }
            } else {
                CancelOutcome::Terminal { flow, tasks }
            });
        }
        let now = self.inner.clock.epoch_millis();
        let client = conn.client();
        let write_task = client
            .prepare_cached(sql::WRITE_TASK)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let mut cancelled = Vec::new();
        for row in tasks
            .iter_mut()
            .filter(|t| t.task.status.is_active() && stopped.contains(&t.task.task_id))
        {
            TaskUpdate::Cancel.apply(&mut row.task, now);
            let written = self.write_task(client, &write_task, row).await?;
            if let Some(written) = written.first() {
                *row = rows::task(written, 0)?;
                cancelled.push(task_change(ChangeKind::TaskUpdated, &row.task));
            }
        }
        let tasks: Vec<Task> = tasks.into_iter().map(|t| t.task).collect();
        let still_active = tasks.iter().any(|t| t.status.is_active());
        if still_active {
            if before.cancel_pending {
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(|e| self.failed(&e, true))?;
            } else {
                let mark = client
                    .prepare_cached(sql::MARK_CANCEL_PENDING)
                    .await
                    .map_err(|e| self.failed(&e, false))?;
                let params: [&(dyn ToSql + Sync); 1] = [&id];
                tokio::try_join!(
                    biased;
                    client.execute(&mark, &params),
                    client.batch_execute("COMMIT"),
                )
                .map_err(|e| self.failed(&e, true))?;
            }
            conn.release();
            self.announce(&cancelled);
            return Ok(CancelOutcome::Pending {
                flow: before.flow,
                tasks,
            });
        }
        let mut flow = before.flow.clone();
        mark_cancelled(&mut flow, now);
        let flow = self
            .write_flow_and_commit_after(conn, &before, &flow, false, &cancelled)
            .await?;
        Ok(CancelOutcome::Cancelled { flow, tasks })
    }

    async fn cancel(&self, owner: &str, flow_id: &str) -> Result<CancelOutcome, StoreError> {
        let Some(id) = parse_id(flow_id) else {
            return Ok(CancelOutcome::NotFound);
        };
        let active = match self.timed(true, self.request_cancel(owner, id)).await? {
            CancelStep::Answer(answer) => return Ok(answer),
            CancelStep::AskHook(active) => active,
        };
        // Nothing is held here: no connection, no transaction, no lock. The hook may take its
        // time (outside the operation timeout, which is the database's) and may call the store.
        let stopped = ask_to_cancel(&*self.inner.hook, &active).await;
        self.timed(true, self.settle_cancel(owner, id, &stopped))
            .await
    }

    /// Writes a task's new state (the row holds its size before the change); returns the row
    /// written.
    async fn write_task(
        &self,
        client: &tokio_postgres::Client,
        statement: &tokio_postgres::Statement,
        row: &TaskRow,
    ) -> Result<Vec<Row>, StoreError> {
        let task = &row.task;
        let size = bytes_to_db(task.stored_size());
        let delta = size - row.task_bytes;
        client
            .query(
                statement,
                &[
                    &task.task_id,
                    &task.status.as_str(),
                    &opt_to_db(task.started_at),
                    &opt_to_db(task.ended_at),
                    &opt_to_db(task.last_event_at),
                    &opt_text_param(&task.progress_summary),
                    &size,
                    &delta,
                    &task.parent_flow_id,
                    &&*task.owner_key,
                    &self.inner.channel,
                    &self.payload(task_change(ChangeKind::TaskUpdated, task)),
                ],
            )
            .await
            .map_err(|e| self.failed(&e, false))
    }

    async fn update(
        &self,
        task_id: &str,
        update: TaskUpdate,
    ) -> Result<TaskUpdateOutcome, StoreError> {
        let Some(id) = parse_id(task_id) else {
            return Ok(TaskUpdateOutcome::NotFound);
        };
        let conn = self.checkout().await?;
        let client = conn.client();
        let (owner_of, get_flow, write_task, any_active) = tokio::try_join!(
            client.prepare_cached(sql::TASK_OWNER),
            client.prepare_cached(sql::GET_FLOW_BY_ID),
            client.prepare_cached(sql::WRITE_TASK),
            client.prepare_cached(sql::ANY_ACTIVE),
        )
        .map_err(|e| self.failed(&e, false))?;
        // A task's owner never changes, so it can be read before the owner's lock is taken.
        let Some(owner) = client
            .query_opt(&owner_of, &[&id])
            .await
            .map_err(|e| self.failed(&e, false))?
        else {
            conn.release();
            return Ok(TaskUpdateOutcome::NotFound);
        };
        let owner: String = owner.get(0);
        let (_, task_rows) = self
            .begin_locked(&conn, &owner, sql::GET_TASK, &[&id, &self.cutoff()])
            .await?;
        let Some(row) = task_rows.first() else {
            self.roll_back(conn).await?;
            return Ok(TaskUpdateOutcome::NotFound);
        };
        let mut row = rows::task(row, 0)?;
        let now = self.inner.clock.epoch_millis();
        if !update.apply(&mut row.task, now) {
            self.roll_back(conn).await?;
            return Ok(TaskUpdateOutcome::Rejected(row.task));
        }
        let flow_id = row.task.parent_flow_id;
        let (written, flow_rows, active) = tokio::try_join!(
            biased;
            self.write_task(client, &write_task, &row),
            async {
                client
                    .query(&get_flow, &[&flow_id, &self.cutoff()])
                    .await
                    .map_err(|e| self.failed(&e, false))
            },
            async {
                client
                    .query_one(&any_active, &[&flow_id])
                    .await
                    .map_err(|e| self.failed(&e, false))
            },
        )?;
        let task = match written.first() {
            Some(row) => rows::task(row, 0)?.task,
            None => row.task,
        };
        let updated = [task_change(ChangeKind::TaskUpdated, &task)];
        let any_active: bool = active.get(0);
        let parent = flow_rows.first().map(|r| rows::flow(r, 0)).transpose()?;
        match parent {
            Some(before)
                if before.cancel_pending && !before.flow.status.is_terminal() && !any_active =>
            {
                let mut flow = before.flow.clone();
                mark_cancelled(&mut flow, now);
                self.write_flow_and_commit_after(conn, &before, &flow, false, &updated)
                    .await?;
            }
            _ => {
                conn.client()
                    .batch_execute("COMMIT")
                    .await
                    .map_err(|e| self.failed(&e, true))?;
                conn.release();
                self.announce(&updated);
            }
        }
        Ok(TaskUpdateOutcome::Updated(task))
    }

    async fn end(
        &self,
        flow_id: &str,
        end: FlowEnd,
        state_json: Option<Value>,
    ) -> Result<Option<Flow>, StoreError> {
        let Some(id) = parse_id(flow_id) else {
            return Ok(None);
        };
        let conn = self.checkout().await?;
        let client = conn.client();
        let owner_of = client
            .prepare_cached(sql::FLOW_OWNER)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let Some(owner) = client
            .query_opt(&owner_of, &[&id])
            .await
            .map_err(|e| self.failed(&e, false))?
        else {
            conn.release();
            return Ok(None);
        };
        let owner: String = owner.get(0);
        let (_, rows) = self
            .begin_locked(&conn, &owner, sql::GET_FLOW_BY_ID, &[&id, &self.cutoff()])
            .await?;
        let Some(row) = rows.first() else {
            self.roll_back(conn).await?;
            return Ok(None);
        };
        let before = rows::flow(row, 0)?;
        let now = self.inner.clock.epoch_millis();
        let mut flow = before.flow.clone();
        end.apply(&mut flow, state_json, now);
        self.write_flow_and_commit(conn, &before, &flow, false)
            .await
            .map(Some)
    }

    async fn summary(&self, owner: &str, flow_id: &str) -> Result<Option<TaskSummary>, StoreError> {
        let Some(id) = parse_id(flow_id) else {
            return Ok(None);
        };
        let rows = self
            .read(sql::SUMMARY, &[&id, &owner, &self.cutoff()])
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut summary = TaskSummary::default();
        for row in &rows {
            let (status, runtime): (Option<String>, Option<String>) = (row.get(0), row.get(1));
            let count: i64 = row.get(2);
            if let (Some(status), Some(runtime)) = (status, runtime) {
                let status = TaskStatus::from_wire(&status);
                let runtime = Runtime::from_wire(&runtime);
                let (Some(status), Some(runtime)) = (status, runtime) else {
                    return Err(StoreError::PersistFailed(
                        "stored row has an unreadable status".into(),
                    ));
                };
                summary.add(status, runtime, u64::try_from(count).unwrap_or(0));
            }
        }
        Ok(Some(summary))
    }

    async fn tasks(&self, owner: &str, flow_id: &str) -> Result<Option<Vec<Task>>, StoreError> {
        let Some(id) = parse_id(flow_id) else {
            return Ok(None);
        };
        let conn = self.checkout().await?;
        let client = conn.client();
        let (get, list) = tokio::try_join!(
            client.prepare_cached(sql::GET_FLOW),
            client.prepare_cached(sql::LIST_TASKS),
        )
        .map_err(|e| self.failed(&e, false))?;
        let cutoff = self.cutoff();
        let get_params: [&(dyn ToSql + Sync); 3] = [&id, &owner, &cutoff];
        let list_params: [&(dyn ToSql + Sync); 1] = [&id];
        let (flow, tasks) = tokio::try_join!(
            biased;
            client.query_opt(&get, &get_params),
            client.query(&list, &list_params),
        )
        .map_err(|e| self.failed(&e, false))?;
        conn.release();
        if flow.is_none() {
            return Ok(None);
        }
        tasks
            .iter()
            .map(|row| rows::task(row, 0).map(|r| r.task))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    async fn task(&self, task_id: &str) -> Result<Option<Task>, StoreError> {
        let Some(id) = parse_id(task_id) else {
            return Ok(None);
        };
        let rows = self.read(sql::GET_TASK, &[&id, &self.cutoff()]).await?;
        rows.first()
            .map(|row| rows::task(row, 0).map(|r| r.task))
            .transpose()
    }
}

/// A commit whose outcome is unknown: logged as such, answered `503` like any failure.
fn unknown_outcome(text: String) -> StoreError {
    tracing::error!(
        target: "tower_webhooks::store",
        backend = "postgres",
        "the connection failed while a change was being committed; it may or may not have been \
         applied: {text}"
    );
    StoreError::OutcomeUnknown(text)
}

impl ChangeFeed for PostgresStore {
    fn subscribe(&self) -> ChangeSubscription {
        self.inner.changes.subscribe()
    }
}

impl TaskFlowStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn check(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.timed(false, async move {
            let conn = self.checkout().await?;
            conn.client()
                .simple_query("")
                .await
                .map_err(|e| self.failed(&e, false))?;
            conn.release();
            Ok(())
        })
    }

    fn flow_by_id(
        &self,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        self.timed(false, async move {
            match parse_id(flow_id) {
                Some(id) => {
                    self.read_flow(sql::GET_FLOW_BY_ID, &[&id, &self.cutoff()])
                        .await
                }
                None => Ok(None),
            }
        })
    }

    // Not under the operation timeout as a whole: each owner's step is short, the whole may be
    // long, and a sweep holds up no request.
    async fn sweep_expired(&self) -> Result<usize, StoreError> {
        let removed = self.sweep().await?;
        // Idempotency keys past their TTL (or lapsed claims) are not flows: not counted.
        let now = to_db(self.inner.clock.epoch_millis());
        loop {
            let forgotten = self
                .timed(
                    true,
                    self.statement(
                        Autocommit::Write,
                        sql::FORGET_EXPIRED_KEYS,
                        &[&now, &SWEEP_BATCH],
                    ),
                )
                .await?;
            if i64::try_from(forgotten.len()).unwrap_or(i64::MAX) < SWEEP_BATCH {
                return Ok(removed);
            }
        }
    }

    fn create_flow(
        &self,
        owner: &str,
        new: NewFlow,
    ) -> impl Future<Output = Result<Flow, StoreError>> + Send {
        self.timed(true, self.create(owner, new))
    }

    fn get_flow(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        self.timed(false, async move {
            match parse_id(flow_id) {
                Some(id) => {
                    self.read_flow(sql::GET_FLOW, &[&id, &owner, &self.cutoff()])
                        .await
                }
                None => Ok(None),
            }
        })
    }

    fn list_flows(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<Arc<Flow>>, StoreError>> + Send {
        self.timed(false, async move {
            let rows = self
                .read(sql::LIST_FLOWS, &[&owner, &self.cutoff()])
                .await?;
            rows.iter()
                .map(|row| rows::flow(row, 0).map(|r| Arc::new(r.flow)))
                .collect()
        })
    }

    fn find_latest_flow(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        self.timed(false, async move {
            self.read_flow(sql::LATEST_FLOW, &[&owner, &self.cutoff()])
                .await
        })
    }

    fn resolve_flow(
        &self,
        owner: &str,
        token: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        self.timed(false, async move {
            if let Some(id) = parse_id(token) {
                if let Some(flow) = self
                    .read_flow(sql::GET_FLOW, &[&id, &owner, &self.cutoff()])
                    .await?
                {
                    return Ok(Some(flow));
                }
            }
            if token != owner {
                return Ok(None);
            }
            self.read_flow(sql::RESOLVE_LATEST, &[&owner, &self.cutoff()])
                .await
        })
    }

    fn mutate_flow(
        &self,
        owner: &str,
        flow_id: &str,
        expected_revision: u64,
        mutation: Mutation,
    ) -> impl Future<Output = Result<MutationOutcome, StoreError>> + Send {
        self.timed(
            true,
            self.mutate(owner, flow_id, expected_revision, mutation),
        )
    }

    fn run_task(
        &self,
        owner: &str,
        flow_id: &str,
        new: NewTask,
    ) -> impl Future<Output = Result<RunTaskOutcome, StoreError>> + Send {
        self.timed(true, self.run(owner, flow_id, new))
    }

    fn cancel_flow(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> impl Future<Output = Result<CancelOutcome, StoreError>> + Send {
        self.cancel(owner, flow_id)
    }

    fn task_summary(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<TaskSummary>, StoreError>> + Send {
        self.timed(false, self.summary(owner, flow_id))
    }

    fn list_tasks(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<Task>>, StoreError>> + Send {
        self.timed(false, self.tasks(owner, flow_id))
    }

    fn get_task(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<Option<Task>, StoreError>> + Send {
        self.timed(false, self.task(task_id))
    }

    fn update_task(
        &self,
        task_id: &str,
        update: TaskUpdate,
    ) -> impl Future<Output = Result<TaskUpdateOutcome, StoreError>> + Send {
        self.timed(true, self.update(task_id, update))
    }

    fn end_flow(
        &self,
        flow_id: &str,
        end: FlowEnd,
        state_json: Option<Value>,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        self.timed(true, self.end(flow_id, end, state_json))
    }
}
