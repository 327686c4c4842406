//! Owner-free answers (SPEC §4, DESIGN "Records never carry owner metadata out"): the TaskFlow
//! action service alone, with no `ScrubOwnerMetadata` in front, never answers owner or session
//! metadata; and the scrub layer still scrubs JSON that other handlers answer.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use serde_json::{Value, json};
use tower::{ServiceExt, service_fn};
use tower_webhooks::{
    BufferedBody, CancelHook, ChildCancel, FlowStatus, MemoryStore, MemoryStoreConfig, NewFlow,
    ResponseBody, ScrubConfig, ScrubOwnerMetadata, SyncMode, Task, TaskFlowActionService,
    TaskFlowRoute, TaskFlowStore, json_response,
};

/// Distinctive enough that a substring search means something: it appears nowhere else.
const SESSION: &str = "agent:ownerq7:hooks-5c1e9b2d7a";
/// A child session the default `same-agent` policy allows: shares `agent:ownerq7:` only.
const CHILD: &str = "agent:ownerq7:child-1";

/// Every member SPEC §4 removes from a flow or a task.
const OWNER_MEMBERS: [&str; 6] = [
    "ownerKey",
    "requesterSessionKey",
    "requesterOrigin",
    "chainId",
    "requesterAgentId",
    "metadata",
];

/// Keeps tasks labelled `stuck` active, so `cancel_flow` can answer `202`.
#[derive(Debug)]
struct KeepStuckTasks;

impl CancelHook for KeepStuckTasks {
    fn cancel_task<'a>(&'a self, task: &'a Task) -> tower_webhooks::taskflow::CancelFuture<'a> {
        Box::pin(std::future::ready(
            if task.label.as_deref() == Some("stuck") {
                ChildCancel::StillActive
            } else {
                ChildCancel::Cancelled
            },
        ))
    }
}

fn service(config: MemoryStoreConfig) -> (MemoryStore, TaskFlowActionService<MemoryStore>) {
    let store = MemoryStore::build(
        config,
        tower_webhooks::ManualClock::new(1_700_000_000_000),
        Arc::new(KeepStuckTasks),
    );
    let service = TaskFlowActionService::new(store.clone(), TaskFlowRoute::new("r1", SESSION));
    (store, service)
}

/// Sends `body` to the service alone and returns the status and the bytes a client reads, after
/// checking that they carry no owner metadata and not the route's session key.
async fn answer(service: &TaskFlowActionService<MemoryStore>, body: Value) -> (u16, Value) {
    let request = Request::post("/hook")
        .header("content-type", "application/json")
        .body(BufferedBody::new(body.to_string()))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(!text.contains(SESSION), "session key in {body} -> {text}");
    for member in OWNER_MEMBERS {
        assert!(
            !text.contains(&format!("\"{member}\"")),
            "{member} in {body} -> {text}"
        );
    }
    (status, serde_json::from_str(text).unwrap_or(Value::Null))
}

