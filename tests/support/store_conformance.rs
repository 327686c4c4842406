//! One conformance suite for every `TaskFlowStore` backend (SPEC §7: "every backend passes one and
//! the same conformance suite").
//!
//! Each backend's test file implements [`StoreFactory`] (a fresh, empty store per call: its own
//! file, schema or database, so the cases run in parallel) and expands [`conformance_tests!`],
//! which writes one `#[tokio::test]` per case, so a failure names its case. A factory that cannot
//! run (a service not configured) is `None` after printing one line saying why; the cases then
//! return at once.
//!
//! Included by `#[path]` rather than through `support/mod.rs`, which needs the server features:
//! this file needs `taskflow` alone. A test file includes it and `support/store_model.rs` (the
//! model test's reference store) at its root:
//!
//! ```ignore
//! #[path = "support/store_conformance.rs"]
//! mod store_conformance;
//! #[path = "support/store_model.rs"]
//! mod store_model;
//! ```
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tower_webhooks::clock::ManualClock;
use tower_webhooks::taskflow::{
    CancelFuture, CancelHook, CancelImmediately, CancelOutcome, Change, ChangeEvent, ChangeFeed,
    ChangeKind, ChildCancel, Flow, FlowEnd, FlowStatus, Mutation, MutationOutcome, NewFlow,
    NewTask, NotifyPolicy, Patch, RunTaskOutcome, Runtime, StoreConfig, StoreError, SyncMode, Task,
    TaskFlowStore, TaskStatus, TaskUpdate, TaskUpdateOutcome,
};

/// The clock reading every case starts at.
pub const T0: u64 = 1_700_000_000_000;
/// The owner session most cases use.
pub const OWNER: &str = "agent:main:conformance";
/// Another owner, who must see nothing of [`OWNER`]'s.
pub const OTHER: &str = "agent:ops:conformance";

/// What a case asks of a new store.
#[derive(Clone, Debug)]
pub struct Setup {
    pub config: StoreConfig,
    pub clock: Arc<ManualClock>,
    pub hook: Arc<dyn CancelHook>,
}

impl Setup {
    /// Default caps and retention, a manual clock at [`T0`], [`CancelImmediately`].
    pub fn new() -> Self {
        Self {
            config: StoreConfig::new(),
            clock: ManualClock::new(T0),
            hook: Arc::new(CancelImmediately),
        }
    }

    pub fn config(mut self, config: StoreConfig) -> Self {
        self.config = config;
        self
    }

    pub fn hook(mut self, hook: impl CancelHook) -> Self {
        self.hook = Arc::new(hook);
        self
    }
}

/// Opens fresh, empty stores of one backend.
pub trait StoreFactory: Send + Sync + 'static {
    type Store: TaskFlowStore + ChangeFeed + std::fmt::Debug;

    /// A new, empty store: its own file, schema or database. Panics if it cannot be opened
    /// (a configured backend that does not answer fails the test).
    fn open(&self, setup: Setup) -> impl Future<Output = Self::Store> + Send;
}

/// A hook that leaves `running` tasks active (they "have not stopped yet").
#[derive(Debug)]
pub struct LeaveRunningActive;

impl CancelHook for LeaveRunningActive {
    fn cancel_task<'a>(&'a self, task: &'a Task) -> CancelFuture<'a> {
        Box::pin(std::future::ready(if task.status == TaskStatus::Running {
            ChildCancel::StillActive
        } else {
            ChildCancel::Cancelled
        }))
    }
}

/// Writes one `#[tokio::test]` per conformance case. `$factory` is an expression of type
/// `Option<impl StoreFactory>`, evaluated once per case (`None`: the backend is not configured).
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance::conformance_tests!(@cases $factory;
            create_and_read_round_trip,
            owners_see_only_their_own_flows,
            mutations_answer_every_code,
            every_mutation_sets_its_fields,
            run_task_answers_every_code,
            run_task_is_idempotent_on_run_id,
            cancel_flow_answers_every_outcome,
            cancel_hook_runs_after_commit_and_may_call_the_store,
            a_flow_finished_while_the_hook_runs_answers_terminal,
            embedding_side_calls,
            caps_answer_507_and_change_nothing,
            list_flows_ties_break_newest_created_first,
            resolve_flow_picks_by_token,
            json_round_trips_exactly,
            text_round_trips_exactly,
            retention_hides_expired_flows_and_the_sweep_removes_them,
            notifications_name_each_committed_change,
            concurrent_writers_with_one_revision_exactly_one_applies,
            concurrent_creates_never_exceed_the_cap,
            concurrent_run_task_with_one_run_id_creates_one_task,
            model_matches_the_reference,
        );
    };
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(factory) = $factory else { return };
                $crate::store_conformance::$case(&factory).await;
            }
        )+
    };
}
pub(crate) use conformance_tests;

fn new_flow(goal: &str) -> NewFlow {
    NewFlow::new("webhooks/conformance", goal)
}

fn id(flow: &Flow) -> String {
    flow.id_string()
}

async fn created<S: TaskFlowStore>(store: &S, owner: &str, goal: &str) -> Flow {
    store.create_flow(owner, new_flow(goal)).await.unwrap()
}

async fn applied<S: TaskFlowStore>(store: &S, flow: &Flow, mutation: Mutation) -> Flow {
    match store
        .mutate_flow(OWNER, &id(flow), flow.revision, mutation)
        .await
        .unwrap()
    {
        MutationOutcome::Applied(flow) => flow,
        other => panic!("not applied: {other:?}"),
    }
}

async fn task_of<S: TaskFlowStore>(store: &S, flow: &Flow, new: NewTask) -> Task {
    match store.run_task(OWNER, &id(flow), new).await.unwrap() {
        RunTaskOutcome::Created { task, .. } => task,
        other => panic!("not created: {other:?}"),
    }
}

/// The stored record of every flow of `owner`, newest first, with its tasks: what "nothing
/// changed" compares.
pub async fn snapshot<S: TaskFlowStore>(store: &S, owner: &str) -> Vec<(Flow, Vec<Task>)> {
    let mut out = Vec::new();
    for flow in store.list_flows(owner).await.unwrap() {
        let tasks = store
            .list_tasks(owner, &flow.id_string())
            .await
            .unwrap()
            .unwrap_or_default();
        out.push((Flow::clone(&flow), tasks));
    }
    out
}

