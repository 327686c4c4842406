//! The four integration examples, driven over real sockets: each example's `app` is served on
//! `127.0.0.1:0` the way its `main` serves it, and spoken to with raw HTTP/1.1.

mod support;

#[allow(dead_code)] // the example's `main` and constants are not used here
#[path = "../examples/axum.rs"]
mod axum_example;
#[allow(dead_code)]
#[path = "../examples/hyper.rs"]
mod hyper_example;
#[allow(dead_code)]
#[path = "../examples/piecemeal.rs"]
mod piecemeal_example;
#[allow(dead_code)]
#[path = "../examples/warp.rs"]
mod warp_example;

use std::net::SocketAddr;

use support::{RawResponse, post_bytes, raw};
use tokio::net::TcpListener;
use tower_webhooks::{rate_limit::RateLimitConfig, secret::Secret};

const SECRET: &str = "example-secret";
const WEBHOOK: &str = "/plugins/webhooks/zap";

fn secret() -> Secret {
    Secret::new(SECRET).unwrap()
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A JSON POST to `path` presenting `secret` (none when `None`).
async fn post_json(addr: SocketAddr, path: &str, secret: Option<&str>, body: &str) -> RawResponse {
    let bearer = secret.map(|secret| format!("Bearer {secret}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    raw(addr, &post_bytes(path, &headers, body.as_bytes())).await
}

async fn get(addr: SocketAddr, path: &str) -> RawResponse {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

// ---- axum ----------------------------------------------------------------------------------------

async fn serve_axum() -> SocketAddr {
    let (listener, addr) = listener().await;
    let app = axum_example::app(secret()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn axum_health_is_untouched_by_the_webhook_layers() {
    let addr = serve_axum().await;
    // A GET with no secret and no JSON: any of our layers would refuse it.
    let response = get(addr, "/health").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "ok");
    assert_eq!(response.header("www-authenticate"), None);
}

#[tokio::test]
async fn axum_webhook_creates_a_flow() {
    let addr = serve_axum().await;
    let response = post_json(
        addr,
        WEBHOOK,
        Some(SECRET),
        r#"{"action":"create_flow","goal":"triage the inbox"}"#,
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let envelope = response.json();
    assert_eq!(envelope["ok"], true);
    let flow_id = envelope["result"]["flow"]["flowId"].as_str().unwrap();
    assert!(!flow_id.is_empty());
}

#[tokio::test]
async fn axum_webhook_refuses_a_wrong_secret() {
    let addr = serve_axum().await;
    let response = post_json(
        addr,
        WEBHOOK,
        Some("not-the-secret"),
        r#"{"action":"create_flow","goal":"x"}"#,
    )
    .await;
    assert_eq!(response.status, 401);
    assert_eq!(response.text(), "unauthorized");
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn axum_webhook_get_is_method_not_allowed() {
    let addr = serve_axum().await;
    let response = get(addr, WEBHOOK).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("POST"));
    assert_eq!(response.text(), "Method Not Allowed");
}

#[tokio::test]
async fn axum_fallback_variant_routes_the_normalised_path() {
    let (listener, addr) = listener().await;
    let app = axum_example::app_with_fallback(secret())
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    assert_eq!(get(addr, "/health").await.status, 200);
    let response = post_json(
        addr,
        "/plugins/webhooks/zap/",
        Some(SECRET),
        r#"{"action":"create_flow","goal":"via the fallback"}"#,
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let unknown = post_json(addr, "/elsewhere", Some(SECRET), "{}").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.text(), "Not Found");
}

// ---- hyper ---------------------------------------------------------------------------------------

async fn serve_hyper() -> SocketAddr {
    let (listener, addr) = listener().await;
    tokio::spawn(hyper_example::accept_loop(
        listener,
        hyper_example::app(secret()),
    ));
    addr
}

#[tokio::test]
async fn hyper_create_then_get_flow_round_trip() {
    let addr = serve_hyper().await;
    let created = post_json(
        addr,
        WEBHOOK,
        Some(SECRET),
        r#"{"action":"create_flow","goal":"round trip"}"#,
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let flow_id = created.json()["result"]["flow"]["flowId"]
        .as_str()
        .unwrap()
        .to_owned();

    let fetched = post_json(
        addr,
        WEBHOOK,
        Some(SECRET),
        &serde_json::json!({ "action": "get_flow", "flowId": flow_id }).to_string(),
    )
    .await;
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    let flow = &fetched.json()["result"]["flow"];
    assert_eq!(flow["flowId"], flow_id.as_str());
    assert_eq!(flow["goal"], "round trip");
}

#[tokio::test]
async fn hyper_unknown_path_is_not_found() {
    let addr = serve_hyper().await;
    let response = post_json(addr, "/plugins/webhooks/nope", Some(SECRET), "{}").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.text(), "Not Found");
}

// ---- warp ----------------------------------------------------------------------------------------

#[tokio::test]
async fn warp_route_needs_the_secret() {
    let server = support::serve(warp_example::app(secret(), RateLimitConfig::new())).await;
    let body = r#"{"hello":"warp"}"#;

    let refused = post_json(server.addr, "/hooks/echo", None, body).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.text(), "unauthorized");

    let accepted = post_json(server.addr, "/hooks/echo", Some(SECRET), body).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    let reply = accepted.json();
    assert_eq!(reply["received"]["hello"], "warp");
    // The peer address `serve` inserted reached the warp filter.
    let peer: SocketAddr = reply["peer"].as_str().unwrap().parse().unwrap();
    assert!(peer.ip().is_loopback());
}

#[tokio::test]
async fn warp_body_over_the_cap_is_refused_before_warp_reads_it() {
    let server = support::serve(warp_example::app(secret(), RateLimitConfig::new())).await;
    let bearer = format!("Bearer {SECRET}");
    // The declared length is over the cap and no byte of it is sent: the answer comes at once.
    let request = post_bytes(
        "/hooks/echo",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
            ("content-length", "1000000"),
        ],
        b"",
    );
    let response = raw(server.addr, &request).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.text(), "Payload too large");
}

// ---- piecemeal -----------------------------------------------------------------------------------

fn quota(max_requests: u32) -> RateLimitConfig {
    RateLimitConfig::new().max_requests(max_requests)
}

#[tokio::test]
async fn piecemeal_deploy_with_the_secret() {
    let server = support::serve(piecemeal_example::app(secret(), quota(10))).await;
    let response = post_json(server.addr, "/deploy", Some(SECRET), "").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json(),
        serde_json::json!({ "ok": true, "deploy": "queued" })
    );
}

#[tokio::test]
async fn piecemeal_deploy_without_the_secret() {
    let server = support::serve(piecemeal_example::app(secret(), quota(10))).await;
    let response = post_json(server.addr, "/deploy", None, "").await;
    assert_eq!(response.status, 401);
    assert_eq!(response.text(), "unauthorized");
}

#[tokio::test]
async fn piecemeal_rate_limit_after_the_quota() {
    let server = support::serve(piecemeal_example::app(secret(), quota(2))).await;
    // Refused requests spend the budget too: the limit runs before auth.
    assert_eq!(
        post_json(server.addr, "/deploy", None, "").await.status,
        401
    );
    assert_eq!(
        post_json(server.addr, "/deploy", Some(SECRET), "")
            .await
            .status,
        200
    );

    let limited = post_json(server.addr, "/deploy", Some(SECRET), "").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.text(), "Too Many Requests");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
}
