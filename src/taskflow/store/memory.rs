//! [`MemoryStore`], the default in-memory backend.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;
use serde_json::Value;
use uuid::Uuid;

use super::changes::{Change, ChangeFeed, ChangeKind, ChangeSender, ChangeSubscription};
use super::{
    CancelOutcome, FlowEnd, Mutation, MutationOutcome, NewFlow, NewTask, RunTaskOutcome,
    StoreConfig, StoreError, TaskFlowStore, TaskUpdate, TaskUpdateOutcome, mark_cancelled,
};
use crate::clock::{SharedClock, SystemClock};
use crate::taskflow::model::{Flow, FlowStatus, SyncMode, Task, TaskSummary, parse_id};
use crate::taskflow::notify::{CancelHook, CancelImmediately, ask_to_cancel};

/// The in-memory [`TaskFlowStore`].
///
/// Cheap to clone: clones share one store. Each owner session's flows sit behind one mutex, so the
/// revision check and the write are one atomic step, owner-scoped reads cost O(that owner's flows)
/// whatever else is stored, and a `cancel_flow` sees a consistent set of child tasks. Webhook
/// routes map to a handful of owners, and critical sections are a hash lookup and a few field
/// writes, so the lock is not a bottleneck in practice.
///
/// Memory is bounded by [`StoreConfig`]: caps on flows per owner, tasks per flow and bytes
/// per owner answer `507` `capacity_exceeded`, and terminal flows are pruned after the retention
/// period. The byte cap refuses `create_flow`, the mutations and `run_task` when they would grow
/// an owner past it; `cancel_flow` and the embedding-side calls are always applied (they add only a
/// status and timestamps, and ending flows is how a full owner makes room), so they may take an
/// owner slightly past the cap.
///
/// Flows are kept in `Arc`s: [`list_flows`](TaskFlowStore::list_flows) copies pointers under the
/// owner's lock and the records are serialised after it is released, so a list of many large flows
/// never holds up the owner's other requests. A write to a flow that a list still holds copies
/// that one flow first. Pruning is lazy (an owner's expired flows go the
/// next time that owner is touched, an O(1) check otherwise) and can be forced with
/// [`sweep_expired`](TaskFlowStore::sweep_expired), e.g. from an interval task.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    owners: DashMap<Arc<str>, Arc<Mutex<OwnerState>>>,
    // Embedding-side calls address a task by id alone; this finds its owner and flow.
    task_index: DashMap<Uuid, (Arc<str>, Uuid)>,
    clock: SharedClock,
    config: StoreConfig,
    hook: Arc<dyn CancelHook>,
    changes: ChangeSender,
    // Creation sequence: breaks `createdAt` ties (newest created first) without trusting the clock.
    seq: AtomicU64,
}

struct OwnerState {
    key: Arc<str>,
    flows: HashMap<Uuid, FlowEntry>,
    // JSON size of every flow and task above: the sum of the entries' `bytes()`.
    bytes: usize,
    // Earliest moment a flow of this owner may expire; `None` when nothing can. May be early
    // (a flow left its terminal status), never late.
    next_expiry: Option<u64>,
}

struct FlowEntry {
    flow: Arc<Flow>,
    flow_bytes: usize,
    seq: u64,
    tasks: Vec<Task>,
    task_bytes: usize,
    run_ids: HashMap<String, Vec<usize>>,
    // `cancel_flow` answered `cancel_pending`: the flow becomes `cancelled` when its last active
    // task ends.
    cancel_pending: bool,
}

/// A [`MutationOutcome`] whose flow is still the store's record, so the caller's copy is made
/// after the owner's lock is released.
enum SharedMutation {
    Applied(Arc<Flow>),
    NotFound,
    NotManaged(Arc<Flow>),
    RevisionConflict(Arc<Flow>),
}

impl From<SharedMutation> for MutationOutcome {
    fn from(outcome: SharedMutation) -> Self {
        match outcome {
            SharedMutation::Applied(flow) => Self::Applied(Arc::unwrap_or_clone(flow)),
            SharedMutation::NotFound => Self::NotFound,
            SharedMutation::NotManaged(flow) => Self::NotManaged(Arc::unwrap_or_clone(flow)),
            SharedMutation::RevisionConflict(flow) => {
                Self::RevisionConflict(Arc::unwrap_or_clone(flow))
            }
        }
    }
}

