//! The harness behind `benches/callgrind.sh`: runs one case N times so callgrind can count the
//! instructions per request, a figure that does not drift with the machine's noise.
//!
//! ```sh
//! cargo run --release --example instructions -- CASE N
//! ```
//!
//! Every case builds its stack once, then per iteration builds the same kind of request and drives
//! `svc.clone().oneshot(req)` to completion, body collected. The request building is in every case,
//! so "over baseline" is the cost of the layer alone.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use prometheus_client::registry::Registry;
use serde_json::json;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_webhooks::in_flight::InFlightConfig;
use tower_webhooks::metrics::WebhookMetrics;
use tower_webhooks::taskflow::{AnyStore, TaskFlowStore};
use tower_webhooks::{
    BodyLimitLayer, FixedWindowRateLimitLayer, InFlightLimitLayer, ScrubOwnerMetadataLayer,
    SharedSecretAuthLayer, TelemetryLayer, WebhookPipeline, WebhookRouter,
    auth::SharedSecretAuthConfig,
    body::{StandaloneBody, json_response},
    body_limit::BodyLimitConfig,
    config::{Limits, ResolvedRoute},
    pipeline::RouteService,
    rate_limit::RateLimitConfig,
    scrub::ScrubConfig,
    secret::Secret,
    taskflow::MemoryStore,
};

const SECRET: &str = "whsec_4f1c2b7e9a0d3c5b8e6f1a2d4c7b9e0f";
const PATH: &str = "/plugins/webhooks/bench";

fn request(body: Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::post(PATH)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {SECRET}"))
        .body(Full::new(body))
        .unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from(([203, 0, 113, 7], 40000)));
    request
}

fn secret() -> Secret {
    Secret::new(SECRET).unwrap()
}

fn handler() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
            b"{\"ok\":true}",
        ))))
    })
}

fn run<S, B>(svc: S, body: Bytes, n: u64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..n {
            let response = svc.clone().oneshot(request(body.clone())).await.unwrap();
            assert!(response.status().is_success());
            std::hint::black_box(response.into_body().collect().await.unwrap());
        }
    });
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().expect("usage: instructions CASE N");
    let n: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: instructions CASE N");
    let small = Bytes::from_static(br#"{"action":"list_flows"}"#);
    match case.as_str() {
        "baseline" => run(handler(), small, n),
        "auth" => run(
            SharedSecretAuthLayer::new(SharedSecretAuthConfig::new([secret()])).layer(handler()),
            small,
            n,
        ),
        "body_limit" => run(
            BodyLimitLayer::new(BodyLimitConfig::buffered()).layer(service_fn(
                |_req: Request<tower_webhooks::body::BufferedBody>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                },
            )),
            Bytes::from(vec![b' '; 1024]),
            n,
        ),
        "rate_limit" => run(
            FixedWindowRateLimitLayer::new(
                RateLimitConfig::new().max_requests(u32::MAX),
            )
            .layer(handler()),
            small,
            n,
        ),
        "in_flight" => run(InFlightLimitLayer::new(InFlightConfig::new()).layer(handler()), small, n),
        "scrub" => run(
            ScrubOwnerMetadataLayer::new(ScrubConfig::new()).layer(service_fn(
                |_req: Request<Full<Bytes>>| async {
                    let envelope = json!({"ok": true, "routeId": "bench", "result": {"flow": {
                        "flowId": "7a2a2412-0bb7-45d7-a68b-b70260b257c1", "ownerKey": "agent:main:main",
                        "status": "queued", "goal": "bench", "revision": 0}}});
                    let response: Response<StandaloneBody> =
                        json_response(http::StatusCode::OK, envelope);
                    Ok::<_, Infallible>(response)
                },
            )),
            small,
            n,
        ),
        "pipeline_get_flow" => {
            let (pipeline, body) = get_flow_pipeline();
            let route = pipeline
                .route(&ResolvedRoute::new("bench", "agent:main:main", [secret()]).with_path(PATH));
            run(route, body, n);
        }
        // The same, with the in-memory store behind `AnyStore`, as the gateway runs it: what
        // picking the store at runtime costs.
        "pipeline_get_flow_any" => {
            let store = AnyStore::from(MemoryStore::with_config(Limits::default().store));
            let (pipeline, body) = get_flow_pipeline_on(store);
            let route = pipeline
                .route(&ResolvedRoute::new("bench", "agent:main:main", [secret()]).with_path(PATH));
            run(route, body, n);
        }
        // The same `get_flow` through the router, then with the telemetry layer around it: off,
        // counting metrics, and counting metrics and writing the access log (into a sink).
        "router_get_flow" => {
            let (router, body) = get_flow_router();
            run(router, body, n);
        }
        "telemetry_off_get_flow" => {
            let (router, body) = get_flow_router();
            run(TelemetryLayer::new().layer(router), body, n);
        }
        "metrics_get_flow" => {
            let (router, body) = get_flow_router();
            let metrics = WebhookMetrics::new(&mut Registry::default());
            let layer = TelemetryLayer::new().access_log(false).metrics(metrics);
            run(layer.layer(router), body, n);
        }
        "metrics_log_get_flow" => {
            let (router, body) = get_flow_router();
            let metrics = WebhookMetrics::new(&mut Registry::default());
            let subscriber = tracing_subscriber::fmt()
                .with_writer(std::io::sink)
                .with_max_level(tracing::Level::INFO)
                .finish();
            let _default = tracing::subscriber::set_default(subscriber);
            run(TelemetryLayer::new().metrics(metrics).layer(router), body, n);
        }
        other => panic!("unknown case {other}"),
    }
}

/// A pipeline whose rate limit a run never reaches, holding one flow, and a `get_flow` body for it.
fn get_flow_pipeline() -> (WebhookPipeline<MemoryStore>, Bytes) {
    get_flow_pipeline_on(MemoryStore::with_config(Limits::default().store))
}

fn get_flow_pipeline_on<St: TaskFlowStore>(store: St) -> (WebhookPipeline<St>, Bytes) {
    let limits = Limits {
        rate_limit: RateLimitConfig::new().max_requests(u32::MAX),
        ..Limits::default()
    };
    let pipeline = WebhookPipeline::new(store, limits);
    let route =
        pipeline.route(&ResolvedRoute::new("bench", "agent:main:main", [secret()]).with_path(PATH));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let created = rt.block_on(async {
        let body = Bytes::from_static(br#"{"action":"create_flow","goal":"bench"}"#);
        let response = route.oneshot(request(body)).await.unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    });
    let created: serde_json::Value = serde_json::from_slice(&created).unwrap();
    let id = created["result"]["flow"]["flowId"].as_str().unwrap();
    let body = Bytes::from(json!({"action": "get_flow", "flowId": id}).to_string());
    (pipeline, body)
}

fn get_flow_router() -> (WebhookRouter<RouteService<MemoryStore>>, Bytes) {
    let (pipeline, body) = get_flow_pipeline();
    let routes = [ResolvedRoute::new("bench", "agent:main:main", [secret()]).with_path(PATH)];
    (pipeline.router(&routes), body)
}
