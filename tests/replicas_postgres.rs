//! Two gateway replicas on one PostgreSQL, over real sockets: each replica is the whole webhook
//! pipeline (auth, limits, the TaskFlow service) over its own `PostgresStore` (its own pool and
//! change feed), served on its own port. Needs `TOWER_WEBHOOKS_POSTGRES_URL`; each test has its
//! own schema.

#[path = "support/postgres.rs"]
mod postgres_support;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use postgres_support::{TcpProxy, TestSchema, url_or_skip};
use serde_json::{Value, json};
use support::TestServer;
use tower_webhooks::WebhooksConfig;
use tower_webhooks::pipeline::WebhookPipeline;
use tower_webhooks::taskflow::postgres::{PostgresOptions, PostgresStore};
use tower_webhooks::taskflow::{ChangeEvent, ChangeFeed, ChangeKind};

const SECRET: &str = "replica-secret-1";
const OWNER: &str = "agent:main:replicas";

/// The route both replicas serve; limits raised so the tests measure the store, not the limiter.
fn config(max_flows: usize) -> WebhooksConfig {
    WebhooksConfig::from_json5(&format!(
        r#"{{
            routes: {{ hook: {{ path: "/hook", sessionKey: "{OWNER}", secret: "{SECRET}" }} }},
            limits: {{
                rateLimit: {{ maxRequests: 100000 }},
                inFlight: {{ maxPerKey: 1000 }},
                store: {{ maxFlowsPerOwner: {max_flows} }},
            }},
        }}"#
    ))
    .unwrap()
}

struct Replica {
    server: TestServer,
    store: PostgresStore,
}

async fn replica(url: &str, config: &WebhooksConfig) -> Replica {
    let resolved = config.resolve();
    let options = PostgresOptions::default()
        .operation_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2));
    let store = PostgresStore::build(
        url,
        resolved.limits.store.clone(),
        options,
        tower_webhooks::clock::SystemClock::shared(),
        std::sync::Arc::new(tower_webhooks::taskflow::CancelImmediately),
    )
    .await
    .unwrap();
    let pipeline = WebhookPipeline::new(store.clone(), resolved.limits.clone());
    let server = support::serve(pipeline.route(&resolved.routes[0])).await;
    Replica { server, store }
}

async fn act(addr: SocketAddr, body: Value) -> (u16, Value) {
    support::act(addr, "/hook", SECRET, &body).await
}