impl FlowEntry {
    fn bytes(&self) -> usize {
        self.flow_bytes + self.task_bytes
    }

    /// Measures the flow again after a change; returns the change in bytes for the owner's total.
    fn remeasure_flow(&mut self) -> (usize, usize) {
        let old = self.flow_bytes;
        self.flow_bytes = self.flow.stored_size();
        (old, self.flow_bytes)
    }
}

/// Where `cancel_flow` stands after its first step. Lives on the stack for one call, so the
/// size difference between its variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum CancelStep {
    /// Nothing for the hook to do: no such flow, a terminal one, or no active task (the flow is
    /// cancelled in the same step).
    Answer(CancelOutcome),
    /// The request is committed; ask the hook about these active tasks.
    AskHook(Vec<Task>),
}

/// `total` with a record of `old` bytes replaced by one of `new` bytes.
fn resized(total: usize, (old, new): (usize, usize)) -> usize {
    total.saturating_sub(old).saturating_add(new)
}

impl fmt::Debug for MemoryStore {
    // Records hold caller data and session keys; show sizes only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("owners", &self.inner.owners.len())
            .field("tasks", &self.inner.task_index.len())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the default limits, the system clock and [`CancelImmediately`].
    pub fn new() -> Self {
        Self::with_config(StoreConfig::default())
    }

    /// A store with `config`, the system clock and [`CancelImmediately`].
    pub fn with_config(config: StoreConfig) -> Self {
        Self::build(config, SystemClock::shared(), Arc::new(CancelImmediately))
    }

    /// A store with `config`, `clock` (epoch milliseconds for every timestamp and for retention)
    /// and `hook` for child-task cancellation.
    pub fn build(config: StoreConfig, clock: SharedClock, hook: Arc<dyn CancelHook>) -> Self {
        let changes = ChangeSender::new(config.event_capacity);
        Self {
            inner: Arc::new(Inner {
                owners: DashMap::new(),
                task_index: DashMap::new(),
                clock,
                config,
                hook,
                changes,
                seq: AtomicU64::new(0),
            }),
        }
    }

    /// Removes every expired terminal flow now, all owners; returns how many.
    fn sweep(&self) -> usize {
        let now = self.inner.clock.epoch_millis();
        let owners: Vec<_> = self
            .inner
            .owners
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect();
        owners
            .iter()
            .map(|owner| self.inner.prune(&mut owner.lock(), now, true))
            .sum()
    }

    /// Number of flows stored, all owners.
    pub fn flow_count(&self) -> usize {
        let owners: Vec<_> = self
            .inner
            .owners
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect();
        owners.iter().map(|o| o.lock().flows.len()).sum()
    }

    /// Bytes `owner`'s flows and tasks take, measured as their JSON text: what
    /// [`max_bytes_per_owner`](StoreConfig::max_bytes_per_owner) caps.
    pub fn stored_bytes(&self, owner: &str) -> usize {
        self.owner(owner).map_or(0, |state| state.lock().bytes)
    }

    /// Number of tasks stored, all flows.
    pub fn task_count(&self) -> usize {
        self.inner.task_index.len()
    }

    fn owner(&self, owner: &str) -> Option<Arc<Mutex<OwnerState>>> {
        self.inner.owners.get(owner).map(|e| Arc::clone(e.value()))
    }

    /// Runs `f` on `owner`'s state, locked, after lazy pruning. `None` if the owner has no state.
    fn with_owner<R>(&self, owner: &str, f: impl FnOnce(&mut OwnerState, u64) -> R) -> Option<R> {
        let state = self.owner(owner)?;
        let mut state = state.lock();
        let now = self.inner.clock.epoch_millis();
        self.inner.prune(&mut state, now, false);
        Some(f(&mut state, now))
    }

