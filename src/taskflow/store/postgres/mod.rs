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
//! - Every change sends `NOTIFY` with ids only, in its own transaction; [`PostgresStore::subscribe`]
//!   hears the changes of every replica, and is told when its connection was lost and it may have
//!   missed some.
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
//! use tower_webhooks::taskflow::MemoryStoreConfig;
//! use tower_webhooks::taskflow::postgres::PostgresStore;
//!
//! let store = PostgresStore::connect(
//!     "postgres://webhooks@127.0.0.1/webhooks?options=-csearch_path%3Dwebhooks",
//!     MemoryStoreConfig::default(),
//! )
//! .await?;
//! let service = tower_webhooks::TaskFlowActionService::new(store);
//! # let _ = service;
//! # Ok(())
//! # }
//! ```

mod connection;
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
use tokio::sync::broadcast;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

pub use connection::PostgresOptions;

use self::connection::{Checkout, DbFailure, Target};
use self::listen::Heard;
use self::rows::{FlowRow, TaskRow, bytes_to_db, json_param, opt_to_db, to_db};
use super::{
    CancelOutcome, FlowEnd, Mutation, MutationOutcome, NewFlow, NewTask, RunTaskOutcome,
    StoreError, TaskFlowStore, TaskUpdate, TaskUpdateOutcome,
};
use crate::clock::{SharedClock, SystemClock};
use crate::taskflow::model::{
    Flow, FlowStatus, Runtime, SyncMode, Task, TaskStatus, TaskSummary, parse_id,
};
use crate::taskflow::notify::{CancelHook, CancelImmediately, ChildCancel};

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
    feed: broadcast::Sender<Heard>,
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

/// Ids in a notification payload: `flow <flowId>`, `task <taskId> <flowId>`, `pruned <flowId>`.
fn flow_payload(flow_id: Uuid) -> String {
    format!("flow {flow_id}")
}

fn task_payload(task: &Task) -> String {
    format!("task {} {}", task.task_id, task.parent_flow_id)
}

