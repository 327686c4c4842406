//! Request types of the TaskFlow actions and their validation (SPEC §3).
//!
//! Validation is written by hand over `serde_json::Value` so every message is exact and stable:
//! `<path>: <message>`, or the message alone when there is no path. Checks run in a fixed order:
//! the `action` key, then unknown keys (in document order), then each field in the order of the
//! SPEC table, then the `run_task` cross-field rule. The first failure is reported.
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

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

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

const ACTIONS: &str = "create_flow, get_flow, list_flows, find_latest_flow, resolve_flow, \
get_task_summary, set_waiting, resume_flow, finish_flow, fail_flow, request_cancel, cancel_flow, \
run_task";

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
#[derive(Clone, Copy)]
enum Text {
    Trimmed,
    AsSent,
}

/// JavaScript's `String.prototype.trim`: white space (including the byte-order mark and every
/// `Zs` space) and line terminators. Not Rust's `trim`, which also removes U+0085 and keeps U+FEFF.
fn js_trim(text: &str) -> &str {
    text.trim_matches(|c: char| {
        matches!(
            c,
            '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
                ..='\u{200a}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{202f}'
                    | '\u{205f}'
                    | '\u{3000}'
                    | '\u{feff}'
        )
    })
}

struct Fields<'a> {
    object: &'a Map<String, Value>,
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

impl<'a> Fields<'a> {
    fn reject_unknown(&self, allowed: &[&str]) -> Result<(), ValidationError> {
        for key in self.object.keys() {
            if key != "action" && !allowed.contains(&key.as_str()) {
                return Err(ValidationError::at(&cut(key), "unknown field"));
            }
        }
        Ok(())
    }

    /// A string that is non-empty after JavaScript's `trim`, at most [`MAX_STRING_BYTES`] as kept:
    /// trimmed for the fields the SPEC trims, as sent otherwise.
    fn string_value(key: &str, value: &Value, text: Text) -> Result<String, ValidationError> {
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
        Ok(kept.to_owned())
    }

    fn required_string(&self, key: &str, text: Text) -> Result<String, ValidationError> {
        match self.object.get(key) {
            None => Err(ValidationError::at(key, "required")),
            Some(value) => Self::string_value(key, value, text),
        }
    }

    /// `flowId`, trimmed like the original does before looking it up.
    fn flow_id(&self) -> Result<String, ValidationError> {
        self.required_string("flowId", Text::Trimmed)
    }

