//! The shape of issue 12, limiters' side: one configuration type per layer that refuses a zero
//! naming the field, the client IP worked out once and read by every limiter, one stable keyed
//! hash and one bounded map, and the backend seam's in-memory futures ready on first poll.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_webhooks::keyed::{
    KeyHasher, LockState, LockoutStore, MapFull, ShardedLru, SlotStore, WhenFull, WindowStore,
};
use tower_webhooks::telemetry::TelemetryLayer;
use tower_webhooks::{
    BodyLimitLayer, FixedWindowRateLimitLayer, InFlightLimitLayer, WebhookPipeline, WebhooksConfig,
    auth::{AuthLockout, LockoutConfig},
    body::BufferedBody,
    body_limit::BodyLimitConfig,
    client_ip::{ClientIp, TrustedProxies},
    clock::ManualClock,
    config::{Limits, ResolvedRoute},
    in_flight::{InFlightConfig, InFlightLimiter},
    keyed::PathAndClientIp,
    rate_limit::{FixedWindowLimiter, RateLimitConfig},
    secret::Secret,
};

const SECRET: &str = "keyed-state-secret";

/// An inner service whose future is `Send + Sync`.
#[derive(Clone)]
struct Inner;

impl tower::Service<Request<Full<Bytes>>> for Inner {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Full<Bytes>>) -> Self::Future {
        std::future::ready(Ok(Response::new(Full::default())))
    }
}

// hyper and axum need `Send` futures, warp 0.4 `Sync` ones; the boxed waiting state keeps both.
static_assertions::assert_impl_all!(
    tower_webhooks::rate_limit::RateLimitFuture<
        Inner,
        Request<Full<Bytes>>,
        std::future::Ready<Result<tower_webhooks::keyed::WindowHit, tower_webhooks::keyed::Unavailable>>,
    >: Send, Sync
);

