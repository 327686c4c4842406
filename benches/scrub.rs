//! ScrubOwnerMetadata beside its nearest peer and two baselines, on a `get_flow` envelope.
//!
//! Per iteration: `svc.clone().oneshot(req)` on a stack built once, then the body collected to
//! bytes, so every variant pays for producing the bytes it would send. The handlers clone a
//! prepared envelope: a `serde_json::Value` ("structured"), or a `JsonDocument` whose flow is a
//! typed record ("typed"). Neither is the action service's own answer, which the layer passes on
//! unparsed (measured in the pipeline bench): from any other handler both are read, parsed,
//! scrubbed and re-serialised like the bytes.
//!
//! ```text
//! cargo bench --bench scrub -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_http::sensitive_headers::SetSensitiveHeadersLayer;
use tower_webhooks::json::JsonDocument;
use tower_webhooks::{
    ScrubOwnerMetadataLayer,
    body::json_response,
    scrub::ScrubConfig,
    taskflow::{Flow, FlowStatus, NotifyPolicy, SyncMode},
};

fn get_flow_envelope() -> Value {
    json!({
        "ok": true,
        "routeId": "zapier",
        "result": {"flow": {
            "flowId": "7f1d2c1e-5b7a-4c62-9a51-0d3f0b6b2e11",
            "syncMode": "managed",
            "ownerKey": "agent:main:webhook-owner",
            "controllerId": "webhooks/zapier",
            "revision": 4,
            "status": "waiting",
            "notifyPolicy": "done_only",
            "goal": "Triage the inbound lead and draft a reply",
            "currentStep": "await-approval",
            "stateJson": {"lead": {"id": 4411, "score": 0.82}, "ownerKey": "caller"},
            "waitJson": {"kind": "approval", "timeoutMs": 3_600_000},
            "createdAt": 1_763_800_000_000_u64,
            "updatedAt": 1_763_800_123_000_u64
        }}
    })
}

/// The same envelope as the action service builds it: the flow a typed record.
fn typed_get_flow_envelope() -> JsonDocument {
    let flow = Flow {
        flow_id: "7f1d2c1e-5b7a-4c62-9a51-0d3f0b6b2e11".parse().unwrap(),
        sync_mode: SyncMode::Managed,
        owner_key: "agent:main:webhook-owner".into(),
        controller_id: "webhooks/zapier".into(),
        revision: 4,
        status: FlowStatus::Waiting,
        notify_policy: NotifyPolicy::DoneOnly,
        goal: "Triage the inbound lead and draft a reply".into(),
        current_step: Some("await-approval".into()),
        blocked_task_id: None,
        blocked_summary: None,
        state_json: Some(json!({"lead": {"id": 4411, "score": 0.82}, "ownerKey": "caller"})),
        wait_json: Some(json!({"kind": "approval", "timeoutMs": 3_600_000})),
        cancel_requested_at: None,
        created_at: 1_763_800_000_000,
        updated_at: 1_763_800_123_000,
        ended_at: None,
    };
    JsonDocument::object([
        ("ok", true.into()),
        ("routeId", "zapier".into()),
        ("result", JsonDocument::object([("flow", flow.into())])),
    ])
}

fn request() -> Request<Empty<Bytes>> {
    Request::new(Empty::new())
}

