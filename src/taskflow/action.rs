//! Request types of the TaskFlow actions and their validation (SPEC §3).
//!
//! Validation reads `serde_json::Value` against one schema table per action (each field's name,
//! whether it is required, and its kind, written once), so every message is exact and stable:
//! `<path>: <message>`, or the message alone when there is no path. Checks run in a fixed order:
//! the `action` key, then unknown keys (in document order), then each field in the order of its
//! table (the SPEC table's order), then the `run_task` cross-field rule. The first failure is
//! reported. The list of actions in the `action` message is [`ActionName::ALL`], the same list
//! the tables are keyed by.
//!
//! Strings must be non-empty after JavaScript's `trim` and at most [`MAX_STRING_BYTES`] long.
//! `flowId` and the nullable strings (`currentStep`, `blockedTaskId`, `blockedSummary`,
//! `progressSummary`) are stored trimmed, as the original stores them; every other string is stored
//! as sent. Optional strings accept `null` as "not given"; *nullable* strings of the mutations take
//! `null` as "clear".
//!
//! Integer fields (`expectedRevision`, `startedAt`, `lastEventAt`) read a number as `JSON.parse`
//! does: `0.0`, `1.7e12` and `-0` are the integers `0`, `1700000000000` and `0`. Anything with a
//! fraction or below zero is `must be an integer >= 0`; above [`MAX_SAFE_INTEGER`], where
//! JavaScript stops holding every integer exactly, it is `must be an integer from 0 to
//! 9007199254740991`.

use crate::secret::js_trim;
use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use super::label::ActionName;
use super::model::{FlowStatus, NotifyPolicy, Runtime, TaskStatus};
use super::store::{Mutation, NewTask, Patch};

/// Longest accepted string field, in bytes. The body limit already bounds a request; this keeps any
/// one record field to a size a log line or a UI can carry.
pub const MAX_STRING_BYTES: usize = 65_536;

/// Longest unknown key echoed back in an error; longer ones are cut (on a character boundary) and
/// marked with `…`, so an error never grows with a hostile key.
const MAX_ECHOED_KEY: usize = 64;

/// The exact text of the `run_task` cross-field rule (SPEC §3).
pub const RUN_TASK_STATUS_RULE: &str =
    "status must be running when startedAt, lastEventAt, or progressSummary is provided";

/// JavaScript's `Number.MAX_SAFE_INTEGER`, the largest integer field value accepted.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A request that does not match the schema: `400` `invalid_request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    path: Option<String>,
    message: Cow<'static, str>,
}

impl ValidationError {
    fn at(path: &str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            path: Some(path.to_owned()),
            message: message.into(),
        }
    }

    /// The dotted field path, if the problem has one.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The message without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{path}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ValidationError {}

/// A validated action request.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// `create_flow`.
    CreateFlow {
        /// Controller id; the route's default when `None`.
        controller_id: Option<String>,
        /// What the flow is for.
        goal: String,
        /// Initial status.
        status: FlowStatus,
        /// Notification policy.
        notify_policy: NotifyPolicy,
        /// Initial step.
        current_step: Option<String>,
        /// Initial state.
        state_json: Option<Value>,
        /// Initial wait description.
        wait_json: Option<Value>,
    },
    /// `get_flow`.
    GetFlow {
        /// The flow.
        flow_id: String,
    },
    /// `list_flows`.
    ListFlows,
    /// `find_latest_flow`.
    FindLatestFlow,
    /// `resolve_flow`.
    ResolveFlow {
        /// A flow id or the route's session key.
        token: String,
    },
    /// `get_task_summary`.
    GetTaskSummary {
        /// The flow.
        flow_id: String,
    },
    /// `set_waiting`, `resume_flow`, `finish_flow`, `fail_flow` or `request_cancel`.
    Mutate {
        /// The flow.
        flow_id: String,
        /// The revision the caller last saw.
        expected_revision: u64,
        /// The change.
        mutation: Mutation,
    },
    /// `cancel_flow`.
    CancelFlow {
        /// The flow.
        flow_id: String,
    },
    /// `run_task`.
    RunTask {
        /// The parent flow.
        flow_id: String,
        /// The task to create.
        task: NewTask,
    },
}

/// Whether a string field is stored trimmed (SPEC §3: `flowId` and the nullable strings) or as sent.
#[derive(Clone, Copy, Debug)]
enum Text {
    Trimmed,
    AsSent,
}

