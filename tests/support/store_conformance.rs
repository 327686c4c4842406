//! One conformance suite for every `TaskFlowStore` backend (SPEC §7: "every backend passes one and
//! the same conformance suite").
//!
//! Each backend's test file implements [`StoreFactory`] (a fresh, empty store per call: its own
//! file, schema or database, so the cases run in parallel) and expands [`conformance_tests!`],
//! which writes one `#[tokio::test]` per case, so a failure names its case. A factory that cannot
//! run (a service not configured) returns `None` from its constructor after printing one line
//! saying why; the cases then return at once.
//!
//! Included by `#[path]` rather than through `support/mod.rs`, which needs the server features:
//! this file needs `taskflow` alone.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tower_webhooks::clock::ManualClock;
use tower_webhooks::taskflow::{
    CancelFuture, CancelHook, CancelImmediately, CancelOutcome, ChangeFeed, ChildCancel, Flow,
    FlowStatus, Mutation, MutationOutcome, NewFlow, NewTask, Patch, RunTaskOutcome, Runtime,
    StoreConfig, StoreError, Task, TaskFlowStore, TaskStatus,
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
    type Store: TaskFlowStore + ChangeFeed;

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

/// `create_flow` answers the stored record, and every read returns it field for field.
pub async fn create_and_read_round_trip<F: StoreFactory>(factory: &F) {
    let setup = Setup::new();
    let store = factory.open(setup.clone()).await;
    let mut new = new_flow("ship it");
    new.status = FlowStatus::Running;
    new.current_step = Some("step one".into());
    new.state_json = Some(json!({"z": 1, "a": [true, null, 1.6666666666666665]}));
    new.wait_json = Some(Value::Null);
    let flow = store.create_flow(OWNER, new).await.unwrap();
    assert_eq!(flow.revision, 0);
    assert_eq!(flow.status, FlowStatus::Running);
    assert_eq!(flow.created_at, T0);
    assert_eq!(flow.updated_at, T0);
    assert_eq!(&*flow.owner_key, OWNER);
    let id = flow.id_string();
    assert_eq!(
        store.get_flow(OWNER, &id).await.unwrap(),
        Some(flow.clone())
    );
    assert_eq!(store.flow_by_id(&id).await.unwrap(), Some(flow.clone()));
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
}

/// A flow owned by another session behaves exactly like a missing one, for every call.
pub async fn owners_see_only_their_own_flows<F: StoreFactory>(factory: &F) {
    let store = factory.open(Setup::new()).await;
    let flow = store.create_flow(OWNER, new_flow("mine")).await.unwrap();
    let id = flow.id_string();
    assert_eq!(store.get_flow(OTHER, &id).await.unwrap(), None);
    assert!(store.list_flows(OTHER).await.unwrap().is_empty());
    assert_eq!(store.find_latest_flow(OTHER).await.unwrap(), None);
    assert_eq!(store.resolve_flow(OTHER, &id).await.unwrap(), None);
    assert_eq!(store.resolve_flow(OTHER, OTHER).await.unwrap(), None);
    assert_eq!(store.task_summary(OTHER, &id).await.unwrap(), None);
    assert_eq!(store.list_tasks(OTHER, &id).await.unwrap(), None);
    assert_eq!(
        store
            .mutate_flow(OTHER, &id, 0, Mutation::RequestCancel)
            .await
            .unwrap(),
        MutationOutcome::NotFound
    );
    assert_eq!(
        store
            .run_task(OTHER, &id, NewTask::new(Runtime::Acp, "t"))
            .await
            .unwrap(),
        RunTaskOutcome::NotFound
    );
    assert_eq!(
        store.cancel_flow(OTHER, &id).await.unwrap(),
        CancelOutcome::NotFound
    );
    assert_eq!(
        store.get_flow(OWNER, &id).await.unwrap(),
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
    mirrored.sync_mode = tower_webhooks::taskflow::SyncMode::TaskMirrored;
    let mirrored = store.create_flow(OWNER, mirrored).await.unwrap();
    assert_eq!(
        store
            .mutate_flow(OWNER, &mirrored.id_string(), 0, Mutation::RequestCancel)
            .await
            .unwrap(),
        MutationOutcome::NotManaged(mirrored)
    );
    let flow = store.create_flow(OWNER, new_flow("g")).await.unwrap();
    let id = flow.id_string();
    assert_eq!(
        store
            .mutate_flow(OWNER, &id, 1, Mutation::RequestCancel)
            .await
            .unwrap(),
        MutationOutcome::RevisionConflict(flow.clone())
    );
    setup.clock.advance(5);
    let waiting = Mutation::SetWaiting {
        current_step: Patch::Set("waiting on CI".into()),
        state_json: Some(json!({"b": 2, "a": 1})),
        wait_json: Some(json!({"until": "green"})),
        blocked_task_id: Patch::Keep,
        blocked_summary: Patch::Keep,
    };
    let MutationOutcome::Applied(applied) =
        store.mutate_flow(OWNER, &id, 0, waiting).await.unwrap()
    else {
        panic!("not applied");
    };
    assert_eq!(applied.revision, 1);
    assert_eq!(applied.status, FlowStatus::Waiting);
    assert_eq!(applied.updated_at, T0 + 5);
    assert_eq!(store.get_flow(OWNER, &id).await.unwrap(), Some(applied));
}

/// Whether `error` is one of the `503` kinds (for cases that provoke backend failures).
pub fn is_persist_failure(error: &StoreError) -> bool {
    error.is_persist_failure()
}

/// A retention-period helper for cases that need a short one.
pub fn short_retention(ms: u64) -> StoreConfig {
    StoreConfig::new().retention(Some(Duration::from_millis(ms)))
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
