//! ScrubOwnerMetadata and ScrubConfig::scrub (SPEC §4).

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_webhooks::{
    ResponseBody, ScrubOwnerMetadata, ScrubOwnerMetadataLayer,
    body::{StandaloneBody, json_response},
    scrub::{ScrubConfig, ScrubPath},
};

const OWNER: &str = "agent:main:owner-session-4f7c";

/// A flow as the store keeps it, with every internal field present.
fn flow(id: &str) -> Value {
    json!({
        "flowId": id,
        "syncMode": "managed",
        "ownerKey": OWNER,
        "requesterOrigin": {"channel": "webhook", "sessionKey": OWNER},
        "chainId": "chain-1",
        "controllerId": "webhooks/zapier",
        "revision": 3,
        "status": "waiting",
        "stateJson": {"ownerKey": "caller-owned", "z": 1, "a": [1, 2]},
        "waitJson": {"chainId": "caller", "ownerKey": null},
        "createdAt": 1,
        "updatedAt": 2
    })
}

fn task(id: &str) -> Value {
    json!({
        "taskId": id,
        "runtime": "subagent",
        "ownerKey": OWNER,
        "requesterSessionKey": OWNER,
        "requesterAgentId": "main",
        "metadata": {"secret": OWNER},
        "parentFlowId": "f1",
        "scopeKind": "session",
        "task": "summarise",
        "status": "queued"
    })
}

fn envelope() -> Value {
    json!({
        "ok": true,
        "routeId": "zapier",
        "result": {
            "flow": flow("f1"),
            "flows": [flow("f2"), flow("f3")],
            "current": flow("f4"),
            "task": task("t1"),
            "tasks": [task("t2")]
        }
    })
}

fn scrubbed_flow(id: &str) -> Value {
    json!({
        "flowId": id,
        "syncMode": "managed",
        "controllerId": "webhooks/zapier",
        "revision": 3,
        "status": "waiting",
        "stateJson": {"ownerKey": "caller-owned", "z": 1, "a": [1, 2]},
        "waitJson": {"chainId": "caller", "ownerKey": null},
        "createdAt": 1,
        "updatedAt": 2
    })
}

fn scrubbed_task(id: &str) -> Value {
    json!({
        "taskId": id,
        "runtime": "subagent",
        "parentFlowId": "f1",
        "scopeKind": "session",
        "task": "summarise",
        "status": "queued"
    })
}

fn scrubbed_envelope() -> Value {
    json!({
        "ok": true,
        "routeId": "zapier",
        "result": {
            "flow": scrubbed_flow("f1"),
            "flows": [scrubbed_flow("f2"), scrubbed_flow("f3")],
            "current": scrubbed_flow("f4"),
            "task": scrubbed_task("t1"),
            "tasks": [scrubbed_task("t2")]
        }
    })
}

/// A body of several frames with no size hint.
fn streamed(
    chunks: Vec<Bytes>,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
    StreamBody::new(futures_util::stream::iter(
        chunks.into_iter().map(|c| Ok(Frame::data(c))),
    ))
}

fn request() -> Request<Empty<Bytes>> {
    Request::new(Empty::new())
}

/// A handler answering `body` as raw bytes with `content_type`.
fn raw(
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> impl tower::Service<
    Request<Empty<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    let body: Bytes = body.into();
    service_fn(move |_req: Request<Empty<Bytes>>| {
        let body = body.clone();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", content_type)
                    .header("content-length", body.len())
                    .body(Full::new(body))
                    .unwrap(),
            )
        }
    })
}

async fn collect<B>(response: Response<ResponseBody<B>>) -> (http::response::Parts, Bytes)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

/// Compares serialised forms, so member order counts.
fn same_order(bytes: &[u8], expected: &Value) {
    assert_eq!(
        std::str::from_utf8(bytes).unwrap(),
        serde_json::to_string(expected).unwrap()
    );
}

