//! The webhook pipeline inside an existing axum 0.8 application, beside its other routes.
//!
//! The app has a `GET /health` handler of its own. The webhook route is mounted with
//! `Router::route_service` at its path: the pipeline's service is generic over the request body,
//! answers every rejection as a response (`Error = Infallible`), so it goes in as is, with no
//! `HandleErrorLayer` and no body conversion. axum's `ConnectInfo<SocketAddr>` gives the limiters
//! the peer address (crate feature `axum`, on by default).
//!
//! ```sh
//! WEBHOOK_SECRET=demo-secret cargo run --example axum -- 127.0.0.1:18791
//! curl -sS http://127.0.0.1:18791/health
//! curl -sS -X POST http://127.0.0.1:18791/plugins/webhooks/zap \
//!   -H 'Authorization: Bearer demo-secret' -H 'Content-Type: application/json' \
//!   -d '{"action":"create_flow","goal":"triage the inbox"}'
//! ```
//!
//! - Listen address: the first argument, else `LISTEN_ADDR`, else `127.0.0.1:18791`.
//! - Secret: `WEBHOOK_SECRET`, else one generated for the run and printed once.
//!
//! `route_service` matches the exact path only: `/plugins/webhooks/zap/` is axum's 404. For many
//! routes, or to accept the trailing-slash spelling the contract normalises away, give axum the
//! whole [`WebhookRouter`] as its fallback instead; [`app_with_fallback`] does that. Paths neither
//! axum nor a webhook route owns then answer the router's `404` `Not Found`.
//!
//! [`WebhookRouter`]: tower_webhooks::WebhookRouter

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use tower_webhooks::{
    WebhookPipeline,
    config::{Limits, ResolvedRoute},
    secret::Secret,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:18791";

/// The route id; the route is served at `/plugins/webhooks/zap`.
pub const ROUTE_ID: &str = "zap";

/// The application: `GET /health` (plain axum) and the webhook route (the full pipeline).
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: without a peer address the
/// limiters cannot tell clients apart.
pub fn app(secret: Secret) -> Router {
    let pipeline = WebhookPipeline::in_memory(Limits::default());
    let route = ResolvedRoute::new(ROUTE_ID, "agent:main:main", [secret]);
    Router::new()
        .route("/health", get(health))
        .route_service(&route.path, pipeline.route(&route))
}

/// The same application with the webhook routes as axum's fallback: every path axum does not
/// route goes to the [`WebhookRouter`](tower_webhooks::WebhookRouter), which normalises it (one
/// trailing `/` removed) and picks the route.
pub fn app_with_fallback(secret: Secret) -> Router {
    let pipeline = WebhookPipeline::in_memory(Limits::default());
    let routes = [ResolvedRoute::new(ROUTE_ID, "agent:main:main", [secret])];
    Router::new()
        .route("/health", get(health))
        .fallback_service(pipeline.router(&routes))
}

async fn health() -> &'static str {
    "ok"
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LISTEN_ADDR").ok())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned())
        .parse()
        .expect("the listen address looks like 127.0.0.1:18791");
    let secret = std::env::var("WEBHOOK_SECRET")
        .ok()
        .and_then(Secret::new)
        .unwrap_or_else(|| {
            let secret = Secret::generate();
            println!(
                "No WEBHOOK_SECRET set; generated one for this run: {}",
                secret.expose()
            );
            secret
        });

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("binding the listen address");
    let listen = listener
        .local_addr()
        .expect("a bound socket has an address");
    tracing::info!(%listen, "serving GET /health and POST /plugins/webhooks/{ROUTE_ID}");
    println!(
        "curl -sS -X POST http://{listen}/plugins/webhooks/{ROUTE_ID} \\\n  -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\\n  -d '{{\"action\":\"create_flow\",\"goal\":\"triage the inbox\"}}'",
        secret.expose()
    );

    let app = app(secret).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .expect("serving");
}
