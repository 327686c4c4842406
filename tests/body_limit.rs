//! `BodyLimit` (SPEC §2 step 7) in both modes: exact statuses, texts and headers, what is read and
//! what is not, and the deadline under paused tokio time.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Ready;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::mpsc;
use tower::{Layer, Service, ServiceExt};
use tower_webhooks::{
    BodyLimit, BodyLimitLayer,
    body::BufferedBody,
    body_limit::{BodyLimitConfig, BodyTimeoutError, Buffered, LimitedBody, Streaming},
};

const CAP: usize = 16;

/// A body whose frames are given up front; counts how often it is polled.
struct Frames {
    frames: VecDeque<Result<Bytes, std::io::Error>>,
    polls: Arc<AtomicUsize>,
}

impl Frames {
    fn new<const N: usize>(frames: [&'static [u8]; N]) -> (Self, Arc<AtomicUsize>) {
        Self::from_results(frames.map(|f| Ok(Bytes::from_static(f))))
    }

    fn from_results(
        frames: impl IntoIterator<Item = Result<Bytes, std::io::Error>>,
    ) -> (Self, Arc<AtomicUsize>) {
        let polls = Arc::new(AtomicUsize::new(0));
        let body = Self {
            frames: frames.into_iter().collect(),
            polls: polls.clone(),
        };
        (body, polls)
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(self.frames.pop_front().map(|f| f.map(Frame::data)))
    }
}

/// A body that yields the same frame forever, counting polls.
struct Endless {
    frame: Bytes,
    polls: Arc<AtomicUsize>,
}

impl Endless {
    fn new(frame_len: usize) -> (Self, Arc<AtomicUsize>) {
        let polls = Arc::new(AtomicUsize::new(0));
        let body = Self {
            frame: Bytes::from(vec![b'x'; frame_len]),
            polls: polls.clone(),
        };
        (body, polls)
    }
}

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(self.frame.clone()))))
    }
}

/// A body fed by a channel: it stalls whenever the sender has nothing to send.
struct Channel(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Body for Channel {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

fn channel() -> (mpsc::Sender<Result<Bytes, std::io::Error>>, Channel) {
    let (tx, rx) = mpsc::channel(8);
    (tx, Channel(rx))
}

/// The inner service of buffered mode: echoes the body and records what it was called with.
#[derive(Clone, Default)]
struct Echo {
    calls: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<(HeaderMap, Bytes)>>>,
}

impl Echo {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn last_body(&self) -> Bytes {
        self.last.lock().unwrap().as_ref().unwrap().1.clone()
    }

    fn last_headers(&self) -> HeaderMap {
        self.last.lock().unwrap().as_ref().unwrap().0.clone()
    }
}

impl Service<Request<BufferedBody>> for Echo {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BufferedBody>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (parts, body) = req.into_parts();
        let bytes = body.into_bytes();
        *self.last.lock().unwrap() = Some((parts.headers, bytes.clone()));
        std::future::ready(Ok(Response::new(Full::new(bytes))))
    }
}

/// The inner service of streaming mode: reads the body and answers with what happened.
#[derive(Clone, Default)]
struct Drain {
    calls: Arc<AtomicUsize>,
}

impl<B> Service<Request<LimitedBody<B>>> for Drain
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower_webhooks::body_limit::BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<LimitedBody<B>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let text = match req.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) if error.is::<BodyTimeoutError>() => Bytes::from("timeout"),
                Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                    Bytes::from("too long")
                }
                Err(error) => Bytes::from(format!("other: {error}")),
            };
            Ok(Response::new(Full::new(text)))
        })
    }
}

fn buffered() -> (BodyLimit<Echo, Buffered>, Echo) {
    let echo = Echo::default();
    let svc = BodyLimit::new(echo.clone(), BodyLimitConfig::buffered().max_bytes(CAP));
    (svc, echo)
}

fn streaming() -> (BodyLimit<Drain, Streaming>, Drain) {
    let drain = Drain::default();
    let svc = BodyLimit::new(drain.clone(), BodyLimitConfig::streaming().max_bytes(CAP));
    (svc, drain)
}

type Answer = (StatusCode, HeaderMap, Bytes);

async fn answer<S, B, R>(svc: S, request: Request<B>) -> Answer
where
    S: Service<Request<B>, Response = Response<R>, Error = Infallible>,
    R: Body<Data = Bytes>,
    R::Error: std::fmt::Debug,
{
    let response = svc.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, bytes)
}

