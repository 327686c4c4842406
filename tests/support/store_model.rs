//! The model test of the store conformance suite: random action sequences against a store and
//! against a deliberately simple reference store must give identical answers.
//!
//! The reference keeps every flow in one `Vec` behind one mutex, scans linearly, sorts with a
//! stable sort, prunes eagerly before every call and finds idempotent repeats by scanning all
//! tasks: none of a real store's indexes, per-owner maps, counters, expiry schedule or lazy
//! pruning. It shares only the pure field rules (`Mutation::apply`, `TaskUpdate::apply`), which
//! the example tests in `tests/taskflow.rs` pin down field by field.
//!
//! Both stores run behind `TaskFlowActionService`, with the same manual clock readings, two owner
//! sessions, small caps and a short retention, and a cancel hook that leaves running tasks active.
//! Ids are random, so each answer is compared after renaming every UUID by order of appearance.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use parking_lot::Mutex;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_webhooks::BufferedBody;
use tower_webhooks::clock::{Clock, ManualClock};
use tower_webhooks::taskflow::{
    CancelOutcome, Flow, FlowEnd, FlowStatus, Mutation, MutationOutcome, NewFlow, NewTask,
    RunTaskOutcome, StoreConfig, StoreError, SyncMode, Task, TaskFlowActionService, TaskFlowRoute,
    TaskFlowStore, TaskStatus, TaskSummary, TaskUpdate, TaskUpdateOutcome,
};
use uuid::Uuid;

pub const OWNERS: [&str; 2] = ["agent:main:hooks", "agent:ops:hooks"];
pub const MAX_FLOWS: usize = 5;
pub const MAX_TASKS: usize = 3;
pub const RETENTION: u64 = 6;

/// The caps and retention both stores run with.
pub fn model_config() -> StoreConfig {
    StoreConfig::new()
        .max_flows_per_owner(Some(MAX_FLOWS))
        .max_tasks_per_flow(Some(MAX_TASKS))
        .retention(Some(Duration::from_millis(RETENTION)))
}

// ------------------------------------------------------------------ reference

#[derive(Debug)]
struct RefFlow {
    flow: Flow,
    tasks: Vec<Task>,
    cancel_pending: bool,
}

#[derive(Debug)]
pub struct RefStore {
    flows: Mutex<Vec<RefFlow>>,
    clock: Arc<ManualClock>,
}

impl RefStore {
    pub fn new(clock: Arc<ManualClock>) -> Self {
        Self {
            flows: Mutex::new(Vec::new()),
            clock,
        }
    }

    fn now(&self) -> u64 {
        self.clock.epoch_millis()
    }

    fn locked(&self) -> parking_lot::MutexGuard<'_, Vec<RefFlow>> {
        let now = self.now();
        let mut flows = self.flows.lock();
        flows.retain(|f| {
            !(f.flow.status.is_terminal()
                && f.flow.ended_at.unwrap_or(f.flow.updated_at) + RETENTION <= now)
        });
        flows
    }

    fn find<'a>(flows: &'a mut [RefFlow], owner: &str, id: &str) -> Option<&'a mut RefFlow> {
        flows
            .iter_mut()
            .find(|f| f.flow.id_string() == id && &*f.flow.owner_key == owner)
    }

    fn newest(flows: &[RefFlow], owner: &str) -> Vec<Flow> {
        let mut list: Vec<Flow> = flows
            .iter()
            .rev()
            .filter(|f| &*f.flow.owner_key == owner)
            .map(|f| f.flow.clone())
            .collect();
        list.sort_by_key(|f| std::cmp::Reverse(f.created_at));
        list
    }
}

