//! SharedSecretAuth: presented-secret rules, comparison, query-string refusal, lockout, rotation.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt, service_fn};
use tower_webhooks::{
    ResolveClientIp, ResponseBody, SharedSecretAuth, SharedSecretAuthLayer,
    auth::{AuthLockout, LockoutConfig, SharedSecretAuthConfig},
    client_ip::TrustedProxies,
    clock::ManualClock,
    secret::Secret,
};

type Body = Full<Bytes>;

fn secret(value: &str) -> Secret {
    Secret::new(value).unwrap()
}

type Handler = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// A handler counting its calls.
fn counted() -> (Arc<AtomicUsize>, Handler) {
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = Arc::clone(&calls);
        service_fn(move |_req: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner")))) }
        })
    };
    (calls, BoxCloneSyncService::new(handler))
}

fn request(peer: IpAddr, headers: &[(&str, &[u8])]) -> Request<Body> {
    request_to("/hook", peer, headers)
}

fn request_to(uri: &str, peer: IpAddr, headers: &[(&str, &[u8])]) -> Request<Body> {
    let mut request = Request::post(uri).body(Full::default()).unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    request
        .extensions_mut()
        .insert(SocketAddr::new(peer, 40000));
    request
}

fn bearer(value: &str) -> Vec<u8> {
    format!("Bearer {value}").into_bytes()
}

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    text: String,
}

async fn send<S>(svc: &S, request: Request<Body>) -> Answer
where
    S: Service<Request<Body>, Response = Response<ResponseBody<Body>>, Error = Infallible> + Clone,
{
    let response = svc.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        text: String::from_utf8_lossy(&bytes).into(),
    }
}

fn assert_unauthorized(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.text, "unauthorized");
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
}

