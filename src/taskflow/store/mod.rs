//! The storage contract of the TaskFlow actions, and its backends.
//!
//! [`TaskFlowStore`] is async (return-position `impl Future + Send`) so a backend over a network
//! implements it without changing [`TaskFlowActionService`](crate::taskflow::TaskFlowActionService).
//! The service is generic over the store, so store calls are statically dispatched, and
//! [`MemoryStore`]'s futures are `std::future::Ready` (no state machine, no allocation) except
//! `cancel_flow`'s, which awaits the cancel hook. One box remains per request: the service's future,
//! [`TaskFlowFuture`](crate::taskflow::TaskFlowFuture), is a boxed `dyn Future` because it holds the
//! store's future, whose `impl Future` type cannot be named in a concrete future type on stable Rust.
//!
//! Operations named after an action take the owner session key first: a flow owned by another
//! session is reported exactly like a missing one. The embedding-side operations
//! ([`update_task`](TaskFlowStore::update_task), [`end_flow`](TaskFlowStore::end_flow), ...) address
//! records by id alone: they are for the application that runs the tasks, not for webhook callers.

mod any;
mod changes;
mod config;
mod memory;
mod url;
// The PostgreSQL store runs the same migration shape; it adds its feature here.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod migrate;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
use std::future::{Future, ready};
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

#[cfg(feature = "events")]
pub use any::AnyLedger;
pub use any::AnyStore;
pub use changes::{Change, ChangeEvent, ChangeFeed, ChangeKind, ChangeSender, ChangeSubscription};
pub use config::{MemoryStoreConfig, StoreConfig};
pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use url::StoreUrl;

use super::model::{Flow, FlowStatus, NotifyPolicy, Runtime, SyncMode, Task, TaskStatus};

/// Why a store operation failed as a whole.
///
/// Every variant but [`CapacityExceeded`](Self::CapacityExceeded) answers `503` `persist_failed`.
/// The texts are for logs only and never reach a client; a backend keeps credentials out of them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// A configured cap (flows per owner, tasks per flow, bytes per owner) is reached: `507`
    /// `capacity_exceeded`. Nothing changed.
    CapacityExceeded,
    /// The backend failed and the change was **not** made (or a read failed, or the backend
    /// cannot be reached): `503` `persist_failed`.
    PersistFailed(String),
    /// The backend failed while committing, and whether the change was made cannot be known
    /// (the connection was lost after the commit was sent): `503` `persist_failed`, logged as an
    /// unknown outcome. A retry may find the change already applied: a stale `expectedRevision`,
    /// an existing `runId`.
    OutcomeUnknown(String),
    /// The database was written by a newer version of this crate (its schema version is
    /// `found`; this build knows up to `supported`). Refused when the store is opened.
    SchemaTooNew {
        /// The database's schema version.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
}

impl StoreError {
    /// Whether this answers `503` `persist_failed`: every failure but a reached cap.
    pub fn is_persist_failure(&self) -> bool {
        !matches!(self, Self::CapacityExceeded)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CapacityExceeded => f.write_str("TaskFlow store is full."),
            Self::PersistFailed(reason) => write!(f, "TaskFlow persistence failed: {reason}"),
            Self::OutcomeUnknown(reason) => write!(
                f,
                "TaskFlow persistence outcome unknown (the change may or may not have been made): {reason}"
            ),
            Self::SchemaTooNew { found, supported } => write!(
                f,
                "the database schema is version {found}, newer than version {supported}, the newest this build of tower-webhooks knows; upgrade tower-webhooks or point it at another database"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// A change to one field that may be kept, cleared or set (a *nullable* field of SPEC §3: absent,
/// `null`, or a value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// Leave the field as it is (the key was absent).
    #[default]
    Keep,
    /// Unset the field (`null`).
    Clear,
    /// Set the field.
    Set(T),
}

impl<T> Patch<T> {
    /// Applies the patch to `field`.
    pub fn apply(self, field: &mut Option<T>) {
        match self {
            Self::Keep => {}
            Self::Clear => *field = None,
            Self::Set(value) => *field = Some(value),
        }
    }

    /// The value, if this sets one.
    pub fn as_set(&self) -> Option<&T> {
        match self {
            Self::Set(value) => Some(value),
            _ => None,
        }
    }
}

/// A flow to create.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NewFlow {
    /// Who drives the flow.
    pub controller_id: String,
    /// What the flow is for.
    pub goal: String,
    /// Initial status (webhooks allow `queued|running|waiting|blocked`). A terminal status also
    /// sets `endedAt`.
    pub status: FlowStatus,
    /// Notification policy.
    pub notify_policy: NotifyPolicy,
    /// `managed` for everything webhooks create; the embedding application may create
    /// `task_mirrored` flows, which the webhook mutations then refuse with `not_managed`.
    pub sync_mode: SyncMode,
    /// Initial step.
    pub current_step: Option<String>,
    /// Initial state (`Some(Value::Null)` stores `null`).
    pub state_json: Option<Value>,
    /// Initial wait description.
    pub wait_json: Option<Value>,
}

impl NewFlow {
    /// A `queued`, `done_only`, managed flow.
    pub fn new(controller_id: impl Into<String>, goal: impl Into<String>) -> Self {
        Self {
            controller_id: controller_id.into(),
            goal: goal.into(),
            status: FlowStatus::Queued,
            notify_policy: NotifyPolicy::DoneOnly,
            sync_mode: SyncMode::Managed,
            current_step: None,
            state_json: None,
            wait_json: None,
        }
    }

