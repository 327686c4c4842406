//! One verified GitHub webhook endpoint in an axum 0.8 app, built from the layers alone: no
//! TaskFlow, no configuration file.
//!
//! ```text
//! POST /github ─► BodyLimit (buffered, 25 MiB, GitHub's cap) ─► VerifySignature (github)
//!              ─► your handler, with the verified delivery id and event type
//! ```
//!
//! ```sh
//! GITHUB_WEBHOOK_SECRET=demo cargo run --example github -- 127.0.0.1:18792
//! body='{"zen":"Keep it logically awesome."}'
//! sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac demo | sed 's/^.* //')
//! curl -sS -X POST http://127.0.0.1:18792/github -H 'content-type: application/json' \
//!   -H 'x-github-event: ping' -H 'x-github-delivery: 1' -H "x-hub-signature-256: sha256=$sig" \
//!   -d "$body"
//! ```
//!
//! An unsigned or wrongly signed delivery gets `401 unauthorized` and never reaches the handler.
//! GitHub signs no timestamp, so the handler should also de-duplicate on the delivery id (the
//! `events` module's [`MemoryLedger`](tower_webhooks::events::MemoryLedger) does that) if a
//! replayed delivery would do harm.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Extension;
use axum::routing::post;
use bytes::Bytes;
use tower::ServiceBuilder;
use tower_webhooks::BodyLimitLayer;
use tower_webhooks::body_limit::BodyLimitConfig;
use tower_webhooks::secret::Secret;
use tower_webhooks::signature::{
    SignatureScheme, VerifiedWebhook, VerifySignatureConfig, VerifySignatureLayer,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:18792";

/// GitHub caps webhook payloads at 25 MB.
const GITHUB_MAX_PAYLOAD: usize = 25 * 1024 * 1024;

/// The application: `POST /github`, verified with `secret` (several during a rotation).
pub fn app(secrets: impl IntoIterator<Item = Secret>) -> Router {
    let verify =
        VerifySignatureLayer::new(VerifySignatureConfig::new(SignatureScheme::GitHub, secrets))
            .expect("at least one secret");
    let github = ServiceBuilder::new()
        .layer(BodyLimitLayer::new(
            BodyLimitConfig::buffered().max_bytes(GITHUB_MAX_PAYLOAD),
        ))
        .layer(verify)
        .service(post(delivery));
    Router::new().route_service("/github", github)
}

/// Runs only for a verified delivery: the body is exactly what GitHub signed.
async fn delivery(Extension(verified): Extension<VerifiedWebhook>, body: Bytes) -> String {
    let event = verified.event_type.as_deref().unwrap_or("unknown");
    let delivery = verified.message_id.as_deref().unwrap_or("none");
    tracing::info!(
        event,
        delivery,
        bytes = body.len(),
        "verified GitHub delivery"
    );
    format!(
        "received {event} delivery {delivery} ({} bytes)",
        body.len()
    )
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned())
        .parse()
        .expect("the listen address looks like 127.0.0.1:18792");
    let secret = std::env::var("GITHUB_WEBHOOK_SECRET")
        .ok()
        .and_then(Secret::new)
        .expect("set GITHUB_WEBHOOK_SECRET to the webhook's secret");
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("binding the listen address");
    tracing::info!(listen = %listener.local_addr().unwrap(), "serving POST /github");
    axum::serve(listener, app([secret]))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .expect("serving");
}