impl PostgresStore {
    /// Connects to `url`, applies the migrations this version needs, and starts the change feed.
    ///
    /// Fails if the database cannot be reached, the `search_path` names no existing schema, or
    /// the schema was written by a newer version. The error names the problem, never the URL's
    /// password.
    pub async fn connect(
        url: &str,
        config: super::MemoryStoreConfig,
    ) -> Result<Self, StoreError> {
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
        config: super::MemoryStoreConfig,
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
        let schema = migrated.map_err(|error| {
            StoreError::PersistFailed(match error {
                schema::SchemaError::NoSchema => "PostgreSQL: the connection's search_path names \
                    no existing schema to create the tables in; create it, or name one with \
                    ?options=-csearch_path%3D<schema>"
                    .into(),
                schema::SchemaError::Newer { found } => format!(
                    "PostgreSQL: the database schema is at version {found}, newer than the {} \
                     this version of tower-webhooks knows; upgrade tower-webhooks or use another \
                     schema",
                    schema::LATEST
                ),
                schema::SchemaError::Driver(error) => target.redact(format!(
                    "PostgreSQL: migrating the schema failed: {}",
                    connection::describe(&error)
                )),
            })
        })?;
        let channel = listen::channel_name(&schema);
        let (feed, _) = broadcast::channel(config.event_capacity);
        let listener = tokio::spawn(listen::run(
            Arc::clone(&target),
            channel.clone(),
            feed.clone(),
            Duration::from_secs(30),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                target,
                limits: Limits {
                    max_flows: Limits::cap(config.max_flows_per_owner),
                    max_tasks: Limits::cap(config.max_tasks_per_flow),
                    max_bytes: Limits::cap(config.max_bytes_per_owner),
                    retention_ms: config
                        .retention
                        .map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX)),
                },
                options,
                clock,
                hook,
                schema,
                channel,
                feed,
                listener,
            }),
        })
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Subscribes to the change feed: the ids of flows and tasks changed on any replica.
    pub(crate) fn subscribe_raw(&self) -> broadcast::Receiver<Heard> {
        self.inner.feed.subscribe()
    }

    /// Removes terminal flows (and their tasks) whose retention has passed, `batch` flows per
    /// transaction; returns how many were removed. Safe to run on every replica at once: each
    /// owner's flows are removed under that owner's row lock, the lock every writer takes first.
    pub async fn sweep_expired(&self, batch: usize) -> Result<usize, StoreError> {
        let Some(retention) = self.inner.limits.retention_ms else {
            return Ok(0);
        };
        let cutoff = to_db(self.inner.clock.epoch_millis().saturating_sub(retention));
        let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        self.timed(true, async {
            let conn = self.checkout().await?;
            let client = conn.client();
            let (owners_stmt, lock, sweep, notify) = tokio::try_join!(
                client.prepare_cached(sql::EXPIRED_OWNERS),
                client.prepare_cached(sql::LOCK_OWNER),
                client.prepare_cached(sql::SWEEP_OWNER),
                client.prepare_cached(sql::NOTIFY),
            )
            .map_err(|e| self.failed(&e, false))?;
            let mut removed = 0;
            loop {
                let owners = client
                    .query(&owners_stmt, &[&cutoff, &batch])
                    .await
                    .map_err(|e| self.failed(&e, false))?;
                if owners.is_empty() {
                    break;
                }
                for owner in owners {
                    let owner: String = owner.get(0);
                    let lock_params: [&(dyn ToSql + Sync); 1] = [&owner];
                    let sweep_params: [&(dyn ToSql + Sync); 3] = [&owner, &cutoff, &batch];
                    loop {
                        let (_, _, gone) = tokio::try_join!(
                            biased;
                            client.batch_execute("BEGIN"),
                            client.query_opt(&lock, &lock_params),
                            client.query(&sweep, &sweep_params),
                        )
                        .map_err(|e| self.failed(&e, false))?;
                        for row in &gone {
                            let flow_id: Uuid = row.get(0);
                            let payload = format!("pruned {flow_id}");
                            client
                                .execute(&notify, &[&self.inner.channel, &payload])
                                .await
                                .map_err(|e| self.failed(&e, false))?;
                        }
                        client
                            .batch_execute("COMMIT")
                            .await
                            .map_err(|e| self.failed(&e, true))?;
                        removed += gone.len();
                        if i64::try_from(gone.len()).unwrap_or(i64::MAX) < batch {
                            break;
                        }
                    }
                }
            }
            conn.release();
            Ok(removed)
        })
        .await
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
        let client = conn.client();
        let write = client
            .prepare_cached(sql::WRITE_FLOW)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let flow_bytes = bytes_to_db(changed.stored_size());
        let delta = flow_bytes - before.flow_bytes;
        let payload = flow_payload(changed.flow_id);
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
            &changed.current_step,
            &changed.blocked_task_id,
            &changed.blocked_summary,
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
        Ok(rows::flow(row, 0)?.flow)
    }

    async fn create(&self, owner: &str, new: NewFlow) -> Result<Flow, StoreError> {
        let now = self.inner.clock.epoch_millis();
        let terminal = new.status.is_terminal();
        let flow = Flow {
            flow_id: Uuid::new_v4(),
            sync_mode: new.sync_mode,
            owner_key: Arc::from(owner),
            controller_id: new.controller_id,
            revision: 0,
            status: new.status,
            notify_policy: new.notify_policy,
            goal: new.goal,
            current_step: new.current_step.filter(|s| !s.is_empty()),
            blocked_task_id: None,
            blocked_summary: None,
            state_json: new.state_json,
            wait_json: new.wait_json,
            cancel_requested_at: None,
            created_at: now,
            updated_at: now,
            ended_at: terminal.then_some(now),
        };
        let size = bytes_to_db(flow.stored_size());
        let limits = self.inner.limits;
        // The statement's cap check guards an existing owner's row; a new owner's first flow is
        // checked here.
        if limits.max_flows < 1 || size > limits.max_bytes {
            return Err(StoreError::CapacityExceeded);
        }
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
                    &flow.controller_id,
                    &flow.status.as_str(),
                    &flow.notify_policy.as_str(),
                    &flow.goal,
                    &flow.current_step,
                    &state_json,
                    &wait_json,
                    &to_db(now),
                    &opt_to_db(flow.ended_at),
                    &self.inner.channel,
                    &flow_payload(flow.flow_id),
                ],
            )
            .await
            .map_err(|e| self.failed(&e, true))?;
        conn.release();
        if rows.is_empty() {
            return Err(StoreError::CapacityExceeded);
        }
        Ok(flow)
    }

    /// One read-only query, no transaction.
    async fn read(
        &self,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let conn = self.checkout().await?;
        let client = conn.client();
        let statement = client
            .prepare_cached(statement)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let rows = client
            .query(&statement, params)
            .await
            .map_err(|e| self.failed(&e, false))?;
        conn.release();
        Ok(rows)
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
            .begin_locked(&conn, owner, sql::GET_FLOW, &[&id, &owner])
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
        if delta > 0 && owner_bytes.saturating_add(delta) > self.inner.limits.max_bytes {
            self.roll_back(conn).await?;
            return Err(StoreError::CapacityExceeded);
        }
        let flow = self
            .write_flow_and_commit(conn, &before, &changed, before.cancel_pending)
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
        let get_params: [&(dyn ToSql + Sync); 2] = [&id, &owner];
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
        let task = new.into_task(flow.flow_id, Arc::clone(&flow.owner_key), self.inner.clock.epoch_millis());
        let size = bytes_to_db(task.stored_size());
        let owner_bytes: i64 = owner_row.as_ref().map_or(0, |r| r.get(1));
        if owner_bytes.saturating_add(size) > limits.max_bytes {
            self.roll_back(conn).await?;
            return Err(StoreError::CapacityExceeded);
        }
        let insert = client
            .prepare_cached(sql::INSERT_TASK)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let payload = task_payload(&task);
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
            &task.source_id,
            &task.child_session_key,
            &task.parent_task_id,
            &task.agent_id,
            &task.run_id,
            &task.label,
            &task.task,
            &status,
            &policy,
            &task.prefer_metadata,
            &created_at,
            &started_at,
            &ended_at,
            &last_event_at,
            &task.progress_summary,
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
        if inserted.is_empty() {
            let existing = raced.ok_or_else(|| {
                StoreError::PersistFailed("run_task: neither inserted nor found".into())
            })?;
            let task = rows::task(&existing, 0)?.task;
            return Ok(RunTaskOutcome::Existing { flow, task });
        }
        Ok(RunTaskOutcome::Created { flow, task })
    }

    async fn cancel(&self, owner: &str, flow_id: &str) -> Result<CancelOutcome, StoreError> {
        let Some(id) = parse_id(flow_id) else {
            return Ok(CancelOutcome::NotFound);
        };
        let conn = self.checkout().await?;
        let client = conn.client();
        let (lock, get, list) = tokio::try_join!(
            client.prepare_cached(sql::LOCK_OWNER),
            client.prepare_cached(sql::GET_FLOW),
            client.prepare_cached(sql::LIST_TASKS),
        )
        .map_err(|e| self.failed(&e, false))?;
        let lock_params: [&(dyn ToSql + Sync); 1] = [&owner];
        let get_params: [&(dyn ToSql + Sync); 2] = [&id, &owner];
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
            self.roll_back(conn).await?;
            return Ok(CancelOutcome::NotFound);
        };
        let before = rows::flow(row, 0)?;
        let mut tasks = task_rows
            .iter()
            .map(|row| rows::task(row, 0))
            .collect::<Result<Vec<TaskRow>, _>>()?;
        if before.flow.status.is_terminal() {
            self.roll_back(conn).await?;
            let tasks = tasks.into_iter().map(|t| t.task).collect();
            return Ok(CancelOutcome::Terminal {
                flow: before.flow,
                tasks,
            });
        }
        let now = self.inner.clock.epoch_millis();
        let mut flow = before.flow.clone();
        if flow.cancel_requested_at.is_none() {
            flow.cancel_requested_at = Some(now);
            flow.revision = flow.revision.saturating_add(1);
            flow.updated_at = now;
        }
        let write_task = client
            .prepare_cached(sql::WRITE_TASK)
            .await
            .map_err(|e| self.failed(&e, false))?;
        let mut still_active = false;
        for row in tasks.iter_mut().filter(|t| t.task.status.is_active()) {
            match self.inner.hook.cancel_task(&row.task) {
                ChildCancel::Cancelled => {
                    TaskUpdate::Cancel.apply(&mut row.task, now);
                    let rows = self.write_task(client, &write_task, row).await?;
                    if let Some(written) = rows.first() {
                        *row = rows::task(written, 0)?;
                    }
                }
                ChildCancel::StillActive => still_active = true,
            }
        }
        if !still_active {
            flow.status = FlowStatus::Cancelled;
            flow.ended_at = Some(now);
            flow.revision = flow.revision.saturating_add(1);
            flow.updated_at = now;
        }
        let flow = self
            .write_flow_and_commit(conn, &before, &flow, still_active)
            .await?;
        let tasks = tasks.into_iter().map(|t| t.task).collect();
        Ok(if still_active {
            CancelOutcome::Pending { flow, tasks }
        } else {
            CancelOutcome::Cancelled { flow, tasks }
        })
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
                    &task.progress_summary,
                    &size,
                    &delta,
                    &task.parent_flow_id,
                    &&*task.owner_key,
                    &self.inner.channel,
                    &task_payload(task),
                ],
            )
            .await
            .map_err(|e| self.failed(&e, false))
    }

    async fn update(&self, task_id: &str, update: TaskUpdate) -> Result<TaskUpdateOutcome, StoreError> {
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
            .begin_locked(&conn, &owner, sql::GET_TASK, &[&id])
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
                    .query(&get_flow, &[&flow_id])
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
        let any_active: bool = active.get(0);
        let parent = flow_rows.first().map(|r| rows::flow(r, 0)).transpose()?;
        match parent {
            Some(before)
                if before.cancel_pending && !before.flow.status.is_terminal() && !any_active =>
            {
                let mut flow = before.flow.clone();
                flow.status = FlowStatus::Cancelled;
                flow.ended_at = Some(now);
                flow.revision = flow.revision.saturating_add(1);
                flow.updated_at = now;
                self.write_flow_and_commit(conn, &before, &flow, false).await?;
            }
            _ => {
                conn.client()
                    .batch_execute("COMMIT")
                    .await
                    .map_err(|e| self.failed(&e, true))?;
                conn.release();
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
            .begin_locked(&conn, &owner, sql::GET_FLOW_BY_ID, &[&id])
            .await?;
        let Some(row) = rows.first() else {
            self.roll_back(conn).await?;
            return Ok(None);
        };
        let before = rows::flow(row, 0)?;
        let now = self.inner.clock.epoch_millis();
        let mut flow = before.flow.clone();
        flow.status = match end {
            FlowEnd::Succeeded => FlowStatus::Succeeded,
            FlowEnd::Failed => FlowStatus::Failed,
            FlowEnd::Lost => FlowStatus::Lost,
        };
        if let Some(state_json) = state_json {
            flow.state_json = Some(state_json);
        }
        flow.wait_json = None;
        flow.ended_at = Some(now);
        flow.revision = flow.revision.saturating_add(1);
        flow.updated_at = now;
        self.write_flow_and_commit(conn, &before, &flow, false)
            .await
            .map(Some)
    }

    async fn summary(&self, owner: &str, flow_id: &str) -> Result<Option<TaskSummary>, StoreError> {
        let Some(id) = parse_id(flow_id) else {
            return Ok(None);
        };
        let rows = self.read(sql::SUMMARY, &[&id, &owner]).await?;
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
                    return Err(StoreError::PersistFailed("stored row has an unreadable status".into()));
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
        let get_params: [&(dyn ToSql + Sync); 2] = [&id, &owner];
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
        let rows = self.read(sql::GET_TASK, &[&id]).await?;
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
    StoreError::PersistFailed(format!("commit outcome unknown: {text}"))
}

impl TaskFlowStore for PostgresStore {
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
                Some(id) => self.read_flow(sql::GET_FLOW, &[&id, &owner]).await,
                None => Ok(None),
            }
        })
    }

    fn list_flows(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<Arc<Flow>>, StoreError>> + Send {
        self.timed(false, async move {
            let rows = self.read(sql::LIST_FLOWS, &[&owner]).await?;
            rows.iter()
                .map(|row| rows::flow(row, 0).map(|r| Arc::new(r.flow)))
                .collect()
        })
    }

    fn find_latest_flow(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        self.timed(false, async move { self.read_flow(sql::LATEST_FLOW, &[&owner]).await })
    }

    fn resolve_flow(
        &self,
        owner: &str,
        token: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        self.timed(false, async move {
            if let Some(id) = parse_id(token) {
                if let Some(flow) = self.read_flow(sql::GET_FLOW, &[&id, &owner]).await? {
                    return Ok(Some(flow));
                }
            }
            if token != owner {
                return Ok(None);
            }
            self.read_flow(sql::RESOLVE_LATEST, &[&owner]).await
        })
    }

    fn mutate_flow(
        &self,
        owner: &str,
        flow_id: &str,
        expected_revision: u64,
        mutation: Mutation,
    ) -> impl Future<Output = Result<MutationOutcome, StoreError>> + Send {
        self.timed(true, self.mutate(owner, flow_id, expected_revision, mutation))
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
        self.timed(true, self.cancel(owner, flow_id))
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
