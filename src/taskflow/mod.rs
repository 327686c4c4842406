//! The TaskFlow actions (SPEC §3): records, a pluggable store, and the tower service that runs a
//! route's actions.
//!
//! A webhook route binds a URL to an owner session. [`TaskFlowActionService`] is the innermost
//! service of that route: it reads the complete request body, validates the action, runs it against
//! a [`TaskFlowStore`] scoped to the route's session key, and answers with the JSON envelope of
//! SPEC §3.3 as a structured value ([`StandaloneBody`](crate::body::StandaloneBody)), serialised once
//! when the body is written. Records answer as their allow-listed views (SPEC §4: no `ownerKey`,
//! no `requesterSessionKey`), so the service is safe without
//! [`ScrubOwnerMetadata`](crate::scrub); with it, the layer lets these answers through unparsed.
//!
//! | piece | what it is |
//! |---|---|
//! | [`Flow`], [`Task`], [`TaskSummary`] | the records; [`Flow::to_json`] & co. give a client's view, [`Flow::to_stored_json`] & co. the stored one |
//! | [`Action`] | a validated request; [`ValidationError`] renders `<path>: <message>` |
//! | [`TaskFlowStore`] | async, generic storage contract; [`MemoryStore`] is the default |
//! | [`ActionOutcome`], [`ErrorCode`] | status mapping and envelope |
//! | [`ChildSessionPolicy`] | which child sessions `run_task` may name |
//! | [`ChangeFeed`], [`Change`] | change notifications (ids only) from every store |
//! | [`CancelHook`] | how `cancel_flow` stops active child tasks (after the request is committed) |
//!
//! # Example
//!
//! ```
//! use http::Request;
//! use tower::ServiceExt;
//! use tower_webhooks::TaskFlowActionService;
//! use tower_webhooks::body::BufferedBody;
//! use tower_webhooks::taskflow::{MemoryStore, TaskFlowRoute};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new();
//! let route = TaskFlowRoute::new("zapier", "agent:main:webhooks");
//! let service = TaskFlowActionService::new(store.clone(), route);
//!
//! let request = Request::post("/plugins/webhooks/zapier")
//!     .header("content-type", "application/json")
//!     .body(BufferedBody::from(r#"{"action":"create_flow","goal":"triage the inbox"}"#))
//!     .unwrap();
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//!
//! let envelope = response.body().json_value().unwrap();
//! assert_eq!(envelope["ok"], true);
//! assert_eq!(envelope["routeId"], "zapier");
//! let flow = &envelope["result"]["flow"];
//! assert_eq!(flow["status"], "queued");
//! assert_eq!(flow["controllerId"], "webhooks/zapier");
//! assert_eq!(flow["revision"], 0);
//!
//! // A stale revision is refused and the current flow is returned.
//! let body = format!(
//!     r#"{{"action":"finish_flow","flowId":"{}","expectedRevision":7}}"#,
//!     flow["flowId"].as_str().unwrap()
//! );
//! let request = Request::post("/").body(BufferedBody::new(body)).unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 409);
//! assert_eq!(response.body().json_value().unwrap()["code"], "revision_conflict");
//! # }
//! ```
//!
//! # Choices where the SPEC is silent
//!
//! - **Strings** must be non-empty after JavaScript's `trim` (so U+FEFF is white space and U+0085
//!   is not) and at most [`MAX_STRING_BYTES`]. The SPEC trims `flowId` and the nullable strings;
//!   every other string (`goal`, `token`, `task`, `runId`, ...) is stored as sent, so an idempotency
//!   key or a resolve token means exactly what the caller wrote. Optional strings accept `null` as "not given" (`controllerId`, `currentStep` of
//!   `create_flow`, the optional strings of `run_task`); `startedAt`/`lastEventAt` accept `null`
//!   too, which still counts as "present" for the running-only rule.
//! - **Integers** above [`MAX_SAFE_INTEGER`] (2^53 - 1) are refused: the original's `JSON.parse`
//!   would silently round them. `1e400` is not a number serde_json reads, so that body is `400`
//!   `invalid request body` rather than `invalid_request`.
//! - **Ids** are matched in their canonical lower-case hyphenated form only; an upper-cased id is
//!   "not found", like the original's exact string comparison.
//! - **Top-level non-object** bodies (`[]`, `1`, `"x"`) are `invalid_request` with the path-less
//!   message `request body must be a JSON object`.
//! - **Check order**: `action`, unknown keys in document order, fields in the SPEC table's order,
//!   then the `run_task` cross-field rule. Only the first problem is reported.
//! - **`set_waiting`** derives the status from `blockedTaskId`/`blockedSummary`, so when neither is
//!   given they are cleared (a `waiting` flow never keeps a stale block reason).
//! - **`request_cancel`** keeps the first `cancelRequestedAt` (sticky) but still counts as a
//!   successful mutation (revision `+1`).
//! - **`cancel_flow`** does not check `managed` (the SPEC lists no such step). A repeat on a flow
//!   whose cancellation is pending does not bump the revision for the request again; it retries the
//!   hook. When the last active child of a pending cancellation ends (through
//!   [`TaskFlowStore::update_task`]), the flow becomes `cancelled`.
//! - **`run_task`**: the child-session policy is checked before the store (a property of the
//!   request alone); the flow checks (exists, managed, cancel, terminal) come before idempotency, so
//!   a retry after the flow ended answers `409` `terminal`. A repeat answers exactly like the first
//!   call (`"created":true`, same task). Creating a task does not change the flow's revision. A
//!   `running` task without `startedAt` starts now. `preferMetadata` is kept on the record but not
//!   serialised (it is not in the SPEC's task fields).
//! - **Failure `result`s** not given by the SPEC: `run_task` → `{"created":false,"found":…,
//!   "reason":…,"flow"?}`; `cancel_flow` not found → `{"found":false,"cancelled":false,"reason":…}`;
//!   store errors → `{"created":false,…}`, `{"applied":false,"code":…}` or `null` for reads.
//! - **Retention** is measured from `endedAt` (or `updatedAt` if a terminal flow has none) and
//!   applied lazily per owner (every call that touches an owner, webhook or embedding side, first
//!   drops that owner's expired flows), plus [`TaskFlowStore::sweep_expired`] on demand. Caps count
//!   terminal flows and ended tasks until they are pruned; an idempotent `run_task` repeat is not a
//!   new task and succeeds at the cap.
//! - **The byte cap** ([`StoreConfig::max_bytes_per_owner`], `limits.store.maxBytesPerOwner`)
//!   counts each record's JSON text, `ownerKey` included, measured once per write. A write that
//!   lands exactly on the cap is allowed. `create_flow`, the mutations and `run_task` are refused
//!   (`507`, nothing changed) when they would grow the owner past it; a change that does not grow
//!   the owner, `cancel_flow` and the embedding-side calls are always applied. Owner entries themselves are never removed (they are route
//!   session keys, bounded by configuration).
//! - **`run_task` without `childSessionKey`** is always allowed: the policy governs only the
//!   sessions a caller names.
//! - **The cancel hook** runs once per active child after the cancellation request is committed,
//!   with no lock held (it may await and may call the store); its answers are then written in a
//!   second step. A flow with no active child is cancelled in one step.
//! - **Embedding-side calls** (`update_task`, `end_flow`, `get_task`) address records by id with no
//!   owner check; `end_flow` has no revision check but bumps the revision. `Start` needs a `queued`
//!   task and every other [`TaskUpdate`] an active one; a terminal task is never reopened.
//! - **Notifications** carry ids only and go through a bounded `tokio::sync::broadcast` channel
//!   (1,024 events by default): a subscriber that falls behind loses the oldest events and is told
//!   to re-read ([`ChangeEvent::Lagged`]), rather than slowing webhook calls down.

