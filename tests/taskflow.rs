//! TaskFlow actions through `TaskFlowActionService` over `MemoryStore` (SPEC §3).

use std::sync::{Arc, Barrier};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_webhooks::taskflow::{Change, ChangeEvent, ChangeFeed, ChangeKind};
use tower_webhooks::{
    BufferedBody, CancelHook, ChildCancel, ChildSessionPolicy, Flow, FlowEnd, ManualClock,
    MemoryStore, MemoryStoreConfig, Mutation, MutationOutcome, NewFlow, NewTask, StoreError,
    SyncMode, Task, TaskFlowActionService, TaskFlowRoute, TaskFlowStore, TaskStatus,
    TaskUpdateOutcome,
};
use uuid::Uuid;

const OWNER: &str = "agent:main:hooks";
const T0: u64 = 1_700_000_000_000;

struct Harness {
    store: MemoryStore,
    clock: Arc<ManualClock>,
    service: TaskFlowActionService<MemoryStore>,
}

fn harness_with(config: MemoryStoreConfig, hook: Arc<dyn CancelHook>) -> Harness {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::build(config, clock.clone(), hook);
    let service = TaskFlowActionService::new(store.clone(), TaskFlowRoute::new("r1", OWNER));
    Harness {
        store,
        clock,
        service,
    }
}

fn harness() -> Harness {
    harness_with(
        MemoryStoreConfig::default(),
        Arc::new(tower_webhooks::CancelImmediately),
    )
}

/// Status, `Content-Type` and body: the structured envelope, or the plain text as a JSON string.
async fn send_raw<S: TaskFlowStore>(
    service: &TaskFlowActionService<S>,
    body: impl Into<Bytes>,
) -> (u16, String, Value) {
    let request = Request::post("/hook")
        .header("content-type", "application/json")
        .body(BufferedBody::new(body.into()))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let value = match response.body().json_value() {
        Some(value) => value.clone(),
        None => {
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            Value::String(String::from_utf8(bytes.to_vec()).unwrap())
        }
    };
    (status, content_type, value)
}

async fn send<S: TaskFlowStore>(service: &TaskFlowActionService<S>, body: Value) -> (u16, Value) {
    let (status, content_type, value) = send_raw(service, body.to_string()).await;
    assert_eq!(content_type, "application/json; charset=utf-8");
    (status, value)
}