    /// The flow record this creates for `owner` at `now`: a fresh flow id, revision 0, an empty
    /// `currentStep` as none, and `endedAt` when it starts terminal. Shared by every store so the
    /// record's shape is one rule, not one per backend.
    pub fn into_flow(self, owner: Arc<str>, now: u64) -> Flow {
        let terminal = self.status.is_terminal();
        Flow {
            flow_id: Uuid::new_v4(),
            sync_mode: self.sync_mode,
            owner_key: owner,
            controller_id: self.controller_id,
            revision: 0,
            status: self.status,
            notify_policy: self.notify_policy,
            goal: self.goal,
            current_step: self.current_step.filter(|s| !s.is_empty()),
            blocked_task_id: None,
            blocked_summary: None,
            state_json: self.state_json,
            wait_json: self.wait_json,
            cancel_requested_at: None,
            created_at: now,
            updated_at: now,
            ended_at: terminal.then_some(now),
        }
    }
}

/// A child task to create with [`TaskFlowStore::run_task`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NewTask {
    /// What runs it.
    pub runtime: Runtime,
    /// What to do.
    pub task: String,
    /// Caller's source reference.
    pub source_id: Option<String>,
    /// Session the task runs in (checked against the route's policy before it reaches the store).
    pub child_session_key: Option<String>,
    /// Caller's parent task reference.
    pub parent_task_id: Option<String>,
    /// Agent that runs the task.
    pub agent_id: Option<String>,
    /// Caller's run id, the idempotency key.
    pub run_id: Option<String>,
    /// Display label.
    pub label: Option<String>,
    /// Executor hint.
    pub prefer_metadata: Option<bool>,
    /// Notification policy.
    pub notify_policy: NotifyPolicy,
    /// `queued` or `running`.
    pub status: TaskStatus,
    /// Start time; a `running` task without one starts now.
    pub started_at: Option<u64>,
    /// Last event time.
    pub last_event_at: Option<u64>,
    /// Progress text.
    pub progress_summary: Option<String>,
}

impl NewTask {
    /// A `queued`, `state_changes` task with nothing else set.
    pub fn new(runtime: Runtime, task: impl Into<String>) -> Self {
        Self {
            runtime,
            task: task.into(),
            source_id: None,
            child_session_key: None,
            parent_task_id: None,
            agent_id: None,
            run_id: None,
            label: None,
            prefer_metadata: None,
            notify_policy: NotifyPolicy::StateChanges,
            status: TaskStatus::Queued,
            started_at: None,
            last_event_at: None,
            progress_summary: None,
        }
    }

    /// Whether `task` is the one this request would create again: the idempotency rule of
    /// `run_task` (same `runId`, runtime, childSessionKey, label and task).
    pub fn is_repeat_of(&self, task: &Task) -> bool {
        self.run_id.is_some()
            && self.run_id == task.run_id
            && self.runtime == task.runtime
            && self.child_session_key == task.child_session_key
            && self.label == task.label
            && self.task == task.task
    }