impl TaskFlowStore for RefStore {
    fn backend(&self) -> &'static str {
        "reference"
    }

    async fn flow_by_id(&self, id: &str) -> Result<Option<Flow>, StoreError> {
        let flows = self.locked();
        Ok(flows
            .iter()
            .find(|f| f.flow.id_string() == id)
            .map(|f| f.flow.clone()))
    }

    async fn sweep_expired(&self) -> Result<usize, StoreError> {
        let before = self.flows.lock().len();
        Ok(before - self.locked().len())
    }

    async fn create_flow(&self, owner: &str, new: NewFlow) -> Result<Flow, StoreError> {
        let now = self.now();
        let mut flows = self.locked();
        if flows.iter().filter(|f| &*f.flow.owner_key == owner).count() >= MAX_FLOWS {
            return Err(StoreError::CapacityExceeded);
        }
        let flow = Flow {
            flow_id: Uuid::new_v4(),
            sync_mode: new.sync_mode,
            owner_key: Arc::from(owner),
            controller_id: new.controller_id,
            revision: 0,
            status: new.status,
            notify_policy: new.notify_policy,
            goal: new.goal,
            current_step: new.current_step,
            blocked_task_id: None,
            blocked_summary: None,
            state_json: new.state_json,
            wait_json: new.wait_json,
            cancel_requested_at: None,
            created_at: now,
            updated_at: now,
            ended_at: new.status.is_terminal().then_some(now),
        };
        flows.push(RefFlow {
            flow: flow.clone(),
            tasks: Vec::new(),
            cancel_pending: false,
        });
        Ok(flow)
    }

    async fn get_flow(&self, owner: &str, id: &str) -> Result<Option<Flow>, StoreError> {
        Ok(Self::find(&mut self.locked(), owner, id).map(|f| f.flow.clone()))
    }

    async fn list_flows(&self, owner: &str) -> Result<Vec<Arc<Flow>>, StoreError> {
        Ok(Self::newest(&self.locked(), owner)
            .into_iter()
            .map(Arc::new)
            .collect())
    }

    async fn find_latest_flow(&self, owner: &str) -> Result<Option<Flow>, StoreError> {
        Ok(Self::newest(&self.locked(), owner).into_iter().next())
    }

    async fn resolve_flow(&self, owner: &str, token: &str) -> Result<Option<Flow>, StoreError> {
        let mut flows = self.locked();
        if let Some(f) = Self::find(&mut flows, owner, token) {
            return Ok(Some(f.flow.clone()));
        }
        if token != owner {
            return Ok(None);
        }
        let list = Self::newest(&flows, owner);
        Ok(list
            .iter()
            .find(|f| !f.status.is_terminal())
            .or(list.first())
            .cloned())
    }

    async fn mutate_flow(
        &self,
        owner: &str,
        id: &str,
        expected: u64,
        mutation: Mutation,
    ) -> Result<MutationOutcome, StoreError> {
        let now = self.now();
        let mut flows = self.locked();
        let Some(f) = Self::find(&mut flows, owner, id) else {
            return Ok(MutationOutcome::NotFound);
        };
        if f.flow.sync_mode != SyncMode::Managed {
            return Ok(MutationOutcome::NotManaged(f.flow.clone()));
        }
        if f.flow.revision != expected {
            return Ok(MutationOutcome::RevisionConflict(f.flow.clone()));
        }
        mutation.apply(&mut f.flow, now);
        Ok(MutationOutcome::Applied(f.flow.clone()))
    }

    async fn run_task(
        &self,
        owner: &str,
        id: &str,
        new: NewTask,
    ) -> Result<RunTaskOutcome, StoreError> {
        let now = self.now();
        let mut flows = self.locked();
        let Some(f) = Self::find(&mut flows, owner, id) else {
            return Ok(RunTaskOutcome::NotFound);
        };
        let flow = f.flow.clone();
        if flow.sync_mode != SyncMode::Managed {
            return Ok(RunTaskOutcome::NotManaged(flow));
        }
        if flow.cancel_requested_at.is_some() {
            return Ok(RunTaskOutcome::CancelRequested(flow));
        }
        if flow.status.is_terminal() {
            return Ok(RunTaskOutcome::Terminal(flow));
        }
        if let Some(task) = f.tasks.iter().find(|t| new.is_repeat_of(t)) {
            return Ok(RunTaskOutcome::Existing {
                flow,
                task: task.clone(),
            });
        }
        if f.tasks.len() >= MAX_TASKS {
            return Err(StoreError::CapacityExceeded);
        }
        let task = new.into_task(flow.flow_id, Arc::from(owner), now);
        f.tasks.push(task.clone());
        Ok(RunTaskOutcome::Created { flow, task })
    }

    async fn cancel_flow(&self, owner: &str, id: &str) -> Result<CancelOutcome, StoreError> {
        let now = self.now();
        let mut flows = self.locked();
        let Some(f) = Self::find(&mut flows, owner, id) else {
            return Ok(CancelOutcome::NotFound);
        };
        if f.flow.status.is_terminal() {
            return Ok(CancelOutcome::Terminal {
                flow: f.flow.clone(),
                tasks: f.tasks.clone(),
            });
        }
        if f.flow.cancel_requested_at.is_none() {
            f.flow.cancel_requested_at = Some(now);
            f.flow.revision += 1;
            f.flow.updated_at = now;
        }
        for task in &mut f.tasks {
            if task.status == TaskStatus::Queued {
                TaskUpdate::Cancel.apply(task, now);
            }
        }
        if f.tasks.iter().any(|t| t.status == TaskStatus::Running) {
            f.cancel_pending = true;
            return Ok(CancelOutcome::Pending {
                flow: f.flow.clone(),
                tasks: f.tasks.clone(),
            });
        }
        f.cancel_pending = false;
        f.flow.status = FlowStatus::Cancelled;
        f.flow.ended_at = Some(now);
        f.flow.revision += 1;
        f.flow.updated_at = now;
        Ok(CancelOutcome::Cancelled {
            flow: f.flow.clone(),
            tasks: f.tasks.clone(),
        })
    }

    async fn task_summary(&self, owner: &str, id: &str) -> Result<Option<TaskSummary>, StoreError> {
        Ok(Self::find(&mut self.locked(), owner, id).map(|f| TaskSummary::from_tasks(&f.tasks)))
    }

    async fn list_tasks(&self, owner: &str, id: &str) -> Result<Option<Vec<Task>>, StoreError> {
        Ok(Self::find(&mut self.locked(), owner, id).map(|f| f.tasks.clone()))
    }

    async fn get_task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let flows = self.locked();
        Ok(flows
            .iter()
            .flat_map(|f| f.tasks.iter())
            .find(|t| t.id_string() == id)
            .cloned())
    }

    async fn update_task(
        &self,
        id: &str,
        update: TaskUpdate,
    ) -> Result<TaskUpdateOutcome, StoreError> {
        let now = self.now();
        let mut flows = self.locked();
        for f in flows.iter_mut() {
            let Some(task) = f.tasks.iter_mut().find(|t| t.id_string() == id) else {
                continue;
            };
            if !update.apply(task, now) {
                return Ok(TaskUpdateOutcome::Rejected(task.clone()));
            }
            let task = task.clone();
            if f.cancel_pending
                && !f.flow.status.is_terminal()
                && f.tasks.iter().all(|t| !t.status.is_active())
            {
                f.cancel_pending = false;
                f.flow.status = FlowStatus::Cancelled;
                f.flow.ended_at = Some(now);
                f.flow.revision += 1;
                f.flow.updated_at = now;
            }
            return Ok(TaskUpdateOutcome::Updated(task));
        }
        Ok(TaskUpdateOutcome::NotFound)
    }

    async fn end_flow(
        &self,
        id: &str,
        end: FlowEnd,
        state_json: Option<Value>,
    ) -> Result<Option<Flow>, StoreError> {
        let now = self.now();
        let mut flows = self.locked();
        let Some(f) = flows.iter_mut().find(|f| f.flow.id_string() == id) else {
            return Ok(None);
        };
        f.flow.status = match end {
            FlowEnd::Succeeded => FlowStatus::Succeeded,
            FlowEnd::Failed => FlowStatus::Failed,
            _ => FlowStatus::Lost,
        };
        if state_json.is_some() {
            f.flow.state_json = state_json;
        }
        f.flow.wait_json = None;
        f.flow.ended_at = Some(now);
        f.flow.revision += 1;
        f.flow.updated_at = now;
        f.cancel_pending = false;
        Ok(Some(f.flow.clone()))
    }
}

