//! FixedWindowRateLimit against SPEC §2.3, on a manual clock.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use static_assertions::assert_impl_all;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_webhooks::future::ResponseFuture;
use tower_webhooks::{
    FixedWindowRateLimit, FixedWindowRateLimitLayer, ResolveClientIp, ResponseBody,
    client_ip::TrustedProxies,
    clock::{ManualClock, SharedClock},
    keyed::{GlobalKey, PathAndClientIp},
    rate_limit::{FixedWindowLimiter, RateLimitConfig},
};

assert_impl_all!(ResponseFuture<futures_util::future::Ready<Result<Response<Full<Bytes>>, Infallible>>>: Send, Sync);
assert_impl_all!(ResponseBody<Full<Bytes>>: Send, Sync);
assert_impl_all!(FixedWindowRateLimit<tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>>: Send, Sync, Clone);
assert_impl_all!(FixedWindowLimiter: Send, Sync, Clone);

type Req = Request<Empty<Bytes>>;

fn request(path: &str, peer: &str) -> Req {
    let mut req = Request::post(path).body(Empty::new()).unwrap();
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

fn ok_service()
-> impl Service<Req, Response = Response<Empty<Bytes>>, Error = Infallible, Future = impl Send> + Clone
{
    service_fn(|_req: Req| async { Ok::<_, Infallible>(Response::new(Empty::new())) })
}

fn config(window_ms: u64, max: u32, keys: usize) -> RateLimitConfig {
    RateLimitConfig::new()
        .window(Duration::from_millis(window_ms))
        .max_requests(max)
        .max_tracked_keys(keys)
}

fn limiter(config: RateLimitConfig) -> (FixedWindowLimiter, Arc<ManualClock>) {
    let clock = ManualClock::new(1_700_000_000_000);
    let shared: SharedClock = clock.clone();
    (FixedWindowLimiter::with_clock(config, shared), clock)
}

/// Status and `Retry-After` of one request; asserts the exact 429 text and content type.
async fn send<S>(svc: &S, req: Req) -> (StatusCode, Option<String>)
where
    S: Service<Req, Response = Response<ResponseBody<Empty<Bytes>>>, Error = Infallible> + Clone,
{
    let response = svc.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    if status == StatusCode::TOO_MANY_REQUESTS {
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"Too Many Requests");
    } else {
        assert!(retry.is_none(), "accepted responses carry no Retry-After");
    }
    (status, retry)
}

#[tokio::test]
async fn exactly_the_quota_passes_then_429_with_retry_after() {
    let (limiter, clock) = limiter(RateLimitConfig::default());
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter).layer(ok_service());
    for i in 0..120 {
        assert_eq!(
            send(&svc, request("/hook", "203.0.113.1:1")).await,
            (StatusCode::OK, None),
            "request {}",
            i + 1
        );
    }
    clock.advance(1);
    assert_eq!(
        send(&svc, request("/hook", "203.0.113.1:1")).await,
        (StatusCode::TOO_MANY_REQUESTS, Some("60".into()))
    );
    clock.advance(59_998 - 1_000);
    // 1,001 ms left rounds up to 2 s.
    assert_eq!(
        send(&svc, request("/hook", "203.0.113.1:1")).await,
        (StatusCode::TOO_MANY_REQUESTS, Some("2".into()))
    );
    clock.advance(1_000);
    // 1 ms left is still a whole second.
    assert_eq!(
        send(&svc, request("/hook", "203.0.113.1:1")).await,
        (StatusCode::TOO_MANY_REQUESTS, Some("1".into()))
    );
}

#[tokio::test]
async fn retry_after_at_the_first_rejection_with_59999_ms_left_is_60() {
    let (limiter, clock) = limiter(config(60_000, 1, 16));
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter).layer(ok_service());
    assert_eq!(
        send(&svc, request("/a", "1.1.1.1:1")).await.0,
        StatusCode::OK
    );
    clock.advance(1);
    assert_eq!(
        send(&svc, request("/a", "1.1.1.1:1")).await,
        (StatusCode::TOO_MANY_REQUESTS, Some("60".into()))
    );
    // With no time elapsed: 60,000 ms left is exactly 60 s.
    let (limiter, _clock) = self::limiter(config(60_000, 1, 16));
    let key = limiter.hash("k");
    limiter.hit(key).unwrap();
    assert_eq!(limiter.hit(key).unwrap_err().retry_after_secs(), 60);
}

