//! FixedWindowRateLimit and InFlightLimit beside their nearest peers, in one run.
//!
//! Every stack is built once; each iteration is `svc.clone().oneshot(req)` with the request built
//! outside the timed part, and the response dropped inside it (so an in-flight slot is released
//! within the iteration, as a server would after sending the body).
//!
//! `cargo bench --bench limits -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use tokio::runtime::Runtime;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;
use tower_http::metrics::InFlightRequestsLayer;
use tower_webhooks::{
    FixedWindowRateLimitLayer, InFlightLimitLayer,
    in_flight::{InFlightConfig, InFlightLimiter},
    keyed::GlobalKey,
    rate_limit::{FixedWindowLimiter, RateLimitConfig},
};

type Req = Request<Empty<Bytes>>;

fn request() -> Req {
    let peer: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let mut req = Request::post("/plugins/webhooks/zapier")
        .body(Empty::new())
        .unwrap();
    // Both spellings of the peer, so ours and tower_governor's extractors each find it.
    req.extensions_mut().insert(peer);
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn handler() -> impl Service<Req, Response = Response<Body>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_req: Req| async { Ok::<_, Infallible>(Response::new(Body::empty())) })
}

fn bench_service<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    svc: S,
    expect: StatusCode,
) where
    S: Service<Req, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let response = rt.block_on(svc.clone().oneshot(request())).unwrap();
    assert_eq!(response.status(), expect, "{name}");
    drop(response);
    group.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            request,
            |req| {
                let svc = svc.clone();
                async move {
                    let response = svc.oneshot(req).await;
                    black_box(response.is_ok());
                }
            },
            BatchSize::SmallInput,
        )
    });
}

/// A quota that the bench never exhausts, and a window that never ends during it.
fn open_config() -> RateLimitConfig {
    RateLimitConfig::new()
        .window(Duration::MAX)
        .max_requests(u32::MAX)
}

fn closed_config() -> RateLimitConfig {
    RateLimitConfig::new().window(Duration::MAX).max_requests(1)
}

fn rate_limit(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("rate_limit");
    bench_service(
        &mut group,
        rt,
        "baseline service_fn",
        handler(),
        StatusCode::OK,
    );

    let ours = FixedWindowRateLimitLayer::new(open_config()).layer(handler());
    bench_service(&mut group, rt, "ours accept", ours, StatusCode::OK);

    let ours = FixedWindowRateLimitLayer::new(closed_config()).layer(handler());
    let first = rt.block_on(ours.clone().oneshot(request())).unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    bench_service(
        &mut group,
        rt,
        "ours 429",
        ours,
        StatusCode::TOO_MANY_REQUESTS,
    );

    let open = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .key_extractor(PeerIpKeyExtractor)
        .finish()
        .unwrap();
    let governor = GovernorLayer::new(open).layer(handler());
    bench_service(
        &mut group,
        rt,
        "tower_governor accept",
        governor,
        StatusCode::OK,
    );

    let closed = GovernorConfigBuilder::default()
        .per_second(3_600)
        .burst_size(1)
        .key_extractor(PeerIpKeyExtractor)
        .finish()
        .unwrap();
    let governor = GovernorLayer::new(closed).layer(handler());
    let first = rt.block_on(governor.clone().oneshot(request())).unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    bench_service(
        &mut group,
        rt,
        "tower_governor 429",
        governor,
        StatusCode::TOO_MANY_REQUESTS,
    );
    group.finish();

    let mut group = c.benchmark_group("rate_limit_counter");
    let limiter = FixedWindowLimiter::new(open_config());
    let key = limiter.hash(&("/plugins/webhooks/zapier", 7u32));
    group.bench_function("hit_at (counter only)", |b| {
        b.iter(|| limiter.hit_at(black_box(key), black_box(1_000)))
    });
    group.bench_function("hit (counter + system clock)", |b| {
        b.iter(|| limiter.hit(black_box(key)))
    });
    let req = request();
    let extractor = tower_webhooks::keyed::PathAndClientIp::default();
    group.bench_function("hash_request (path + client IP)", |b| {
        b.iter(|| limiter.hash_request(&extractor, black_box(&req)))
    });
    group.finish();
}

fn in_flight(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("in_flight");
    bench_service(
        &mut group,
        rt,
        "baseline service_fn",
        handler(),
        StatusCode::OK,
    );

    let ours = InFlightLimitLayer::new(InFlightConfig::new()).layer(handler());
    bench_service(&mut group, rt, "ours accept", ours.clone(), StatusCode::OK);

    // The peers below count globally; this is ours on the same terms.
    let global = InFlightLimitLayer::new(InFlightConfig::new())
        .key_extractor(GlobalKey::new())
        .layer(handler());
    bench_service(
        &mut group,
        rt,
        "ours accept (GlobalKey)",
        global,
        StatusCode::OK,
    );

    // Eight responses held outside the timed part keep the key's slots busy.
    let held: Vec<_> = (0..8)
        .map(|_| rt.block_on(ours.clone().oneshot(request())).unwrap())
        .collect();
    bench_service(
        &mut group,
        rt,
        "ours 429",
        ours,
        StatusCode::TOO_MANY_REQUESTS,
    );
    drop(held);

    let tower_limit = ServiceBuilder::new()
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(8))
        .service(handler());
    bench_service(
        &mut group,
        rt,
        "tower GlobalConcurrencyLimit+LoadShed accept",
        tower_limit,
        StatusCode::OK,
    );

    let (layer, _counter) = InFlightRequestsLayer::pair();
    let tower_http = layer.layer(handler());
    bench_service(
        &mut group,
        rt,
        "tower-http InFlightRequests accept",
        tower_http,
        StatusCode::OK,
    );
    group.finish();

    let mut group = c.benchmark_group("in_flight_counter");
    let limiter = InFlightLimiter::new(InFlightConfig::new());
    let key = limiter.hash(&("/plugins/webhooks/zapier", 7u32));
    group.bench_function("try_acquire + release", |b| {
        b.iter(|| drop(black_box(limiter.try_acquire(black_box(key)))))
    });
    let _busy = limiter.try_acquire(key);
    group.bench_function("try_acquire + release (key stays tracked)", |b| {
        b.iter(|| drop(black_box(limiter.try_acquire(black_box(key)))))
    });
    let extractor = tower_webhooks::keyed::NormalizedPathAndPeerIp::new();
    let req = request();
    group.bench_function("hash_request (normalised path + peer IP)", |b| {
        b.iter(|| limiter.hash_request(&extractor, black_box(&req)))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rate_limit(c, &rt);
    in_flight(c, &rt);
}

criterion_group!(limits, benches);
criterion_main!(limits);