fn post<B>(content_length: &[&str], body: B) -> Request<B> {
    let mut request = Request::post("/hook").body(body).unwrap();
    for value in content_length {
        request.headers_mut().append(
            "content-length",
            HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    request
}

#[track_caller]
fn assert_rejected(got: &Answer, status: u16, text: &str, close: bool) {
    assert_eq!(got.0.as_u16(), status, "{got:?}");
    assert_eq!(got.2, text, "{got:?}");
    assert_eq!(got.1["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        got.1.get("connection").map(|v| v.to_str().unwrap()),
        close.then_some("close"),
        "{got:?}"
    );
}

#[tokio::test]
async fn body_exactly_at_the_cap_passes_whole() {
    let (svc, echo) = buffered();
    let (body, _) = Frames::new([b"0123456789abcdef"]);
    let got = answer(svc.clone(), post(&["16"], body)).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.2, "0123456789abcdef");
    assert_eq!(echo.last_headers()["content-length"], "16");

    // The same bytes in several frames, without a length, are joined in order.
    let (body, _) = Frames::new([b"0123", b"", b"456789a", b"bcdef"]);
    let got = answer(svc.clone(), post(&[], body)).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(echo.last_body(), "0123456789abcdef");

    // And with a length, which sizes the buffer.
    let (body, _) = Frames::new([b"0123456789", b"abcdef"]);
    let got = answer(svc, post(&["16"], body)).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(echo.last_body(), "0123456789abcdef");
    assert_eq!(echo.calls(), 3);
}

#[tokio::test]
async fn zero_length_and_small_chunked_bodies_pass() {
    let (svc, echo) = buffered();
    let (body, _) = Frames::new([]);
    let got = answer(svc.clone(), post(&["0"], body)).await;
    assert_eq!((got.0, got.2.len()), (StatusCode::OK, 0));

    let (body, _) = Frames::new([b"{\"a\"", b":1}"]);
    let got = answer(svc, post(&[], body)).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(echo.last_body(), "{\"a\":1}");
    assert!(echo.last_headers().get("content-length").is_none());
    assert_eq!(echo.calls(), 2);
}

#[tokio::test]
async fn length_above_the_cap_is_413_without_polling_the_body() {
    let (svc, echo) = buffered();
    let (body, polls) = Frames::new([b"0123456789abcdefX"]);
    let got = answer(svc, post(&["17"], body)).await;
    assert_rejected(&got, 413, "Payload too large", true);
    assert_eq!(polls.load(Ordering::SeqCst), 0);
    assert_eq!(echo.calls(), 0);

    // Streaming mode answers the same, before calling the inner service.
    let (svc, drain) = streaming();
    let (body, polls) = Frames::new([b"0123456789abcdefX"]);
    let got = answer(svc, post(&["17"], body)).await;
    assert_rejected(&got, 413, "Payload too large", true);
    assert_eq!(polls.load(Ordering::SeqCst), 0);
    assert_eq!(drain.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn chunked_body_one_byte_over_the_cap_is_413() {
    let (svc, echo) = buffered();
    let (body, polls) = Frames::new([b"01234567", b"89abcdefX", b"never read"]);
    let got = answer(svc, post(&[], body)).await;
    assert_rejected(&got, 413, "Payload too large", true);
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    assert_eq!(echo.calls(), 0);
}

#[tokio::test]
async fn large_frames_stop_being_polled_at_the_frame_that_passes_the_cap() {
    let echo = Echo::default();
    let svc = BodyLimit::new(
        echo.clone(),
        BodyLimitConfig::buffered().max_bytes(100 * 1024),
    );
    let (body, polls) = Endless::new(64 * 1024);
    let got = answer(svc, post(&[], body)).await;
    assert_rejected(&got, 413, "Payload too large", true);
    // 64 KiB fits; the second frame passes 100 KiB and is the last one polled, so at most
    // cap + one frame was ever held.
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    assert_eq!(echo.calls(), 0);
}

#[tokio::test]
async fn a_lying_content_length_is_refused() {
    let (svc, echo) = buffered();
    // Declares 4, sends more but within the cap: the declared length is wrong.
    let (body, polls) = Frames::new([b"abcd", b"efgh", b"never read"]);
    let got = answer(svc.clone(), post(&["4"], body)).await;
    assert_rejected(&got, 400, "invalid Content-Length", true);
    assert_eq!(polls.load(Ordering::SeqCst), 2);

    // Declares 4, sends past the cap: too large wins.
    let (body, _) = Frames::new([b"0123456789abcdefghij"]);
    let got = answer(svc.clone(), post(&["4"], body)).await;
    assert_rejected(&got, 413, "Payload too large", true);

    // Declares 10, ends after 4: truncated.
    let (body, _) = Frames::new([b"abcd"]);
    let got = answer(svc.clone(), post(&["10"], body)).await;
    assert_rejected(&got, 400, "invalid Content-Length", true);
    assert_eq!(echo.calls(), 0);

    // The same with a body that says it has ended instead of being polled to the end.
    let got = answer(svc.clone(), post(&["10"], Full::new(Bytes::from("abcd")))).await;
    assert_rejected(&got, 400, "invalid Content-Length", true);
    let got = answer(svc, post(&["4"], Full::new(Bytes::from("abcd")))).await;
    assert_eq!((got.0, got.2), (StatusCode::OK, Bytes::from("abcd")));
    assert_eq!(echo.calls(), 1);
}

const MALFORMED: &[&[&str]] = &[
    &["abc"],
    &["-1"],
    &["1 2"],
    &["+5"],
    &[""],
    &["99999999999999999999999"],
    &["5", "6"],
    &["5, 6"],
    &["5,"],
    &["0x5"],
    &["5", "5", "7"],
];

#[tokio::test]
async fn malformed_lengths_are_400_in_both_modes_without_reading() {
    let (svc, echo) = buffered();
    let (streaming, drain) = streaming();
    for values in MALFORMED {
        let (body, polls) = Frames::new([b"hello"]);
        let got = answer(svc.clone(), post(values, body)).await;
        assert_rejected(&got, 400, "invalid Content-Length", true);
        assert_eq!(polls.load(Ordering::SeqCst), 0, "{values:?}");

        let (body, polls) = Frames::new([b"hello"]);
        let got = answer(streaming.clone(), post(values, body)).await;
        assert_rejected(&got, 400, "invalid Content-Length", true);
        assert_eq!(polls.load(Ordering::SeqCst), 0, "{values:?}");
    }
    assert_eq!(echo.calls(), 0);
    assert_eq!(drain.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn identical_repeated_lengths_are_accepted_as_one() {
    let (svc, echo) = buffered();
    for values in [&["5", "5"][..], &["5, 5"], &["005,5\t", " 5"]] {
        let (body, _) = Frames::new([b"hello"]);
        let got = answer(svc.clone(), post(values, body)).await;
        assert_eq!(got.0, StatusCode::OK, "{values:?}");
        assert_eq!(echo.last_body(), "hello");
        let headers = echo.last_headers();
        let lengths: Vec<_> = headers.get_all("content-length").iter().collect();
        assert_eq!(lengths, ["5"], "{values:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_is_408_at_the_deadline() {
    let (svc, echo) = buffered();
    let (tx, body) = channel();
    tx.send(Ok(Bytes::from_static(b"{\"a\""))).await.unwrap();
    // `tx` stays alive, so the body stalls instead of ending; paused time jumps to the deadline.
    let got = answer(svc, post(&[], body)).await;
    assert_rejected(&got, 408, "Request body timeout", true);
    assert_eq!(echo.calls(), 0);
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_total_not_per_chunk() {
    let (svc, echo) = buffered();
    let (tx, body) = channel();
    // A client that sends a byte every 10 s never idles for 15 s, yet takes longer than 15 s.
    let client = tokio::spawn(async move {
        for _ in 0..4 {
            if tx.send(Ok(Bytes::from_static(b"x"))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    });
    let got = answer(svc, post(&[], body)).await;
    assert_rejected(&got, 408, "Request body timeout", true);
    assert_eq!(echo.calls(), 0);
    client.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_slow_body_that_ends_within_the_deadline_passes() {
    let (svc, echo) = buffered();
    let (tx, body) = channel();
    let client = tokio::spawn(async move {
        tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(14_999)).await;
        tx.send(Ok(Bytes::from_static(b"cd"))).await.unwrap();
    });
    let got = answer(svc, post(&["4"], body)).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(echo.last_body(), "abcd");
    client.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_configurable() {
    let echo = Echo::default();
    let svc = BodyLimitLayer::new(BodyLimitConfig::buffered().timeout(Duration::from_millis(100)))
        .layer(echo.clone());
    let (tx, body) = channel();
    let client = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(101)).await;
        // The server has answered and dropped the body by now.
        assert!(tx.send(Ok(Bytes::from_static(b"late"))).await.is_err());
    });
    let got = answer(svc, post(&[], body)).await;
    assert_rejected(&got, 408, "Request body timeout", true);
    assert_eq!(echo.calls(), 0);
    client.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_always_ready_body_is_read_in_batches_under_the_deadline() {
    let (svc, echo) = buffered();
    const FRAMES: usize = 100_000;
    // Empty frames never reach the cap: without batching, one poll would drain them all, and an
    // endless supply would keep the task busy forever.
    let (body, polls) =
        Frames::from_results(std::iter::repeat_with(|| Ok(Bytes::new())).take(FRAMES));
    let mut response = std::pin::pin!(svc.oneshot(post(&[], body)));
    assert!(futures_util::poll!(response.as_mut()).is_pending());
    assert!(polls.load(Ordering::SeqCst) < FRAMES);
    // Having yielded, the future started the deadline; once it has passed, the next batch ends it.
    tokio::time::advance(Duration::from_secs(16)).await;
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(polls.load(Ordering::SeqCst) < FRAMES);
    assert_eq!(echo.calls(), 0);
}

#[tokio::test]
async fn a_body_that_fails_mid_stream_is_400_and_closes() {
    let (svc, echo) = buffered();
    let (body, polls) = Frames::from_results([
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client gone",
        )),
        Ok(Bytes::from_static(b"never read")),
    ]);
    let got = answer(svc, post(&[], body)).await;
    assert_rejected(&got, 400, "invalid request body", true);
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    assert_eq!(echo.calls(), 0);
}

#[tokio::test]
async fn an_outer_length_limit_keeps_its_413() {
    let (svc, echo) = buffered();
    let (body, _) = Frames::new([b"abcdef"]);
    // An outer `Limited` of 4 bytes under our cap of 16: its error is still "too large".
    let got = answer(svc, post(&[], Limited::new(body, 4))).await;
    assert_rejected(&got, 413, "Payload too large", true);
    assert_eq!(echo.calls(), 0);
}

#[tokio::test]
async fn the_inner_service_called_is_the_one_made_ready() {
    // `ConcurrencyLimit` panics when called without its own `poll_ready`: calling the clone left
    // behind, instead of the instance that was made ready, would fail here.
    let echo = Echo::default();
    let svc = tower::ServiceBuilder::new()
        .layer(BodyLimitLayer::new(BodyLimitConfig::buffered()))
        .concurrency_limit(1)
        .service(echo.clone());
    for _ in 0..3 {
        let (body, _) = Frames::new([b"ab", b"cd"]);
        let got = answer(svc.clone(), post(&[], body)).await;
        assert_eq!(got.0, StatusCode::OK);
    }
    assert_eq!(echo.calls(), 3);
}

#[tokio::test]
async fn the_three_constructors_agree() {
    let config = BodyLimitConfig::buffered().max_bytes(3);
    assert_eq!(config.max_bytes, 3);
    assert_eq!(config.timeout, Duration::from_secs(15));
    assert_eq!(BodyLimitConfig::buffered().max_bytes, 262_144);
    let a = BodyLimit::new(Echo::default(), config);
    let b = BodyLimitLayer::new(config).layer(Echo::default());
    let c = BodyLimit::<Echo>::layer(config).layer(Echo::default());
    for svc in [a, b, c] {
        assert_eq!(svc.config(), &config);
        let (body, _) = Frames::new([b"abcd"]);
        let got = answer(svc, post(&[], body)).await;
        assert_rejected(&got, 413, "Payload too large", true);
    }
    let mut svc = BodyLimit::new(Echo::default(), config);
    svc.get_mut().calls.store(7, Ordering::SeqCst);
    assert_eq!(svc.get_ref().calls(), 7);
    assert_eq!(svc.into_inner().calls(), 7);
}

#[tokio::test]
async fn streaming_mode_passes_bodies_within_the_cap_and_fails_past_it() {
    let (svc, drain) = streaming();
    let (body, _) = Frames::new([b"0123456789", b"abcdef"]);
    let got = answer(svc.clone(), post(&["16"], body)).await;
    assert_eq!(
        (got.0, got.2),
        (StatusCode::OK, Bytes::from("0123456789abcdef"))
    );

    let (body, polls) = Frames::new([b"0123456789", b"abcdefX", b"never read"]);
    let got = answer(svc.clone(), post(&[], body)).await;
    assert_eq!(got.2, "too long");
    assert_eq!(polls.load(Ordering::SeqCst), 2);

    // A body that fails for another reason keeps its own error.
    let (body, _) = Frames::from_results([Err(std::io::Error::other("boom"))]);
    let got = answer(svc, post(&[], body)).await;
    assert_eq!(got.2, "other: boom");
    assert_eq!(drain.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn streaming_mode_fails_the_body_at_the_deadline() {
    let (svc, _) = streaming();
    let (tx, body) = channel();
    tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
    let got = answer(svc, post(&[], body)).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.2, "timeout");
    drop(tx);
}

mod under_axum {
    use super::*;
    use axum::Router;
    use axum::routing::post as route_post;

    fn app() -> (Router, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = Router::new()
            .route(
                "/hook",
                route_post(move |body: Bytes| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { body }
                }),
            )
            .route("/text", route_post(|body: String| async move { body }))
            .layer(BodyLimitLayer::new(
                BodyLimitConfig::streaming().max_bytes(CAP),
            ));
        (app, calls)
    }

    fn chunked(uri: &str, frames: &'static [&'static [u8]]) -> Request<axum::body::Body> {
        let stream = futures_util::stream::iter(
            frames
                .iter()
                .map(|f| Ok::<_, std::io::Error>(Bytes::from_static(f))),
        );
        Request::post(uri)
            .body(axum::body::Body::from_stream(stream))
            .unwrap()
    }

    #[tokio::test]
    async fn bytes_extractor_answers_413_on_a_streamed_overrun() {
        let (app, calls) = app();
        for uri in ["/hook", "/text"] {
            let got = answer(app.clone(), chunked(uri, &[b"0123456789", b"abcdefX"])).await;
            assert_eq!(got.0, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {got:?}");
        }
        // The handler body never ran: the extractor refused first.
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        let got = answer(app.clone(), chunked("/hook", &[b"0123456789", b"abcdef"])).await;
        assert_eq!(
            (got.0, got.2),
            (StatusCode::OK, Bytes::from("0123456789abcdef"))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_declared_overrun_is_our_413_before_axum_runs() {
        let (app, calls) = app();
        let request = Request::post("/hook")
            .header("content-length", "17")
            .body(axum::body::Body::from("0123456789abcdefX"))
            .unwrap();
        let got = answer(app, request).await;
        assert_rejected(&got, 413, "Payload too large", true);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn buffered_mode_also_fits_a_router() {
        let app = Router::new()
            .route("/hook", route_post(|body: Bytes| async move { body }))
            .layer(BodyLimitLayer::new(
                BodyLimitConfig::buffered().max_bytes(CAP),
            ));
        let got = answer(app.clone(), chunked("/hook", &[b"0123456789", b"abcdefX"])).await;
        assert_rejected(&got, 413, "Payload too large", true);
        let got = answer(app, chunked("/hook", &[b"0123", b"4567"])).await;
        assert_eq!((got.0, got.2), (StatusCode::OK, Bytes::from("01234567")));
    }
}

mod content_length_properties {
    use super::*;
    use proptest::prelude::*;

    fn run(values: Vec<String>, body: Bytes) -> Answer {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (svc, _) = buffered();
        let mut request = Request::post("/hook").body(Full::new(body)).unwrap();
        for value in values {
            request.headers_mut().append(
                "content-length",
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        rt.block_on(answer(svc, request))
    }

    proptest! {
        #[test]
        fn any_decimal_length_matching_the_body_passes(
            len in 0..=CAP,
            zeros in 0..3usize,
            copies in 1..4usize,
        ) {
            let value = format!("{}{len}", "0".repeat(zeros));
            let got = run(vec![value; copies], Bytes::from(vec![b'x'; len]));
            prop_assert_eq!(got.0, StatusCode::OK);
            prop_assert_eq!(got.2.len(), len);
        }

        #[test]
        fn any_length_above_the_cap_is_413(len in (CAP as u64 + 1)..=u64::MAX) {
            let got = run(vec![len.to_string()], Bytes::new());
            prop_assert_eq!(got.0, StatusCode::PAYLOAD_TOO_LARGE);
        }

        #[test]
        fn anything_but_digits_is_400(value in "[ -+\\--~]{0,12}") {
            // Commas are left out of the alphabet: a list of equal numbers is valid.
            let number = value.trim_matches([' ', '\t']);
            prop_assume!(number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()));
            let got = run(vec![value], Bytes::new());
            prop_assert_eq!(got.0, StatusCode::BAD_REQUEST);
            prop_assert_eq!(got.2, "invalid Content-Length");
        }
    }
}