    /// The task record this creates in `parent_flow_id`, owned by `owner`, at `now`: a fresh task id,
    /// and a `running` task without a start time starts now. Shared by every store so the record's
    /// shape is one rule, not one per backend.
    pub fn into_task(self, parent_flow_id: Uuid, owner: Arc<str>, now: u64) -> Task {
        let running = self.status == TaskStatus::Running;
        Task {
            task_id: Uuid::new_v4(),
            runtime: self.runtime,
            source_id: self.source_id,
            child_session_key: self.child_session_key,
            parent_flow_id,
            parent_task_id: self.parent_task_id,
            agent_id: self.agent_id,
            run_id: self.run_id,
            label: self.label,
            task: self.task,
            status: self.status,
            notify_policy: self.notify_policy,
            prefer_metadata: self.prefer_metadata,
            created_at: now,
            started_at: self.started_at.or(running.then_some(now)),
            ended_at: None,
            last_event_at: self.last_event_at,
            progress_summary: self.progress_summary,
            requester_session_key: Arc::clone(&owner),
            owner_key: owner,
        }
    }
}

/// A revision-checked change to a managed flow: the mutation actions of SPEC §3.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Mutation {
    /// `set_waiting`.
    SetWaiting {
        /// Current step patch.
        current_step: Patch<String>,
        /// New state, if given.
        state_json: Option<Value>,
        /// New wait description, if given.
        wait_json: Option<Value>,
        /// Task blocked on. Because the status is derived from it, `Keep` clears it like `Clear`.
        blocked_task_id: Patch<String>,
        /// Why blocked. `Keep` clears it like `Clear`.
        blocked_summary: Patch<String>,
    },
    /// `resume_flow`.
    Resume {
        /// New status (`queued` or `running`).
        status: FlowStatus,
        /// Current step patch.
        current_step: Patch<String>,
        /// New state, if given.
        state_json: Option<Value>,
    },
    /// `finish_flow`.
    Finish {
        /// New state, if given.
        state_json: Option<Value>,
    },
    /// `fail_flow`.
    Fail {
        /// New state, if given.
        state_json: Option<Value>,
        /// Task blocked on.
        blocked_task_id: Patch<String>,
        /// Why blocked.
        blocked_summary: Patch<String>,
    },
    /// `request_cancel`.
    RequestCancel,
}

impl Mutation {
    /// Applies the mutation to `flow` at time `now`, including `revision += 1` and `updatedAt`.
    ///
    /// Shared by every backend so the field rules live in one place. The caller has already checked
    /// ownership, `managed` and the revision.
    pub fn apply(self, flow: &mut Flow, now: u64) {
        match self {
            Self::SetWaiting {
                current_step,
                state_json,
                wait_json,
                blocked_task_id,
                blocked_summary,
            } => {
                current_step.apply(&mut flow.current_step);
                set_json(&mut flow.state_json, state_json);
                set_json(&mut flow.wait_json, wait_json);
                flow.blocked_task_id = blocked_task_id.as_set().cloned();
                flow.blocked_summary = blocked_summary.as_set().cloned();
                flow.status = if flow.blocked_task_id.is_some() || flow.blocked_summary.is_some() {
                    FlowStatus::Blocked
                } else {
                    FlowStatus::Waiting
                };
                flow.ended_at = None;
            }
            Self::Resume {
                status,
                current_step,
                state_json,
            } => {
                flow.status = status;
                current_step.apply(&mut flow.current_step);
                set_json(&mut flow.state_json, state_json);
                flow.wait_json = None;
                flow.blocked_task_id = None;
                flow.blocked_summary = None;
                flow.ended_at = None;
            }
            Self::Finish { state_json } => {
                flow.status = FlowStatus::Succeeded;
                set_json(&mut flow.state_json, state_json);
                flow.wait_json = None;
                flow.blocked_task_id = None;
                flow.blocked_summary = None;
                flow.ended_at = Some(now);
            }
            Self::Fail {
                state_json,
                blocked_task_id,
                blocked_summary,
            } => {
                flow.status = FlowStatus::Failed;
                set_json(&mut flow.state_json, state_json);
                blocked_task_id.apply(&mut flow.blocked_task_id);
                blocked_summary.apply(&mut flow.blocked_summary);
                flow.wait_json = None;
                flow.ended_at = Some(now);
            }
            Self::RequestCancel => {
                // Sticky: the first request's time is the one that counts.
                flow.cancel_requested_at.get_or_insert(now);
            }
        }
        flow.revision = flow.revision.saturating_add(1);
        flow.updated_at = now;
    }
}

fn set_json(field: &mut Option<Value>, value: Option<Value>) {
    if let Some(value) = value {
        *field = Some(value);
    }
}

