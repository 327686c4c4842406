//! SharedSecretAuth beside its nearest peer, tower-http's `ValidateRequestHeaderLayer::bearer`, and a
//! bare `service_fn`, in one run.
//!
//! Every stack is built once; each iteration is `svc.clone().oneshot(req)` with the request built
//! outside the timed part.
//!
//! `cargo bench --bench auth -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};
#[allow(deprecated)]
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_webhooks::{SharedSecretAuthLayer, auth::SharedSecretAuthConfig, secret::Secret};

type Req = Request<Empty<Bytes>>;

const SECRET: &str = "whsec_4f1c2b7e9a0d3c5b8e6f1a2d4c7b9e0f";

fn request(authorization: &'static str) -> impl Fn() -> Req + Copy {
    move || {
        let mut req = Request::post("/plugins/webhooks/zapier")
            .header("authorization", authorization)
            .body(Empty::new())
            .unwrap();
        req.extensions_mut()
            .insert(SocketAddr::from(([203, 0, 113, 7], 40000)));
        req
    }
}

const GOOD: &str = "Bearer whsec_4f1c2b7e9a0d3c5b8e6f1a2d4c7b9e0f";
const BAD: &str = "Bearer whsec_4f1c2b7e9a0d3c5b8e6f1a2d4c7b9e0X";

fn handler()
-> impl Service<Req, Response = Response<Empty<Bytes>>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_req: Req| async { Ok::<_, Infallible>(Response::new(Empty::new())) })
}

fn bench_service<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    svc: S,
    make: impl Fn() -> Req + Copy,
    expect: StatusCode,
) where
    S: Service<Req, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let response = rt.block_on(svc.clone().oneshot(make())).unwrap();
    assert_eq!(response.status(), expect, "{name}");
    group.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            make,
            |req| {
                let svc = svc.clone();
                async move { black_box(svc.oneshot(req).await.is_ok()) }
            },
            BatchSize::SmallInput,
        )
    });
}

fn auth(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("auth");
    bench_service(
        &mut group,
        &rt,
        "baseline service_fn",
        handler(),
        request(GOOD),
        StatusCode::OK,
    );

    // The lockout is off in the 401 case so a long run measures the comparison, not the lockout's 429.
    let ours =
        SharedSecretAuthLayer::new(SharedSecretAuthConfig::new([Secret::new(SECRET).unwrap()]));
    bench_service(
        &mut group,
        &rt,
        "ours accept",
        ours.layer(handler()),
        request(GOOD),
        StatusCode::OK,
    );
    let ours_no_lockout = SharedSecretAuthLayer::new(
        SharedSecretAuthConfig::new([Secret::new(SECRET).unwrap()]).without_lockout(),
    );
    bench_service(
        &mut group,
        &rt,
        "ours 401",
        ours_no_lockout.layer(handler()),
        request(BAD),
        StatusCode::UNAUTHORIZED,
    );
    let locked_ok = SharedSecretAuthLayer::new(
        SharedSecretAuthConfig::new([Secret::new(SECRET).unwrap()]).without_lockout(),
    );
    bench_service(
        &mut group,
        &rt,
        "ours accept, lockout off",
        locked_ok.layer(handler()),
        request(GOOD),
        StatusCode::OK,
    );

    #[allow(deprecated)]
    let peer = ValidateRequestHeaderLayer::bearer(SECRET);
    bench_service(
        &mut group,
        &rt,
        "tower-http bearer accept",
        peer.layer(handler()),
        request(GOOD),
        StatusCode::OK,
    );
    #[allow(deprecated)]
    let peer = ValidateRequestHeaderLayer::bearer(SECRET);
    bench_service(
        &mut group,
        &rt,
        "tower-http bearer 401",
        peer.layer(handler()),
        request(BAD),
        StatusCode::UNAUTHORIZED,
    );
    group.finish();
}

criterion_group!(benches, auth);
criterion_main!(benches);
