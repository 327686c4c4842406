//! What a route does once its body is read (SPEC §8): [`RouteHandler`], and [`RouteAuth`], the
//! header-auth stage that a route whose auth needs the body passes over.
//!
//! For a route without SPEC §8 settings the handler is the TaskFlow action service, exactly as
//! before. Otherwise, in the SPEC's order:
//!
//! ```text
//! body ─► signature auth (401) ─► JSON (400) ─► event type ─► verification (200 challenge)
//!      ─► events (200 skipped) ─► idempotency (200 duplicate, 409 in progress) ─► dispatch
//! ```
//!
//! Dispatch is the action API (a route with `idempotency`, `events` or `verification` but no
//! event dispatch), `ack`, or a flow made from the templates (`taskflow`). An idempotency key is
//! claimed before dispatch and recorded only once it succeeded; a failed dispatch lets it go, so the
//! sender's retry is dispatched.
//!
//! Choices where the contract is silent:
//! - A route whose auth needs the body (`hmac-sha256`, `signature`) consults the auth-failure
//!   lockout after the body is read: a locked-out client is answered `429` there, a failed
//!   signature counts as a failure and a good one clears the count, as for header auth.
//! - A failed `run_task` after the flow was created (a store failure) answers `503`
//!   `persist_failed` and lets the key go: the retry makes a new flow.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use serde_json::{Map, Value, json};
use tower_service::Service;

use crate::auth::{AuthLockout, AuthResponseFuture, SharedSecretAuth, has_secret_in_query};
use crate::body::{BufferedBody, ResponseBody, StandaloneBody, owner_free_json_response};
use crate::client_ip::ClientIp;
use crate::config::{Dispatch, EventSettings, RunTaskDispatch, TaskFlowDispatch};
use crate::events::{Begin, IdempotencyLedger, TemplateContext, compose, event_allowed, render};
use crate::json::JsonDocument;
use crate::keyed::{LockState, LockoutStore};
use crate::rejection::Rejection;
use crate::secret::js_trim;
use crate::signature::{SignatureVerifier, VerifiedWebhook};
use crate::taskflow::{
    ChildSessionPolicy, ErrorCode, Flow, NewFlow, NewTask, RunTaskOutcome, Runtime, StoreError,
    TaskFlowActionService, TaskFlowFuture, TaskFlowStore, terminal_message,
};

/// A lockout store an event route can consult from its boxed future: in memory, or shared by
/// replicas (SPEC §7).
pub trait SharedLockout:
    LockoutStore<CheckFuture: Send, RecordFuture: Send> + Clone + Send + Sync + 'static
{
}

impl<T> SharedLockout for T where
    T: LockoutStore<CheckFuture: Send, RecordFuture: Send> + Clone + Send + Sync + 'static
{
}

/// The innermost service of a route: the TaskFlow action service, or, for a route with SPEC §8
/// settings or body-signature auth, the event pipeline in front of its dispatch.
pub struct RouteHandler<St, Lg, Lo = AuthLockout> {
    actions: TaskFlowActionService<St>,
    event: Option<Arc<EventRoute<Lg, Lo>>>,
}

impl<St, Lg, Lo> Clone for RouteHandler<St, Lg, Lo> {
    fn clone(&self) -> Self {
        Self {
            actions: self.actions.clone(),
            event: self.event.clone(),
        }
    }
}

impl<St, Lg, Lo> fmt::Debug for RouteHandler<St, Lg, Lo> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteHandler")
            .field("event_route", &self.event.is_some())
            .finish_non_exhaustive()
    }
}

/// What an event route knows besides its action service.
pub(crate) struct EventRoute<Lg, Lo = AuthLockout> {
    /// The owner of the flows it creates (the route's `sessionKey`).
    pub(crate) owner: String,
    /// The controller id of the flows it creates.
    pub(crate) controller_id: String,
    /// Who a child task may run as.
    pub(crate) child_sessions: ChildSessionPolicy,
    pub(crate) verifier: Option<SignatureVerifier>,
    pub(crate) lockout: Option<Lo>,
    pub(crate) settings: EventSettings,
    pub(crate) ledger: Arc<Lg>,
}

impl<St: TaskFlowStore, Lg: IdempotencyLedger, Lo> RouteHandler<St, Lg, Lo> {
    /// The action service alone: a SPEC §1 route.
    pub(crate) fn actions(actions: TaskFlowActionService<St>) -> Self {
        Self {
            actions,
            event: None,
        }
    }

