//! Serving a tower service over TCP with hyper 1: the accept loop behind the gateway.
//!
//! Every connection speaks HTTP/1.1 or HTTP/2 (detected from the preface), every request carries its
//! socket peer [`SocketAddr`] in its extensions (where the limiters look for it), HTTP/1 request heads
//! must arrive within a timeout (a slowloris client cannot hold a connection open for free), and
//! shutdown stops accepting at once, then gives in-flight requests a bounded time to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_service::Service;

/// Connection-level settings of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How long a client may take to send a complete HTTP/1 request head. Default 10 s.
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
    let graceful = GracefulShutdown::new();
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
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);

    tokio::select! {
        () = graceful.shutdown() => ServeOutcome::Drained,
        () = tokio::time::sleep(options.shutdown_grace) => ServeOutcome::GraceExpired,
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
