//! The child-task cancellation hook of `cancel_flow`.
//!
//! The hook runs *after* the cancellation request is committed and outside any lock or
//! transaction: it may take its time (signal an executor over the network, wait for an
//! acknowledgement) and may call the store. What it answers is then written in a second step.

use std::fmt;
use std::future::{Future, ready};
use std::pin::Pin;

use uuid::Uuid;

use super::model::Task;

/// What a [`CancelHook`] did with an active child task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildCancel {
    /// The task stopped: the store marks it `cancelled`.
    Cancelled,
    /// The task is still running (cancellation was signalled, it has not stopped yet): the store
    /// leaves it active and `cancel_flow` answers `202` `cancel_pending`. Report the end later with
    /// [`TaskFlowStore::update_task`](crate::taskflow::TaskFlowStore::update_task); when the last
    /// active task of a flow with a pending cancellation ends, the flow becomes `cancelled`.
    StillActive,
}

/// The future a [`CancelHook`] answers with.
pub type CancelFuture<'a> = Pin<Box<dyn Future<Output = ChildCancel> + Send + 'a>>;

/// Cancels the active child tasks of a flow during `cancel_flow`.
///
/// Called once per `queued` or `running` task, after the flow's cancellation request is committed
/// and with no store lock or transaction held, so it may await and may call the store. A task
/// that ended meanwhile keeps the status it ended with, whatever the hook answers.
pub trait CancelHook: Send + Sync + fmt::Debug + 'static {
    /// Cancels `task`.
    fn cancel_task<'a>(&'a self, task: &'a Task) -> CancelFuture<'a>;
}

/// Asks `hook` to cancel each of `active`, one after another; the ids of those it stopped. Every
/// store's `cancel_flow` calls it between committing the request and settling it, holding nothing.
pub(crate) async fn ask_to_cancel(hook: &dyn CancelHook, active: &[Task]) -> Vec<Uuid> {
    let mut stopped = Vec::with_capacity(active.len());
    for task in active {
        if hook.cancel_task(task).await == ChildCancel::Cancelled {
            stopped.push(task.task_id);
        }
    }
    stopped
}

/// The default hook: every child task is cancelled at once (no executor inside this crate).
#[derive(Clone, Copy, Debug, Default)]
pub struct CancelImmediately;

impl CancelHook for CancelImmediately {
    fn cancel_task<'a>(&'a self, _task: &'a Task) -> CancelFuture<'a> {
        Box::pin(ready(ChildCancel::Cancelled))
    }
}
