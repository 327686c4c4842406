//! Two gateway processes on one PostgreSQL (SPEC §7, "many replicas on one PostgreSQL"), over real
//! sockets: what a load balancer in front of two replicas would see.
//!
//! `tests/replicas_postgres.rs` proves the same properties on two pipelines inside one test
//! process (and adds the change feed, which only a library user can subscribe to); here each
//! replica is the real `gateway` binary started with `--store postgres://…`, so nothing is shared
//! but the database.

#[path = "support/postgres.rs"]
mod postgres_support;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde_json::{Value, json};
use support::gateway_process::Subprocess;
use support::temp::TempDir;

const SECRET: &str = "replica-test-secret-41c9";
const PATH: &str = "/hooks/replicas";
const FLOW_CAP: usize = 5;

/// One route; the rate and in-flight limits out of the way; at most `FLOW_CAP` flows per owner.
fn config(dir: &TempDir) -> std::path::PathBuf {
    dir.file(
        "webhooks.json5",
        format!(
            r#"{{ routes: {{ replicas: {{ path: "{PATH}", sessionKey: "agent:main:replicas", secret: "{SECRET}" }} }},
                 limits: {{ rateLimit: {{ maxRequests: 100000 }}, inFlight: {{ maxPerKey: 64 }},
                            store: {{ maxFlowsPerOwner: {FLOW_CAP} }} }} }}"#
        ),
        0o600,
    )
}

async fn act(addr: SocketAddr, body: Value) -> (u16, Value) {
    support::act(addr, PATH, SECRET, &body).await
}

/// The same request to both replicas, `each` times, all at once, alternating A and B.
async fn at_once(replicas: [SocketAddr; 2], each: usize, body: Value) -> Vec<(u16, Value)> {
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..2 * each {
        let (addr, body) = (replicas[n % 2], body.clone());
        requests.spawn(async move { act(addr, body).await });
    }
    requests.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_processes_share_flows_revisions_caps_and_tasks() {
    let Some(base) =
        postgres_support::url_or_skip("two_gateway_processes_share_flows_revisions_caps_and_tasks")
    else {
        return;
    };
    let schema = postgres_support::TestSchema::create(&base, "replica_procs").await;
    let dir = TempDir::new("replica-procs");
    let config = config(&dir);
    let (a, addr_a) = Subprocess::on_store(&config, &schema.url()).await;
    let (b, addr_b) = Subprocess::on_store(&config, &schema.url()).await;
    let replicas = [addr_a, addr_b];

    // A flow created on A is read on B.
    let (status, created) = act(
        addr_a,
        json!({"action": "create_flow", "goal": "shared", "stateJson": {"z": 1, "a": [1.6666666666666665, null]}}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let flow_id = created["result"]["flow"]["flowId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, read) = act(addr_b, json!({"action": "get_flow", "flowId": flow_id})).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["result"]["flow"], created["result"]["flow"]);

    // 16 writers, 8 on each replica, all holding revision 0: exactly one is applied.
    let answers = at_once(
        replicas,
        8,
        json!({"action": "set_waiting", "flowId": flow_id, "expectedRevision": 0,
               "currentStep": "one of sixteen"}),
    )
    .await;
    let applied = answers
        .iter()
        .filter(|(status, env)| *status == 200 && env["result"]["applied"] == true)
        .count();
    assert_eq!(applied, 1, "{answers:?}");
    for (status, env) in &answers {
        assert!(
            *status == 200 || env["code"] == "revision_conflict",
            "{status} {env}"
        );
    }
    let (_, after) = act(addr_a, json!({"action": "get_flow", "flowId": flow_id})).await;
    assert_eq!(after["result"]["flow"]["revision"], 1, "{after}");

    // The same runId sent to both replicas at once makes one task.
    let answers = at_once(
        replicas,
        4,
        json!({"action": "run_task", "flowId": flow_id, "runtime": "acp", "task": "review",
               "runId": "delivery-1"}),
    )
    .await;
    let task_ids: BTreeSet<String> = answers
        .iter()
        .map(|(status, env)| {
            assert_eq!(*status, 200, "{env}");
            env["result"]["task"]["taskId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(task_ids.len(), 1, "{answers:?}");
    let (_, summary) = act(
        addr_b,
        json!({"action": "get_task_summary", "flowId": flow_id}),
    )
    .await;
    assert_eq!(summary["result"]["summary"]["total"], 1, "{summary}");

    // Both replicas create at once against a cap of FLOW_CAP flows: never over it.
    let answers = at_once(
        replicas,
        10,
        json!({"action": "create_flow", "goal": "capped"}),
    )
    .await;
    let created = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(
        created,
        FLOW_CAP - 1,
        "one flow existed already: {answers:?}"
    );
    for (status, env) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 507, "{env}");
        assert_eq!(env["code"], "capacity_exceeded", "{env}");
    }

    // Every replica lists the same flows in the same order.
    let (_, list_a) = act(addr_a, json!({"action": "list_flows"})).await;
    let (_, list_b) = act(addr_b, json!({"action": "list_flows"})).await;
    let ids = |list: &Value| -> Vec<String> {
        list["result"]["flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|flow| flow["flowId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&list_a).len(), FLOW_CAP, "{list_a}");
    assert_eq!(ids(&list_a), ids(&list_b));

    a.stop().await;
    b.stop().await;
}
