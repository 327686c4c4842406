//! Regressions of the TaskFlow store and action parsing: the per-owner byte cap, `limits.store`,
//! trimmed nullable strings and integral numbers written as floats (SPEC §2.5, §3).

mod support;

use std::io::{self, Write};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_webhooks::{
    BufferedBody, CancelImmediately, Limits, ManualClock, MemoryStore, MemoryStoreConfig,
    ResolvedRoute, Secret, TaskFlowActionService, TaskFlowRoute, TaskFlowStore, WebhookPipeline,
    WebhooksConfig,
};

const OWNER: &str = "agent:main:hooks";
const T0: u64 = 1_700_000_000_000;
const WEEK_MS: u64 = 604_800_000;

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
        // As stored, owner fields included: the byte cap counts them.
        let tasks: Vec<Value> = tasks.iter().map(|t| t.to_stored_json()).collect();
        out.push(json!({"flow": flow.to_stored_json(), "tasks": tasks}));
    }
    Value::Array(out)
}

fn capacity_envelope(result: Value) -> Value {
    json!({
        "ok": false,
        "routeId": "r1",
        "code": "capacity_exceeded",
        "error": "TaskFlow store is full.",
        "result": result,
    })
}

// ---------------------------------------------------------------- the byte cap

#[tokio::test]
async fn one_owner_cannot_store_more_than_64_mib_of_flows_by_default() {
    let h = harness();
    // Eight mebibytes of state per flow: seven fit under the 64 MiB default, the eighth does not.
    let state = "x".repeat(8 << 20);
    for _ in 0..7 {
        create(&h, json!({"stateJson": state})).await;
    }
    let before = stored(&h.store).await;
    let (status, envelope) = send(
        &h,
        json!({"action": "create_flow", "goal": "g", "stateJson": state}),
    )
    .await;
    assert_eq!(status, 507);
    assert_eq!(
        envelope,
        capacity_envelope(json!({"created": false, "reason": "TaskFlow store is full."}))
    );
    assert_eq!(
        stored(&h.store).await,
        before,
        "a refused create changes nothing"
    );
    assert_eq!(h.store.flow_count(), 7);

    // Ending a flow and letting its retention pass makes room again.
    let first = before[0]["flow"]["flowId"].as_str().unwrap().to_owned();
    let (status, _) = send(&h, json!({"action": "cancel_flow", "flowId": first})).await;
    assert_eq!(status, 200);
    h.clock.advance(WEEK_MS);
    create(&h, json!({"stateJson": state})).await;
    assert_eq!(h.store.flow_count(), 7);
}

/// The JSON size of a flow with `"stateJson":""` and nothing else set, on a fresh store at `T0`:
/// every such flow has the same size (same clock, same id length).
async fn bare_flow_bytes() -> usize {
    let probe = harness_with(MemoryStoreConfig::new().max_bytes_per_owner(None));
    create(&probe, json!({"stateJson": ""})).await;
    probe.store.stored_bytes(OWNER)
}

#[tokio::test]
async fn the_byte_cap_counts_json_size_and_admits_a_write_that_lands_exactly_on_it() {
    let bare = bare_flow_bytes().await;
    let h = harness_with(MemoryStoreConfig::new().max_bytes_per_owner(Some(2 * bare + 100)));
    create(&h, json!({"stateJson": "x".repeat(100)})).await;
    assert_eq!(h.store.stored_bytes(OWNER), bare + 100);
    create(&h, json!({"stateJson": ""})).await;
    assert_eq!(
        h.store.stored_bytes(OWNER),
        2 * bare + 100,
        "exactly at the cap"
    );

    let before = stored(&h.store).await;
    let (status, envelope) = send(&h, json!({"action": "create_flow", "goal": "g"})).await;
    assert_eq!(status, 507);
    assert_eq!(
        envelope,
        capacity_envelope(json!({"created": false, "reason": "TaskFlow store is full."}))
    );
    assert_eq!(stored(&h.store).await, before);
    assert_eq!(h.store.stored_bytes(OWNER), 2 * bare + 100);
}