fn assert_fails_closed(parts: &http::response::Parts, bytes: &[u8]) {
    assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(parts.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(bytes, b"Internal Server Error");
}

/// A structured body from a handler other than the TaskFlow service is not known to be clean: it
/// is scrubbed like any JSON body.
#[tokio::test]
async fn structured_envelope_is_scrubbed() {
    let svc = ScrubOwnerMetadata::new(
        service_fn(|_req: Request<Empty<Bytes>>| async {
            Ok::<_, Infallible>(json_response::<Empty<Bytes>>(StatusCode::OK, envelope()))
        }),
        ScrubConfig::new(),
    );
    let response = svc.oneshot(request()).await.unwrap();
    let len = serde_json::to_vec(&scrubbed_envelope()).unwrap().len();
    assert_eq!(response.body().size_hint().exact(), Some(len as u64));
    assert_eq!(
        response.headers()["content-length"],
        len.to_string().as_str()
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let (parts, bytes) = collect(response).await;
    assert_eq!(parts.status, StatusCode::OK);
    same_order(&bytes, &scrubbed_envelope());
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(!text.contains(OWNER), "{text}");
    // Caller JSON keeps its `ownerKey`/`chainId` members, byte for byte.
    assert_eq!(
        text.matches(r#""stateJson":{"ownerKey":"caller-owned","z":1,"a":[1,2]}"#)
            .count(),
        4
    );
    assert_eq!(
        text.matches(r#""waitJson":{"chainId":"caller","ownerKey":null}"#)
            .count(),
        4
    );
}

#[tokio::test]
async fn structured_body_wrapped_by_another_layer_is_scrubbed() {
    let svc = ScrubOwnerMetadata::new(
        service_fn(|_req: Request<Empty<Bytes>>| async {
            let inner = json_response::<Empty<Bytes>>(StatusCode::OK, envelope());
            let mut response = inner.map(ResponseBody::new);
            // A length computed for the unscrubbed value must not survive.
            response
                .headers_mut()
                .insert("content-length", http::HeaderValue::from(99_999));
            Ok::<_, Infallible>(response)
        }),
        ScrubConfig::new(),
    );
    let response = svc.oneshot(request()).await.unwrap();
    let len = serde_json::to_vec(&scrubbed_envelope()).unwrap().len();
    assert_eq!(
        response.headers()["content-length"],
        len.to_string().as_str()
    );
    assert_eq!(response.body().size_hint().exact(), Some(len as u64));
    let (_, bytes) = collect(response).await;
    same_order(&bytes, &scrubbed_envelope());
}

#[tokio::test]
async fn structured_value_in_the_outer_wrapper_is_scrubbed() {
    let svc = ScrubOwnerMetadata::new(
        service_fn(|_req: Request<Empty<Bytes>>| async {
            Ok::<_, Infallible>(json_response::<StandaloneBody>(StatusCode::OK, envelope()))
        }),
        ScrubConfig::new(),
    );
    let response = svc.oneshot(request()).await.unwrap();
    let (_, bytes) = collect(response).await;
    same_order(&bytes, &scrubbed_envelope());
}

/// The shared document of `json_response` is trusted only while the body that goes out holds it:
/// a handler that swaps the body on the way (keeping the parts, extensions included) gets its new
/// body read and scrubbed like any other.
#[tokio::test]
async fn a_structured_body_swapped_on_the_way_is_read_like_any_body() {
    let svc = ScrubOwnerMetadata::new(
        service_fn(|_req: Request<Empty<Bytes>>| async {
            let structured = json_response::<Empty<Bytes>>(StatusCode::OK, json!({"n": 1}));
            let leaky = Bytes::from(serde_json::to_vec(&envelope()).unwrap());
            Ok::<_, Infallible>(structured.map(|_| Full::new(leaky)))
        }),
        ScrubConfig::new(),
    );
    let response = svc.oneshot(request()).await.unwrap();
    let (parts, bytes) = collect(response).await;
    assert_eq!(parts.status, StatusCode::OK);
    same_order(&bytes, &scrubbed_envelope());
    assert_eq!(
        parts.headers["content-length"],
        bytes.len().to_string().as_str()
    );
}

/// A body that keeps a drained structured body alive and sends its bytes again: the shared
/// document is still held, but it was serialised already, so it is no longer what goes out.
struct Replay {
    _drained: StandaloneBody,
    bytes: Option<Bytes>,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.get_mut().bytes.take().map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test]
async fn a_structured_body_already_serialised_is_read_like_any_body() {
    let svc = ScrubOwnerMetadata::new(
        service_fn(|_req: Request<Empty<Bytes>>| async {
            let (parts, mut body) =
                json_response::<Empty<Bytes>>(StatusCode::OK, envelope()).into_parts();
            let bytes = (&mut body).collect().await.unwrap().to_bytes();
            let replay = Replay {
                _drained: body,
                bytes: Some(bytes),
            };
            Ok::<_, Infallible>(Response::from_parts(parts, replay))
        }),
        ScrubConfig::new(),
    );
    let response = svc.oneshot(request()).await.unwrap();
    let (parts, bytes) = collect(response).await;
    assert_eq!(parts.status, StatusCode::OK);
    same_order(&bytes, &scrubbed_envelope());
}

#[tokio::test]
async fn raw_json_is_reserialised_with_a_correct_length() {
    let original = serde_json::to_vec(&envelope()).unwrap();
    let original_len = original.len();
    let svc = ScrubOwnerMetadataLayer::new(ScrubConfig::new())
        .layer(raw("application/json; charset=utf-8", original));
    let response = svc.oneshot(request()).await.unwrap();
    let (parts, bytes) = collect(response).await;
    assert_eq!(parts.status, StatusCode::OK);
    same_order(&bytes, &scrubbed_envelope());
    assert!(!bytes.windows(OWNER.len()).any(|w| w == OWNER.as_bytes()));
    let length: usize = parts.headers["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, bytes.len());
    assert!(length < original_len);
    assert_eq!(
        parts.headers["content-type"],
        "application/json; charset=utf-8"
    );
}

#[tokio::test]
async fn a_body_sent_in_many_frames_is_joined_before_parsing() {
    let text = serde_json::to_vec(&envelope()).unwrap();
    let chunks: Vec<Bytes> = text.chunks(7).map(Bytes::copy_from_slice).collect();
    let svc = ScrubOwnerMetadata::new(
        service_fn(move |_req: Request<Empty<Bytes>>| {
            let body = streamed(chunks.clone());
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(body)
                        .unwrap(),
                )
            }
        }),
        ScrubConfig::new(),
    );
    let (parts, bytes) = collect(svc.oneshot(request()).await.unwrap()).await;
    same_order(&bytes, &scrubbed_envelope());
    assert_eq!(parts.headers["content-length"], bytes.len().to_string());
}

#[tokio::test]
async fn plus_json_media_types_are_json() {
    let body = serde_json::to_vec(&envelope()).unwrap();
    let svc = ScrubOwnerMetadata::new(raw("application/vnd.x+json", body), ScrubConfig::new());
    let (_, bytes) = collect(svc.oneshot(request()).await.unwrap()).await;
    same_order(&bytes, &scrubbed_envelope());
}

#[tokio::test]
async fn non_json_passes_untouched_and_unread() {
    let body = format!(r#"{{"ownerKey":"{OWNER}"}}"#);
    let svc = ScrubOwnerMetadata::new(raw("text/plain", body.clone()), ScrubConfig::new());
    let response = svc.oneshot(request()).await.unwrap();
    // The inner body itself is handed on, not a buffered copy.
    assert_eq!(
        response.body().inner_ref().unwrap().size_hint().exact(),
        Some(body.len() as u64)
    );
    let (parts, bytes) = collect(response).await;
    assert_eq!(parts.headers["content-length"], body.len().to_string());
    assert_eq!(&bytes[..], body.as_bytes());
}

#[tokio::test]
async fn a_response_without_content_type_passes_untouched() {
    let body = format!(r#"{{"result":{{"flow":{{"ownerKey":"{OWNER}"}}}}}}"#);
    let svc = ScrubOwnerMetadata::new(
        service_fn(move |_req: Request<Empty<Bytes>>| {
            let body = body.clone();
            async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
        }),
        ScrubConfig::new(),
    );
    let response = svc.oneshot(request()).await.unwrap();
    assert!(response.body().inner_ref().is_some());
}

#[tokio::test]
async fn invalid_json_fails_closed() {
    for body in [
        &b"{\"result\":{\"flow\":{\"ownerKey\":\"x\"}"[..],
        b"not json",
        b"{\"a\":\"\xff\"}",
    ] {
        let svc = ScrubOwnerMetadata::new(
            raw("application/json", Bytes::copy_from_slice(body)),
            ScrubConfig::new(),
        );
        let (parts, bytes) = collect(svc.oneshot(request()).await.unwrap()).await;
        assert_fails_closed(&parts, &bytes);
    }
}

#[tokio::test]
async fn oversize_json_fails_closed_before_and_while_reading() {
    let body = serde_json::to_vec(&envelope()).unwrap();
    let cap = body.len() - 1;
    let config = ScrubConfig::new().with_max_buffered_bytes(cap);

    // Known from the size hint: refused without reading.
    let svc = ScrubOwnerMetadata::new(raw("application/json", body.clone()), config.clone());
    let (parts, bytes) = collect(svc.oneshot(request()).await.unwrap()).await;
    assert_fails_closed(&parts, &bytes);

    // Streamed with no size hint: refused once the frames pass the cap.
    let chunks: Vec<Bytes> = body.chunks(16).map(Bytes::copy_from_slice).collect();
    let svc = ScrubOwnerMetadata::new(
        service_fn(move |_req: Request<Empty<Bytes>>| {
            let body = streamed(chunks.clone());
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(body)
                        .unwrap(),
                )
            }
        }),
        config,
    );
    let (parts, bytes) = collect(svc.oneshot(request()).await.unwrap()).await;
    assert_fails_closed(&parts, &bytes);

    // Exactly at the cap is fine.
    let config = ScrubConfig::new().with_max_buffered_bytes(body.len());
    let svc = ScrubOwnerMetadata::new(raw("application/json", body), config);
    let (parts, bytes) = collect(svc.oneshot(request()).await.unwrap()).await;
    assert_eq!(parts.status, StatusCode::OK);
    same_order(&bytes, &scrubbed_envelope());
}

#[tokio::test]
async fn a_body_error_fails_closed() {
    let svc = ScrubOwnerMetadata::new(
        service_fn(|_req: Request<Empty<Bytes>>| async {
            let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
                Ok(Frame::data(Bytes::from_static(b"{\"ok\":"))),
                Err(std::io::Error::other("reset")),
            ];
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(StreamBody::new(futures_util::stream::iter(frames)))
                    .unwrap(),
            )
        }),
        ScrubConfig::new(),
    );
    let response = svc.oneshot(request()).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    assert_fails_closed(&parts, &bytes);
}

#[tokio::test]
async fn compressed_json_fails_closed() {
    let svc = ScrubOwnerMetadata::new(
        service_fn(|_req: Request<Empty<Bytes>>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(Full::new(Bytes::from_static(b"\x1f\x8b\x08\x00")))
                    .unwrap(),
            )
        }),
        ScrubConfig::new(),
    );
    let (parts, bytes) = collect(svc.oneshot(request()).await.unwrap()).await;
    assert_fails_closed(&parts, &bytes);
}

