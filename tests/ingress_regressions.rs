//! Regression tests for defects of the ingress path found from outside (issue 10): route matching,
//! the lockout with an unknown client, trusted proxies written as IPv4-mapped IPv6, the query-string
//! secret check, and the router future polled after completion. Each failed before its fix.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::Request;
use support::{post_bytes, raw};
use tower::Service;
use tower_webhooks::{
    WebhookPipeline, WebhookRouter,
    body::BufferedBody,
    client_ip::TrustedProxies,
    config::{Limits, ResolvedRoute},
    secret::Secret,
};

const SECRET: &str = "ingress-regression-secret";
const ROUTE: &str = "/plugins/webhooks/default";

fn routes() -> [ResolvedRoute; 1] {
    [ResolvedRoute::new(
        "default",
        "agent:main:main",
        [Secret::new(SECRET).unwrap()],
    )]
}

fn list_flows(path: &str, secret: &str) -> Vec<u8> {
    let auth = format!("Bearer {secret}");
    post_bytes(
        path,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        br#"{"action":"list_flows"}"#,
    )
}

/// `/x` followed by Unicode whitespace used to reach route `/x` (the router trimmed the request path
/// with `str::trim`) while the rate limiter keyed on the raw path: every new whitespace mix was a
/// fresh 120-request window. Now only `/x` and `/x/` reach the route.
#[tokio::test]
async fn unicode_whitespace_after_a_route_path_does_not_reach_the_route() {
    let pipeline = WebhookPipeline::in_memory(Limits::default());
    let server = support::serve(pipeline.router(&routes())).await;

    for n in 1..=120 {
        let response = raw(server.addr, &list_flows(ROUTE, SECRET)).await;
        assert_eq!(response.status, 200, "request {n}: {}", response.text());
    }
    let over = raw(server.addr, &list_flows(ROUTE, SECRET)).await;
    assert_eq!(over.status, 429, "{}", over.text());

    let whitespace = [
        "\u{a0}",
        "\u{3000}",
        "\u{2000}",
        "\u{2005}",
        "\u{200a}",
        "\u{1680}",
        "\u{202f}",
        "\u{205f}",
        "\u{feff}",
        "\u{85}",
        "\u{2028}",
        "\u{a0}\u{3000}",
        "\u{3000}\u{a0}\u{2001}",
    ];
    for suffix in whitespace {
        for path in [format!("{ROUTE}{suffix}"), format!("{ROUTE}{suffix}/")] {
            let response = raw(server.addr, &list_flows(&path, SECRET)).await;
            assert_eq!(
                (response.status, response.text().as_str()),
                (404, "Not Found"),
                "{path:?}"
            );
        }
    }
    // The one other spelling of the route is its path with a trailing `/`: a raw path of its own
    // for the rate limit (SPEC §2.3), so it has its own window.
    let slash = raw(server.addr, &list_flows(&format!("{ROUTE}/"), SECRET)).await;
    assert_eq!(slash.status, 200, "{}", slash.text());
    let double_slash = raw(server.addr, &list_flows(&format!("{ROUTE}//"), SECRET)).await;
    assert_eq!(double_slash.status, 404);
    // And the route's own window is still closed.
    let still_over = raw(server.addr, &list_flows(ROUTE, SECRET)).await;
    assert_eq!(still_over.status, 429);
}