#[tokio::test]
async fn a_mutation_that_grows_state_past_the_byte_cap_is_refused_and_changes_nothing() {
    let bare = bare_flow_bytes().await;
    let h = harness_with(MemoryStoreConfig::new().max_bytes_per_owner(Some(bare + 1_000)));
    let flow_id = id(&create(&h, json!({"stateJson": ""})).await);
    let before = stored(&h.store).await;
    let bytes_before = h.store.stored_bytes(OWNER);

    for body in [
        json!({"action": "set_waiting", "flowId": flow_id, "expectedRevision": 0,
            "stateJson": "x".repeat(1_001)}),
        json!({"action": "set_waiting", "flowId": flow_id, "expectedRevision": 0,
            "waitJson": "x".repeat(1_001)}),
        json!({"action": "resume_flow", "flowId": flow_id, "expectedRevision": 0,
            "currentStep": "x".repeat(1_001)}),
        json!({"action": "finish_flow", "flowId": flow_id, "expectedRevision": 0,
            "stateJson": "x".repeat(1_001)}),
        json!({"action": "fail_flow", "flowId": flow_id, "expectedRevision": 0,
            "blockedSummary": "x".repeat(1_001)}),
    ] {
        let (status, envelope) = send(&h, body.clone()).await;
        assert_eq!(status, 507, "{body}");
        assert_eq!(
            envelope,
            capacity_envelope(json!({"applied": false, "code": "capacity_exceeded"})),
            "{body}"
        );
        assert_eq!(stored(&h.store).await, before, "{body}");
        assert_eq!(h.store.stored_bytes(OWNER), bytes_before);
    }

    // Growing within the cap is fine, and shrinking is always fine.
    let (status, _) = send(
        &h,
        json!({"action": "set_waiting", "flowId": flow_id, "expectedRevision": 0,
            "stateJson": "x".repeat(900)}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        h.store.stored_bytes(OWNER),
        bytes_before + 900 + r#","status":"waiting""#.len() - r#","status":"queued""#.len()
    );
    let (status, _) = send(
        &h,
        json!({"action": "finish_flow", "flowId": flow_id, "expectedRevision": 1, "stateJson": ""}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn run_task_past_the_byte_cap_is_refused_but_an_idempotent_repeat_is_answered() {
    let bare = bare_flow_bytes().await;
    let h = harness_with(MemoryStoreConfig::new().max_bytes_per_owner(Some(bare + 2_000)));
    let flow_id = id(&create(&h, json!({"stateJson": ""})).await);
    let task = json!({"action": "run_task", "flowId": flow_id, "runtime": "acp",
        "task": "x".repeat(1_000), "runId": "run-1"});
    let (status, first) = send(&h, task.clone()).await;
    assert_eq!(status, 200, "{first}");
    let before = stored(&h.store).await;
    let bytes_before = h.store.stored_bytes(OWNER);

    let mut second = task.clone();
    second["runId"] = json!("run-2");
    let (status, envelope) = send(&h, second).await;
    assert_eq!(status, 507);
    assert_eq!(
        envelope,
        capacity_envelope(json!({"created": false, "reason": "TaskFlow store is full."}))
    );
    assert_eq!(stored(&h.store).await, before);
    assert_eq!(h.store.stored_bytes(OWNER), bytes_before);
    assert_eq!(h.store.task_count(), 1);

    // The repeat stores nothing new, so a full owner still gets its answer.
    let (status, repeat) = send(&h, task).await;
    assert_eq!(status, 200);
    assert_eq!(
        repeat["result"]["task"]["taskId"],
        first["result"]["task"]["taskId"]
    );
}

#[tokio::test]
async fn a_full_owner_can_cancel_and_pruning_gives_the_bytes_back() {
    let bare = bare_flow_bytes().await;
    let h = harness_with(MemoryStoreConfig::new().max_bytes_per_owner(Some(2 * bare)));
    let first = id(&create(&h, json!({"stateJson": ""})).await);
    create(&h, json!({"stateJson": ""})).await;
    let (status, _) = send(&h, json!({"action": "create_flow", "goal": "g"})).await;
    assert_eq!(status, 507);

    // Cancelling adds a status and timestamps: it is how a full owner ends flows, never refused.
    let (status, envelope) = send(&h, json!({"action": "cancel_flow", "flowId": first})).await;
    assert_eq!(status, 200, "{envelope}");
    assert!(h.store.stored_bytes(OWNER) > 2 * bare);

    // Retention passes: the cancelled flow goes, and with it its bytes.
    h.clock.advance(WEEK_MS);
    assert_eq!(h.store.sweep_expired().await.unwrap(), 1);
    assert_eq!(h.store.stored_bytes(OWNER), bare);
    create(&h, json!({"stateJson": ""})).await;
    assert_eq!(h.store.stored_bytes(OWNER), 2 * bare);
}

/// The running total is the JSON size of what is stored, whatever changed it.
#[tokio::test]
async fn stored_bytes_follow_every_kind_of_write() {
    let h = harness_with(MemoryStoreConfig::new().max_bytes_per_owner(None));
    let measured = |value: &Value| -> usize {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                let flow = serde_json::to_vec(&entry["flow"]).unwrap().len();
                let tasks: usize = entry["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| serde_json::to_vec(t).unwrap().len())
                    .sum();
                flow + tasks
            })
            .sum()
    };
    let check = |what: &'static str| {
        let store = h.store.clone();
        async move {
            assert_eq!(
                store.stored_bytes(OWNER),
                measured(&stored(&store).await),
                "{what}"
            );
        }
    };
    let a = id(&create(
        &h,
        json!({"stateJson": {"k": [1, 2, 3]}, "currentStep": "s"}),
    )
    .await);
    let b = id(&create(&h, json!({})).await);
    check("create").await;
    send(
        &h,
        json!({"action": "set_waiting", "flowId": a, "expectedRevision": 0,
        "waitJson": {"until": "later"}, "blockedSummary": "why"}),
    )
    .await;
    check("mutation").await;
    let (_, envelope) = send(
        &h,
        json!({"action": "run_task", "flowId": b, "runtime": "acp",
        "task": "t", "status": "running", "progressSummary": "p"}),
    )
    .await;
    let task_id = envelope["result"]["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    send(
        &h,
        json!({"action": "run_task", "flowId": b, "runtime": "subagent", "task": "u"}),
    )
    .await;
    check("run_task").await;
    h.store
        .report_progress(&task_id, Some("much further along".into()))
        .await
        .unwrap();
    check("embedding-side task update").await;
    send(&h, json!({"action": "cancel_flow", "flowId": b})).await;
    check("cancel_flow").await;
    h.store
        .end_flow(&a, tower_webhooks::FlowEnd::Failed, Some(json!("gone")))
        .await
        .unwrap();
    check("end_flow").await;
    h.clock.advance(WEEK_MS);
    assert_eq!(h.store.sweep_expired().await.unwrap(), 2);
    check("prune").await;
    assert_eq!(h.store.stored_bytes(OWNER), 0);
}

// ---------------------------------------------------------------- lists and the owner lock

#[tokio::test]
async fn list_flows_shares_the_stored_records_instead_of_copying_them() {
    let h = harness();
    let state = "x".repeat(100_000);
    let flow_id = id(&create(&h, json!({"stateJson": state})).await);
    let first = h.store.list_flows(OWNER).await.unwrap();
    let second = h.store.list_flows(OWNER).await.unwrap();
    assert!(
        Arc::ptr_eq(&first[0], &second[0]),
        "two lists point at one record: nothing is copied under the owner's lock"
    );

    // A write after the list leaves the list as it was (the store copies that one flow).
    let (status, _) = send(
        &h,
        json!({"action": "finish_flow", "flowId": flow_id, "expectedRevision": 0}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(first[0].revision, 0);
    assert_eq!(first[0].state_json, Some(json!(state)));
    let now = h.store.list_flows(OWNER).await.unwrap();
    assert_eq!(now[0].revision, 1);
    assert!(!Arc::ptr_eq(&first[0], &now[0]));
}

/// Asks the store for a flow of the same owner from another thread the first time the list's
/// bytes are written, and waits for the answer: if serialising held the owner's lock, the other
/// thread could not answer and the hang guard would fail the test.
struct ReadWhileWriting {
    store: MemoryStore,
    flow_id: String,
    answered: Option<bool>,
    written: usize,
}

impl Write for ReadWhileWriting {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.answered.is_none() {
            let (tx, rx) = mpsc::channel();
            let store = self.store.clone();
            let flow_id = self.flow_id.clone();
            std::thread::spawn(move || {
                let flow = futures_util::FutureExt::now_or_never(store.get_flow(OWNER, &flow_id));
                let _ = tx.send(matches!(flow, Some(Ok(Some(_)))));
            });
            self.answered = Some(
                rx.recv_timeout(Duration::from_secs(30))
                    .expect("a read of the same owner hung while a list was being serialised"),
            );
        }
        self.written += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_reader_of_the_same_owner_is_answered_while_a_big_list_is_serialised() {
    let h = harness();
    let state = "x".repeat(1 << 20);
    let mut flow_id = String::new();
    for _ in 0..8 {
        flow_id = id(&create(&h, json!({"stateJson": state})).await);
    }
    let request = Request::post("/hook")
        .header("content-type", "application/json")
        .body(BufferedBody::from(r#"{"action":"list_flows"}"#))
        .unwrap();
    let response = h.service.clone().oneshot(request).await.unwrap();
    let document = response.body().json_document().expect("a structured body");
    let mut writer = ReadWhileWriting {
        store: h.store.clone(),
        flow_id,
        answered: None,
        written: 0,
    };
    serde_json::to_writer(&mut writer, document).unwrap();
    assert_eq!(writer.answered, Some(true));
    assert!(writer.written > 8 << 20, "the whole list was written");
}

// ---------------------------------------------------------------- limits.store

fn config_error(text: &str) -> String {
    match WebhooksConfig::from_json5(text) {
        Ok(config) => panic!("expected an error for {text}, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn limits_store_accepts_every_documented_key() {
    let config = WebhooksConfig::from_json5(
        "{ limits: { store: { maxFlowsPerOwner: 5, maxTasksPerFlow: 6, maxBytesPerOwner: 7e3, \
         retentionMs: 8000.0 } } }",
    );
    assert!(config.is_ok(), "{:?}", config.err().map(|e| e.to_string()));
    assert!(WebhooksConfig::from_json5("{ limits: { store: {} } }").is_ok());
}

#[test]
fn limits_store_bad_values_name_their_path() {
    for field in [
        "maxFlowsPerOwner",
        "maxTasksPerFlow",
        "maxBytesPerOwner",
        "retentionMs",
    ] {
        for bad in [
            "0",
            "-1",
            "1.5",
            "'10'",
            "true",
            "null",
            "[]",
            "{}",
            "-Infinity",
            "NaN",
        ] {
            assert_eq!(
                config_error(&format!("{{ limits: {{ store: {{ {field}: {bad} }} }} }}")),
                format!("webhooks.limits.store.{field}: must be an integer >= 1"),
                "{field} = {bad}"
            );
        }
    }
    assert_eq!(
        config_error("{ limits: { store: { maxBytesPerOwner: 1, bogus: 1 } } }"),
        "webhooks.limits.store.bogus: unknown key"
    );
    assert_eq!(
        config_error("{ limits: { store: 1 } }"),
        "webhooks.limits.store: must be an object"
    );
    for field in ["maxFlowsPerOwner", "maxTasksPerFlow", "maxBytesPerOwner"] {
        assert_eq!(
            config_error(&format!(
                "{{ limits: {{ store: {{ {field}: 4294967296 }} }} }}"
            )),
            format!("webhooks.limits.store.{field}: must be an integer from 1 to 4294967295")
        );
    }
    assert_eq!(
        config_error("{ limits: { store: { retentionMs: 9007199254740992 } } }"),
        "webhooks.limits.store.retentionMs: must be an integer from 1 to 9007199254740991"
    );
}

#[test]
fn limits_store_values_reach_the_store_configuration() {
    let config = WebhooksConfig::from_json5(
        "{ limits: { store: { maxFlowsPerOwner: 5, maxTasksPerFlow: 6, maxBytesPerOwner: 7e3, \
         retentionMs: 9007199254740991 } } }",
    )
    .unwrap();
    assert_eq!(
        config.limits().store,
        MemoryStoreConfig::new()
            .max_flows_per_owner(Some(5))
            .max_tasks_per_flow(Some(6))
            .max_bytes_per_owner(Some(7_000))
            .retention(Some(Duration::from_millis(9_007_199_254_740_991)))
    );
    // Only what is given changes; the defaults are the SPEC's.
    let partial =
        WebhooksConfig::from_json5("{ limits: { store: { maxBytesPerOwner: 1 } } }").unwrap();
    assert_eq!(
        partial.limits().store,
        MemoryStoreConfig::new().max_bytes_per_owner(Some(1))
    );
    assert_eq!(
        Limits::default().store,
        MemoryStoreConfig::new()
            .max_flows_per_owner(Some(10_000))
            .max_tasks_per_flow(Some(1_000))
            .max_bytes_per_owner(Some(67_108_864))
            .retention(Some(Duration::from_millis(604_800_000)))
    );
}

#[tokio::test]
async fn the_configured_byte_cap_answers_507_over_http() {
    const SECRET: &str = "store-regression-secret";
    let config =
        WebhooksConfig::from_json5("{ limits: { store: { maxBytesPerOwner: 2000 } } }").unwrap();
    let pipeline = WebhookPipeline::in_memory(config.limits().clone());
    let route = ResolvedRoute::new("zap", OWNER, [Secret::new(SECRET).unwrap()]);
    let server = support::serve(pipeline.router(&[route])).await;
    let auth = format!("Bearer {SECRET}");
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let post = |body: Value| {
        support::post_bytes(
            "/plugins/webhooks/zap",
            &headers,
            body.to_string().as_bytes(),
        )
    };

    let small = support::raw(
        server.addr,
        &post(json!({"action": "create_flow", "goal": "g"})),
    )
    .await;
    assert_eq!(small.status, 200, "{}", small.text());
    let big = json!({"action": "create_flow", "goal": "g", "stateJson": "x".repeat(2_000)});
    let response = support::raw(server.addr, &post(big)).await;
    assert_eq!(response.status, 507);
    assert_eq!(
        response.json(),
        json!({"ok": false, "routeId": "zap", "code": "capacity_exceeded",
            "error": "TaskFlow store is full.",
            "result": {"created": false, "reason": "TaskFlow store is full."}})
    );
    assert_eq!(pipeline.store().flow_count(), 1);
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