/// `create_flow` answers the stored record, and every read returns it field for field.
pub async fn create_and_read_round_trip<F: StoreFactory>(factory: &F) {
    let setup = Setup::new();
    let store = factory.open(setup.clone()).await;
    let mut new = new_flow("ship it");
    new.status = FlowStatus::Running;
    new.notify_policy = NotifyPolicy::StateChanges;
    new.current_step = Some("step one".into());
    new.state_json = Some(json!({"z": 1, "a": [true, null, 1.6666666666666665]}));
    new.wait_json = Some(Value::Null);
    let flow = store.create_flow(OWNER, new).await.unwrap();
    assert_eq!(flow.revision, 0);
    assert_eq!(flow.status, FlowStatus::Running);
    assert_eq!(flow.notify_policy, NotifyPolicy::StateChanges);
    assert_eq!(
        (flow.created_at, flow.updated_at, flow.ended_at),
        (T0, T0, None)
    );
    assert_eq!(&*flow.owner_key, OWNER);
    let flow_id = id(&flow);
    assert_eq!(
        store.get_flow(OWNER, &flow_id).await.unwrap(),
        Some(flow.clone())
    );
    assert_eq!(
        store.flow_by_id(&flow_id).await.unwrap(),
        Some(flow.clone())
    );
    assert_eq!(
        store.find_latest_flow(OWNER).await.unwrap(),
        Some(flow.clone())
    );
    let listed = store.list_flows(OWNER).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(*listed[0], flow);
    assert_eq!(
        serde_json::to_string(&flow.state_json).unwrap(),
        r#"{"z":1,"a":[true,null,1.6666666666666665]}"#,
        "key order and numbers as stored"
    );
    assert_eq!(flow.wait_json, Some(Value::Null), "a stored null stays");
    assert_eq!(
        store
            .get_flow(OWNER, &flow_id.to_uppercase())
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get_flow(OWNER, "not-an-id").await.unwrap(), None);
    // A terminal initial status ends the flow at once.
    let mut done = new_flow("born done");
    done.status = FlowStatus::Succeeded;
    let done = store.create_flow(OWNER, done).await.unwrap();
    assert_eq!(done.ended_at, Some(T0));
    store.check().await.unwrap();
    assert!(["memory", "sqlite", "postgres"].contains(&store.backend()));
}

/// A flow owned by another session behaves exactly like a missing one, for every call.
pub async fn owners_see_only_their_own_flows<F: StoreFactory>(factory: &F) {
    let store = factory.open(Setup::new()).await;
    let flow = created(&store, OWNER, "mine").await;
    let flow_id = id(&flow);
    assert_eq!(store.get_flow(OTHER, &flow_id).await.unwrap(), None);
    assert!(store.list_flows(OTHER).await.unwrap().is_empty());
    assert_eq!(store.find_latest_flow(OTHER).await.unwrap(), None);
    assert_eq!(store.resolve_flow(OTHER, &flow_id).await.unwrap(), None);
    assert_eq!(store.resolve_flow(OTHER, OTHER).await.unwrap(), None);
    assert_eq!(store.resolve_flow(OTHER, OWNER).await.unwrap(), None);
    assert_eq!(store.task_summary(OTHER, &flow_id).await.unwrap(), None);
    assert_eq!(store.list_tasks(OTHER, &flow_id).await.unwrap(), None);
    assert_eq!(
        store
            .mutate_flow(OTHER, &flow_id, 0, Mutation::RequestCancel)
            .await
            .unwrap(),
        MutationOutcome::NotFound
    );
    assert_eq!(
        store
            .run_task(OTHER, &flow_id, NewTask::new(Runtime::Acp, "t"))
            .await
            .unwrap(),
        RunTaskOutcome::NotFound
    );
    assert_eq!(
        store.cancel_flow(OTHER, &flow_id).await.unwrap(),
        CancelOutcome::NotFound
    );
    assert_eq!(
        store.get_flow(OWNER, &flow_id).await.unwrap(),
        Some(flow),
        "unchanged"
    );
}

/// `not_found`, `not_managed`, `revision_conflict`, then an applied change with `revision + 1`.
pub async fn mutations_answer_every_code<F: StoreFactory>(factory: &F) {
    let setup = Setup::new();
    let store = factory.open(setup.clone()).await;
    let missing = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        store
            .mutate_flow(OWNER, missing, 0, Mutation::RequestCancel)
            .await
            .unwrap(),
        MutationOutcome::NotFound
    );
    let mut mirrored = new_flow("mirrored");
    mirrored.sync_mode = SyncMode::TaskMirrored;
    let mirrored = store.create_flow(OWNER, mirrored).await.unwrap();
    assert_eq!(
        store
            .mutate_flow(OWNER, &id(&mirrored), 0, Mutation::RequestCancel)
            .await
            .unwrap(),
        MutationOutcome::NotManaged(mirrored)
    );
    let flow = created(&store, OWNER, "g").await;
    let flow_id = id(&flow);
    for stale in [1, 7] {
        assert_eq!(
            store
                .mutate_flow(OWNER, &flow_id, stale, Mutation::RequestCancel)
                .await
                .unwrap(),
            MutationOutcome::RevisionConflict(flow.clone())
        );
    }
    setup.clock.advance(5);
    let waiting = Mutation::SetWaiting {
        current_step: Patch::Set("waiting on CI".into()),
        state_json: Some(json!({"b": 2, "a": 1})),
        wait_json: Some(json!({"until": "green"})),
        blocked_task_id: Patch::Keep,
        blocked_summary: Patch::Keep,
    };
    let MutationOutcome::Applied(applied) = store
        .mutate_flow(OWNER, &flow_id, 0, waiting)
        .await
        .unwrap()
    else {
        panic!("not applied");
    };
    assert_eq!(applied.revision, 1);
    assert_eq!(applied.status, FlowStatus::Waiting);
    assert_eq!(applied.updated_at, T0 + 5);
    assert_eq!(
        store.get_flow(OWNER, &flow_id).await.unwrap(),
        Some(applied)
    );
}