async fn create(h: &Harness, extra: Value) -> Value {
    let mut body = json!({"action": "create_flow", "goal": "g"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, env) = send(&h.service, body).await;
    assert_eq!(status, 200, "{env}");
    env["result"]["flow"].clone()
}

fn id(flow: &Value) -> String {
    flow["flowId"].as_str().unwrap().to_owned()
}

async fn snapshot(store: &MemoryStore) -> Value {
    let flows = store.list_flows(OWNER).await.unwrap();
    let mut out = Vec::new();
    for flow in flows {
        let tasks = store
            .list_tasks(OWNER, &flow.id_string())
            .await
            .unwrap()
            .unwrap();
        out.push(json!({"flow": flow.to_json(), "tasks": tasks.iter().map(Task::to_json).collect::<Vec<_>>()}));
    }
    Value::Array(out)
}

// ---------------------------------------------------------------- records

#[tokio::test]
async fn create_flow_defaults_and_record_shape() {
    let h = harness();
    let (status, env) = send(
        &h.service,
        json!({"action": "create_flow", "goal": "triage"}),
    )
    .await;
    assert_eq!(status, 200);
    let flow = &env["result"]["flow"];
    let flow_id = id(flow);
    assert_eq!(
        env,
        json!({"ok": true, "routeId": "r1", "result": {"created": true, "flow": {
            "flowId": flow_id, "syncMode": "managed",
            "controllerId": "webhooks/r1", "revision": 0, "status": "queued",
            "notifyPolicy": "done_only", "goal": "triage", "createdAt": T0, "updatedAt": T0,
        }}})
    );
    // Lower-case UUID v4.
    let uuid = uuid::Uuid::parse_str(&flow_id).unwrap();
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(flow_id, flow_id.to_lowercase());
    // Key order follows the SPEC.
    let keys: Vec<&str> = flow
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    // Owner-free: `ownerKey` is internal (SPEC §3.2, §4).
    assert_eq!(keys[..3], ["flowId", "syncMode", "controllerId"]);
}

#[tokio::test]
async fn create_flow_with_every_field_and_json_null_kept() {
    let h = harness();
    let flow = create(
        &h,
        json!({"controllerId": "c", "status": "blocked", "notifyPolicy": "silent",
               "currentStep": "s1", "stateJson": null, "waitJson": {"a": [1, {"b": null}]}}),
    )
    .await;
    assert_eq!(flow["controllerId"], "c");
    assert_eq!(flow["status"], "blocked");
    assert_eq!(flow["notifyPolicy"], "silent");
    assert_eq!(flow["currentStep"], "s1");
    assert_eq!(flow.get("stateJson"), Some(&Value::Null));
    assert_eq!(flow["waitJson"], json!({"a": [1, {"b": null}]}));
    assert!(flow.get("endedAt").is_none());
    assert!(flow.get("blockedTaskId").is_none());
    for status in ["queued", "running", "waiting"] {
        assert_eq!(
            create(&h, json!({"status": status})).await["status"],
            status
        );
    }
    // `null` for an optional string is "not given".
    let flow = create(&h, json!({"controllerId": null, "currentStep": null})).await;
    assert_eq!(flow["controllerId"], "webhooks/r1");
    assert!(flow.get("currentStep").is_none());
}

#[tokio::test]
async fn route_controller_id_is_the_default() {
    let h = harness();
    let service = TaskFlowActionService::new(
        h.store.clone(),
        TaskFlowRoute::new("r2", OWNER).controller_id("ctl/x"),
    );
    let (_, env) = send(&service, json!({"action": "create_flow", "goal": "g"})).await;
    assert_eq!(env["routeId"], "r2");
    assert_eq!(env["result"]["flow"]["controllerId"], "ctl/x");
}

// ---------------------------------------------------------------- reads

#[tokio::test]
async fn get_flow_and_missing_flow() {
    let h = harness();
    let flow = create(&h, json!({})).await;
    let (status, env) = send(
        &h.service,
        json!({"action": "get_flow", "flowId": id(&flow)}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        env,
        json!({"ok": true, "routeId": "r1", "result": {"flow": flow}})
    );
    for missing in [
        "00000000-0000-4000-8000-000000000000",
        "not-a-uuid",
        &id(&flow).to_uppercase(),
    ] {
        let (status, env) =
            send(&h.service, json!({"action": "get_flow", "flowId": missing})).await;
        assert_eq!(status, 200);
        assert_eq!(
            env,
            json!({"ok": true, "routeId": "r1", "result": {"flow": null}})
        );
    }
}

#[tokio::test]
async fn list_flows_is_newest_first_and_ties_newest_created_first() {
    let h = harness();
    let a = create(&h, json!({"goal": "a"})).await;
    let b = create(&h, json!({"goal": "b"})).await;
    h.clock.advance(5);
    let c = create(&h, json!({"goal": "c"})).await;
    // A wall clock that steps back: createdAt decides, not insertion order.
    h.clock.set_epoch_millis(T0 - 10);
    let d = create(&h, json!({"goal": "d"})).await;
    let e = create(&h, json!({"goal": "e"})).await;
    let (status, env) = send(&h.service, json!({"action": "list_flows"})).await;
    assert_eq!(status, 200);
    let goals: Vec<&str> = env["result"]["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["goal"].as_str().unwrap())
        .collect();
    assert_eq!(goals, ["c", "b", "a", "e", "d"]);
    let _ = (a, b, c, d, e);
    let (_, env) = send(&h.service, json!({"action": "find_latest_flow"})).await;
    assert_eq!(env["result"]["flow"]["goal"], "c");
}

#[tokio::test]
async fn empty_owner_lists_nothing() {
    let h = harness();
    let (_, env) = send(&h.service, json!({"action": "list_flows"})).await;
    assert_eq!(
        env,
        json!({"ok": true, "routeId": "r1", "result": {"flows": []}})
    );
    let (_, env) = send(&h.service, json!({"action": "find_latest_flow"})).await;
    assert_eq!(
        env,
        json!({"ok": true, "routeId": "r1", "result": {"flow": null}})
    );
}

#[tokio::test]
async fn resolve_flow_all_three_ways() {
    let h = harness();
    // Session key with no flows yet: null.
    let (_, env) = send(
        &h.service,
        json!({"action": "resolve_flow", "token": OWNER}),
    )
    .await;
    assert_eq!(env["result"], json!({"flow": null}));

    let active = create(&h, json!({"goal": "active"})).await;
    h.clock.advance(1);
    let done = create(&h, json!({"goal": "done"})).await;
    let (status, _) = send(
        &h.service,
        json!({"action": "finish_flow", "flowId": id(&done), "expectedRevision": 0}),
    )
    .await;
    assert_eq!(status, 200);

    // 1. An owned flow id: that flow, terminal or not.
    let (_, env) = send(
        &h.service,
        json!({"action": "resolve_flow", "token": id(&done)}),
    )
    .await;
    assert_eq!(env["result"]["flow"]["goal"], "done");
    // 2. The session key: newest non-terminal flow, even though a newer terminal one exists.
    let (_, env) = send(
        &h.service,
        json!({"action": "resolve_flow", "token": OWNER}),
    )
    .await;
    assert_eq!(env["result"]["flow"]["goal"], "active");
    // ... and the newest flow when all are terminal.
    send(
        &h.service,
        json!({"action": "fail_flow", "flowId": id(&active), "expectedRevision": 0}),
    )
    .await;
    let (_, env) = send(
        &h.service,
        json!({"action": "resolve_flow", "token": OWNER}),
    )
    .await;
    assert_eq!(env["result"]["flow"]["goal"], "done");
    // 3. Anything else: null.
    for token in ["agent:main", "00000000-0000-4000-8000-000000000000", "x"] {
        let (status, env) = send(
            &h.service,
            json!({"action": "resolve_flow", "token": token}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(env["result"], json!({"flow": null}), "{token}");
    }
}

#[tokio::test]
async fn owner_isolation_between_two_sessions() {
    let h = harness();
    let other =
        TaskFlowActionService::new(h.store.clone(), TaskFlowRoute::new("r2", "agent:ops:hooks"));
    let mine = create(&h, json!({})).await;
    let (_, theirs) = send(&other, json!({"action": "create_flow", "goal": "theirs"})).await;
    let theirs = theirs["result"]["flow"].clone();
    let fid = id(&mine);

    // Reads: another session's flow is invisible.
    let (_, env) = send(&other, json!({"action": "get_flow", "flowId": fid})).await;
    assert_eq!(env["result"], json!({"flow": null}));
    let (_, env) = send(&other, json!({"action": "list_flows"})).await;
    assert_eq!(env["result"]["flows"], json!([theirs]));
    let (_, env) = send(&other, json!({"action": "resolve_flow", "token": fid})).await;
    assert_eq!(env["result"], json!({"flow": null}));
    let (_, env) = send(&other, json!({"action": "resolve_flow", "token": OWNER})).await;
    assert_eq!(env["result"], json!({"flow": null}));
    let (_, env) = send(&other, json!({"action": "get_task_summary", "flowId": fid})).await;
    assert_eq!(env["result"], json!({"summary": null}));

    // Writes: exactly like a missing flow.
    let before = snapshot(&h.store).await;
    let (status, env) = send(
        &other,
        json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 0}),
    )
    .await;
    assert_eq!((status, env["code"].clone()), (404, json!("not_found")));
    let (status, _) = send(&other, json!({"action": "cancel_flow", "flowId": fid})).await;
    assert_eq!(status, 404);
    let (status, _) = send(
        &other,
        json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t"}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(snapshot(&h.store).await, before);
}

// ---------------------------------------------------------------- mutations

#[tokio::test]
async fn set_waiting_and_blocked() {
    let h = harness();
    let flow = create(&h, json!({"currentStep": "one", "stateJson": {"n": 1}})).await;
    let fid = id(&flow);
    h.clock.advance(10);
    let (status, env) = send(
        &h.service,
        json!({"action": "set_waiting", "flowId": fid, "expectedRevision": 0,
               "waitJson": {"until": "approval"}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(env["ok"], true);
    assert_eq!(env["result"]["applied"], true);
    let flow = &env["result"]["flow"];
    assert_eq!(flow["status"], "waiting");
    assert_eq!(flow["revision"], 1);
    assert_eq!(flow["updatedAt"], T0 + 10);
    assert_eq!(flow["createdAt"], T0);
    assert_eq!(flow["currentStep"], "one", "absent = keep");
    assert_eq!(flow["stateJson"], json!({"n": 1}));
    assert_eq!(flow["waitJson"], json!({"until": "approval"}));

    let (_, env) = send(
        &h.service,
        json!({"action": "set_waiting", "flowId": fid, "expectedRevision": 1,
               "blockedSummary": "needs a human", "currentStep": null}),
    )
    .await;
    let flow = &env["result"]["flow"];
    assert_eq!(flow["status"], "blocked");
    assert_eq!(flow["blockedSummary"], "needs a human");
    assert!(flow.get("currentStep").is_none(), "null = clear");

    let (_, env) = send(
        &h.service,
        json!({"action": "set_waiting", "flowId": fid, "expectedRevision": 2, "blockedTaskId": "t9"}),
    )
    .await;
    let flow = &env["result"]["flow"];
    assert_eq!(flow["status"], "blocked");
    assert_eq!(flow["blockedTaskId"], "t9");
    assert!(flow.get("blockedSummary").is_none());

    // set_waiting on a finished flow reopens it: no status machine, endedAt cleared.
    send(
        &h.service,
        json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 3}),
    )
    .await;
    let (_, env) = send(
        &h.service,
        json!({"action": "set_waiting", "flowId": fid, "expectedRevision": 4}),
    )
    .await;
    let flow = &env["result"]["flow"];
    assert_eq!(flow["status"], "waiting");
    assert!(flow.get("endedAt").is_none());
    assert!(flow.get("blockedTaskId").is_none());
}

#[tokio::test]
async fn resume_finish_fail_and_request_cancel() {
    let h = harness();
    let fid = id(&create(&h, json!({})).await);
    send(
        &h.service,
        json!({"action": "set_waiting", "flowId": fid, "expectedRevision": 0,
               "waitJson": 1, "blockedTaskId": "b", "blockedSummary": "s"}),
    )
    .await;
    let (status, env) = send(
        &h.service,
        json!({"action": "resume_flow", "flowId": fid, "expectedRevision": 1,
               "status": "running", "currentStep": "go", "stateJson": [1]}),
    )
    .await;
    assert_eq!(status, 200);
    let flow = &env["result"]["flow"];
    assert_eq!(flow["status"], "running");
    assert_eq!(flow["currentStep"], "go");
    assert_eq!(flow["stateJson"], json!([1]));
    for gone in ["waitJson", "blockedTaskId", "blockedSummary", "endedAt"] {
        assert!(flow.get(gone).is_none(), "{gone}");
    }
    let (_, env) = send(
        &h.service,
        json!({"action": "resume_flow", "flowId": fid, "expectedRevision": 2}),
    )
    .await;
    assert_eq!(env["result"]["flow"]["status"], "queued");

    h.clock.advance(7);
    let (_, env) = send(
        &h.service,
        json!({"action": "request_cancel", "flowId": fid, "expectedRevision": 3}),
    )
    .await;
    let flow = &env["result"]["flow"];
    assert_eq!(flow["cancelRequestedAt"], T0 + 7);
    assert_eq!(flow["status"], "queued", "status unchanged");
    h.clock.advance(1);
    let (_, env) = send(
        &h.service,
        json!({"action": "request_cancel", "flowId": fid, "expectedRevision": 4}),
    )
    .await;
    assert_eq!(env["result"]["flow"]["cancelRequestedAt"], T0 + 7, "sticky");
    assert_eq!(env["result"]["flow"]["revision"], 5);

    let (_, env) = send(
        &h.service,
        json!({"action": "fail_flow", "flowId": fid, "expectedRevision": 5,
               "blockedSummary": "broke", "stateJson": null}),
    )
    .await;
    let flow = &env["result"]["flow"];
    assert_eq!(flow["status"], "failed");
    assert_eq!(flow["endedAt"], T0 + 8);
    assert_eq!(flow["blockedSummary"], "broke");
    assert_eq!(flow.get("stateJson"), Some(&Value::Null));
    assert_eq!(flow["cancelRequestedAt"], T0 + 7);

    // finish works on a failed flow [compat: no status machine].
    h.clock.advance(1);
    let (status, env) = send(
        &h.service,
        json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 6, "stateJson": {"ok": 1}}),
    )
    .await;
    assert_eq!(status, 200);
    let flow = &env["result"]["flow"];
    assert_eq!(flow["status"], "succeeded");
    assert_eq!(flow["endedAt"], T0 + 9);
    assert_eq!(flow["stateJson"], json!({"ok": 1}));
    assert!(flow.get("blockedSummary").is_none());
    assert_eq!(flow["revision"], 7);
}

#[tokio::test]
async fn mutation_failures_have_exact_envelopes() {
    let h = harness();
    let flow = create(&h, json!({})).await;
    let fid = id(&flow);
    let missing = "00000000-0000-4000-8000-000000000000";
    for action in [
        "set_waiting",
        "resume_flow",
        "finish_flow",
        "fail_flow",
        "request_cancel",
    ] {
        let (status, env) = send(
            &h.service,
            json!({"action": action, "flowId": missing, "expectedRevision": 0}),
        )
        .await;
        assert_eq!(status, 404, "{action}");
        assert_eq!(
            env,
            json!({"ok": false, "routeId": "r1", "code": "not_found", "error": "TaskFlow not found.",
                   "result": {"applied": false, "code": "not_found"}}),
            "{action}"
        );
        let (status, env) = send(
            &h.service,
            json!({"action": action, "flowId": fid, "expectedRevision": 3}),
        )
        .await;
        assert_eq!(status, 409, "{action}");
        assert_eq!(
            env,
            json!({"ok": false, "routeId": "r1", "code": "revision_conflict",
                   "error": "TaskFlow changed since the caller's expected revision.",
                   "result": {"applied": false, "code": "revision_conflict", "current": flow}}),
            "{action}"
        );
    }
    assert_eq!(snapshot(&h.store).await[0]["flow"], flow);
}

#[tokio::test]
async fn unmanaged_flows_are_refused() {
    let h = harness();
    let mut new = NewFlow::new("mirror", "g");
    new.sync_mode = SyncMode::TaskMirrored;
    let flow = h.store.create_flow(OWNER, new).await.unwrap();
    let fid = flow.id_string();
    let (status, env) = send(
        &h.service,
        json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 0}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        env,
        json!({"ok": false, "routeId": "r1", "code": "not_managed",
               "error": "TaskFlow is not managed by this webhook surface.",
               "result": {"applied": false, "code": "not_managed", "current": flow.to_json()}})
    );
    assert_eq!(flow.to_json()["syncMode"], "task_mirrored");
    let (status, env) = send(
        &h.service,
        json!({"action": "run_task", "flowId": fid, "runtime": "subagent", "task": "t"}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(env["code"], "not_managed");
    assert_eq!(env["error"], "Flow does not accept managed child tasks.");
    assert_eq!(env["result"]["created"], false);
    assert_eq!(h.store.task_count(), 0);
}

#[test]
fn sixteen_threads_racing_on_one_revision_have_exactly_one_winner() {
    let store = MemoryStore::new();
    let flow = store
        .create_flow(OWNER, NewFlow::new("c", "g"))
        .now_or_never()
        .unwrap()
        .unwrap();
    let fid = flow.id_string();
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let (store, fid, barrier) = (store.clone(), fid.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mutation = Mutation::Finish {
                    state_json: Some(json!({"winner": i})),
                };
                store
                    .mutate_flow(OWNER, &fid, 0, mutation)
                    .now_or_never()
                    .unwrap()
                    .unwrap()
            })
        })
        .collect();
    let outcomes: Vec<MutationOutcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<&Flow> = outcomes
        .iter()
        .filter_map(|o| match o {
            MutationOutcome::Applied(flow) => Some(flow),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1);
    let conflicts = outcomes
        .iter()
        .filter(|o| matches!(o, MutationOutcome::RevisionConflict(_)))
        .count();
    assert_eq!(conflicts, 15);
    let stored = store
        .get_flow(OWNER, &fid)
        .now_or_never()
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(stored.revision, 1);
    assert_eq!(&stored, winners[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_webhook_calls_racing_through_the_service_have_one_winner() {
    let h = harness();
    let fid = id(&create(&h, json!({})).await);
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let (service, fid, barrier) = (h.service.clone(), fid.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                send(
                    &service,
                    json!({"action": "set_waiting", "flowId": fid, "expectedRevision": 0,
                           "currentStep": format!("writer {i}")}),
                )
                .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap().0);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [[200].as_slice(), &[409; 15]].concat());
    let flow = h.store.get_flow(OWNER, &fid).await.unwrap().unwrap();
    assert_eq!(flow.revision, 1);
}

// ---------------------------------------------------------------- run_task

async fn run_task(h: &Harness, fid: &str, extra: Value) -> (u16, Value) {
    let mut body =
        json!({"action": "run_task", "flowId": fid, "runtime": "subagent", "task": "do it"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    send(&h.service, body).await
}

#[tokio::test]
async fn run_task_creates_a_task_with_every_field() {
    let h = harness();
    let fid = id(&create(&h, json!({})).await);
    h.clock.advance(3);
    let (status, env) = run_task(
        &h,
        &fid,
        json!({"runtime": "acp", "sourceId": "src", "childSessionKey": "agent:main:sub",
               "parentTaskId": "p", "agentId": "a", "runId": "run-1", "label": "L",
               "preferMetadata": true, "notifyPolicy": "done_only", "status": "running",
               "startedAt": 5, "lastEventAt": 6, "progressSummary": "half"}),
    )
    .await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["result"]["created"], true);
    assert_eq!(env["result"]["flow"]["flowId"], fid.as_str());
    assert_eq!(env["result"]["flow"]["revision"], 0);
    let task = &env["result"]["task"];
    let task_id = task["taskId"].as_str().unwrap();
    assert_eq!(
        *task,
        json!({"taskId": task_id, "runtime": "acp", "sourceId": "src",
               "childSessionKey": "agent:main:sub", "parentFlowId": fid, "parentTaskId": "p",
               "agentId": "a", "runId": "run-1", "label": "L", "scopeKind": "session",
               "task": "do it", "status": "running", "deliveryStatus": "pending",
               "notifyPolicy": "done_only", "createdAt": T0 + 3, "startedAt": 5,
               "lastEventAt": 6, "progressSummary": "half"})
    );

    let (_, env) = run_task(&h, &fid, json!({})).await;
    let task = &env["result"]["task"];
    assert_eq!(task["status"], "queued");
    assert_eq!(task["notifyPolicy"], "state_changes");
    for absent in [
        "startedAt",
        "lastEventAt",
        "progressSummary",
        "runId",
        "childSessionKey",
    ] {
        assert!(task.get(absent).is_none(), "{absent}");
    }
    // A running task without startedAt starts now.
    let (_, env) = run_task(&h, &fid, json!({"status": "running"})).await;
    assert_eq!(env["result"]["task"]["startedAt"], T0 + 3);
}

#[tokio::test]
async fn run_task_is_idempotent_on_run_id() {
    let h = harness();
    let fid = id(&create(&h, json!({})).await);
    let first = run_task(&h, &fid, json!({"runId": "r", "label": "l"})).await;
    let again = run_task(&h, &fid, json!({"runId": "r", "label": "l"})).await;
    assert_eq!(first, again);
    let summary = |h: &Harness| {
        let fid = fid.clone();
        let service = h.service.clone();
        async move {
            send(
                &service,
                json!({"action": "get_task_summary", "flowId": fid}),
            )
            .await
            .1["result"]["summary"]["total"]
                .clone()
        }
    };
    assert_eq!(summary(&h).await, 1);
    // Any difference in runtime, child session, label or task makes a new task.
    for extra in [
        json!({"runId": "r", "label": "l", "runtime": "acp"}),
        json!({"runId": "r", "label": "l", "childSessionKey": "agent:main:x"}),
        json!({"runId": "r", "label": "other"}),
        json!({"runId": "r", "label": "l", "task": "else"}),
        json!({"runId": "r2", "label": "l"}),
    ] {
        let (status, env) = run_task(&h, &fid, extra.clone()).await;
        assert_eq!(status, 200);
        assert_ne!(
            env["result"]["task"]["taskId"], first.1["result"]["task"]["taskId"],
            "{extra}"
        );
    }
    assert_eq!(summary(&h).await, 6);
    // ... and each of those is idempotent in turn; without runId nothing is.
    let (_, env) = run_task(&h, &fid, json!({"runId": "r", "label": "other"})).await;
    assert_eq!(env["result"]["created"], true);
    run_task(&h, &fid, json!({})).await;
    run_task(&h, &fid, json!({})).await;
    assert_eq!(summary(&h).await, 8);
}

#[tokio::test]
async fn run_task_refusals_in_order() {
    let h = harness();
    let missing = "00000000-0000-4000-8000-000000000000";
    let (status, env) = run_task(&h, missing, json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(
        env,
        json!({"ok": false, "routeId": "r1", "code": "not_found", "error": "TaskFlow not found.",
               "result": {"created": false, "found": false, "reason": "TaskFlow not found."}})
    );

    // Cancel requested beats terminal.
    let fid = id(&create(&h, json!({})).await);
    send(
        &h.service,
        json!({"action": "request_cancel", "flowId": fid, "expectedRevision": 0}),
    )
    .await;
    send(
        &h.service,
        json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 1}),
    )
    .await;
    let (status, env) = run_task(&h, &fid, json!({})).await;
    assert_eq!(status, 409);
    assert_eq!(env["code"], "cancel_requested");
    assert_eq!(
        env["error"],
        "Flow cancellation has already been requested."
    );
    assert_eq!(
        env["result"]["reason"],
        "Flow cancellation has already been requested."
    );
    assert_eq!(env["result"]["flow"]["flowId"], fid.as_str());

    for (end, status_text) in [("finish_flow", "succeeded"), ("fail_flow", "failed")] {
        let fid = id(&create(&h, json!({})).await);
        send(
            &h.service,
            json!({"action": end, "flowId": fid, "expectedRevision": 0}),
        )
        .await;
        let (status, env) = run_task(&h, &fid, json!({})).await;
        assert_eq!(status, 409);
        assert_eq!(env["code"], "terminal");
        assert_eq!(env["error"], format!("Flow is already {status_text}."));
    }
    // blocked is not terminal.
    let fid = id(&create(&h, json!({"status": "blocked"})).await);
    assert_eq!(run_task(&h, &fid, json!({})).await.0, 200);
    assert_eq!(h.store.task_count(), 1);
}

#[tokio::test]
async fn child_session_policy_per_route() {
    let h = harness();
    let fid = id(&create(&h, json!({})).await);
    let forbidden = json!({"ok": false, "routeId": "r1", "code": "child_session_forbidden",
        "error": "childSessionKey is outside this route's session scope.",
        "result": {"created": false, "reason": "childSessionKey is outside this route's session scope."}});
    // same-agent (default).
    assert_eq!(
        run_task(&h, &fid, json!({"childSessionKey": "agent:main:x"}))
            .await
            .0,
        200
    );
    assert_eq!(
        run_task(&h, &fid, json!({"childSessionKey": "agent:ops:x"})).await,
        (403, forbidden.clone())
    );
    // Policy runs before the store: a missing flow still answers 403.
    assert_eq!(
        run_task(
            &h,
            "00000000-0000-4000-8000-000000000000",
            json!({"childSessionKey": "x"})
        )
        .await
        .0,
        403
    );
    let with = |policy: ChildSessionPolicy| {
        TaskFlowActionService::new(
            h.store.clone(),
            TaskFlowRoute::new("r1", OWNER).child_sessions(policy),
        )
    };
    let body = |child: &str| json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t", "childSessionKey": child});
    let descendant = with(ChildSessionPolicy::Descendant);
    assert_eq!(send(&descendant, body("agent:main:hooks:1")).await.0, 200);
    assert_eq!(
        send(&descendant, body("agent:main:x")).await,
        (403, forbidden.clone())
    );
    let any = with(ChildSessionPolicy::Any);
    assert_eq!(send(&any, body("agent:ops:x")).await.0, 200);
    let list = with(ChildSessionPolicy::Prefixes(vec!["cron:".into()]));
    assert_eq!(send(&list, body("cron:nightly")).await.0, 200);
    assert_eq!(send(&list, body("agent:main:x")).await.0, 403);
    assert_eq!(h.store.task_count(), 4);
}

#[tokio::test]
async fn running_only_fields_rule() {
    let h = harness();
    let fid = id(&create(&h, json!({})).await);
    let rule = "status: status must be running when startedAt, lastEventAt, or progressSummary is provided";
    for field in [
        json!({"startedAt": 1}),
        json!({"lastEventAt": 1}),
        json!({"progressSummary": "p"}),
        json!({"startedAt": null}),
        json!({"lastEventAt": null}),
        json!({"progressSummary": null}),
    ] {
        for status in [None, Some("queued")] {
            let mut extra = field.clone();
            if let Some(status) = status {
                extra["status"] = json!(status);
            }
            let (code, env) = run_task(&h, &fid, extra.clone()).await;
            assert_eq!(code, 400, "{extra}");
            assert_eq!(
                env,
                json!({"ok": false, "code": "invalid_request", "error": rule}),
                "{extra}"
            );
        }
        let mut extra = field.clone();
        extra["status"] = json!("running");
        assert_eq!(run_task(&h, &fid, extra.clone()).await.0, 200, "{extra}");
    }
    assert_eq!(h.store.task_count(), 6);
}

// ---------------------------------------------------------------- cancel_flow

#[derive(Debug)]
struct LeaveRunningActive;

impl CancelHook for LeaveRunningActive {
    fn cancel_task<'a>(&'a self, task: &'a Task) -> tower_webhooks::taskflow::CancelFuture<'a> {
        Box::pin(std::future::ready(if task.status == TaskStatus::Running {
            ChildCancel::StillActive
        } else {
            ChildCancel::Cancelled
        }))
    }
}

#[tokio::test]
async fn cancel_flow_missing_and_terminal() {
    let h = harness();
    let (status, env) = send(
        &h.service,
        json!({"action": "cancel_flow", "flowId": "00000000-0000-4000-8000-000000000000"}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        env,
        json!({"ok": false, "routeId": "r1", "code": "not_found", "error": "TaskFlow not found.",
               "result": {"found": false, "cancelled": false, "reason": "TaskFlow not found."}})
    );

    let fid = id(&create(&h, json!({})).await);
    run_task(&h, &fid, json!({})).await;
    let (_, env) = send(
        &h.service,
        json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 0}),
    )
    .await;
    let flow = env["result"]["flow"].clone();
    let tasks = snapshot(&h.store).await[0]["tasks"].clone();
    let (status, env) = send(&h.service, json!({"action": "cancel_flow", "flowId": fid})).await;
    assert_eq!(status, 409);
    assert_eq!(
        env,
        json!({"ok": false, "routeId": "r1", "code": "terminal", "error": "Flow is already succeeded.",
               "result": {"found": true, "cancelled": false, "reason": "Flow is already succeeded.",
                          "flow": flow, "tasks": tasks}})
    );
}

#[tokio::test]
async fn cancel_flow_cancels_active_children() {
    let h = harness();
    let fid = id(&create(&h, json!({"status": "running"})).await);
    run_task(&h, &fid, json!({})).await;
    run_task(&h, &fid, json!({"status": "running"})).await;
    let (_, env) = run_task(&h, &fid, json!({})).await;
    let done = env["result"]["task"]["taskId"].as_str().unwrap().to_owned();
    assert!(matches!(
        h.store.finish_task(&done).await,
        Ok(TaskUpdateOutcome::Updated(_))
    ));
    h.clock.advance(4);
    let (status, env) = send(&h.service, json!({"action": "cancel_flow", "flowId": fid})).await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["ok"], true);
    assert!(env.get("code").is_none());
    let result = &env["result"];
    assert_eq!(result["found"], true);
    assert_eq!(result["cancelled"], true);
    assert_eq!(result["flow"]["status"], "cancelled");
    assert_eq!(
        result["flow"]["revision"], 2,
        "cancel requested +1, cancelled +1"
    );
    assert_eq!(result["flow"]["cancelRequestedAt"], T0 + 4);
    assert_eq!(result["flow"]["endedAt"], T0 + 4);
    let statuses: Vec<&str> = result["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["cancelled", "cancelled", "succeeded"]);
    assert_eq!(result["tasks"][0]["endedAt"], T0 + 4);
    // A second cancel meets a terminal flow.
    let (status, env) = send(&h.service, json!({"action": "cancel_flow", "flowId": fid})).await;
    assert_eq!((status, env["code"].clone()), (409, json!("terminal")));
    assert_eq!(env["error"], "Flow is already cancelled.");
}

#[tokio::test]
async fn cancel_flow_with_a_hook_that_leaves_a_child_active() {
    let h = harness_with(MemoryStoreConfig::default(), Arc::new(LeaveRunningActive));
    let fid = id(&create(&h, json!({})).await);
    run_task(&h, &fid, json!({})).await;
    let (_, env) = run_task(&h, &fid, json!({"status": "running"})).await;
    let running = env["result"]["task"]["taskId"].as_str().unwrap().to_owned();
    let (status, env) = send(&h.service, json!({"action": "cancel_flow", "flowId": fid})).await;
    assert_eq!(status, 202);
    assert_eq!(env["ok"], true);
    assert_eq!(env["code"], "cancel_pending");
    assert_eq!(env["routeId"], "r1");
    let result = &env["result"];
    assert_eq!(result["found"], true);
    assert_eq!(result["cancelled"], false);
    assert_eq!(
        result["reason"],
        "One or more child tasks are still active."
    );
    assert_eq!(result["flow"]["status"], "queued");
    assert_eq!(result["flow"]["revision"], 1);
    assert_eq!(result["tasks"][0]["status"], "cancelled");
    assert_eq!(result["tasks"][1]["status"], "running");

    // Retrying while pending does not bump the revision again.
    let (status, env) = send(&h.service, json!({"action": "cancel_flow", "flowId": fid})).await;
    assert_eq!(status, 202);
    assert_eq!(env["result"]["flow"]["revision"], 1);
    // run_task is refused while cancellation is pending.
    assert_eq!(
        run_task(&h, &fid, json!({})).await.1["code"],
        "cancel_requested"
    );

    // When the executor reports the last child's end, the flow becomes cancelled.
    h.clock.advance(9);
    assert!(matches!(
        h.store.finish_task(&running).await,
        Ok(TaskUpdateOutcome::Updated(_))
    ));
    let flow = h.store.get_flow(OWNER, &fid).await.unwrap().unwrap();
    assert_eq!(flow.status, tower_webhooks::FlowStatus::Cancelled);
    assert_eq!(flow.ended_at, Some(T0 + 9));
    assert_eq!(flow.revision, 2);
}

// ---------------------------------------------------------------- summary and embedding API

#[tokio::test]
async fn task_summary_and_embedding_side_task_updates() {
    let h = harness();
    let fid = id(&create(&h, json!({})).await);
    let mut ids = Vec::new();
    for runtime in ["subagent", "subagent", "acp", "acp", "subagent", "acp"] {
        let (_, env) = run_task(&h, &fid, json!({"runtime": runtime})).await;
        ids.push(env["result"]["task"]["taskId"].as_str().unwrap().to_owned());
    }
    let s = &h.store;
    h.clock.advance(2);
    let started = s.start_task(&ids[0]).await.unwrap();
    let TaskUpdateOutcome::Updated(task) = started else {
        panic!("{started:?}")
    };
    assert_eq!(
        (task.status, task.started_at, task.last_event_at),
        (TaskStatus::Running, Some(T0 + 2), Some(T0 + 2))
    );
    let TaskUpdateOutcome::Updated(task) = s
        .report_progress(&ids[0], Some("half".into()))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(task.progress_summary.as_deref(), Some("half"));
    assert!(matches!(
        s.start_task(&ids[0]).await.unwrap(),
        TaskUpdateOutcome::Rejected(_)
    ));
    assert!(matches!(
        s.fail_task(&ids[1]).await.unwrap(),
        TaskUpdateOutcome::Updated(_)
    ));
    assert!(matches!(
        s.time_out_task(&ids[2]).await.unwrap(),
        TaskUpdateOutcome::Updated(_)
    ));
    assert!(matches!(
        s.mark_task_lost(&ids[3]).await.unwrap(),
        TaskUpdateOutcome::Updated(_)
    ));
    assert!(matches!(
        s.finish_task(&ids[4]).await.unwrap(),
        TaskUpdateOutcome::Updated(_)
    ));
    // Terminal tasks stay terminal.
    assert!(matches!(
        s.finish_task(&ids[1]).await.unwrap(),
        TaskUpdateOutcome::Rejected(_)
    ));
    assert!(matches!(
        s.report_progress(&ids[1], None).await.unwrap(),
        TaskUpdateOutcome::Rejected(_)
    ));
    assert_eq!(
        s.finish_task("nope").await.unwrap(),
        TaskUpdateOutcome::NotFound
    );
    assert_eq!(
        s.get_task(&ids[4]).await.unwrap().unwrap().status,
        TaskStatus::Succeeded
    );

    let (status, env) = send(
        &h.service,
        json!({"action": "get_task_summary", "flowId": fid}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        env,
        json!({"ok": true, "routeId": "r1", "result": {"summary": {
            "total": 6, "active": 2, "terminal": 4, "failures": 3,
            "byStatus": {"queued": 1, "running": 1, "succeeded": 1, "failed": 1, "timed_out": 1,
                         "cancelled": 0, "lost": 1},
            "byRuntime": {"subagent": 3, "acp": 3, "cli": 0, "cron": 0}}}})
    );
    let (_, env) = send(
        &h.service,
        json!({"action": "get_task_summary", "flowId": "00000000-0000-4000-8000-000000000000"}),
    )
    .await;
    assert_eq!(env["result"], json!({"summary": null}));

    // Ending a flow from the Rust side: no revision check, revision +1.
    let flow = s
        .fail_flow(&fid, Some(json!({"why": "x"})))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (flow.status, flow.revision),
        (tower_webhooks::FlowStatus::Failed, 1)
    );
    let flow = s
        .end_flow(&fid, FlowEnd::Lost, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(flow.status, tower_webhooks::FlowStatus::Lost);
    assert_eq!(flow.state_json, Some(json!({"why": "x"})));
    assert!(s.finish_flow("nope", None).await.unwrap().is_none());
}

// ---------------------------------------------------------------- caps, retention, notifications

#[tokio::test]
async fn caps_answer_507_and_change_nothing() {
    let h = harness_with(
        MemoryStoreConfig::new()
            .max_flows_per_owner(Some(2))
            .max_tasks_per_flow(Some(1)),
        Arc::new(tower_webhooks::CancelImmediately),
    );
    let fid = id(&create(&h, json!({})).await);
    create(&h, json!({})).await;
    let (status, env) = send(&h.service, json!({"action": "create_flow", "goal": "g"})).await;
    assert_eq!(status, 507);
    assert_eq!(
        env,
        json!({"ok": false, "routeId": "r1", "code": "capacity_exceeded", "error": "TaskFlow store is full.",
               "result": {"created": false, "reason": "TaskFlow store is full."}})
    );
    assert_eq!(h.store.flow_count(), 2);
    // Another owner has its own budget.
    let other =
        TaskFlowActionService::new(h.store.clone(), TaskFlowRoute::new("r2", "agent:ops:x"));
    assert_eq!(
        send(&other, json!({"action": "create_flow", "goal": "g"}))
            .await
            .0,
        200
    );

    assert_eq!(run_task(&h, &fid, json!({"runId": "a"})).await.0, 200);
    let (status, env) = run_task(&h, &fid, json!({"runId": "b"})).await;
    assert_eq!(status, 507);
    assert_eq!(env["code"], "capacity_exceeded");
    // An idempotent repeat is not a new task: allowed at the cap.
    assert_eq!(run_task(&h, &fid, json!({"runId": "a"})).await.0, 200);
    assert_eq!(h.store.task_count(), 1);
}

#[tokio::test]
async fn retention_prunes_terminal_flows_and_their_tasks() {
    let day = 24 * 60 * 60 * 1000;
    let h = harness();
    let done = id(&create(&h, json!({"goal": "done"})).await);
    let open = id(&create(&h, json!({"goal": "open"})).await);
    run_task(&h, &done, json!({})).await;
    send(
        &h.service,
        json!({"action": "finish_flow", "flowId": done, "expectedRevision": 0}),
    )
    .await;
    let mut events = h.store.subscribe();

    h.clock.advance(7 * day - 1);
    let (_, env) = send(&h.service, json!({"action": "get_flow", "flowId": done})).await;
    assert_eq!(
        env["result"]["flow"]["goal"], "done",
        "kept for exactly the retention period"
    );
    assert_eq!(h.store.task_count(), 1);

    h.clock.advance(1);
    let (_, env) = send(&h.service, json!({"action": "get_flow", "flowId": done})).await;
    assert_eq!(env["result"], json!({"flow": null}));
    assert_eq!(h.store.task_count(), 0);
    assert_eq!(h.store.flow_count(), 1);
    let (_, env) = send(&h.service, json!({"action": "get_flow", "flowId": open})).await;
    assert_eq!(
        env["result"]["flow"]["goal"], "open",
        "non-terminal flows never expire"
    );
    let removed: Vec<_> = std::iter::from_fn(|| events.try_recv()).collect();
    let done_id = Uuid::parse_str(&done).unwrap();
    assert!(
        matches!(removed[..], [
            ChangeEvent::Changed(Change { kind: ChangeKind::TaskRemoved, flow_id: a, task_id: Some(_) }),
            ChangeEvent::Changed(Change { kind: ChangeKind::FlowRemoved, flow_id: b, task_id: None }),
        ] if a == done_id && b == done_id),
        "{removed:?}"
    );

    // A pruned flow frees its slot under the cap.
    h.clock.advance(100 * day);
    assert_eq!(h.store.sweep_expired().await.unwrap(), 0);
}

#[tokio::test]
async fn retention_custom_forced_and_off() {
    let h = harness_with(
        MemoryStoreConfig::new().retention(Some(Duration::from_millis(50))),
        Arc::new(tower_webhooks::CancelImmediately),
    );
    for _ in 0..3 {
        let fid = id(&create(&h, json!({})).await);
        send(
            &h.service,
            json!({"action": "fail_flow", "flowId": fid, "expectedRevision": 0}),
        )
        .await;
    }
    h.clock.advance(49);
    assert_eq!(h.store.sweep_expired().await.unwrap(), 0);
    h.clock.advance(1);
    assert_eq!(h.store.sweep_expired().await.unwrap(), 3);
    assert_eq!(h.store.flow_count(), 0);

    let h = harness_with(
        MemoryStoreConfig::new().retention(None),
        Arc::new(tower_webhooks::CancelImmediately),
    );
    let fid = id(&create(&h, json!({})).await);
    send(
        &h.service,
        json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 0}),
    )
    .await;
    h.clock.advance(u64::MAX / 4);
    assert_eq!(h.store.sweep_expired().await.unwrap(), 0);
    assert_eq!(h.store.flow_count(), 1);
}

#[tokio::test]
async fn notifications_name_each_committed_change_by_id() {
    let h = harness();
    let mut events = h.store.subscribe();
    let fid = id(&create(&h, json!({})).await);
    let (_, env) = run_task(&h, &fid, json!({})).await;
    let tid = env["result"]["task"]["taskId"].as_str().unwrap().to_owned();
    h.store.start_task(&tid).await.unwrap();
    send(
        &h.service,
        json!({"action": "set_waiting", "flowId": fid, "expectedRevision": 0}),
    )
    .await;
    send(&h.service, json!({"action": "cancel_flow", "flowId": fid})).await;
    // A refused change sends nothing.
    send(
        &h.service,
        json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 0}),
    )
    .await;

    let mut seen = Vec::new();
    while let Some(event) = events.try_recv() {
        seen.push(match event {
            ChangeEvent::Changed(change) => change.encode().replace(&fid, "F").replace(&tid, "T"),
            ChangeEvent::Lagged => "lagged".to_owned(),
        });
    }
    assert_eq!(
        seen,
        [
            "flow_created F",
            "task_created F T",
            "task_updated F T",
            "flow_updated F",
            // cancel_flow: the request is committed, then the hook's answer.
            "flow_updated F",
            "task_updated F T",
            "flow_updated F",
        ]
    );
}

