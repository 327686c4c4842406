//! Regressions of the TaskFlow store and action parsing: the per-owner byte cap, `limits.store`,
//! trimmed nullable strings and integral numbers written as floats (SPEC §2.5, §3).

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_webhooks::{
    BufferedBody, CancelImmediately, ManualClock, MemoryStore, MemoryStoreConfig,
    TaskFlowActionService, TaskFlowRoute, TaskFlowStore,
};

const OWNER: &str = "agent:main:hooks";
const T0: u64 = 1_700_000_000_000;

#[allow(dead_code)] // the clock is used by the byte-cap tests of a later commit
struct Harness {
    store: MemoryStore,
    clock: Arc<ManualClock>,
    service: TaskFlowActionService<MemoryStore>,
}

fn harness_with(config: MemoryStoreConfig) -> Harness {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::build(config, clock.clone(), Arc::new(CancelImmediately));
    let service = TaskFlowActionService::new(store.clone(), TaskFlowRoute::new("r1", OWNER));
    Harness {
        store,
        clock,
        service,
    }
}

fn harness() -> Harness {
    harness_with(MemoryStoreConfig::default())
}

/// Status and body: the JSON envelope, or the plain-text body as a JSON string.
async fn send_text(h: &Harness, body: impl Into<Bytes>) -> (u16, Value) {
    let request = Request::post("/hook")
        .header("content-type", "application/json")
        .body(BufferedBody::new(body.into()))
        .unwrap();
    let response = h.service.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let value = match response.body().json_value() {
        Some(value) => value,
        None => {
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            Value::String(String::from_utf8(bytes.to_vec()).unwrap())
        }
    };
    (status, value)
}

async fn send(h: &Harness, body: Value) -> (u16, Value) {
    send_text(h, body.to_string()).await
}

async fn create(h: &Harness, extra: Value) -> Value {
    let mut body = json!({"action": "create_flow", "goal": "g"});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let (status, envelope) = send(h, body).await;
    assert_eq!(status, 200, "{envelope}");
    envelope["result"]["flow"].clone()
}

fn id(flow: &Value) -> String {
    flow["flowId"].as_str().unwrap().to_owned()
}

/// Everything an owner has stored, as JSON: the "store unchanged" witness.
async fn stored(store: &MemoryStore) -> Value {
    let mut out = Vec::new();
    for flow in store.list_flows(OWNER).await.unwrap() {
        let tasks = store
            .list_tasks(OWNER, &flow.id_string())
            .await
            .unwrap()
            .unwrap();
        let tasks: Vec<Value> = tasks.iter().map(|t| t.to_json()).collect();
        out.push(json!({"flow": flow.to_json(), "tasks": tasks}));
    }
    Value::Array(out)
}

// ---------------------------------------------------------------- trimmed strings

/// JavaScript's `trim` removes these (a no-break space, a BOM, a line separator), so the original
/// stores the text between them.
const PADDING: &str = " \t\u{a0}\u{feff}\u{2028}";

fn padded(text: &str) -> String {
    format!("{PADDING}{text}{PADDING}")
}

#[tokio::test]
async fn padded_nullable_strings_are_stored_trimmed_in_every_action() {
    let h = harness();
    let flow = create(&h, json!({"currentStep": padded("step one")})).await;
    assert_eq!(flow["currentStep"], "step one", "create_flow");
    let flow_id = id(&flow);

    let (status, envelope) = send(
        &h,
        json!({"action": "set_waiting", "flowId": flow_id, "expectedRevision": 0,
            "currentStep": padded("step two"), "blockedTaskId": padded("task-1"),
            "blockedSummary": padded("needs a human")}),
    )
    .await;
    assert_eq!(status, 200, "{envelope}");
    let flow = &envelope["result"]["flow"];
    assert_eq!(
        (
            &flow["currentStep"],
            &flow["blockedTaskId"],
            &flow["blockedSummary"]
        ),
        (
            &json!("step two"),
            &json!("task-1"),
            &json!("needs a human")
        ),
        "set_waiting"
    );

    let (status, envelope) = send(
        &h,
        json!({"action": "resume_flow", "flowId": flow_id, "expectedRevision": 1,
            "status": "running", "currentStep": padded("step three")}),
    )
    .await;
    assert_eq!(status, 200, "{envelope}");
    assert_eq!(
        envelope["result"]["flow"]["currentStep"], "step three",
        "resume_flow"
    );

    let (status, envelope) = send(
        &h,
        json!({"action": "run_task", "flowId": flow_id, "runtime": "subagent", "task": "t",
            "status": "running", "progressSummary": padded("half way")}),
    )
    .await;
    assert_eq!(status, 200, "{envelope}");
    assert_eq!(
        envelope["result"]["task"]["progressSummary"], "half way",
        "run_task"
    );

    let (status, envelope) = send(
        &h,
        json!({"action": "fail_flow", "flowId": flow_id, "expectedRevision": 2,
            "blockedTaskId": padded("task-2"), "blockedSummary": padded("gave up")}),
    )
    .await;
    assert_eq!(status, 200, "{envelope}");
    let flow = &envelope["result"]["flow"];
    assert_eq!(
        (&flow["blockedTaskId"], &flow["blockedSummary"]),
        (&json!("task-2"), &json!("gave up")),
        "fail_flow"
    );
    let stored_flow = h.store.get_flow(OWNER, &flow_id).await.unwrap().unwrap();
    assert_eq!(stored_flow.blocked_summary.as_deref(), Some("gave up"));
}

