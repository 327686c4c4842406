//! Change notifications and the child-task cancellation hook.
//!
//! Notifications are a `tokio::sync::broadcast` channel: any number of subscribers, no callback runs
//! under a store lock, and a slow subscriber loses old events (it sees
//! [`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError::Lagged)) instead of slowing
//! webhooks down. Nothing is cloned for notification while there is no subscriber.

use std::fmt;
use std::sync::Arc;

use tokio::sync::broadcast;
use uuid::Uuid;

use super::model::{Flow, FlowStatus, Task, TaskStatus};

/// A change to the store, as [`MemoryStore::subscribe`](crate::taskflow::MemoryStore::subscribe) reports it.
///
/// Events of one owner are sent in the order the changes were made.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// A flow was created.
    FlowCreated {
        /// The new flow.
        flow: Flow,
    },
    /// A flow changed.
    FlowUpdated {
        /// Its status before the change.
        old_status: FlowStatus,
        /// The flow after the change.
        flow: Flow,
    },
    /// A terminal flow passed its retention period and was removed, with its tasks.
    FlowPruned {
        /// The removed flow's id.
        flow_id: Uuid,
        /// Its owner session key.
        owner_key: Arc<str>,
    },
    /// A child task was created.
    TaskCreated {
        /// The new task.
        task: Task,
    },
    /// A child task changed.
    TaskUpdated {
        /// Its status before the change.
        old_status: TaskStatus,
        /// The task after the change.
        task: Task,
    },
    /// A child task was removed with its pruned flow.
    TaskPruned {
        /// The removed task's id.
        task_id: Uuid,
        /// Its flow's id.
        flow_id: Uuid,
    },
}

/// Sends [`StoreEvent`]s to subscribers.
#[derive(Clone, Debug)]
pub(crate) struct Notifier {
    sender: broadcast::Sender<StoreEvent>,
}

impl Notifier {
    pub(crate) fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.sender.subscribe()
    }

    /// Whether anyone listens: callers check first so they clone records only when needed.
    pub(crate) fn active(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub(crate) fn send(&self, event: impl FnOnce() -> StoreEvent) {
        if self.active() {
            // An error means every receiver went away in between: nobody to tell.
            let _ = self.sender.send(event());
        }
    }
}

/// What a [`CancelHook`] did with an active child task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildCancel {
    /// The task stopped: the store marks it `cancelled`.
    Cancelled,
    /// The task is still running (cancellation was signalled, it has not stopped yet): the store
    /// leaves it active and `cancel_flow` answers `202` `cancel_pending`. Report the end later with
    /// [`TaskFlowStore::update_task`](crate::taskflow::TaskFlowStore::update_task); when the last active task
    /// of a flow with a pending cancellation ends, the flow becomes `cancelled`.
    StillActive,
}

/// Cancels the active child tasks of a flow during `cancel_flow`.
///
/// Called once per `queued` or `running` task while the store holds the owner's lock: it must be
/// quick, must not block and must not call back into the store. Signal the executor and return
/// [`ChildCancel::StillActive`] if the task cannot be stopped synchronously.
pub trait CancelHook: Send + Sync + fmt::Debug + 'static {
    /// Cancels `task`.
    fn cancel_task(&self, task: &Task) -> ChildCancel;
}

/// The default hook: every child task is cancelled at once (no executor inside this crate).
#[derive(Clone, Copy, Debug, Default)]
pub struct CancelImmediately;

impl CancelHook for CancelImmediately {
    fn cancel_task(&self, _task: &Task) -> ChildCancel {
        ChildCancel::Cancelled
    }
}