    fn create(&self, owner: &str, new: NewFlow) -> Result<Arc<Flow>, StoreError> {
        let state = match self.owner(owner) {
            Some(state) => state,
            None => Arc::clone(
                self.inner
                    .owners
                    .entry(Arc::from(owner))
                    .or_insert_with(|| {
                        Arc::new(Mutex::new(OwnerState {
                            key: Arc::from(owner),
                            flows: HashMap::new(),
                            bytes: 0,
                            next_expiry: None,
                        }))
                    })
                    .value(),
            ),
        };
        let mut state = state.lock();
        let now = self.inner.clock.epoch_millis();
        self.inner.prune(&mut state, now, false);
        if let Some(cap) = self.inner.config.max_flows_per_owner {
            if state.flows.len() >= cap {
                return Err(StoreError::CapacityExceeded);
            }
        }
        let flow = new.into_flow(Arc::clone(&state.key), now);
        let flow_bytes = flow.stored_size();
        if !self.inner.config.fits(state.bytes, (0, flow_bytes)) {
            return Err(StoreError::CapacityExceeded);
        }
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        self.inner.note_terminal(&mut state, &flow);
        let flow = Arc::new(flow);
        state.bytes += flow_bytes;
        state.flows.insert(
            flow.flow_id,
            FlowEntry {
                flow: Arc::clone(&flow),
                flow_bytes,
                seq,
                tasks: Vec::new(),
                task_bytes: 0,
                run_ids: HashMap::new(),
                cancel_pending: false,
            },
        );
        self.inner
            .changes
            .send(Change::flow(ChangeKind::FlowCreated, flow.flow_id));
        Ok(flow)
    }

    fn sorted(state: &OwnerState) -> Vec<&FlowEntry> {
        let mut entries: Vec<&FlowEntry> = state.flows.values().collect();
        entries.sort_unstable_by_key(|e| std::cmp::Reverse((e.flow.created_at, e.seq)));
        entries
    }

    fn latest(state: &OwnerState, filter: impl Fn(&Flow) -> bool) -> Option<Arc<Flow>> {
        state
            .flows
            .values()
            .filter(|e| filter(&e.flow))
            .max_by_key(|e| (e.flow.created_at, e.seq))
            .map(|e| Arc::clone(&e.flow))
    }