/// The message a panic carried, for constructors that refuse an invalid configuration.
fn panic_message(run: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(run)).expect_err("expected a panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

// ---- one config type per layer --------------------------------------------------------------

#[test]
fn every_layer_config_refuses_a_zero_naming_the_field() {
    let field =
        |result: Result<(), tower_webhooks::limit::InvalidLimit>| result.unwrap_err().to_string();
    let rate = RateLimitConfig::new();
    assert_eq!(
        field(rate.window(Duration::ZERO).validate().map(drop)),
        "windowMs: must be at least 1 ms"
    );
    assert_eq!(
        field(rate.window(Duration::from_micros(999)).validate().map(drop)),
        "windowMs: must be at least 1 ms"
    );
    assert_eq!(
        field(rate.max_requests(0).validate().map(drop)),
        "maxRequests: must be an integer >= 1"
    );
    assert_eq!(
        field(rate.max_tracked_keys(0).validate().map(drop)),
        "maxTrackedKeys: must be an integer >= 1"
    );
    let in_flight = InFlightConfig::new();
    assert_eq!(
        field(in_flight.max_per_key(0).validate().map(drop)),
        "maxPerKey: must be an integer >= 1"
    );
    assert_eq!(
        field(in_flight.max_tracked_keys(0).validate().map(drop)),
        "maxTrackedKeys: must be an integer >= 1"
    );
    let body = BodyLimitConfig::buffered();
    assert_eq!(
        field(body.max_bytes(0).validate().map(drop)),
        "maxBytes: must be an integer >= 1"
    );
    assert_eq!(
        field(body.timeout(Duration::ZERO).validate().map(drop)),
        "timeoutMs: must be at least 1 ms"
    );
    let lockout = LockoutConfig::new();
    assert_eq!(
        field(lockout.max_failures(0).validate().map(drop)),
        "max: must be an integer >= 1"
    );
    assert_eq!(
        field(lockout.window(Duration::ZERO).validate().map(drop)),
        "windowMs: must be at least 1 ms"
    );
    assert_eq!(
        field(lockout.lockout(Duration::ZERO).validate().map(drop)),
        "lockoutMs: must be at least 1 ms"
    );
    assert_eq!(
        field(lockout.max_tracked_ips(0).validate().map(drop)),
        "maxTrackedIps: must be an integer >= 1"
    );
    // The defaults are the contract's and valid.
    assert_eq!(
        RateLimitConfig::default().validate(),
        Ok(RateLimitConfig::default())
    );
    assert!(InFlightConfig::default().validate().is_ok());
    assert!(BodyLimitConfig::buffered().validate().is_ok());
    assert!(LockoutConfig::default().validate().is_ok());
}

/// The pipeline used to turn a zero quota into a quota of one without a word
/// (`unwrap_or(NonZeroU32::MIN)`); now a zero reaches no limiter.
#[test]
fn a_zero_limit_handed_to_the_pipeline_is_refused_not_turned_into_one() {
    let zero_quota = Limits {
        rate_limit: RateLimitConfig::new().max_requests(0),
        ..Limits::default()
    };
    let message = panic_message(|| drop(WebhookPipeline::in_memory(zero_quota)));
    assert_eq!(
        message,
        "invalid RateLimitConfig: maxRequests: must be an integer >= 1"
    );
    let zero_slots = Limits {
        in_flight: InFlightConfig::new().max_per_key(0),
        ..Limits::default()
    };
    let message = panic_message(|| drop(WebhookPipeline::in_memory(zero_slots)));
    assert_eq!(
        message,
        "invalid InFlightConfig: maxPerKey: must be an integer >= 1"
    );
    let zero_failures = Limits {
        auth_failures: LockoutConfig::new().max_failures(0),
        ..Limits::default()
    };
    let message = panic_message(|| drop(WebhookPipeline::in_memory(zero_failures)));
    assert_eq!(
        message,
        "invalid LockoutConfig: max: must be an integer >= 1"
    );
    // The body limit is checked when a route is built.
    let zero_body = Limits {
        body: BodyLimitConfig::buffered().max_bytes(0),
        ..Limits::default()
    };
    let pipeline = WebhookPipeline::in_memory(zero_body);
    let route = ResolvedRoute::new("r", "agent:main:main", [Secret::new(SECRET).unwrap()]);
    let message = panic_message(|| drop(pipeline.route(&route)));
    assert_eq!(
        message,
        "invalid BodyLimitConfig: maxBytes: must be an integer >= 1"
    );
}

#[test]
fn layer_constructors_refuse_an_invalid_config_naming_the_field() {
    let message = panic_message(|| {
        drop(FixedWindowRateLimitLayer::new(
            RateLimitConfig::new().max_tracked_keys(0),
        ))
    });
    assert!(message.contains("maxTrackedKeys"), "{message}");
    let message = panic_message(|| {
        drop(InFlightLimitLayer::new(
            InFlightConfig::new().max_tracked_keys(0),
        ))
    });
    assert!(message.contains("maxTrackedKeys"), "{message}");
    let message = panic_message(|| {
        let _ = BodyLimitLayer::new(BodyLimitConfig::streaming().timeout(Duration::ZERO));
    });
    assert!(message.contains("timeoutMs"), "{message}");
    let message = panic_message(|| {
        drop(AuthLockout::new(
            LockoutConfig::new().lockout(Duration::ZERO),
        ))
    });
    assert!(message.contains("lockoutMs"), "{message}");
}

#[test]
fn the_json5_loader_names_the_path_of_every_zero_limit() {
    for (section, field) in [
        ("rateLimit", "windowMs"),
        ("rateLimit", "maxRequests"),
        ("rateLimit", "maxTrackedKeys"),
        ("inFlight", "maxPerKey"),
        ("inFlight", "maxTrackedKeys"),
        ("body", "maxBytes"),
        ("body", "timeoutMs"),
        ("authFailures", "max"),
        ("authFailures", "windowMs"),
        ("authFailures", "lockoutMs"),
    ] {
        let text = format!("{{ limits: {{ {section}: {{ {field}: 0 }} }} }}");
        let error = WebhooksConfig::from_json5(&text).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("webhooks.limits.{section}.{field}: must be an integer >= 1"),
        );
    }
    // A file's limits land in the layers' own types, unchanged.
    let config = WebhooksConfig::from_json5(
        "{ limits: { rateLimit: { windowMs: 1500, maxRequests: 3 }, body: { timeoutMs: 250 },
           authFailures: { max: 4, lockoutMs: 90000 } } }",
    )
    .unwrap();
    let limits = config.limits();
    assert_eq!(
        limits.rate_limit,
        RateLimitConfig::new()
            .window(Duration::from_millis(1500))
            .max_requests(3)
    );
    assert_eq!(
        limits.body,
        BodyLimitConfig::buffered().timeout(Duration::from_millis(250))
    );
    assert_eq!(
        limits.auth_failures,
        LockoutConfig::new()
            .max_failures(4)
            .lockout(Duration::from_secs(90))
    );
}