fn cut(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_ECHOED_KEY {
        return Cow::Borrowed(key);
    }
    let mut end = MAX_ECHOED_KEY;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &key[..end]))
}

macro_rules! keys {
    ($($key:ident => $name:literal,)+) => {
        /// A request field of some action. Its wire name is written here and nowhere else.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum FieldName { $($key,)+ }

        impl FieldName {
            const COUNT: usize = [$(FieldName::$key),+].len();

            const fn name(self) -> &'static str {
                match self { $(FieldName::$key => $name,)+ }
            }
        }
    };
}

keys! {
    FlowId => "flowId",
    ExpectedRevision => "expectedRevision",
    Goal => "goal",
    ControllerId => "controllerId",
    Status => "status",
    NotifyPolicy => "notifyPolicy",
    CurrentStep => "currentStep",
    StateJson => "stateJson",
    WaitJson => "waitJson",
    BlockedTaskId => "blockedTaskId",
    BlockedSummary => "blockedSummary",
    Token => "token",
    Runtime => "runtime",
    Task => "task",
    SourceId => "sourceId",
    ChildSessionKey => "childSessionKey",
    ParentTaskId => "parentTaskId",
    AgentId => "agentId",
    RunId => "runId",
    Label => "label",
    PreferMetadata => "preferMetadata",
    StartedAt => "startedAt",
    LastEventAt => "lastEventAt",
    ProgressSummary => "progressSummary",
}