    fn entry<'a>(
        flows: &'a mut HashMap<Uuid, FlowEntry>,
        flow_id: &str,
    ) -> Option<&'a mut FlowEntry> {
        flows.get_mut(&parse_id(flow_id)?)
    }

    fn mutate(
        &self,
        owner: &str,
        flow_id: &str,
        expected_revision: u64,
        mutation: Mutation,
    ) -> Result<SharedMutation, StoreError> {
        self.with_owner(owner, |state, now| {
            let Some(entry) = Self::entry(&mut state.flows, flow_id) else {
                return Ok(SharedMutation::NotFound);
            };
            if entry.flow.sync_mode != SyncMode::Managed {
                return Ok(SharedMutation::NotManaged(Arc::clone(&entry.flow)));
            }
            if entry.flow.revision != expected_revision {
                return Ok(SharedMutation::RevisionConflict(Arc::clone(&entry.flow)));
            }
            // Applied to a copy first: a change the byte cap refuses must leave the flow as it was.
            let mut changed = Flow::clone(&entry.flow);
            mutation.apply(&mut changed, now);
            let sizes = (entry.flow_bytes, changed.stored_size());
            if !self.inner.config.fits(state.bytes, sizes) {
                return Err(StoreError::CapacityExceeded);
            }
            let flow = Arc::new(changed);
            entry.flow = Arc::clone(&flow);
            entry.flow_bytes = sizes.1;
            state.bytes = resized(state.bytes, sizes);
            self.inner
                .changes
                .send(Change::flow(ChangeKind::FlowUpdated, flow.flow_id));
            self.inner.note_terminal(state, &flow);
            Ok(SharedMutation::Applied(flow))
        })
        .unwrap_or(Ok(SharedMutation::NotFound))
    }

    fn run(&self, owner: &str, flow_id: &str, new: NewTask) -> Result<RunTaskOutcome, StoreError> {
        self.with_owner(owner, |state, now| {
            let owner_key = Arc::clone(&state.key);
            let Some(entry) = Self::entry(&mut state.flows, flow_id) else {
                return Ok(RunTaskOutcome::NotFound);
            };
            let flow = &*entry.flow;
            if flow.sync_mode != SyncMode::Managed {
                return Ok(RunTaskOutcome::NotManaged(flow.clone()));
            }
            if flow.cancel_requested_at.is_some() {
                return Ok(RunTaskOutcome::CancelRequested(flow.clone()));
            }
            if flow.status.is_terminal() {
                return Ok(RunTaskOutcome::Terminal(flow.clone()));
            }
            if let Some(run_id) = &new.run_id {
                let existing = entry.run_ids.get(run_id).and_then(|indexes| {
                    indexes
                        .iter()
                        .map(|i| &entry.tasks[*i])
                        .find(|task| new.is_repeat_of(task))
                });
                if let Some(task) = existing {
                    return Ok(RunTaskOutcome::Existing {
                        flow: flow.clone(),
                        task: task.clone(),
                    });
                }
            }
            if let Some(cap) = self.inner.config.max_tasks_per_flow {
                if entry.tasks.len() >= cap {
                    return Err(StoreError::CapacityExceeded);
                }
            }
            let task = new.into_task(flow.flow_id, Arc::clone(&owner_key), now);
            let task_bytes = task.stored_size();
            if !self.inner.config.fits(state.bytes, (0, task_bytes)) {
                return Err(StoreError::CapacityExceeded);
            }
            entry.task_bytes += task_bytes;
            state.bytes += task_bytes;
            if let Some(run_id) = &task.run_id {
                entry
                    .run_ids
                    .entry(run_id.clone())
                    .or_default()
                    .push(entry.tasks.len());
            }
            if entry.tasks.len() == entry.tasks.capacity() && entry.tasks.len() < 4 {
                // Most flows hold a task or two; `Vec`'s first growth step would reserve four
                // (~1.5 KiB of `Task`s) per flow.
                entry.tasks.reserve_exact(1);
            }
            entry.tasks.push(task.clone());
            self.inner
                .task_index
                .insert(task.task_id, (owner_key, task.parent_flow_id));
            self.inner.changes.send(Change::task(
                ChangeKind::TaskCreated,
                task.parent_flow_id,
                task.task_id,
            ));
            Ok(RunTaskOutcome::Created {
                flow: Flow::clone(&entry.flow),
                task,
            })
        })
        .unwrap_or(Ok(RunTaskOutcome::NotFound))
    }

    /// Step one of `cancel_flow`: the request, made once and committed.
    fn request_cancel(&self, owner: &str, flow_id: &str) -> CancelStep {
        let outcome = self.with_owner(owner, |state, now| {
            let Some(entry) = Self::entry(&mut state.flows, flow_id) else {
                return CancelStep::Answer(CancelOutcome::NotFound);
            };
            if entry.flow.status.is_terminal() {
                return CancelStep::Answer(CancelOutcome::Terminal {
                    flow: Flow::clone(&entry.flow),
                    tasks: entry.tasks.clone(),
                });
            }
            let active: Vec<Task> = entry
                .tasks
                .iter()
                .filter(|t| t.status.is_active())
                .cloned()
                .collect();
            let first_request = entry.flow.cancel_requested_at.is_none();
            if !first_request && !active.is_empty() {
                // A repeat while the cancellation is pending: nothing new to record, ask again.
                return CancelStep::AskHook(active);
            }
            let flow = Arc::make_mut(&mut entry.flow);
            if first_request {
                Mutation::RequestCancel.apply(flow, now);
            }
            if active.is_empty() {
                mark_cancelled(flow, now);
            } else {
                // Should the rest of `cancel_flow` never run (its caller went away), the flow
                // still becomes `cancelled` when its last active task ends.
                entry.cancel_pending = true;
            }
            let sizes = entry.remeasure_flow();
            state.bytes = resized(state.bytes, sizes);
            self.inner
                .changes
                .send(Change::flow(ChangeKind::FlowUpdated, entry.flow.flow_id));
            if active.is_empty() {
                let (flow, tasks) = (Flow::clone(&entry.flow), entry.tasks.clone());
                self.inner.note_terminal(state, &flow);
                return CancelStep::Answer(CancelOutcome::Cancelled { flow, tasks });
            }
            CancelStep::AskHook(active)
        });
        outcome.unwrap_or(CancelStep::Answer(CancelOutcome::NotFound))
    }

    /// Step three of `cancel_flow`: marks the tasks the hook stopped (if still active) and, when
    /// none is left active, the flow.
    fn settle_cancel(&self, owner: &str, flow_id: &str, stopped: &[Uuid]) -> CancelOutcome {
        let outcome = self.with_owner(owner, |state, now| {
            let Some(entry) = Self::entry(&mut state.flows, flow_id) else {
                return CancelOutcome::NotFound;
            };
            if entry.flow.status.is_terminal() {
                let (flow, tasks) = (Flow::clone(&entry.flow), entry.tasks.clone());
                // `cancelled` meanwhile: its last task ended and finished this cancellation.
                return if flow.status == FlowStatus::Cancelled {
                    CancelOutcome::Cancelled { flow, tasks }
                } else {
                    CancelOutcome::Terminal { flow, tasks }
                };
            }
            let bytes_before = entry.bytes();
            for task in entry
                .tasks
                .iter_mut()
                .filter(|t| t.status.is_active() && stopped.contains(&t.task_id))
            {
                let old_bytes = task.stored_size();
                TaskUpdate::Cancel.apply(task, now);
                let sizes = (old_bytes, task.stored_size());
                entry.task_bytes = resized(entry.task_bytes, sizes);
                self.inner.changes.send(Change::task(
                    ChangeKind::TaskUpdated,
                    task.parent_flow_id,
                    task.task_id,
                ));
            }
            let still_active = entry.tasks.iter().any(|t| t.status.is_active());
            entry.cancel_pending = still_active;
            if !still_active {
                mark_cancelled(Arc::make_mut(&mut entry.flow), now);
                entry.remeasure_flow();
                self.inner
                    .changes
                    .send(Change::flow(ChangeKind::FlowUpdated, entry.flow.flow_id));
            }
            state.bytes = resized(state.bytes, (bytes_before, entry.bytes()));
            let (flow, tasks) = (Flow::clone(&entry.flow), entry.tasks.clone());
            if still_active {
                CancelOutcome::Pending { flow, tasks }
            } else {
                self.inner.note_terminal(state, &flow);
                CancelOutcome::Cancelled { flow, tasks }
            }
        });
        outcome.unwrap_or(CancelOutcome::NotFound)
    }

    fn update(&self, task_id: &str, update: TaskUpdate) -> TaskUpdateOutcome {
        let Some(id) = parse_id(task_id) else {
            return TaskUpdateOutcome::NotFound;
        };
        let Some((owner, flow_id)) = self.inner.task_index.get(&id).map(|e| e.value().clone())
        else {
            return TaskUpdateOutcome::NotFound;
        };
        let Some(state) = self.owner(&owner) else {
            return TaskUpdateOutcome::NotFound;
        };
        let mut guard = state.lock();
        let state = &mut *guard;
        let now = self.inner.clock.epoch_millis();
        self.inner.prune(state, now, false);
        let Some(entry) = state.flows.get_mut(&flow_id) else {
            return TaskUpdateOutcome::NotFound;
        };
        let Some(task) = entry.tasks.iter_mut().find(|t| t.task_id == id) else {
            return TaskUpdateOutcome::NotFound;
        };
        let old_bytes = task.stored_size();
        if !update.apply(task, now) {
            return TaskUpdateOutcome::Rejected(task.clone());
        }
        let sizes = (old_bytes, task.stored_size());
        entry.task_bytes = resized(entry.task_bytes, sizes);
        state.bytes = resized(state.bytes, sizes);
        let task = task.clone();
        self.inner.changes.send(Change::task(
            ChangeKind::TaskUpdated,
            task.parent_flow_id,
            task.task_id,
        ));
        if entry.cancel_pending
            && !entry.flow.status.is_terminal()
            && entry.tasks.iter().all(|t| !t.status.is_active())
        {
            entry.cancel_pending = false;
            mark_cancelled(Arc::make_mut(&mut entry.flow), now);
            let sizes = entry.remeasure_flow();
            state.bytes = resized(state.bytes, sizes);
            self.inner
                .changes
                .send(Change::flow(ChangeKind::FlowUpdated, entry.flow.flow_id));
            let flow = Arc::clone(&entry.flow);
            self.inner.note_terminal(state, &flow);
        }
        TaskUpdateOutcome::Updated(task)
    }

    fn end(&self, flow_id: &str, end: FlowEnd, state_json: Option<Value>) -> Option<Flow> {
        let id = parse_id(flow_id)?;
        // O(owners): owners are route session keys, a handful; a flow → owner index would cost
        // memory on every flow for a call webhooks never make.
        let owners: Vec<_> = self
            .inner
            .owners
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect();
        for owner in owners {
            let mut guard = owner.lock();
            let state = &mut *guard;
            let now = self.inner.clock.epoch_millis();
            self.inner.prune(state, now, false);
            let Some(entry) = state.flows.get_mut(&id) else {
                continue;
            };
            end.apply(Arc::make_mut(&mut entry.flow), state_json, now);
            entry.cancel_pending = false;
            let sizes = entry.remeasure_flow();
            state.bytes = resized(state.bytes, sizes);
            let flow = Flow::clone(&entry.flow);
            self.inner
                .changes
                .send(Change::flow(ChangeKind::FlowUpdated, flow.flow_id));
            self.inner.note_terminal(state, &flow);
            return Some(flow);
        }
        None
    }
}

