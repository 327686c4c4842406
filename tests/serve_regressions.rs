//! Connection-level defects of `serve`, each over real sockets: keep-alive connections reset after a
//! moment of idling, long downloads cut as "idle", connections still served after the grace period;
//! and the connection cap.

mod support;

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{Empty, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{connect, is_closed, read_response, serve_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{Notify, oneshot};
use tower::service_fn;
use tower_webhooks::serve::{ServeOptions, ServeOutcome};

const KEEP_ALIVE_GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

fn hello() -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(|_request: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    })
}

#[test]
fn serve_options_defaults_are_the_documented_ones() {
    let defaults = ServeOptions::default();
    assert_eq!(defaults.header_read_timeout, Duration::from_secs(10));
    assert_eq!(defaults.shutdown_grace, Duration::from_secs(15));
    assert_eq!(defaults.idle_timeout, Duration::from_secs(60));
    assert_eq!(defaults.max_connections.get(), 10_000);
}

#[tokio::test]
async fn a_kept_alive_connection_idle_for_five_seconds_is_still_usable() {
    let server = serve_with(hello(), ServeOptions::default()).await;
    let mut stream = connect(server.addr).await;
    stream.write_all(KEEP_ALIVE_GET).await.unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
    // The pause is the behaviour under test: SPEC §6 promises at least 5 s to a pooled connection.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    stream
        .write_all(KEEP_ALIVE_GET)
        .await
        .expect("the server closed the kept-alive connection");
    let second = read_response(&mut stream).await;
    assert_eq!((second.status, second.text().as_str()), (200, "hello"));
}

const DOWNLOAD_LEN: usize = 32 << 20;
const DOWNLOAD_FRAME: usize = 64 << 10;

/// The byte at `offset` of the download: each frame is filled with its own index (mod 251), so a
/// missing or repeated frame shows.
fn download_byte(offset: usize) -> u8 {
    ((offset / DOWNLOAD_FRAME) % 251) as u8
}

#[tokio::test]
async fn a_slow_steady_download_is_not_idle_and_arrives_whole() {
    let service = service_fn(|_request: Request<Incoming>| async {
        let frames = (0..DOWNLOAD_LEN / DOWNLOAD_FRAME).map(|index| {
            let data = Bytes::from(vec![download_byte(index * DOWNLOAD_FRAME); DOWNLOAD_FRAME]);
            Ok::<_, Infallible>(Frame::data(data))
        });
        let body = StreamBody::new(futures_util::stream::iter(frames));
        Ok::<_, Infallible>(
            Response::builder()
                .header(CONTENT_LENGTH, DOWNLOAD_LEN)
                .body(body)
                .unwrap(),
        )
    });
    // The client sends nothing after its request, and the download lasts many idle periods.
    let options = ServeOptions {
        idle_timeout: Duration::from_millis(500),
        shutdown_grace: Duration::from_millis(100),
        ..ServeOptions::default()
    };
    let server = serve_with(service, options).await;
    // A small receive window, so the kernel holds little of the body on the client's side and the
    // server keeps writing as the client reads (as over a real network) rather than filling
    // megabytes of loopback buffers at once and then waiting longer than an idle period.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(128 << 10).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::with_capacity(DOWNLOAD_LEN + 1_024);
    let slow_reader = async {
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
            // The pacing is the behaviour under test: a reader slower than the server.
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), slow_reader)
        .await
        .expect("the download did not end within 120 s");
    let head_end = received
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("no response head")
        + 4;
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let body = &received[head_end..];
    assert_eq!(body.len(), DOWNLOAD_LEN, "the download was cut");
    let first_wrong = body
        .iter()
        .enumerate()
        .position(|(offset, &byte)| byte != download_byte(offset));
    assert_eq!(first_wrong, None, "the download arrived garbled");
}

#[tokio::test]
async fn a_connection_in_use_when_the_runtime_stalls_is_not_closed_as_idle() {
    let options = ServeOptions {
        idle_timeout: Duration::from_millis(100),
        header_read_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    };
    let server = serve_with(hello(), options).await;
    let mut stream = connect(server.addr).await;
    stream.write_all(KEEP_ALIVE_GET).await.unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
    // A runtime too busy to poll the connection for ten idle periods (this test runs on one
    // thread, which the blocking sleep holds): the idle checks missed meanwhile must not all fire
    // at once when it resumes, each seeing "nothing since the last one".
    std::thread::sleep(Duration::from_secs(1));
    for request in ["second", "third"] {
        stream
            .write_all(KEEP_ALIVE_GET)
            .await
            .unwrap_or_else(|error| panic!("{request} request: {error}"));
        let response = read_response(&mut stream).await;
        assert_eq!(response.status, 200, "{request} request");
        assert_eq!(response.header("connection"), None, "{request} request");
    }
}

/// Sends on its channel when dropped: tells the test that a handler's future is gone.
struct SignalOnDrop(Option<oneshot::Sender<()>>);

impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        if let Some(signal) = self.0.take() {
            let _ = signal.send(());
        }
    }
}

