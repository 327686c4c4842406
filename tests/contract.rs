//! The contract end to end: the assembled pipeline served over real sockets, every status of SPEC §2
//! in order, a flow's whole lifecycle through every action, owner isolation, reload and shutdown.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use serde_json::{Value, json};
use support::{RawResponse, TestServer, connect, is_closed, post_bytes, raw, read_response, serve};
use tokio::io::AsyncWriteExt;
use tower_webhooks::gateway::Gateway;
use tower_webhooks::in_flight::InFlightLimiter;
use tower_webhooks::keyed::NormalizedPathAndPeerIp;
use tower_webhooks::{Limits, ResolvedRoute, Secret, WebhookPipeline};

const SECRET: &str = "contract-secret-0123456789";
const SESSION: &str = "agent:main:main";
const PATH: &str = "/plugins/webhooks/zap";

fn route() -> ResolvedRoute {
    ResolvedRoute::new("zap", SESSION, [Secret::new(SECRET).unwrap()])
}

async fn gateway_with(
    limits: Limits,
    routes: &[ResolvedRoute],
) -> (TestServer, WebhookPipeline<tower_webhooks::MemoryStore>) {
    let pipeline = WebhookPipeline::in_memory(limits);
    let server = serve(pipeline.router(routes)).await;
    (server, pipeline)
}

fn json_headers(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("authorization", format!("Bearer {secret}")),
    ]
}

async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    raw(addr, &post_bytes(path, headers, body)).await
}

async fn action(addr: SocketAddr, path: &str, secret: &str, body: Value) -> RawResponse {
    let headers = json_headers(secret);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    post(addr, path, &headers, body.to_string().as_bytes()).await
}

