//! The words metrics and the access log use for an action and its outcome (SPEC §6:
//! `taskflow_actions_total{route,action,code}`).

use std::fmt;

use super::action::Action;
use super::outcome::{ActionOutcome, ErrorCode};
use super::store::Mutation;

/// Which of the thirteen actions a request ran: the `action` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ActionName {
    /// `create_flow`.
    CreateFlow,
    /// `get_flow`.
    GetFlow,
    /// `list_flows`.
    ListFlows,
    /// `find_latest_flow`.
    FindLatestFlow,
    /// `resolve_flow`.
    ResolveFlow,
    /// `get_task_summary`.
    GetTaskSummary,
    /// `set_waiting`.
    SetWaiting,
    /// `resume_flow`.
    ResumeFlow,
    /// `finish_flow`.
    FinishFlow,
    /// `fail_flow`.
    FailFlow,
    /// `request_cancel`.
    RequestCancel,
    /// `cancel_flow`.
    CancelFlow,
    /// `run_task`.
    RunTask,
}

impl ActionName {
    /// Every action, in the order of SPEC §3's table.
    pub const ALL: [Self; 13] = [
        Self::CreateFlow,
        Self::GetFlow,
        Self::ListFlows,
        Self::FindLatestFlow,
        Self::ResolveFlow,
        Self::GetTaskSummary,
        Self::SetWaiting,
        Self::ResumeFlow,
        Self::FinishFlow,
        Self::FailFlow,
        Self::RequestCancel,
        Self::CancelFlow,
        Self::RunTask,
    ];

    /// The wire name, as in the request's `action` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CreateFlow => "create_flow",
            Self::GetFlow => "get_flow",
            Self::ListFlows => "list_flows",
            Self::FindLatestFlow => "find_latest_flow",
            Self::ResolveFlow => "resolve_flow",
            Self::GetTaskSummary => "get_task_summary",
            Self::SetWaiting => "set_waiting",
            Self::ResumeFlow => "resume_flow",
            Self::FinishFlow => "finish_flow",
            Self::FailFlow => "fail_flow",
            Self::RequestCancel => "request_cancel",
            Self::CancelFlow => "cancel_flow",
            Self::RunTask => "run_task",
        }
    }

    /// The action named `name` exactly, as in a request's `action` field.
    pub fn from_wire(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }

    /// The position in [`ALL`](Self::ALL): an index for per-action tables.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ActionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Action {
    /// The action's name.
    pub fn name(&self) -> ActionName {
        match self {
            Self::CreateFlow { .. } => ActionName::CreateFlow,
            Self::GetFlow { .. } => ActionName::GetFlow,
            Self::ListFlows => ActionName::ListFlows,
            Self::FindLatestFlow => ActionName::FindLatestFlow,
            Self::ResolveFlow { .. } => ActionName::ResolveFlow,
            Self::GetTaskSummary { .. } => ActionName::GetTaskSummary,
            Self::Mutate { mutation, .. } => match mutation {
                Mutation::SetWaiting { .. } => ActionName::SetWaiting,
                Mutation::Resume { .. } => ActionName::ResumeFlow,
                Mutation::Finish { .. } => ActionName::FinishFlow,
                Mutation::Fail { .. } => ActionName::FailFlow,
                Mutation::RequestCancel => ActionName::RequestCancel,
            },
            Self::CancelFlow { .. } => ActionName::CancelFlow,
            Self::RunTask { .. } => ActionName::RunTask,
        }
    }
}

/// How an action ended: the `code` label. `ok` for a success, `cancel_pending` for `cancel_flow`'s
/// `202`, otherwise the envelope's error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ActionCode {
    /// `ok`: the action succeeded.
    Ok,
    /// `cancel_pending`: `cancel_flow` answered `202`, a child task is still active.
    CancelPending,
    /// The envelope's `code`.
    Error(ErrorCode),
}

impl ActionCode {
    /// How many codes there are: `ok`, `cancel_pending` and the eight error codes.
    pub const COUNT: usize = 10;

    /// The word.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::CancelPending => "cancel_pending",
            Self::Error(code) => code.as_str(),
        }
    }

    /// A position below [`COUNT`](Self::COUNT): an index for per-code tables.
    pub const fn index(self) -> usize {
        match self {
            Self::Ok => 0,
            Self::CancelPending => 1,
            Self::Error(code) => match code {
                ErrorCode::NotFound => 2,
                ErrorCode::NotManaged => 3,
                ErrorCode::RevisionConflict => 4,
                ErrorCode::CancelRequested => 5,
                ErrorCode::Terminal => 6,
                ErrorCode::PersistFailed => 7,
                ErrorCode::ChildSessionForbidden => 8,
                ErrorCode::CapacityExceeded => 9,
            },
        }
    }

    /// The code of an executed action's outcome; `None` for a schema violation, which is a
    /// rejection (`invalid_request`), not an action.
    pub fn of(outcome: &ActionOutcome) -> Option<Self> {
        match outcome {
            ActionOutcome::Success { .. } => Some(Self::Ok),
            ActionOutcome::CancelPending { .. } => Some(Self::CancelPending),
            ActionOutcome::Failure { code, .. } => Some(Self::Error(*code)),
            ActionOutcome::Invalid(_) => None,
        }
    }
}

impl fmt::Display for ActionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_name_sits_at_its_index() {
        for (i, name) in ActionName::ALL.iter().enumerate() {
            assert_eq!(name.index(), i, "{name}");
        }
    }

    #[test]
    fn every_code_has_its_own_index_below_count() {
        let codes = [
            ActionCode::Ok,
            ActionCode::CancelPending,
            ActionCode::Error(ErrorCode::NotFound),
            ActionCode::Error(ErrorCode::NotManaged),
            ActionCode::Error(ErrorCode::RevisionConflict),
            ActionCode::Error(ErrorCode::CancelRequested),
            ActionCode::Error(ErrorCode::Terminal),
            ActionCode::Error(ErrorCode::PersistFailed),
            ActionCode::Error(ErrorCode::ChildSessionForbidden),
            ActionCode::Error(ErrorCode::CapacityExceeded),
        ];
        let mut indexes: Vec<usize> = codes.iter().map(|c| c.index()).collect();
        indexes.sort_unstable();
        assert_eq!(indexes, (0..ActionCode::COUNT).collect::<Vec<_>>());
    }
}
