//! Records and views of SPEC §3.2: flows, child tasks and the task summary.
//!
//! Records serialise by hand rather than through serde derive: the omission rules differ per field
//! kind (optional strings vanish when unset, caller JSON stays even when it is `null`) and the key
//! order follows the SPEC. [`Flow`] and [`Task`] list their members once, in wire order; a response
//! writes them straight from the fields (see [`JsonDocument`](crate::json::JsonDocument)), and
//! [`Flow::to_json`] & co. build a `serde_json::Value` from the same list.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::json::{JsonDocument, JsonRecord, Member, MemberVisitor, json_size, record_to_value};

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
/// `owner_key` is internal: the store needs it, a client never sees it. Every serialisation meant
/// for a response ([`to_json`](Self::to_json), a [`JsonDocument`] built from the record) writes
/// the allow-listed members of SPEC §4 only; [`to_stored_json`](Self::to_stored_json) is the one
/// that includes the owner, for the store and its tests.
///
/// Fields are public and the struct is exhaustive so another crate can implement a
/// [`TaskFlowStore`](crate::taskflow::TaskFlowStore) backend that builds records itself.
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

/// Which members a record writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    /// What a client may see: SPEC §3.2 without the internal owner fields (SPEC §4).
    Public,
    /// Everything the store keeps, owner fields included.
    Stored,
}

/// A string member that vanishes when unset or empty.
fn text(value: &Option<String>) -> Option<Member<'_>> {
    value.as_deref().filter(|v| !v.is_empty()).map(Member::Str)
}

fn number(value: Option<u64>) -> Option<Member<'static>> {
    value.map(Member::U64)
}

/// Visits `member` under `key` if it is present.
fn optional(
    visit: &mut MemberVisitor<'_>,
    key: &'static str,
    member: Option<Member<'_>>,
) -> ControlFlow<()> {
    match member {
        Some(member) => visit(key, member),
        None => ControlFlow::Continue(()),
    }
}

/// A record seen with its owner fields: what the store measures against its byte cap.
#[derive(Debug)]
struct Stored<'a, R>(&'a R);

impl Flow {
    /// The id as the wire carries it.
    pub fn id_string(&self) -> String {
        id_string(self.flow_id)
    }

    /// The record as a client sees it: SPEC §3.2 order, without `ownerKey`.
    pub fn to_json(&self) -> Value {
        record_to_value(self)
    }

    /// [`to_json`](Self::to_json), consuming the record.
    pub fn into_json(self) -> Value {
        self.to_json()
    }

    /// The record as the store keeps it, `ownerKey` included: for a backend and its tests, never
    /// for a response.
    pub fn to_stored_json(&self) -> Value {
        record_to_value(&Stored(self))
    }

    /// The length of [`to_stored_json`](Self::to_stored_json)'s text, without building it.
    pub(crate) fn stored_size(&self) -> usize {
        json_size(&Stored(self))
    }

    fn visit(&self, view: View, visit: &mut MemberVisitor<'_>) -> ControlFlow<()> {
        visit("flowId", Member::Id(self.flow_id))?;
        visit("syncMode", Member::Str(self.sync_mode.as_str()))?;
        if view == View::Stored {
            visit("ownerKey", Member::Str(&self.owner_key))?;
        }
        visit("controllerId", Member::Str(&self.controller_id))?;
        visit("revision", Member::U64(self.revision))?;
        visit("status", Member::Str(self.status.as_str()))?;
        visit("notifyPolicy", Member::Str(self.notify_policy.as_str()))?;
        visit("goal", Member::Str(&self.goal))?;
        optional(visit, "currentStep", text(&self.current_step))?;
        optional(visit, "blockedTaskId", text(&self.blocked_task_id))?;
        optional(visit, "blockedSummary", text(&self.blocked_summary))?;
        // Caller JSON stays even when it is a stored `null`.
        optional(
            visit,
            "stateJson",
            self.state_json.as_ref().map(Member::Json),
        )?;
        optional(visit, "waitJson", self.wait_json.as_ref().map(Member::Json))?;
        optional(visit, "cancelRequestedAt", number(self.cancel_requested_at))?;
        visit("createdAt", Member::U64(self.created_at))?;
        visit("updatedAt", Member::U64(self.updated_at))?;
        optional(visit, "endedAt", number(self.ended_at))
    }
}