#[test]
fn layer_configs_deserialise_from_the_camel_case_keys_of_the_file() {
    let rate: RateLimitConfig =
        serde_json::from_str(r#"{"windowMs": 2000, "maxRequests": 9, "maxTrackedKeys": 64}"#)
            .unwrap();
    assert_eq!(
        rate,
        RateLimitConfig::new()
            .window(Duration::from_secs(2))
            .max_requests(9)
            .max_tracked_keys(64)
    );
    let in_flight: InFlightConfig = serde_json::from_str(r#"{"maxPerKey": 2}"#).unwrap();
    assert_eq!(in_flight, InFlightConfig::new().max_per_key(2));
    let body: BodyLimitConfig =
        serde_json::from_str(r#"{"maxBytes": 10, "timeoutMs": 20}"#).unwrap();
    assert_eq!(
        body,
        BodyLimitConfig::buffered()
            .max_bytes(10)
            .timeout(Duration::from_millis(20))
    );
    let lockout: LockoutConfig =
        serde_json::from_str(r#"{"max": 3, "windowMs": 1000, "lockoutMs": 5000}"#).unwrap();
    assert_eq!(
        lockout,
        LockoutConfig::new()
            .max_failures(3)
            .window(Duration::from_secs(1))
            .lockout(Duration::from_secs(5))
    );
    // Zero and unknown keys are refused, as by the loader.
    for text in [
        r#"{"maxRequests": 0}"#,
        r#"{"windowMs": 0}"#,
        r#"{"window": 5}"#,
    ] {
        let error = serde_json::from_str::<RateLimitConfig>(text).unwrap_err();
        assert!(
            error.to_string().contains("must be an integer >= 1")
                || error.to_string().contains("unknown field"),
            "{text}: {error}"
        );
    }
    assert!(serde_json::from_str::<InFlightConfig>(r#"{"maxPerKey": 0}"#).is_err());
    assert!(serde_json::from_str::<BodyLimitConfig>(r#"{"timeoutMs": 0}"#).is_err());
    assert!(serde_json::from_str::<LockoutConfig>(r#"{"max": 0}"#).is_err());
}

// ---- the stable keyed hash ------------------------------------------------------------------

fn request_from(path: &str, peer: &str) -> Request<()> {
    let mut request = Request::post(path).body(()).unwrap();
    request
        .extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    request
}

#[test]
fn the_same_key_material_gives_the_same_key_in_every_hasher_and_every_process() {
    let material = |hasher: KeyHasher| {
        let mut material = hasher.material();
        material.str("/plugins/webhooks/zapier");
        material.ip("203.0.113.7".parse().unwrap());
        material.finish()
    };
    // Two hashers built independently agree.
    assert_eq!(
        material(KeyHasher::default()),
        material(KeyHasher::default())
    );
    // A pinned vector: the same in every process, on every platform, in every build that keeps the
    // key derivation. If this changes, replicas of two versions no longer share budgets.
    assert_eq!(material(KeyHasher::default()), 0x40e7_cd16_7462_e2d5);
    assert_eq!(KeyHasher::default().hash_bytes(b""), 0x6cbc_1112_63f9_9b34);
    // A secret changes every key.
    assert_ne!(
        material(KeyHasher::with_secret(b"replica secret")),
        material(KeyHasher::default())
    );
    // An IPv4-mapped address is the IPv4 address.
    let mapped = |ip: &str| {
        let mut m = KeyHasher::default().material();
        m.ip(ip.parse().unwrap());
        m.finish()
    };
    assert_eq!(mapped("::ffff:192.0.2.1"), mapped("192.0.2.1"));
    // Fields are self-delimiting: moving a byte between two strings changes the key.
    let two = |a: &str, b: &str| {
        let mut m = KeyHasher::default().material();
        m.str(a);
        m.str(b);
        m.finish()
    };
    assert_ne!(two("ab", "c"), two("a", "bc"));

    // Two limiters built apart key one request alike: the keys could be shared.
    let one = FixedWindowLimiter::new(RateLimitConfig::new());
    let other = FixedWindowLimiter::new(RateLimitConfig::new());
    let request = request_from("/hook", "198.51.100.4:5000");
    assert_eq!(
        one.hash_request(&PathAndClientIp::new(), &request),
        other.hash_request(&PathAndClientIp::new(), &request)
    );
    assert_eq!(one.key_hasher(), other.key_hasher());
}

// ---- the client IP, once ---------------------------------------------------------------------

type Body = Full<Bytes>;

fn ok() -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone {
    service_fn(|_req: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::default())) })
}

fn from_peer_as(peer: &str, client: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/hook").body(Body::default()).unwrap();
    request
        .extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    if let Some(client) = client {
        request
            .extensions_mut()
            .insert(ClientIp::new(client.parse().unwrap()));
    }
    request
}

#[tokio::test]
async fn a_client_ip_already_in_the_request_is_what_the_rate_limit_and_the_lockout_count() {
    // Rate limit: two peers, one resolved client, quota 1 ⇒ the second is refused.
    let rate = FixedWindowRateLimitLayer::new(RateLimitConfig::new().max_requests(1)).layer(ok());
    let first = rate
        .clone()
        .oneshot(from_peer_as("10.0.0.1:1", Some("203.0.113.50")))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = rate
        .clone()
        .oneshot(from_peer_as("10.0.0.2:1", Some("203.0.113.50")))
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);

    // Lockout: failures from many peers on behalf of one resolved client lock that client.
    let lockout =
        AuthLockout::with_clock(LockoutConfig::new().max_failures(2), ManualClock::new(0));
    let auth = tower_webhooks::SharedSecretAuthLayer::new(
        tower_webhooks::auth::SharedSecretAuthConfig::new([Secret::new(SECRET).unwrap()])
            .lockout(lockout.clone()),
    )
    .layer(ok());
    for peer in ["10.0.0.3:1", "10.0.0.4:1"] {
        let mut request = from_peer_as(peer, Some("203.0.113.60"));
        request
            .headers_mut()
            .insert("authorization", "Bearer wrong".parse().unwrap());
        let answer = auth.clone().oneshot(request).await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    let client: IpAddr = "203.0.113.60".parse().unwrap();
    assert!(lockout.is_locked(client));
    assert!(!lockout.is_locked("10.0.0.3".parse().unwrap()));
}

/// The access log resolves the client behind its trusted proxies; the pipeline behind it trusts
/// nobody, yet counts the same client: the answer travelled, it was not worked out again.
#[tokio::test]
async fn the_pipeline_counts_the_client_resolved_by_the_first_layer_that_needed_it() {
    let limits = Limits {
        rate_limit: RateLimitConfig::new().max_requests(1),
        ..Limits::default()
    };
    let pipeline = WebhookPipeline::in_memory(limits);
    let route = ResolvedRoute::new("r", "agent:main:main", [Secret::new(SECRET).unwrap()]);
    let router = pipeline.router(&[route]);
    let svc = ServiceBuilder::new()
        .layer(
            TelemetryLayer::new().trusted_proxies(TrustedProxies::parse(["10.0.0.0/8"]).unwrap()),
        )
        .service(router);
    // The access log only resolves when it logs.
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::INFO)
            .finish(),
    );
    let send = |proxy: &'static str| {
        let svc = svc.clone();
        async move {
            let mut request = Request::post("/plugins/webhooks/r")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {SECRET}"))
                .header("x-forwarded-for", "198.51.100.77")
                .body(BufferedBody::from(r#"{"action":"list_flows"}"#))
                .unwrap();
            request
                .extensions_mut()
                .insert(proxy.parse::<SocketAddr>().unwrap());
            let response = svc.oneshot(request).await.unwrap();
            let status = response.status();
            drop(response.into_body().collect().await);
            status
        }
    };
    assert_eq!(send("10.0.0.1:1").await, StatusCode::OK);
    // Another proxy, same forwarded client: one budget.
    assert_eq!(send("10.0.0.2:1").await, StatusCode::TOO_MANY_REQUESTS);
}

// ---- the bounded map ------------------------------------------------------------------------

#[test]
fn the_map_never_holds_more_than_its_cap_and_evicts_the_least_recently_touched() {
    let map = ShardedLru::new(100, WhenFull::EvictLeastRecent);
    for key in 0..10_000u64 {
        let key = KeyHasher::default().hash_bytes(&key.to_le_bytes());
        map.shard(key).insert_with(key, || 0u32, |_| true).unwrap();
        assert!(map.len() <= 100);
    }
    assert_eq!(map.len(), 100);

    // One shard (cap < 128): exact LRU order.
    let map = ShardedLru::new(3, WhenFull::EvictLeastRecent);
    for key in [1, 2, 3] {
        map.shard(key).insert_with(key, || key, |_| true).unwrap();
    }
    *map.shard(1).get(1).unwrap() += 10;
    map.shard(4).insert_with(4, || 4, |_| true).unwrap();
    assert_eq!(
        map.shard(2).peek(2),
        None,
        "2 was the least recently touched"
    );
    assert_eq!(map.shard(1).peek(1), Some(&11));
    assert_eq!(map.shard(3).peek(3), Some(&3));

    let refusing = ShardedLru::new(1, WhenFull::Refuse);
    refusing.shard(1).insert_with(1, || (), |_| true).unwrap();
    assert_eq!(
        refusing
            .shard(2)
            .insert_with(2, || (), |_| true)
            .unwrap_err(),
        MapFull
    );
}

#[tokio::test]
async fn a_flood_of_new_failures_evicts_unlocked_clients_and_keeps_the_lockout() {
    let clock = ManualClock::new(0);
    // Eight IPs fit: one shard, so the flood meets the locked client in the same shard.
    let lockout = AuthLockout::with_clock(
        LockoutConfig::new().max_failures(2).max_tracked_ips(8),
        clock.clone(),
    );
    let locked: IpAddr = "192.0.2.1".parse().unwrap();
    let key = lockout.key_of(locked);
    for _ in 0..2 {
        ready(lockout.record_failure(key)).unwrap();
    }
    assert!(lockout.is_locked(locked));
    for i in 0..1_000u32 {
        let ip = IpAddr::from((0xc633_6400u32 + i).to_be_bytes());
        ready(lockout.record_failure(lockout.key_of(ip))).unwrap();
        assert!(lockout.tracked_ips() <= 8);
    }
    assert!(lockout.is_locked(locked), "the flood lifted the lockout");
}

// ---- the backend seam -----------------------------------------------------------------------

/// Polls `future` once with a waker that does nothing: what a layer does in `call`.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory store answered Pending"),
    }
}

#[test]
fn the_in_memory_stores_answer_on_the_first_poll() {
    let windows = FixedWindowLimiter::new(RateLimitConfig::new().max_requests(1));
    let hit = ready(WindowStore::hit(&windows, 7)).unwrap();
    assert_eq!((hit.count, hit.max_requests), (1, 1));
    assert_eq!(hit.limited(), None);
    let over = ready(WindowStore::hit(&windows, 7)).unwrap();
    assert_eq!(over.count, 2);
    assert!(over.limited().is_some());

    let slots = InFlightLimiter::new(InFlightConfig::new().max_per_key(1));
    let lease = ready(slots.acquire(9)).unwrap().expect("a free slot");
    assert!(ready(slots.acquire(9)).unwrap().is_none());
    ready(slots.renew(&lease)).unwrap();
    drop(lease);
    assert!(ready(slots.acquire(9)).unwrap().is_some());

    let lockout = AuthLockout::new(LockoutConfig::new().max_failures(1));
    assert_eq!(ready(lockout.check(3)).unwrap(), LockState::Clean);
    ready(lockout.record_failure(3)).unwrap();
    assert!(matches!(
        ready(lockout.check(3)).unwrap(),
        LockState::Locked { .. }
    ));
    ready(lockout.record_success(3)).unwrap();
    assert!(matches!(
        ready(lockout.check(3)).unwrap(),
        LockState::Locked { .. }
    ));
}

/// A window store that answers only when the test says so: a shared backend, slowly.
#[derive(Clone)]
struct GatedStore {
    gates: std::sync::Arc<std::sync::Mutex<Vec<tokio::sync::oneshot::Receiver<Answer>>>>,
}

type Answer = Result<tower_webhooks::keyed::WindowHit, tower_webhooks::keyed::Unavailable>;

struct Gate(tokio::sync::oneshot::Receiver<Answer>);

impl Future for Gate {
    type Output = Answer;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(tower_webhooks::keyed::Unavailable::new())))
    }
}

impl WindowStore for GatedStore {
    type HitFuture = Gate;

    fn key_hasher(&self) -> KeyHasher {
        KeyHasher::default()
    }

    fn hit(&self, _key: u64) -> Gate {
        Gate(self.gates.lock().unwrap().remove(0))
    }
}

#[tokio::test]
async fn a_store_that_answers_later_holds_the_request_until_it_does() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::Service;
    use tower_webhooks::keyed::{Unavailable, WindowHit};

    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..3).map(|_| tokio::sync::oneshot::channel()).unzip();
    let store = GatedStore {
        gates: std::sync::Arc::new(std::sync::Mutex::new(receivers)),
    };
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = {
        let calls = calls.clone();
        service_fn(move |_req: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Body::default())) }
        })
    };
    let mut svc = FixedWindowRateLimitLayer::with_store(store).layer(counted);
    let hit = |count| WindowHit {
        count,
        max_requests: 1,
        resets_in_ms: 1_500,
    };
    let answers: [Answer; 3] = [Ok(hit(1)), Ok(hit(2)), Err(Unavailable::new())];
    let mut statuses = Vec::new();
    for (sender, answer) in senders.into_iter().zip(answers) {
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let mut future = pin!(svc.call(from_peer_as("192.0.2.8:1", None)));
        // Not answered yet: nothing reaches the inner service.
        assert!(futures_util::poll!(future.as_mut()).is_pending());
        let before = calls.load(Ordering::SeqCst);
        sender.send(answer).unwrap();
        let response = future.await.unwrap();
        let called = calls.load(Ordering::SeqCst) - before;
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        statuses.push((response_status(&body, called), retry_after));
    }
    assert_eq!(
        statuses,
        [
            ("passed".to_owned(), None),
            ("Too Many Requests".to_owned(), Some("2".to_owned())),
            ("Service Unavailable".to_owned(), None),
        ]
    );
}