    /// The event pipeline in front of `actions`.
    pub(crate) fn event(actions: TaskFlowActionService<St>, event: EventRoute<Lg, Lo>) -> Self {
        Self {
            actions,
            event: Some(Arc::new(event)),
        }
    }
}

impl<St: TaskFlowStore, Lg: IdempotencyLedger, Lo> Service<Request<BufferedBody>>
    for RouteHandler<St, Lg, Lo>
where
    Lo: SharedLockout,
{
    type Response = Response<StandaloneBody>;
    type Error = Infallible;
    type Future = TaskFlowFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<BufferedBody>) -> Self::Future {
        match &self.event {
            None => self.actions.call(request),
            Some(event) => {
                let (actions, event) = (self.actions.clone(), Arc::clone(event));
                Box::pin(async move { Ok(handle(actions, event, request).await) })
            }
        }
    }
}

/// A plain-text rejection as the handler's response.
fn reject(rejection: Rejection) -> Response<StandaloneBody> {
    rejection.into_response()
}

/// A JSON answer of the event route. Marked owner-free as the action service's are: it is made of
/// our own words, the flow and task views (which never carry owner metadata) and the sender's
/// payload (caller JSON, which SPEC §4 leaves as it is), so the scrub layer need not re-read it.
fn json(status: StatusCode, document: impl Into<JsonDocument>) -> Response<StandaloneBody> {
    owner_free_json_response(status, document.into())
}

/// The body as SPEC §2 step 8 reads it: UTF-8, trimmed, then JSON.
fn decode(bytes: &[u8]) -> Option<Value> {
    let text = js_trim(std::str::from_utf8(bytes).ok()?);
    if text.is_empty() {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// An object of the members that are present.
fn members<const N: usize>(entries: [(&str, Option<Value>); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_owned(), value?)))
            .collect::<Map<String, Value>>(),
    )
}

async fn handle<St: TaskFlowStore, Lg: IdempotencyLedger, Lo: SharedLockout>(
    mut actions: TaskFlowActionService<St>,
    event: Arc<EventRoute<Lg, Lo>>,
    request: Request<BufferedBody>,
) -> Response<StandaloneBody> {
    let route_id = actions.route().route_id().to_owned();
    // Signature auth, right after the body (SPEC §8 order).
    let mut message_id = None;
    if let Some(verifier) = &event.verifier {
        match verify(&event, verifier, &request).await {
            Ok(verified) => message_id = verified.message_id,
            Err(rejection) => return reject(rejection),
        }
    }
    let Some(body) = decode(request.body().bytes()) else {
        return reject(Rejection::InvalidRequestBody);
    };
    let settings = &event.settings;
    let headers = request.headers();
    let event_type = settings.event.event_type(headers, &body);

    if let Some(verification) = &settings.verification {
        if let Some(answer) = verification.answer(event_type.as_deref(), &body) {
            return json(StatusCode::OK, answer);
        }
    }
    if !event_allowed(&settings.events, event_type.as_deref()) {
        return json(
            StatusCode::OK,
            members([
                ("ok", Some(Value::Bool(true))),
                ("routeId", Some(Value::from(route_id.as_str()))),
                ("skipped", Some(Value::Bool(true))),
                ("reason", Some(Value::from("event_not_allowed"))),
                ("eventType", event_type.clone().map(Value::from)),
            ]),
        );
    }

    // Without `idempotency` no key is read at all; with it but none found, no de-duplication.
    let key = settings
        .idempotency
        .as_ref()
        .and_then(|idempotency| idempotency.key(headers, &body, message_id.as_deref()));
    let claim = match (&settings.idempotency, &key) {
        (Some(idempotency), Some(key)) => {
            match event.ledger.begin(&route_id, key, idempotency.ttl).await {
                Ok(Begin::Begun(claim)) => Some(claim),
                Ok(Begin::Duplicate) => {
                    crate::telemetry::record_duplicate();
                    return json(
                        StatusCode::OK,
                        json!({"ok": true, "routeId": route_id, "duplicate": true, "idempotencyKey": key}),
                    );
                }
                Ok(Begin::InProgress) => {
                    let mut response = json(
                        StatusCode::CONFLICT,
                        json!({
                            "ok": false,
                            "routeId": route_id,
                            "code": "duplicate_in_progress",
                            "error": "A delivery with this idempotency key is being processed.",
                        }),
                    );
                    response
                        .headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                    return response;
                }
                Err(_unavailable) => return persist_failed(&route_id),
            }
        }
        _ => None,
    };

    let delivery = Delivery {
        route_id: &route_id,
        event_type: event_type.as_deref(),
        key: key.as_deref(),
        headers,
        body: &body,
        raw: std::str::from_utf8(request.body().bytes()).unwrap_or_default(),
    };
    let response = match &settings.dispatch {
        Dispatch::Ack => json(
            StatusCode::OK,
            members([
                ("ok", Some(Value::Bool(true))),
                ("routeId", Some(Value::from(route_id.as_str()))),
                (
                    "result",
                    Some(members([
                        ("action", Some(Value::from("ack"))),
                        ("eventType", delivery.event_type.map(Value::from)),
                        ("idempotencyKey", delivery.key.map(Value::from)),
                    ])),
                ),
            ]),
        ),
        Dispatch::TaskFlow(flow) => dispatch_taskflow(&actions, &event, flow, &delivery).await,
        // The action API, behind the route's events, idempotency and verification.
        Dispatch::Actions => match actions.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
    };

    if let (Some(claim), Some(key)) = (claim, &key) {
        // Recorded only once the dispatch succeeded (SPEC §8 [better]); otherwise let go, so the
        // sender's retry is dispatched.
        let finished = if response.status().is_success() {
            event.ledger.complete(&route_id, key, claim).await
        } else {
            event.ledger.abandon(&route_id, key, claim).await
        };
        if finished.is_err() && response.status().is_success() {
            // Dispatched but not recorded: say so, so the sender retries rather than trusting a
            // record that is not there. The retry is dispatched again (at-least-once).
            return persist_failed(&route_id);
        }
    }
    response
}