#[tokio::test]
async fn an_empty_json_body_passes_with_its_headers() {
    // A `HEAD`-style response: the length describes a body that is not sent.
    let svc = ScrubOwnerMetadata::new(
        service_fn(|_req: Request<Empty<Bytes>>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .header("content-length", "123")
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
        }),
        ScrubConfig::new(),
    );
    let (parts, bytes) = collect(svc.oneshot(request()).await.unwrap()).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["content-length"], "123");
    assert!(bytes.is_empty());
}

#[tokio::test]
async fn inner_errors_pass_through() {
    let svc = ScrubOwnerMetadata::new(
        service_fn(|_req: Request<Empty<Bytes>>| async { Err::<Response<Full<Bytes>>, _>("boom") }),
        ScrubConfig::new(),
    );
    assert_eq!(svc.oneshot(request()).await.unwrap_err(), "boom");
}

#[test]
fn odd_shapes_are_left_alone() {
    let config = ScrubConfig::new();
    for value in [
        json!(null),
        json!([{"ownerKey": OWNER}]),
        json!("ownerKey"),
        json!({"ownerKey": OWNER}),
        json!({"ok": true, "result": null}),
        json!({"ok": true, "result": [{"flow": {"ownerKey": OWNER}}]}),
        json!({"ok": true, "result": 7}),
        json!({"result": {"flow": null, "flows": null, "current": "x", "task": [1], "tasks": {}}}),
        json!({"result": {"flows": [null, 1, "ownerKey", [{"ownerKey": OWNER}]]}}),
        json!({"result": {"flows": {"ownerKey": OWNER}}}),
        json!({"result": {"tasks": [[{"metadata": 1}]]}}),
        json!({"result": {"other": {"ownerKey": OWNER}, "summary": {"ownerKey": OWNER}}}),
    ] {
        let mut scrubbed = value.clone();
        assert_eq!(config.scrub(&mut scrubbed), 0, "{value}");
        assert_eq!(scrubbed, value);
    }
}

