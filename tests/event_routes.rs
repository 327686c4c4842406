//! Event routes (SPEC §8) over real sockets, through the pipeline the gateway serves: routes read
//! from a JSON5 configuration, served by the crate's own accept loop.
//!
//! The store is the in-memory one behind a wrapper that can hold `create_flow` until released (to
//! catch a second delivery while the first is in flight) and fail it (a store that is down).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tower_webhooks::taskflow::Flow;
use tower_webhooks::taskflow::FlowEnd;
use tower_webhooks::taskflow::MemoryStore;
use tower_webhooks::taskflow::Mutation;
use tower_webhooks::taskflow::MutationOutcome;
use tower_webhooks::taskflow::NewFlow;
use tower_webhooks::taskflow::NewTask;
use tower_webhooks::taskflow::StoreError;
use tower_webhooks::taskflow::Task;
use tower_webhooks::taskflow::TaskFlowStore;
use tower_webhooks::taskflow::TaskUpdateOutcome;
use tower_webhooks::{WebhookPipeline, WebhooksConfig};

use support::{RawResponse, connect, post_bytes, raw, read_response};
use tokio::io::AsyncWriteExt;

/// The in-memory store, with a `create_flow` that can be held or made to fail.
#[derive(Debug)]
struct ControlledStore {
    inner: MemoryStore,
    fail: AtomicBool,
    hold: AtomicBool,
    entered: Notify,
    release: Semaphore,
}

impl Default for ControlledStore {
    fn default() -> Self {
        Self {
            inner: MemoryStore::default(),
            fail: AtomicBool::new(false),
            hold: AtomicBool::new(false),
            entered: Notify::new(),
            release: Semaphore::new(0),
        }
    }
}

impl TaskFlowStore for ControlledStore {
    fn backend(&self) -> &'static str {
        "controlled"
    }
    async fn flow_by_id(&self, f: &str) -> Result<Option<Flow>, StoreError> {
        self.inner.flow_by_id(f).await
    }
    async fn sweep_expired(&self) -> Result<usize, StoreError> {
        self.inner.sweep_expired().await
    }
    async fn create_flow(&self, owner: &str, new: NewFlow) -> Result<Flow, StoreError> {
        if self.hold.load(Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.acquire().await.unwrap().forget();
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::PersistFailed("database unreachable".into()));
        }
        self.inner.create_flow(owner, new).await
    }
    async fn get_flow(&self, o: &str, f: &str) -> Result<Option<Flow>, StoreError> {
        self.inner.get_flow(o, f).await
    }
    async fn list_flows(&self, o: &str) -> Result<Vec<Arc<Flow>>, StoreError> {
        self.inner.list_flows(o).await
    }
    async fn find_latest_flow(&self, o: &str) -> Result<Option<Flow>, StoreError> {
        self.inner.find_latest_flow(o).await
    }
    async fn resolve_flow(&self, o: &str, t: &str) -> Result<Option<Flow>, StoreError> {
        self.inner.resolve_flow(o, t).await
    }
    async fn mutate_flow(
        &self,
        o: &str,
        f: &str,
        r: u64,
        m: Mutation,
    ) -> Result<MutationOutcome, StoreError> {
        self.inner.mutate_flow(o, f, r, m).await
    }
    async fn run_task(
        &self,
        o: &str,
        f: &str,
        t: NewTask,
    ) -> Result<tower_webhooks::taskflow::RunTaskOutcome, StoreError> {
        self.inner.run_task(o, f, t).await
    }
    async fn cancel_flow(
        &self,
        o: &str,
        f: &str,
    ) -> Result<tower_webhooks::taskflow::CancelOutcome, StoreError> {
        self.inner.cancel_flow(o, f).await
    }
    async fn task_summary(
        &self,
        o: &str,
        f: &str,
    ) -> Result<Option<tower_webhooks::taskflow::TaskSummary>, StoreError> {
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
        u: tower_webhooks::taskflow::TaskUpdate,
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

const OWNER: &str = "agent:main:main";
const GITHUB_SECRET: &str = "gh-secret";
const SLACK_SECRET: &str = "slack-secret";

const CONFIG: &str = r#"{
  routes: {
    github: {
      sessionKey: "agent:main:main",
      auth: { mode: "signature", scheme: "github", secret: "gh-secret" },
      events: ["pull_request"],
      idempotency: {},
      dispatch: {
        mode: "taskflow",
        taskflow: {
          goalTemplate: "Review PR #{pull_request.number}: {pull_request.title}",
          runTask: { taskTemplate: "Review {pull_request.html_url} ({action})", labelTemplate: "PR {pull_request.number}" },
        },
      },
      skills: ["github"],
    },
    slack: {
      sessionKey: "agent:main:main",
      auth: { mode: "signature", scheme: "slack", secret: "slack-secret" },
      verification: { event: "url_verification" },
      prompt: "Slack: {event.text}",
    },
    ci: {
      secret: "ci-token",
      auth: { mode: "header", header: "x-ci-token" },
      idempotency: {},
      dispatch: { mode: "ack" },
    },
    bearer: {
      sessionKey: "agent:main:main",
      secret: "bearer-token",
      auth: { mode: "bearer", prefix: "Token" },
    },
    office: {
      sessionKey: "agent:main:main",
      secret: "office-secret",
      allowedIps: ["10.0.0.0/8"],
    },
  },
}"#;