/// `passed` when the inner service answered (once), else the rejection's text.
fn response_status(body: &Bytes, inner_calls: usize) -> String {
    match inner_calls {
        1 => "passed".to_owned(),
        0 => String::from_utf8(body.to_vec()).unwrap(),
        n => panic!("the inner service was called {n} times"),
    }
}

/// A front end that knows the client but records no socket address leaves the `ClientIp` as the
/// request's only extension; it must still be the client, not an unknown one.
#[test]
fn a_client_ip_without_a_peer_address_is_still_the_client() {
    let client: IpAddr = "203.0.113.70".parse().unwrap();
    let mut request = Request::new(());
    request.extensions_mut().insert(ClientIp::new(client));
    assert_eq!(ClientIp::of(&request).known(), Some(client));
    let lockout = AuthLockout::new(LockoutConfig::new().max_failures(1));
    let auth = tower_webhooks::SharedSecretAuthLayer::new(
        tower_webhooks::auth::SharedSecretAuthConfig::new([Secret::new(SECRET).unwrap()])
            .lockout(lockout.clone()),
    )
    .layer(ok());
    let mut wrong = Request::post("/hook")
        .header("authorization", "Bearer wrong")
        .body(Body::default())
        .unwrap();
    wrong.extensions_mut().insert(ClientIp::new(client));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let status = rt.block_on(auth.oneshot(wrong)).unwrap().status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        lockout.is_locked(client),
        "the failure was not counted against the client"
    );
}
