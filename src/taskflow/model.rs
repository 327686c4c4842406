//! Records and views of SPEC §3.2: flows, child tasks and the task summary.
//!
//! Records serialise by hand rather than through serde derive: the omission rules differ per field
//! kind (optional strings vanish when unset, caller JSON stays even when it is `null`) and the key
//! order follows the SPEC. [`Flow`] and [`Task`] list their members once, in wire order; a response
//! writes them straight from the fields (see [`JsonDocument`](crate::json::JsonDocument)), and
//! [`Flow::to_json`] & co. build a `serde_json::Value` from the same list.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::json::{Member, Members, Record, record_to_value};

macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in the order the SPEC lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// Parses the wire spelling; `None` for anything else (case matters).
            pub fn from_wire(text: &str) -> Option<Self> {
                match text {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// Status of a [`Flow`].
    FlowStatus {
        /// Created, not started.
        Queued => "queued",
        /// Being worked on.
        Running => "running",
        /// Waiting for something outside the flow.
        Waiting => "waiting",
        /// Blocked on a task or a condition (not terminal).
        Blocked => "blocked",
        /// Finished successfully (terminal).
        Succeeded => "succeeded",
        /// Finished unsuccessfully (terminal).
        Failed => "failed",
        /// Cancelled (terminal).
        Cancelled => "cancelled",
        /// Lost track of (terminal).
        Lost => "lost",
    }
}

impl FlowStatus {
    /// `succeeded`, `failed`, `cancelled` and `lost` are terminal; `blocked` is not.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Lost
        )
    }
}

string_enum! {
    /// How a [`Flow`] is driven. Webhooks create and may only touch `managed` flows.
    SyncMode {
        /// Driven by a controller through the TaskFlow actions.
        Managed => "managed",
        /// Mirrors a single task and follows it; not writable through the webhook surface.
        TaskMirrored => "task_mirrored",
    }
}

string_enum! {
    /// When the owner session is told about changes.
    NotifyPolicy {
        /// Only when the flow or task ends.
        DoneOnly => "done_only",
        /// On every status change.
        StateChanges => "state_changes",
        /// Never.
        Silent => "silent",
    }
}

string_enum! {
    /// Status of a child [`Task`].
    TaskStatus {
        /// Created, not started.
        Queued => "queued",
        /// Running.
        Running => "running",
        /// Finished successfully.
        Succeeded => "succeeded",
        /// Finished unsuccessfully.
        Failed => "failed",
        /// Ran out of time.
        TimedOut => "timed_out",
        /// Cancelled.
        Cancelled => "cancelled",
        /// Lost track of.
        Lost => "lost",
    }
}

impl TaskStatus {
    /// `queued` and `running` are active; everything else is terminal.
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }

    /// `failed`, `timed_out` and `lost` count as failures in the summary.
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::TimedOut | Self::Lost)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

string_enum! {
    /// What runs a child task. Webhooks may start only `subagent` and `acp` tasks; `cli` and `cron`
    /// exist for tasks the embedding application creates and appear in the summary.
    Runtime {
        /// A sub-agent session.
        Subagent => "subagent",
        /// An ACP session.
        Acp => "acp",
        /// A command-line run.
        Cli => "cli",
        /// A scheduled job.
        Cron => "cron",
    }
}

impl Runtime {
    const fn index(self) -> usize {
        self as usize
    }
}

/// Formats a UUID the way the wire carries it: lower-case, hyphenated.
pub(crate) fn id_string(id: Uuid) -> String {
    let mut buf = Uuid::encode_buffer();
    id.hyphenated().encode_lower(&mut buf).to_owned()
}

/// Parses an id as the wire carries it. Only the canonical lower-case hyphenated form is accepted,
/// so `get_flow` with an upper-cased id behaves like the original's exact string match: not found.
pub(crate) fn parse_id(text: &str) -> Option<Uuid> {
    if text.len() != 36 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Uuid::try_parse(text).ok()
}

