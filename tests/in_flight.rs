//! InFlightLimit against SPEC §2.4. Handlers are held open with semaphores and channels.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use static_assertions::assert_impl_all;
use tokio::sync::{Semaphore, mpsc};
use tower::{Layer, Service, ServiceExt, service_fn};
#[cfg(feature = "config")]
use tower_webhooks::config::normalize_webhook_path as normalize_path;
use tower_webhooks::{
    InFlightLimit, InFlightLimitLayer, ResponseBody,
    in_flight::{InFlightBody, InFlightConfig, InFlightLimiter, InFlightResponseFuture},
    keyed::GlobalKey,
};

type Ready = futures_util::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// An inner service whose future is `Send + Sync`.
#[derive(Clone)]
struct ReadyService;

impl Service<Req> for ReadyService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Req) -> Ready {
        futures_util::future::ready(Ok(Response::new(Full::default())))
    }
}

assert_impl_all!(InFlightResponseFuture<ReadyService, Req>: Send, Sync);
assert_impl_all!(InFlightBody<Full<Bytes>>: Send, Sync);
assert_impl_all!(ResponseBody<InFlightBody<Full<Bytes>>>: Send, Sync);
assert_impl_all!(InFlightLimiter: Send, Sync, Clone);

type Req = Request<Empty<Bytes>>;