/// Each mutation's field rules, as stored (not only as answered).
pub async fn every_mutation_sets_its_fields<F: StoreFactory>(factory: &F) {
    let setup = Setup::new();
    let store = factory.open(setup.clone()).await;
    let flow = created(&store, OWNER, "g").await;

    let blocked = applied(
        &store,
        &flow,
        Mutation::SetWaiting {
            current_step: Patch::Keep,
            state_json: None,
            wait_json: Some(json!({"on": "review"})),
            blocked_task_id: Patch::Set("task-7".into()),
            blocked_summary: Patch::Keep,
        },
    )
    .await;
    assert_eq!(blocked.status, FlowStatus::Blocked);
    assert_eq!(blocked.blocked_task_id.as_deref(), Some("task-7"));

    setup.clock.advance(1);
    let resumed = applied(
        &store,
        &blocked,
        Mutation::Resume {
            status: FlowStatus::Running,
            current_step: Patch::Set("two".into()),
            state_json: Some(json!([1])),
        },
    )
    .await;
    assert_eq!(resumed.status, FlowStatus::Running);
    assert_eq!(
        (resumed.wait_json.clone(), resumed.blocked_task_id.clone()),
        (None, None)
    );
    assert_eq!(resumed.current_step.as_deref(), Some("two"));
    assert_eq!(resumed.revision, 2);

    let cancel_requested = applied(&store, &resumed, Mutation::RequestCancel).await;
    assert_eq!(cancel_requested.cancel_requested_at, Some(T0 + 1));
    setup.clock.advance(1);
    let again = applied(&store, &cancel_requested, Mutation::RequestCancel).await;
    assert_eq!(again.cancel_requested_at, Some(T0 + 1), "sticky");
    assert_eq!(again.revision, 4);

    let failed = applied(
        &store,
        &again,
        Mutation::Fail {
            state_json: Some(Value::Null),
            blocked_task_id: Patch::Keep,
            blocked_summary: Patch::Set("broke".into()),
        },
    )
    .await;
    assert_eq!(failed.status, FlowStatus::Failed);
    assert_eq!(failed.ended_at, Some(T0 + 2));
    assert_eq!(failed.state_json, Some(Value::Null));
    // No status machine: finishing a failed flow works (SPEC §3).
    let finished = applied(&store, &failed, Mutation::Finish { state_json: None }).await;
    assert_eq!(finished.status, FlowStatus::Succeeded);
    assert_eq!(finished.blocked_summary, None);
    assert_eq!(
        finished.state_json,
        Some(Value::Null),
        "kept when not given"
    );
    assert_eq!(
        store.get_flow(OWNER, &id(&flow)).await.unwrap(),
        Some(finished)
    );
}

/// `not_found`, `not_managed`, `cancel_requested`, `terminal`, in that order of checks; then a
/// task with every field kept.
pub async fn run_task_answers_every_code<F: StoreFactory>(factory: &F) {
    let store = factory.open(Setup::new()).await;
    let task = || NewTask::new(Runtime::Subagent, "t");
    assert_eq!(
        store
            .run_task(OWNER, "00000000-0000-4000-8000-000000000000", task())
            .await
            .unwrap(),
        RunTaskOutcome::NotFound
    );
    assert_eq!(
        store.run_task(OWNER, "not-a-uuid", task()).await.unwrap(),
        RunTaskOutcome::NotFound
    );
    let flow = created(&store, OWNER, "g").await;
    assert_eq!(
        store
            .run_task(OWNER, &id(&flow).to_uppercase(), task())
            .await
            .unwrap(),
        RunTaskOutcome::NotFound,
        "ids match in their canonical form only"
    );
    let mut mirrored = new_flow("m");
    mirrored.sync_mode = SyncMode::TaskMirrored;
    let mirrored = store.create_flow(OWNER, mirrored).await.unwrap();
    assert_eq!(
        store.run_task(OWNER, &id(&mirrored), task()).await.unwrap(),
        RunTaskOutcome::NotManaged(mirrored)
    );
    let requested = applied(&store, &flow, Mutation::RequestCancel).await;
    assert_eq!(
        store.run_task(OWNER, &id(&flow), task()).await.unwrap(),
        RunTaskOutcome::CancelRequested(requested)
    );
    let other = created(&store, OWNER, "h").await;
    let done = applied(&store, &other, Mutation::Finish { state_json: None }).await;
    assert_eq!(
        store.run_task(OWNER, &id(&other), task()).await.unwrap(),
        RunTaskOutcome::Terminal(done)
    );
    assert_eq!(
        store.list_tasks(OWNER, &id(&other)).await.unwrap(),
        Some(vec![])
    );

    let open = created(&store, OWNER, "open").await;
    let mut running = NewTask::new(Runtime::Acp, "work");
    running.status = TaskStatus::Running;
    running.label = Some("l".into());
    running.source_id = Some("src".into());
    running.child_session_key = Some("agent:main:child".into());
    running.parent_task_id = Some("parent".into());
    running.agent_id = Some("agent".into());
    running.prefer_metadata = Some(true);
    running.notify_policy = NotifyPolicy::Silent;
    running.last_event_at = Some(5);
    running.progress_summary = Some("p".into());
    let RunTaskOutcome::Created { flow: parent, task } =
        store.run_task(OWNER, &id(&open), running).await.unwrap()
    else {
        panic!("not created");
    };
    assert_eq!(
        parent, open,
        "creating a task leaves the flow's revision alone"
    );
    assert_eq!(
        task.started_at,
        Some(T0),
        "a running task without startedAt starts now"
    );
    assert_eq!(task.prefer_metadata, Some(true));
    assert_eq!(&*task.requester_session_key, OWNER);
    assert_eq!(
        store.list_tasks(OWNER, &id(&open)).await.unwrap(),
        Some(vec![task.clone()])
    );
    assert_eq!(store.get_task(&task.id_string()).await.unwrap(), Some(task));
    let summary = store
        .task_summary(OWNER, &id(&open))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((summary.total(), summary.active()), (1, 1));
    assert_eq!(summary.runtime(Runtime::Acp), 1);
}