struct Gateway {
    server: support::TestServer,
    store: Arc<ControlledStore>,
}

async fn gateway() -> Gateway {
    let resolved = WebhooksConfig::from_json5(CONFIG).unwrap().resolve();
    assert!(resolved.skipped.is_empty(), "{:?}", resolved.warnings());
    let store = Arc::new(ControlledStore::default());
    let pipeline =
        WebhookPipeline::<ControlledStore>::new(Arc::clone(&store), resolved.limits.clone());
    let server = support::serve(pipeline.router(&resolved.routes)).await;
    Gateway { server, store }
}

fn sign_github(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign_slack(ts: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SLACK_SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn pull_request() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "opened",
        "number": 7,
        "pull_request": {"number": 7, "title": "Fix the flaky test", "html_url": "https://github.com/o/r/pull/7"},
    }))
    .unwrap()
}

/// A signed GitHub delivery of `event` with delivery id `delivery`.
fn github_request(event: &str, delivery: &str, body: &[u8]) -> Vec<u8> {
    let signature = sign_github(body);
    post_bytes(
        "/plugins/webhooks/github",
        &[
            ("content-type", "application/json"),
            ("x-github-event", event),
            ("x-github-delivery", delivery),
            ("x-hub-signature-256", &signature),
        ],
        body,
    )
}

async fn flows(store: &ControlledStore) -> Vec<Arc<Flow>> {
    store.inner.list_flows(OWNER).await.unwrap()
}

#[tokio::test]
async fn a_signed_pull_request_becomes_a_flow_and_a_task_once() {
    let gw = gateway().await;
    let body = pull_request();
    let response = raw(
        gw.server.addr,
        &github_request("pull_request", "d-1", &body),
    )
    .await;
    assert_eq!(response.status, 202, "{}", response.text());
    let answer = response.json();
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["routeId"], "github");
    let result = &answer["result"];
    assert_eq!(result["action"], "taskflow_dispatch");
    let flow = &result["flow"];
    assert_eq!(
        flow["goal"],
        "Review PR #7: Fix the flaky test\n\nUse these OpenClaw skills when useful: github"
    );
    assert_eq!(flow["controllerId"], "webhooks/github");
    assert_eq!(flow["status"], "queued");
    assert_eq!(flow["notifyPolicy"], "done_only");
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        flow["stateJson"],
        json!({"source": "webhooks", "routeId": "github", "eventType": "pull_request",
               "idempotencyKey": "d-1", "payload": payload})
    );
    let task = &result["task"];
    assert_eq!(task["runId"], "d-1");
    assert_eq!(task["runtime"], "acp");
    assert_eq!(
        task["task"],
        "Review https://github.com/o/r/pull/7 (opened)\n\nUse these OpenClaw skills when useful: github"
    );
    assert_eq!(task["label"], "PR 7");
    assert_eq!(task["parentFlowId"], flow["flowId"]);
    // Never the owner.
    assert!(!response.text().contains(OWNER));

    // The same delivery again: a duplicate, nothing dispatched.
    let again = raw(
        gw.server.addr,
        &github_request("pull_request", "d-1", &body),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.json(),
        json!({"ok": true, "routeId": "github", "duplicate": true, "idempotencyKey": "d-1"})
    );
    assert_eq!(flows(&gw.store).await.len(), 1);
}