/// Verifies the body signature, consulting the auth-failure lockout as header auth does.
async fn verify<Lg, Lo: SharedLockout>(
    event: &EventRoute<Lg, Lo>,
    verifier: &SignatureVerifier,
    request: &Request<BufferedBody>,
) -> Result<VerifiedWebhook, Rejection> {
    let lockout = event
        .lockout
        .as_ref()
        .and_then(|lockout| Some((lockout, ClientIp::of(request).known()?)));
    let mut tracked = false;
    let mut lock_key = 0;
    if let Some((lockout, ip)) = lockout {
        let mut material = lockout.key_hasher().material();
        material.ip(ip);
        lock_key = material.finish();
        if !lockout.nobody_failing() {
            match lockout.check(lock_key).await {
                Ok(LockState::Locked { retry_after_secs }) => {
                    return Err(Rejection::LockedOut { retry_after_secs });
                }
                Ok(state) => tracked = state == LockState::Tracked,
                Err(_) => return Err(Rejection::ServiceUnavailable),
            }
        }
    }
    match verifier.verify(request.headers(), request.body().bytes()) {
        Ok(verified) => {
            if let (Some((lockout, _)), true) = (lockout, tracked) {
                lockout
                    .record_success(lock_key)
                    .await
                    .map_err(|_| Rejection::ServiceUnavailable)?;
            }
            Ok(verified)
        }
        Err(reason) => {
            tracing::debug!(
                target: "tower_webhooks::signature",
                scheme = verifier.scheme().name(),
                %reason,
                "webhook signature refused"
            );
            if let Some((lockout, _)) = lockout {
                lockout
                    .record_failure(lock_key)
                    .await
                    .map_err(|_| Rejection::ServiceUnavailable)?;
            }
            Err(Rejection::UnauthorizedNoChallenge)
        }
    }
}

/// One delivery, as the templates read it.
struct Delivery<'a> {
    route_id: &'a str,
    event_type: Option<&'a str>,
    key: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a Value,
    raw: &'a str,
}

impl Delivery<'_> {
    fn context(&self) -> TemplateContext<'_> {
        TemplateContext {
            route_id: self.route_id,
            event_type: self.event_type,
            idempotency_key: self.key,
            headers: self.headers,
            body: self.body,
            raw_body: self.raw,
        }
    }
}

fn persist_failed(route_id: &str) -> Response<StandaloneBody> {
    failure(
        route_id,
        ErrorCode::PersistFailed,
        ErrorCode::PersistFailed.message(),
    )
}

fn failure(route_id: &str, code: ErrorCode, error: &str) -> Response<StandaloneBody> {
    json(
        code.status(),
        json!({"ok": false, "routeId": route_id, "code": code.as_str(), "error": error}),
    )
}