/// The scrub a hand-written baseline would do: the SPEC positions, nothing configurable.
fn scrub_by_hand(value: &mut Value) {
    let Some(result) = value.get_mut("result").and_then(Value::as_object_mut) else {
        return;
    };
    let strip = |v: &mut Value, keys: &[&str]| {
        if let Some(map) = v.as_object_mut() {
            for key in keys {
                map.shift_remove(*key);
            }
        }
    };
    let flow_keys = ["ownerKey", "requesterOrigin", "chainId"];
    let task_keys = [
        "ownerKey",
        "requesterSessionKey",
        "requesterAgentId",
        "metadata",
    ];
    for (name, keys, many) in [
        ("flow", &flow_keys[..], false),
        ("current", &flow_keys[..], false),
        ("flows", &flow_keys[..], true),
        ("task", &task_keys[..], false),
        ("tasks", &task_keys[..], true),
    ] {
        match (result.get_mut(name), many) {
            (Some(Value::Array(items)), true) => items.iter_mut().for_each(|v| strip(v, keys)),
            (Some(v), false) => strip(v, keys),
            _ => {}
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let envelope = get_flow_envelope();
    let raw = Bytes::from(serde_json::to_vec(&envelope).unwrap());

    let structured = {
        let envelope = envelope.clone();
        service_fn(move |_req: Request<Empty<Bytes>>| {
            let response = json_response::<Empty<Bytes>>(StatusCode::OK, envelope.clone());
            async move { Ok::<_, Infallible>(response) }
        })
    };
    let typed = {
        let envelope = typed_get_flow_envelope();
        // A typed record serialises as its owner-free view: the scrubbed envelope.
        let mut scrubbed = get_flow_envelope();
        ScrubConfig::new().scrub(&mut scrubbed);
        assert_eq!(envelope.to_value(), scrubbed);
        service_fn(move |_req: Request<Empty<Bytes>>| {
            let response = json_response::<Empty<Bytes>>(StatusCode::OK, envelope.clone());
            async move { Ok::<_, Infallible>(response) }
        })
    };
    let bytes = service_fn(move |_req: Request<Empty<Bytes>>| {
        let mut response = Response::new(Full::new(raw.clone()));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(raw.len()));
        async move { Ok::<_, Infallible>(response) }
    });

    let mut group = c.benchmark_group("scrub_get_flow");

    macro_rules! case {
        ($name:expr, $svc:expr) => {{
            let svc = $svc;
            group.bench_function($name, |b| {
                b.to_async(&rt).iter_batched(
                    request,
                    |req| {
                        let svc = svc.clone();
                        async move {
                            let response = svc.oneshot(req).await.unwrap();
                            black_box(response.into_body().collect().await.unwrap().to_bytes())
                        }
                    },
                    BatchSize::SmallInput,
                )
            });
        }};
    }

    case!("bare_service_fn/structured", structured.clone());
    case!(
        "ours/structured",
        ServiceBuilder::new()
            .layer(ScrubOwnerMetadataLayer::new(ScrubConfig::new()))
            .service(structured.clone())
    );
    case!("bare_service_fn/typed", typed.clone());
    case!(
        "ours/typed",
        ServiceBuilder::new()
            .layer(ScrubOwnerMetadataLayer::new(ScrubConfig::new()))
            .service(typed.clone())
    );
    case!("bare_service_fn/bytes", bytes.clone());
    case!(
        "ours/buffered",
        ServiceBuilder::new()
            .layer(ScrubOwnerMetadataLayer::new(ScrubConfig::new()))
            .service(bytes.clone())
    );
    case!(
        "baseline/buffer_parse_serialise",
        bytes
            .clone()
            .and_then(|response: Response<Full<Bytes>>| async move {
                let (mut parts, body) = response.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                let mut value: Value = serde_json::from_slice(&bytes).unwrap();
                scrub_by_hand(&mut value);
                let out = Bytes::from(serde_json::to_vec(&value).unwrap());
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
                Ok::<_, Infallible>(Response::from_parts(parts, Full::new(out)))
            })
    );
    case!(
        "tower_http/set_sensitive_headers",
        ServiceBuilder::new()
            .layer(SetSensitiveHeadersLayer::new([AUTHORIZATION, SET_COOKIE]))
            .service(bytes.clone())
    );
    group.finish();

    // The scrub alone, on a value cloned outside the timed part.
    let config = ScrubConfig::new();
    c.bench_function("scrub_get_flow/ScrubConfig::scrub", |b| {
        b.iter_batched_ref(
            || envelope.clone(),
            |value| config.scrub(value),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("scrub_get_flow/by_hand", |b| {
        b.iter_batched_ref(|| envelope.clone(), scrub_by_hand, BatchSize::SmallInput)
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
