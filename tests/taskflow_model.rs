//! Hostile request bodies through `TaskFlowActionService` over `MemoryStore`: a contract status,
//! never a panic, and a refusal changes nothing.
//!
//! The model test that used to live here (random action sequences against a simple reference
//! store) is now part of the store conformance suite (`tests/support/store_model.rs`), run against
//! every backend: `tests/store_memory.rs`, `tests/store_sqlite.rs`, ...

use futures_util::FutureExt;
use http::Request;
use proptest::prelude::*;
use serde_json::Value;
use tower::ServiceExt;
use tower_webhooks::{
    BufferedBody, MemoryStore, NewFlow, TaskFlowActionService, TaskFlowRoute, TaskFlowStore,
};

const OWNERS: [&str; 2] = ["agent:main:hooks", "agent:ops:hooks"];

// ------------------------------------------------------------------ hostile input

const KEYS: [&str; 16] = [
    "action",
    "flowId",
    "goal",
    "status",
    "expectedRevision",
    "runtime",
    "task",
    "stateJson",
    "waitJson",
    "blockedSummary",
    "progressSummary",
    "startedAt",
    "runId",
    "token",
    "controllerId",
    "x",
];
const ACTIONS: [&str; 14] = [
    "create_flow",
    "get_flow",
    "list_flows",
    "find_latest_flow",
    "resolve_flow",
    "get_task_summary",
    "set_waiting",
    "resume_flow",
    "finish_flow",
    "fail_flow",
    "request_cancel",
    "cancel_flow",
    "run_task",
    "nope",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        (0..ACTIONS.len()).prop_map(|i| Value::from(ACTIONS[i])),
        (0..4usize)
            .prop_map(|i| Value::from(["queued", "running", "subagent", "agent:main:hooks"][i])),
    ]
}

fn body() -> impl Strategy<Value = Value> {
    let value = leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("\\PC{0,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    });
    proptest::collection::vec((0..KEYS.len(), value), 0..7).prop_map(|fields| {
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (KEYS[k].to_owned(), v))
                .collect(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any JSON object or byte string: a contract status, never a panic, and a refused request
    /// leaves the store as it was.
    #[test]
    fn hostile_bodies_never_panic_and_refusals_change_nothing(
        json_body in body(),
        raw in proptest::collection::vec(any::<u8>(), 0..64),
        use_raw in any::<bool>(),
    ) {
        let store = MemoryStore::new();
        let service = TaskFlowActionService::new(store.clone(), TaskFlowRoute::new("r", OWNERS[0]));
        store.create_flow(OWNERS[0], NewFlow::new("c", "g")).now_or_never().unwrap().unwrap();
        let before = format!("{:?}", store.list_flows(OWNERS[0]).now_or_never().unwrap().unwrap());
        let bytes = if use_raw { raw } else { json_body.to_string().into_bytes() };
        let request = Request::post("/").body(BufferedBody::new(bytes)).unwrap();
        let response = service.oneshot(request).now_or_never().unwrap().unwrap();
        let status = response.status().as_u16();
        prop_assert!([200, 202, 400, 403, 404, 409, 507].contains(&status), "{}", status);
        if status >= 400 {
            let after = format!("{:?}", store.list_flows(OWNERS[0]).now_or_never().unwrap().unwrap());
            prop_assert_eq!(before, after);
            prop_assert_eq!(store.task_count(), 0);
        }
    }
}