/// What a field's value must be.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A string, non-empty after JavaScript's `trim`, at most [`MAX_STRING_BYTES`] as kept.
    /// Optional: `null` is "not given".
    Text(Text),
    /// A nullable string of SPEC §3: absent keeps, `null` clears, a value (trimmed) sets.
    Nullable,
    /// An integer `>= 0` as `JSON.parse` sees it. Optional: `null` is "not given".
    Integer,
    /// `true` or `false`; `null` is "not given".
    Bool,
    /// Any JSON value, `null` included.
    Json,
    /// One of these flow statuses (`null` is not one).
    FlowStatus(&'static [FlowStatus]),
    /// One of these task statuses.
    TaskStatus(&'static [TaskStatus]),
    /// Any notify policy.
    NotifyPolicy,
    /// One of these runtimes.
    Runtime(&'static [Runtime]),
}

/// One row of an action's schema table.
#[derive(Clone, Copy, Debug)]
struct Field {
    key: FieldName,
    required: bool,
    kind: Kind,
}

const fn required(key: FieldName, kind: Kind) -> Field {
    Field {
        key,
        required: true,
        kind,
    }
}

const fn optional(key: FieldName, kind: Kind) -> Field {
    Field {
        key,
        required: false,
        kind,
    }
}

const FLOW_ID: Field = required(FieldName::FlowId, Kind::Text(Text::Trimmed));
const EXPECTED_REVISION: Field = required(FieldName::ExpectedRevision, Kind::Integer);
const STATE_JSON: Field = optional(FieldName::StateJson, Kind::Json);
const BLOCKED_TASK_ID: Field = optional(FieldName::BlockedTaskId, Kind::Nullable);
const BLOCKED_SUMMARY: Field = optional(FieldName::BlockedSummary, Kind::Nullable);
const AS_SENT: Kind = Kind::Text(Text::AsSent);

const CREATE_FLOW: &[Field] = &[
    required(FieldName::Goal, AS_SENT),
    optional(FieldName::ControllerId, AS_SENT),
    optional(
        FieldName::Status,
        Kind::FlowStatus(&[
            FlowStatus::Queued,
            FlowStatus::Running,
            FlowStatus::Waiting,
            FlowStatus::Blocked,
        ]),
    ),
    optional(FieldName::NotifyPolicy, Kind::NotifyPolicy),
    optional(FieldName::CurrentStep, Kind::Text(Text::Trimmed)),
    STATE_JSON,
    optional(FieldName::WaitJson, Kind::Json),
];
const BY_FLOW_ID: &[Field] = &[FLOW_ID];
const NO_FIELDS: &[Field] = &[];
const RESOLVE_FLOW: &[Field] = &[required(FieldName::Token, AS_SENT)];
const SET_WAITING: &[Field] = &[
    FLOW_ID,
    EXPECTED_REVISION,
    optional(FieldName::CurrentStep, Kind::Nullable),
    STATE_JSON,
    optional(FieldName::WaitJson, Kind::Json),
    BLOCKED_TASK_ID,
    BLOCKED_SUMMARY,
];
const RESUME_FLOW: &[Field] = &[
    FLOW_ID,
    EXPECTED_REVISION,
    optional(
        FieldName::Status,
        Kind::FlowStatus(&[FlowStatus::Queued, FlowStatus::Running]),
    ),
    optional(FieldName::CurrentStep, Kind::Nullable),
    STATE_JSON,
];
const FINISH_FLOW: &[Field] = &[FLOW_ID, EXPECTED_REVISION, STATE_JSON];
const FAIL_FLOW: &[Field] = &[
    FLOW_ID,
    EXPECTED_REVISION,
    STATE_JSON,
    BLOCKED_TASK_ID,
    BLOCKED_SUMMARY,
];
const REQUEST_CANCEL: &[Field] = &[FLOW_ID, EXPECTED_REVISION];
const RUN_TASK: &[Field] = &[
    FLOW_ID,
    required(
        FieldName::Runtime,
        Kind::Runtime(&[Runtime::Subagent, Runtime::Acp]),
    ),
    required(FieldName::Task, AS_SENT),
    optional(FieldName::SourceId, AS_SENT),
    optional(FieldName::ChildSessionKey, AS_SENT),
    optional(FieldName::ParentTaskId, AS_SENT),
    optional(FieldName::AgentId, AS_SENT),
    optional(FieldName::RunId, AS_SENT),
    optional(FieldName::Label, AS_SENT),
    optional(FieldName::PreferMetadata, Kind::Bool),
    optional(FieldName::NotifyPolicy, Kind::NotifyPolicy),
    optional(
        FieldName::Status,
        Kind::TaskStatus(&[TaskStatus::Queued, TaskStatus::Running]),
    ),
    optional(FieldName::StartedAt, Kind::Integer),
    optional(FieldName::LastEventAt, Kind::Integer),
    optional(FieldName::ProgressSummary, Kind::Nullable),
];

/// The fields that only a `running` task may be created with (SPEC §3, [`RUN_TASK_STATUS_RULE`]).
const RUNNING_ONLY: [FieldName; 3] = [
    FieldName::StartedAt,
    FieldName::LastEventAt,
    FieldName::ProgressSummary,
];

impl ActionName {
    /// The action's schema table: its fields in the SPEC table's order, the order they are checked.
    const fn schema(self) -> &'static [Field] {
        match self {
            Self::CreateFlow => CREATE_FLOW,
            Self::GetFlow | Self::GetTaskSummary | Self::CancelFlow => BY_FLOW_ID,
            Self::ListFlows | Self::FindLatestFlow => NO_FIELDS,
            Self::ResolveFlow => RESOLVE_FLOW,
            Self::SetWaiting => SET_WAITING,
            Self::ResumeFlow => RESUME_FLOW,
            Self::FinishFlow => FINISH_FLOW,
            Self::FailFlow => FAIL_FLOW,
            Self::RequestCancel => REQUEST_CANCEL,
            Self::RunTask => RUN_TASK,
        }
    }

    /// The names of the fields this action accepts besides `action`, in the order they are
    /// checked.
    pub fn field_names(self) -> impl Iterator<Item = &'static str> {
        self.schema().iter().map(|field| field.key.name())
    }

    /// The names of the fields this action requires.
    pub fn required_field_names(self) -> impl Iterator<Item = &'static str> {
        self.schema()
            .iter()
            .filter(|field| field.required)
            .map(|field| field.key.name())
    }
}

