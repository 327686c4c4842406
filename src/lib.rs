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
//! ```no_run
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
//! - `axum` (default): the limiters also read the peer address from axum's `ConnectInfo`.
//! - `gateway` (default): [`serve`] and [`gateway`], the hyper 1 server behind the gateway example.
//!   Turns on `metrics`.
//! - `metrics`: [`metrics`], the Prometheus series of SPEC §6 (over `prometheus-client`), counted by
//!   [`TelemetryLayer`]. Without it the layer writes the access log only.
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
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod future;
#[cfg(feature = "gateway")]
pub mod gateway;
pub mod guard;
pub mod health;
pub mod json;
pub mod keyed;
pub mod limit;
#[cfg(feature = "metrics")]
pub mod metrics;
mod path;
pub mod pipeline;
pub mod rejection;
pub mod router;
pub mod secret;
#[cfg(feature = "gateway")]
pub mod serve;
pub mod telemetry;

pub mod auth;
pub mod body_limit;
pub mod in_flight;
pub mod rate_limit;
pub mod scrub;
pub mod taskflow;

pub use auth::{
    AuthLockout, LockoutConfig, SecretsHandle, SharedSecretAuth, SharedSecretAuthConfig,
    SharedSecretAuthLayer,
};
pub use body::{BufferedBody, ResponseBody, StandaloneBody, json_response};
pub use body_limit::{
    BodyLimit, BodyLimitConfig, BodyLimitLayer, BodyTimeoutError, Buffered, BufferedFuture,
    LimitedBody, Streaming,
};
pub use client_ip::{ClientIp, InvalidCidr, ResolveClientIp, ResolveClientIpLayer, TrustedProxies};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{
    ConfigError, ExecProvider, FileMode, Limits, MetricsSettings, ResolvedConfig, ResolvedRoute,
    RouteConfig, SecretInput, SecretProvider, SecretProviders, SecretRef, SecretSource,
    SkippedRoute, UnresolvedSecret, WebhooksConfig, normalize_webhook_path,
};
pub use guard::{RequireJson, RequireJsonLayer, RequirePost, RequirePostLayer};
pub use health::{Health, HealthLayer};
pub use in_flight::{
    InFlightBody, InFlightConfig, InFlightLimit, InFlightLimitLayer, InFlightLimiter,
    InFlightPermit, InFlightResponseFuture,
};
pub use keyed::{GlobalKey, KeyExtractor, KeyHasher, NormalizedPathAndPeerIp, PathAndClientIp};
pub use limit::InvalidLimit;
pub use pipeline::{RouteService, WebhookPipeline};
pub use rate_limit::{
    FixedWindowLimiter, FixedWindowRateLimit, FixedWindowRateLimitLayer, Limited, RateLimitConfig,
};
pub use rejection::{Rejection, RejectionReason};
pub use router::{RouteTable, RouteTableHandle, RouterFuture, WebhookRouter};
pub use scrub::{
    InvalidScrubPath, ScrubConfig, ScrubOwnerMetadata, ScrubOwnerMetadataLayer, ScrubPath,
    ScrubResponseFuture,
};
pub use secret::Secret;
pub use taskflow::{
    Action, ActionOutcome, CancelHook, CancelImmediately, CancelOutcome, ChildCancel,
    ChildSessionPolicy, ErrorCode, Flow, FlowEnd, FlowStatus, MemoryStore, MemoryStoreConfig,
    Mutation, MutationOutcome, NewFlow, NewTask, NotifyPolicy, Patch, RunTaskOutcome, Runtime,
    StoreError, StoreEvent, SyncMode, Task, TaskFlowActionService, TaskFlowFuture, TaskFlowRoute,
    TaskFlowStore, TaskStatus, TaskSummary, TaskUpdate, TaskUpdateOutcome, ValidationError,
};
pub use telemetry::{Telemetry, TelemetryLayer};
