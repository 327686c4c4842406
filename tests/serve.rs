//! The accept loop behind the gateway, over real sockets: peer addresses, HTTP/2, the header-read
//! timeout, and graceful shutdown.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{connect, is_closed, raw, read_response, serve, serve_with};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, oneshot};
use tower::service_fn;
use tower_webhooks::serve::{ServeOptions, ServeOutcome};

fn echo_peer() -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(|request: Request<Incoming>| async move {
        let peer = request.extensions().get::<SocketAddr>().copied();
        let text = format!("{:?} {:?}", peer.map(|p| p.ip()), request.version());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
    })
}

#[tokio::test]
async fn every_request_carries_the_peer_address() {
    let server = serve(echo_peer()).await;
    let response = raw(server.addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Some(127.0.0.1) HTTP/1.1");
}

#[tokio::test]
async fn speaks_http2_with_prior_knowledge() {
    let server = serve(echo_peer()).await;
    let stream = connect(server.addr).await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("http://{}/", server.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"Some(127.0.0.1) HTTP/2.0");
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off_while_others_are_served() {
    let options = ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let server = serve_with(echo_peer(), options).await;
    let mut slow = connect(server.addr).await;
    slow.write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // A well-behaved client is served while the slow head is pending.
    assert_eq!(
        raw(server.addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .status,
        200
    );
    // The head never completes; the server answers 408 or just closes, and closes either way.
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut buf),
    )
    .await
    .expect("slow connection was not closed");
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

/// A service whose handler waits for a signal, reporting when it has started.
fn held(
    started: Arc<Notify>,
    release: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(move |_request: Request<Incoming>| {
        let started = Arc::clone(&started);
        let release = release.lock().unwrap().take();
        async move {
            started.notify_one();
            if let Some(release) = release {
                let _ = release.await;
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"finished"))))
        }
    })
}

#[tokio::test]
async fn shutdown_stops_accepting_and_finishes_in_flight_requests() {
    let started = Arc::new(Notify::new());
    let (release_tx, release_rx) = oneshot::channel();
    let server = serve(held(
        Arc::clone(&started),
        Arc::new(Mutex::new(Some(release_rx))),
    ))
    .await;
    let addr = server.addr;

    let mut in_flight = connect(addr).await;
    in_flight
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    started.notified().await;

    let drained = tokio::spawn(server.shutdown());
    // New connections are refused once the listener is gone; poll until it is.
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "listener still accepting after shutdown began");

    release_tx.send(()).unwrap();
    let response = read_response(&mut in_flight).await;
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "finished")
    );
    assert!(
        is_closed(&mut in_flight).await,
        "connection kept open after shutdown"
    );
    assert_eq!(drained.await.unwrap(), ServeOutcome::Drained);
}

#[tokio::test]
async fn shutdown_gives_up_after_the_grace_period() {
    let started = Arc::new(Notify::new());
    let (_never_released, release_rx) = oneshot::channel::<()>();
    let options = ServeOptions {
        shutdown_grace: Duration::from_millis(100),
        ..Default::default()
    };
    let server = serve_with(
        held(Arc::clone(&started), Arc::new(Mutex::new(Some(release_rx)))),
        options,
    )
    .await;
    let mut stuck = connect(server.addr).await;
    stuck
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    started.notified().await;
    assert_eq!(server.shutdown().await, ServeOutcome::GraceExpired);
}