/// A managed TaskFlow (SPEC §3.2).
///
/// `owner_key` is internal: it is serialised so that
/// [`ScrubOwnerMetadata`](crate::scrub) has something to remove, and must never reach a client.
///
/// Fields are public and the struct is exhaustive so another crate can implement a
/// [`TaskFlowStore`](crate::TaskFlowStore) backend that builds records itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// The id, a UUID v4 (lower-case on the wire).
    pub flow_id: Uuid,
    /// Always [`SyncMode::Managed`] for flows webhooks create.
    pub sync_mode: SyncMode,
    /// The owner session key (internal).
    pub owner_key: Arc<str>,
    /// Who drives the flow.
    pub controller_id: String,
    /// Bumped by every successful change; `0` at creation.
    pub revision: u64,
    /// Current status.
    pub status: FlowStatus,
    /// Notification policy.
    pub notify_policy: NotifyPolicy,
    /// What the flow is for.
    pub goal: String,
    /// Free-form current step.
    pub current_step: Option<String>,
    /// Task the flow is blocked on.
    pub blocked_task_id: Option<String>,
    /// Why the flow is blocked.
    pub blocked_summary: Option<String>,
    /// Caller state; `Some(Value::Null)` is a stored `null`, `None` is unset.
    pub state_json: Option<Value>,
    /// What the flow waits for; same convention as `state_json`.
    pub wait_json: Option<Value>,
    /// When cancellation was first requested (epoch ms).
    pub cancel_requested_at: Option<u64>,
    /// Creation time (epoch ms).
    pub created_at: u64,
    /// Last change (epoch ms).
    pub updated_at: u64,
    /// When the flow reached its current terminal status (epoch ms).
    pub ended_at: Option<u64>,
}

/// A string member that vanishes when unset or empty.
fn text(value: &Option<String>) -> Option<Member<'_>> {
    value.as_deref().filter(|v| !v.is_empty()).map(Member::Str)
}

fn number(value: Option<u64>) -> Option<Member<'static>> {
    value.map(Member::U64)
}

impl Flow {
    /// The id as the wire carries it.
    pub fn id_string(&self) -> String {
        id_string(self.flow_id)
    }

    /// The record as JSON, keys in SPEC order, `ownerKey` included.
    pub fn to_json(&self) -> Value {
        record_to_value(self, Default::default())
    }

    /// [`to_json`](Self::to_json), consuming the record.
    pub fn into_json(self) -> Value {
        self.to_json()
    }
}

impl Record for Flow {
    const MEMBERS: &'static [&'static str] = &[
        "flowId",
        "syncMode",
        "ownerKey",
        "controllerId",
        "revision",
        "status",
        "notifyPolicy",
        "goal",
        "currentStep",
        "blockedTaskId",
        "blockedSummary",
        "stateJson",
        "waitJson",
        "cancelRequestedAt",
        "createdAt",
        "updatedAt",
        "endedAt",
    ];

    fn members<E, F: FnMut(usize, Member<'_>) -> Result<(), E>>(
        &self,
        m: &mut Members<F>,
    ) -> Result<(), E> {
        m.put(Some(Member::Id(self.flow_id)))?;
        m.put(Some(Member::Str(self.sync_mode.as_str())))?;
        m.put(Some(Member::Str(&self.owner_key)))?;
        m.put(Some(Member::Str(&self.controller_id)))?;
        m.put(Some(Member::U64(self.revision)))?;
        m.put(Some(Member::Str(self.status.as_str())))?;
        m.put(Some(Member::Str(self.notify_policy.as_str())))?;
        m.put(Some(Member::Str(&self.goal)))?;
        m.put(text(&self.current_step))?;
        m.put(text(&self.blocked_task_id))?;
        m.put(text(&self.blocked_summary))?;
        // Caller JSON stays even when it is a stored `null`.
        m.put(self.state_json.as_ref().map(Member::Json))?;
        m.put(self.wait_json.as_ref().map(Member::Json))?;
        m.put(number(self.cancel_requested_at))?;
        m.put(Some(Member::U64(self.created_at)))?;
        m.put(Some(Member::U64(self.updated_at)))?;
        m.put(number(self.ended_at))
    }
}

/// A child task of a flow (SPEC §3.2).
///
/// `owner_key` and `requester_session_key` are internal, serialised for the scrub layer to remove.
/// Exhaustive, like [`Flow`], so other backends can build records.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// The id, a UUID v4.
    pub task_id: Uuid,
    /// What runs it.
    pub runtime: Runtime,
    /// Caller's source reference.
    pub source_id: Option<String>,
    /// Session the task runs in.
    pub child_session_key: Option<String>,
    /// The flow the task belongs to.
    pub parent_flow_id: Uuid,
    /// Caller's parent task reference.
    pub parent_task_id: Option<String>,
    /// Agent that runs the task.
    pub agent_id: Option<String>,
    /// Caller's run id; `run_task` is idempotent on it.
    pub run_id: Option<String>,
    /// Display label.
    pub label: Option<String>,
    /// What to do.
    pub task: String,
    /// Current status.
    pub status: TaskStatus,
    /// Notification policy (default `state_changes`).
    pub notify_policy: NotifyPolicy,
    /// Caller's hint, kept for the executor; not part of the serialised record.
    pub prefer_metadata: Option<bool>,
    /// Creation time (epoch ms).
    pub created_at: u64,
    /// When it started running (epoch ms).
    pub started_at: Option<u64>,
    /// When it ended (epoch ms).
    pub ended_at: Option<u64>,
    /// Last progress report (epoch ms).
    pub last_event_at: Option<u64>,
    /// Last progress text.
    pub progress_summary: Option<String>,
    /// Owner session key (internal).
    pub owner_key: Arc<str>,
    /// Session that asked for the task (internal): the route's session key.
    pub requester_session_key: Arc<str>,
}

