//! Durability over real sockets (SPEC §7: "a `2xx` answer means the change is committed; killing
//! the gateway with `SIGKILL` right after the answer loses nothing").
//!
//! The gateway binary runs on a store URL; concurrent clients make 200 acknowledged mutations
//! (creates, `set_waiting`, `run_task`); the process is killed with `SIGKILL` right after the last
//! answer and started again on the same store. Every acknowledged change must be there with its
//! revision, and a `run_task` repeat must return the task it created before the crash.
//! [`crash_and_restart`] is the whole test body, so another backend runs it with its own URL.

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod postgres_support;
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::{Value, json};
use support::gateway_process::Subprocess;
use support::temp::TempDir;

const SECRET: &str = "crash-test-secret-7f3a";
const SESSION_KEY: &str = "agent:main:crash";
const PATH: &str = "/hooks/crash";
const CLIENTS: usize = 8;
const FLOWS_PER_CLIENT: usize = 5;

/// A config with one route and limits a test run never reaches.
fn config(dir: &TempDir) -> std::path::PathBuf {
    dir.file(
        "webhooks.json5",
        format!(
            r#"{{ routes: {{ crash: {{ path: "{PATH}", sessionKey: "{SESSION_KEY}", secret: "{SECRET}" }} }},
                 limits: {{ rateLimit: {{ maxRequests: 100000 }}, inFlight: {{ maxPerKey: 64 }} }} }}"#
        ),
        0o600,
    )
}

async fn act(addr: SocketAddr, body: Value) -> (u16, Value) {
    support::act(addr, PATH, SECRET, &body).await
}

/// Per flow id: its acknowledged revision and its tasks (task id by `runId`).
type AckedFlows = HashMap<String, (u64, HashMap<String, String>)>;

/// What one client had acknowledged.
#[derive(Debug, Default)]
struct Acknowledged {
    flows: AckedFlows,
    answers: usize,
}

async fn client(addr: SocketAddr, n: usize) -> Acknowledged {
    let mut acked = Acknowledged::default();
    for f in 0..FLOWS_PER_CLIENT {
        let (status, env) = act(
            addr,
            json!({"action": "create_flow", "goal": format!("client {n} flow {f}"),
                   "stateJson": {"z": n, "a": [f, 1.6666666666666665, null]}}),
        )
        .await;
        assert_eq!(status, 200, "{env}");
        acked.answers += 1;
        let flow_id = env["result"]["flow"]["flowId"].as_str().unwrap().to_owned();
        let mut revision = 0;
        let mut tasks = HashMap::new();
        for step in 0..2 {
            let (status, env) = act(
                addr,
                json!({"action": "set_waiting", "flowId": flow_id, "expectedRevision": revision,
                       "currentStep": format!("step {step}")}),
            )
            .await;
            assert_eq!(status, 200, "{env}");
            acked.answers += 1;
            revision = env["result"]["flow"]["revision"].as_u64().unwrap();
            let run_id = format!("run-{n}-{f}-{step}");
            let (status, env) = act(
                addr,
                json!({"action": "run_task", "flowId": flow_id, "runtime": "acp",
                       "task": "work", "runId": run_id}),
            )
            .await;
            assert_eq!(status, 200, "{env}");
            acked.answers += 1;
            let task_id = env["result"]["task"]["taskId"].as_str().unwrap().to_owned();
            tasks.insert(run_id, task_id);
        }
        acked.flows.insert(flow_id, (revision, tasks));
    }
    acked
}

/// The whole test against the store `store` (a `--store` URL).
pub async fn crash_and_restart(store: &str) {
    let dir = TempDir::new("crash");
    let config = config(&dir);
    let (gateway, addr) = Subprocess::on_store(&config, store).await;

    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(addr, n)))
        .collect();
    let mut acked = Vec::new();
    for client in clients {
        acked.push(client.await.unwrap());
    }
    // Right after the last answer: no drain, no checkpoint, no goodbye.
    gateway.kill_now().await;
    let answers: usize = acked.iter().map(|a| a.answers).sum();
    assert_eq!(answers, 200);

    let (restarted, addr) = Subprocess::on_store(&config, store).await;
    let acked: AckedFlows = acked.into_iter().flat_map(|a| a.flows).collect();
    assert_eq!(acked.len(), CLIENTS * FLOWS_PER_CLIENT);
    let (status, env) = act(addr, json!({"action": "list_flows"})).await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(
        env["result"]["flows"].as_array().unwrap().len(),
        acked.len()
    );
    for (flow_id, (revision, tasks)) in acked.iter() {
        let (status, env) = act(addr, json!({"action": "get_flow", "flowId": flow_id})).await;
        assert_eq!(status, 200, "{env}");
        let flow = &env["result"]["flow"];
        assert_eq!(flow["revision"].as_u64(), Some(*revision), "{flow}");
        assert_eq!(flow["status"], "waiting");
        assert_eq!(flow["currentStep"], "step 1");
        assert_eq!(
            serde_json::to_string(&flow["stateJson"]["a"]).unwrap(),
            serde_json::to_string(&json!([
                flow["stateJson"]["a"][0],
                1.6666666666666665,
                null
            ]))
            .unwrap()
        );
        for (run_id, task_id) in tasks {
            let (status, env) = act(
                addr,
                json!({"action": "run_task", "flowId": flow_id, "runtime": "acp",
                       "task": "work", "runId": run_id}),
            )
            .await;
            assert_eq!(status, 200, "{env}");
            assert_eq!(
                env["result"]["task"]["taskId"].as_str(),
                Some(task_id.as_str())
            );
        }
        let (_, env) = act(
            addr,
            json!({"action": "get_task_summary", "flowId": flow_id}),
        )
        .await;
        assert_eq!(
            env["result"]["summary"]["total"], 2,
            "a repeat is not a new task"
        );
        // The revision check still holds where it stopped.
        let (status, env) = act(
            addr,
            json!({"action": "finish_flow", "flowId": flow_id, "expectedRevision": revision - 1}),
        )
        .await;
        assert_eq!(
            (status, env["code"].as_str()),
            (409, Some("revision_conflict"))
        );
    }
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_loses_no_acknowledged_change_to_sigkill() {
    let dir = TempDir::new("crash-db");
    let store = format!("sqlite:{}", dir.path().join("flows.db").display());
    crash_and_restart(&store).await;
}

/// The same on PostgreSQL (`TOWER_WEBHOOKS_POSTGRES_URL`), in a schema of its own.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_loses_no_acknowledged_change_to_sigkill() {
    let Some(base) =
        postgres_support::url_or_skip("postgres_loses_no_acknowledged_change_to_sigkill")
    else {
        return;
    };
    let schema = postgres_support::TestSchema::create(&base, "crash").await;
    crash_and_restart(&schema.url()).await;
}
