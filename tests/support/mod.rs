//! Real-socket helpers shared by the integration tests: a hyper 1 server over hyper-util that records
//! the peer address the way the gateway does, and a raw HTTP/1.1 client for requests a well-behaved
//! client library refuses to send (lying or malformed lengths, stalled bodies).
#![allow(dead_code, unreachable_pub)]

pub mod gateway_process;
pub mod temp;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::Service;
use tower_webhooks::serve::{ServeOptions, ServeOutcome};

/// A server on 127.0.0.1 with a random port, stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<ServeOutcome>>,
}

impl TestServer {
    /// Stops accepting and waits for the drain to finish.
    pub async fn shutdown(mut self) -> ServeOutcome {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Serves `service` through the crate's own accept loop (HTTP/1.1 and HTTP/2, peer address in the
/// request extensions), as the gateway does.
pub async fn serve<S, B>(service: S) -> TestServer
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with(service, ServeOptions::default()).await
}

/// [`serve`] with explicit connection options.
pub async fn serve_with<S, B>(service: S, options: ServeOptions) -> TestServer
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(tower_webhooks::serve::serve(
        listener,
        service,
        options,
        async {
            let _ = stopped.await;
        },
    ));
    TestServer {
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// Connects to `addr`.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Writes `request` as is and reads one response.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = connect(addr).await;
    stream.write_all(request).await.unwrap();
    read_response(&mut stream).await
}

/// Posts the TaskFlow action `body` to `path` with `secret` as a bearer token, on a connection of
/// its own; the status and the answer (one that is not JSON as a JSON string).
pub async fn act(
    addr: SocketAddr,
    path: &str,
    secret: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let bearer = format!("Bearer {secret}");
    let headers = [
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
        ("connection", "close"),
    ];
    let response = raw(
        addr,
        &post_bytes(path, &headers, body.to_string().as_bytes()),
    )
    .await;
    let text = response.text();
    let answer = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (response.status, answer)
}

/// A POST with the given headers and body, `Content-Length` set from the body unless given.
pub fn post_bytes(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("POST {path} HTTP/1.1\r\nhost: test\r\n").into_bytes();
    let mut has_length = false;
    for (name, value) in headers {
        has_length |= name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding");
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !has_length {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Reads one HTTP/1.1 response (Content-Length, chunked, or until close). Gives up after 10 s so a
/// server bug fails the test instead of hanging it.
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    tokio::time::timeout(Duration::from_secs(10), read_response_inner(stream))
        .await
        .expect("no response within 10 s")
}

async fn read_response_inner(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut rest = buf[head_end + 4..].to_vec();
    let (status, headers) = parse_head(&head);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(length) = get("content-length") {
        let length: usize = length.parse().unwrap();
        while rest.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed inside the body");
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(length);
        rest
    } else if get("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        read_chunked(stream, rest).await
    } else {
        let _ = stream.read_to_end(&mut rest).await;
        rest
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

async fn read_chunked(stream: &mut TcpStream, mut buf: Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(end) = find(&buf, b"\r\n") {
                break end;
            }
            fill(stream, &mut buf).await;
        };
        let size_text = String::from_utf8(buf[..line_end].to_vec()).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        buf.drain(..line_end + 2);
        if size == 0 {
            return body;
        }
        while buf.len() < size + 2 {
            fill(stream, &mut buf).await;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.unwrap();
    assert!(n > 0, "connection closed inside a chunked body");
    buf.extend_from_slice(&chunk[..n]);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether the server closed the connection: a read returns EOF (or a reset) within 10 s.
pub async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Connects to `addr` from the local address `source` (port chosen by the kernel). On Linux every
/// 127.0.0.0/8 address is a loopback source, so one machine can stand in for many clients.
pub async fn connect_from(addr: SocketAddr, source: IpAddr) -> TcpStream {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .unwrap();
    socket
        .bind(SocketAddr::new(source, 0))
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    let stream = socket
        .connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads until the server closes the connection (EOF or a reset) and returns what it sent first.
/// Panics if the connection is still open after 10 s, so a server that never closes fails the test
/// instead of hanging it.
pub async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server kept the connection open for 10 s");
    received
}

/// Polls `condition` until it holds, for at most 10 s, and panics naming `what` if it never does.
///
/// For state the server updates on its own schedule with nothing to wait on, such as a limiter's
/// counters after the server noticed that a client went away.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(condition(), "{what}: still false after 10 s");
}

/// Splits everything a server sent on one connection into its HTTP/1.1 responses (each framed by
/// `Content-Length` or chunked encoding; a response with neither runs to the end). For pipelined
/// requests, whose answers [`read_response`] would read past.
pub fn parse_responses(mut bytes: &[u8]) -> Vec<RawResponse> {
    let mut responses = Vec::new();
    while !bytes.is_empty() {
        let head_end = find(bytes, b"\r\n\r\n").unwrap_or_else(|| {
            panic!(
                "incomplete response head: {:?}",
                String::from_utf8_lossy(bytes)
            )
        });
        let head = std::str::from_utf8(&bytes[..head_end]).unwrap();
        let (status, headers) = parse_head(head);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let rest = &bytes[head_end + 4..];
        let (body, used) = if let Some(length) = get("content-length") {
            let length: usize = length.parse().unwrap();
            assert!(rest.len() >= length, "truncated body");
            (rest[..length].to_vec(), length)
        } else if get("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            let mut at = 0;
            loop {
                let line_end = at + find(&rest[at..], b"\r\n").expect("truncated chunk size");
                let size_text = std::str::from_utf8(&rest[at..line_end]).unwrap();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
                at = line_end + 2;
                if size == 0 {
                    assert_eq!(&rest[at..at + 2], b"\r\n", "trailers are not expected");
                    break (body, at + 2);
                }
                body.extend_from_slice(&rest[at..at + size]);
                at += size + 2;
            }
        } else {
            (rest.to_vec(), rest.len())
        };
        responses.push(RawResponse {
            status,
            headers,
            body,
        });
        bytes = &rest[used..];
    }
    responses
}

/// The status and the headers (names lower-cased, values trimmed) of a response head.
fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a status line in {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}