fn store_failure(route_id: &str, error: &StoreError) -> Response<StandaloneBody> {
    let code = match error {
        StoreError::CapacityExceeded => ErrorCode::CapacityExceeded,
        _ => {
            // The reason stays in the log: it may name backend details a sender must not see.
            tracing::warn!(%error, "TaskFlow store failed to persist an event route's flow");
            ErrorCode::PersistFailed
        }
    };
    failure(route_id, code, code.message())
}

async fn dispatch_taskflow<St: TaskFlowStore, Lg, Lo>(
    actions: &TaskFlowActionService<St>,
    event: &EventRoute<Lg, Lo>,
    dispatch: &TaskFlowDispatch,
    delivery: &Delivery<'_>,
) -> Response<StandaloneBody> {
    let settings = &event.settings;
    let context = delivery.context();
    let goal = compose(
        &[
            dispatch.goal_template.as_deref(),
            settings.prompt.as_deref(),
        ],
        &context,
        &settings.skills,
    );
    let mut new = NewFlow::new(event.controller_id.clone(), goal);
    new.status = dispatch.status;
    new.notify_policy = dispatch.notify_policy;
    new.current_step = dispatch.current_step.clone();
    new.state_json = Some(members([
        ("source", Some(Value::from("webhooks"))),
        ("routeId", Some(Value::from(delivery.route_id))),
        ("eventType", delivery.event_type.map(Value::from)),
        ("idempotencyKey", delivery.key.map(Value::from)),
        ("payload", Some(delivery.body.clone())),
    ]));
    let flow = match actions.store().create_flow(&event.owner, new).await {
        Ok(flow) => flow,
        Err(error) => return store_failure(delivery.route_id, &error),
    };
    let mut result = vec![
        ("action", JsonDocument::from("taskflow_dispatch")),
        ("flow", JsonDocument::from(flow.clone())),
    ];
    match dispatch.run_task.as_ref().filter(|task| task.enabled) {
        None => {}
        Some(task) => match run_task(actions, event, task, &flow, delivery).await {
            Ok(Ok(task)) => result.push(("task", task)),
            Ok(Err(reason)) => {
                result.push(("taskCreated", false.into()));
                result.push(("reason", reason.into()));
            }
            Err(error) => return store_failure(delivery.route_id, &error),
        },
    }
    json(
        StatusCode::ACCEPTED,
        JsonDocument::object([
            ("ok", true.into()),
            ("routeId", delivery.route_id.into()),
            ("result", JsonDocument::object(result)),
        ]),
    )
}

/// The child task: the task as JSON, or why it was not created (still a `202`), or a store error.
async fn run_task<St: TaskFlowStore, Lg, Lo>(
    actions: &TaskFlowActionService<St>,
    event: &EventRoute<Lg, Lo>,
    config: &RunTaskDispatch,
    flow: &Flow,
    delivery: &Delivery<'_>,
) -> Result<Result<JsonDocument, String>, StoreError> {
    let settings = &event.settings;
    let context = delivery.context();
    let text = compose(
        &[config.task_template.as_deref(), settings.prompt.as_deref()],
        &context,
        &settings.skills,
    );
    let run_id = config
        .run_id_template
        .as_deref()
        .and_then(|template| render(template, &context))
        .or_else(|| delivery.key.map(str::to_owned))
        .unwrap_or_else(|| format!("{}:{}", delivery.route_id, flow.flow_id));
    let mut task = NewTask::new(Runtime::Acp, text);
    task.run_id = Some(run_id);
    task.label = config
        .label_template
        .as_deref()
        .and_then(|template| render(template, &context));
    task.child_session_key = config.child_session_key.clone();
    task.source_id = config.source_id.clone();
    task.parent_task_id = config.parent_task_id.clone();
    task.agent_id = config.agent_id.clone();
    if let Some(policy) = config.notify_policy {
        task.notify_policy = policy;
    }
    task.status = config.status;
    let owner = &event.owner;
    if let Some(child) = &task.child_session_key {
        if !event.child_sessions.allows(owner, child) {
            return Ok(Err(ErrorCode::ChildSessionForbidden.message().to_owned()));
        }
    }
    let flow_id = flow.flow_id.to_string();
    Ok(
        match actions.store().run_task(owner, &flow_id, task).await? {
            RunTaskOutcome::Created { task, .. } | RunTaskOutcome::Existing { task, .. } => {
                Ok(JsonDocument::from(task))
            }
            RunTaskOutcome::NotFound => Err(ErrorCode::NotFound.message().to_owned()),
            RunTaskOutcome::NotManaged(_) => Err(crate::taskflow::RUN_TASK_NOT_MANAGED.to_owned()),
            RunTaskOutcome::CancelRequested(_) => {
                Err(ErrorCode::CancelRequested.message().to_owned())
            }
            RunTaskOutcome::Terminal(flow) => Err(terminal_message(flow.status)),
        },
    )
}