#[tokio::test]
async fn window_ends_exactly_window_ms_after_the_first_request() {
    let (limiter, clock) = limiter(config(60_000, 2, 16));
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter).layer(ok_service());
    let hit = || send(&svc, request("/w", "198.51.100.2:9"));
    assert_eq!(hit().await.0, StatusCode::OK);
    clock.advance(30_000);
    assert_eq!(hit().await.0, StatusCode::OK);
    clock.advance(29_999);
    assert_eq!(
        hit().await,
        (StatusCode::TOO_MANY_REQUESTS, Some("1".into()))
    );
    clock.advance(1);
    // Exactly 60,000 ms after the first request: a fresh window with the full quota.
    assert_eq!(hit().await.0, StatusCode::OK);
    assert_eq!(hit().await.0, StatusCode::OK);
    assert_eq!(
        hit().await,
        (StatusCode::TOO_MANY_REQUESTS, Some("60".into()))
    );
}

#[tokio::test]
async fn windows_are_anchored_per_key() {
    let (limiter, clock) = limiter(config(60_000, 1, 16));
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter).layer(ok_service());
    assert_eq!(
        send(&svc, request("/a", "10.1.1.1:1")).await.0,
        StatusCode::OK
    );
    clock.advance(45_000);
    // A second key starting later has a window of its own...
    assert_eq!(
        send(&svc, request("/a", "10.2.2.2:1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, request("/a", "10.2.2.2:1")).await,
        (StatusCode::TOO_MANY_REQUESTS, Some("60".into()))
    );
    assert_eq!(
        send(&svc, request("/a", "10.1.1.1:1")).await,
        (StatusCode::TOO_MANY_REQUESTS, Some("15".into()))
    );
    clock.advance(15_000);
    // ...so the first key is free again while the second is still limited.
    assert_eq!(
        send(&svc, request("/a", "10.1.1.1:1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, request("/a", "10.2.2.2:1")).await,
        (StatusCode::TOO_MANY_REQUESTS, Some("45".into()))
    );
}

#[tokio::test]
async fn rejected_requests_count_and_never_reach_the_inner_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let inner = service_fn(move |_req: Req| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
    });
    let (limiter, clock) = limiter(config(1_000, 3, 16));
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter.clone()).layer(inner);
    for _ in 0..3 {
        assert_eq!(
            send(&svc, request("/r", "9.9.9.9:1")).await.0,
            StatusCode::OK
        );
    }
    for _ in 0..5 {
        assert_eq!(
            send(&svc, request("/r", "9.9.9.9:1")).await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let key = limiter.hash_request(&PathAndClientIp::default(), &request("/r", "9.9.9.9:1"));
    assert_eq!(limiter.window_count(key), 8);
    // The next window starts from zero, not from a balance carried over.
    clock.advance(1_000);
    assert_eq!(limiter.window_count(key), 0);
    for _ in 0..3 {
        assert_eq!(
            send(&svc, request("/r", "9.9.9.9:1")).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        send(&svc, request("/r", "9.9.9.9:1")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn the_raw_counter_counts_rejections() {
    let (limiter, _clock) = limiter(config(60_000, 2, 16));
    let key = limiter.hash(&("/k", 1u8));
    assert!(limiter.hit(key).is_ok());
    assert!(limiter.hit(key).is_ok());
    assert!(limiter.hit(key).is_err());
    assert!(limiter.hit(key).is_err());
    assert_eq!(limiter.window_count(key), 4);
    assert_eq!(limiter.window_count(limiter.hash("untracked")), 0);
    assert_eq!(limiter.tracked_keys(), 1);
}

#[tokio::test]
async fn raw_paths_differ_by_a_trailing_slash() {
    let (limiter, _clock) = limiter(config(60_000, 1, 16));
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter.clone()).layer(ok_service());
    assert_eq!(
        send(&svc, request("/x", "1.2.3.4:5")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, request("/x/", "1.2.3.4:5")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, request("/x", "1.2.3.4:5")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&svc, request("/x/", "1.2.3.4:5")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Case is part of the raw path too, and the query string is not.
    assert_eq!(
        send(&svc, request("/X", "1.2.3.4:5")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, request("/x?token=1", "1.2.3.4:5")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(limiter.tracked_keys(), 3);
}

#[tokio::test]
async fn clones_of_layer_and_service_share_one_limiter() {
    let layer = FixedWindowRateLimitLayer::new(config(60_000, 3, 16));
    let layer_clone = layer.clone();
    assert!(layer.limiter().same_limiter(layer_clone.limiter()));
    let a = layer.layer(ok_service());
    let b = layer_clone.layer(ok_service());
    let c = a.clone();
    for svc in [&a, &b, &c] {
        assert_eq!(
            send(svc, request("/s", "4.4.4.4:4")).await.0,
            StatusCode::OK
        );
    }
    for svc in [&a, &b, &c] {
        assert_eq!(
            send(svc, request("/s", "4.4.4.4:4")).await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    // Two layers built separately do not share.
    let other = FixedWindowRateLimitLayer::new(config(60_000, 3, 16));
    assert!(!other.limiter().same_limiter(layer.limiter()));
    assert_eq!(
        send(&other.layer(ok_service()), request("/s", "4.4.4.4:4"))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn one_limiter_shared_by_two_layers() {
    let (limiter, _clock) = limiter(config(60_000, 2, 16));
    let route_a = FixedWindowRateLimitLayer::with_limiter(limiter.clone()).layer(ok_service());
    let route_b = FixedWindowRateLimitLayer::with_limiter(limiter.clone())
        .key_extractor(GlobalKey::new())
        .layer(ok_service());
    assert_eq!(
        send(&route_a, request("/a", "1.1.1.1:1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&route_b, request("/b", "2.2.2.2:1")).await.0,
        StatusCode::OK
    );
    assert_eq!(limiter.tracked_keys(), 2);
    assert!(route_a.limiter().same_limiter(route_b.limiter()));
}

#[tokio::test]
async fn a_flood_of_distinct_clients_never_exceeds_the_cap() {
    let (limiter, clock) = limiter(config(60_000, 120, 4_096));
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter.clone()).layer(ok_service());
    let mut max_seen = 0;
    for i in 0u32..100_000 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let mut req = Request::post("/flood").body(Empty::new()).unwrap();
        req.extensions_mut().insert(SocketAddr::from((ip, 443)));
        assert_eq!(send(&svc, req).await.0, StatusCode::OK);
        if i % 1_000 == 0 {
            let tracked = limiter.tracked_keys();
            assert!(tracked <= 4_096, "{tracked} keys tracked after {i}");
            max_seen = max_seen.max(tracked);
            clock.advance(1);
        }
    }
    let tracked = limiter.tracked_keys();
    assert!(tracked <= 4_096, "{tracked}");
    // The cap is used, not just respected: every shard fills up under 100k keys.
    assert_eq!(tracked, 4_096);
    assert!(max_seen <= 4_096);
}

#[tokio::test]
async fn an_evicted_key_starts_a_fresh_window() {
    // A cap of one key is one shard with exact LRU.
    let (limiter, _clock) = limiter(config(60_000, 1, 1));
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter.clone()).layer(ok_service());
    assert_eq!(
        send(&svc, request("/e", "1.1.1.1:1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, request("/e", "1.1.1.1:1")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&svc, request("/e", "2.2.2.2:1")).await.0,
        StatusCode::OK
    );
    assert_eq!(limiter.tracked_keys(), 1);
    assert_eq!(
        send(&svc, request("/e", "1.1.1.1:1")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_global_key_gives_every_request_one_budget() {
    let (limiter, _clock) = limiter(config(60_000, 2, 16));
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter.clone())
        .key_extractor(GlobalKey::new())
        .layer(ok_service());
    assert_eq!(
        send(&svc, request("/a", "1.1.1.1:1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, request("/b", "2.2.2.2:2")).await.0,
        StatusCode::OK
    );
    // No peer address at all counts too.
    let bare = Request::post("/c").body(Empty::new()).unwrap();
    assert_eq!(
        send(&svc, bare).await,
        (StatusCode::TOO_MANY_REQUESTS, Some("60".into()))
    );
    assert_eq!(limiter.tracked_keys(), 1);
}

fn forwarded(peer: &str, xff: &str) -> Req {
    let mut req = request("/p", peer);
    req.headers_mut()
        .insert("x-forwarded-for", xff.parse().unwrap());
    req
}

#[tokio::test]
async fn trusted_proxies_key_by_the_forwarded_client() {
    let (limiter, _clock) = limiter(config(60_000, 1, 16));
    let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
    let svc = ResolveClientIp::new(
        FixedWindowRateLimitLayer::with_limiter(limiter.clone()).layer(ok_service()),
        proxies,
    );
    // Two clients behind one proxy have separate budgets.
    assert_eq!(
        send(&svc, forwarded("10.0.0.1:80", "203.0.113.5")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, forwarded("10.0.0.1:80", "203.0.113.6")).await.0,
        StatusCode::OK
    );
    // The same client through another trusted proxy, past a trusted hop, is the same key.
    assert_eq!(
        send(&svc, forwarded("10.9.9.9:80", "203.0.113.5, 10.0.0.7"))
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // An untrusted peer cannot spoof a fresh budget with the header: it is keyed by itself.
    assert_eq!(
        send(&svc, forwarded("198.51.100.1:80", "1.1.1.1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, forwarded("198.51.100.1:80", "2.2.2.2")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A garbled header from a trusted proxy falls back to the proxy itself.
    assert_eq!(
        send(&svc, forwarded("10.0.0.1:80", "not-an-ip")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, forwarded("10.0.0.1:80", "")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn without_trusted_proxies_forwarding_headers_are_ignored() {
    let (limiter, _clock) = limiter(config(60_000, 1, 16));
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter).layer(ok_service());
    assert_eq!(
        send(&svc, forwarded("10.0.0.1:80", "203.0.113.5")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, forwarded("10.0.0.1:80", "203.0.113.6")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn ipv4_mapped_peers_share_the_ipv4_budget() {
    let (limiter, _clock) = limiter(config(60_000, 1, 16));
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter).layer(ok_service());
    assert_eq!(
        send(&svc, request("/m", "192.0.2.1:1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, request("/m", "[::ffff:192.0.2.1]:2")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn constructors_and_accessors() {
    let config = config(5_000, 7, 9);
    assert_eq!(
        (config.window, config.max_requests, config.max_tracked_keys),
        (Duration::from_millis(5_000), 7, 9)
    );
    let defaults = RateLimitConfig::default();
    assert_eq!(
        (
            defaults.window,
            defaults.max_requests,
            defaults.max_tracked_keys
        ),
        (Duration::from_millis(60_000), 120, 4_096)
    );
    let mut svc = FixedWindowRateLimit::new(ok_service(), config);
    assert_eq!(svc.limiter().config(), config);
    let _: &_ = svc.get_ref();
    let _: &mut _ = svc.get_mut();
    let inner = svc.into_inner();
    let layered = FixedWindowRateLimit::<()>::layer(config).layer(inner);
    assert_eq!(layered.limiter().config().max_requests, 7);
}

#[tokio::test]
async fn errors_of_the_inner_service_pass_through_and_still_count() {
    let inner = service_fn(|_req: Req| async { Err::<Response<Empty<Bytes>>, _>("boom") });
    let (limiter, _clock) = limiter(config(60_000, 1, 16));
    let svc = FixedWindowRateLimitLayer::with_limiter(limiter).layer(inner);
    assert_eq!(
        svc.clone()
            .oneshot(request("/e", "1.1.1.1:1"))
            .await
            .unwrap_err(),
        "boom"
    );
    let response = svc
        .clone()
        .oneshot(request("/e", "1.1.1.1:1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn works_as_an_axum_layer_without_handle_error() {
    let (limiter, _clock) = limiter(RateLimitConfig::default());
    let _router: axum::Router = axum::Router::new()
        .route("/hook", axum::routing::post(|| async { "ok" }))
        .layer(FixedWindowRateLimitLayer::with_limiter(limiter));
}
