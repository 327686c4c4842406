//! Event-route de-duplication that outlives the process and spans replicas (SPEC §8 [better]: "keys
//! live in the store"), over real sockets with the real `gateway` binary:
//!
//! - on SQLite, a delivery dispatched before a `SIGKILL` is a duplicate after the restart;
//! - on PostgreSQL (`TOWER_WEBHOOKS_POSTGRES_URL`), one delivery handed to two gateway processes at
//!   once is dispatched once, and each replica then answers it as a duplicate.

#[path = "support/postgres.rs"]
mod postgres_support;
mod support;

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use support::gateway_process::Subprocess;
use support::temp::TempDir;
use support::{post_bytes, raw};

const GITHUB_SECRET: &str = "durable-github-secret-5d1e";
const ACTION_SECRET: &str = "durable-action-secret-90ab";
const SESSION_KEY: &str = "agent:main:durable";

/// A GitHub route whose pull requests become flows with a task, and an action route on the same
/// session to look at them; limits a test never reaches.
fn config(dir: &TempDir) -> std::path::PathBuf {
    dir.file(
        "webhooks.json5",
        format!(
            r#"{{ routes: {{
                   github: {{ path: "/hooks/github", sessionKey: "{SESSION_KEY}",
                              auth: {{ mode: "signature", scheme: "github", secret: "{GITHUB_SECRET}" }},
                              events: ["pull_request"], idempotency: {{}},
                              dispatch: {{ mode: "taskflow", taskflow: {{
                                  goalTemplate: "Review PR #{{pull_request.number}}",
                                  runTask: {{ taskTemplate: "Review {{pull_request.html_url}}" }} }} }} }},
                   flows: {{ path: "/hooks/flows", sessionKey: "{SESSION_KEY}", secret: "{ACTION_SECRET}" }} }},
                 limits: {{ rateLimit: {{ maxRequests: 100000 }}, inFlight: {{ maxPerKey: 64 }} }} }}"#
        ),
        0o600,
    )
}

fn pull_request(number: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "opened",
        "number": number,
        "pull_request": {"number": number, "html_url": format!("https://github.com/o/r/pull/{number}")},
    }))
    .unwrap()
}

/// Delivers `body` as GitHub delivery `delivery`, signed; the status and the answer.
async fn deliver(addr: SocketAddr, delivery: &str, body: &[u8]) -> (u16, Value) {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
    mac.update(body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [
        ("content-type", "application/json"),
        ("x-github-event", "pull_request"),
        ("x-github-delivery", delivery),
        ("x-hub-signature-256", signature.as_str()),
        ("connection", "close"),
    ];
    let response = raw(addr, &post_bytes("/hooks/github", &headers, body)).await;
    (response.status, response.json())
}

/// The session's flows, newest first, as `list_flows` answers them.
async fn flows(addr: SocketAddr) -> Vec<Value> {
    let list = json!({"action": "list_flows"});
    let (status, answer) = support::act(addr, "/hooks/flows", ACTION_SECRET, &list).await;
    assert_eq!(status, 200, "{answer}");
    answer["result"]["flows"].as_array().unwrap().clone()
}

fn duplicate(delivery: &str) -> Value {
    json!({"ok": true, "routeId": "github", "duplicate": true, "idempotencyKey": delivery})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_dispatched_before_a_sigkill_is_a_duplicate_after_the_restart_on_sqlite() {
    let dir = TempDir::new("event-restart");
    let config = config(&dir);
    let store = format!("sqlite:{}", dir.path().join("flows.db").display());
    let (gateway, addr) = Subprocess::on_store(&config, &store).await;

    let (status, answer) = deliver(addr, "delivery-1", &pull_request(1)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["result"]["task"]["runId"], "delivery-1");
    // Right after the answer: no drain, no goodbye.
    gateway.kill_now().await;

    let (restarted, addr) = Subprocess::on_store(&config, &store).await;
    // GitHub redelivers: nothing is dispatched twice.
    let (status, answer) = deliver(addr, "delivery-1", &pull_request(1)).await;
    assert_eq!((status, answer), (200, duplicate("delivery-1")));
    assert_eq!(flows(addr).await.len(), 1);
    // A new delivery is still dispatched.
    let (status, answer) = deliver(addr, "delivery-2", &pull_request(2)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(flows(addr).await.len(), 2);
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_handed_to_two_replicas_at_once_is_dispatched_once() {
    let Some(base) = postgres_support::url_or_skip(
        "one_delivery_handed_to_two_replicas_at_once_is_dispatched_once",
    ) else {
        return;
    };
    let schema = postgres_support::TestSchema::create(&base, "event_replicas").await;
    let dir = TempDir::new("event-replicas");
    let config = config(&dir);
    let (a, addr_a) = Subprocess::on_store(&config, &schema.url()).await;
    let (b, addr_b) = Subprocess::on_store(&config, &schema.url()).await;

    // A load balancer spreading one delivery (and GitHub's quick retries of it) over both.
    let body = pull_request(7);
    let mut deliveries = tokio::task::JoinSet::new();
    for n in 0..16 {
        let (addr, body) = ([addr_a, addr_b][n % 2], body.clone());
        deliveries.spawn(async move { deliver(addr, "delivery-7", &body).await });
    }
    let answers = deliveries.join_all().await;
    let dispatched = answers.iter().filter(|(status, _)| *status == 202).count();
    assert_eq!(dispatched, 1, "{answers:?}");
    for (status, answer) in &answers {
        match status {
            202 => assert_eq!(answer["result"]["task"]["runId"], "delivery-7"),
            200 => assert_eq!(answer, &duplicate("delivery-7")),
            409 => assert_eq!(answer["code"], "duplicate_in_progress"),
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    // Once it is recorded, either replica says so.
    for addr in [addr_a, addr_b] {
        let (status, answer) = deliver(addr, "delivery-7", &body).await;
        assert_eq!((status, answer), (200, duplicate("delivery-7")));
        assert_eq!(flows(addr).await.len(), 1);
    }
    a.stop().await;
    b.stop().await;
}
