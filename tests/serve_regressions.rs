//! Connection-level defects of `serve`, each over real sockets.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use support::{connect, read_response, serve_with};
use tokio::io::AsyncWriteExt;
use tower::service_fn;
use tower_webhooks::serve::ServeOptions;

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