#[tokio::test]
async fn a_padded_flow_id_names_the_flow_in_every_action() {
    let h = harness();
    let flow_id = id(&create(&h, json!({})).await);
    let other = id(&create(&h, json!({})).await);
    let padded_id = padded(&flow_id);

    let (status, envelope) = send(&h, json!({"action": "get_flow", "flowId": padded_id})).await;
    assert_eq!(
        (status, id(&envelope["result"]["flow"])),
        (200, flow_id.clone())
    );
    let (status, envelope) = send(
        &h,
        json!({"action": "get_task_summary", "flowId": padded_id}),
    )
    .await;
    assert_eq!(
        (status, &envelope["result"]["summary"]["total"]),
        (200, &json!(0))
    );

    let mutations = [
        json!({"action": "set_waiting", "expectedRevision": 0}),
        json!({"action": "resume_flow", "expectedRevision": 1}),
        json!({"action": "request_cancel", "expectedRevision": 2}),
        json!({"action": "fail_flow", "expectedRevision": 3}),
        json!({"action": "finish_flow", "expectedRevision": 4}),
    ];
    for mut body in mutations {
        body["flowId"] = json!(padded_id);
        let (status, envelope) = send(&h, body.clone()).await;
        assert_eq!(status, 200, "{body}: {envelope}");
        assert_eq!(id(&envelope["result"]["flow"]), flow_id);
    }

    let padded_other = padded(&other);
    let (status, envelope) = send(
        &h,
        json!({"action": "run_task", "flowId": padded_other, "runtime": "acp", "task": "t"}),
    )
    .await;
    assert_eq!(status, 200, "run_task: {envelope}");
    assert_eq!(envelope["result"]["task"]["parentFlowId"], json!(other));
    let (status, envelope) =
        send(&h, json!({"action": "cancel_flow", "flowId": padded_other})).await;
    assert_eq!(status, 200, "cancel_flow: {envelope}");
    assert_eq!(envelope["result"]["flow"]["status"], "cancelled");
}

#[tokio::test]
async fn whitespace_only_trimmed_strings_are_refused_in_every_action() {
    let h = harness();
    let flow_id = id(&create(&h, json!({})).await);
    let cases = [
        ("create_flow", json!({"goal": "g"}), "currentStep"),
        (
            "set_waiting",
            json!({"flowId": flow_id, "expectedRevision": 0}),
            "currentStep",
        ),
        (
            "set_waiting",
            json!({"flowId": flow_id, "expectedRevision": 0}),
            "blockedTaskId",
        ),
        (
            "set_waiting",
            json!({"flowId": flow_id, "expectedRevision": 0}),
            "blockedSummary",
        ),
        (
            "resume_flow",
            json!({"flowId": flow_id, "expectedRevision": 0}),
            "currentStep",
        ),
        (
            "fail_flow",
            json!({"flowId": flow_id, "expectedRevision": 0}),
            "blockedTaskId",
        ),
        (
            "fail_flow",
            json!({"flowId": flow_id, "expectedRevision": 0}),
            "blockedSummary",
        ),
        (
            "run_task",
            json!({"flowId": flow_id, "runtime": "acp", "task": "t", "status": "running"}),
            "progressSummary",
        ),
        ("get_flow", json!({}), "flowId"),
        ("get_task_summary", json!({}), "flowId"),
        ("cancel_flow", json!({}), "flowId"),
        ("finish_flow", json!({"expectedRevision": 0}), "flowId"),
        ("request_cancel", json!({"expectedRevision": 0}), "flowId"),
        ("run_task", json!({"runtime": "acp", "task": "t"}), "flowId"),
    ];
    let before = stored(&h.store).await;
    for (action, fields, field) in cases {
        let mut body = fields;
        body["action"] = json!(action);
        body[field] = json!(PADDING);
        let (status, envelope) = send(&h, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            envelope,
            json!({"ok": false, "code": "invalid_request",
                "error": format!("{field}: must be a non-empty string")}),
            "{body}"
        );
    }
    assert_eq!(stored(&h.store).await, before);
}