impl Task {
    /// The id as the wire carries it.
    pub fn id_string(&self) -> String {
        id_string(self.task_id)
    }

    /// The record as JSON, keys in SPEC order, internal keys included.
    pub fn to_json(&self) -> Value {
        record_to_value(self, Default::default())
    }

    /// [`to_json`](Self::to_json), consuming the record.
    pub fn into_json(self) -> Value {
        self.to_json()
    }
}

impl Record for Task {
    const MEMBERS: &'static [&'static str] = &[
        "taskId",
        "runtime",
        "sourceId",
        "childSessionKey",
        "parentFlowId",
        "parentTaskId",
        "agentId",
        "runId",
        "label",
        "scopeKind",
        "task",
        "status",
        "deliveryStatus",
        "notifyPolicy",
        "createdAt",
        "startedAt",
        "endedAt",
        "lastEventAt",
        "progressSummary",
        "ownerKey",
        "requesterSessionKey",
    ];

    fn members<E, F: FnMut(usize, Member<'_>) -> Result<(), E>>(
        &self,
        m: &mut Members<F>,
    ) -> Result<(), E> {
        m.put(Some(Member::Id(self.task_id)))?;
        m.put(Some(Member::Str(self.runtime.as_str())))?;
        m.put(text(&self.source_id))?;
        m.put(text(&self.child_session_key))?;
        m.put(Some(Member::Id(self.parent_flow_id)))?;
        m.put(text(&self.parent_task_id))?;
        m.put(text(&self.agent_id))?;
        m.put(text(&self.run_id))?;
        m.put(text(&self.label))?;
        m.put(Some(Member::Str("session")))?;
        m.put(Some(Member::Str(&self.task)))?;
        m.put(Some(Member::Str(self.status.as_str())))?;
        m.put(Some(Member::Str("pending")))?;
        m.put(Some(Member::Str(self.notify_policy.as_str())))?;
        m.put(Some(Member::U64(self.created_at)))?;
        m.put(number(self.started_at))?;
        m.put(number(self.ended_at))?;
        m.put(number(self.last_event_at))?;
        m.put(text(&self.progress_summary))?;
        m.put(Some(Member::Str(&self.owner_key)))?;
        m.put(Some(Member::Str(&self.requester_session_key)))
    }
}

/// Counts of a flow's child tasks (SPEC §3.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskSummary {
    by_status: [u64; 7],
    by_runtime: [u64; 4],
}

impl TaskSummary {
    /// Counts `tasks`.
    pub fn from_tasks<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> Self {
        let mut summary = Self::default();
        for task in tasks {
            summary.by_status[task.status.index()] += 1;
            summary.by_runtime[task.runtime.index()] += 1;
        }
        summary
    }

    /// All tasks.
    pub fn total(&self) -> u64 {
        self.by_status.iter().sum()
    }

    /// `queued` + `running`.
    pub fn active(&self) -> u64 {
        self.status(TaskStatus::Queued) + self.status(TaskStatus::Running)
    }

    /// `total - active`.
    pub fn terminal(&self) -> u64 {
        self.total() - self.active()
    }

    /// `failed` + `timed_out` + `lost`.
    pub fn failures(&self) -> u64 {
        TaskStatus::ALL
            .iter()
            .filter(|s| s.is_failure())
            .map(|s| self.status(*s))
            .sum()
    }

    /// Tasks with `status`.
    pub fn status(&self, status: TaskStatus) -> u64 {
        self.by_status[status.index()]
    }

    /// Tasks on `runtime`.
    pub fn runtime(&self, runtime: Runtime) -> u64 {
        self.by_runtime[runtime.index()]
    }

    /// The summary as JSON.
    pub fn to_json(&self) -> Value {
        let mut by_status = Map::with_capacity(7);
        for status in TaskStatus::ALL {
            by_status.insert(status.as_str().into(), Value::from(self.status(*status)));
        }
        let mut by_runtime = Map::with_capacity(4);
        for runtime in Runtime::ALL {
            by_runtime.insert(runtime.as_str().into(), Value::from(self.runtime(*runtime)));
        }
        let mut map = Map::with_capacity(6);
        map.insert("total".into(), Value::from(self.total()));
        map.insert("active".into(), Value::from(self.active()));
        map.insert("terminal".into(), Value::from(self.terminal()));
        map.insert("failures".into(), Value::from(self.failures()));
        map.insert("byStatus".into(), Value::Object(by_status));
        map.insert("byRuntime".into(), Value::Object(by_runtime));
        Value::Object(map)
    }
}
