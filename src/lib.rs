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
//! | `VerifySignature` | `401` for a missing, stale or wrong GitHub, Stripe, Slack, Standard Webhooks or HMAC signature | `signature` |
//! | `IpAllowlist` | `403` `Forbidden` for a client outside `allowedIps` | `ip_allowlist` |
//! | [`TaskFlowActionService`] | the thirteen TaskFlow actions over a [`TaskFlowStore`](taskflow::TaskFlowStore) | [`taskflow`] |
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
//! use tower_webhooks::WebhookPipeline;
//! use tower_webhooks::config::{Limits, ResolvedRoute};
//! use tower_webhooks::secret::Secret;
//! use tower_webhooks::serve::{ServeOptions, serve};
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
//! `tower-webhooks = { version = "0.1", default-features = false, features = ["auth"] }` builds 20
//! crates, against 73 when every layer came with the crate (tower-http with one feature: about 20);
//! `rate-limit` or `in-flight` alone 19. [`RequirePost`], [`RequireJson`],
//! [`ResponseBody`], [`Rejection`](rejection::Rejection), [`Secret`](secret::Secret) and the
//! [`clock`]s need no dependency and are always in.
//!
//! - `auth`: [`auth`] (sha2, subtle; the keyed state and the client IP).
//! - `rate-limit`: [`rate_limit`] (the keyed state and the client IP).
//! - `in-flight`: [`in_flight`] (the same).
//! - `body-limit`: [`body_limit`] (tokio's timer).
//! - `scrub`: [`scrub`] and the JSON response bodies (serde_json).
//! - `taskflow`: [`taskflow`], the model, the in-memory store and the action service. Turns on
//!   `scrub`.
//! - `signature`: `signature`, webhook signatures over the buffered body (hmac, sha2, base64, hex,
//!   subtle). Turns on `body-limit`.
//! - `ip-allowlist`: `ip_allowlist`, CIDR allowlists on the client IP.
//! - `events`: `events`, event type, verification handshake, templates and the idempotency ledger
//!   of SPEC §8. Turns on `signature`, `ip-allowlist` and `taskflow`.
//! - `serde`: `Deserialize` for each layer's configuration type.
//! - `tracing`: the layers' warnings as `tracing` events (compiled out without it). Turned on by
//!   `telemetry`, `config` and `serve`.
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

// First: the modules below use its macros.
#[macro_use]
mod macros;

pub mod body;
#[cfg(any(
    feature = "auth",
    feature = "rate-limit",
    feature = "in-flight",
    feature = "telemetry",
    feature = "ip-allowlist"
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
#[cfg(feature = "config")]
pub mod event_route;
#[cfg(feature = "events")]
pub mod events;
#[cfg(feature = "scrub")]
#[cfg_attr(not(feature = "taskflow"), allow(dead_code))]
pub mod json;
#[cfg(any(
    feature = "auth",
    feature = "rate-limit",
    feature = "in-flight",
    feature = "events"
))]
pub mod keyed;
// Each helper reads some layers' configurations: with only some layers on, some go unused.
#[cfg_attr(not(feature = "config"), allow(dead_code))]
pub mod limit;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(any(
    feature = "auth",
    feature = "rate-limit",
    feature = "in-flight",
    feature = "events"
))]
mod path;
#[cfg(feature = "config")]
pub mod pipeline;
#[cfg(feature = "redis")]
pub mod redis;
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
#[cfg(feature = "ip-allowlist")]
pub mod ip_allowlist;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "scrub")]
pub mod scrub;
#[cfg(feature = "signature")]
pub mod signature;
#[cfg(feature = "taskflow")]
pub mod taskflow;

// The root holds what a user names in a `ServiceBuilder`: the layers and services, the pipeline,
// the router, the config entry point and the response body. Everything else is reached through its
// module (`tower_webhooks::taskflow::MemoryStore`, `tower_webhooks::secret::Secret`), so that each
// type has one path.
#[cfg(feature = "auth")]
pub use auth::{SharedSecretAuth, SharedSecretAuthLayer};
pub use body::ResponseBody;
#[cfg(feature = "body-limit")]
pub use body_limit::{BodyLimit, BodyLimitLayer};
#[cfg(any(
    feature = "auth",
    feature = "rate-limit",
    feature = "in-flight",
    feature = "telemetry",
    feature = "ip-allowlist"
))]
pub use client_ip::{ResolveClientIp, ResolveClientIpLayer};
#[cfg(feature = "config")]
pub use config::WebhooksConfig;
pub use guard::{RequireJson, RequireJsonLayer, RequirePost, RequirePostLayer};
#[cfg(feature = "config")]
pub use health::{Health, HealthLayer};
#[cfg(feature = "in-flight")]
pub use in_flight::{InFlightLimit, InFlightLimitLayer};
#[cfg(feature = "ip-allowlist")]
pub use ip_allowlist::{IpAllowlist, IpAllowlistLayer};
#[cfg(feature = "config")]
pub use pipeline::WebhookPipeline;
#[cfg(feature = "rate-limit")]
pub use rate_limit::{FixedWindowRateLimit, FixedWindowRateLimitLayer};
#[cfg(feature = "config")]
pub use router::WebhookRouter;
#[cfg(feature = "scrub")]
pub use scrub::{ScrubOwnerMetadata, ScrubOwnerMetadataLayer};
#[cfg(feature = "signature")]
pub use signature::{VerifySignature, VerifySignatureLayer};
#[cfg(feature = "taskflow")]
pub use taskflow::TaskFlowActionService;
#[cfg(feature = "telemetry")]
pub use telemetry::{Telemetry, TelemetryLayer};
