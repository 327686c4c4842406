//! The full pipeline beside the same stack assembled from the peers, in one run.
//!
//! Ours: `WebhookPipeline::route` (RequirePost, FixedWindowRateLimit, RequireJson, InFlightLimit,
//! SharedSecretAuth, BodyLimit, ScrubOwnerMetadata, TaskFlowActionService on MemoryStore).
//! The peer stack: an axum `Router` with tower_governor, tower's `GlobalConcurrencyLimit` + `LoadShed`
//! (behind the `HandleErrorLayer` they need), tower-http's bearer check and `RequestBodyLimit`, and a
//! `Json` handler over a `DashMap` answering the same envelope. It does less than ours (no scrubbing,
//! no validation, no owner scoping, no per-key limits), so it is a floor, not a twin.
//!
//! Each iteration is `svc.clone().oneshot(req)` plus collecting the response body, with the request
//! built outside the timed part.
//!
//! `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, State};
use axum::routing::post;
use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dashmap::DashMap;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tower::Layer;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;
use tower_http::limit::RequestBodyLimitLayer;
#[allow(deprecated)]
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_webhooks::metrics::WebhookMetrics;
use tower_webhooks::{
    TelemetryLayer, WebhookPipeline,
    config::{Limits, ResolvedRoute},
    rate_limit::RateLimitConfig,
    secret::Secret,
    taskflow::{MemoryStore, MemoryStoreConfig},
};

const SECRET: &str = "whsec_4f1c2b7e9a0d3c5b8e6f1a2d4c7b9e0f";
const PATH: &str = "/plugins/webhooks/bench";

fn request<B: From<Bytes>>(body: &Value) -> Request<B> {
    let peer = SocketAddr::from(([203, 0, 113, 7], 40000));
    let mut request = Request::post(PATH)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {SECRET}"))
        .body(B::from(Bytes::from(body.to_string())))
        .unwrap();
    request.extensions_mut().insert(peer);
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

async fn drive<S, ReqB, ResB>(svc: S, request: Request<ReqB>) -> u16
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
    ResB: Body,
    ResB::Error: std::fmt::Debug,
{
    let response = svc.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    black_box(response.into_body().collect().await.unwrap());
    status
}

fn bench<S, ReqB, ResB>(c: &mut Criterion, rt: &Runtime, name: &str, svc: S, body: Value)
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S::Error: std::fmt::Debug,
    ReqB: From<Bytes>,
    ResB: Body,
    ResB::Error: std::fmt::Debug,
{
    assert_eq!(
        rt.block_on(drive(svc.clone(), request::<ReqB>(&body))),
        200,
        "{name}"
    );
    c.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            || request::<ReqB>(&body),
            |req| drive(svc.clone(), req),
            BatchSize::SmallInput,
        )
    });
}

type Flows = Arc<DashMap<String, Value>>;

async fn peer_handler(
    State(flows): State<Flows>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let result = match body["action"].as_str() {
        Some("get_flow") => {
            let flow = body["flowId"]
                .as_str()
                .and_then(|id| flows.get(id).map(|f| f.clone()));
            json!({ "flow": flow })
        }
        Some("list_flows") => {
            let mut listed: Vec<Value> = flows.iter().map(|f| f.value().clone()).collect();
            listed.sort_by_key(|f| std::cmp::Reverse(f["createdAt"].as_u64()));
            json!({ "flows": listed })
        }
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            let flow = json!({"flowId": id, "syncMode": "managed", "controllerId": "webhooks/bench",
                "revision": 0, "status": "queued", "notifyPolicy": "done_only",
                "goal": body["goal"], "createdAt": 1, "updatedAt": 1});
            flows.insert(id, flow.clone());
            json!({ "created": true, "flow": flow })
        }
    };
    axum::Json(json!({ "ok": true, "routeId": "bench", "result": result }))
}

/// What the peer stack answers when `LoadShed` refuses: its error must become a response somewhere.
async fn overloaded(_: BoxError) -> StatusCode {
    StatusCode::TOO_MANY_REQUESTS
}