/// A server whose handler never finishes: it notifies `started` when it runs, and its future, once
/// dropped, sends on the returned receiver. The grace period is short.
async fn server_with_a_never_ending_handler(
    started: Arc<Notify>,
) -> (support::TestServer, oneshot::Receiver<()>) {
    let (dropped_tx, dropped) = oneshot::channel();
    let guard = Arc::new(Mutex::new(Some(SignalOnDrop(Some(dropped_tx)))));
    let service = service_fn(move |_request: Request<Incoming>| {
        let guard = guard.lock().unwrap().take();
        let started = Arc::clone(&started);
        async move {
            let _guard = guard;
            started.notify_one();
            std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>().await
        }
    });
    let options = ServeOptions {
        shutdown_grace: Duration::from_millis(200),
        ..ServeOptions::default()
    };
    (serve_with(service, options).await, dropped)
}

#[tokio::test]
async fn when_the_grace_expires_http1_connections_are_closed_and_their_handlers_dropped() {
    let started = Arc::new(Notify::new());
    let (server, mut dropped) = server_with_a_never_ending_handler(Arc::clone(&started)).await;
    let mut stuck = connect(server.addr).await;
    stuck.write_all(KEEP_ALIVE_GET).await.unwrap();
    started.notified().await;

    assert_eq!(server.shutdown().await, ServeOutcome::GraceExpired);
    assert_eq!(
        dropped.try_recv(),
        Ok(()),
        "the handler was still running after serve returned"
    );
    assert!(
        is_closed(&mut stuck).await,
        "the connection was still open after serve returned"
    );
}

#[tokio::test]
async fn when_the_grace_expires_http2_connections_are_closed_and_their_handlers_dropped() {
    let started = Arc::new(Notify::new());
    let (server, dropped) = server_with_a_never_ending_handler(Arc::clone(&started)).await;
    let stream = connect(server.addr).await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let (closed_tx, closed) = oneshot::channel();
    tokio::spawn(async move {
        let _ = connection.await;
        let _ = closed_tx.send(());
    });
    let request = Request::get(format!("http://{}/", server.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = tokio::spawn(sender.send_request(request));
    started.notified().await;

    assert_eq!(server.shutdown().await, ServeOutcome::GraceExpired);
    // An HTTP/2 handler runs on a task of its own, which notices the closed connection right after.
    tokio::time::timeout(Duration::from_secs(10), dropped)
        .await
        .expect("the handler was still running 10 s after serve returned")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the connection was still open 10 s after serve returned")
        .unwrap();
    assert!(response.await.unwrap().is_err(), "the request was answered");
}

/// Options with a cap of `max_connections`, and timeouts far beyond a test's length, so that no
/// connection is closed for idling while a test holds it open.
fn capped(max_connections: usize) -> ServeOptions {
    ServeOptions {
        max_connections: NonZeroUsize::new(max_connections).unwrap(),
        header_read_timeout: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(120),
        ..ServeOptions::default()
    }
}

/// A connection on which the server has answered one keep-alive request: proof it was accepted.
async fn served_connection(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut stream = connect(addr).await;
    stream.write_all(KEEP_ALIVE_GET).await.unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
    stream
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_waits_until_one_closes() {
    let server = serve_with(hello(), capped(4)).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(served_connection(server.addr).await);
    }
    // The kernel completes the handshake (the listen backlog), but the server does not accept.
    let mut fifth = connect(server.addr).await;
    fifth.write_all(KEEP_ALIVE_GET).await.unwrap();
    let mut byte = [0u8; 1];
    // A negative observation: nothing to wait on but a window, which a server that ignored the
    // cap would answer well within.
    let early = tokio::time::timeout(Duration::from_millis(500), fifth.read(&mut byte)).await;
    assert!(early.is_err(), "answered beyond the cap: {early:?}");

    drop(open.pop());
    let response = read_response(&mut fifth).await;
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));
}

/// An HTTP/2 client preface and an empty SETTINGS frame: a handshake, then nothing.
const H2_HANDSHAKE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

#[tokio::test]
async fn every_way_a_connection_ends_frees_its_place_under_the_cap() {
    let options = ServeOptions {
        max_connections: NonZeroUsize::MIN,
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        shutdown_grace: Duration::from_millis(300),
    };
    let server = serve_with(hello(), options).await;
    // Each connection below takes the only place: the next one is served only once it is gone.
    let mut silent = connect(server.addr).await;
    let mut idle_http1 = served_connection(server.addr).await;
    assert!(is_closed(&mut silent).await, "the silent connection");

    let mut garbage = connect(server.addr).await;
    garbage.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    // Closed by hyper's header-read timeout while it waits for a next request.
    assert!(
        is_closed(&mut idle_http1).await,
        "the idle HTTP/1 connection"
    );
    assert_eq!(read_response(&mut garbage).await.status, 400);
    assert!(is_closed(&mut garbage).await, "the garbage connection");

    // Closed by the idle check: HTTP/2 has no header-read timeout.
    let mut idle_http2 = connect(server.addr).await;
    idle_http2.write_all(H2_HANDSHAKE).await.unwrap();
    let _ = support::read_until_closed(&mut idle_http2).await;

    drop(served_connection(server.addr).await);
    let _last = served_connection(server.addr).await;
}

#[tokio::test]
async fn shutdown_drains_while_the_cap_is_reached() {
    let server = serve_with(hello(), capped(1)).await;
    let mut open = served_connection(server.addr).await;
    let mut waiting = connect(server.addr).await;
    waiting.write_all(KEEP_ALIVE_GET).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("serve did not return within 10 s of the shutdown");
    assert_eq!(outcome, ServeOutcome::Drained);
    assert!(is_closed(&mut open).await, "the open connection");
    assert!(
        is_closed(&mut waiting).await,
        "the connection left in the backlog"
    );
}