#[tokio::test]
async fn a_second_delivery_while_the_first_is_handled_is_409_then_a_duplicate() {
    let gw = gateway().await;
    gw.store.hold.store(true, Ordering::SeqCst);
    let body = pull_request();
    let addr = gw.server.addr;
    let first_request = github_request("pull_request", "d-2", &body);
    let first = tokio::spawn(async move { raw(addr, &first_request).await });
    // The first delivery is inside the store, holding its key.
    gw.store.entered.notified().await;

    let second = raw(addr, &github_request("pull_request", "d-2", &body)).await;
    assert_eq!(second.status, 409);
    assert_eq!(second.header("retry-after"), Some("1"));
    assert_eq!(
        second.json(),
        json!({"ok": false, "routeId": "github", "code": "duplicate_in_progress",
               "error": "A delivery with this idempotency key is being processed."})
    );

    gw.store.hold.store(false, Ordering::SeqCst);
    gw.store.release.add_permits(1);
    assert_eq!(first.await.unwrap().status, 202);
    let third = raw(addr, &github_request("pull_request", "d-2", &body)).await;
    assert_eq!(third.json()["duplicate"], true);
    assert_eq!(flows(&gw.store).await.len(), 1);
}

#[tokio::test]
async fn a_delivery_whose_dispatch_failed_is_dispatched_when_retried() {
    let gw = gateway().await;
    gw.store.fail.store(true, Ordering::SeqCst);
    let body = pull_request();
    let failed = raw(
        gw.server.addr,
        &github_request("pull_request", "d-3", &body),
    )
    .await;
    assert_eq!(failed.status, 503);
    assert_eq!(
        failed.json(),
        json!({"ok": false, "routeId": "github", "code": "persist_failed",
               "error": "TaskFlow persistence failed."})
    );
    assert!(!failed.text().contains("unreachable"));

    gw.store.fail.store(false, Ordering::SeqCst);
    let retried = raw(
        gw.server.addr,
        &github_request("pull_request", "d-3", &body),
    )
    .await;
    assert_eq!(retried.status, 202, "{}", retried.text());
    assert_eq!(retried.json()["result"]["task"]["runId"], "d-3");
    assert_eq!(flows(&gw.store).await.len(), 1);
}

#[tokio::test]
async fn an_event_outside_the_list_is_skipped_without_consuming_its_key() {
    let gw = gateway().await;
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let skipped = raw(gw.server.addr, &github_request("ping", "d-4", body)).await;
    assert_eq!(skipped.status, 200);
    assert_eq!(
        skipped.json(),
        json!({"ok": true, "routeId": "github", "skipped": true,
               "reason": "event_not_allowed", "eventType": "ping"})
    );
    assert!(flows(&gw.store).await.is_empty());
    // The key was not consumed: the same delivery id with an allowed event is dispatched.
    let dispatched = raw(
        gw.server.addr,
        &github_request("pull_request", "d-4", &pull_request()),
    )
    .await;
    assert_eq!(dispatched.status, 202);
}