#[test]
fn a_flow_key_is_not_removed_from_a_task_and_vice_versa() {
    let config = ScrubConfig::new();
    let mut value = json!({"result": {
        "flow": {"flowId": "f", "metadata": 1, "requesterSessionKey": "kept"},
        "task": {"taskId": "t", "chainId": "kept", "requesterOrigin": "kept"}
    }});
    let expected = value.clone();
    assert_eq!(config.scrub(&mut value), 0);
    assert_eq!(value, expected);
}

#[test]
fn custom_key_sets_and_positions() {
    let config = ScrubConfig::empty()
        .with_rule(ScrubPath::parse("data.items[]").unwrap(), ["secret"])
        .with_rule(ScrubPath::parse("data").unwrap(), ["internal"])
        .with_rule(ScrubPath::root().key("odd.key").each(), ["x"]);
    let mut value = json!({
        "data": {"internal": 1, "items": [{"secret": 1, "keep": 2}, {"keep": 3}], "ownerKey": "k"},
        "odd.key": [{"x": 1, "y": 2}],
        "result": {"flow": {"ownerKey": "not configured here"}}
    });
    assert_eq!(config.scrub(&mut value), 3);
    assert_eq!(
        value,
        json!({
            "data": {"items": [{"keep": 2}, {"keep": 3}], "ownerKey": "k"},
            "odd.key": [{"y": 2}],
            "result": {"flow": {"ownerKey": "not configured here"}}
        })
    );
}

