//! [`TaskFlowActionService`]: one route's TaskFlow actions as a tower `Service`.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use serde_json::{Value, json};

use crate::json::JsonDocument;
use tower_service::Service;

use super::action::Action;
#[cfg(feature = "telemetry")]
use super::label::ActionCode;
use super::model::{Flow, Task};
use super::outcome::{
    ActionOutcome, CANCEL_PENDING_REASON, ErrorCode, RUN_TASK_NOT_MANAGED, terminal_message,
};
use super::policy::ChildSessionPolicy;
use super::store::{
    CancelOutcome, MutationOutcome, NewFlow, NewTask, RunTaskOutcome, StoreError, TaskFlowStore,
};
use crate::body::{BufferedBody, OwnerFree, StandaloneBody};
use crate::rejection::Rejection;
#[cfg(feature = "telemetry")]
use crate::rejection::RejectionReason;
#[cfg(feature = "telemetry")]
use crate::telemetry;

/// What binds a [`TaskFlowActionService`] to one route: its id (echoed as `routeId`), the owner
/// session key, the default controller id and the child-session policy.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskFlowRoute {
    route_id: Arc<str>,
    session_key: Arc<str>,
    controller_id: Arc<str>,
    child_sessions: ChildSessionPolicy,
}

impl fmt::Debug for TaskFlowRoute {
    // The session key is owner metadata that must not leak, into logs either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskFlowRoute")
            .field("route_id", &self.route_id)
            .field("session_key", &"[redacted]")
            .field("controller_id", &self.controller_id)
            .field("child_sessions", &self.child_sessions)
            .finish()
    }
}

impl TaskFlowRoute {
    /// A route with controller id `webhooks/<route_id>` and the `same-agent` policy.
    pub fn new(route_id: impl Into<String>, session_key: impl Into<String>) -> Self {
        let route_id: String = route_id.into();
        Self {
            controller_id: Arc::from(format!("webhooks/{route_id}")),
            route_id: Arc::from(route_id),
            session_key: Arc::from(session_key.into()),
            child_sessions: ChildSessionPolicy::default(),
        }
    }

    /// Sets the default controller id of created flows.
    pub fn controller_id(mut self, controller_id: impl Into<String>) -> Self {
        self.controller_id = Arc::from(controller_id.into());
        self
    }

    /// Sets the child-session policy.
    pub fn child_sessions(mut self, policy: ChildSessionPolicy) -> Self {
        self.child_sessions = policy;
        self
    }

    /// The route id.
    pub fn route_id(&self) -> &str {
        &self.route_id
    }

    /// The owner session key.
    pub fn session_key(&self) -> &str {
        &self.session_key
    }

    /// The default controller id.
    pub fn default_controller_id(&self) -> &str {
        &self.controller_id
    }

    /// The child-session policy.
    pub fn child_session_policy(&self) -> &ChildSessionPolicy {
        &self.child_sessions
    }
}

/// The future of [`TaskFlowActionService`]. Boxed because the store's futures are opaque
/// (`impl Future`) and cannot be named in a concrete future type on stable Rust.
pub type TaskFlowFuture =
    Pin<Box<dyn Future<Output = Result<Response<StandaloneBody>, Infallible>> + Send>>;

/// Runs the TaskFlow actions of SPEC §3 for one route against a store.
///
/// Takes a request whose body is complete ([`BufferedBody`]); answers `400` `invalid request body`
/// (plain text) for a body that is empty, not UTF-8 or not JSON, `400` `invalid_request` for a
/// schema violation, and otherwise the action's envelope (SPEC §3.3) as a structured JSON body.
///
/// Safe alone: every record in an answer is its allow-listed view (SPEC §4), so no answer carries
/// `ownerKey`, `requesterSessionKey` or the route's session key, with or without
/// [`ScrubOwnerMetadata`](crate::scrub) in front. Its JSON answers are marked as built owner-free,
/// so that layer, when present, passes them on without parsing them.
///
/// Cloning is cheap (two reference counts).
pub struct TaskFlowActionService<S> {
    store: Arc<S>,
    route: Arc<TaskFlowRoute>,
}