#[tokio::test]
async fn slacks_url_verification_is_answered_with_its_challenge_and_nothing_else() {
    let gw = gateway().await;
    let body = br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let ts = now_secs();
    let signature = sign_slack(ts, body);
    let request = post_bytes(
        "/plugins/webhooks/slack",
        &[
            ("content-type", "application/json"),
            ("x-slack-request-timestamp", &ts.to_string()),
            ("x-slack-signature", &signature),
        ],
        body,
    );
    let response = raw(gw.server.addr, &request).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        response.json(),
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    assert!(flows(&gw.store).await.is_empty());

    // An event callback on the same route is a flow, its goal from the prompt.
    let body = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message","text":"deploy please"}}"#;
    let signature = sign_slack(ts, body);
    let request = post_bytes(
        "/plugins/webhooks/slack",
        &[
            ("content-type", "application/json"),
            ("x-slack-request-timestamp", &ts.to_string()),
            ("x-slack-signature", &signature),
        ],
        body,
    );
    let response = raw(gw.server.addr, &request).await;
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(
        response.json()["result"]["flow"]["goal"],
        "Slack: deploy please"
    );
    // No runTask: no task and no taskCreated.
    assert_eq!(
        response.json()["result"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["action", "flow"]
    );
}

#[tokio::test]
async fn a_client_outside_allowed_ips_is_refused_before_anything_else() {
    let gw = gateway().await;
    // A GET without a secret or a content type: the allowlist answers before 405, 415 or 401.
    let response = raw(
        gw.server.addr,
        b"GET /plugins/webhooks/office HTTP/1.1\r\nhost: test\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 403);
    assert_eq!(response.text(), "Forbidden");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let right_secret = post_bytes(
        "/plugins/webhooks/office",
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer office-secret"),
        ],
        br#"{"action":"list_flows"}"#,
    );
    assert_eq!(raw(gw.server.addr, &right_secret).await.status, 403);
    // Other routes have no list.
    let elsewhere = raw(
        gw.server.addr,
        b"GET /plugins/webhooks/bearer HTTP/1.1\r\nhost: test\r\n\r\n",
    )
    .await;
    assert_eq!(elsewhere.status, 405);
}

#[tokio::test]
async fn an_unauthenticated_request_to_a_header_auth_route_is_refused_before_its_body() {
    let gw = gateway().await;
    let mut stream = connect(gw.server.addr).await;
    // Headers promising a body that never comes: an answer proves the body was not awaited.
    stream
        .write_all(
            b"POST /plugins/webhooks/ci HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
              x-ci-token: wrong\r\ncontent-length: 100\r\n\r\n",
        )
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.text(), "unauthorized");
    // A header route does not invite Bearer credentials.
    assert_eq!(response.header("www-authenticate"), None);

    let ok = post_bytes(
        "/plugins/webhooks/ci",
        &[
            ("content-type", "application/json"),
            ("x-ci-token", "ci-token"),
            ("x-request-id", "build-9"),
            ("x-event-type", "build.finished"),
        ],
        b"{}",
    );
    let acked = raw(gw.server.addr, &ok).await;
    assert_eq!(acked.status, 200);
    assert_eq!(
        acked.json(),
        json!({"ok": true, "routeId": "ci",
               "result": {"action": "ack", "eventType": "build.finished", "idempotencyKey": "build-9"}})
    );
    assert_eq!(raw(gw.server.addr, &ok).await.json()["duplicate"], true);
}