// ---------------------------------------------------------------- bad input

#[tokio::test]
async fn undecodable_bodies_are_plain_400() {
    let h = harness();
    create(&h, json!({})).await;
    let before = snapshot(&h.store).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies: Vec<Bytes> = vec![
        Bytes::new(),
        Bytes::from_static(b"   \n\t "),
        Bytes::from_static(b"\xff\xfe{}"),
        Bytes::from_static(b"{\"action\":\"list_flows\"\xc3}"),
        Bytes::from_static(b"{not json}"),
        Bytes::from_static(b"{\"action\":\"list_flows\"} trailing"),
        Bytes::from_static(
            b"{\"action\":\"get_flow\",\"flowId\":\"x\",\"expectedRevision\":1e400}",
        ),
        Bytes::from(deep),
    ];
    for body in bodies {
        let (status, content_type, value) = send_raw(&h.service, body.clone()).await;
        assert_eq!(status, 400, "{body:?}");
        assert_eq!(content_type, "text/plain; charset=utf-8");
        assert_eq!(value, json!("invalid request body"));
    }
    // Surrounding whitespace and a byte-order mark are trimmed.
    let (status, _, _) = send_raw(&h.service, "\u{feff}  {\"action\":\"list_flows\"}\n").await;
    assert_eq!(status, 200);
    assert_eq!(snapshot(&h.store).await, before);
}

