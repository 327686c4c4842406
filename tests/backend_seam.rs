//! The backend seam of the in-flight limit and the auth lockout (issue 12, part C1): a store that
//! answers later holds the request until it does, an unavailable store is a `503`, a lockout
//! failure is on record before the `401` goes out, and a lease is renewed while its body streams
//! and released at its end, on drop and on error.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use tokio::sync::{mpsc, oneshot};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_webhooks::keyed::{
    KeyHasher, LeaseTerms, LockState, LockoutStore, NoRenewal, RenewAtHalfLease, SlotStore,
    Unavailable,
};
use tower_webhooks::{
    InFlightLimitLayer, SharedSecretAuthLayer, WebhookPipeline,
    auth::{AuthLockout, LockoutConfig, SharedSecretAuthConfig},
    clock::{ManualClock, SharedClock},
    config::Limits,
    in_flight::InFlightConfig,
    secret::Secret,
};

const SECRET: &str = "backend-seam-secret";

type Body = Full<Bytes>;

fn request(secret: &str) -> Request<Body> {
    let mut request = Request::post("/hook")
        .header("authorization", format!("Bearer {secret}"))
        .body(Body::default())
        .unwrap();
    request
        .extensions_mut()
        .insert("192.0.2.44:5000".parse::<SocketAddr>().unwrap());
    request
}

/// An inner service that counts its calls.
fn counted(
    calls: Arc<AtomicUsize>,
) -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone {
    service_fn(move |_request: Request<Body>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Body::from("passed"))) }
    })
}

/// An answer that comes when the test sends it; a dropped sender is an unavailable store.
struct Gate<T>(oneshot::Receiver<Result<T, Unavailable>>);

impl<T> Future for Gate<T> {
    type Output = Result<T, Unavailable>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(Unavailable::new())))
    }
}

/// Gates handed out in order, one per question asked.
struct Gates<T>(Mutex<Vec<oneshot::Receiver<Result<T, Unavailable>>>>);

impl<T> Gates<T> {
    fn new(count: usize) -> (Arc<Self>, Vec<oneshot::Sender<Result<T, Unavailable>>>) {
        let (senders, receivers) = (0..count).map(|_| oneshot::channel()).unzip();
        (Arc::new(Self(Mutex::new(receivers))), senders)
    }

    fn next(&self) -> Gate<T> {
        Gate(self.0.lock().unwrap().remove(0))
    }
}