fn request(path: &str, peer: &str) -> Req {
    let mut req = Request::post(path).body(Empty::new()).unwrap();
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

fn config(per_key: u32, keys: usize) -> InFlightConfig {
    InFlightConfig::new()
        .max_per_key(per_key)
        .max_tracked_keys(keys)
}

/// A handler that reports when it starts, then waits for a permit of `gate`.
fn gated(
    gate: Arc<Semaphore>,
    started: mpsc::UnboundedSender<()>,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |_req: Req| {
        let (gate, started) = (gate.clone(), started.clone());
        async move {
            started.send(()).unwrap();
            gate.acquire().await.unwrap().forget();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    })
}

fn instant()
-> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future = impl Send> + Clone
{
    service_fn(|_req: Req| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

async fn assert_rejected<B>(response: Response<ResponseBody<B>>)
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"Too Many Requests");
}

#[tokio::test]
async fn eight_held_the_ninth_is_refused_at_once_and_other_keys_are_unaffected() {
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let layer = InFlightLimitLayer::new(InFlightConfig::default());
    let limiter = layer.limiter().clone();
    let svc = layer.layer(gated(gate.clone(), started_tx));

    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(tokio::spawn(
            svc.clone().oneshot(request("/hook", "203.0.113.1:1000")),
        ));
    }
    for _ in 0..8 {
        started.recv().await.unwrap();
    }
    // The eight are blocked in the handler; the ninth completes without the gate opening, so
    // nothing queued it.
    assert_rejected(
        svc.clone()
            .oneshot(request("/hook", "203.0.113.1:2000"))
            .await
            .unwrap(),
    )
    .await;
    assert!(
        started.try_recv().is_err(),
        "the ninth never reached the handler"
    );

    // Another peer on the same path, and the same peer on another path, have budgets of their own.
    let other_peer = tokio::spawn(svc.clone().oneshot(request("/hook", "203.0.113.2:1000")));
    let other_path = tokio::spawn(svc.clone().oneshot(request("/other", "203.0.113.1:1000")));
    started.recv().await.unwrap();
    started.recv().await.unwrap();
    assert_eq!(limiter.tracked_keys(), 3);

    // One permit more than the ten waiting, for the request after them.
    gate.add_permits(11);
    for task in held.into_iter().chain([other_peer, other_path]) {
        let response = task.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("retry-after").is_none());
        assert_eq!(
            &response.into_body().collect().await.unwrap().to_bytes()[..],
            b"ok"
        );
    }
    assert_eq!(limiter.tracked_keys(), 0);
    // With the slots back, the key is served again.
    let response = svc
        .oneshot(request("/hook", "203.0.113.1:3000"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_slot_is_held_until_the_body_is_dropped() {
    let layer = InFlightLimitLayer::new(config(1, 16));
    let limiter = layer.limiter().clone();
    let svc = layer.layer(instant());
    let response = svc
        .clone()
        .oneshot(request("/b", "1.1.1.1:1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.body().inner_ref().unwrap().holds_slot());
    // The handler has returned but the body is unread: the key is still busy.
    assert_rejected(
        svc.clone()
            .oneshot(request("/b", "1.1.1.1:1"))
            .await
            .unwrap(),
    )
    .await;
    drop(response);
    assert_eq!(limiter.tracked_keys(), 0);
    let again = svc.oneshot(request("/b", "1.1.1.1:1")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_slot_is_held_until_the_last_frame_is_read() {
    let svc = InFlightLimitLayer::new(config(1, 16)).layer(service_fn(|_req: Req| async {
        let frames = stream::iter([
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"one "))),
            Ok(Frame::data(Bytes::from_static(b"two"))),
        ]);
        Ok::<_, Infallible>(Response::new(StreamBody::new(frames)))
    }));
    let limiter = svc.limiter().clone();
    let key = limiter.hash_request(
        &tower_webhooks::keyed::NormalizedPathAndPeerIp::new(),
        &request("/s", "1.1.1.1:1"),
    );
    let mut body = svc
        .clone()
        .oneshot(request("/s", "1.1.1.1:1"))
        .await
        .unwrap()
        .into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"one ");
    assert_eq!(limiter.in_flight(key), 1, "mid-body the slot is held");
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&second[..], b"two");
    assert!(body.frame().await.is_none());
    // Fully read, the body is still alive but the slot is back.
    assert!(!body.inner_ref().unwrap().holds_slot());
    assert_eq!(limiter.in_flight(key), 0);
    assert_eq!(limiter.tracked_keys(), 0);
    drop(body);
    assert_eq!(limiter.tracked_keys(), 0);
}

#[tokio::test]
async fn a_single_frame_body_frees_the_slot_with_its_last_frame() {
    let layer = InFlightLimitLayer::new(config(1, 16));
    let limiter = layer.limiter().clone();
    let svc = layer.layer(instant());
    let mut body = svc
        .oneshot(request("/f", "1.1.1.1:1"))
        .await
        .unwrap()
        .into_body();
    assert_eq!(limiter.tracked_keys(), 1);
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(&frame.into_data().unwrap()[..], b"ok");
    // `Full` reports its end with its only frame; a server may not poll again for a while.
    assert!(body.is_end_stream());
    assert_eq!(limiter.tracked_keys(), 0);
}

#[tokio::test]
async fn a_failing_body_frees_the_slot() {
    let svc = InFlightLimitLayer::new(config(1, 16)).layer(service_fn(|_req: Req| async {
        let frames = stream::iter([Err::<Frame<Bytes>, _>("broken pipe")]);
        Ok::<_, Infallible>(Response::new(StreamBody::new(frames)))
    }));
    let limiter = svc.limiter().clone();
    let mut body = svc
        .oneshot(request("/f", "1.1.1.1:1"))
        .await
        .unwrap()
        .into_body();
    assert_eq!(limiter.tracked_keys(), 1);
    assert_eq!(body.frame().await.unwrap().unwrap_err(), "broken pipe");
    assert_eq!(limiter.tracked_keys(), 0);
}

#[tokio::test]
async fn dropping_the_future_frees_the_slot() {
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let layer = InFlightLimitLayer::new(config(1, 16));
    let limiter = layer.limiter().clone();
    let mut svc = layer.layer(gated(gate.clone(), started_tx));

    // Never polled: the slot was taken in `call`, and dropping gives it back.
    let future = svc.ready().await.unwrap().call(request("/d", "1.1.1.1:1"));
    assert_eq!(limiter.tracked_keys(), 1);
    assert_rejected(
        svc.clone()
            .oneshot(request("/d", "1.1.1.1:1"))
            .await
            .unwrap(),
    )
    .await;
    drop(future);
    assert_eq!(limiter.tracked_keys(), 0);

    // Polled and parked in the handler (a client that went away mid-request), then aborted.
    let task = tokio::spawn(svc.clone().oneshot(request("/d", "1.1.1.1:1")));
    started.recv().await.unwrap();
    assert_eq!(limiter.tracked_keys(), 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(limiter.tracked_keys(), 0);
    drop(gate);
}

#[tokio::test]
async fn an_inner_error_frees_the_slot_and_passes_through() {
    let svc = InFlightLimitLayer::new(config(1, 16)).layer(service_fn(|_req: Req| async {
        Err::<Response<Full<Bytes>>, _>("handler failed")
    }));
    let limiter = svc.limiter().clone();
    for _ in 0..3 {
        let err = svc
            .clone()
            .oneshot(request("/e", "1.1.1.1:1"))
            .await
            .unwrap_err();
        assert_eq!(err, "handler failed");
        assert_eq!(limiter.tracked_keys(), 0);
    }
}

#[tokio::test]
async fn normalised_paths_share_a_budget() {
    let layer = InFlightLimitLayer::new(config(1, 16));
    let svc = layer.layer(instant());
    let held = svc
        .clone()
        .oneshot(request("/x", "1.1.1.1:1"))
        .await
        .unwrap();
    assert_rejected(
        svc.clone()
            .oneshot(request("/x/", "1.1.1.1:1"))
            .await
            .unwrap(),
    )
    .await;
    // Case and inner slashes are kept: these are other paths.
    for other in ["/X", "//x", "/x//"] {
        let response = svc
            .clone()
            .oneshot(request(other, "1.1.1.1:1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{other}");
    }
    drop(held);
    // The configured path of the route this request reaches, when the loader is built in.
    #[cfg(feature = "config")]
    assert_eq!(normalize_path("/x/"), "/x");
}

#[tokio::test]
async fn the_peer_is_the_key_not_forwarding_headers() {
    let svc = InFlightLimitLayer::new(config(1, 16)).layer(instant());
    let held = svc
        .clone()
        .oneshot(request("/p", "10.0.0.1:1"))
        .await
        .unwrap();
    let mut spoofed = request("/p", "10.0.0.1:2");
    spoofed
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    assert_rejected(svc.clone().oneshot(spoofed).await.unwrap()).await;
    // IPv4-mapped IPv6 is the same peer.
    assert_rejected(
        svc.clone()
            .oneshot(request("/p", "[::ffff:10.0.0.1]:3"))
            .await
            .unwrap(),
    )
    .await;
    drop(held);
}

#[tokio::test]
async fn tracked_keys_are_bounded_and_a_new_key_at_the_cap_fails_closed() {
    let layer = InFlightLimitLayer::new(config(2, 3));
    let limiter = layer.limiter().clone();
    let svc = layer.layer(instant());
    let mut held = Vec::new();
    for peer in ["1.0.0.1:1", "1.0.0.2:1", "1.0.0.3:1"] {
        held.push(svc.clone().oneshot(request("/k", peer)).await.unwrap());
    }
    assert_eq!(limiter.tracked_keys(), 3);
    for i in 0..50 {
        let peer = format!("2.0.0.{i}:1");
        assert_rejected(svc.clone().oneshot(request("/k", &peer)).await.unwrap()).await;
        assert_eq!(limiter.tracked_keys(), 3);
    }
    // A key already tracked still gets its remaining slot.
    let second = svc
        .clone()
        .oneshot(request("/k", "1.0.0.1:9"))
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    drop(second);
    // Once a key is idle its entry is gone and a new key fits.
    held.remove(0);
    assert_eq!(limiter.tracked_keys(), 2);
    let newcomer = svc
        .clone()
        .oneshot(request("/k", "2.0.0.1:1"))
        .await
        .unwrap();
    assert_eq!(newcomer.status(), StatusCode::OK);
    drop((held, newcomer));
    assert_eq!(limiter.tracked_keys(), 0);
}

#[tokio::test]
async fn many_distinct_keys_leave_nothing_behind() {
    let layer = InFlightLimitLayer::new(InFlightConfig::default());
    let limiter = layer.limiter().clone();
    let svc = layer.layer(instant());
    for i in 0u32..10_000 {
        let mut req = Request::post("/many").body(Empty::new()).unwrap();
        req.extensions_mut()
            .insert(SocketAddr::from((std::net::Ipv4Addr::from(i), 1)));
        let response = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(limiter.tracked_keys(), 0);
}

#[tokio::test]
async fn clones_share_one_limiter_and_layers_can_share_one() {
    let layer = InFlightLimitLayer::new(config(1, 16));
    let a = layer.layer(instant());
    let b = layer.clone().layer(instant());
    let held = a.clone().oneshot(request("/c", "1.1.1.1:1")).await.unwrap();
    assert_rejected(b.clone().oneshot(request("/c", "1.1.1.1:1")).await.unwrap()).await;
    drop(held);

    let shared = InFlightLimiter::new(config(1, 16));
    let route_a = InFlightLimitLayer::with_limiter(shared.clone())
        .key_extractor(GlobalKey::new())
        .layer(instant());
    let route_b = InFlightLimitLayer::with_limiter(shared.clone())
        .key_extractor(GlobalKey::new())
        .layer(instant());
    assert!(route_a.limiter().same_limiter(&shared));
    let held = route_a.oneshot(request("/a", "1.1.1.1:1")).await.unwrap();
    assert_rejected(route_b.oneshot(request("/b", "2.2.2.2:2")).await.unwrap()).await;
    drop(held);
    assert_eq!(shared.tracked_keys(), 0);
}

#[tokio::test]
async fn constructors_and_accessors() {
    let defaults = InFlightConfig::default();
    assert_eq!(
        (defaults.max_per_key, defaults.max_tracked_keys),
        (8, 4_096)
    );
    let mut svc = InFlightLimit::new(instant(), config(3, 5));
    assert_eq!(svc.limiter().config(), config(3, 5));
    let _: &_ = svc.get_ref();
    let _: &mut _ = svc.get_mut();
    let layered = InFlightLimit::<()>::layer(config(2, 2)).layer(svc.into_inner());
    assert_eq!(layered.limiter().config().max_per_key, 2);
    let body = InFlightBody::<Full<Bytes>>::default();
    assert!(!body.holds_slot());
    assert_eq!(format!("{body:?}"), "InFlightBody { holds_slot: false }");
}

#[test]
fn works_as_an_axum_layer_without_handle_error() {
    let _router: axum::Router = axum::Router::new()
        .route("/hook", axum::routing::post(|| async { "ok" }))
        .layer(InFlightLimitLayer::new(InFlightConfig::default()));
}