#[test]
fn rules_on_the_same_position_add_up() {
    let config = ScrubConfig::empty()
        .with_flow_at(ScrubPath::root())
        .with_rule(ScrubPath::parse("$").unwrap(), ["goal"]);
    let mut value = json!({"flowId": "f", "goal": "g", "ownerKey": OWNER, "chainId": "c"});
    assert_eq!(config.scrub(&mut value), 3);
    assert_eq!(value, json!({"flowId": "f"}));
}

#[tokio::test]
async fn top_level_positions_for_piecemeal_use() {
    let config = ScrubConfig::empty()
        .with_flow_at(ScrubPath::root())
        .with_task_at(ScrubPath::parse("[]").unwrap());

    let mut single = flow("f1");
    config.scrub(&mut single);
    assert_eq!(single, scrubbed_flow("f1"));

    let mut tasks = json!([task("t1"), task("t2")]);
    config.scrub(&mut tasks);
    assert_eq!(tasks, json!([scrubbed_task("t1"), scrubbed_task("t2")]));

    let body = serde_json::to_vec(&flow("f9")).unwrap();
    let svc = ServiceBuilder::new()
        .layer(ScrubOwnerMetadata::<()>::layer(config))
        .service(raw("application/json", body));
    let (_, bytes) = collect(svc.oneshot(request()).await.unwrap()).await;
    same_order(&bytes, &scrubbed_flow("f9"));
}

#[test]
fn the_owner_session_key_never_survives() {
    let mut value = envelope();
    ScrubConfig::new().scrub(&mut value);
    let text = serde_json::to_string(&value).unwrap();
    assert!(!text.contains(OWNER), "{text}");
    assert!(!text.contains("requesterAgentId"), "{text}");
}

#[test]
fn layer_and_service_accessors() {
    let layer = ScrubOwnerMetadataLayer::default();
    assert_eq!(
        layer.config().max_buffered_bytes(),
        ScrubConfig::DEFAULT_MAX_BUFFERED_BYTES
    );
    let shared = std::sync::Arc::new(ScrubConfig::empty().with_max_buffered_bytes(10));
    let mut svc = ScrubOwnerMetadata::new(1_u8, shared.clone());
    assert_eq!(svc.config().max_buffered_bytes(), 10);
    *svc.get_mut() += 1;
    assert_eq!(*svc.get_ref(), 2);
    assert_eq!(svc.into_inner(), 2);
    assert!(format!("{:?}", ScrubConfig::new()).contains("result.flows[]"));
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "ownerKey", "requesterOrigin", "chainId", "requesterSessionKey",
            "requesterAgentId", "metadata", "flow", "flows", "current", "task",
            "tasks", "result", "stateJson",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z]{0,6}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z:]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn arb_envelope() -> impl Strategy<Value = Value> {
    let positions = (
        arb_json(),
        prop::collection::vec(arb_json(), 0..3),
        arb_json(),
        arb_json(),
        arb_json(),
    );
    prop_oneof![
        positions.prop_map(|(flow, flows, current, task, tasks)| {
            json!({"ok": true, "routeId": "r", "result": {
                "flow": flow, "flows": flows, "current": current, "task": task, "tasks": tasks
            }})
        }),
        arb_json().prop_map(|result| json!({"ok": false, "result": result})),
        arb_json(),
    ]
}

