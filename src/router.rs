//! [`WebhookRouter`]: normalised request path → that route's service.
//!
//! Each configured route owns one path, normalised as configured paths are (SPEC §1). A request
//! reaches the route whose path is the request path with one trailing `/` removed, and no other:
//! nothing is trimmed or decoded, so `/x` and `/x/` are the only two spellings of a route. The router
//! finds the route and drives a clone of its service. A path no route owns answers `404` `Not Found`, or goes
//! to a fallback service when the router is hosted inside another application.
//!
//! Hosting: inside axum, let the host router fall through to this one
//! (`Router::new().route("/health", get(health)).fallback_service(webhook_router)`, as
//! `examples/axum.rs` does). Elsewhere, [`fallback`](WebhookRouter::fallback) takes any service with
//! the routes' response type; a host handler answers in that type with [`ResponseBody::full`], which
//! fits every body type.
//!
//! The route table can be replaced at any time through a [`RouteTableHandle`]: a request that has
//! already been routed finishes on the service it was routed to, and every later request sees the
//! new table. That is how a configuration reload rotates secrets without a restart.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use http_body_util::Empty;
//! use bytes::Bytes;
//! use tower::{ServiceExt, service_fn};
//! use tower_webhooks::{ResponseBody, WebhookRouter};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let hook = service_fn(|_req: Request<Empty<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::new(ResponseBody::new(Empty::<Bytes>::new())))
//! });
//! let router = WebhookRouter::new([("/plugins/webhooks/zap", hook)]);
//!
//! let hit = Request::post("/plugins/webhooks/zap/").body(Empty::new()).unwrap();
//! assert_eq!(router.clone().oneshot(hit).await.unwrap().status(), 200);
//! let miss = Request::post("/elsewhere").body(Empty::new()).unwrap();
//! assert_eq!(router.oneshot(miss).await.unwrap().status(), 404);
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use parking_lot::RwLock;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::config::{normalize_webhook_path, request_route_path};
use crate::rejection::Rejection;

/// The routes of a [`WebhookRouter`]: normalised path → service. Built once, then swapped whole.
pub struct RouteTable<S> {
    routes: HashMap<Box<str>, S>,
}

impl<S> RouteTable<S> {
    /// A table of `(path, service)` pairs. Paths are normalised; when two normalise to the same path
    /// the later pair wins (the config loader refuses such duplicates before they get here).
    pub fn new<P: AsRef<str>>(routes: impl IntoIterator<Item = (P, S)>) -> Self {
        let routes = routes
            .into_iter()
            .map(|(path, service)| (normalize_webhook_path(path.as_ref()).into(), service))
            .collect();
        Self { routes }
    }

    /// The service for a request path: the route whose path is the request path with one trailing
    /// `/` removed ([`request_route_path`]). Nothing else is normalised, so no other spelling of a
    /// route's path (surrounding whitespace of any kind, say) reaches it.
    pub fn get(&self, path: &str) -> Option<&S> {
        self.routes.get(request_route_path(path))
    }

    /// The normalised paths in the table, in no particular order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(AsRef::as_ref)
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl<S> fmt::Debug for RouteTable<S> {
    // Only paths: a route's service may hold configuration that is nobody's business in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut paths: Vec<&str> = self.paths().collect();
        paths.sort_unstable();
        f.debug_struct("RouteTable").field("paths", &paths).finish()
    }
}

/// Replaces the route table of every clone of a [`WebhookRouter`] at once.
pub struct RouteTableHandle<S> {
    table: Arc<RwLock<Arc<RouteTable<S>>>>,
}

impl<S> Clone for RouteTableHandle<S> {
    fn clone(&self) -> Self {
        Self {
            table: Arc::clone(&self.table),
        }
    }
}

impl<S> RouteTableHandle<S> {
    /// Swaps in `table`. Requests already routed finish on the old services.
    pub fn replace(&self, table: RouteTable<S>) {
        *self.table.write() = Arc::new(table);
    }

    /// The current table.
    pub fn current(&self) -> Arc<RouteTable<S>> {
        Arc::clone(&self.table.read())
    }
}

impl<S> fmt::Debug for RouteTableHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RouteTableHandle")
            .field(&*self.current())
            .finish()
    }
}

/// Routes requests by normalised path to the route's service. See the [module docs](self).
///
/// `S` is the service of one route (every route has the same stack type, built from its own
/// configuration). Paths no route owns answer `404` `Not Found`, or, once
/// [`fallback`](WebhookRouter::fallback) is set, go to a service `F` with the same response type
/// (the host application's router, say).
pub struct WebhookRouter<S, F = S> {
    table: Arc<RwLock<Arc<RouteTable<S>>>>,
    fallback: Option<F>,
}