// ------------------------------------------------------------------ runner

#[derive(Clone, Debug)]
pub enum Op {
    Create {
        owner: usize,
        status: usize,
        state: bool,
    },
    Get {
        owner: usize,
        flow: usize,
    },
    List {
        owner: usize,
    },
    Latest {
        owner: usize,
    },
    Resolve {
        owner: usize,
        how: usize,
        flow: usize,
    },
    Summary {
        owner: usize,
        flow: usize,
    },
    Mutate {
        owner: usize,
        flow: usize,
        kind: usize,
        rev: usize,
        blocked: bool,
    },
    Cancel {
        owner: usize,
        flow: usize,
    },
    Run {
        owner: usize,
        flow: usize,
        run_id: Option<u8>,
        running: bool,
        child: usize,
    },
    UpdateTask {
        task: usize,
        kind: usize,
    },
    EndFlow {
        flow: usize,
        kind: usize,
    },
    Advance {
        ms: u64,
    },
}

pub fn op() -> impl Strategy<Value = Op> {
    let owner = 0..2usize;
    prop_oneof![
        3 => (owner.clone(), 0..4usize, any::<bool>()).prop_map(|(owner, status, state)| Op::Create { owner, status, state }),
        1 => (owner.clone(), 0..8usize).prop_map(|(owner, flow)| Op::Get { owner, flow }),
        1 => owner.clone().prop_map(|owner| Op::List { owner }),
        1 => owner.clone().prop_map(|owner| Op::Latest { owner }),
        1 => (owner.clone(), 0..3usize, 0..8usize).prop_map(|(owner, how, flow)| Op::Resolve { owner, how, flow }),
        1 => (owner.clone(), 0..8usize).prop_map(|(owner, flow)| Op::Summary { owner, flow }),
        4 => (owner.clone(), 0..8usize, 0..5usize, 0..3usize, any::<bool>()).prop_map(|(owner, flow, kind, rev, blocked)| Op::Mutate { owner, flow, kind, rev, blocked }),
        2 => (owner.clone(), 0..8usize).prop_map(|(owner, flow)| Op::Cancel { owner, flow }),
        4 => (owner.clone(), 0..8usize, proptest::option::of(0..3u8), any::<bool>(), 0..3usize).prop_map(|(owner, flow, run_id, running, child)| Op::Run { owner, flow, run_id, running, child }),
        3 => (0..12usize, 0..7usize).prop_map(|(task, kind)| Op::UpdateTask { task, kind }),
        1 => (0..8usize, 0..3usize).prop_map(|(flow, kind)| Op::EndFlow { flow, kind }),
        2 => (0..4u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

pub struct Runner<S: TaskFlowStore> {
    store: Arc<S>,
    clock: Arc<ManualClock>,
    services: [TaskFlowActionService<S>; 2],
    flows: Vec<(String, usize)>,
    tasks: Vec<String>,
}

const BOGUS: &str = "00000000-0000-4000-8000-000000000000";

impl<S: TaskFlowStore> Runner<S> {
    pub fn new(store: S, clock: Arc<ManualClock>) -> Self {
        let store = Arc::new(store);
        let services = OWNERS.map(|owner| {
            TaskFlowActionService::new(Arc::clone(&store), TaskFlowRoute::new("r", owner))
        });
        Self {
            store,
            clock,
            services,
            flows: Vec::new(),
            tasks: Vec::new(),
        }
    }

    fn flow(&self, index: usize) -> (String, usize) {
        self.flows.get(index).cloned().unwrap_or((BOGUS.into(), 0))
    }

    async fn call(&self, owner: usize, body: Value) -> Value {
        let request = Request::post("/")
            .body(BufferedBody::new(body.to_string()))
            .unwrap();
        let response = self.services[owner].clone().oneshot(request).await.unwrap();
        json!({"status": response.status().as_u16(), "body": response.body().json_value()})
    }

    pub async fn step(&mut self, op: &Op) -> Value {
        match *op {
            Op::Create {
                owner,
                status,
                state,
            } => {
                let status = ["queued", "running", "waiting", "blocked"][status];
                let mut body = json!({"action": "create_flow", "goal": "g", "status": status});
                if state {
                    body["stateJson"] = json!({"s": status});
                }
                let answer = self.call(owner, body).await;
                if let Some(id) = answer["body"]["result"]["flow"]["flowId"].as_str() {
                    self.flows.push((id.to_owned(), owner));
                }
                answer
            }
            Op::Get { owner, flow } => {
                let id = self.flow(flow).0;
                self.call(owner, json!({"action": "get_flow", "flowId": id}))
                    .await
            }
            Op::List { owner } => self.call(owner, json!({"action": "list_flows"})).await,
            Op::Latest { owner } => {
                self.call(owner, json!({"action": "find_latest_flow"}))
                    .await
            }
            Op::Resolve { owner, how, flow } => {
                let token = match how {
                    0 => self.flow(flow).0,
                    1 => OWNERS[owner].to_owned(),
                    _ => OWNERS[1 - owner].to_owned(),
                };
                self.call(owner, json!({"action": "resolve_flow", "token": token}))
                    .await
            }
            Op::Summary { owner, flow } => {
                let id = self.flow(flow).0;
                self.call(owner, json!({"action": "get_task_summary", "flowId": id}))
                    .await
            }
            Op::Mutate {
                owner,
                flow,
                kind,
                rev,
                blocked,
            } => {
                let (id, flow_owner) = self.flow(flow);
                let current = self
                    .store
                    .get_flow(OWNERS[flow_owner], &id)
                    .await
                    .unwrap()
                    .map_or(0, |f| f.revision);
                let expected = match rev {
                    0 => current,
                    1 => current + 1,
                    _ => current.saturating_sub(1),
                };
                let action = [
                    "set_waiting",
                    "resume_flow",
                    "finish_flow",
                    "fail_flow",
                    "request_cancel",
                ][kind];
                let mut body =
                    json!({"action": action, "flowId": id, "expectedRevision": expected});
                if blocked && (kind == 0 || kind == 3) {
                    body["blockedSummary"] = json!("b");
                }
                if kind == 1 && blocked {
                    body["status"] = json!("running");
                }
                self.call(owner, body).await
            }
            Op::Cancel { owner, flow } => {
                let id = self.flow(flow).0;
                self.call(owner, json!({"action": "cancel_flow", "flowId": id}))
                    .await
            }
            Op::Run {
                owner,
                flow,
                run_id,
                running,
                child,
            } => {
                let id = self.flow(flow).0;
                let mut body =
                    json!({"action": "run_task", "flowId": id, "runtime": "subagent", "task": "t"});
                if let Some(run_id) = run_id {
                    body["runId"] = json!(format!("run-{run_id}"));
                }
                if running {
                    body["status"] = json!("running");
                }
                match child {
                    1 => body["childSessionKey"] = json!("agent:main:child"),
                    2 => body["childSessionKey"] = json!("agent:ops:child"),
                    _ => {}
                }
                let answer = self.call(owner, body).await;
                if let Some(id) = answer["body"]["result"]["task"]["taskId"].as_str() {
                    if !self.tasks.iter().any(|t| t == id) {
                        self.tasks.push(id.to_owned());
                    }
                }
                answer
            }
            Op::UpdateTask { task, kind } => {
                let id = self.tasks.get(task).cloned().unwrap_or(BOGUS.into());
                let update = [
                    TaskUpdate::Start,
                    TaskUpdate::Progress(Some("p".into())),
                    TaskUpdate::Finish,
                    TaskUpdate::Fail,
                    TaskUpdate::TimeOut,
                    TaskUpdate::Lost,
                    TaskUpdate::Cancel,
                ][kind]
                    .clone();
                let outcome = self.store.update_task(&id, update).await.unwrap();
                match outcome {
                    TaskUpdateOutcome::Updated(t) => json!({"updated": t.to_json()}),
                    TaskUpdateOutcome::Rejected(t) => json!({"rejected": t.to_json()}),
                    TaskUpdateOutcome::NotFound => json!("not found"),
                }
            }
            Op::EndFlow { flow, kind } => {
                let id = self.flow(flow).0;
                let end = [FlowEnd::Succeeded, FlowEnd::Failed, FlowEnd::Lost][kind];
                let flow = self.store.end_flow(&id, end, None).await.unwrap();
                json!({"ended": flow.map(|f| f.to_json())})
            }
            Op::Advance { ms } => {
                self.clock.advance(ms);
                Value::Null
            }
        }
    }
}

/// Renames every UUID string by order of first appearance, so two runs with different random ids
/// compare equal when they behave the same.
pub fn normalise(value: &mut Value, names: &mut HashMap<String, String>) {
    match value {
        Value::String(s) if s.len() == 36 && Uuid::try_parse(s).is_ok() && s != BOGUS => {
            let next = format!("id{}", names.len());
            *s = names.entry(s.clone()).or_insert(next).clone();
        }
        Value::Array(items) => items.iter_mut().for_each(|v| normalise(v, names)),
        Value::Object(map) => map.values_mut().for_each(|v| normalise(v, names)),
        _ => {}
    }
}