/// A field's value once checked against its [`Kind`], borrowed from the request: `Copy`, so a
/// table of them costs no drops and strings are copied once, into the action.
#[derive(Clone, Copy, Debug)]
enum Parsed<'a> {
    Absent,
    Text(&'a str),
    /// A nullable string that was sent: `None` for `null` (clear), or the value to set.
    Nullable(Option<&'a str>),
    Integer(u64),
    Bool(bool),
    Json(&'a Value),
    FlowStatus(FlowStatus),
    TaskStatus(TaskStatus),
    NotifyPolicy(NotifyPolicy),
    Runtime(Runtime),
}

impl Field {
    /// Checks this field of `object`: missing when required, then the value's kind.
    fn read(self, object: &Map<String, Value>) -> Result<Parsed<'_>, ValidationError> {
        let name = self.key.name();
        let Some(value) = object.get(name) else {
            if self.required {
                return Err(ValidationError::at(name, "required"));
            }
            return Ok(Parsed::Absent);
        };
        if value.is_null() && !self.required {
            match self.kind {
                Kind::Text(_) | Kind::Integer | Kind::Bool => return Ok(Parsed::Absent),
                Kind::Nullable => return Ok(Parsed::Nullable(None)),
                // A stored `null`, or (for a choice) a value that is not allowed.
                _ => {}
            }
        }
        self.kind.read(name, value)
    }
}

impl Kind {
    fn read<'a>(self, name: &str, value: &'a Value) -> Result<Parsed<'a>, ValidationError> {
        Ok(match self {
            Self::Text(text) => Parsed::Text(string_value(name, value, text)?),
            Self::Nullable => Parsed::Nullable(Some(string_value(name, value, Text::Trimmed)?)),
            Self::Integer => Parsed::Integer(integer(name, value)?),
            Self::Bool => Parsed::Bool(
                value
                    .as_bool()
                    .ok_or_else(|| ValidationError::at(name, "must be a boolean"))?,
            ),
            Self::Json => Parsed::Json(value),
            Self::FlowStatus(allowed) => {
                Parsed::FlowStatus(choice(name, value, allowed, FlowStatus::as_str)?)
            }
            Self::TaskStatus(allowed) => {
                Parsed::TaskStatus(choice(name, value, allowed, TaskStatus::as_str)?)
            }
            Self::NotifyPolicy => Parsed::NotifyPolicy(choice(
                name,
                value,
                NotifyPolicy::ALL,
                NotifyPolicy::as_str,
            )?),
            Self::Runtime(allowed) => {
                Parsed::Runtime(choice(name, value, allowed, Runtime::as_str)?)
            }
        })
    }
}

/// A string that is non-empty after JavaScript's `trim`, at most [`MAX_STRING_BYTES`] as kept:
/// trimmed for the fields the SPEC trims, as sent otherwise.
fn string_value<'a>(key: &str, value: &'a Value, text: Text) -> Result<&'a str, ValidationError> {
    let Value::String(sent) = value else {
        return Err(ValidationError::at(key, "must be a non-empty string"));
    };
    let trimmed = js_trim(sent);
    if trimmed.is_empty() {
        return Err(ValidationError::at(key, "must be a non-empty string"));
    }
    let kept = match text {
        Text::Trimmed => trimmed,
        Text::AsSent => sent,
    };
    if kept.len() > MAX_STRING_BYTES {
        return Err(ValidationError::at(
            key,
            format!("must be at most {MAX_STRING_BYTES} bytes"),
        ));
    }
    Ok(kept)
}

/// An integer `>= 0` as `JSON.parse` sees it: `0.0`, `1.7e12` and `-0` are integers (`-0` is
/// `0`), `0.5` and `-1` are not. Above [`MAX_SAFE_INTEGER`] JavaScript no longer holds every
/// integer exactly, so such a number is refused rather than silently rounded.
fn integer(key: &str, value: &Value) -> Result<u64, ValidationError> {
    let not_integer = || ValidationError::at(key, "must be an integer >= 0");
    let Value::Number(number) = value else {
        return Err(not_integer());
    };
    let n = match number.as_u64() {
        Some(n) => n,
        None => {
            // serde_json keeps a negative integer as `i64` and anything written with a fraction
            // or an exponent as `f64`; both are finite here.
            let f = number.as_f64().ok_or_else(not_integer)?;
            if f.fract() != 0.0 || f < 0.0 {
                return Err(not_integer());
            }
            if f > MAX_SAFE_INTEGER as f64 {
                u64::MAX
            } else {
                // Integral, non-negative and at most 2^53 - 1: exact.
                f as u64
            }
        }
    };
    if n > MAX_SAFE_INTEGER {
        return Err(ValidationError::at(
            key,
            format!("must be an integer from 0 to {MAX_SAFE_INTEGER}"),
        ));
    }
    Ok(n)
}

/// One of `allowed`, by its wire spelling.
fn choice<T: Copy>(
    key: &str,
    value: &Value,
    allowed: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, ValidationError> {
    let text = value.as_str();
    allowed
        .iter()
        .copied()
        .find(|choice| Some(name(*choice)) == text)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|c| name(*c)).collect();
            ValidationError::at(key, format!("must be one of {}", names.join(", ")))
        })
}

/// The checked fields of one request, by [`FieldName`].
struct Values<'a>([Parsed<'a>; FieldName::COUNT]);

