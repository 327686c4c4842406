//! Serving a tower service over TCP with hyper 1: the accept loop behind the gateway.
//!
//! Every connection speaks HTTP/1.1 or HTTP/2 (detected from the preface), every request carries its
//! socket peer [`SocketAddr`] in its extensions (where the limiters look for it), a connection's first
//! bytes and every HTTP/1 request head must arrive within a timeout (a slowloris client cannot hold a
//! connection open for free), and shutdown stops accepting at once, then gives in-flight requests a
//! bounded time to finish.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_service::Service;

/// Connection-level settings of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How long a client may take to send a complete HTTP/1 request head. Default 10 s.
    ///
    /// A new connection must also send its first bytes (enough to tell HTTP/1 from HTTP/2) within
    /// this time, or it is closed without an answer; the HTTP/1 head then gets the full timeout
    /// again, so a first head may take up to twice this in all.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins. Default 15 s (the body deadline).
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(15),
        }
    }
}

/// How a [`serve`] run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeOutcome {
    /// Every connection finished within the grace period.
    Drained,
    /// The grace period ran out with connections still open; they were dropped.
    GraceExpired,
}

/// Serves `service` on `listener` until `shutdown` completes, then drains.
///
/// The service is cloned per request (hyper-util's `TowerToHyperService` does clone-and-oneshot),
/// so its `poll_ready` is awaited per request, as tower services expect.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> ServeOutcome
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    // Dropped when shutdown begins: connections still waiting for their first bytes then close.
    let (stopping_tx, stopping) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Running out of file descriptors must not end the server: back off briefly
                    // so the failure cannot spin the accept loop.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(WithPeer {
            inner: service.clone(),
            peer,
        });
        // Taken here, before shutdown can begin, so the drain waits for this connection too.
        let watcher = graceful.watcher();
        let builder = Arc::clone(&builder);
        let mut stopping = stopping.clone();
        let first_bytes_timeout = options.header_read_timeout;
        tokio::spawn(async move {
            let mut stream = stream;
            // hyper-util's version detection waits for these bytes with no deadline: a client that
            // connects and sends nothing, or a few bytes of the HTTP/2 preface, would hold its
            // connection (and a file descriptor) forever.
            let first = tokio::select! {
                first = tokio::time::timeout(first_bytes_timeout, read_preface(&mut stream)) => first,
                _ = stopping.changed() => return,
            };
            let prefix = match first {
                Ok(Ok(prefix)) => prefix,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "connection failed before its first request");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "no request within the header-read timeout");
                    return;
                }
            };
            let io = TokioIo::new(Prefixed { prefix, stream });
            let connection = builder.serve_connection(io, service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(stopping_tx);

    tokio::select! {
        () = graceful.shutdown() => ServeOutcome::Drained,
        () = tokio::time::sleep(options.shutdown_grace) => ServeOutcome::GraceExpired,
    }
}

/// The HTTP/2 connection preface: what sets an HTTP/2 client apart from an HTTP/1 one.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads a connection's first bytes: until they are the whole HTTP/2 preface, or cannot be its
/// start (any HTTP/1 request line), or the client stops sending. What was read is replayed to hyper
/// by [`Prefixed`]; a small request usually arrives whole in this first read, which then stands in
/// for hyper's own.
async fn read_preface(stream: &mut TcpStream) -> io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(4_096);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            break;
        }
        let n = buf.len().min(H2_PREFACE.len());
        if n == H2_PREFACE.len() || buf[..n] != H2_PREFACE[..n] {
            break;
        }
    }
    Ok(buf.freeze())
}

/// A stream whose first bytes were already read: they are read again before the rest.
struct Prefixed {
    prefix: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        if self.prefix.is_empty() {
            // Free the buffer now rather than with the connection.
            self.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Inserts the connection's peer address into every request: the key the limiters need.
#[derive(Clone, Debug)]
struct WithPeer<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S, B> Service<Request<B>> for WithPeer<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.peer);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use tokio::io::AsyncWriteExt;
    use tokio::sync::oneshot;

    /// Serves "hello" on a random loopback port; dropping or sending on the sender shuts it down.
    async fn hello(
        options: ServeOptions,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<ServeOutcome>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = tower::service_fn(|_request: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, service, options, async {
            let _ = stopped.await;
        }));
        (addr, stop, task)
    }

    /// Everything the server sends until it closes; panics if it is still open after 5 s.
    async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received))
            .await
            .expect("connection still open after 5 s")
            .unwrap();
        received
    }

    #[tokio::test]
    async fn connections_that_send_nothing_or_part_of_the_preface_are_closed() {
        let options = ServeOptions {
            header_read_timeout: Duration::from_millis(200),
            ..ServeOptions::default()
        };
        let (addr, _stop, _task) = hello(options).await;
        for first in [&b""[..], b"P", b"PRI * HTTP/2.0\r\n", &H2_PREFACE[..23]] {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(first).await.unwrap();
            assert_eq!(until_closed(&mut stream).await, b"", "after {first:?}");
        }
    }

    #[tokio::test]
    async fn a_request_that_starts_like_the_preface_is_still_http1() {
        let (addr, _stop, _task) = hello(ServeOptions::default()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        // "P" could open the HTTP/2 preface; "O" cannot.
        stream.write_all(b"P").await.unwrap();
        stream
            .write_all(
                b"OST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        let response = String::from_utf8(until_closed(&mut stream).await).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nhello"), "{response}");
    }

    #[tokio::test]
    async fn shutdown_closes_connections_still_waiting_for_their_first_bytes() {
        let options = ServeOptions {
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        };
        let (addr, stop, task) = hello(options).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        // The connection is accepted (a request on another one is answered after it) before the
        // shutdown begins.
        let mut other = TcpStream::connect(addr).await.unwrap();
        other
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(!until_closed(&mut other).await.is_empty());
        stop.send(()).unwrap();
        // Within the grace, well before the 30 s timeout: the drain does not wait for it.
        assert_eq!(task.await.unwrap(), ServeOutcome::Drained);
        assert_eq!(until_closed(&mut silent).await, b"");
    }
}