impl JsonRecord for Flow {
    fn visit_members(&self, visit: &mut MemberVisitor<'_>) -> ControlFlow<()> {
        self.visit(View::Public, visit)
    }
}

impl JsonRecord for Stored<'_, Flow> {
    fn visit_members(&self, visit: &mut MemberVisitor<'_>) -> ControlFlow<()> {
        self.0.visit(View::Stored, visit)
    }
}

impl From<Flow> for JsonDocument {
    /// The client's view of the flow (no `ownerKey`).
    fn from(flow: Flow) -> Self {
        Self::from(Arc::new(flow))
    }
}

impl From<Arc<Flow>> for JsonDocument {
    /// The client's view of the record itself, not a copy: it is serialised when the body is
    /// written.
    fn from(flow: Arc<Flow>) -> Self {
        JsonDocument::record(flow)
    }
}

/// A child task of a flow (SPEC §3.2).
///
/// `owner_key` and `requester_session_key` are internal: like [`Flow`]'s owner, they are written
/// by [`to_stored_json`](Self::to_stored_json) only, never into a response. Exhaustive, like
/// [`Flow`], so other backends can build records.
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

    /// The record as a client sees it: SPEC §3.2 order, without `ownerKey` and
    /// `requesterSessionKey`.
    pub fn to_json(&self) -> Value {
        record_to_value(self)
    }

    /// [`to_json`](Self::to_json), consuming the record.
    pub fn into_json(self) -> Value {
        self.to_json()
    }

    /// The record as the store keeps it, `ownerKey` and `requesterSessionKey` included: for a
    /// backend and its tests, never for a response.
    pub fn to_stored_json(&self) -> Value {
        record_to_value(&Stored(self))
    }

    /// The length of [`to_stored_json`](Self::to_stored_json)'s text, without building it.
    pub(crate) fn stored_size(&self) -> usize {
        json_size(&Stored(self))
    }

    fn visit(&self, view: View, visit: &mut MemberVisitor<'_>) -> ControlFlow<()> {
        visit("taskId", Member::Id(self.task_id))?;
        visit("runtime", Member::Str(self.runtime.as_str()))?;
        optional(visit, "sourceId", text(&self.source_id))?;
        optional(visit, "childSessionKey", text(&self.child_session_key))?;
        visit("parentFlowId", Member::Id(self.parent_flow_id))?;
        optional(visit, "parentTaskId", text(&self.parent_task_id))?;
        optional(visit, "agentId", text(&self.agent_id))?;
        optional(visit, "runId", text(&self.run_id))?;
        optional(visit, "label", text(&self.label))?;
        visit("scopeKind", Member::Str("session"))?;
        visit("task", Member::Str(&self.task))?;
        visit("status", Member::Str(self.status.as_str()))?;
        visit("deliveryStatus", Member::Str("pending"))?;
        visit("notifyPolicy", Member::Str(self.notify_policy.as_str()))?;
        visit("createdAt", Member::U64(self.created_at))?;
        optional(visit, "startedAt", number(self.started_at))?;
        optional(visit, "endedAt", number(self.ended_at))?;
        optional(visit, "lastEventAt", number(self.last_event_at))?;
        optional(visit, "progressSummary", text(&self.progress_summary))?;
        if view == View::Stored {
            visit("ownerKey", Member::Str(&self.owner_key))?;
            visit(
                "requesterSessionKey",
                Member::Str(&self.requester_session_key),
            )?;
        }
        ControlFlow::Continue(())
    }
}

impl JsonRecord for Task {
    fn visit_members(&self, visit: &mut MemberVisitor<'_>) -> ControlFlow<()> {
        self.visit(View::Public, visit)
    }
}

impl JsonRecord for Stored<'_, Task> {
    fn visit_members(&self, visit: &mut MemberVisitor<'_>) -> ControlFlow<()> {
        self.0.visit(View::Stored, visit)
    }
}