impl Inner {
    fn note_terminal(&self, state: &mut OwnerState, flow: &Flow) {
        if let Some(at) = self.config.expiry(flow) {
            state.next_expiry = Some(state.next_expiry.map_or(at, |t| t.min(at)));
        }
    }

    /// Removes expired terminal flows of one owner. Without `force`, does nothing unless the
    /// schedule says something may be due, so the common case is one comparison.
    fn prune(&self, state: &mut OwnerState, now: u64, force: bool) -> usize {
        if self.config.retention.is_none() {
            return 0;
        }
        match state.next_expiry {
            Some(at) if at <= now => {}
            Some(_) | None if !force => return 0,
            _ => {}
        }
        let expired: Vec<Uuid> = state
            .flows
            .values()
            .filter(|e| self.config.expiry(&e.flow).is_some_and(|at| at <= now))
            .map(|e| e.flow.flow_id)
            .collect();
        for id in &expired {
            if let Some(entry) = state.flows.remove(id) {
                state.bytes = state.bytes.saturating_sub(entry.bytes());
                for task in &entry.tasks {
                    self.task_index.remove(&task.task_id);
                    self.changes.send(Change::task(
                        ChangeKind::TaskRemoved,
                        entry.flow.flow_id,
                        task.task_id,
                    ));
                }
                self.changes
                    .send(Change::flow(ChangeKind::FlowRemoved, entry.flow.flow_id));
            }
        }
        state.next_expiry = state
            .flows
            .values()
            .filter_map(|e| self.config.expiry(&e.flow))
            .min();
        expired.len()
    }
}

