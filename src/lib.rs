//! Tower middleware for authenticated webhook ingress.
//!
//! `tower-webhooks` re-implements OpenClaw's bundled webhooks plugin (authenticated HTTP routes that
//! let Zapier, n8n, a CI job or an internal service create and drive managed **TaskFlows**) as
//! composable tower layers. They stack into the full webhook pipeline under any tower-compatible
//! server, and each one also works alone in front of other ingress.
//!
//! # The layers, each usable alone
//!
//! | layer | answers | alone, see |
//! |---|---|---|
//! | [`RequirePost`], [`RequireJson`] | `405` + `Allow: POST`; `415` | [`guard`] |
//! | [`FixedWindowRateLimit`] | `429` + `Retry-After`, per raw path and client IP | [`rate_limit`] |
//! | [`InFlightLimit`] | `429` + `Retry-After: 1`, per normalised path and peer, no queueing | [`in_flight`] |
//! | [`SharedSecretAuth`] | `401` + `WWW-Authenticate: Bearer`; `400` for a secret in the query; lockout `429` | [`auth`] |
//! | [`BodyLimit`] | `413`, `408`, `400` for a malformed length, all with `Connection: close` | [`body_limit`] |
//! | [`ScrubOwnerMetadata`] | strips owner/session metadata from JSON responses | [`scrub`] |
//! | [`TaskFlowActionService`] | the thirteen TaskFlow actions over a [`TaskFlowStore`] | [`taskflow`] |
//!
//! Every middleware has `XLayer::new(config)`, `X::new(inner, config)` and `X::layer(config)`, decides
//! in `call` (its `poll_ready` passes through), and has `type Error = S::Error`: a rejection is an
//! ordinary response, so `axum::Router::layer` needs no `HandleErrorLayer`. Clones share one
//! limiter; responses use one crate-wide body, [`ResponseBody`].
//!
//! # The whole pipeline
//!
//! [`WebhookPipeline`] stacks the layers in the contract's order over the TaskFlow service for every
//! route, and [`WebhookRouter`] picks the route by path:
//!
//! ```text
//! request ─► WebhookRouter ─► RequirePost ─► FixedWindowRateLimit ─► RequireJson ─► InFlightLimit
//!         ─► SharedSecretAuth ─► BodyLimit ─► ScrubOwnerMetadata ─► TaskFlowActionService
//! ```
//!
//! A complete server (the `gateway` feature, on by default, provides [`serve`]):
//!
#![cfg_attr(feature = "gateway", doc = "```no_run")]
#![cfg_attr(not(feature = "gateway"), doc = "```ignore")]
//! use tower_webhooks::serve::{ServeOptions, serve};
//! use tower_webhooks::{Limits, ResolvedRoute, Secret, WebhookPipeline};
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let secret = Secret::new(std::env::var("WEBHOOK_SECRET").unwrap_or_default())
//!     .expect("set WEBHOOK_SECRET");
//! let pipeline = WebhookPipeline::in_memory(Limits::default());
//! let router = pipeline.router(&[ResolvedRoute::new("zapier", "agent:main:main", [secret])]);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:18790").await?;
//! serve(listener, router, ServeOptions::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await;
//! # Ok(()) }
//! ```
//!
//! Routes usually come from a JSON5 file: see [`WebhooksConfig`]. The ready-made server is
//! `cargo run --release --example gateway`.
//!
//! # Features
//!
//! Each layer is a feature, so a user who wants one pays for that one:
//! `tower-webhooks = { version = "0.1", default-features = false, features = ["auth"] }` builds 29
//! crates, against 73 when every layer came with the crate (tower-http with one feature: about 20). [`RequirePost`], [`RequireJson`],
//! [`ResponseBody`], [`Rejection`], [`Secret`] and the clocks need no dependency and are always in.
//!
//! - `auth`: [`auth`] (sha2, subtle; the keyed state and the client IP).
//! - `rate-limit`: [`rate_limit`] (the keyed state and the client IP).
//! - `in-flight`: [`in_flight`] (the same).
//! - `body-limit`: [`body_limit`] (tokio's timer).
//! - `scrub`: [`scrub`] and the JSON response bodies (serde_json).
//! - `taskflow`: [`taskflow`], the model, the in-memory store and the action service. Turns on
//!   `scrub`.
//! - `serde`: `Deserialize` for each layer's configuration type.
//! - `telemetry`: [`Telemetry`], the access log. Turns on `taskflow`.
//! - `config`: [`WebhooksConfig`] (JSON5, the secret providers) and what it builds: every layer,
//!   [`WebhookPipeline`], [`WebhookRouter`] and [`Health`].
//! - `metrics`: [`metrics`], the Prometheus series of SPEC §6 (over `prometheus-client`), counted by
//!   [`TelemetryLayer`]. Turns on `config`.
//! - `serve`: [`serve`], hyper 1 over hyper-util with graceful shutdown, for any tower service.
//! - `gateway` (default): [`gateway`], the server behind the gateway example: `serve`, `config` and
//!   `metrics`.
//! - `axum` (default): the limiters also read the peer address from axum's `ConnectInfo`.
//!
//! # Operating it
//!
//! [`Health`] answers `/healthz` and `/readyz` before route lookup, and [`Telemetry`] writes one
//! access-log event per request (target `tower_webhooks::access`) and counts the metrics. The
//! gateway stacks them as `Health ─► Telemetry ─► WebhookRouter`: probes are neither logged nor
//! counted.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
#[cfg(any(
    feature = "auth",
    feature = "rate-limit",
    feature = "in-flight",
    feature = "telemetry"
))]
pub mod client_ip;
pub mod clock;
#[cfg(feature = "config")]
pub mod config;
pub mod future;
#[cfg(feature = "gateway")]
pub mod gateway;
pub mod guard;
#[cfg(feature = "config")]
pub mod health;
// Typed records are the TaskFlow store's: with `scrub` alone only `Value` documents are built.
#[cfg(feature = "scrub")]
#[cfg_attr(not(feature = "taskflow"), allow(dead_code))]
pub mod json;
#[cfg(any(feature = "auth", feature = "rate-limit", feature = "in-flight"))]
pub mod keyed;
// Each helper reads some layers' configurations: with only some layers on, some go unused.
#[cfg_attr(not(feature = "config"), allow(dead_code))]
pub mod limit;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(any(feature = "auth", feature = "rate-limit", feature = "in-flight"))]
mod path;
#[cfg(feature = "config")]
pub mod pipeline;
pub mod rejection;
#[cfg(feature = "config")]
pub mod router;
pub mod secret;
#[cfg(feature = "serve")]
pub mod serve;
#[cfg(feature = "telemetry")]
pub mod telemetry;