fn peer_stack() -> (Router, Flows) {
    let flows: Flows = Arc::new(DashMap::new());
    let governor = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .key_extractor(PeerIpKeyExtractor)
        .finish()
        .unwrap();
    #[allow(deprecated)]
    let bearer = ValidateRequestHeaderLayer::bearer(SECRET);
    let layers = ServiceBuilder::new()
        .layer(GovernorLayer::new(governor))
        .layer(HandleErrorLayer::<_, ()>::new(overloaded))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(8))
        .layer(bearer)
        // `bearer` needs a `Default` response body and `RequestBodyLimit`'s is not: users of this
        // stack box it back into axum's body, as here.
        .map_response(
            |response: Response<tower_http::limit::ResponseBody<axum::body::Body>>| {
                response.map(axum::body::Body::new)
            },
        )
        .layer(RequestBodyLimitLayer::new(262_144));
    let router = Router::new()
        .route(PATH, post(peer_handler))
        .with_state(Arc::clone(&flows))
        .layer(layers);
    (router, flows)
}

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let baseline = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
            b"{\"ok\":true}",
        ))))
    });
    bench::<_, Full<Bytes>, _>(c, &rt, "baseline service_fn", baseline, json!({}));

    // Limits that a long run never reaches: the bench measures the pipeline, not its 429.
    let limits = Limits {
        rate_limit: RateLimitConfig::new().max_requests(u32::MAX),
        ..Limits::default()
    };
    // No flow cap: a million creates would otherwise be answered 507 after the first 10,000.
    let store = MemoryStore::with_config(MemoryStoreConfig::new().max_flows_per_owner(None));
    let ours = WebhookPipeline::new(store, limits);
    let route = ours.route(
        &ResolvedRoute::new("bench", "agent:main:main", [Secret::new(SECRET).unwrap()])
            .with_path(PATH),
    );
    let mut ids = Vec::new();
    for i in 0..10 {
        let body = rt.block_on(async {
            let response = route
                .clone()
                .oneshot(request::<Full<Bytes>>(
                    &json!({"action":"create_flow","goal":format!("goal {i}")}),
                ))
                .await
                .unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        });
        let value: Value = serde_json::from_slice(&body).unwrap();
        ids.push(
            value["result"]["flow"]["flowId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let (peer, _flows) = peer_stack();
    let mut peer_ids = Vec::new();
    for i in 0..10 {
        let body = rt.block_on(async {
            let response = peer
                .clone()
                .oneshot(request::<axum::body::Body>(
                    &json!({"action":"create_flow","goal":format!("goal {i}")}),
                ))
                .await
                .unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        });
        let value: Value = serde_json::from_slice(&body).unwrap();
        peer_ids.push(
            value["result"]["flow"]["flowId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }

    bench::<_, Full<Bytes>, _>(
        c,
        &rt,
        "ours get_flow",
        route.clone(),
        json!({"action":"get_flow","flowId":ids[0]}),
    );
    telemetry(c, &rt, &ours, &ids[0]);
    bench::<_, axum::body::Body, _>(
        c,
        &rt,
        "peer get_flow",
        peer.clone(),
        json!({"action":"get_flow","flowId":peer_ids[0]}),
    );
    bench::<_, Full<Bytes>, _>(
        c,
        &rt,
        "ours list_flows (10)",
        route.clone(),
        json!({"action":"list_flows"}),
    );
    bench::<_, axum::body::Body, _>(
        c,
        &rt,
        "peer list_flows (10)",
        peer.clone(),
        json!({"action":"list_flows"}),
    );
    floor(c, &rt, &ids[0]);
    // Creates last: they grow the stores, which the reads above must not see.
    bench::<_, Full<Bytes>, _>(
        c,
        &rt,
        "ours create_flow",
        route,
        json!({"action":"create_flow","goal":"bench"}),
    );
    bench::<_, axum::body::Body, _>(
        c,
        &rt,
        "peer create_flow",
        peer,
        json!({"action":"create_flow","goal":"bench"}),
    );
}

/// What the telemetry layer adds to a `get_flow` through the router: off (no metrics, no access
/// log subscriber), metrics only, and metrics plus an access log formatted into a sink.
fn telemetry(c: &mut Criterion, rt: &Runtime, ours: &WebhookPipeline<MemoryStore>, flow_id: &str) {
    let route = ResolvedRoute::new("bench", "agent:main:main", [Secret::new(SECRET).unwrap()])
        .with_path(PATH);
    let router = ours.router(&[route]);
    let body = json!({"action":"get_flow","flowId":flow_id});
    bench::<_, Full<Bytes>, _>(c, rt, "ours get_flow, router", router.clone(), body.clone());
    let off = TelemetryLayer::new().layer(router.clone());
    bench::<_, Full<Bytes>, _>(
        c,
        rt,
        "ours get_flow, router + telemetry off",
        off,
        body.clone(),
    );
    let mut registry = Registry::default();
    let metrics = WebhookMetrics::new(&mut registry);
    let counted = TelemetryLayer::new()
        .access_log(false)
        .metrics(metrics.clone())
        .layer(router.clone());
    bench::<_, Full<Bytes>, _>(
        c,
        rt,
        "ours get_flow, router + metrics",
        counted,
        body.clone(),
    );
    // The bench runtime is current-thread: a thread-local subscriber sees every event.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let logged = TelemetryLayer::new().metrics(metrics).layer(router);
    bench::<_, Full<Bytes>, _>(
        c,
        rt,
        "ours get_flow, router + metrics + access log",
        logged,
        body,
    );
}

/// What any implementation of the contract pays on a `get_flow` besides the middleware, measured
/// alone: reading the request JSON, writing the response JSON, and the SHA-256 of the presented
/// secret. Their sum is a floor under the full pipeline's figure.
fn floor(c: &mut Criterion, rt: &Runtime, flow_id: &str) {
    use sha2::Digest;
    use tower_webhooks::json::JsonDocument;
    use tower_webhooks::taskflow::{Action, TaskFlowStore};

    let request = serde_json::to_vec(&json!({"action": "get_flow", "flowId": flow_id})).unwrap();
    c.bench_function("floor: parse and validate the request", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_slice(black_box(&request)).unwrap();
            black_box(Action::parse(&value).unwrap())
        })
    });

    let store = MemoryStore::new();
    let flow = rt
        .block_on(store.create_flow(
            "agent:main:main",
            tower_webhooks::taskflow::NewFlow::new("main", "goal 0"),
        ))
        .unwrap();
    c.bench_function("floor: write the response envelope", |b| {
        b.iter(|| {
            let result = JsonDocument::object([("flow", black_box(&flow).clone().into())]);
            let envelope = JsonDocument::object([
                ("ok", true.into()),
                ("routeId", "bench".into()),
                ("result", result),
            ]);
            black_box(envelope.to_vec())
        })
    });

    c.bench_function("floor: SHA-256 of the secret", |b| {
        b.iter(|| black_box(sha2::Sha256::digest(black_box(SECRET.as_bytes()))))
    });
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