impl<S> Clone for TaskFlowActionService<S> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            route: Arc::clone(&self.route),
        }
    }
}

impl<S> fmt::Debug for TaskFlowActionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskFlowActionService")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

/// Decodes a body as SPEC §2 step 8 says: UTF-8, trimmed (JavaScript's `trim`, which includes the
/// byte-order mark), then JSON. `None` for anything else, including an empty body.
fn decode(bytes: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if text.is_empty() {
        return None;
    }
    serde_json::from_str(text).ok()
}

impl<S: TaskFlowStore> TaskFlowActionService<S> {
    /// A service for `route` over `store` (a store or an `Arc` of one).
    pub fn new(store: impl Into<Arc<S>>, route: TaskFlowRoute) -> Self {
        Self {
            store: store.into(),
            route: Arc::new(route),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The route binding.
    pub fn route(&self) -> &TaskFlowRoute {
        &self.route
    }

    /// Validates and runs a decoded request body.
    pub async fn handle_value(&self, body: &Value) -> ActionOutcome {
        match Action::parse(body) {
            Ok(action) => self.execute(action).await,
            Err(error) => ActionOutcome::Invalid(error),
        }
    }

    /// Runs a validated action.
    pub async fn execute(&self, action: Action) -> ActionOutcome {
        match action {
            Action::CreateFlow {
                controller_id,
                goal,
                status,
                notify_policy,
                current_step,
                state_json,
                wait_json,
            } => {
                let controller_id =
                    controller_id.unwrap_or_else(|| self.route.controller_id.to_string());
                let mut new = NewFlow::new(controller_id, goal);
                new.status = status;
                new.notify_policy = notify_policy;
                new.current_step = current_step;
                new.state_json = state_json;
                new.wait_json = wait_json;
                self.create_flow(new).await
            }
            Action::GetFlow { flow_id } => {
                flow_read(self.store.get_flow(self.owner(), &flow_id).await)
            }
            Action::ListFlows => match self.store.list_flows(self.owner()).await {
                Ok(flows) => success(JsonDocument::object([("flows", flows.into())])),
                Err(e) => store_failure(e, JsonDocument::null()),
            },
            Action::FindLatestFlow => flow_read(self.store.find_latest_flow(self.owner()).await),
            Action::ResolveFlow { token } => {
                flow_read(self.store.resolve_flow(self.owner(), &token).await)
            }
            Action::GetTaskSummary { flow_id } => self.task_summary(&flow_id).await,
            Action::Mutate {
                flow_id,
                expected_revision,
                mutation,
            } => {
                let outcome = self
                    .store
                    .mutate_flow(self.owner(), &flow_id, expected_revision, mutation)
                    .await;
                mutation_outcome(outcome)
            }
            Action::CancelFlow { flow_id } => {
                cancel_outcome(self.store.cancel_flow(self.owner(), &flow_id).await)
            }
            Action::RunTask { flow_id, task } => self.run_task(&flow_id, task).await,
        }
    }

    /// The route's session key: every read and write is scoped to it.
    fn owner(&self) -> &str {
        &self.route.session_key
    }

    async fn create_flow(&self, new: NewFlow) -> ActionOutcome {
        match self.store.create_flow(self.owner(), new).await {
            Ok(flow) => success(JsonDocument::object([
                ("created", true.into()),
                ("flow", flow.into()),
            ])),
            Err(e) => {
                let reason = e_code(&e).message();
                store_failure(e, json!({"created": false, "reason": reason}).into())
            }
        }
    }

    async fn task_summary(&self, flow_id: &str) -> ActionOutcome {
        match self.store.task_summary(self.owner(), flow_id).await {
            Ok(summary) => success(JsonDocument::object([(
                "summary",
                summary.map_or(Value::Null, |s| s.to_json()).into(),
            )])),
            Err(e) => store_failure(e, JsonDocument::null()),
        }
    }

    async fn run_task(&self, flow_id: &str, task: NewTask) -> ActionOutcome {
        // A property of the request alone, so it is checked before the store is touched.
        if let Some(child) = &task.child_session_key {
            if !self.route.child_sessions.allows(self.owner(), child) {
                return ActionOutcome::failure(
                    ErrorCode::ChildSessionForbidden,
                    json!({
                        "created": false,
                        "reason": ErrorCode::ChildSessionForbidden.message(),
                    })
                    .into(),
                );
            }
        }
        run_task_outcome(self.store.run_task(self.owner(), flow_id, task).await)
    }
}

/// `get_flow`, `find_latest_flow` and `resolve_flow`: `{"flow":Flow|null}`.
fn flow_read(read: Result<Option<Flow>, StoreError>) -> ActionOutcome {
    match read {
        Ok(flow) => success(JsonDocument::object([("flow", flow.into())])),
        Err(e) => store_failure(e, JsonDocument::null()),
    }
}

fn mutation_outcome(outcome: Result<MutationOutcome, StoreError>) -> ActionOutcome {
    match outcome {
        Ok(MutationOutcome::Applied(flow)) => success(JsonDocument::object([
            ("applied", true.into()),
            ("flow", flow.into()),
        ])),
        Ok(MutationOutcome::NotFound) => not_applied(ErrorCode::NotFound, None),
        Ok(MutationOutcome::NotManaged(flow)) => not_applied(ErrorCode::NotManaged, Some(flow)),
        Ok(MutationOutcome::RevisionConflict(flow)) => {
            not_applied(ErrorCode::RevisionConflict, Some(flow))
        }
        Err(e) => {
            let code = e_code(&e);
            store_failure(e, json!({"applied": false, "code": code.as_str()}).into())
        }
    }
}

fn cancel_outcome(outcome: Result<CancelOutcome, StoreError>) -> ActionOutcome {
    let found = |cancelled: bool, reason: Option<JsonDocument>, flow, tasks: Vec<Task>| {
        let mut result = vec![("found", true.into()), ("cancelled", cancelled.into())];
        result.extend(reason.map(|reason| ("reason", reason)));
        result.extend([("flow", JsonDocument::from(flow)), ("tasks", tasks.into())]);
        JsonDocument::object(result)
    };
    match outcome {
        Ok(CancelOutcome::NotFound) => ActionOutcome::failure(
            ErrorCode::NotFound,
            json!({
                "found": false,
                "cancelled": false,
                "reason": ErrorCode::NotFound.message(),
            })
            .into(),
        ),
        Ok(CancelOutcome::Terminal { flow, tasks }) => {
            let reason = terminal_message(flow.status);
            ActionOutcome::Failure {
                code: ErrorCode::Terminal,
                error: reason.clone().into(),
                result: found(false, Some(reason.into()), flow, tasks),
            }
        }
        Ok(CancelOutcome::Pending { flow, tasks }) => ActionOutcome::CancelPending {
            result: found(false, Some(CANCEL_PENDING_REASON.into()), flow, tasks),
        },
        Ok(CancelOutcome::Cancelled { flow, tasks }) => success(found(true, None, flow, tasks)),
        Err(e) => {
            let reason = e_code(&e).message();
            store_failure(e, json!({"cancelled": false, "reason": reason}).into())
        }
    }
}

fn run_task_outcome(outcome: Result<RunTaskOutcome, StoreError>) -> ActionOutcome {
    match outcome {
        Ok(RunTaskOutcome::Created { flow, task })
        | Ok(RunTaskOutcome::Existing { flow, task }) => success(JsonDocument::object([
            ("created", true.into()),
            ("flow", flow.into()),
            ("task", task.into()),
        ])),
        Ok(RunTaskOutcome::NotFound) => ActionOutcome::failure(
            ErrorCode::NotFound,
            json!({
                "created": false,
                "found": false,
                "reason": ErrorCode::NotFound.message(),
            })
            .into(),
        ),
        Ok(RunTaskOutcome::NotManaged(flow)) => {
            not_created(ErrorCode::NotManaged, RUN_TASK_NOT_MANAGED.to_owned(), flow)
        }
        Ok(RunTaskOutcome::CancelRequested(flow)) => not_created(
            ErrorCode::CancelRequested,
            ErrorCode::CancelRequested.message().to_owned(),
            flow,
        ),
        Ok(RunTaskOutcome::Terminal(flow)) => {
            not_created(ErrorCode::Terminal, terminal_message(flow.status), flow)
        }
        Err(e) => {
            let reason = e_code(&e).message();
            store_failure(e, json!({"created": false, "reason": reason}).into())
        }
    }
}

fn success(result: JsonDocument) -> ActionOutcome {
    ActionOutcome::Success { result }
}

fn not_applied(code: ErrorCode, current: Option<Flow>) -> ActionOutcome {
    let mut result = vec![("applied", false.into()), ("code", code.as_str().into())];
    if let Some(flow) = current {
        result.push(("current", flow.into()));
    }
    ActionOutcome::failure(code, JsonDocument::object(result))
}

fn not_created(code: ErrorCode, reason: String, flow: Flow) -> ActionOutcome {
    ActionOutcome::Failure {
        code,
        error: reason.clone().into(),
        result: JsonDocument::object([
            ("created", false.into()),
            ("found", true.into()),
            ("reason", reason.into()),
            ("flow", flow.into()),
        ]),
    }
}

fn e_code(error: &StoreError) -> ErrorCode {
    if error.is_persist_failure() {
        ErrorCode::PersistFailed
    } else {
        ErrorCode::CapacityExceeded
    }
}

fn store_failure(error: StoreError, result: JsonDocument) -> ActionOutcome {
    // The reason stays in the log: it may name backend details a webhook caller must not see.
    match &error {
        StoreError::CapacityExceeded => {}
        StoreError::OutcomeUnknown(reason) => tracing::warn!(
            %reason,
            outcome = "unknown",
            "TaskFlow store lost its connection while committing: the change may or may not have been made"
        ),
        other => tracing::warn!(reason = %other, "TaskFlow store failed to persist"),
    }
    ActionOutcome::failure(e_code(&error), result)
}

impl<S: TaskFlowStore> Service<Request<BufferedBody>> for TaskFlowActionService<S> {
    type Response = Response<StandaloneBody>;
    type Error = Infallible;
    type Future = TaskFlowFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<BufferedBody>) -> Self::Future {
        let Some(body) = decode(request.body().bytes()) else {
            return Box::pin(std::future::ready(Ok(
                Rejection::InvalidRequestBody.into_response()
            )));
        };
        let action = match Action::parse(&body) {
            Ok(action) => action,
            Err(error) => {
                #[cfg(feature = "telemetry")]
                telemetry::record_rejection(RejectionReason::InvalidRequest);
                let response = ActionOutcome::Invalid(error).into_response(&self.route.route_id);
                return Box::pin(std::future::ready(Ok(owner_free(response))));
            }
        };
        #[cfg(feature = "telemetry")]
        let name = action.name();
        let this = self.clone();
        Box::pin(async move {
            let outcome = this.execute(action).await;
            #[cfg(feature = "telemetry")]
            if let Some(code) = ActionCode::of(&outcome) {
                telemetry::record_action(name, code);
            }
            Ok(owner_free(outcome.into_response(&this.route.route_id)))
        })
    }
}

/// Marks an answer built here: its records are views and the rest is our own words, so
/// [`ScrubOwnerMetadata`](crate::scrub) has nothing to remove from it.
fn owner_free(mut response: Response<StandaloneBody>) -> Response<StandaloneBody> {
    response.extensions_mut().insert(OwnerFree);
    response
}