macro_rules! schema_or_skip {
    ($name:literal) => {
        match url_or_skip($name) {
            Some(base) => (TestSchema::create(&base, $name).await, base),
            None => return,
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_flows_revisions_caps_run_ids_and_changes() {
    let (schema, _) = schema_or_skip!("replicas");
    let config = config(6);
    let (a, b) = (
        replica(&schema.url(), &config).await,
        replica(&schema.url(), &config).await,
    );
    let (at_a, at_b) = (a.server.addr, b.server.addr);
    let mut heard_on_b = b.store.subscribe();

    // A flow created on A is read on B.
    let (status, created) = act(at_a, json!({"action": "create_flow", "goal": "ship"})).await;
    assert_eq!(status, 200, "{created}");
    let flow_id = created["result"]["flow"]["flowId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, read) = act(at_b, json!({"action": "get_flow", "flowId": flow_id})).await;
    assert_eq!(status, 200);
    assert_eq!(read["result"]["flow"], created["result"]["flow"]);

    // A subscriber on B hears the change made on A, by id.
    let event = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match heard_on_b.recv().await.unwrap() {
                ChangeEvent::Changed(change) if change.kind == ChangeKind::FlowCreated => {
                    return change;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("replica B heard nothing of A's flow");
    assert_eq!(event.flow_id.to_string(), flow_id);

    // 16 writers split over both replicas with the same expectedRevision: exactly one applied.
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let addr = if i % 2 == 0 { at_a } else { at_b };
            let body = json!({
                "action": "set_waiting", "flowId": flow_id, "expectedRevision": 0,
                "currentStep": format!("writer {i}"),
            });
            tokio::spawn(act(addr, body))
        })
        .collect();
    let mut applied = 0;
    for writer in writers {
        let (status, body) = writer.await.unwrap();
        match status {
            200 => {
                assert_eq!(body["result"]["applied"], true);
                applied += 1;
            }
            409 => assert_eq!(body["code"], "revision_conflict", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(applied, 1);
    let (_, read) = act(at_a, json!({"action": "get_flow", "flowId": flow_id})).await;
    assert_eq!(read["result"]["flow"]["revision"], 1);

    // The same runId sent to both at once: one task.
    let runs: Vec<_> = (0..8)
        .map(|i| {
            let addr = if i % 2 == 0 { at_a } else { at_b };
            let body = json!({
                "action": "run_task", "flowId": flow_id, "runtime": "acp", "task": "build",
                "runId": "run-7",
            });
            tokio::spawn(act(addr, body))
        })
        .collect();
    let mut task_ids = std::collections::HashSet::new();
    for run in runs {
        let (status, body) = run.await.unwrap();
        assert_eq!(status, 200, "{body}");
        task_ids.insert(
            body["result"]["task"]["taskId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(task_ids.len(), 1);
    let (_, summary) = act(
        at_b,
        json!({"action": "get_task_summary", "flowId": flow_id}),
    )
    .await;
    assert_eq!(summary["result"]["summary"]["total"], 1);

    // Both replicas create at once against a cap of 6 (one flow exists): never over.
    let creates: Vec<_> = (0..20)
        .map(|i| {
            let addr = if i % 2 == 0 { at_a } else { at_b };
            tokio::spawn(act(
                addr,
                json!({"action": "create_flow", "goal": format!("g{i}")}),
            ))
        })
        .collect();
    let (mut ok, mut full) = (0, 0);
    for create in creates {
        let (status, body) = create.await.unwrap();
        match status {
            200 => ok += 1,
            507 => {
                assert_eq!(body["code"], "capacity_exceeded");
                full += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!((ok, full), (5, 15));
    // Both replicas list the same flows in the same order.
    let (_, listed_a) = act(at_a, json!({"action": "list_flows"})).await;
    let (_, listed_b) = act(at_b, json!({"action": "list_flows"})).await;
    assert_eq!(listed_a["result"]["flows"].as_array().unwrap().len(), 6);
    assert_eq!(listed_a["result"], listed_b["result"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_database_answers_503_under_load_changes_nothing_and_recovers_without_a_restart() {
    let (schema, base) = schema_or_skip!("outage_http");
    let proxy = TcpProxy::start(&base).await;
    let config = config(10_000);
    let replica = replica(&proxy.url(&base, &schema.name), &config).await;
    let addr = replica.server.addr;
    let (status, created) = act(addr, json!({"action": "create_flow", "goal": "before"})).await;
    assert_eq!(status, 200);
    let flow_id = created["result"]["flow"]["flowId"]
        .as_str()
        .unwrap()
        .to_owned();

    proxy.cut();
    let started = std::time::Instant::now();
    let load: Vec<_> = (0..24)
        .map(|i| {
            let body = match i % 3 {
                0 => json!({"action": "create_flow", "goal": "during"}),
                1 => json!({"action": "request_cancel", "flowId": flow_id, "expectedRevision": 0}),
                _ => {
                    json!({"action": "run_task", "flowId": flow_id, "runtime": "acp", "task": "t"})
                }
            };
            tokio::spawn(act(addr, body))
        })
        .collect();
    for request in load {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], "persist_failed");
        assert_eq!(body["error"], "TaskFlow persistence failed.");
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "no address in a response: {body}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30), "no hang");

    proxy.restore();
    // Back without a restart; nothing the failed requests sent was stored.
    let (status, listed) = act(addr, json!({"action": "list_flows"})).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["result"]["flows"].as_array().unwrap().len(), 1);
    assert_eq!(listed["result"]["flows"][0]["revision"], 0);
    let (_, summary) = act(
        addr,
        json!({"action": "get_task_summary", "flowId": flow_id}),
    )
    .await;
    assert_eq!(summary["result"]["summary"]["total"], 0);
    let (status, _) = act(
        addr,
        json!({"action": "request_cancel", "flowId": flow_id, "expectedRevision": 0}),
    )
    .await;
    assert_eq!(status, 200);
}