/// A repeat with the same `runId`, runtime, child session, label and task returns the first task;
/// any difference makes a new one.
pub async fn run_task_is_idempotent_on_run_id<F: StoreFactory>(factory: &F) {
    let store = factory.open(Setup::new()).await;
    let flow = created(&store, OWNER, "g").await;
    let with_run = |run: &str, task: &str| {
        let mut new = NewTask::new(Runtime::Subagent, task);
        new.run_id = Some(run.into());
        new
    };
    let first = task_of(&store, &flow, with_run("r1", "t")).await;
    let RunTaskOutcome::Existing { task, .. } = store
        .run_task(OWNER, &id(&flow), with_run("r1", "t"))
        .await
        .unwrap()
    else {
        panic!("not a repeat");
    };
    assert_eq!(task, first);
    let other_task = task_of(&store, &flow, with_run("r1", "different")).await;
    assert_ne!(other_task.task_id, first.task_id);
    let no_run = task_of(&store, &flow, NewTask::new(Runtime::Subagent, "t")).await;
    let no_run_again = task_of(&store, &flow, NewTask::new(Runtime::Subagent, "t")).await;
    assert_ne!(
        no_run.task_id, no_run_again.task_id,
        "no runId, no idempotency"
    );
    let summary = store
        .task_summary(OWNER, &id(&flow))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.total(), 4);
}

/// Not found, terminal (nothing changes), cancelled at once, and pending while a child runs,
/// finished when it ends.
pub async fn cancel_flow_answers_every_outcome<F: StoreFactory>(factory: &F) {
    let setup = Setup::new().hook(LeaveRunningActive);
    let store = factory.open(setup.clone()).await;
    assert_eq!(
        store
            .cancel_flow(OWNER, "00000000-0000-4000-8000-000000000000")
            .await
            .unwrap(),
        CancelOutcome::NotFound
    );
    let done = created(&store, OWNER, "done").await;
    let done = applied(&store, &done, Mutation::Finish { state_json: None }).await;
    assert_eq!(
        store.cancel_flow(OWNER, &id(&done)).await.unwrap(),
        CancelOutcome::Terminal {
            flow: done.clone(),
            tasks: vec![]
        }
    );
    assert_eq!(store.get_flow(OWNER, &id(&done)).await.unwrap(), Some(done));

    let quiet = created(&store, OWNER, "no tasks").await;
    setup.clock.advance(3);
    let CancelOutcome::Cancelled { flow, tasks } =
        store.cancel_flow(OWNER, &id(&quiet)).await.unwrap()
    else {
        panic!("not cancelled");
    };
    assert!(tasks.is_empty());
    assert_eq!(flow.status, FlowStatus::Cancelled);
    assert_eq!(flow.revision, 2, "the request and the cancellation");
    assert_eq!(
        (flow.cancel_requested_at, flow.ended_at),
        (Some(T0 + 3), Some(T0 + 3))
    );
    assert_eq!(
        store.get_flow(OWNER, &id(&quiet)).await.unwrap(),
        Some(flow)
    );

    let busy = created(&store, OWNER, "busy").await;
    let queued = task_of(&store, &busy, NewTask::new(Runtime::Acp, "q")).await;
    let mut running = NewTask::new(Runtime::Acp, "r");
    running.status = TaskStatus::Running;
    let running = task_of(&store, &busy, running).await;
    let CancelOutcome::Pending { flow, tasks } =
        store.cancel_flow(OWNER, &id(&busy)).await.unwrap()
    else {
        panic!("not pending");
    };
    assert_eq!(
        flow.status,
        FlowStatus::Queued,
        "status unchanged while pending"
    );
    assert_eq!(flow.revision, 1);
    assert_eq!(tasks[0].task_id, queued.task_id);
    assert_eq!(tasks[0].status, TaskStatus::Cancelled);
    assert_eq!(tasks[1].status, TaskStatus::Running);
    // A repeat retries the hook without counting the request again.
    let CancelOutcome::Pending { flow, .. } = store.cancel_flow(OWNER, &id(&busy)).await.unwrap()
    else {
        panic!("not pending");
    };
    assert_eq!(flow.revision, 1);
    // The last active child ends: the flow is cancelled.
    let TaskUpdateOutcome::Updated(_) = store.finish_task(&running.id_string()).await.unwrap()
    else {
        panic!("not updated");
    };
    let flow = store.get_flow(OWNER, &id(&busy)).await.unwrap().unwrap();
    assert_eq!(flow.status, FlowStatus::Cancelled);
    assert_eq!(flow.revision, 2);
}

/// A hook that reads the flow through the store (proving no lock or transaction is held) and
/// yields to the runtime before it answers.
#[derive(Debug)]
struct ReadsTheStore<S> {
    store: std::sync::OnceLock<Arc<S>>,
    seen: parking_lot::Mutex<Vec<Option<u64>>>,
}

impl<S: TaskFlowStore + std::fmt::Debug> CancelHook for ReadsTheStore<S> {
    fn cancel_task<'a>(&'a self, task: &'a Task) -> CancelFuture<'a> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let store = self.store.get().expect("store set");
            let flow = store
                .flow_by_id(&task.parent_flow_id.to_string())
                .await
                .unwrap()
                .unwrap();
            self.seen.lock().push(flow.cancel_requested_at);
            ChildCancel::Cancelled
        })
    }
}

/// The hook runs after the request is committed, may await and may call the store.
pub async fn cancel_hook_runs_after_commit_and_may_call_the_store<F: StoreFactory>(factory: &F) {
    let hook = Arc::new(ReadsTheStore::<F::Store> {
        store: std::sync::OnceLock::new(),
        seen: parking_lot::Mutex::new(Vec::new()),
    });
    let mut setup = Setup::new();
    setup.hook = hook.clone();
    let store = Arc::new(factory.open(setup).await);
    hook.store.set(Arc::clone(&store)).unwrap();
    let flow = created(&*store, OWNER, "g").await;
    task_of(&*store, &flow, NewTask::new(Runtime::Acp, "a")).await;
    task_of(&*store, &flow, NewTask::new(Runtime::Acp, "b")).await;
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        store.cancel_flow(OWNER, &id(&flow)),
    )
    .await
    .expect("a hook that calls the store does not deadlock")
    .unwrap();
    let CancelOutcome::Cancelled { tasks, .. } = outcome else {
        panic!("not cancelled: {outcome:?}");
    };
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Cancelled));
    assert_eq!(
        *hook.seen.lock(),
        vec![Some(T0), Some(T0)],
        "the hook saw the committed request"
    );
    // The store holds the hook and the hook the store: break the cycle.
    drop(hook.store.get().cloned());
}