/// Result of [`TaskFlowStore::mutate_flow`].
#[derive(Clone, Debug, PartialEq)]
pub enum MutationOutcome {
    /// The change was made; the flow after it.
    Applied(Flow),
    /// No such flow for this owner.
    NotFound,
    /// The flow is not managed; unchanged.
    NotManaged(Flow),
    /// The flow's revision differs from the expected one; unchanged.
    RevisionConflict(Flow),
}

/// Result of [`TaskFlowStore::run_task`].
#[derive(Clone, Debug, PartialEq)]
pub enum RunTaskOutcome {
    /// A new task was created.
    Created {
        /// The parent flow.
        flow: Flow,
        /// The new task.
        task: Task,
    },
    /// A task with the same `runId` (and runtime, child session, label, task) already exists.
    Existing {
        /// The parent flow.
        flow: Flow,
        /// The existing task.
        task: Task,
    },
    /// No such flow for this owner.
    NotFound,
    /// The flow is not managed.
    NotManaged(Flow),
    /// Cancellation was requested on the flow.
    CancelRequested(Flow),
    /// The flow is terminal.
    Terminal(Flow),
}

/// Result of [`TaskFlowStore::cancel_flow`].
#[derive(Clone, Debug, PartialEq)]
pub enum CancelOutcome {
    /// No such flow for this owner.
    NotFound,
    /// The flow was already terminal; nothing changed.
    Terminal {
        /// The flow.
        flow: Flow,
        /// Its tasks, oldest first.
        tasks: Vec<Task>,
    },
    /// Cancellation is requested but a child task is still active after the hook ran.
    Pending {
        /// The flow (cancel requested, status unchanged).
        flow: Flow,
        /// Its tasks, oldest first.
        tasks: Vec<Task>,
    },
    /// The flow is now `cancelled`.
    Cancelled {
        /// The flow.
        flow: Flow,
        /// Its tasks, oldest first.
        tasks: Vec<Task>,
    },
}

/// A change the embedding application reports for a task it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskUpdate {
    /// `queued` → `running`; sets `startedAt` (unless set) and `lastEventAt`.
    Start,
    /// Progress on an active task: `lastEventAt` = now and the new summary (`None` clears it).
    Progress(Option<String>),
    /// → `succeeded`.
    Finish,
    /// → `failed`.
    Fail,
    /// → `timed_out`.
    TimeOut,
    /// → `lost`.
    Lost,
    /// → `cancelled`.
    Cancel,
}

impl TaskUpdate {
    /// Applies the update at `now`; `false` (and no change) if the task's status does not allow it:
    /// `Start` needs `queued`, everything else needs an active task.
    pub fn apply(&self, task: &mut Task, now: u64) -> bool {
        let end = match self {
            Self::Start => {
                if task.status != TaskStatus::Queued {
                    return false;
                }
                task.status = TaskStatus::Running;
                task.started_at.get_or_insert(now);
                task.last_event_at = Some(now);
                return true;
            }
            Self::Progress(summary) => {
                if !task.status.is_active() {
                    return false;
                }
                task.last_event_at = Some(now);
                task.progress_summary = summary.clone().filter(|s| !s.is_empty());
                return true;
            }
            Self::Finish => TaskStatus::Succeeded,
            Self::Fail => TaskStatus::Failed,
            Self::TimeOut => TaskStatus::TimedOut,
            Self::Lost => TaskStatus::Lost,
            Self::Cancel => TaskStatus::Cancelled,
        };
        if !task.status.is_active() {
            return false;
        }
        task.status = end;
        task.ended_at = Some(now);
        task.last_event_at = Some(now);
        true
    }
}

/// Result of [`TaskFlowStore::update_task`].
#[derive(Clone, Debug, PartialEq)]
pub enum TaskUpdateOutcome {
    /// The task after the change.
    Updated(Task),
    /// No such task.
    NotFound,
    /// The task's status does not allow the change; unchanged.
    Rejected(Task),
}

/// How the embedding application ends a flow with [`TaskFlowStore::end_flow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowEnd {
    /// → `succeeded`.
    Succeeded,
    /// → `failed`.
    Failed,
    /// → `lost`.
    Lost,
}