#[tokio::test]
async fn accepts_bearer_or_header_and_refuses_everything_else() {
    let (calls, handler) = counted();
    let svc = SharedSecretAuth::new(
        handler,
        SharedSecretAuthConfig::new([secret("s3cret-value")]),
    );

    let accepted: &[&[(&str, &[u8])]] = &[
        &[("authorization", b"Bearer s3cret-value")],
        &[("authorization", b"bearer s3cret-value")],
        &[("authorization", b"  BEARER    s3cret-value   ")],
        &[("x-openclaw-webhook-secret", b"  s3cret-value ")],
        &[
            ("authorization", b"Basic Zm9vOmJhcg=="),
            ("x-openclaw-webhook-secret", b"s3cret-value"),
        ],
        // Trimmed, "Bearer   " is "Bearer", which does not start with "bearer ": header used.
        &[
            ("authorization", b"Bearer   "),
            ("x-openclaw-webhook-secret", b"s3cret-value"),
        ],
        &[
            ("x-openclaw-webhook-secret", b"s3cret-value"),
            ("x-openclaw-webhook-secret", b"wrong"),
        ],
    ];
    for headers in accepted {
        let answer = send(&svc, request(PEER, headers)).await;
        assert_eq!(
            (answer.status, answer.text.as_str()),
            (StatusCode::OK, "inner"),
            "{headers:?}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), accepted.len());

    let refused: &[&[(&str, &[u8])]] = &[
        &[],
        &[("authorization", b"Bearer s3cret-valuE")],
        &[("authorization", b"Bearer s3cret-valu")],
        &[("authorization", b"Bearer s3cret-value-and-more")],
        &[
            ("authorization", b"Bearer wrong"),
            ("x-openclaw-webhook-secret", b"s3cret-value"),
        ],
        &[("authorization", b"Bearer\ts3cret-value")],
        &[("authorization", b"s3cret-value")],
        &[("x-openclaw-webhook-secret", b"   ")],
        &[
            ("x-openclaw-webhook-secret", b"wrong"),
            ("x-openclaw-webhook-secret", b"s3cret-value"),
        ],
        &[("x-openclaw-webhook-secret", b"s3cret-value\xff")],
        &[("authorization", b"Bearer \xc3\x28\xa0\xa1")],
        &[("x-webhook-secret", b"s3cret-value")],
    ];
    for headers in refused {
        assert_unauthorized(&send(&svc, request(PEER, headers)).await);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        accepted.len(),
        "inner called on a rejection"
    );
}

#[tokio::test]
async fn any_of_several_secrets_authenticates() {
    let (_, handler) = counted();
    let config = SharedSecretAuthConfig::new([secret("old-one"), secret("new-one-longer")]);
    let svc = SharedSecretAuth::new(handler, config.without_lockout());
    for value in ["old-one", "new-one-longer"] {
        assert_eq!(
            send(&svc, request(PEER, &[("authorization", &bearer(value))]))
                .await
                .status,
            200
        );
    }
    for value in ["old-on", "new-one", "old-onenew-one-longer"] {
        assert_unauthorized(&send(&svc, request(PEER, &[("authorization", &bearer(value))])).await);
    }
}

#[tokio::test]
async fn no_secrets_refuses_everybody() {
    let (calls, handler) = counted();
    let svc = SharedSecretAuth::new(handler, SharedSecretAuthConfig::new([]));
    assert_unauthorized(&send(&svc, request(PEER, &[("authorization", b"Bearer x")])).await);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_secret_in_the_query_string_is_refused_even_with_the_right_header() {
    let (calls, handler) = counted();
    let svc = SharedSecretAuth::new(handler, SharedSecretAuthConfig::new([secret("s3cret")]));
    for uri in ["/hook?token=s3cret", "/hook?a=1&secret=x", "/hook?Token"] {
        let answer = send(
            &svc,
            request_to(uri, PEER, &[("authorization", b"Bearer s3cret")]),
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(answer.text, "secret must not be sent in the query string");
        assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let ok = send(
        &svc,
        request_to(
            "/hook?tokens=1",
            PEER,
            &[("authorization", b"Bearer s3cret")],
        ),
    );
    assert_eq!(ok.await.status, 200);

    let (_, handler) = counted();
    let lenient = SharedSecretAuth::new(
        handler,
        SharedSecretAuthConfig::new([secret("s3cret")]).refuse_query_secrets(false),
    );
    let answer = send(
        &lenient,
        request_to(
            "/hook?token=x",
            PEER,
            &[("authorization", b"Bearer s3cret")],
        ),
    );
    assert_eq!(answer.await.status, 200);
}

#[tokio::test]
async fn custom_header_and_bearer_off() {
    let (_, handler) = counted();
    let config = SharedSecretAuthConfig::new([secret("tok")])
        .secret_header(HeaderName::from_static("x-hook-token"))
        .accept_bearer(false);
    let svc = SharedSecretAuth::new(handler, config);
    assert_eq!(
        send(&svc, request(PEER, &[("x-hook-token", b"tok")]))
            .await
            .status,
        200
    );
    assert_unauthorized(
        &send(
            &svc,
            request(PEER, &[("x-openclaw-webhook-secret", b"tok")]),
        )
        .await,
    );
    assert_unauthorized(&send(&svc, request(PEER, &[("authorization", b"Bearer tok")])).await);
    // With Bearer off, an Authorization header does not stop the custom header from counting.
    let both = request(
        PEER,
        &[("authorization", b"Bearer nope"), ("x-hook-token", b"tok")],
    );
    assert_eq!(send(&svc, both).await.status, 200);
}

fn locking(clock: &Arc<ManualClock>) -> AuthLockout {
    AuthLockout::with_clock(LockoutConfig::default(), clock.clone())
}

async fn fail<S>(svc: &S, peer: IpAddr, times: usize)
where
    S: Service<Request<Body>, Response = Response<ResponseBody<Body>>, Error = Infallible> + Clone,
{
    for _ in 0..times {
        assert_unauthorized(&send(svc, request(peer, &[("authorization", b"Bearer wrong")])).await);
    }
}

fn good(peer: IpAddr) -> Request<Body> {
    request(peer, &[("authorization", b"Bearer right")])
}

#[tokio::test]
async fn twenty_failures_lock_the_client_out_for_sixty_seconds() {
    let clock = ManualClock::new(0);
    let (calls, handler) = counted();
    let svc = SharedSecretAuth::new(
        handler,
        SharedSecretAuthConfig::new([secret("right")]).lockout(locking(&clock)),
    );
    fail(&svc, PEER, 19).await;
    assert_eq!(
        send(&svc, good(PEER)).await.status,
        200,
        "19 failures must not lock"
    );
    // The success reset the count: 19 more failures still do not lock.
    fail(&svc, PEER, 19).await;
    assert_eq!(send(&svc, good(PEER)).await.status, 200);
    fail(&svc, PEER, 20).await;

    let locked = send(&svc, good(PEER)).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(locked.text, "Too Many Requests");
    assert_eq!(locked.headers["retry-after"], "60");
    let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    assert_eq!(
        send(&svc, good(other)).await.status,
        200,
        "another client is not locked"
    );

    clock.advance(59_001);
    assert_eq!(send(&svc, good(PEER)).await.headers["retry-after"], "1");
    clock.advance(998);
    assert_eq!(
        send(&svc, good(PEER)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(1);
    assert_eq!(
        send(&svc, good(PEER)).await.status,
        200,
        "lockout lifts after 60 s"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn failures_count_within_a_window_anchored_at_the_first() {
    let clock = ManualClock::new(0);
    let (_, handler) = counted();
    let svc = SharedSecretAuth::new(
        handler,
        SharedSecretAuthConfig::new([secret("right")]).lockout(locking(&clock)),
    );
    fail(&svc, PEER, 10).await;
    clock.advance(59_999);
    fail(&svc, PEER, 9).await;
    clock.advance(1);
    // The first window ended with 19 failures; a new one starts.
    fail(&svc, PEER, 19).await;
    assert_eq!(send(&svc, good(PEER)).await.status, 200);
}

#[tokio::test]
async fn one_lockout_guards_every_route_that_shares_it() {
    let clock = ManualClock::new(0);
    let lockout = locking(&clock);
    let (_, a) = counted();
    let (_, b) = counted();
    let route_a = SharedSecretAuth::new(
        a,
        SharedSecretAuthConfig::new([secret("right")]).lockout(lockout.clone()),
    );
    let route_b = SharedSecretAuth::new(
        b,
        SharedSecretAuthConfig::new([secret("other")]).lockout(lockout.clone()),
    );
    fail(&route_a, PEER, 10).await;
    fail(&route_b, PEER, 10).await;
    assert!(lockout.is_locked(PEER));
    let answer = send(
        &route_b,
        request(PEER, &[("authorization", b"Bearer other")]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn lockout_counts_the_forwarded_client_behind_a_trusted_proxy() {
    let clock = ManualClock::new(0);
    let (_, handler) = counted();
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    // The trusted proxies are configured once, in front; the lockout reads the client it found.
    let svc = ResolveClientIp::new(
        SharedSecretAuth::new(
            handler,
            SharedSecretAuthConfig::new([secret("right")]).lockout(locking(&clock)),
        ),
        TrustedProxies::parse(["10.0.0.0/8"]).unwrap(),
    );
    let via_proxy = |client: &str, value: &[u8]| {
        let mut req = request(proxy, &[("authorization", value)]);
        req.headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_str(client).unwrap());
        req
    };
    for _ in 0..20 {
        assert_eq!(
            send(&svc, via_proxy("192.0.2.9", b"Bearer wrong"))
                .await
                .status,
            401
        );
    }
    assert_eq!(
        send(&svc, via_proxy("192.0.2.9", b"Bearer right"))
            .await
            .status,
        429
    );
    assert_eq!(
        send(&svc, via_proxy("192.0.2.10", b"Bearer right"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn tracked_clients_stay_bounded_under_a_flood_and_a_lockout_survives_it() {
    let clock = ManualClock::new(0);
    let config = LockoutConfig::new().max_tracked_ips(4096);
    let lockout = AuthLockout::with_clock(config, clock.clone());
    let (_, handler) = counted();
    let mut svc = SharedSecretAuth::new(
        handler,
        SharedSecretAuthConfig::new([secret("right")]).lockout(lockout.clone()),
    );
    fail(&svc, PEER, 20).await;
    for i in 0..100_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let response = svc
            .call(request(ip, &[("authorization", b"Bearer wrong")]))
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        if i % 10_000 == 0 {
            assert!(
                lockout.tracked_ips() <= 4096,
                "{} tracked",
                lockout.tracked_ips()
            );
        }
    }
    assert!(lockout.tracked_ips() <= 4096);
    assert!(
        lockout.tracked_ips() > 3000,
        "the cap should be used, not emptied"
    );
    assert!(
        lockout.is_locked(PEER),
        "the flood evicted a locked-out client"
    );
}

#[tokio::test]
async fn rotation_applies_to_existing_clones() {
    let (_, handler) = counted();
    let layer = SharedSecretAuthLayer::new(SharedSecretAuthConfig::new([secret("old")]));
    let handle = layer.secrets_handle();
    let svc = tower::Layer::layer(&layer, handler);
    let clone = svc.clone();
    assert_eq!(
        send(&clone, request(PEER, &[("authorization", b"Bearer old")]))
            .await
            .status,
        200
    );

    handle.replace([secret("old"), secret("new")]);
    assert_eq!(
        send(&clone, request(PEER, &[("authorization", b"Bearer new")]))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&svc, request(PEER, &[("authorization", b"Bearer old")]))
            .await
            .status,
        200
    );

    handle.replace([secret("new")]);
    assert_unauthorized(&send(&clone, request(PEER, &[("authorization", b"Bearer old")])).await);
    assert_eq!(
        send(&svc, request(PEER, &[("authorization", b"Bearer new")]))
            .await
            .status,
        200
    );
    assert_eq!(svc.secrets_handle().len(), 1);
}

#[test]
fn no_debug_output_shows_a_secret() {
    let config =
        SharedSecretAuthConfig::new([secret("hunter2-topsecret"), secret("zz-other-9")]).lockout(
            AuthLockout::with_clock(LockoutConfig::default(), ManualClock::new(0)),
        );
    let layer = SharedSecretAuthLayer::new(config.clone());
    let svc = tower::Layer::layer(&layer, ());
    let outputs = [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{layer:?}"),
        format!("{svc:#?}"),
        format!("{:?}", layer.secrets_handle()),
        format!("{:?}", layer.lockout()),
    ];
    for output in outputs {
        assert!(!output.contains("hunter2"), "{output}");
        assert!(!output.contains("zz-other"), "{output}");
    }
    assert_eq!(
        format!("{:?}", layer.secrets_handle()),
        "SecretsHandle { secrets: 2 }"
    );
}

#[test]
fn lockout_config_defaults_are_the_contract() {
    let config = LockoutConfig::default();
    assert_eq!(config.max_failures, 20);
    assert_eq!(config.window, Duration::from_secs(60));
    assert_eq!(config.lockout, Duration::from_secs(60));
    assert_eq!(config.max_tracked_ips, 4096);
}