/// Finishes the task's flow (at the revision the cancellation request left) before answering.
#[derive(Debug)]
struct FinishesTheFlow<S> {
    store: std::sync::OnceLock<Arc<S>>,
}

impl<S: TaskFlowStore + std::fmt::Debug> CancelHook for FinishesTheFlow<S> {
    fn cancel_task<'a>(&'a self, task: &'a Task) -> CancelFuture<'a> {
        Box::pin(async move {
            let store = self.store.get().expect("store set");
            let flow_id = task.parent_flow_id.to_string();
            let flow = store.flow_by_id(&flow_id).await.unwrap().unwrap();
            let finished = store
                .mutate_flow(
                    OWNER,
                    &flow_id,
                    flow.revision,
                    Mutation::Finish { state_json: None },
                )
                .await
                .unwrap();
            assert!(
                matches!(finished, MutationOutcome::Applied(_)),
                "{finished:?}"
            );
            ChildCancel::Cancelled
        })
    }
}

/// The cancellation request is committed on its own, before the hook: a write that lands while the
/// hook runs (here `finish_flow`, from the hook itself) stands, and `cancel_flow` answers that the
/// flow is terminal. The request's revision is kept; no third revision is made.
pub async fn a_flow_finished_while_the_hook_runs_answers_terminal<F: StoreFactory>(factory: &F) {
    let hook = Arc::new(FinishesTheFlow::<F::Store> {
        store: std::sync::OnceLock::new(),
    });
    let mut setup = Setup::new();
    setup.hook = hook.clone();
    let store = Arc::new(factory.open(setup).await);
    hook.store.set(Arc::clone(&store)).unwrap();
    let flow = created(&*store, OWNER, "g").await;
    task_of(&*store, &flow, NewTask::new(Runtime::Acp, "a")).await;
    let outcome = store.cancel_flow(OWNER, &id(&flow)).await.unwrap();
    let CancelOutcome::Terminal { flow: answered, .. } = outcome else {
        panic!("not terminal: {outcome:?}");
    };
    assert_eq!(answered.status, FlowStatus::Succeeded);
    assert_eq!(answered.cancel_requested_at, Some(T0), "the request stood");
    assert_eq!(
        answered.revision,
        flow.revision + 2,
        "the request, then the finish"
    );
    let stored = store.get_flow(OWNER, &id(&flow)).await.unwrap().unwrap();
    assert_eq!(stored, answered);
    drop(hook.store.get().cloned());
}

/// The calls of the application that runs the tasks: by id, no owner.
pub async fn embedding_side_calls<F: StoreFactory>(factory: &F) {
    let setup = Setup::new();
    let store = factory.open(setup.clone()).await;
    let flow = created(&store, OWNER, "g").await;
    let task = task_of(&store, &flow, NewTask::new(Runtime::Cli, "t")).await;
    let tid = task.id_string();
    assert_eq!(store.get_task("nope").await.unwrap(), None);
    assert_eq!(
        store
            .update_task("00000000-0000-4000-8000-000000000000", TaskUpdate::Finish)
            .await
            .unwrap(),
        TaskUpdateOutcome::NotFound
    );
    setup.clock.advance(2);
    let TaskUpdateOutcome::Updated(started) = store.start_task(&tid).await.unwrap() else {
        panic!("not started");
    };
    assert_eq!(started.status, TaskStatus::Running);
    assert_eq!(started.started_at, Some(T0 + 2));
    let TaskUpdateOutcome::Rejected(same) = store.start_task(&tid).await.unwrap() else {
        panic!("started twice");
    };
    assert_eq!(same, started);
    let TaskUpdateOutcome::Updated(progress) = store
        .report_progress(&tid, Some("half".into()))
        .await
        .unwrap()
    else {
        panic!("no progress");
    };
    assert_eq!(progress.progress_summary.as_deref(), Some("half"));
    let TaskUpdateOutcome::Updated(ended) = store.time_out_task(&tid).await.unwrap() else {
        panic!("not ended");
    };
    assert_eq!(ended.status, TaskStatus::TimedOut);
    assert!(
        matches!(
            store.fail_task(&tid).await.unwrap(),
            TaskUpdateOutcome::Rejected(_)
        ),
        "a terminal task is never reopened"
    );
    assert_eq!(store.get_task(&tid).await.unwrap(), Some(ended));
    let summary = store
        .task_summary(OWNER, &id(&flow))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((summary.failures(), summary.runtime(Runtime::Cli)), (1, 1));

    let ended_flow = store
        .end_flow(&id(&flow), FlowEnd::Lost, Some(json!({"why": "gone"})))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended_flow.status, FlowStatus::Lost);
    assert_eq!(ended_flow.revision, 1);
    assert_eq!(ended_flow.state_json, Some(json!({"why": "gone"})));
    assert_eq!(
        store.flow_by_id(&id(&flow)).await.unwrap(),
        Some(ended_flow)
    );
    assert_eq!(
        store.end_flow("nope", FlowEnd::Failed, None).await.unwrap(),
        None
    );
    assert_eq!(store.flow_by_id("nope").await.unwrap(), None);
}