#[tokio::test]
async fn next_line_is_not_javascript_whitespace_and_is_kept() {
    // U+0085 is white space to Rust's `trim` but not to JavaScript's: the original keeps it.
    let h = harness();
    let flow = create(&h, json!({"currentStep": "\u{85}"})).await;
    assert_eq!(flow["currentStep"], "\u{85}");
}

// ---------------------------------------------------------------- integral floats

#[tokio::test]
async fn integral_numbers_written_as_floats_are_those_integers() {
    let h = harness();
    let flow_id = id(&create(&h, json!({})).await);
    // Raw text, so the numbers reach the parser exactly as written.
    let revisions = ["0.0", "1e0", "2.000", "30e-1", "-0", "-0.0"];
    // `-0` is `0` to JavaScript (`Number.isInteger(-0) && -0 >= 0`), so it names revision 0 and
    // conflicts with the flow at revision 4.
    for (expected, written) in revisions.iter().enumerate() {
        let body = format!(
            r#"{{"action":"request_cancel","flowId":"{flow_id}","expectedRevision":{written}}}"#
        );
        let (status, envelope) = send_text(&h, body).await;
        if expected < 4 {
            assert_eq!(status, 200, "{written}: {envelope}");
            assert_eq!(envelope["result"]["flow"]["revision"], expected + 1);
        } else {
            assert_eq!(status, 409, "{written}: {envelope}");
            assert_eq!(envelope["code"], "revision_conflict");
        }
    }

    let other = id(&create(&h, json!({})).await);
    let body = format!(
        r#"{{"action":"run_task","flowId":"{other}","runtime":"acp","task":"t","status":"running","startedAt":1700000000000.0,"lastEventAt":1.7000000000010e12}}"#
    );
    let (status, envelope) = send_text(&h, body).await;
    assert_eq!(status, 200, "{envelope}");
    let task = &envelope["result"]["task"];
    assert_eq!(task["startedAt"], json!(1_700_000_000_000_u64));
    assert_eq!(task["lastEventAt"], json!(1_700_000_000_001_u64));
    assert!(task["startedAt"].is_u64(), "answered as an integer: {task}");
}

#[tokio::test]
async fn non_integral_negative_and_unsafe_numbers_are_refused() {
    let h = harness();
    let flow_id = id(&create(&h, json!({})).await);
    let other = id(&create(&h, json!({})).await);
    let before = stored(&h.store).await;
    let not_integer = "must be an integer >= 0";
    let too_large = "must be an integer from 0 to 9007199254740991";
    let cases = [
        ("0.5", not_integer),
        ("-1", not_integer),
        ("-1.0", not_integer),
        ("1e-1", not_integer),
        ("-5e-324", not_integer),
        ("9007199254740992", too_large),
        ("9007199254740992.0", too_large),
        ("18446744073709551615", too_large),
        ("1e300", too_large),
    ];
    for (written, message) in cases {
        let body = format!(
            r#"{{"action":"finish_flow","flowId":"{flow_id}","expectedRevision":{written}}}"#
        );
        let (status, envelope) = send_text(&h, body).await;
        assert_eq!(status, 400, "{written}");
        assert_eq!(
            envelope,
            json!({"ok": false, "code": "invalid_request",
                "error": format!("expectedRevision: {message}")}),
            "{written}"
        );
        for field in ["startedAt", "lastEventAt"] {
            let body = format!(
                r#"{{"action":"run_task","flowId":"{other}","runtime":"acp","task":"t","status":"running","{field}":{written}}}"#
            );
            let (status, envelope) = send_text(&h, body).await;
            assert_eq!(status, 400, "{field} = {written}");
            assert_eq!(
                envelope["error"],
                json!(format!("{field}: {message}")),
                "{field} = {written}"
            );
        }
    }
    // The largest integer JavaScript holds exactly is still one.
    let body = format!(
        r#"{{"action":"finish_flow","flowId":"{flow_id}","expectedRevision":9007199254740991}}"#
    );
    assert_eq!(send_text(&h, body).await.0, 409);
    // A number JSON.parse turns into Infinity is not JSON to serde_json: the body is refused whole.
    let body =
        format!(r#"{{"action":"finish_flow","flowId":"{flow_id}","expectedRevision":1e400}}"#);
    assert_eq!(
        send_text(&h, body).await,
        (400, json!("invalid request body"))
    );
    assert_eq!(stored(&h.store).await, before);
}
