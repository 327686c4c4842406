//! Serving a tower service over TCP with hyper 1: the accept loop behind the gateway.
//!
//! Every connection speaks HTTP/1.1 or HTTP/2 (detected from the preface), every request carries its
//! socket peer [`SocketAddr`] in its extensions (where the limiters look for it), a connection's first
//! bytes and every HTTP/1 request head must arrive within a timeout (a slowloris client cannot hold a
//! connection open for free), at most [`ServeOptions::max_connections`] are open at once, and
//! shutdown stops accepting at once, then gives in-flight requests a bounded time to finish and
//! closes whatever is still open when that time is up.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tower_service::Service;

/// Connection-level settings of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How long a client may take to send a complete HTTP/1 request head. Default 10 s.
    ///
    /// A new connection must also send its first bytes (enough to tell HTTP/1 from HTTP/2) within
    /// this time, or it is closed without an answer; the HTTP/1 head then gets the full timeout
    /// again, so a first head may take up to twice this in all.
    ///
    /// hyper starts this timeout as soon as it waits for a head, so it also bounds how long a
    /// kept-alive HTTP/1 connection may wait for its next request: an idle HTTP/1 connection is
    /// closed after this or [`idle_timeout`](Self::idle_timeout), whichever is shorter. With the
    /// defaults that is 10 s, above the 5 s that clients of a Node server (the original's) count
    /// on; a longer keep-alive would give a slowloris client as long for every head.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins. Default 15 s (the body deadline).
    /// A connection closed for idling gets the same time to finish what it has in flight.
    pub shutdown_grace: Duration,
    /// How long a connection may stay open with no bytes moving in either direction. Default 60 s.
    ///
    /// A client still reading a long response is not idle: every read and every write of a byte
    /// counts. The server sees a client's reads only when it can write again, so a client that
    /// takes longer than this to read what the kernel's socket buffers hold of a response (from
    /// kilobytes to a few megabytes) looks idle, as under nginx's `send_timeout`.
    ///
    /// HTTP/2 has no idle limit of its own: without this, a client that completes the handshake and
    /// then goes quiet holds a connection and a file descriptor forever. An HTTP/1 connection
    /// waiting for its next request is closed sooner if
    /// [`header_read_timeout`](Self::header_read_timeout) is shorter (see there).
    ///
    /// Checked once per period, so an idle connection is closed between one and two periods after
    /// its last byte, never sooner: gracefully (`GOAWAY`, or `connection: close` on an HTTP/1
    /// response in flight; requests in flight finish), then dropped if it is still open
    /// `shutdown_grace` later.
    pub idle_timeout: Duration,
    /// How many connections may be open at once. Default 10,000.
    ///
    /// With this many open, [`serve`] accepts no more until one closes: new clients wait in the
    /// kernel's listen backlog (and are refused or time out once it is full), so memory and file
    /// descriptors stay bounded whatever the number of clients. A connection holds its place from
    /// its accept until it is closed, whichever way it ends. Values above tokio's
    /// `Semaphore::MAX_PERMITS` (over 2^60 on 64-bit targets) count as that.
    pub max_connections: NonZeroUsize,
}

/// The default of [`ServeOptions::max_connections`].
const DEFAULT_MAX_CONNECTIONS: NonZeroUsize = NonZeroUsize::new(10_000).unwrap();

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// How a [`serve`] run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeOutcome {
    /// Every connection finished within the grace period.
    Drained,
    /// The grace period ran out with connections still open: they were closed before [`serve`]
    /// returned, and the request handlers still running on them dropped (an HTTP/1 handler before
    /// `serve` returns; an HTTP/2 one, which runs on a task of its own, as soon as that task sees
    /// its connection gone).
    GraceExpired,
}

/// Serves `service` on `listener` until `shutdown` completes, then drains.
///
/// Accepts a connection only when fewer than `options.max_connections` are open. Once `shutdown`
/// completes, the listener is closed, connections finish what they have in flight, and those still
/// open after `options.shutdown_grace` are closed ([`ServeOutcome::GraceExpired`]).
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
    // Dropped when shutdown begins: every connection task then closes its connection gracefully.
    let (stopping_tx, stopping) = watch::channel(());
    // Owns every connection task, so that those still open when the grace ends can be aborted.
    let mut connections = JoinSet::new();
    // One permit per open connection, held by its task until the connection is gone.
    let places = Arc::new(Semaphore::new(
        options.max_connections.get().min(Semaphore::MAX_PERMITS),
    ));
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let next_connection = async {
            // Taken before accepting: at the cap, new clients wait in the kernel's listen backlog
            // rather than in this process's memory.
            let place = Arc::clone(&places).acquire_owned().await;
            (place, listener.accept().await)
        };
        let (place, stream, peer) = tokio::select! {
            // Collects finished connections as they go, so a long-running server does not keep a
            // handle for every connection it ever served.
            Some(finished) = connections.join_next() => {
                report_panic(finished);
                continue;
            }
            // (The semaphore is never closed, so the permit is always there.)
            (Ok(place), accepted) = next_connection => match accepted {
                Ok((stream, peer)) => (place, stream, peer),
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
        connections.spawn(serve_connection(
            Arc::clone(&builder),
            stream,
            peer,
            service.clone(),
            stopping.clone(),
            options.clone(),
            place,
        ));
    }
    drop(listener);
    drop(stopping_tx);

    let drain = async {
        while let Some(finished) = connections.join_next().await {
            report_panic(finished);
        }
    };
    if tokio::time::timeout(options.shutdown_grace, drain)
        .await
        .is_ok()
    {
        return ServeOutcome::Drained;
    }
    // Aborting drops each connection, closing its socket and dropping the HTTP/1 request it
    // serves (HTTP/2 requests run on tasks of their own, which then see their connection gone);
    // the wait makes sure no connection task still runs when `serve` returns.
    connections.shutdown().await;
    ServeOutcome::GraceExpired
}