impl FlowEnd {
    /// Ends `flow` at `now` as `end_flow` does in every backend: the status, `stateJson` if given,
    /// no `waitJson`, `endedAt`, `revision += 1` and `updatedAt`.
    pub(crate) fn apply(self, flow: &mut Flow, state_json: Option<Value>, now: u64) {
        flow.status = match self {
            Self::Succeeded => FlowStatus::Succeeded,
            Self::Failed => FlowStatus::Failed,
            Self::Lost => FlowStatus::Lost,
        };
        set_json(&mut flow.state_json, state_json);
        flow.wait_json = None;
        flow.ended_at = Some(now);
        flow.revision = flow.revision.saturating_add(1);
        flow.updated_at = now;
    }
}

/// Marks `flow` `cancelled` at `now` (`endedAt`, `revision += 1`, `updatedAt`): how a cancellation
/// ends in every backend, whether `cancel_flow` ends it or the last active task does.
pub(crate) fn mark_cancelled(flow: &mut Flow, now: u64) {
    flow.status = FlowStatus::Cancelled;
    flow.ended_at = Some(now);
    flow.revision = flow.revision.saturating_add(1);
    flow.updated_at = now;
}

/// Storage for flows and their child tasks.
///
/// All methods are async and `Send`, so a durable backend fits without changing the service.
///
/// # What every backend promises
///
/// One conformance suite (`tests/support/store_conformance.rs`) runs against every backend:
///
/// - **Atomic check and write.** The revision check of [`mutate_flow`](TaskFlowStore::mutate_flow),
///   the caps, and the `runId` idempotency of [`run_task`](TaskFlowStore::run_task) hold against
///   concurrent writers, in one process or across replicas of a shared database.
/// - **Durable answers.** `Ok` means committed. A failure says whether the change was certainly
///   not made ([`StoreError::PersistFailed`]) or whether nobody can tell
///   ([`StoreError::OutcomeUnknown`], a connection lost during the commit).
/// - **One order.** [`list_flows`](TaskFlowStore::list_flows) sorts by columns stored with the
///   record (`createdAt`, then a creation sequence the store assigns), so every replica answers
///   the same order.
/// - **Retention without a sweep.** A terminal flow past its retention period is gone for every
///   call at once (not read, not counted against a cap), whether or not
///   [`sweep_expired`](TaskFlowStore::sweep_expired) has reclaimed its space yet.
/// - **Caller JSON as sent.** `stateJson`/`waitJson` come back with their key order, numbers
///   (`1.6666666666666665`) and `null`s as they were stored.
/// - **Changes after commit.** [`ChangeFeed`] subscribers hear of every committed change, by id.
///
/// Other records a backend keeps for the crate (the idempotency keys of event routes, SPEC §8)
/// belong to small traits of their own beside this one, implemented by the same store types, so
/// a backend grows by a trait rather than this one growing for everybody.
pub trait TaskFlowStore: Send + Sync + 'static {
    /// The backend's kind as operators see it (`memory`, `sqlite`, `postgres`): the label of
    /// `taskflow_store_errors_total` and the word `/readyz` names. Never a URL or a path.
    fn backend(&self) -> &'static str;

    /// Whether the backend answers now (what `/readyz` asks): `Ok` for a store in memory, a
    /// round trip for a database.
    fn check(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(Ok(()))
    }

    /// Creates a flow owned by `owner` (revision 0, a fresh UUID v4).
    fn create_flow(
        &self,
        owner: &str,
        new: NewFlow,
    ) -> impl Future<Output = Result<Flow, StoreError>> + Send;

    /// The flow `flow_id` if `owner` owns it.
    fn get_flow(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send;

    /// `owner`'s flows, newest `createdAt` first; ties newest created first, by a creation
    /// sequence the store assigns and keeps with the record (a database sequence, not a
    /// per-process counter), so every replica of a shared store answers the same order.
    ///
    /// Shared records rather than copies: a list of many large flows is answered by serialising
    /// the records themselves, after the store has let go of any lock (SPEC §2.5). A backend that
    /// builds records per call wraps each in a fresh `Arc`.
    fn list_flows(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<Arc<Flow>>, StoreError>> + Send;

    /// The first flow of [`list_flows`](Self::list_flows).
    fn find_latest_flow(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send;

    /// `resolve_flow`: `token` as an owned flow id; else, if `token == owner`, the newest
    /// non-terminal flow or failing that the newest flow; else `None`.
    fn resolve_flow(
        &self,
        owner: &str,
        token: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send;

    /// Applies `mutation` if `owner` owns the flow, it is managed and its revision is
    /// `expected_revision`, atomically with that check.
    fn mutate_flow(
        &self,
        owner: &str,
        flow_id: &str,
        expected_revision: u64,
        mutation: Mutation,
    ) -> impl Future<Output = Result<MutationOutcome, StoreError>> + Send;

    /// Creates a child task, idempotent on `runId` (see [`NewTask::is_repeat_of`]). The flow must be
    /// owned, managed, without a cancel request and not terminal, checked in that order.
    fn run_task(
        &self,
        owner: &str,
        flow_id: &str,
        new: NewTask,
    ) -> impl Future<Output = Result<RunTaskOutcome, StoreError>> + Send;

    /// `cancel_flow`, in two committed steps: requests cancellation (once: revision `+1`) and
    /// commits; then, holding nothing, asks the store's [`CancelHook`](crate::taskflow::CancelHook)
    /// about each active child task; then marks the tasks it stopped `cancelled` and, when none is
    /// left active, the flow `cancelled` (revision `+1`), and commits. A task that ended meanwhile
    /// keeps its own end; a flow that became terminal meanwhile answers
    /// [`CancelOutcome::Terminal`].
    fn cancel_flow(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> impl Future<Output = Result<CancelOutcome, StoreError>> + Send;

    /// Counts of the flow's tasks, if `owner` owns it.
    fn task_summary(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<super::model::TaskSummary>, StoreError>> + Send;

    /// The flow's tasks, oldest first, if `owner` owns it.
    fn list_tasks(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<Task>>, StoreError>> + Send;

    /// Embedding side: the flow `flow_id`, whoever owns it (what a [`ChangeFeed`] subscriber
    /// re-reads).
    fn flow_by_id(
        &self,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send;

    /// Embedding side: the task `task_id`, whoever owns it.
    fn get_task(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<Option<Task>, StoreError>> + Send;

    /// Embedding side: reports a change to a task the application runs.
    fn update_task(
        &self,
        task_id: &str,
        update: TaskUpdate,
    ) -> impl Future<Output = Result<TaskUpdateOutcome, StoreError>> + Send;

    /// Embedding side: ends a flow (no revision check; revision still `+1`). `state_json`, when
    /// given, replaces the state. `None` if there is no such flow.
    fn end_flow(
        &self,
        flow_id: &str,
        end: FlowEnd,
        state_json: Option<Value>,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send;

    /// Removes every terminal flow (and its tasks) whose retention period has passed, and returns
    /// how many flows it removed. Expired flows are already invisible; this reclaims their space.
    ///
    /// Safe to run on every replica at once and at any interval (the gateway runs it once a
    /// minute): each expired flow is removed once, by whichever sweep gets to it, and a shared
    /// backend removes in bounded batches so a sweep never holds long locks.
    fn sweep_expired(&self) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Embedding side: `queued` → `running`.
    fn start_task(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<TaskUpdateOutcome, StoreError>> + Send {
        self.update_task(task_id, TaskUpdate::Start)
    }

    /// Embedding side: progress on an active task.
    fn report_progress(
        &self,
        task_id: &str,
        summary: Option<String>,
    ) -> impl Future<Output = Result<TaskUpdateOutcome, StoreError>> + Send {
        self.update_task(task_id, TaskUpdate::Progress(summary))
    }

    /// Embedding side: → `succeeded`.
    fn finish_task(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<TaskUpdateOutcome, StoreError>> + Send {
        self.update_task(task_id, TaskUpdate::Finish)
    }

    /// Embedding side: → `failed`.
    fn fail_task(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<TaskUpdateOutcome, StoreError>> + Send {
        self.update_task(task_id, TaskUpdate::Fail)
    }

    /// Embedding side: → `timed_out`.
    fn time_out_task(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<TaskUpdateOutcome, StoreError>> + Send {
        self.update_task(task_id, TaskUpdate::TimeOut)
    }

    /// Embedding side: → `lost`.
    fn mark_task_lost(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<TaskUpdateOutcome, StoreError>> + Send {
        self.update_task(task_id, TaskUpdate::Lost)
    }

    /// Embedding side: → `succeeded`.
    fn finish_flow(
        &self,
        flow_id: &str,
        state_json: Option<Value>,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        self.end_flow(flow_id, FlowEnd::Succeeded, state_json)
    }

    /// Embedding side: → `failed`.
    fn fail_flow(
        &self,
        flow_id: &str,
        state_json: Option<Value>,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        self.end_flow(flow_id, FlowEnd::Failed, state_json)
    }
}