impl<'a> Values<'a> {
    /// Checks every field of `schema`, in order, and keeps the values.
    fn read(schema: &[Field], object: &'a Map<String, Value>) -> Result<Self, ValidationError> {
        let mut values = Self([Parsed::Absent; FieldName::COUNT]);
        for field in schema {
            values.0[field.key as usize] = field.read(object)?;
        }
        Ok(values)
    }

    fn take(&self, key: FieldName) -> Parsed<'a> {
        self.0[key as usize]
    }

    /// A required field. The table already refused a request without it; this error only keeps
    /// the builders total.
    fn required_text(&self, key: FieldName) -> Result<String, ValidationError> {
        self.text(key)
            .ok_or_else(|| ValidationError::at(key.name(), "required"))
    }

    fn text(&self, key: FieldName) -> Option<String> {
        match self.take(key) {
            Parsed::Text(text) => Some(text.to_owned()),
            _ => None,
        }
    }

    fn patch(&self, key: FieldName) -> Patch<String> {
        match self.take(key) {
            Parsed::Nullable(Some(text)) => Patch::Set(text.to_owned()),
            Parsed::Nullable(None) => Patch::Clear,
            _ => Patch::Keep,
        }
    }

    fn required_integer(&self, key: FieldName) -> Result<u64, ValidationError> {
        self.integer(key)
            .ok_or_else(|| ValidationError::at(key.name(), "required"))
    }

    fn integer(&self, key: FieldName) -> Option<u64> {
        match self.take(key) {
            Parsed::Integer(n) => Some(n),
            _ => None,
        }
    }

    fn bool(&self, key: FieldName) -> Option<bool> {
        match self.take(key) {
            Parsed::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn json(&self, key: FieldName) -> Option<Value> {
        match self.take(key) {
            Parsed::Json(value) => Some(value.clone()),
            _ => None,
        }
    }

    fn flow_status(&self) -> Option<FlowStatus> {
        match self.take(FieldName::Status) {
            Parsed::FlowStatus(status) => Some(status),
            _ => None,
        }
    }

    fn task_status(&self) -> Option<TaskStatus> {
        match self.take(FieldName::Status) {
            Parsed::TaskStatus(status) => Some(status),
            _ => None,
        }
    }

    fn notify_policy(&self) -> Option<NotifyPolicy> {
        match self.take(FieldName::NotifyPolicy) {
            Parsed::NotifyPolicy(policy) => Some(policy),
            _ => None,
        }
    }

    fn runtime(&self) -> Result<Runtime, ValidationError> {
        match self.take(FieldName::Runtime) {
            Parsed::Runtime(runtime) => Ok(runtime),
            _ => Err(ValidationError::at(FieldName::Runtime.name(), "required")),
        }
    }
}

/// The `action` member: one of [`ActionName::ALL`].
fn action_name(object: &Map<String, Value>) -> Result<ActionName, ValidationError> {
    let name = match object.get("action") {
        None => return Err(ValidationError::at("action", "required")),
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err(ValidationError::at("action", "must be a string")),
    };
    if let Some(action) = ActionName::from_wire(name) {
        return Ok(action);
    }
    if name.trim().is_empty() {
        return Err(ValidationError::at("action", "must be a non-empty string"));
    }
    let names: Vec<&str> = ActionName::ALL.iter().map(|a| a.as_str()).collect();
    Err(ValidationError::at(
        "action",
        format!("must be one of {}", names.join(", ")),
    ))
}

/// The first key, in document order, that is neither `action` nor in `schema`.
fn reject_unknown(object: &Map<String, Value>, schema: &[Field]) -> Result<(), ValidationError> {
    let known = |key: &str| key == "action" || schema.iter().any(|f| f.key.name() == key);
    match object.keys().find(|key| !known(key)) {
        Some(key) => Err(ValidationError::at(&cut(key), "unknown field")),
        None => Ok(()),
    }
}

impl Action {
    /// Validates a decoded request body.
    pub fn parse(body: &Value) -> Result<Self, ValidationError> {
        let Value::Object(object) = body else {
            return Err(ValidationError {
                path: None,
                message: Cow::Borrowed("request body must be a JSON object"),
            });
        };
        let name = action_name(object)?;
        let schema = name.schema();
        reject_unknown(object, schema)?;
        let values = Values::read(schema, object)?;
        Self::build(name, &values, object)
    }

    /// Builds the action from its checked fields; only `run_task`'s cross-field rule is left to
    /// check here.
    fn build(
        name: ActionName,
        v: &Values<'_>,
        object: &Map<String, Value>,
    ) -> Result<Self, ValidationError> {
        Ok(match name {
            ActionName::CreateFlow => Self::CreateFlow {
                controller_id: v.text(FieldName::ControllerId),
                goal: v.required_text(FieldName::Goal)?,
                status: v.flow_status().unwrap_or(FlowStatus::Queued),
                notify_policy: v.notify_policy().unwrap_or(NotifyPolicy::DoneOnly),
                current_step: v.text(FieldName::CurrentStep),
                state_json: v.json(FieldName::StateJson),
                wait_json: v.json(FieldName::WaitJson),
            },
            ActionName::GetFlow => Self::GetFlow {
                flow_id: v.required_text(FieldName::FlowId)?,
            },
            ActionName::ListFlows => Self::ListFlows,
            ActionName::FindLatestFlow => Self::FindLatestFlow,
            ActionName::ResolveFlow => Self::ResolveFlow {
                token: v.required_text(FieldName::Token)?,
            },
            ActionName::GetTaskSummary => Self::GetTaskSummary {
                flow_id: v.required_text(FieldName::FlowId)?,
            },
            ActionName::CancelFlow => Self::CancelFlow {
                flow_id: v.required_text(FieldName::FlowId)?,
            },
            ActionName::SetWaiting
            | ActionName::ResumeFlow
            | ActionName::FinishFlow
            | ActionName::FailFlow
            | ActionName::RequestCancel => Self::Mutate {
                flow_id: v.required_text(FieldName::FlowId)?,
                expected_revision: v.required_integer(FieldName::ExpectedRevision)?,
                mutation: Self::mutation(name, v),
            },
            ActionName::RunTask => Self::RunTask {
                flow_id: v.required_text(FieldName::FlowId)?,
                task: Self::new_task(v, object)?,
            },
        })
    }

    /// The change a mutation asks for. `name` is one of the five mutations.
    fn mutation(name: ActionName, v: &Values<'_>) -> Mutation {
        match name {
            ActionName::SetWaiting => Mutation::SetWaiting {
                current_step: v.patch(FieldName::CurrentStep),
                state_json: v.json(FieldName::StateJson),
                wait_json: v.json(FieldName::WaitJson),
                blocked_task_id: v.patch(FieldName::BlockedTaskId),
                blocked_summary: v.patch(FieldName::BlockedSummary),
            },
            ActionName::ResumeFlow => Mutation::Resume {
                status: v.flow_status().unwrap_or(FlowStatus::Queued),
                current_step: v.patch(FieldName::CurrentStep),
                state_json: v.json(FieldName::StateJson),
            },
            ActionName::FinishFlow => Mutation::Finish {
                state_json: v.json(FieldName::StateJson),
            },
            ActionName::FailFlow => Mutation::Fail {
                state_json: v.json(FieldName::StateJson),
                blocked_task_id: v.patch(FieldName::BlockedTaskId),
                blocked_summary: v.patch(FieldName::BlockedSummary),
            },
            _ => Mutation::RequestCancel,
        }
    }

    fn new_task(v: &Values<'_>, object: &Map<String, Value>) -> Result<NewTask, ValidationError> {
        let mut task = NewTask::new(v.runtime()?, v.required_text(FieldName::Task)?);
        task.source_id = v.text(FieldName::SourceId);
        task.child_session_key = v.text(FieldName::ChildSessionKey);
        task.parent_task_id = v.text(FieldName::ParentTaskId);
        task.agent_id = v.text(FieldName::AgentId);
        task.run_id = v.text(FieldName::RunId);
        task.label = v.text(FieldName::Label);
        task.prefer_metadata = v.bool(FieldName::PreferMetadata);
        task.notify_policy = v.notify_policy().unwrap_or(NotifyPolicy::StateChanges);
        task.status = v.task_status().unwrap_or(TaskStatus::Queued);
        task.started_at = v.integer(FieldName::StartedAt);
        task.last_event_at = v.integer(FieldName::LastEventAt);
        task.progress_summary = match v.patch(FieldName::ProgressSummary) {
            Patch::Set(summary) => Some(summary),
            Patch::Keep | Patch::Clear => None,
        };
        // Present counts, even as `null`.
        let running_only = RUNNING_ONLY
            .iter()
            .any(|key| object.contains_key(key.name()));
        if running_only && task.status != TaskStatus::Running {
            return Err(ValidationError::at("status", RUN_TASK_STATUS_RULE));
        }
        Ok(task)
    }
}