/// `axum::serve(listener, app)` records no peer address. Such requests all counted as `0.0.0.0`
/// for the lockout, so 20 wrong secrets from anyone locked every caller out for a minute.
#[tokio::test]
async fn an_unknown_client_neither_feeds_nor_is_refused_by_the_lockout() {
    let pipeline = WebhookPipeline::in_memory(Limits::default());
    let app = axum::Router::new().fallback_service(pipeline.router(&routes()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    for n in 1..=25 {
        let response = raw(addr, &list_flows(ROUTE, "wrong-secret")).await;
        assert_eq!(
            (response.status, response.text().as_str()),
            (401, "unauthorized"),
            "wrong secret {n}"
        );
    }
    let right = raw(addr, &list_flows(ROUTE, SECRET)).await;
    assert_eq!(right.status, 200, "{}", right.text());
    assert_eq!(
        pipeline.lockout().tracked_ips(),
        0,
        "unknown clients are never tracked"
    );
    server.abort();
}

/// A known client is still locked out after 20 failures: the fix above must not switch the lockout
/// off for clients whose address is known.
#[tokio::test]
async fn a_known_client_is_still_locked_out_after_twenty_failures() {
    let pipeline = WebhookPipeline::in_memory(Limits::default());
    let server = support::serve(pipeline.router(&routes())).await;
    for _ in 0..20 {
        assert_eq!(
            raw(server.addr, &list_flows(ROUTE, "wrong")).await.status,
            401
        );
    }
    let locked = raw(server.addr, &list_flows(ROUTE, SECRET)).await;
    assert_eq!(locked.status, 429);
    assert!(locked.header("retry-after").is_some());
}

/// `trustedProxies: ["::ffff:10.0.0.1"]` was accepted but never matched a peer (peers are compared
/// as IPv4): everyone behind that proxy shared one budget and one lockout.
#[tokio::test]
async fn a_trusted_proxy_written_as_ipv4_mapped_ipv6_is_trusted() {
    let config = tower_webhooks::WebhooksConfig::from_json5(&format!(
        r#"{{ routes: {{ default: {{ sessionKey: "agent:main:main", secret: "{SECRET}" }} }},
             limits: {{ trustedProxies: ["::ffff:127.0.0.1"], authFailures: {{ max: 2 }} }} }}"#
    ))
    .unwrap();
    let resolved = config.resolve();
    let pipeline = WebhookPipeline::in_memory(resolved.limits.clone());
    let server = support::serve(pipeline.router(&resolved.routes)).await;

    let from = |client: &str, secret: &str| {
        let auth = format!("Bearer {secret}");
        post_bytes(
            ROUTE,
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
                ("x-forwarded-for", client),
            ],
            br#"{"action":"list_flows"}"#,
        )
    };
    // Client A, behind the proxy, locks itself out...
    for _ in 0..2 {
        assert_eq!(
            raw(server.addr, &from("203.0.113.1", "wrong")).await.status,
            401
        );
    }
    assert_eq!(
        raw(server.addr, &from("203.0.113.1", SECRET)).await.status,
        429
    );
    // ...and client B, behind the same proxy, is not locked out with it.
    let other = raw(server.addr, &from("203.0.113.2", SECRET)).await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(pipeline.lockout().tracked_ips(), 1, "only client A failed");
    assert_eq!(
        resolved.limits.trusted_proxies,
        TrustedProxies::parse(["127.0.0.1"]).unwrap()
    );
}

/// `?%74oken=…` and `?a=1;token=…` slipped past the query-string secret check, though proxies and
/// logs read both as a `token` parameter.
#[tokio::test]
async fn a_secret_in_the_query_string_is_refused_however_its_name_is_spelled() {
    let pipeline = WebhookPipeline::in_memory(Limits::default());
    let server = support::serve(pipeline.router(&routes())).await;
    for query in [
        "?token=x",
        "?%74oken=abc",
        "?%74%6F%6B%65%6E=abc",
        "?a=1;token=abc",
        "?a=1;%53ecret=abc",
        "?a=1&b=2;SECRET",
    ] {
        let response = raw(server.addr, &list_flows(&format!("{ROUTE}{query}"), SECRET)).await;
        assert_eq!(
            (response.status, response.text().as_str()),
            (400, "secret must not be sent in the query string"),
            "{query}"
        );
    }
    for query in ["?tokens=1", "?a=%74oken", "?a=1;b=token"] {
        let response = raw(server.addr, &list_flows(&format!("{ROUTE}{query}"), SECRET)).await;
        assert_eq!(response.status, 200, "{query}: {}", response.text());
    }
}

/// The router's future used to poll its finished inner future again when polled after completion
/// (a panic for an `async` block); every other future of the crate answers `500` instead.
#[tokio::test]
async fn a_router_future_polled_after_completion_answers_500() {
    let pipeline = WebhookPipeline::in_memory(Limits::default());
    for path in [ROUTE, "/not-a-route"] {
        let mut router: WebhookRouter<_> = pipeline.router(&routes());
        let mut request = Request::post(path)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {SECRET}"))
            .body(BufferedBody::from(r#"{"action":"list_flows"}"#))
            .unwrap();
        request
            .extensions_mut()
            .insert(SocketAddr::from(([127, 0, 0, 1], 1)));
        std::future::poll_fn(|cx| Service::<Request<BufferedBody>>::poll_ready(&mut router, cx))
            .await
            .unwrap();
        let mut future = pin!(router.call(request));
        let first = std::future::poll_fn(|cx| future.as_mut().poll(cx))
            .await
            .unwrap();
        assert_ne!(first.status(), 500, "{path}");
        let mut cx = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(again)) => assert_eq!(again.status(), 500, "{path}"),
            other => panic!("{path}: {:?}", other.map(|r| r.map(|r| r.status()))),
        }
    }
}