/// Flows per owner, tasks per flow and bytes per owner: `CapacityExceeded`, nothing changed; an
/// idempotent repeat at the task cap still answers; another owner has its own budget.
pub async fn caps_answer_507_and_change_nothing<F: StoreFactory>(factory: &F) {
    let config = StoreConfig::new()
        .max_flows_per_owner(Some(2))
        .max_tasks_per_flow(Some(1));
    let store = factory.open(Setup::new().config(config)).await;
    let flow = created(&store, OWNER, "a").await;
    created(&store, OWNER, "b").await;
    let before = snapshot(&store, OWNER).await;
    assert_eq!(
        store.create_flow(OWNER, new_flow("c")).await,
        Err(StoreError::CapacityExceeded)
    );
    assert_eq!(snapshot(&store, OWNER).await, before);
    created(&store, OTHER, "theirs").await;

    let mut first = NewTask::new(Runtime::Acp, "t");
    first.run_id = Some("a".into());
    task_of(&store, &flow, first.clone()).await;
    let mut second = first.clone();
    second.run_id = Some("b".into());
    assert_eq!(
        store.run_task(OWNER, &id(&flow), second).await,
        Err(StoreError::CapacityExceeded)
    );
    assert!(matches!(
        store.run_task(OWNER, &id(&flow), first).await.unwrap(),
        RunTaskOutcome::Existing { .. }
    ));

    // Bytes: room for one small flow and not a second.
    let probe = factory.open(Setup::new()).await;
    let size = probe
        .create_flow(OWNER, new_flow("x"))
        .await
        .unwrap()
        .to_stored_json()
        .to_string()
        .len();
    let store = factory
        .open(Setup::new().config(StoreConfig::new().max_bytes_per_owner(Some(size + size / 2))))
        .await;
    let small = created(&store, OWNER, "x").await;
    assert_eq!(
        store.create_flow(OWNER, new_flow("y")).await,
        Err(StoreError::CapacityExceeded)
    );
    let big = Mutation::Finish {
        state_json: Some(json!("x".repeat(size))),
    };
    assert_eq!(
        store.mutate_flow(OWNER, &id(&small), 0, big).await,
        Err(StoreError::CapacityExceeded)
    );
    assert_eq!(
        store.get_flow(OWNER, &id(&small)).await.unwrap(),
        Some(small.clone())
    );
    let mut big_task = NewTask::new(Runtime::Acp, "t".repeat(size));
    big_task.label = Some("big".into());
    assert_eq!(
        store.run_task(OWNER, &id(&small), big_task).await,
        Err(StoreError::CapacityExceeded)
    );
    assert_eq!(
        store.list_tasks(OWNER, &id(&small)).await.unwrap(),
        Some(vec![])
    );
    // A change that does not grow is allowed; another owner has its own bytes.
    applied(&store, &small, Mutation::RequestCancel).await;
    created(&store, OTHER, "x").await;
}

/// Same `createdAt`: newest created first, by the stored sequence; a clock that steps back still
/// sorts by `createdAt`.
pub async fn list_flows_ties_break_newest_created_first<F: StoreFactory>(factory: &F) {
    let setup = Setup::new();
    let store = factory.open(setup.clone()).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(id(&created(&store, OWNER, &format!("tie {n}")).await));
    }
    setup.clock.set_epoch_millis(T0 - 10);
    let older = id(&created(&store, OWNER, "older clock").await);
    let listed: Vec<String> = store
        .list_flows(OWNER)
        .await
        .unwrap()
        .iter()
        .map(|f| f.id_string())
        .collect();
    let mut expected: Vec<String> = ids.iter().rev().cloned().collect();
    expected.push(older);
    assert_eq!(listed, expected);
    assert_eq!(
        store.find_latest_flow(OWNER).await.unwrap().map(|f| id(&f)),
        Some(expected[0].clone())
    );
}

/// `resolve_flow`: an owned id; the owner's own key picks the newest non-terminal flow, else the
/// newest; anything else is none.
pub async fn resolve_flow_picks_by_token<F: StoreFactory>(factory: &F) {
    let setup = Setup::new();
    let store = factory.open(setup.clone()).await;
    assert_eq!(store.resolve_flow(OWNER, OWNER).await.unwrap(), None);
    let open = created(&store, OWNER, "open").await;
    setup.clock.advance(1);
    let newest = created(&store, OWNER, "newest").await;
    let newest = applied(&store, &newest, Mutation::Finish { state_json: None }).await;
    assert_eq!(
        store.resolve_flow(OWNER, OWNER).await.unwrap(),
        Some(open.clone())
    );
    assert_eq!(
        store.resolve_flow(OWNER, &id(&newest)).await.unwrap(),
        Some(newest.clone())
    );
    assert_eq!(store.resolve_flow(OWNER, "agent:main").await.unwrap(), None);
    applied(
        &store,
        &open,
        Mutation::Fail {
            state_json: None,
            blocked_task_id: Patch::Keep,
            blocked_summary: Patch::Keep,
        },
    )
    .await;
    assert_eq!(
        store.resolve_flow(OWNER, OWNER).await.unwrap(),
        Some(newest)
    );
}

/// `stateJson`/`waitJson` come back exactly: key order, numbers, `null`, nesting, Unicode.
/// Every text field comes back as sent, whatever it holds: U+0000 (which a PostgreSQL `text` cannot
/// hold), a private-use character, escapes that look like JSON, and plain text beside them.
pub async fn text_round_trips_exactly<F: StoreFactory>(factory: &F) {
    let store = factory.open(Setup::new()).await;
    let texts = [
        "nul \0 inside",
        "\0",
        "\u{e000}leading private use",
        "\u{e000}\"json-looking\"",
        "\\u0000 written out",
        "plain",
    ];
    for text in texts {
        let mut new = NewFlow::new(text, text);
        new.current_step = Some(text.into());
        let flow = store.create_flow(OWNER, new).await.unwrap();
        let flow = applied(
            &store,
            &flow,
            Mutation::SetWaiting {
                current_step: Patch::Set(text.into()),
                state_json: Some(json!({ "text": text })),
                wait_json: None,
                blocked_task_id: Patch::Set(text.into()),
                blocked_summary: Patch::Set(text.into()),
            },
        )
        .await;
        let mut new_task = NewTask::new(Runtime::Acp, text);
        new_task.run_id = Some(text.into());
        new_task.label = Some(text.into());
        new_task.child_session_key = Some(format!("{OWNER}:{text}"));
        new_task.source_id = Some(text.into());
        new_task.agent_id = Some(text.into());
        new_task.parent_task_id = Some(text.into());
        let task = task_of(&store, &flow, new_task.clone()).await;
        let task = match store
            .update_task(
                &task.task_id.to_string(),
                TaskUpdate::Progress(Some(text.into())),
            )
            .await
            .unwrap()
        {
            TaskUpdateOutcome::Updated(task) => task,
            other => panic!("not updated: {other:?}"),
        };
        let read = store.get_flow(OWNER, &id(&flow)).await.unwrap().unwrap();
        assert_eq!(read, flow, "{text:?}");
        assert_eq!(
            (read.goal.as_str(), read.controller_id.as_str()),
            (text, text)
        );
        assert_eq!(read.blocked_summary.as_deref(), Some(text));
        assert_eq!(read.state_json, Some(json!({ "text": text })));
        let tasks = store.list_tasks(OWNER, &id(&flow)).await.unwrap().unwrap();
        assert_eq!(tasks, vec![task.clone()], "{text:?}");
        assert_eq!(task.progress_summary.as_deref(), Some(text));
        // The repeat is found by what was sent, so the same text is the same task.
        let RunTaskOutcome::Existing { task: again, .. } =
            store.run_task(OWNER, &id(&flow), new_task).await.unwrap()
        else {
            panic!("{text:?}: a repeat was not recognised");
        };
        assert_eq!(again.task_id, task.task_id);
    }
}