/// The header-auth stage of a route: [`SharedSecretAuth`] for the modes that present a secret in a
/// header, or nothing for the modes that need the body (checked by [`RouteHandler`]).
#[derive(Clone, Debug)]
pub struct RouteAuth<S, L = AuthLockout> {
    kind: AuthKind<S, L>,
}

#[derive(Clone, Debug)]
enum AuthKind<S, L> {
    Header {
        auth: SharedSecretAuth<S, L>,
        /// Only a Bearer route's `401` invites Bearer credentials (SPEC §8).
        challenge: bool,
    },
    Body(S),
}

impl<S, L> RouteAuth<S, L> {
    /// Checks the header secret with `auth`; `challenge`: whether a `401` keeps
    /// `WWW-Authenticate: Bearer`.
    pub(crate) fn header(auth: SharedSecretAuth<S, L>, challenge: bool) -> Self {
        Self {
            kind: AuthKind::Header { auth, challenge },
        }
    }

    /// Leaves auth to the body stage.
    pub(crate) fn body(inner: S) -> Self {
        Self {
            kind: AuthKind::Body(inner),
        }
    }
}

impl<S, L, ReqBody, ResBody> Service<Request<ReqBody>> for RouteAuth<S, L>
where
    L: LockoutStore,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = RouteAuthFuture<S, ReqBody, L>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.kind {
            AuthKind::Header { auth, .. } => auth.poll_ready(cx),
            AuthKind::Body(inner) => inner.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let kind = match &mut self.kind {
            AuthKind::Header { auth, challenge } => AuthFutureKind::Header {
                future: auth.call(request),
                challenge: *challenge,
            },
            // A secret in the query string is refused on every route (SPEC §8 details), even
            // where no header secret is read.
            AuthKind::Body(_) if has_secret_in_query(request.uri()) => AuthFutureKind::Rejected {
                rejection: Some(Rejection::SecretInQueryString),
            },
            AuthKind::Body(inner) => AuthFutureKind::Body {
                future: inner.call(request),
            },
        };
        RouteAuthFuture { kind }
    }
}

pin_project! {
    /// Response future of [`RouteAuth`].
    pub struct RouteAuthFuture<S, ReqBody, L = AuthLockout>
    where
        S: Service<Request<ReqBody>>,
        L: LockoutStore,
    {
        #[pin]
        kind: AuthFutureKind<S, ReqBody, L>,
    }
}

pin_project! {
    #[project = AuthFutureKindProj]
    enum AuthFutureKind<S, ReqBody, L>
    where
        S: Service<Request<ReqBody>>,
        L: LockoutStore,
    {
        Header { #[pin] future: AuthResponseFuture<S, Request<ReqBody>, L>, challenge: bool },
        Body { #[pin] future: S::Future },
        Rejected { rejection: Option<Rejection> },
    }
}

impl<S, ReqBody, L> fmt::Debug for RouteAuthFuture<S, ReqBody, L>
where
    S: Service<Request<ReqBody>>,
    L: LockoutStore,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RouteAuthFuture")
    }
}

impl<S, ReqBody, ResBody, L> Future for RouteAuthFuture<S, ReqBody, L>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    L: LockoutStore,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            AuthFutureKindProj::Header { future, challenge } => {
                let mut response = ready!(future.poll(cx))?;
                if !*challenge && response.status() == StatusCode::UNAUTHORIZED {
                    response.headers_mut().remove(WWW_AUTHENTICATE);
                }
                Poll::Ready(Ok(response))
            }
            AuthFutureKindProj::Body { future } => {
                Poll::Ready(Ok(ready!(future.poll(cx))?.map(ResponseBody::new)))
            }
            AuthFutureKindProj::Rejected { rejection } => Poll::Ready(Ok(rejection
                .take()
                .unwrap_or(Rejection::InternalServerError)
                .into_response())),
        }
    }
}
