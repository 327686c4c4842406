//! A warp 0.4 application wrapped in this crate's layers.
//!
//! `warp::service(filter)` turns the warp app into a tower service, generic over the request body
//! (`Body + Send + Sync`, which hyper's `Incoming` is). Around it, stacked with
//! `tower::ServiceBuilder` in the contract's order: [`FixedWindowRateLimitLayer`] first (unauthenticated
//! traffic spends the same budget), then [`SharedSecretAuthLayer`], then
//! [`BodyLimitLayer`](tower_webhooks::BodyLimitLayer) in streaming mode so warp's own body filters
//! can never read more than the cap. The result is served by [`tower_webhooks::serve::serve`];
//! `warp::serve` only takes filters, not tower services.
//!
//! The filter reads the peer address that `serve` inserts with `warp::ext::optional::<SocketAddr>()`
//! (`warp::addr::remote()` only knows about warp's own server).
//!
//! ```sh
//! WEBHOOK_SECRET=demo-secret cargo run --example warp -- 127.0.0.1:18794
//! curl -sS -X POST http://127.0.0.1:18794/hooks/echo -H 'Authorization: Bearer demo-secret' \
//!   -H 'Content-Type: application/json' -d '{"hello":"warp"}'
//! ```
//!
//! - Listen address: the first argument, else `LISTEN_ADDR`, else `127.0.0.1:18794`.
//! - Secret: `WEBHOOK_SECRET`, else one generated for the run and printed once.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower::{Service, ServiceBuilder};
use tower_webhooks::serve::{ServeOptions, serve};
use tower_webhooks::{
    BodyLimitLayer, FixedWindowRateLimitLayer, SharedSecretAuthLayer, auth::SharedSecretAuthConfig,
    body_limit::BodyLimitConfig, rate_limit::RateLimitConfig, secret::Secret,
};
use warp::Filter;

const DEFAULT_LISTEN: &str = "127.0.0.1:18794";

/// The largest JSON body the echo hook accepts.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The warp application: `POST /hooks/echo` echoes a JSON body back with the caller's address.
pub fn routes() -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::post()
        .and(warp::path!("hooks" / "echo"))
        .and(warp::ext::optional::<SocketAddr>())
        .and(warp::body::json::<serde_json::Value>())
        .map(|peer: Option<SocketAddr>, received: serde_json::Value| {
            let peer = peer.map(|peer| peer.to_string());
            warp::reply::json(
                &serde_json::json!({ "ok": true, "peer": peer, "received": received }),
            )
        })
}

/// The warp application behind the rate limit, the shared secret and a streaming body cap.
pub fn app<B>(
    secret: Secret,
    rate: RateLimitConfig,
) -> impl Service<
    Request<B>,
    Response = Response<
        impl Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static,
    >,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    ServiceBuilder::new()
        .layer(FixedWindowRateLimitLayer::new(rate))
        .layer(SharedSecretAuthLayer::new(SharedSecretAuthConfig::new([
            secret,
        ])))
        .layer(BodyLimitLayer::new(
            BodyLimitConfig::streaming().max_bytes(MAX_BODY_BYTES),
        ))
        .service(warp::service(routes()))
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
        .expect("the listen address looks like 127.0.0.1:18794");
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
    tracing::info!(%listen, "serving the warp app: POST /hooks/echo");
    println!(
        "curl -sS -X POST http://{listen}/hooks/echo -H 'Authorization: Bearer {}' \\\n  -H 'Content-Type: application/json' -d '{{\"hello\":\"warp\"}}'",
        secret.expose()
    );

    let service = app(secret, RateLimitConfig::new());
    serve(listener, service, ServeOptions::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
}
