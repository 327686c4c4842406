//! Outcome of an action: HTTP status and JSON envelope (SPEC §3.3).

use std::borrow::Cow;
use std::fmt;

use http::{Response, StatusCode};
use serde_json::Value;

use super::action::ValidationError;
use crate::body::{StandaloneBody, json_response, owner_free_json_response};
use crate::json::JsonDocument;

/// The `code` of a failed (or pending) action, with its status and standard message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `404`: flow missing or owned by another session.
    NotFound,
    /// `409`: the flow is not managed.
    NotManaged,
    /// `409`: stale `expectedRevision`.
    RevisionConflict,
    /// `409`: `run_task` after cancellation was requested.
    CancelRequested,
    /// `409`: `run_task` / `cancel_flow` on a terminal flow.
    Terminal,
    /// `503`: the store failed to persist.
    PersistFailed,
    /// `403`: `childSessionKey` outside the route's policy.
    ChildSessionForbidden,
    /// `507`: a store cap is reached.
    CapacityExceeded,
}

impl ErrorCode {
    /// The wire code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::NotManaged => "not_managed",
            Self::RevisionConflict => "revision_conflict",
            Self::CancelRequested => "cancel_requested",
            Self::Terminal => "terminal",
            Self::PersistFailed => "persist_failed",
            Self::ChildSessionForbidden => "child_session_forbidden",
            Self::CapacityExceeded => "capacity_exceeded",
        }
    }

    /// The HTTP status.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::NotManaged | Self::RevisionConflict | Self::CancelRequested | Self::Terminal => {
                StatusCode::CONFLICT
            }
            Self::PersistFailed => StatusCode::SERVICE_UNAVAILABLE,
            Self::ChildSessionForbidden => StatusCode::FORBIDDEN,
            Self::CapacityExceeded => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    /// The standard `error` text. `terminal` names the status, so its text is built by
    /// [`terminal_message`]; this returns the generic form.
    pub const fn message(self) -> &'static str {
        match self {
            Self::NotFound => "TaskFlow not found.",
            Self::NotManaged => "TaskFlow is not managed by this webhook surface.",
            Self::RevisionConflict => "TaskFlow changed since the caller's expected revision.",
            Self::CancelRequested => "Flow cancellation has already been requested.",
            Self::Terminal => "Flow is already terminal.",
            Self::PersistFailed => "TaskFlow persistence failed.",
            Self::ChildSessionForbidden => "childSessionKey is outside this route's session scope.",
            Self::CapacityExceeded => "TaskFlow store is full.",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Flow is already <status>.`
pub fn terminal_message(status: impl fmt::Display) -> String {
    format!("Flow is already {status}.")
}

/// `run_task`'s reason for a flow that is not managed.
pub const RUN_TASK_NOT_MANAGED: &str = "Flow does not accept managed child tasks.";

/// `cancel_flow`'s reason while a child task is still active.
pub const CANCEL_PENDING_REASON: &str = "One or more child tasks are still active.";

/// What an action produced, before it becomes a response.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ActionOutcome {
    /// `200` `{"ok":true,"routeId":…,"result":…}`.
    Success {
        /// The `result`.
        result: JsonDocument,
    },
    /// `202` `{"ok":true,"routeId":…,"code":"cancel_pending","result":…}`.
    CancelPending {
        /// The `result`.
        result: JsonDocument,
    },
    /// `{"ok":false,"routeId":…,"code":…,"error":…,"result":…}` with the code's status.
    Failure {
        /// The code.
        code: ErrorCode,
        /// The `error` text.
        error: Cow<'static, str>,
        /// The `result`.
        result: JsonDocument,
    },
    /// `400` `{"ok":false,"code":"invalid_request","error":…}`, without `routeId`.
    Invalid(ValidationError),
}

impl ActionOutcome {
    /// A failure with the code's standard message.
    pub fn failure(code: ErrorCode, result: JsonDocument) -> Self {
        Self::Failure {
            code,
            error: Cow::Borrowed(code.message()),
            result,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Success { .. } => StatusCode::OK,
            Self::CancelPending { .. } => StatusCode::ACCEPTED,
            Self::Failure { code, .. } => code.status(),
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON envelope for a route.
    pub fn into_envelope(self, route_id: &str) -> JsonDocument {
        let ok = |ok: bool| ("ok", JsonDocument::from(Value::Bool(ok)));
        let route = || ("routeId", JsonDocument::from(route_id));
        match self {
            Self::Success { result } => {
                JsonDocument::object([ok(true), route(), ("result", result)])
            }
            Self::CancelPending { result } => JsonDocument::object([
                ok(true),
                route(),
                ("code", "cancel_pending".into()),
                ("result", result),
            ]),
            Self::Failure {
                code,
                error,
                result,
            } => JsonDocument::object([
                ok(false),
                route(),
                ("code", code.as_str().into()),
                ("error", error.into_owned().into()),
                ("result", result),
            ]),
            Self::Invalid(error) => JsonDocument::object([
                ok(false),
                ("code", "invalid_request".into()),
                ("error", error.to_string().into()),
            ]),
        }
    }

    /// The response: status, `Content-Type: application/json; charset=utf-8` and the envelope as a
    /// structured document, serialised once when the body is sized or polled.
    ///
    /// Not marked as built owner-free, unlike the answers of
    /// [`TaskFlowActionService`](crate::TaskFlowActionService): an outcome built by hand may hold any
    /// JSON, so [`ScrubOwnerMetadata`](crate::scrub) scrubs it like any other.
    pub fn into_response(self, route_id: &str) -> Response<StandaloneBody> {
        let status = self.status();
        json_response(status, self.into_envelope(route_id))
    }

    /// The response of an outcome the service built itself, from allow-listed views and its own
    /// words: marked owner-free, so the scrub passes it on without a look.
    pub(crate) fn into_owner_free_response(self, route_id: &str) -> Response<StandaloneBody> {
        let status = self.status();
        owner_free_json_response(status, self.into_envelope(route_id))
    }
}