impl From<Task> for JsonDocument {
    /// The client's view of the task (no `ownerKey`, no `requesterSessionKey`).
    fn from(task: Task) -> Self {
        JsonDocument::record(Arc::new(task))
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

    /// Adds `count` tasks of `status` on `runtime`: for a backend that counts in its database.
    #[cfg(feature = "postgres")]
    pub(crate) fn add(&mut self, status: TaskStatus, runtime: Runtime, count: u64) {
        self.by_status[status.index()] += count;
        self.by_runtime[runtime.index()] += count;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taskflow::NewTask;
    use serde_json::json;

    fn flow() -> Flow {
        Flow {
            flow_id: Uuid::from_u128(7),
            sync_mode: SyncMode::Managed,
            owner_key: "agent:main:x".into(),
            controller_id: "ctl".into(),
            revision: 3,
            status: FlowStatus::Waiting,
            notify_policy: NotifyPolicy::DoneOnly,
            goal: "ship \"it\"".into(),
            current_step: Some("step".into()),
            blocked_task_id: None,
            blocked_summary: Some(String::new()),
            state_json: Some(json!({"ownerKey": 1, "a": [1, 2]})),
            wait_json: Some(Value::Null),
            cancel_requested_at: Some(5),
            created_at: 1_000,
            updated_at: 2_000,
            ended_at: Some(3_000),
        }
    }

    fn task() -> Task {
        let mut new = NewTask::new(Runtime::Acp, "t\u{e9}\"");
        new.label = Some("l".into());
        new.started_at = Some(4);
        new.status = TaskStatus::Running;
        new.into_task(Uuid::from_u128(7), "agent:main:x".into(), 5)
    }

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn a_flow_shows_clients_its_public_members_in_spec_order() {
        let flow = flow();
        let public = flow.to_json();
        assert_eq!(
            keys(&public),
            [
                "flowId",
                "syncMode",
                "controllerId",
                "revision",
                "status",
                "notifyPolicy",
                "goal",
                "currentStep",
                "stateJson",
                "waitJson",
                "cancelRequestedAt",
                "createdAt",
                "updatedAt",
                "endedAt"
            ]
        );
        assert_eq!(
            public["stateJson"]["ownerKey"], 1,
            "caller JSON is untouched"
        );
        let mut stored = flow.to_stored_json();
        assert_eq!(keys(&stored)[2], "ownerKey");
        stored.as_object_mut().unwrap().shift_remove("ownerKey");
        assert_eq!(stored, public);
        let document = JsonDocument::from(flow.clone());
        assert_eq!(document.to_value(), public);
        assert_eq!(document.to_vec(), serde_json::to_vec(&public).unwrap());
    }

    #[test]
    fn a_task_shows_clients_its_public_members_in_spec_order() {
        let task = task();
        let public = task.to_json();
        assert_eq!(
            keys(&public),
            [
                "taskId",
                "runtime",
                "parentFlowId",
                "label",
                "scopeKind",
                "task",
                "status",
                "deliveryStatus",
                "notifyPolicy",
                "createdAt",
                "startedAt"
            ]
        );
        let mut stored = task.to_stored_json();
        let map = stored.as_object_mut().unwrap();
        assert_eq!(map.shift_remove("ownerKey"), Some(json!("agent:main:x")));
        assert_eq!(
            map.shift_remove("requesterSessionKey"),
            Some(json!("agent:main:x"))
        );
        assert_eq!(stored, public);
        let document = JsonDocument::from(task.clone());
        assert_eq!(document.to_vec(), serde_json::to_vec(&public).unwrap());
    }

    #[test]
    fn stored_size_is_the_length_of_the_stored_record() {
        let flow = flow();
        let flow_text = serde_json::to_vec(&flow.to_stored_json()).unwrap();
        assert_eq!(flow.stored_size(), flow_text.len());
        let task = task();
        let task_text = serde_json::to_vec(&task.to_stored_json()).unwrap();
        assert_eq!(task.stored_size(), task_text.len());
    }
}