fn assert_text(response: &RawResponse, status: u16, text: &str) {
    assert_eq!(
        (response.status, response.text().as_str()),
        (status, text),
        "{response:?}"
    );
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

fn assert_no_owner_metadata(response: &RawResponse) {
    assert!(
        !response.text().contains(SESSION),
        "session key in {}",
        response.text()
    );
    let body = response.json();
    let result = &body["result"];
    let flows = ["flow", "current"]
        .iter()
        .map(|k| &result[*k])
        .chain(result["flows"].as_array().into_iter().flatten());
    for flow in flows.filter(|f| f.is_object()) {
        for key in ["ownerKey", "requesterOrigin", "chainId"] {
            assert!(flow.get(key).is_none(), "{key} in {flow}");
        }
    }
    let tasks =
        std::iter::once(&result["task"]).chain(result["tasks"].as_array().into_iter().flatten());
    for task in tasks.filter(|t| t.is_object()) {
        for key in [
            "ownerKey",
            "requesterSessionKey",
            "requesterAgentId",
            "metadata",
        ] {
            assert!(task.get(key).is_none(), "{key} in {task}");
        }
    }
}

#[tokio::test]
async fn every_plain_rejection_has_its_status_text_and_headers() {
    let limits = Limits {
        body: tower_webhooks::BodyLimitConfig::buffered()
            .max_bytes(1024)
            .timeout(std::time::Duration::from_millis(300)),
        ..Limits::default()
    };
    let (server, pipeline) = gateway_with(limits, &[route()]).await;
    let addr = server.addr;
    let auth = format!("Bearer {SECRET}");
    let good: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("authorization", &auth),
    ];

    // 1. No route.
    assert_text(
        &post(addr, "/plugins/webhooks/other", &good, b"{}").await,
        404,
        "Not Found",
    );
    // 2. Method, before anything else: a GET with no content type and no secret.
    let get = raw(
        addr,
        format!("GET {PATH} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_text(&get, 405, "Method Not Allowed");
    assert_eq!(get.header("allow"), Some("POST"));
    // 4. Content type, before auth: no secret at all still says 415.
    assert_text(
        &post(addr, PATH, &[("content-type", "text/plain")], b"{}").await,
        415,
        "Unsupported Media Type",
    );
    assert_text(
        &post(addr, PATH, &[("authorization", &auth)], b"{}").await,
        415,
        "Unsupported Media Type",
    );
    // 6. Auth, before the body: a wrong secret with an oversize length says 401, not 413.
    let wrong = [
        ("content-type", "application/json"),
        ("authorization", "Bearer nope"),
        ("content-length", "999999"),
    ];
    let unauthorized = raw(addr, &post_bytes(PATH, &wrong, b"")).await;
    assert_text(&unauthorized, 401, "unauthorized");
    assert_eq!(unauthorized.header("www-authenticate"), Some("Bearer"));
    let query = post(addr, &format!("{PATH}?token={SECRET}"), &good, b"{}").await;
    assert_text(&query, 400, "secret must not be sent in the query string");
    // 7. Body: 413 by length at once, without reading.
    let mut declared = connect(addr).await;
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
        ("content-length", "1025"),
    ];
    declared
        .write_all(&post_bytes(PATH, &headers, b""))
        .await
        .unwrap();
    let too_large = read_response(&mut declared).await;
    assert_text(&too_large, 413, "Payload too large");
    assert_eq!(too_large.header("connection"), Some("close"));
    assert!(
        is_closed(&mut declared).await,
        "413 must close the connection"
    );
    // 413 by chunked stream.
    let mut chunked = post_bytes(
        PATH,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("transfer-encoding", "chunked"),
        ],
        b"",
    );
    for _ in 0..3 {
        chunked.extend_from_slice(format!("200\r\n{}\r\n", "x".repeat(512)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = raw(addr, &chunked).await;
    assert_text(&streamed, 413, "Payload too large");
    assert_eq!(streamed.header("connection"), Some("close"));
    // 408 on a stalled body.
    let mut stalled = connect(addr).await;
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
        ("content-length", "100"),
    ];
    stalled
        .write_all(&post_bytes(PATH, &headers, b"{\"action\""))
        .await
        .unwrap();
    let timeout = read_response(&mut stalled).await;
    assert_text(&timeout, 408, "Request body timeout");
    assert_eq!(timeout.header("connection"), Some("close"));
    // A malformed length never reaches a handler (hyper refuses it first; we would too).
    let malformed = raw(
        addr,
        &post_bytes(
            PATH,
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
                ("content-length", "abc"),
            ],
            b"",
        ),
    )
    .await;
    assert_eq!(malformed.status, 400);
    // 8. Not JSON.
    for body in [&b""[..], b"   ", b"not json", b"\xff\xfe", b"{\"action\":"] {
        assert_text(
            &post(addr, PATH, &good, body).await,
            400,
            "invalid request body",
        );
    }
    // 9. Schema: JSON envelope without routeId.
    let invalid = post(
        addr,
        PATH,
        &good,
        br#"{"action":"get_flow","flowId":"x","extra":1}"#,
    )
    .await;
    assert_eq!(invalid.status, 400);
    assert_eq!(
        invalid.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        invalid.json(),
        json!({"ok":false,"code":"invalid_request","error":"extra: unknown field"})
    );
    assert_eq!(
        pipeline.store().flow_count(),
        0,
        "a refused request changed the store"
    );
}

#[tokio::test]
async fn the_rate_limit_runs_before_content_type_and_auth() {
    let (server, _) = gateway_with(Limits::default(), &[route()]).await;
    let addr = server.addr;
    // Unauthenticated, wrongly typed requests spend the same budget.
    for i in 0..120 {
        let response = post(addr, PATH, &[("content-type", "text/plain")], b"{}").await;
        assert_eq!(response.status, 415, "request {i}");
    }
    let limited = action(addr, PATH, SECRET, json!({"action":"list_flows"})).await;
    assert_text(&limited, 429, "Too Many Requests");
    assert_eq!(limited.header("retry-after"), Some("60"));
    // The raw path is the key: `/zap/` is another budget, and reaches the same route.
    let other = action(
        addr,
        &format!("{PATH}/"),
        SECRET,
        json!({"action":"list_flows"}),
    )
    .await;
    assert_eq!(other.status, 200);
    // Method still comes first.
    let get = raw(
        addr,
        format!("GET {PATH} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(get.status, 405);
}

#[tokio::test]
async fn the_ninth_request_in_flight_is_refused_at_once() {
    let (server, pipeline) = gateway_with(Limits::default(), &[route()]).await;
    let addr = server.addr;
    let auth = format!("Bearer {SECRET}");
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
        ("content-length", "64"),
    ];
    // Eight requests past auth, each stuck sending its body: each holds a slot.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut stream = connect(addr).await;
        stream
            .write_all(&post_bytes(PATH, &headers, b"{"))
            .await
            .unwrap();
        held.push(stream);
    }
    let limiter: &InFlightLimiter = pipeline.in_flight_limiter();
    let mut probe = Request::post(PATH).body(()).unwrap();
    probe
        .extensions_mut()
        .insert(SocketAddr::from(([127, 0, 0, 1], 1)));
    let key = limiter.hash_request(&NormalizedPathAndPeerIp::new(), &probe);
    for _ in 0..1000 {
        if limiter.in_flight(key) == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        limiter.in_flight(key),
        8,
        "the eight held requests never reached the limiter"
    );

    let refused = action(addr, PATH, SECRET, json!({"action":"list_flows"})).await;
    assert_text(&refused, 429, "Too Many Requests");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Normalisation: `/zap/` shares the in-flight budget of `/zap`.
    assert_eq!(
        action(
            addr,
            &format!("{PATH}/"),
            SECRET,
            json!({"action":"list_flows"})
        )
        .await
        .status,
        429
    );

    // Finishing one body frees its slot once its response is sent.
    let mut first = held.remove(0);
    first.write_all(&[b' '; 63]).await.unwrap();
    assert_eq!(read_response(&mut first).await.status, 400);
    for _ in 0..1000 {
        if limiter.in_flight(key) == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        action(addr, PATH, SECRET, json!({"action":"list_flows"}))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_flow_lives_its_whole_life_through_every_action() {
    let (server, pipeline) = gateway_with(Limits::default(), &[route()]).await;
    let addr = server.addr;
    let act = |body: Value| action(addr, PATH, SECRET, body);

    let created =
        act(json!({"action":"create_flow","goal":"ship it","stateJson":{"ownerKey":"mine"}})).await;
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(
        created.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = created.json();
    assert_eq!(
        (body["ok"].clone(), body["routeId"].clone()),
        (json!(true), json!("zap"))
    );
    let flow = &body["result"]["flow"];
    let flow_id = flow["flowId"].as_str().unwrap().to_owned();
    assert_eq!(flow["controllerId"], "webhooks/zap");
    assert_eq!(flow["revision"], 0);
    assert_eq!(flow["status"], "queued");
    // Caller-supplied JSON comes back exactly as stored, owner-looking keys included.
    assert_eq!(flow["stateJson"], json!({"ownerKey":"mine"}));
    assert!(flow.get("ownerKey").is_none());

    for (request, pointer) in [
        (
            json!({"action":"get_flow","flowId":flow_id}),
            "/result/flow/flowId",
        ),
        (json!({"action":"list_flows"}), "/result/flows/0/flowId"),
        (json!({"action":"find_latest_flow"}), "/result/flow/flowId"),
        (
            json!({"action":"resolve_flow","token":flow_id}),
            "/result/flow/flowId",
        ),
        (
            json!({"action":"resolve_flow","token":SESSION}),
            "/result/flow/flowId",
        ),
    ] {
        let response = act(request.clone()).await;
        assert_eq!(
            response.json().pointer(pointer),
            Some(&json!(flow_id)),
            "{request}"
        );
        assert_no_owner_metadata(&response);
    }
    assert_eq!(
        act(json!({"action":"resolve_flow","token":"nothing"}))
            .await
            .json()["result"],
        json!({"flow":null})
    );

    let waiting = act(json!({"action":"set_waiting","flowId":flow_id,"expectedRevision":0,"blockedSummary":"needs review"})).await.json();
    assert_eq!(waiting["result"]["applied"], true);
    assert_eq!(waiting["result"]["flow"]["status"], "blocked");
    let stale = act(json!({"action":"resume_flow","flowId":flow_id,"expectedRevision":0})).await;
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["code"], "revision_conflict");
    assert_eq!(
        stale.json()["error"],
        "TaskFlow changed since the caller's expected revision."
    );
    assert_no_owner_metadata(&stale);
    let resumed = act(
        json!({"action":"resume_flow","flowId":flow_id,"expectedRevision":1,"status":"running"}),
    )
    .await
    .json();
    assert_eq!(resumed["result"]["flow"]["status"], "running");
    assert_eq!(resumed["result"]["flow"]["revision"], 2);

    let task_request = json!({"action":"run_task","flowId":flow_id,"runtime":"subagent","task":"write tests","runId":"run-1","childSessionKey":"agent:main:child"});
    let task = act(task_request.clone()).await;
    assert_eq!(task.status, 200, "{}", task.text());
    let task_id = task.json()["result"]["task"]["taskId"].clone();
    assert_no_owner_metadata(&task);
    assert_eq!(
        act(task_request).await.json()["result"]["task"]["taskId"],
        task_id,
        "runId is idempotent"
    );
    let forbidden = act(json!({"action":"run_task","flowId":flow_id,"runtime":"acp","task":"x","childSessionKey":"agent:other:x"})).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.json()["code"], "child_session_forbidden");
    let summary = act(json!({"action":"get_task_summary","flowId":flow_id}))
        .await
        .json();
    assert_eq!(summary["result"]["summary"]["total"], 1);
    assert_eq!(summary["result"]["summary"]["active"], 1);

    let cancel_requested =
        act(json!({"action":"request_cancel","flowId":flow_id,"expectedRevision":2}))
            .await
            .json();
    assert!(cancel_requested["result"]["flow"]["cancelRequestedAt"].is_u64());
    let refused =
        act(json!({"action":"run_task","flowId":flow_id,"runtime":"subagent","task":"more"})).await;
    assert_eq!(
        (refused.status, refused.json()["code"].clone()),
        (409, json!("cancel_requested"))
    );
    let cancelled = act(json!({"action":"cancel_flow","flowId":flow_id})).await;
    assert_eq!(cancelled.status, 200);
    let result = &cancelled.json()["result"];
    assert_eq!(
        (result["found"].clone(), result["cancelled"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(result["flow"]["status"], "cancelled");
    assert_eq!(result["tasks"][0]["status"], "cancelled");
    assert_no_owner_metadata(&cancelled);
    let again = act(json!({"action":"cancel_flow","flowId":flow_id})).await;
    assert_eq!(
        (again.status, again.json()["code"].clone()),
        (409, json!("terminal"))
    );
    assert_eq!(again.json()["error"], "Flow is already cancelled.");

    // finish_flow and fail_flow on a second flow.
    let second = act(json!({"action":"create_flow","goal":"two"}))
        .await
        .json();
    let second_id = second["result"]["flow"]["flowId"].clone();
    let finished = act(json!({"action":"finish_flow","flowId":second_id,"expectedRevision":0}))
        .await
        .json();
    assert_eq!(finished["result"]["flow"]["status"], "succeeded");
    let failed = act(json!({"action":"fail_flow","flowId":second_id,"expectedRevision":1,"blockedSummary":"late"})).await.json();
    assert_eq!(
        failed["result"]["flow"]["status"], "failed",
        "no status machine [compat]"
    );
    let missing = act(json!({"action":"finish_flow","flowId":"00000000-0000-4000-8000-000000000000","expectedRevision":0})).await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json(),
        json!({"ok":false,"routeId":"zap","code":"not_found","error":"TaskFlow not found.","result":{"applied":false,"code":"not_found"}})
    );
    assert_eq!(pipeline.store().flow_count(), 2);
}

#[tokio::test]
async fn two_routes_never_see_each_others_flows() {
    let other = ResolvedRoute::new("ci", "agent:ci:main", [Secret::new("ci-secret").unwrap()]);
    let (server, _) = gateway_with(Limits::default(), &[route(), other]).await;
    let addr = server.addr;
    let created = action(
        addr,
        PATH,
        SECRET,
        json!({"action":"create_flow","goal":"private"}),
    )
    .await
    .json();
    let flow_id = created["result"]["flow"]["flowId"].clone();
    let ci = "/plugins/webhooks/ci";
    assert_eq!(
        action(
            addr,
            ci,
            "ci-secret",
            json!({"action":"get_flow","flowId":flow_id})
        )
        .await
        .json()["result"],
        json!({"flow":null})
    );
    assert_eq!(
        action(addr, ci, "ci-secret", json!({"action":"list_flows"}))
            .await
            .json()["result"],
        json!({"flows":[]})
    );
    let mutate = action(
        addr,
        ci,
        "ci-secret",
        json!({"action":"finish_flow","flowId":flow_id,"expectedRevision":0}),
    )
    .await;
    assert_eq!(
        (mutate.status, mutate.json()["code"].clone()),
        (404, json!("not_found"))
    );
    // One route's secret does not open the other.
    assert_eq!(
        action(addr, ci, SECRET, json!({"action":"list_flows"}))
            .await
            .status,
        401
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tower-webhooks-contract-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(unix)]
fn write_secret_file(path: &std::path::Path, secret: &str) {
    use std::os::unix::fs::PermissionsExt;
    let staging = path.with_extension("new");
    std::fs::write(&staging, json!({"hooks":{"zap":secret}}).to_string()).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Rename so a concurrent reader sees the old file or the new one, never half of one.
    std::fs::rename(&staging, path).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn reload_rotates_a_file_secret_while_requests_run() {
    let dir = temp_dir("reload");
    let secret_file = dir.join("secrets.json");
    write_secret_file(&secret_file, "old-secret");
    let config = dir.join("webhooks.json5");
    std::fs::write(
        &config,
        format!(
            "{{ routes: {{ zap: {{ sessionKey: '{SESSION}', secret: {{ source: 'file', provider: 'vault', id: '/hooks/zap' }} }} }},\n  secrets: {{ providers: {{ vault: {{ source: 'file', path: '{}' }} }} }} }}",
            secret_file.display()
        ),
    )
    .unwrap();
    let (gateway, report) = Gateway::from_file(&config).unwrap();
    assert_eq!(report.routes, vec![("zap".to_owned(), PATH.to_owned())]);
    let gateway = Arc::new(gateway);
    let server = serve(gateway.router()).await;
    let addr = server.addr;
    assert_eq!(
        action(addr, PATH, "old-secret", json!({"action":"list_flows"}))
            .await
            .status,
        200
    );

    // Clients keep calling with either secret while the rotation happens; every answer must be a
    // clean 200 or 401, never an error or a dropped connection.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for secret in ["old-secret", "new-secret"] {
        let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) && statuses.len() < 50 {
                statuses.push(
                    action(addr, PATH, secret, json!({"action":"list_flows"}))
                        .await
                        .status,
                );
                answered.fetch_add(1, Ordering::SeqCst);
            }
            statuses
        }));
    }
    write_secret_file(&secret_file, "new-secret");
    let reloader = Arc::clone(&gateway);
    let report = tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .unwrap()
        .unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        for status in client.await.unwrap() {
            assert!(
                status == 200 || status == 401,
                "unexpected {status} during rotation"
            );
        }
    }
    assert!(answered.load(Ordering::SeqCst) > 0);
    assert_eq!(
        action(addr, PATH, "new-secret", json!({"action":"list_flows"}))
            .await
            .status,
        200
    );
    assert_eq!(
        action(addr, PATH, "old-secret", json!({"action":"list_flows"}))
            .await
            .status,
        401
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let (gateway, _) = Gateway::embedded(Secret::new(SECRET).unwrap());
    let server = serve(gateway.router()).await;
    let addr = server.addr;
    let body = json!({"action":"create_flow","goal":"finish me"}).to_string();
    let auth = format!("Bearer {SECRET}");
    let length = body.len().to_string();
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
        ("content-length", length.as_str()),
    ];
    let mut stream = connect(addr).await;
    stream
        .write_all(&post_bytes(
            "/plugins/webhooks/default",
            &headers,
            &body.as_bytes()[..10],
        ))
        .await
        .unwrap();
    let limiter = gateway.pipeline().in_flight_limiter();
    for _ in 0..1000 {
        if limiter.tracked_keys() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let draining = tokio::spawn(server.shutdown());
    stream.write_all(&body.as_bytes()[10..]).await.unwrap();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["result"]["flow"]["goal"], "finish me");
    assert_eq!(
        draining.await.unwrap(),
        tower_webhooks::serve::ServeOutcome::Drained
    );
    assert_eq!(
        gateway.pipeline().store().as_memory().unwrap().flow_count(),
        1
    );
}