pub async fn json_round_trips_exactly<F: StoreFactory>(factory: &F) {
    let store = factory.open(Setup::new()).await;
    let text = r#"{"zeta":1,"alpha":{"y":[1.6666666666666665,-0.0,1e-7,12345678901234567890,-9007199254740993],"x":null},"\u00e9":"\u2028\ud83d\ude00","":false,"n":[[],{}]}"#;
    let state: Value = serde_json::from_str(text).unwrap();
    let mut new = new_flow("json");
    new.state_json = Some(state.clone());
    new.wait_json = Some(Value::Null);
    let flow = store.create_flow(OWNER, new).await.unwrap();
    for read in [
        store.get_flow(OWNER, &id(&flow)).await.unwrap().unwrap(),
        store.flow_by_id(&id(&flow)).await.unwrap().unwrap(),
        Flow::clone(&store.list_flows(OWNER).await.unwrap()[0]),
    ] {
        assert_eq!(
            serde_json::to_string(read.state_json.as_ref().unwrap()).unwrap(),
            serde_json::to_string(&state).unwrap()
        );
        assert_eq!(read.wait_json, Some(Value::Null));
        assert_eq!(
            serde_json::to_vec(&read.to_json()).unwrap(),
            serde_json::to_vec(&flow.to_json()).unwrap()
        );
    }
    let flow = applied(
        &store,
        &flow,
        Mutation::SetWaiting {
            current_step: Patch::Keep,
            state_json: Some(json!(1.6666666666666665)),
            wait_json: None,
            blocked_task_id: Patch::Keep,
            blocked_summary: Patch::Keep,
        },
    )
    .await;
    let read = store.get_flow(OWNER, &id(&flow)).await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_string(&read.state_json).unwrap(),
        "1.6666666666666665"
    );
    assert_eq!(
        read.wait_json,
        Some(Value::Null),
        "absent keeps the stored null"
    );
}

/// Expired terminal flows vanish from every call at once; the sweep removes them (once, however
/// many sweeps run at once), announces it, and frees their place under the caps.
pub async fn retention_hides_expired_flows_and_the_sweep_removes_them<F: StoreFactory>(
    factory: &F,
) {
    let setup = Setup::new().config(
        StoreConfig::new()
            .retention(Some(Duration::from_millis(50)))
            .max_flows_per_owner(Some(2)),
    );
    let store = Arc::new(factory.open(setup.clone()).await);
    let done = created(&*store, OWNER, "done").await;
    let task = task_of(&*store, &done, NewTask::new(Runtime::Acp, "t")).await;
    let done = applied(&*store, &done, Mutation::Finish { state_json: None }).await;
    let open = created(&*store, OWNER, "open").await;
    let mut changes = store.subscribe();

    setup.clock.advance(49);
    assert_eq!(store.sweep_expired().await.unwrap(), 0);
    assert_eq!(
        store.get_flow(OWNER, &id(&done)).await.unwrap(),
        Some(done.clone())
    );

    setup.clock.advance(1);
    // Sweeps on several "replicas" at once remove the flow once.
    let sweeps: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.sweep_expired().await.unwrap() })
        })
        .collect();
    let mut removed = 0;
    for sweep in sweeps {
        removed += sweep.await.unwrap();
    }
    assert_eq!(removed, 1);
    assert_eq!(store.sweep_expired().await.unwrap(), 0);
    assert_eq!(store.get_flow(OWNER, &id(&done)).await.unwrap(), None);
    assert_eq!(store.flow_by_id(&id(&done)).await.unwrap(), None);
    assert_eq!(store.get_task(&task.id_string()).await.unwrap(), None);
    assert_eq!(store.list_flows(OWNER).await.unwrap().len(), 1);
    assert_eq!(store.get_flow(OWNER, &id(&open)).await.unwrap(), Some(open));
    let seen: Vec<ChangeEvent> = std::iter::from_fn(|| changes.try_recv()).collect();
    assert_eq!(
        seen,
        [
            ChangeEvent::Changed(Change::task(
                ChangeKind::TaskRemoved,
                done.flow_id,
                task.task_id
            )),
            ChangeEvent::Changed(Change::flow(ChangeKind::FlowRemoved, done.flow_id)),
        ]
    );
    // The expired flow's place under the cap is free again.
    created(&*store, OWNER, "third").await;

    // Without a sweep, an expired flow is gone all the same: for reads and for the cap.
    let other_done = created(&*store, OTHER, "done").await;
    let other_done = applied_as(&*store, OTHER, &other_done).await;
    created(&*store, OTHER, "open").await;
    setup.clock.advance(50);
    assert_eq!(store.get_flow(OTHER, &id(&other_done)).await.unwrap(), None);
    assert_eq!(
        store.resolve_flow(OTHER, &id(&other_done)).await.unwrap(),
        None
    );
    assert_eq!(store.list_flows(OTHER).await.unwrap().len(), 1);
    created(&*store, OTHER, "fits").await;
}

async fn applied_as<S: TaskFlowStore>(store: &S, owner: &str, flow: &Flow) -> Flow {
    match store
        .mutate_flow(
            owner,
            &id(flow),
            flow.revision,
            Mutation::Finish { state_json: None },
        )
        .await
        .unwrap()
    {
        MutationOutcome::Applied(flow) => flow,
        other => panic!("not applied: {other:?}"),
    }
}