#[cfg(feature = "auth")]
pub mod auth;
#[cfg(feature = "body-limit")]
pub mod body_limit;
#[cfg(feature = "in-flight")]
pub mod in_flight;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "scrub")]
pub mod scrub;
#[cfg(feature = "taskflow")]
pub mod taskflow;

#[cfg(feature = "auth")]
pub use auth::{
    AuthLockout, LockoutConfig, SecretsHandle, SharedSecretAuth, SharedSecretAuthConfig,
    SharedSecretAuthLayer,
};
#[cfg(feature = "scrub")]
pub use body::json_response;
pub use body::{BufferedBody, ResponseBody, StandaloneBody};
#[cfg(feature = "body-limit")]
pub use body_limit::{
    BodyLimit, BodyLimitConfig, BodyLimitLayer, BodyTimeoutError, Buffered, BufferedFuture,
    LimitedBody, Streaming,
};
#[cfg(any(
    feature = "auth",
    feature = "rate-limit",
    feature = "in-flight",
    feature = "telemetry"
))]
pub use client_ip::{ClientIp, InvalidCidr, ResolveClientIp, ResolveClientIpLayer, TrustedProxies};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
#[cfg(feature = "config")]
pub use config::{
    ConfigError, ExecProvider, FileMode, Limits, MetricsSettings, ResolvedConfig, ResolvedRoute,
    RouteConfig, SecretInput, SecretProvider, SecretProviders, SecretRef, SecretSource,
    SkippedRoute, UnresolvedSecret, WebhooksConfig, normalize_webhook_path,
};
pub use guard::{RequireJson, RequireJsonLayer, RequirePost, RequirePostLayer};
#[cfg(feature = "config")]
pub use health::{Health, HealthLayer};
#[cfg(feature = "in-flight")]
pub use in_flight::{
    InFlightBody, InFlightConfig, InFlightLimit, InFlightLimitLayer, InFlightLimiter,
    InFlightPermit, InFlightResponseFuture,
};
#[cfg(any(feature = "auth", feature = "rate-limit", feature = "in-flight"))]
pub use keyed::{GlobalKey, KeyExtractor, KeyHasher, NormalizedPathAndPeerIp, PathAndClientIp};
pub use limit::InvalidLimit;
#[cfg(feature = "config")]
pub use pipeline::{RouteService, WebhookPipeline};
#[cfg(feature = "rate-limit")]
pub use rate_limit::{
    FixedWindowLimiter, FixedWindowRateLimit, FixedWindowRateLimitLayer, Limited, RateLimitConfig,
};
pub use rejection::{Rejection, RejectionReason};
#[cfg(feature = "config")]
pub use router::{RouteTable, RouteTableHandle, RouterFuture, WebhookRouter};
#[cfg(feature = "scrub")]
pub use scrub::{
    InvalidScrubPath, ScrubConfig, ScrubOwnerMetadata, ScrubOwnerMetadataLayer, ScrubPath,
    ScrubResponseFuture,
};
pub use secret::Secret;
#[cfg(feature = "taskflow")]
pub use taskflow::{
    Action, ActionOutcome, CancelHook, CancelImmediately, CancelOutcome, ChildCancel,
    ChildSessionPolicy, ErrorCode, Flow, FlowEnd, FlowStatus, MemoryStore, MemoryStoreConfig,
    Mutation, MutationOutcome, NewFlow, NewTask, NotifyPolicy, Patch, RunTaskOutcome, Runtime,
    StoreError, SyncMode, Task, TaskFlowActionService, TaskFlowFuture, TaskFlowRoute,
    TaskFlowStore, TaskStatus, TaskSummary, TaskUpdate, TaskUpdateOutcome, ValidationError,
};
#[cfg(feature = "telemetry")]
pub use telemetry::{Telemetry, TelemetryLayer};
