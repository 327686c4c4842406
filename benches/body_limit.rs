//! `BodyLimit` beside tower-http's `RequestBodyLimitLayer` and a bare `service_fn` that collects the
//! body, in one run. Per iteration `svc.clone().oneshot(req)` on a stack built once; requests are
//! built in the untimed setup.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::limit::RequestBodyLimitLayer;
use tower_webhooks::{
    BodyLimitLayer,
    body::BufferedBody,
    body_limit::{BodyLimitConfig, LimitedBody},
};

const CAP: usize = 262_144;
const BODY: usize = 1024;

fn request(content_length: usize) -> Request<Full<Bytes>> {
    // The body stays 1 KiB: a 413 by length never reads it.
    Request::post("/hook")
        .header("content-type", "application/json")
        .header("content-length", content_length)
        .body(Full::new(Bytes::from_static(&[b'x'; BODY])))
        .unwrap()
}

fn run<S, B>(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, svc: S, len: usize)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
{
    c.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            || request(len),
            |req| {
                let svc = svc.clone();
                async move { black_box(svc.oneshot(req).await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();

    let baseline = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        black_box(body);
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    });

    let ours = ServiceBuilder::new()
        .layer(BodyLimitLayer::new(BodyLimitConfig::buffered()))
        .service_fn(|req: Request<BufferedBody>| {
            black_box(req.body().len());
            std::future::ready(Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())))
        });

    let ours_streaming = ServiceBuilder::new()
        .layer(BodyLimitLayer::new(BodyLimitConfig::streaming()))
        .service_fn(|req: Request<LimitedBody<Full<Bytes>>>| async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            black_box(body);
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        });

    let peer = ServiceBuilder::new()
        .layer(RequestBodyLimitLayer::new(CAP))
        .service_fn(|req: Request<_>| async move {
            let body = BodyExt::collect(req.into_body()).await.unwrap().to_bytes();
            black_box(body);
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        });

    run(c, &rt, "baseline/service_fn collect", baseline, BODY);
    run(c, &rt, "ours/buffered accept", ours, BODY);
    run(c, &rt, "ours/streaming accept", ours_streaming, BODY);
    run(c, &rt, "tower-http/accept", peer, BODY);
    run(c, &rt, "ours/413 by length", ours, CAP + 1);
    run(c, &rt, "tower-http/413 by length", peer, CAP + 1);
}

criterion_group!(benches, bench);
criterion_main!(benches);