mod action;
mod label;
mod model;
mod notify;
mod outcome;
mod policy;
mod service;
mod store;
#[cfg(feature = "postgres")]
pub use store::postgres;

pub use action::{
    Action, MAX_SAFE_INTEGER, MAX_STRING_BYTES, RUN_TASK_STATUS_RULE, ValidationError,
};
pub use label::{ActionCode, ActionName};
pub use model::{Flow, FlowStatus, NotifyPolicy, Runtime, SyncMode, Task, TaskStatus, TaskSummary};
pub use notify::{CancelFuture, CancelHook, CancelImmediately, ChildCancel};
pub use outcome::{
    ActionOutcome, CANCEL_PENDING_REASON, ErrorCode, RUN_TASK_NOT_MANAGED, terminal_message,
};
pub use policy::{ChildSessionPolicy, UnknownPolicy};
pub use service::{TaskFlowActionService, TaskFlowFuture, TaskFlowRoute};
#[cfg(feature = "events")]
pub use store::AnyLedger;
#[cfg(feature = "sqlite")]
pub use store::SqliteStore;
pub use store::{
    AnyStore, CancelOutcome, Change, ChangeEvent, ChangeFeed, ChangeKind, ChangeSender,
    ChangeSubscription, FlowEnd, MemoryStore, MemoryStoreConfig, Mutation, MutationOutcome,
    NewFlow, NewTask, Patch, RunTaskOutcome, StoreConfig, StoreError, StoreUrl, TaskFlowStore,
    TaskUpdate, TaskUpdateOutcome,
};