#[tokio::test]
async fn schema_violations_have_exact_messages_and_change_nothing() {
    let h = harness();
    let fid = id(&create(&h, json!({})).await);
    run_task(&h, &fid, json!({})).await;
    let before = snapshot(&h.store).await;
    let long = "x".repeat(65_537);
    let long_key = "k".repeat(200);
    let cases: Vec<(Value, String)> = vec![
        (json!([]), "request body must be a JSON object".into()),
        (json!("create_flow"), "request body must be a JSON object".into()),
        (json!(null), "request body must be a JSON object".into()),
        (json!({}), "action: required".into()),
        (json!({"action": 1}), "action: must be a string".into()),
        (json!({"action": null}), "action: must be a string".into()),
        (json!({"action": " "}), "action: must be a non-empty string".into()),
        (json!({"action": "delete_flow"}), "action: must be one of create_flow, get_flow, list_flows, find_latest_flow, resolve_flow, get_task_summary, set_waiting, resume_flow, finish_flow, fail_flow, request_cancel, cancel_flow, run_task".into()),
        (json!({"action": "Create_Flow", "goal": "g"}), "action: must be one of create_flow, get_flow, list_flows, find_latest_flow, resolve_flow, get_task_summary, set_waiting, resume_flow, finish_flow, fail_flow, request_cancel, cancel_flow, run_task".into()),
        (json!({"action": "create_flow"}), "goal: required".into()),
        (json!({"action": "create_flow", "goal": ""}), "goal: must be a non-empty string".into()),
        (json!({"action": "create_flow", "goal": " \t"}), "goal: must be a non-empty string".into()),
        (json!({"action": "create_flow", "goal": 7}), "goal: must be a non-empty string".into()),
        (json!({"action": "create_flow", "goal": null}), "goal: must be a non-empty string".into()),
        (json!({"action": "create_flow", "goal": long}), "goal: must be at most 65536 bytes".into()),
        (json!({"action": "create_flow", "goal": "g", "foo": 1}), "foo: unknown field".into()),
        (json!({"action": "create_flow", "foo": 1}), "foo: unknown field".into()),
        (json!({"action": "create_flow", "goal": "g", long_key.clone(): 1}), format!("{}…: unknown field", &long_key[..64])),
        (json!({"action": "create_flow", "goal": "g", "ownerKey": "agent:ops:x"}), "ownerKey: unknown field".into()),
        (json!({"action": "create_flow", "goal": "g", "status": "succeeded"}), "status: must be one of queued, running, waiting, blocked".into()),
        (json!({"action": "create_flow", "goal": "g", "status": null}), "status: must be one of queued, running, waiting, blocked".into()),
        (json!({"action": "create_flow", "goal": "g", "notifyPolicy": "loud"}), "notifyPolicy: must be one of done_only, state_changes, silent".into()),
        (json!({"action": "create_flow", "goal": "g", "controllerId": ""}), "controllerId: must be a non-empty string".into()),
        (json!({"action": "create_flow", "goal": "g", "currentStep": ["a"]}), "currentStep: must be a non-empty string".into()),
        (json!({"action": "list_flows", "flowId": fid}), "flowId: unknown field".into()),
        (json!({"action": "find_latest_flow", "x": null}), "x: unknown field".into()),
        (json!({"action": "get_flow"}), "flowId: required".into()),
        (json!({"action": "get_flow", "flowId": null}), "flowId: must be a non-empty string".into()),
        (json!({"action": "get_flow", "flowId": 12}), "flowId: must be a non-empty string".into()),
        (json!({"action": "get_task_summary", "flowId": ""}), "flowId: must be a non-empty string".into()),
        (json!({"action": "cancel_flow", "flowId": fid, "expectedRevision": 0}), "expectedRevision: unknown field".into()),
        (json!({"action": "resolve_flow"}), "token: required".into()),
        (json!({"action": "resolve_flow", "token": ""}), "token: must be a non-empty string".into()),
        (json!({"action": "finish_flow", "flowId": fid}), "expectedRevision: required".into()),
        (json!({"action": "finish_flow", "expectedRevision": 0}), "flowId: required".into()),
        (json!({"action": "finish_flow", "flowId": fid, "expectedRevision": -1}), "expectedRevision: must be an integer >= 0".into()),
        (json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 0.5}), "expectedRevision: must be an integer >= 0".into()),
        (json!({"action": "finish_flow", "flowId": fid, "expectedRevision": "0"}), "expectedRevision: must be an integer >= 0".into()),
        (json!({"action": "finish_flow", "flowId": fid, "expectedRevision": null}), "expectedRevision: must be an integer >= 0".into()),
        (json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 0, "status": "failed"}), "status: unknown field".into()),
        (json!({"action": "set_waiting", "flowId": fid, "expectedRevision": 0, "currentStep": ""}), "currentStep: must be a non-empty string".into()),
        (json!({"action": "set_waiting", "flowId": fid, "expectedRevision": 0, "blockedTaskId": 3}), "blockedTaskId: must be a non-empty string".into()),
        (json!({"action": "set_waiting", "flowId": fid, "expectedRevision": 0, "status": "waiting"}), "status: unknown field".into()),
        (json!({"action": "resume_flow", "flowId": fid, "expectedRevision": 0, "status": "waiting"}), "status: must be one of queued, running".into()),
        (json!({"action": "resume_flow", "flowId": fid, "expectedRevision": 0, "waitJson": {}}), "waitJson: unknown field".into()),
        (json!({"action": "fail_flow", "flowId": fid, "expectedRevision": 0, "blockedSummary": ""}), "blockedSummary: must be a non-empty string".into()),
        (json!({"action": "request_cancel", "flowId": fid, "expectedRevision": 0, "stateJson": 1}), "stateJson: unknown field".into()),
        (json!({"action": "run_task", "flowId": fid, "task": "t"}), "runtime: required".into()),
        (json!({"action": "run_task", "flowId": fid, "runtime": "cli", "task": "t"}), "runtime: must be one of subagent, acp".into()),
        (json!({"action": "run_task", "flowId": fid, "runtime": "subagent"}), "task: required".into()),
        (json!({"action": "run_task", "runtime": "subagent", "task": "t"}), "flowId: required".into()),
        (json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t", "status": "succeeded"}), "status: must be one of queued, running".into()),
        (json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t", "preferMetadata": "yes"}), "preferMetadata: must be a boolean".into()),
        (json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t", "status": "running", "startedAt": -5}), "startedAt: must be an integer >= 0".into()),
        (json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t", "status": "running", "lastEventAt": 1.5}), "lastEventAt: must be an integer >= 0".into()),
        (json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t", "status": "running", "progressSummary": ""}), "progressSummary: must be a non-empty string".into()),
        (json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t", "runId": ""}), "runId: must be a non-empty string".into()),
        (json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t", "notifyPolicy": 1}), "notifyPolicy: must be one of done_only, state_changes, silent".into()),
        (json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t", "requesterSessionKey": "x"}), "requesterSessionKey: unknown field".into()),
    ];
    for (body, error) in cases {
        let (status, env) = send(&h.service, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            env,
            json!({"ok": false, "code": "invalid_request", "error": error}),
            "{body}"
        );
    }
    // Numbers beyond u64 parse as floats and are refused by range, not by a panic.
    let (status, _, env) = send_raw(
        &h.service,
        format!(
            r#"{{"action":"finish_flow","flowId":"{fid}","expectedRevision":18446744073709551616}}"#
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        env["error"],
        "expectedRevision: must be an integer from 0 to 9007199254740991"
    );
    assert_eq!(snapshot(&h.store).await, before);
}

#[tokio::test]
async fn long_strings_up_to_the_cap_and_large_revisions_are_fine() {
    let h = harness();
    let goal = "é".repeat(32_768);
    let flow = create(&h, json!({"goal": goal})).await;
    assert_eq!(flow["goal"].as_str().unwrap().len(), 65_536);
    let (status, env) = send(
        &h.service,
        json!({"action": "finish_flow", "flowId": id(&flow), "expectedRevision": tower_webhooks::taskflow::MAX_SAFE_INTEGER}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(env["code"], "revision_conflict");
}

// ---------------------------------------------------------------- persist_failed

/// A backend that fails every write, to prove the 503 mapping and that the service is generic.
#[derive(Debug, Default)]
struct BrokenStore {
    inner: MemoryStore,
}

impl TaskFlowStore for BrokenStore {
    fn backend(&self) -> &'static str {
        "broken"
    }
    async fn flow_by_id(&self, f: &str) -> Result<Option<Flow>, StoreError> {
        self.inner.flow_by_id(f).await
    }
    async fn sweep_expired(&self) -> Result<usize, StoreError> {
        Err(StoreError::PersistFailed("disk on fire".into()))
    }
    async fn create_flow(&self, _: &str, _: NewFlow) -> Result<Flow, StoreError> {
        Err(StoreError::PersistFailed("disk on fire".into()))
    }
    async fn get_flow(&self, o: &str, f: &str) -> Result<Option<Flow>, StoreError> {
        self.inner.get_flow(o, f).await
    }
    async fn list_flows(&self, _: &str) -> Result<Vec<Arc<Flow>>, StoreError> {
        Err(StoreError::PersistFailed("read failed".into()))
    }
    async fn find_latest_flow(&self, o: &str) -> Result<Option<Flow>, StoreError> {
        self.inner.find_latest_flow(o).await
    }
    async fn resolve_flow(&self, o: &str, t: &str) -> Result<Option<Flow>, StoreError> {
        self.inner.resolve_flow(o, t).await
    }
    async fn mutate_flow(
        &self,
        _: &str,
        _: &str,
        _: u64,
        _: Mutation,
    ) -> Result<MutationOutcome, StoreError> {
        // The connection went away with the commit in flight: still `persist_failed` to the caller.
        Err(StoreError::OutcomeUnknown("disk on fire".into()))
    }
    async fn run_task(
        &self,
        _: &str,
        _: &str,
        _: NewTask,
    ) -> Result<tower_webhooks::RunTaskOutcome, StoreError> {
        Err(StoreError::PersistFailed("disk on fire".into()))
    }
    async fn cancel_flow(
        &self,
        _: &str,
        _: &str,
    ) -> Result<tower_webhooks::CancelOutcome, StoreError> {
        Err(StoreError::PersistFailed("disk on fire".into()))
    }
    async fn task_summary(
        &self,
        o: &str,
        f: &str,
    ) -> Result<Option<tower_webhooks::TaskSummary>, StoreError> {
        self.inner.task_summary(o, f).await
    }
    async fn list_tasks(&self, o: &str, f: &str) -> Result<Option<Vec<Task>>, StoreError> {
        self.inner.list_tasks(o, f).await
    }
    async fn get_task(&self, t: &str) -> Result<Option<Task>, StoreError> {
        self.inner.get_task(t).await
    }
    async fn update_task(
        &self,
        t: &str,
        u: tower_webhooks::TaskUpdate,
    ) -> Result<TaskUpdateOutcome, StoreError> {
        self.inner.update_task(t, u).await
    }
    async fn end_flow(
        &self,
        f: &str,
        e: FlowEnd,
        s: Option<Value>,
    ) -> Result<Option<Flow>, StoreError> {
        self.inner.end_flow(f, e, s).await
    }
}

#[tokio::test]
async fn persist_failures_are_503_without_backend_details() {
    let service =
        TaskFlowActionService::new(BrokenStore::default(), TaskFlowRoute::new("r1", OWNER));
    let fid = "00000000-0000-4000-8000-000000000000";
    let cases = [
        (
            json!({"action": "create_flow", "goal": "g"}),
            json!({"created": false, "reason": "TaskFlow persistence failed."}),
        ),
        (
            json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 0}),
            json!({"applied": false, "code": "persist_failed"}),
        ),
        (
            json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t"}),
            json!({"created": false, "reason": "TaskFlow persistence failed."}),
        ),
        (
            json!({"action": "cancel_flow", "flowId": fid}),
            json!({"cancelled": false, "reason": "TaskFlow persistence failed."}),
        ),
        (json!({"action": "list_flows"}), Value::Null),
    ];
    for (body, result) in cases {
        let (status, env) = send(&service, body.clone()).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(
            env,
            json!({"ok": false, "routeId": "r1", "code": "persist_failed",
                   "error": "TaskFlow persistence failed.", "result": result}),
            "{body}"
        );
        assert!(!env.to_string().contains("fire"));
    }
}

// ---------------------------------------------------------------- types

static_assertions::assert_impl_all!(TaskFlowActionService<MemoryStore>: Clone, Send, Sync, std::fmt::Debug);
static_assertions::assert_impl_all!(MemoryStore: Clone, Send, Sync, std::fmt::Debug);
static_assertions::assert_impl_all!(tower_webhooks::TaskFlowFuture: Send);

#[test]
fn route_debug_hides_the_session_key() {
    let route = TaskFlowRoute::new("r1", "agent:secret-owner:x");
    assert!(!format!("{route:?}").contains("secret-owner"));
    let service = TaskFlowActionService::new(MemoryStore::new(), route);
    assert!(!format!("{service:?}").contains("secret-owner"));
}
