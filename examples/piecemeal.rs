//! Two layers of this crate guarding a handler that has nothing to do with TaskFlows.
//!
//! A "deploy" hook answers a small JSON document. In front of it:
//! [`FixedWindowRateLimitLayer`] (so unauthenticated traffic spends the same budget, as in SPEC §2)
//! and then [`SharedSecretAuthLayer`]. Both are stacked with `tower::ServiceBuilder` over a
//! `service_fn` and served by the crate's own accept loop, [`tower_webhooks::serve::serve`],
//! which puts the peer address where the limiters look for it.
//!
//! ```sh
//! WEBHOOK_SECRET=demo-secret cargo run --example piecemeal -- 127.0.0.1:18793
//! curl -sS -X POST http://127.0.0.1:18793/deploy -H 'Authorization: Bearer demo-secret'
//! ```
//!
//! - Listen address: the first argument, else `LISTEN_ADDR`, else `127.0.0.1:18793`.
//! - Secret: `WEBHOOK_SECRET`, else one generated for the run and printed once.
//! - The quota is the contract's default (120 requests per 60 s per path and client IP); the 121st
//!   answers `429` with `Retry-After`. A wrong secret answers `401` `unauthorized`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Body;
use http_body_util::Full;
use tower::{Service, ServiceBuilder, service_fn};
use tower_webhooks::serve::{ServeOptions, serve};
use tower_webhooks::{
    FixedWindowRateLimitLayer, SharedSecretAuthLayer, auth::SharedSecretAuthConfig,
    rate_limit::RateLimitConfig, secret::Secret,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:18793";

/// The deploy hook: guarded by a fixed-window rate limit of `rate`, then by `secret`.
///
/// Generic over the request body, so the same stack serves `hyper::body::Incoming` here and any
/// body in a test. The handler never reads the body; a handler that does would add a
/// [`BodyLimitLayer`](tower_webhooks::BodyLimitLayer) after auth.
pub fn app<B>(
    secret: Secret,
    rate: RateLimitConfig,
) -> impl Service<
    Request<B>,
    Response = Response<impl Body<Data = Bytes, Error = Infallible> + Send + 'static>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static
where
    B: Send + 'static,
{
    ServiceBuilder::new()
        .layer(FixedWindowRateLimitLayer::new(rate))
        .layer(SharedSecretAuthLayer::new(SharedSecretAuthConfig::new([
            secret,
        ])))
        .service(service_fn(deploy))
}

/// Only authenticated, in-quota requests get here.
async fn deploy<B>(request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let peer = request.extensions().get::<SocketAddr>().copied();
    let (status, body) = if request.uri().path() == "/deploy" {
        tracing::info!(?peer, "deploy requested");
        (200, serde_json::json!({ "ok": true, "deploy": "queued" }))
    } else {
        (
            404,
            serde_json::json!({ "ok": false, "error": "no such hook" }),
        )
    };
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a static header is valid");
    Ok(response)
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
        .expect("the listen address looks like 127.0.0.1:18793");
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
    tracing::info!(%listen, "serving the deploy hook on POST /deploy");
    println!(
        "curl -sS -X POST http://{listen}/deploy -H 'Authorization: Bearer {}'",
        secret.expose()
    );

    let service = app(secret, RateLimitConfig::new());
    serve(listener, service, ServeOptions::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
}