impl ChangeFeed for MemoryStore {
    fn subscribe(&self) -> ChangeSubscription {
        self.inner.changes.subscribe()
    }
}

// The in-memory store never waits: every future is `std::future::Ready`, no state machine and no
// allocation.
impl TaskFlowStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn create_flow(
        &self,
        owner: &str,
        new: NewFlow,
    ) -> impl Future<Output = Result<Flow, StoreError>> + Send {
        ready(self.create(owner, new).map(Arc::unwrap_or_clone))
    }

    fn get_flow(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        // The copy for the caller is made once the lock is released.
        ready(Ok(self
            .with_owner(owner, |state, _| {
                Self::entry(&mut state.flows, flow_id).map(|e| Arc::clone(&e.flow))
            })
            .flatten()
            .map(Arc::unwrap_or_clone)))
    }

    fn list_flows(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<Arc<Flow>>, StoreError>> + Send {
        // Pointers only under the lock; the records are serialised after it is released.
        ready(Ok(self
            .with_owner(owner, |state, _| {
                Self::sorted(state)
                    .into_iter()
                    .map(|e| Arc::clone(&e.flow))
                    .collect()
            })
            .unwrap_or_default()))
    }

    fn find_latest_flow(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        ready(Ok(self
            .with_owner(owner, |state, _| Self::latest(state, |_| true))
            .flatten()
            .map(Arc::unwrap_or_clone)))
    }

    fn resolve_flow(
        &self,
        owner: &str,
        token: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        ready(Ok(self
            .with_owner(owner, |state, _| {
                if let Some(entry) = Self::entry(&mut state.flows, token) {
                    return Some(Arc::clone(&entry.flow));
                }
                if token != owner {
                    return None;
                }
                Self::latest(state, |f| !f.status.is_terminal())
                    .or_else(|| Self::latest(state, |_| true))
            })
            .flatten()
            .map(Arc::unwrap_or_clone)))
    }

    fn mutate_flow(
        &self,
        owner: &str,
        flow_id: &str,
        expected_revision: u64,
        mutation: Mutation,
    ) -> impl Future<Output = Result<MutationOutcome, StoreError>> + Send {
        ready(
            self.mutate(owner, flow_id, expected_revision, mutation)
                .map(MutationOutcome::from),
        )
    }

    fn run_task(
        &self,
        owner: &str,
        flow_id: &str,
        new: NewTask,
    ) -> impl Future<Output = Result<RunTaskOutcome, StoreError>> + Send {
        ready(self.run(owner, flow_id, new))
    }

    async fn cancel_flow(&self, owner: &str, flow_id: &str) -> Result<CancelOutcome, StoreError> {
        let active = match self.request_cancel(owner, flow_id) {
            CancelStep::AskHook(active) => active,
            CancelStep::Answer(answer) => return Ok(answer),
        };
        // No lock is held here: the hook may take its time and may call the store.
        let stopped = ask_to_cancel(&*self.inner.hook, &active).await;
        Ok(self.settle_cancel(owner, flow_id, &stopped))
    }

    fn task_summary(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<TaskSummary>, StoreError>> + Send {
        ready(Ok(self
            .with_owner(owner, |state, _| {
                Self::entry(&mut state.flows, flow_id).map(|e| TaskSummary::from_tasks(&e.tasks))
            })
            .flatten()))
    }

    fn list_tasks(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<Task>>, StoreError>> + Send {
        ready(Ok(self
            .with_owner(owner, |state, _| {
                Self::entry(&mut state.flows, flow_id).map(|e| e.tasks.clone())
            })
            .flatten()))
    }

    fn flow_by_id(
        &self,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        let found = parse_id(flow_id).and_then(|id| {
            // O(owners), like `end_flow`: owners are route session keys, a handful.
            let owners: Vec<_> = self
                .inner
                .owners
                .iter()
                .map(|e| Arc::clone(e.value()))
                .collect();
            let now = self.inner.clock.epoch_millis();
            owners.iter().find_map(|owner| {
                let mut state = owner.lock();
                self.inner.prune(&mut state, now, false);
                state.flows.get(&id).map(|e| Arc::clone(&e.flow))
            })
        });
        ready(Ok(found.map(Arc::unwrap_or_clone)))
    }

    fn get_task(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<Option<Task>, StoreError>> + Send {
        let found = (|| {
            let id = parse_id(task_id)?;
            let (owner, flow_id) = self.inner.task_index.get(&id)?.value().clone();
            let state = self.owner(&owner)?;
            let mut state = state.lock();
            self.inner
                .prune(&mut state, self.inner.clock.epoch_millis(), false);
            let entry = state.flows.get(&flow_id)?;
            entry.tasks.iter().find(|t| t.task_id == id).cloned()
        })();
        ready(Ok(found))
    }

    fn update_task(
        &self,
        task_id: &str,
        update: TaskUpdate,
    ) -> impl Future<Output = Result<TaskUpdateOutcome, StoreError>> + Send {
        ready(Ok(self.update(task_id, update)))
    }

    fn end_flow(
        &self,
        flow_id: &str,
        end: FlowEnd,
        state_json: Option<Value>,
    ) -> impl Future<Output = Result<Option<Flow>, StoreError>> + Send {
        ready(Ok(self.end(flow_id, end, state_json)))
    }

    fn sweep_expired(&self) -> impl Future<Output = Result<usize, StoreError>> + Send {
        ready(Ok(self.sweep()))
    }
}