/// The text of a response, with whether it came from the inner service.
async fn text(response: Response<impl http_body::Body<Error = impl std::fmt::Debug>>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

// ---- in-flight: a slot store that answers later -----------------------------------------------

/// A lease that counts its releases.
struct CountedLease(Arc<AtomicUsize>);

impl Drop for CountedLease {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A slot store whose acquires answer when the test says so; leases never expire.
#[derive(Clone)]
struct GatedSlots {
    gates: Arc<Gates<Option<()>>>,
    released: Arc<AtomicUsize>,
}

struct GatedLease {
    gate: Gate<Option<()>>,
    released: Arc<AtomicUsize>,
}

impl Future for GatedLease {
    type Output = Result<Option<CountedLease>, Unavailable>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let released = Arc::clone(&self.released);
        Pin::new(&mut self.gate)
            .poll(cx)
            .map(|answer| answer.map(|slot| slot.map(|()| CountedLease(released))))
    }
}

impl SlotStore for GatedSlots {
    type Lease = CountedLease;
    type Renewal = NoRenewal;
    type AcquireFuture = GatedLease;
    type RenewFuture = std::future::Ready<Result<(), Unavailable>>;

    fn key_hasher(&self) -> KeyHasher {
        KeyHasher::default()
    }

    fn acquire(&self, _key: u64) -> GatedLease {
        GatedLease {
            gate: self.gates.next(),
            released: Arc::clone(&self.released),
        }
    }

    fn renewal(&self) -> NoRenewal {
        NoRenewal
    }

    fn renew(&self, _lease: &CountedLease) -> Self::RenewFuture {
        std::future::ready(Ok(()))
    }
}

#[tokio::test]
async fn an_in_flight_store_that_answers_later_holds_the_request_until_it_does() {
    let (gates, senders) = Gates::new(3);
    let released = Arc::new(AtomicUsize::new(0));
    let store = GatedSlots {
        gates,
        released: Arc::clone(&released),
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = InFlightLimitLayer::with_store(store).layer(counted(Arc::clone(&calls)));
    let answers = [Ok(Some(())), Ok(None), Err(Unavailable::new())];
    let mut seen = Vec::new();
    for (sender, answer) in senders.into_iter().zip(answers) {
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let mut future = pin!(svc.call(request(SECRET)));
        assert!(futures_util::poll!(future.as_mut()).is_pending());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            seen.len().min(1),
            "the request went on before the store answered"
        );
        sender.send(answer).unwrap();
        let response = future.await.unwrap();
        let status = response.status();
        let retry_after = response.headers().get("retry-after").cloned();
        seen.push((status, retry_after, text(response).await));
    }
    assert_eq!(
        seen,
        [
            (StatusCode::OK, None, "passed".to_owned()),
            (
                StatusCode::TOO_MANY_REQUESTS,
                Some(http::HeaderValue::from_static("1")),
                "Too Many Requests".to_owned()
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Service Unavailable".to_owned()
            ),
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The one lease was released when its body was read to the end.
    assert_eq!(released.load(Ordering::SeqCst), 1);
}

// ---- in-flight: leases renewed while the body streams -----------------------------------------

/// A slot store whose leases last 30 s on a manual clock and which records renewals and releases.
#[derive(Clone)]
struct RenewedSlots {
    clock: Arc<ManualClock>,
    renewals: Arc<Mutex<Vec<u64>>>,
    released: Arc<AtomicUsize>,
}

const LEASE: Duration = Duration::from_secs(30);

impl SlotStore for RenewedSlots {
    type Lease = CountedLease;
    type Renewal = RenewAtHalfLease<Self>;
    type AcquireFuture = std::future::Ready<Result<Option<CountedLease>, Unavailable>>;
    type RenewFuture = std::future::Ready<Result<(), Unavailable>>;

    fn key_hasher(&self) -> KeyHasher {
        KeyHasher::default()
    }

    fn acquire(&self, _key: u64) -> Self::AcquireFuture {
        std::future::ready(Ok(Some(CountedLease(Arc::clone(&self.released)))))
    }

    fn renewal(&self) -> RenewAtHalfLease<Self> {
        let clock: SharedClock = self.clock.clone();
        RenewAtHalfLease::new(
            self.clone(),
            LeaseTerms {
                length: LEASE,
                clock,
            },
        )
    }

    fn renew(&self, _lease: &CountedLease) -> Self::RenewFuture {
        use tower_webhooks::clock::Clock;
        self.renewals
            .lock()
            .unwrap()
            .push(self.clock.monotonic_millis());
        std::future::ready(Ok(()))
    }
}

type Chunk = Result<Frame<Bytes>, std::io::Error>;

/// A response body that streams what the test sends.
struct ChannelBody(mpsc::Receiver<Chunk>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }
}

/// The response of an in-flight limit over a [`ChannelBody`].
type StreamingResponse = Response<
    tower_webhooks::ResponseBody<
        tower_webhooks::in_flight::InFlightBody<ChannelBody, RenewedSlots>,
    >,
>;

/// An in-flight limit over a handler that streams what the test sends, with its store.
fn streaming() -> (
    RenewedSlots,
    impl Service<Request<Body>, Response = StreamingResponse, Error = Infallible>,
    mpsc::Sender<Chunk>,
) {
    let store = RenewedSlots {
        clock: ManualClock::new(0),
        renewals: Arc::default(),
        released: Arc::default(),
    };
    let (sender, receiver) = mpsc::channel::<Chunk>(8);
    let receiver = Arc::new(Mutex::new(Some(receiver)));
    let handler = service_fn(move |_request: Request<Body>| {
        let receiver = receiver.lock().unwrap().take().unwrap();
        async move { Ok::<_, Infallible>(Response::new(ChannelBody(receiver))) }
    });
    let svc = InFlightLimitLayer::with_store(store.clone()).layer(handler);
    (store, svc, sender)
}

fn chunk() -> Chunk {
    Ok(Frame::data(Bytes::from_static(b"chunk")))
}

#[tokio::test]
async fn a_lease_is_renewed_while_a_long_body_streams_and_released_at_its_end() {
    let (store, svc, sender) = streaming();
    let mut body = pin!(svc.oneshot(request(SECRET)).await.unwrap().into_body());
    let mut next_frame = async |sender: &mpsc::Sender<Chunk>| {
        sender.send(chunk()).await.unwrap();
        body.frame().await.unwrap().unwrap()
    };
    // Half the lease has not passed yet: nothing to renew.
    store.clock.advance(15_000);
    next_frame(&sender).await;
    assert!(store.renewals.lock().unwrap().is_empty());
    // More than half: renewed on this poll.
    store.clock.advance(1);
    next_frame(&sender).await;
    assert_eq!(*store.renewals.lock().unwrap(), [15_001]);
    // Counted from the renewal, not from the start.
    store.clock.advance(15_000);
    next_frame(&sender).await;
    assert_eq!(*store.renewals.lock().unwrap(), [15_001]);
    store.clock.advance(1);
    next_frame(&sender).await;
    assert_eq!(*store.renewals.lock().unwrap(), [15_001, 30_002]);
    assert_eq!(store.released.load(Ordering::SeqCst), 0);
    drop(sender);
    assert!(body.frame().await.is_none());
    assert_eq!(store.released.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_renewed_lease_is_released_when_its_body_is_dropped() {
    let (store, svc, sender) = streaming();
    let mut body = Box::pin(svc.oneshot(request(SECRET)).await.unwrap().into_body());
    store.clock.advance(20_000);
    sender.send(chunk()).await.unwrap();
    body.frame().await.unwrap().unwrap();
    assert_eq!(*store.renewals.lock().unwrap(), [20_000]);
    assert_eq!(store.released.load(Ordering::SeqCst), 0);
    drop(body);
    assert_eq!(store.released.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_renewed_lease_is_released_when_its_body_fails() {
    let (store, svc, sender) = streaming();
    let mut body = pin!(svc.oneshot(request(SECRET)).await.unwrap().into_body());
    store.clock.advance(20_000);
    sender.send(chunk()).await.unwrap();
    body.frame().await.unwrap().unwrap();
    sender
        .send(Err(std::io::Error::other("the handler failed")))
        .await
        .unwrap();
    assert!(body.frame().await.unwrap().is_err());
    // Released on the error, while the body itself is still around.
    assert_eq!(store.released.load(Ordering::SeqCst), 1);
    assert_eq!(store.renewals.lock().unwrap().len(), 1);
}

// ---- the lockout: a store that answers later ---------------------------------------------------

/// A lockout store whose checks and records answer when the test says so, recording which
/// records were asked for.
#[derive(Clone)]
struct GatedLockout {
    checks: Arc<Gates<LockState>>,
    records: Arc<Gates<()>>,
    recorded: Arc<Mutex<Vec<&'static str>>>,
}

impl LockoutStore for GatedLockout {
    type CheckFuture = Gate<LockState>;
    type RecordFuture = Gate<()>;

    fn key_hasher(&self) -> KeyHasher {
        KeyHasher::default()
    }

    fn check(&self, _key: u64) -> Gate<LockState> {
        self.checks.next()
    }

    fn record_failure(&self, _key: u64) -> Gate<()> {
        self.recorded.lock().unwrap().push("failure");
        self.records.next()
    }

    fn record_success(&self, _key: u64) -> Gate<()> {
        self.recorded.lock().unwrap().push("success");
        self.records.next()
    }
}

#[tokio::test]
async fn a_lockout_check_that_answers_later_holds_the_request_until_it_does() {
    let (checks, check_senders) = Gates::new(4);
    let (records, _record_senders) = Gates::<()>::new(0);
    let store = GatedLockout {
        checks,
        records,
        recorded: Arc::default(),
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = SharedSecretAuthLayer::new(
        SharedSecretAuthConfig::new([Secret::new(SECRET).unwrap()]).lockout(store.clone()),
    )
    .layer(counted(Arc::clone(&calls)));
    let answers = [
        Ok(LockState::Clean),
        Ok(LockState::Locked {
            retry_after_secs: 42,
        }),
        Err(Unavailable::new()),
    ];
    let mut seen = Vec::new();
    for (sender, answer) in check_senders.into_iter().zip(answers) {
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let mut future = pin!(svc.call(request(SECRET)));
        assert!(futures_util::poll!(future.as_mut()).is_pending());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            seen.len().min(1),
            "the request went on before the lockout answered"
        );
        sender.send(answer).unwrap();
        let response = future.await.unwrap();
        let status = response.status();
        let retry_after = response.headers().get("retry-after").cloned();
        seen.push((status, retry_after, text(response).await));
    }
    assert_eq!(
        seen,
        [
            (StatusCode::OK, None, "passed".to_owned()),
            (
                StatusCode::TOO_MANY_REQUESTS,
                Some(http::HeaderValue::from_static("42")),
                "Too Many Requests".to_owned()
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Service Unavailable".to_owned()
            ),
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(store.recorded.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_lockout_failure_is_on_record_before_the_401_is_answered() {
    let (checks, check_senders) = Gates::new(3);
    let (records, record_senders) = Gates::new(3);
    let store = GatedLockout {
        checks,
        records,
        recorded: Arc::default(),
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = SharedSecretAuthLayer::new(
        SharedSecretAuthConfig::new([Secret::new(SECRET).unwrap()]).lockout(store.clone()),
    )
    .layer(counted(Arc::clone(&calls)));
    let cases = [
        // A wrong secret: the failure is recorded, then 401.
        ("wrong", LockState::Clean, Ok(()), StatusCode::UNAUTHORIZED),
        // The right secret with failures on record: the success is recorded, then the request
        // goes on.
        (SECRET, LockState::Tracked, Ok(()), StatusCode::OK),
        // A record the store cannot write is a 503, not a 401 that counted nothing.
        (
            "wrong",
            LockState::Clean,
            Err(Unavailable::new()),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ];
    let mut senders = check_senders.into_iter().zip(record_senders);
    for (i, (secret, lock_state, recorded, status)) in cases.into_iter().enumerate() {
        let (check, record) = senders.next().unwrap();
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let mut future = pin!(svc.call(request(secret)));
        assert!(futures_util::poll!(future.as_mut()).is_pending());
        check.send(Ok(lock_state)).unwrap();
        // Checked, and the record asked for, but not written: no answer yet.
        assert!(
            futures_util::poll!(future.as_mut()).is_pending(),
            "case {i}"
        );
        assert_eq!(store.recorded.lock().unwrap().len(), i + 1);
        record.send(recorded).unwrap();
        assert_eq!(future.await.unwrap().status(), status, "case {i}");
    }
    assert_eq!(
        *store.recorded.lock().unwrap(),
        ["failure", "success", "failure"]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// The in-memory lockout behind futures that are pending once: a shared store that answers on
/// its next turn, as Redis would.
#[derive(Clone)]
struct EventuallyShared(AuthLockout);

/// A ready answer delivered on the second poll.
struct Later<T>(Option<T>, bool);

impl<T: Unpin> Future for Later<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if !self.1 {
            self.1 = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.0.take().expect("polled after completion"))
    }
}

impl LockoutStore for EventuallyShared {
    type CheckFuture = Later<Result<LockState, Unavailable>>;
    type RecordFuture = Later<Result<(), Unavailable>>;

    fn key_hasher(&self) -> KeyHasher {
        self.0.key_hasher()
    }

    fn check(&self, key: u64) -> Self::CheckFuture {
        Later(
            Some(futures_util::FutureExt::now_or_never(self.0.check(key)).unwrap()),
            false,
        )
    }

    fn record_failure(&self, key: u64) -> Self::RecordFuture {
        Later(
            Some(futures_util::FutureExt::now_or_never(self.0.record_failure(key)).unwrap()),
            false,
        )
    }

    fn record_success(&self, key: u64) -> Self::RecordFuture {
        Later(
            Some(futures_util::FutureExt::now_or_never(self.0.record_success(key)).unwrap()),
            false,
        )
    }
}

#[tokio::test]
async fn twenty_failures_spread_over_replicas_lock_out_the_21st_on_all_of_them() {
    let shared = EventuallyShared(AuthLockout::new(LockoutConfig::new()));
    let replica = || {
        SharedSecretAuthLayer::new(
            SharedSecretAuthConfig::new([Secret::new(SECRET).unwrap()]).lockout(shared.clone()),
        )
        .layer(counted(Arc::default()))
    };
    let replicas = [replica(), replica()];
    for i in 0..20 {
        let response = replicas[i % 2]
            .clone()
            .oneshot(request("wrong"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    for replica in replicas {
        let response = replica.oneshot(request(SECRET)).await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}

// ---- one hasher for every limiter ---------------------------------------------------------------

#[test]
fn pipelines_built_with_one_hasher_derive_the_same_keys_in_every_limiter() {
    use tower_webhooks::keyed::GlobalKey;
    let clock: SharedClock = ManualClock::new(0);
    let shared = KeyHasher::with_secret(b"replicas share this");
    let pipeline = |hasher| {
        WebhookPipeline::with_hasher(
            tower_webhooks::taskflow::MemoryStore::default(),
            Limits::default(),
            Arc::clone(&clock),
            hasher,
        )
    };
    let keys = |pipeline: &WebhookPipeline<_>| {
        let request = request(SECRET);
        (
            pipeline
                .rate_limiter()
                .hash_request(&GlobalKey::default(), &request),
            pipeline
                .in_flight_limiter()
                .hash_request(&GlobalKey::default(), &request),
            pipeline.lockout().key_of("192.0.2.44".parse().unwrap()),
        )
    };
    let (one, other, unkeyed) = (
        pipeline(shared),
        pipeline(shared),
        pipeline(KeyHasher::default()),
    );
    assert_eq!(keys(&one), keys(&other));
    let (a, b, c) = keys(&one);
    let (x, y, z) = keys(&unkeyed);
    assert!(a != x && b != y && c != z, "the hasher was not used");
    // The layers' own constructors take it too.
    let layer = InFlightLimitLayer::with_hasher(InFlightConfig::new(), shared);
    assert_eq!(
        layer
            .limiter()
            .hash_request(&GlobalKey::default(), &request(SECRET)),
        b
    );
}