#[tokio::test]
async fn bad_signatures_never_reach_dispatch_and_say_nothing_about_why() {
    let gw = gateway().await;
    let body = pull_request();
    let zeros = format!("sha256={}", "0".repeat(64));
    let forged = post_bytes(
        "/plugins/webhooks/github",
        &[
            ("content-type", "application/json"),
            ("x-github-event", "pull_request"),
            ("x-hub-signature-256", &zeros),
        ],
        &body,
    );
    let cases: Vec<Vec<u8>> = vec![
        post_bytes(
            "/plugins/webhooks/github",
            &[
                ("content-type", "application/json"),
                ("x-github-event", "pull_request"),
            ],
            &body,
        ),
        forged,
        // Signed for another body.
        {
            let mut request = github_request("pull_request", "d-5", b"{}");
            let at = request.len() - 2;
            request.truncate(at);
            request.extend_from_slice(b"[]");
            request
        },
    ];
    for request in cases {
        let response: RawResponse = raw(gw.server.addr, &request).await;
        assert_eq!(
            response.status,
            401,
            "{}",
            String::from_utf8_lossy(&request)
        );
        assert_eq!(response.text(), "unauthorized");
        assert_eq!(response.header("www-authenticate"), None);
    }
    assert!(flows(&gw.store).await.is_empty());
    // A secret in the query string is refused on a signature route too.
    let query = String::from_utf8(github_request("pull_request", "d-6", &body))
        .unwrap()
        .replacen(
            "/plugins/webhooks/github",
            "/plugins/webhooks/github?token=x",
            1,
        );
    let refused = raw(gw.server.addr, query.as_bytes()).await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.text(),
        "secret must not be sent in the query string"
    );
}

#[tokio::test]
async fn a_bearer_route_reads_its_own_scheme_word_and_keeps_the_challenge() {
    let gw = gateway().await;
    let request = |authorization: &str| {
        post_bytes(
            "/plugins/webhooks/bearer",
            &[
                ("content-type", "application/json"),
                ("authorization", authorization),
            ],
            br#"{"action":"list_flows"}"#,
        )
    };
    assert_eq!(
        raw(gw.server.addr, &request("Token bearer-token"))
            .await
            .status,
        200
    );
    assert_eq!(
        raw(gw.server.addr, &request("token   bearer-token "))
            .await
            .status,
        200
    );
    let refused = raw(gw.server.addr, &request("Bearer bearer-token")).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    // The OpenClaw secret header is not read on an explicit bearer route.
    let header = post_bytes(
        "/plugins/webhooks/bearer",
        &[
            ("content-type", "application/json"),
            ("x-openclaw-webhook-secret", "bearer-token"),
        ],
        br#"{"action":"list_flows"}"#,
    );
    assert_eq!(raw(gw.server.addr, &header).await.status, 401);
}

/// `webhook_duplicates_total{route}` counts each duplicate delivery, and a client outside
/// `allowedIps` is a rejection with reason `forbidden_ip`.
#[tokio::test]
async fn duplicates_and_forbidden_clients_are_counted() {
    use prometheus_client::registry::Registry;
    use tower::{ServiceBuilder, ServiceExt};
    use tower_webhooks::body::BufferedBody;
    use tower_webhooks::metrics::WebhookMetrics;
    use tower_webhooks::telemetry::TelemetryLayer;

    let resolved = WebhooksConfig::from_json5(CONFIG).unwrap().resolve();
    let pipeline = WebhookPipeline::in_memory(resolved.limits.clone());
    let mut registry = Registry::default();
    let metrics = WebhookMetrics::new(&mut registry);
    let service = ServiceBuilder::new()
        .layer(TelemetryLayer::new().metrics(metrics))
        .service(pipeline.router(&resolved.routes));
    let body = pull_request();
    let request = |path: &str| {
        let mut request = http::Request::post(path)
            .header("content-type", "application/json")
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", "d-m")
            .header("x-hub-signature-256", sign_github(&body))
            .body(BufferedBody::from(body.clone()))
            .unwrap();
        request
            .extensions_mut()
            .insert(std::net::SocketAddr::from(([127, 0, 0, 1], 50000)));
        request
    };
    let statuses = [
        ("/plugins/webhooks/github", 202),
        ("/plugins/webhooks/github", 200),
        ("/plugins/webhooks/github", 200),
        ("/plugins/webhooks/office", 403),
    ];
    for (path, status) in statuses {
        let response = service.clone().oneshot(request(path)).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("webhook_duplicates_total{route=\"github\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("webhook_rejections_total{route=\"office\",reason=\"forbidden_ip\"} 1\n"),
        "{text}"
    );
}