impl<S, F: Clone> Clone for WebhookRouter<S, F> {
    fn clone(&self) -> Self {
        Self {
            table: Arc::clone(&self.table),
            fallback: self.fallback.clone(),
        }
    }
}

impl<S, F> fmt::Debug for WebhookRouter<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRouter")
            .field("table", &*self.table.read())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl<S> WebhookRouter<S> {
    /// A standalone router over `(path, service)` pairs; unknown paths answer `404`.
    pub fn new<P: AsRef<str>>(routes: impl IntoIterator<Item = (P, S)>) -> Self {
        Self::from_table(RouteTable::new(routes))
    }

    /// A standalone router over a prepared table.
    pub fn from_table(table: RouteTable<S>) -> Self {
        Self {
            table: Arc::new(RwLock::new(Arc::new(table))),
            fallback: None,
        }
    }
}

impl<S, F> WebhookRouter<S, F> {
    /// Sends paths no route owns to `fallback` instead of answering `404`.
    pub fn fallback<G>(self, fallback: G) -> WebhookRouter<S, G> {
        WebhookRouter {
            table: self.table,
            fallback: Some(fallback),
        }
    }

    /// A handle that replaces the route table of this router and all its clones.
    pub fn table_handle(&self) -> RouteTableHandle<S> {
        RouteTableHandle {
            table: Arc::clone(&self.table),
        }
    }
}

impl<S, F, ReqBody, B> Service<Request<ReqBody>> for WebhookRouter<S, F>
where
    S: Service<Request<ReqBody>, Response = Response<ResponseBody<B>>> + Clone,
    F: Service<Request<ReqBody>, Response = Response<ResponseBody<B>>, Error = S::Error> + Clone,
{
    type Response = Response<ResponseBody<B>>;
    type Error = S::Error;
    type Future = RouterFuture<S, F, Request<ReqBody>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Which service a request needs is known only in `call`; readiness is awaited there, on
        // the clone that will serve it (what axum and hyper-util's clone-and-oneshot expect).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let route = self.table.read().get(request.uri().path()).cloned();
        let state = match (route, &self.fallback) {
            (Some(service), _) => State::Route {
                service,
                request: Some(request),
            },
            (None, Some(fallback)) => State::Fallback {
                service: fallback.clone(),
                request: Some(request),
            },
            (None, None) => State::NotFound,
        };
        RouterFuture { state }
    }
}

pin_project! {
    /// Response future of [`WebhookRouter`]: waits for the chosen service to be ready, then for its
    /// response.
    pub struct RouterFuture<S, F, R>
    where
        S: Service<R>,
        F: Service<R>,
    {
        #[pin]
        state: State<S, F, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, R>
    where
        S: Service<R>,
        F: Service<R>,
    {
        Route { service: S, request: Option<R> },
        RouteCalled { #[pin] future: S::Future },
        Fallback { service: F, request: Option<R> },
        FallbackCalled { #[pin] future: F::Future },
        NotFound,
        Done,
    }
}

impl<S, F, R> fmt::Debug for RouterFuture<S, F, R>
where
    S: Service<R>,
    F: Service<R>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RouterFuture")
    }
}

impl<S, F, R, B> Future for RouterFuture<S, F, R>
where
    S: Service<R, Response = Response<ResponseBody<B>>>,
    F: Service<R, Response = Response<ResponseBody<B>>, Error = S::Error>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let response = match this.state.as_mut().project() {
                StateProj::Route { service, request } => {
                    ready!(service.poll_ready(cx))?;
                    let Some(request) = request.take() else {
                        // The state moves on in the same poll that takes the request, so this is
                        // unreachable; answer rather than panic, as every future of the crate does.
                        this.state.set(State::Done);
                        continue;
                    };
                    let future = service.call(request);
                    this.state.set(State::RouteCalled { future });
                    continue;
                }
                StateProj::RouteCalled { future } => ready!(future.poll(cx)),
                StateProj::Fallback { service, request } => {
                    ready!(service.poll_ready(cx))?;
                    let Some(request) = request.take() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let future = service.call(request);
                    this.state.set(State::FallbackCalled { future });
                    continue;
                }
                StateProj::FallbackCalled { future } => ready!(future.poll(cx)),
                StateProj::NotFound => Ok(Rejection::NotFound.into_response()),
                // Polling again after completion is a caller bug: answer 500 rather than panic
                // (or poll the finished inner future again, which may panic).
                StateProj::Done => {
                    return Poll::Ready(Ok(Rejection::InternalServerError.into_response()));
                }
            };
            this.state.set(State::Done);
            return Poll::Ready(response);
        }
    }
}