proptest! {
    #[test]
    fn scrubbing_never_panics_and_is_idempotent(mut value in arb_envelope()) {
        let config = ScrubConfig::new();
        config.scrub(&mut value);
        let once = value.clone();
        prop_assert_eq!(config.scrub(&mut value), 0);
        prop_assert_eq!(&value, &once);
        // Nothing configured is left at a flow position.
        if let Some(flow) = value.pointer("/result/flow").and_then(Value::as_object) {
            for key in ScrubConfig::FLOW_KEYS {
                prop_assert!(!flow.contains_key(key));
            }
        }
        if let Some(tasks) = value.pointer("/result/tasks").and_then(Value::as_array) {
            for task in tasks.iter().filter_map(Value::as_object) {
                for key in ScrubConfig::TASK_KEYS {
                    prop_assert!(!task.contains_key(key));
                }
            }
        }
    }

    #[test]
    fn scrubbing_only_removes_members(value in arb_envelope()) {
        // Every member left after scrubbing was there before, with the same value, except where
        // a descendant was removed: compare the removed count with the size difference.
        let mut scrubbed = value.clone();
        let removed = ScrubConfig::new().scrub(&mut scrubbed);
        prop_assert_eq!(count_members(&value) - count_members(&scrubbed), removed_members(&value, &scrubbed));
        prop_assert!(removed <= count_members(&value));
    }
}

/// Members in a document, nested ones included.
fn count_members(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.len() + map.values().map(count_members).sum::<usize>(),
        Value::Array(items) => items.iter().map(count_members).sum(),
        _ => 0,
    }
}

/// Members (nested included) of `before` missing from `after`; panics if `after` has anything new.
fn removed_members(before: &Value, after: &Value) -> usize {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => b
            .iter()
            .map(|(k, bv)| match a.get(k) {
                Some(av) => removed_members(bv, av),
                None => 1 + count_members(bv),
            })
            .sum(),
        (Value::Array(b), Value::Array(a)) => {
            assert_eq!(b.len(), a.len());
            b.iter().zip(a).map(|(b, a)| removed_members(b, a)).sum()
        }
        (b, a) => {
            assert_eq!(b, a);
            0
        }
    }
}

#[tokio::test]
async fn works_as_an_axum_router_layer_without_error_handling() {
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(|| async { axum::Json(envelope()) }),
        )
        .layer(ScrubOwnerMetadataLayer::new(ScrubConfig::new()));
    let request = Request::post("/hook")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    same_order(&bytes, &scrubbed_envelope());
}

fn typed_flow() -> tower_webhooks::taskflow::Flow {
    use tower_webhooks::taskflow::{Flow, FlowStatus, NotifyPolicy, SyncMode};
    Flow {
        flow_id: uuid::Uuid::from_u128(42),
        sync_mode: SyncMode::Managed,
        owner_key: OWNER.into(),
        controller_id: "ctl".into(),
        revision: 2,
        status: FlowStatus::Running,
        notify_policy: NotifyPolicy::StateChanges,
        goal: "goal".into(),
        current_step: None,
        blocked_task_id: None,
        blocked_summary: None,
        state_json: Some(json!({"ownerKey": "caller-owned", "chainId": 1})),
        wait_json: None,
        cancel_requested_at: None,
        created_at: 1,
        updated_at: 2,
        ended_at: None,
    }
}

/// Typed records serialise as their owner-free views: the default rules find nothing left to
/// remove, and the caller's own JSON keeps its `ownerKey`.
#[test]
fn typed_records_are_already_scrubbed() {
    use tower_webhooks::json::JsonDocument;
    use tower_webhooks::taskflow::{NewTask, Runtime};
    let flow = typed_flow();
    let task = NewTask::new(Runtime::Subagent, "t").into_task(flow.flow_id, OWNER.into(), 3);
    let document = JsonDocument::object([
        ("ok", true.into()),
        (
            "result",
            JsonDocument::object([
                ("flow", flow.clone().into()),
                ("flows", vec![flow.clone(), flow.clone()].into()),
                ("tasks", vec![task.clone()].into()),
                (
                    "current",
                    Option::<tower_webhooks::taskflow::Flow>::None.into(),
                ),
            ]),
        ),
    ]);
    let mut value = document.to_value();
    same_order(&document.to_vec(), &value);
    assert_eq!(ScrubConfig::new().scrub(&mut value), 0);
    let text = String::from_utf8(document.to_vec()).unwrap();
    assert!(!text.contains(OWNER), "{text}");
    assert_eq!(text.matches(r#""ownerKey":"caller-owned""#).count(), 3);
}