/// Serves one accepted connection until it ends, is closed for idling, or `serve` shuts down.
async fn serve_connection<S, B>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut stream: TcpStream,
    peer: SocketAddr,
    service: S,
    mut stopping: watch::Receiver<()>,
    options: ServeOptions,
    // Freed however the task ends: finished, failed, closed for idling, or aborted.
    _place: OwnedSemaphorePermit,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = TowerToHyperService::new(WithPeer {
        inner: service,
        peer,
    });
    // hyper-util's version detection waits for these bytes with no deadline: a client that
    // connects and sends nothing, or a few bytes of the HTTP/2 preface, would hold its
    // connection (and a file descriptor) forever.
    let first = tokio::select! {
        first = tokio::time::timeout(options.header_read_timeout, read_preface(&mut stream)) => first,
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
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Prefixed {
        prefix,
        stream,
        activity: Arc::clone(&activity),
    });
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let period = options.idle_timeout;
    let mut idle_check = tokio::time::interval_at(Instant::now() + period, period);
    // After a late tick (a busy runtime), the next one must still be a whole period later:
    // two ticks in a row would see no activity between them and close a busy connection.
    idle_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut activity_seen = 0;
    let mut closing = false;
    // Set when the connection is closed for idling: it then has this long to finish. (On
    // shutdown, `serve`'s own grace period decides.)
    let mut idle_deadline: Option<Instant> = None;
    let result = loop {
        let deadline = idle_deadline;
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = stopping.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = idle_check.tick(), if !closing => {
                let now = activity.load(Ordering::Relaxed);
                if now == activity_seen {
                    tracing::debug!(%peer, "closing a connection idle for the idle timeout");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    idle_deadline = Some(Instant::now() + options.shutdown_grace);
                }
                activity_seen = now;
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                // A client that never acknowledges the close (an HTTP/2 peer that ignores
                // GOAWAY's ping) does not get to keep the connection.
                tracing::debug!(%peer, "dropping a connection that did not close in time");
                return;
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, error = %error, "connection ended with an error");
    }
}

/// Logs a connection task that panicked. Not the panic's message: a handler's panic can carry
/// anything, a secret included.
fn report_panic(finished: Result<(), JoinError>) {
    if matches!(finished, Err(error) if error.is_panic()) {
        tracing::error!("a connection task panicked");
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
    /// Counts reads and writes that moved bytes, for the idle check: a client still downloading a
    /// long response sends nothing, yet is not idle.
    activity: Arc<AtomicU64>,
}

impl Prefixed {
    fn count_written(&self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(written)) if *written > 0) {
            self.activity.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            let filled = buf.filled().len();
            let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
            if buf.filled().len() > filled {
                self.activity.fetch_add(1, Ordering::Relaxed);
            }
            return polled;
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
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.count_written(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.count_written(&polled);
        polled
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
            ..ServeOptions::default()
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

    /// An HTTP/2 client preface and an empty SETTINGS frame: a handshake, then nothing.
    const H2_HANDSHAKE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

    #[tokio::test]
    async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
        let options = ServeOptions {
            idle_timeout: Duration::from_millis(100),
            shutdown_grace: Duration::from_millis(300),
            ..ServeOptions::default()
        };
        let (addr, _stop, _task) = hello(options).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(H2_HANDSHAKE).await.unwrap();
        // The server's SETTINGS, then its GOAWAY, then the end: it does not wait for our ack.
        let received = until_closed(&mut stream).await;
        assert!(received.len() >= 9 && received[3] == 0x04, "{received:?}");
        let goaway = received.windows(4).any(|w| w[3] == 0x07);
        assert!(goaway, "no GOAWAY frame in {received:?}");
    }

    #[tokio::test]
    async fn a_request_slower_than_the_idle_timeout_still_completes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let idle = Duration::from_millis(50);
        // The handler takes several idle periods: the client sends nothing meanwhile, yet the
        // connection is only asked to close, and the answer still arrives whole.
        let service = tower::service_fn(move |_request: Request<Incoming>| async move {
            tokio::time::sleep(idle * 6).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"slow"))))
        });
        let options = ServeOptions {
            idle_timeout: idle,
            ..ServeOptions::default()
        };
        let _server = tokio::spawn(serve(listener, service, options, std::future::pending()));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // Keep-alive was asked for; the idle close turns it into `connection: close` after this
        // answer.
        let response = String::from_utf8(until_closed(&mut stream).await).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nslow"), "{response}");
    }
}
