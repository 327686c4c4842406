//! The webhook routes on raw hyper 1 and hyper-util, with an accept loop of your own.
//!
//! [`tower_webhooks::serve::serve`] does all of this (plus a header-read timeout and graceful
//! shutdown). This example is for people who already own their server loop: what it must do for
//! the pipeline is one thing, put the connection's peer [`SocketAddr`] into every request's
//! extensions, where the rate limit, the in-flight limit and the auth lockout read the client IP.
//! Without it every client counts as `0.0.0.0`: one shared budget, one shared lockout.
//!
//! ```sh
//! WEBHOOK_SECRET=demo-secret cargo run --example hyper -- 127.0.0.1:18792
//! curl -sS -X POST http://127.0.0.1:18792/plugins/webhooks/zap \
//!   -H 'Authorization: Bearer demo-secret' -H 'Content-Type: application/json' \
//!   -d '{"action":"create_flow","goal":"triage the inbox"}'
//! ```
//!
//! - Listen address: the first argument, else `LISTEN_ADDR`, else `127.0.0.1:18792`.
//! - Secret: `WEBHOOK_SECRET`, else one generated for the run and printed once.
//! - Serves a [`WebhookRouter`] from [`WebhookPipeline::router`]: unknown paths answer `404`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder};
use tower_webhooks::{
    WebhookPipeline, WebhookRouter,
    config::{Limits, ResolvedRoute},
    pipeline::RouteService,
    secret::Secret,
    taskflow::MemoryStore,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:18792";

/// The route id; the route is served at `/plugins/webhooks/zap`.
pub const ROUTE_ID: &str = "zap";

/// The webhook router: one route, `zap`, over an in-memory TaskFlow store.
pub fn app(secret: Secret) -> WebhookRouter<RouteService<MemoryStore>> {
    let pipeline = WebhookPipeline::in_memory(Limits::default());
    pipeline.router(&[ResolvedRoute::new(ROUTE_ID, "agent:main:main", [secret])])
}

/// Accepts connections on `listener` for ever, serving each with `service` over HTTP/1.1 or HTTP/2.
///
/// The one thing the pipeline needs from a server loop: the peer address in every request's
/// extensions (a `tower::ServiceBuilder::map_request` does it per connection).
pub async fn accept_loop<S, B>(listener: TcpListener, service: S)
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: back off instead of spinning, and keep serving.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = ServiceBuilder::new()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(peer);
                request
            })
            .service(service.clone());
        // TowerToHyperService clones the service and drives `poll_ready` then `call` per request.
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
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
        .expect("the listen address looks like 127.0.0.1:18792");
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

    let listener = TcpListener::bind(listen)
        .await
        .expect("binding the listen address");
    let listen = listener
        .local_addr()
        .expect("a bound socket has an address");
    tracing::info!(%listen, "serving POST /plugins/webhooks/{ROUTE_ID}");
    println!(
        "curl -sS -X POST http://{listen}/plugins/webhooks/{ROUTE_ID} \\\n  -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\\n  -d '{{\"action\":\"create_flow\",\"goal\":\"triage the inbox\"}}'",
        secret.expose()
    );

    // No graceful drain here (see `tower_webhooks::serve` for one): Ctrl-C stops at once.
    tokio::select! {
        () = accept_loop(listener, app(secret)) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
    }
}