fn flow_id(envelope: &Value, at: &str) -> String {
    envelope["result"][at]["flowId"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_action_service_alone_never_answers_owner_metadata_or_the_session_key() {
    let (store, svc) = service(MemoryStoreConfig::new());
    let create = json!({"action": "create_flow", "goal": "g", "stateJson": {"k": 1}});

    // Reads and creation.
    let (status, created) = answer(&svc, create.clone()).await;
    assert_eq!(status, 200);
    let a = flow_id(&created, "flow");
    for body in [
        json!({"action": "get_flow", "flowId": a}),
        json!({"action": "list_flows"}),
        json!({"action": "find_latest_flow"}),
        json!({"action": "resolve_flow", "token": SESSION}),
        json!({"action": "resolve_flow", "token": a}),
        json!({"action": "get_task_summary", "flowId": a}),
    ] {
        let (status, envelope) = answer(&svc, body.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert!(envelope["result"] != json!({}), "{envelope}");
    }
    let (_, listed) = answer(&svc, json!({"action": "list_flows"})).await;
    assert_eq!(listed["result"]["flows"][0]["flowId"], a.as_str());

    // run_task: created, repeated, refused for its child session.
    let run = json!({"action": "run_task", "flowId": a, "runtime": "acp", "task": "t",
                     "childSessionKey": CHILD, "runId": "run-1"});
    for _ in 0..2 {
        let (status, envelope) = answer(&svc, run.clone()).await;
        assert_eq!(status, 200, "{envelope}");
        assert_eq!(envelope["result"]["task"]["childSessionKey"], CHILD);
    }
    let foreign = json!({"action": "run_task", "flowId": a, "runtime": "acp", "task": "t",
                         "childSessionKey": "agent:other:x"});
    assert_eq!(answer(&svc, foreign).await.0, 403);

    // Mutations: applied, 409 with `current`, 404.
    let waiting = json!({"action": "set_waiting", "flowId": a, "expectedRevision": 0,
                         "blockedSummary": "on hold"});
    assert_eq!(answer(&svc, waiting.clone()).await.0, 200);
    let (status, conflict) = answer(&svc, waiting).await;
    assert_eq!(status, 409);
    assert_eq!(conflict["result"]["current"]["flowId"], a.as_str());
    for body in [
        json!({"action": "resume_flow", "flowId": a, "expectedRevision": 1, "status": "running"}),
        json!({"action": "request_cancel", "flowId": a, "expectedRevision": 2}),
    ] {
        assert_eq!(answer(&svc, body.clone()).await.0, 200, "{body}");
    }
    let missing = "00000000-0000-4000-8000-000000000000";
    for body in [
        json!({"action": "finish_flow", "flowId": missing, "expectedRevision": 0}),
        json!({"action": "cancel_flow", "flowId": missing}),
        json!({"action": "run_task", "flowId": missing, "runtime": "acp", "task": "t"}),
    ] {
        assert_eq!(answer(&svc, body.clone()).await.0, 404, "{body}");
    }
    let after_cancel = json!({"action": "run_task", "flowId": a, "runtime": "acp", "task": "u"});
    assert_eq!(answer(&svc, after_cancel).await.0, 409);

    // cancel_flow with tasks: cancelled, then terminal; run_task on a terminal flow.
    let (status, cancelled) = answer(&svc, json!({"action": "cancel_flow", "flowId": a})).await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["result"]["tasks"].as_array().unwrap().len(), 1);
    let (status, terminal) = answer(&svc, json!({"action": "cancel_flow", "flowId": a})).await;
    assert_eq!(status, 409);
    assert_eq!(terminal["result"]["tasks"].as_array().unwrap().len(), 1);
    let on_terminal = json!({"action": "run_task", "flowId": a, "runtime": "acp", "task": "v"});
    assert_eq!(answer(&svc, on_terminal).await.0, 409);

    // cancel_flow answered `202` while a child is still active.
    let b = flow_id(&answer(&svc, create.clone()).await.1, "flow");
    let stuck = json!({"action": "run_task", "flowId": b, "runtime": "subagent", "task": "t",
                       "label": "stuck", "childSessionKey": CHILD});
    assert_eq!(answer(&svc, stuck).await.0, 200);
    let (status, pending) = answer(&svc, json!({"action": "cancel_flow", "flowId": b})).await;
    assert_eq!(status, 202);
    assert_eq!(pending["result"]["tasks"][0]["label"], "stuck");

    // finish and fail.
    for action in ["finish_flow", "fail_flow"] {
        let id = flow_id(&answer(&svc, create.clone()).await.1, "flow");
        let body = json!({"action": action, "flowId": id, "expectedRevision": 0});
        assert_eq!(answer(&svc, body).await.0, 200, "{action}");
    }

    // A flow the webhook surface does not manage: 409 `not_managed` with `current`.
    let mut mirrored = NewFlow::new("ctl", "mirrored");
    mirrored.sync_mode = SyncMode::TaskMirrored;
    mirrored.status = FlowStatus::Running;
    let c = store
        .create_flow(SESSION, mirrored)
        .await
        .unwrap()
        .id_string();
    let (status, not_managed) = answer(
        &svc,
        json!({"action": "finish_flow", "flowId": c, "expectedRevision": 0}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(not_managed["result"]["current"]["flowId"], c.as_str());
    let run_mirrored = json!({"action": "run_task", "flowId": c, "runtime": "acp", "task": "t"});
    assert_eq!(answer(&svc, run_mirrored).await.0, 409);

    // Bad requests.
    assert_eq!(answer(&svc, json!({"action": "get_flow"})).await.0, 400);
    assert_eq!(answer(&svc, json!([])).await.0, 400);

    // The store's own records still carry the owner: it needs them.
    let flows = store.list_flows(SESSION).await.unwrap();
    assert!(flows.iter().all(|f| &*f.owner_key == SESSION));

    // 507: the store is full.
    let (_, full) = service(MemoryStoreConfig::new().max_flows_per_owner(Some(1)));
    assert_eq!(answer(&full, create.clone()).await.0, 200);
    assert_eq!(answer(&full, create).await.0, 507);
}

fn leaky_envelope() -> Value {
    json!({"ok": true, "routeId": "r1", "result": {
        "flow": {"flowId": "f1", "ownerKey": SESSION, "chainId": "c", "stateJson": {"ownerKey": "mine"}},
        "tasks": [{"taskId": "t1", "ownerKey": SESSION, "requesterSessionKey": SESSION, "metadata": {}}]
    }})
}

const SCRUBBED: &str = r#"{"ok":true,"routeId":"r1","result":{"flow":{"flowId":"f1","stateJson":{"ownerKey":"mine"}},"tasks":[{"taskId":"t1"}]}}"#;

async fn scrubbed_text<B>(response: Response<ResponseBody<B>>) -> (StatusCode, String)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    let length = response.headers().get("content-length").cloned();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(length.unwrap(), bytes.len().to_string().as_str());
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn the_scrub_layer_still_scrubs_json_from_a_plain_handler() {
    // Bytes, as any framework's JSON handler answers.
    let bytes_handler = ScrubOwnerMetadata::new(
        service_fn(|_req: Request<Empty<Bytes>>| async {
            let response = Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(leaky_envelope().to_string())))
                .unwrap();
            Ok::<_, Infallible>(response)
        }),
        ScrubConfig::new(),
    );
    let response = bytes_handler.oneshot(Request::new(Empty::new())).await;
    let (status, text) = scrubbed_text(response.unwrap()).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, SCRUBBED));

    // A structured body built with this crate's `json_response`, by a handler that is not the
    // TaskFlow service: the crate does not know it is clean, so it is scrubbed too.
    let structured_handler = ScrubOwnerMetadata::new(
        service_fn(|_req: Request<Empty<Bytes>>| async {
            let response: Response<ResponseBody<Empty<Bytes>>> =
                json_response(StatusCode::OK, leaky_envelope());
            Ok::<_, Infallible>(response)
        }),
        ScrubConfig::new(),
    );
    let response = structured_handler.oneshot(Request::new(Empty::new())).await;
    let (status, text) = scrubbed_text(response.unwrap()).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, SCRUBBED));
}