    /// Absent or `null`: not given.
    fn optional_string(&self, key: &str, text: Text) -> Result<Option<String>, ValidationError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => Self::string_value(key, value, text).map(Some),
        }
    }

    /// Absent: keep; `null`: clear; a value: set, trimmed (every nullable string of SPEC §3 is).
    fn nullable_string(&self, key: &str) -> Result<Patch<String>, ValidationError> {
        match self.object.get(key) {
            None => Ok(Patch::Keep),
            Some(Value::Null) => Ok(Patch::Clear),
            Some(value) => Self::string_value(key, value, Text::Trimmed).map(Patch::Set),
        }
    }

    fn json(&self, key: &str) -> Option<Value> {
        self.object.get(key).cloned()
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

    fn expected_revision(&self) -> Result<u64, ValidationError> {
        match self.object.get("expectedRevision") {
            None => Err(ValidationError::at("expectedRevision", "required")),
            Some(value) => Self::integer("expectedRevision", value),
        }
    }

    /// Absent or `null`: not given.
    fn optional_integer(&self, key: &str) -> Result<Option<u64>, ValidationError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => Self::integer(key, value).map(Some),
        }
    }

    fn optional_bool(&self, key: &str) -> Result<Option<bool>, ValidationError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ValidationError::at(key, "must be a boolean")),
        }
    }

    /// A string from `allowed`, or `default` when absent.
    fn choice<T: Copy>(
        &self,
        key: &str,
        allowed: &[T],
        name: impl Fn(T) -> &'static str,
        default: T,
    ) -> Result<T, ValidationError> {
        let Some(value) = self.object.get(key) else {
            return Ok(default);
        };
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

    fn notify_policy(&self, default: NotifyPolicy) -> Result<NotifyPolicy, ValidationError> {
        self.choice(
            "notifyPolicy",
            NotifyPolicy::ALL,
            NotifyPolicy::as_str,
            default,
        )
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
        let fields = Fields { object };
        let action = match object.get("action") {
            None => return Err(ValidationError::at("action", "required")),
            Some(Value::String(name)) => name.as_str(),
            Some(_) => return Err(ValidationError::at("action", "must be a string")),
        };
        match action {
            "create_flow" => {
                fields.reject_unknown(&[
                    "goal",
                    "controllerId",
                    "status",
                    "notifyPolicy",
                    "currentStep",
                    "stateJson",
                    "waitJson",
                ])?;
                let goal = fields.required_string("goal", Text::AsSent)?;
                let controller_id = fields.optional_string("controllerId", Text::AsSent)?;
                let status = fields.choice(
                    "status",
                    &[
                        FlowStatus::Queued,
                        FlowStatus::Running,
                        FlowStatus::Waiting,
                        FlowStatus::Blocked,
                    ],
                    FlowStatus::as_str,
                    FlowStatus::Queued,
                )?;
                let notify_policy = fields.notify_policy(NotifyPolicy::DoneOnly)?;
                let current_step = fields.optional_string("currentStep", Text::Trimmed)?;
                Ok(Self::CreateFlow {
                    controller_id,
                    goal,
                    status,
                    notify_policy,
                    current_step,
                    state_json: fields.json("stateJson"),
                    wait_json: fields.json("waitJson"),
                })
            }
            "get_flow" | "get_task_summary" | "cancel_flow" => {
                fields.reject_unknown(&["flowId"])?;
                let flow_id = fields.flow_id()?;
                Ok(match action {
                    "get_flow" => Self::GetFlow { flow_id },
                    "get_task_summary" => Self::GetTaskSummary { flow_id },
                    _ => Self::CancelFlow { flow_id },
                })
            }
            "list_flows" | "find_latest_flow" => {
                fields.reject_unknown(&[])?;
                Ok(if action == "list_flows" {
                    Self::ListFlows
                } else {
                    Self::FindLatestFlow
                })
            }
            "resolve_flow" => {
                fields.reject_unknown(&["token"])?;
                Ok(Self::ResolveFlow {
                    token: fields.required_string("token", Text::AsSent)?,
                })
            }
            "set_waiting" => {
                fields.reject_unknown(&[
                    "flowId",
                    "expectedRevision",
                    "currentStep",
                    "stateJson",
                    "waitJson",
                    "blockedTaskId",
                    "blockedSummary",
                ])?;
                let (flow_id, expected_revision) = Self::target(&fields)?;
                let mutation = Mutation::SetWaiting {
                    current_step: fields.nullable_string("currentStep")?,
                    state_json: fields.json("stateJson"),
                    wait_json: fields.json("waitJson"),
                    blocked_task_id: fields.nullable_string("blockedTaskId")?,
                    blocked_summary: fields.nullable_string("blockedSummary")?,
                };
                Ok(Self::Mutate {
                    flow_id,
                    expected_revision,
                    mutation,
                })
            }
            "resume_flow" => {
                fields.reject_unknown(&[
                    "flowId",
                    "expectedRevision",
                    "status",
                    "currentStep",
                    "stateJson",
                ])?;
                let (flow_id, expected_revision) = Self::target(&fields)?;
                let status = fields.choice(
                    "status",
                    &[FlowStatus::Queued, FlowStatus::Running],
                    FlowStatus::as_str,
                    FlowStatus::Queued,
                )?;
                let mutation = Mutation::Resume {
                    status,
                    current_step: fields.nullable_string("currentStep")?,
                    state_json: fields.json("stateJson"),
                };
                Ok(Self::Mutate {
                    flow_id,
                    expected_revision,
                    mutation,
                })
            }
            "finish_flow" => {
                fields.reject_unknown(&["flowId", "expectedRevision", "stateJson"])?;
                let (flow_id, expected_revision) = Self::target(&fields)?;
                Ok(Self::Mutate {
                    flow_id,
                    expected_revision,
                    mutation: Mutation::Finish {
                        state_json: fields.json("stateJson"),
                    },
                })
            }
            "fail_flow" => {
                fields.reject_unknown(&[
                    "flowId",
                    "expectedRevision",
                    "stateJson",
                    "blockedTaskId",
                    "blockedSummary",
                ])?;
                let (flow_id, expected_revision) = Self::target(&fields)?;
                let mutation = Mutation::Fail {
                    state_json: fields.json("stateJson"),
                    blocked_task_id: fields.nullable_string("blockedTaskId")?,
                    blocked_summary: fields.nullable_string("blockedSummary")?,
                };
                Ok(Self::Mutate {
                    flow_id,
                    expected_revision,
                    mutation,
                })
            }
            "request_cancel" => {
                fields.reject_unknown(&["flowId", "expectedRevision"])?;
                let (flow_id, expected_revision) = Self::target(&fields)?;
                Ok(Self::Mutate {
                    flow_id,
                    expected_revision,
                    mutation: Mutation::RequestCancel,
                })
            }
            "run_task" => Self::run_task(&fields),
            _ if action.trim().is_empty() => {
                Err(ValidationError::at("action", "must be a non-empty string"))
            }
            _ => Err(ValidationError::at(
                "action",
                format!("must be one of {ACTIONS}"),
            )),
        }
    }

    fn target(fields: &Fields<'_>) -> Result<(String, u64), ValidationError> {
        Ok((fields.flow_id()?, fields.expected_revision()?))
    }

    fn run_task(fields: &Fields<'_>) -> Result<Self, ValidationError> {
        fields.reject_unknown(&[
            "flowId",
            "runtime",
            "task",
            "sourceId",
            "childSessionKey",
            "parentTaskId",
            "agentId",
            "runId",
            "label",
            "preferMetadata",
            "notifyPolicy",
            "status",
            "startedAt",
            "lastEventAt",
            "progressSummary",
        ])?;
        let flow_id = fields.flow_id()?;
        let runtime = match fields.object.get("runtime") {
            None => return Err(ValidationError::at("runtime", "required")),
            Some(_) => fields.choice(
                "runtime",
                &[Runtime::Subagent, Runtime::Acp],
                Runtime::as_str,
                Runtime::Subagent,
            )?,
        };
        let mut task = NewTask::new(runtime, fields.required_string("task", Text::AsSent)?);
        task.source_id = fields.optional_string("sourceId", Text::AsSent)?;
        task.child_session_key = fields.optional_string("childSessionKey", Text::AsSent)?;
        task.parent_task_id = fields.optional_string("parentTaskId", Text::AsSent)?;
        task.agent_id = fields.optional_string("agentId", Text::AsSent)?;
        task.run_id = fields.optional_string("runId", Text::AsSent)?;
        task.label = fields.optional_string("label", Text::AsSent)?;
        task.prefer_metadata = fields.optional_bool("preferMetadata")?;
        task.notify_policy = fields.notify_policy(NotifyPolicy::StateChanges)?;
        task.status = fields.choice(
            "status",
            &[TaskStatus::Queued, TaskStatus::Running],
            TaskStatus::as_str,
            TaskStatus::Queued,
        )?;
        task.started_at = fields.optional_integer("startedAt")?;
        task.last_event_at = fields.optional_integer("lastEventAt")?;
        task.progress_summary = match fields.nullable_string("progressSummary")? {
            Patch::Set(summary) => Some(summary),
            Patch::Keep | Patch::Clear => None,
        };
        let running_only = ["startedAt", "lastEventAt", "progressSummary"]
            .iter()
            .any(|key| fields.object.contains_key(*key));
        if running_only && task.status != TaskStatus::Running {
            return Err(ValidationError::at("status", RUN_TASK_STATUS_RULE));
        }
        Ok(Self::RunTask { flow_id, task })
    }
}