/// One notification per committed change, by id, after the commit; a refused change sends none.
pub async fn notifications_name_each_committed_change<F: StoreFactory>(factory: &F) {
    let store = factory.open(Setup::new().hook(LeaveRunningActive)).await;
    let mut changes = store.subscribe();
    let flow = created(&store, OWNER, "g").await;
    let mut running = NewTask::new(Runtime::Acp, "r");
    running.status = TaskStatus::Running;
    let task = task_of(&store, &flow, running).await;
    let flow = applied(&store, &flow, Mutation::RequestCancel).await;
    assert!(matches!(
        store
            .mutate_flow(OWNER, &id(&flow), 0, Mutation::RequestCancel)
            .await
            .unwrap(),
        MutationOutcome::RevisionConflict(_)
    ));
    assert!(matches!(
        store
            .run_task(OWNER, &id(&flow), NewTask::new(Runtime::Acp, "x"))
            .await
            .unwrap(),
        RunTaskOutcome::CancelRequested(_)
    ));
    store.cancel_flow(OWNER, &id(&flow)).await.unwrap();
    store.finish_task(&task.id_string()).await.unwrap();

    let (f, t) = (flow.flow_id, task.task_id);
    let expected = [
        Change::flow(ChangeKind::FlowCreated, f),
        Change::task(ChangeKind::TaskCreated, f, t),
        Change::flow(ChangeKind::FlowUpdated, f),
        // cancel_flow: the request was already made and the running task stays active, so no
        // record changes. The task ends and with it the pending cancellation.
        Change::task(ChangeKind::TaskUpdated, f, t),
        Change::flow(ChangeKind::FlowUpdated, f),
    ];
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), changes.recv())
            .await
            .expect("a notification for each change")
            .expect("store alive");
        seen.push(event);
    }
    let expected: Vec<ChangeEvent> = expected.into_iter().map(ChangeEvent::Changed).collect();
    assert_eq!(seen, expected);
    assert_eq!(changes.try_recv(), None, "nothing more");
}

/// 16 writers hold the same revision: exactly one is applied, the others see a conflict, and the
/// stored revision went up by one.
pub async fn concurrent_writers_with_one_revision_exactly_one_applies<F: StoreFactory>(
    factory: &F,
) {
    let store = Arc::new(factory.open(Setup::new()).await);
    let flow = created(&*store, OWNER, "contended").await;
    let writers: Vec<_> = (0..16)
        .map(|n| {
            let store = Arc::clone(&store);
            let flow_id = id(&flow);
            tokio::spawn(async move {
                let mutation = Mutation::SetWaiting {
                    current_step: Patch::Set(format!("writer {n}")),
                    state_json: None,
                    wait_json: None,
                    blocked_task_id: Patch::Keep,
                    blocked_summary: Patch::Keep,
                };
                store
                    .mutate_flow(OWNER, &flow_id, 0, mutation)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for writer in writers {
        match writer.await.unwrap() {
            MutationOutcome::Applied(flow) => winners.push(flow),
            MutationOutcome::RevisionConflict(current) => assert_eq!(current.revision, 1),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let stored = store.get_flow(OWNER, &id(&flow)).await.unwrap().unwrap();
    assert_eq!(stored, winners[0]);
    assert_eq!(stored.revision, 1);
}

/// 24 creates at once against a cap of 10: exactly 10 succeed, the rest are `CapacityExceeded`.
pub async fn concurrent_creates_never_exceed_the_cap<F: StoreFactory>(factory: &F) {
    let store = Arc::new(
        factory
            .open(Setup::new().config(StoreConfig::new().max_flows_per_owner(Some(10))))
            .await,
    );
    let creates: Vec<_> = (0..24)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create_flow(OWNER, new_flow(&format!("{n}"))).await })
        })
        .collect();
    let mut ok = 0;
    for create in creates {
        match create.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::CapacityExceeded) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(store.list_flows(OWNER).await.unwrap().len(), 10);
}

/// The same `runId` sent 16 times at once: one task, every caller gets it.
pub async fn concurrent_run_task_with_one_run_id_creates_one_task<F: StoreFactory>(factory: &F) {
    let store = Arc::new(factory.open(Setup::new()).await);
    let flow = created(&*store, OWNER, "g").await;
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            let flow_id = id(&flow);
            tokio::spawn(async move {
                let mut new = NewTask::new(Runtime::Subagent, "t");
                new.run_id = Some("once".into());
                match store.run_task(OWNER, &flow_id, new).await.unwrap() {
                    RunTaskOutcome::Created { task, .. }
                    | RunTaskOutcome::Existing { task, .. } => task.task_id,
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for call in calls {
        ids.insert(call.await.unwrap());
    }
    assert_eq!(ids.len(), 1);
    let summary = store
        .task_summary(OWNER, &id(&flow))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.total(), 1);
}

/// Random action sequences give the same answers on this store as on the reference store
/// (`support/store_model.rs`), compared after renaming ids. `STORE_MODEL_CASES` sets how many
/// sequences (48 by default).
pub async fn model_matches_the_reference<F: StoreFactory>(factory: &F) {
    use crate::store_model::{RefStore, Runner, model_config, normalise, op};
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let handle = tokio::runtime::Handle::current();
    let cases = std::env::var("STORE_MODEL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(48);
    tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
            handle.block_on(async {
                let setup = Setup::new().config(model_config()).hook(LeaveRunningActive);
                let clock = Arc::clone(&setup.clock);
                let store = factory.open(setup).await;
                let reference_clock = ManualClock::new(T0);
                let reference = RefStore::new(Arc::clone(&reference_clock));
                let mut a = Runner::new(store, clock);
                let mut b = Runner::new(reference, reference_clock);
                let (mut names_a, mut names_b) = Default::default();
                for (i, op) in ops.iter().enumerate() {
                    let mut got = a.step(op).await;
                    let mut want = b.step(op).await;
                    normalise(&mut got, &mut names_a);
                    normalise(&mut want, &mut names_b);
                    if got != want {
                        return Err(TestCaseError::fail(format!(
                            "step {i} {op:?}\n got: {got}\nwant: {want}"
                        )));
                    }
                }
                Ok(())
            })
        });
        if let Err(error) = result {
            panic!("{error}");
        }
    });
}
