//! [`Health`]: `GET /healthz` and `GET /readyz` answered before route lookup (SPEC §6).
//!
//! - `/healthz` ⇒ `200` `ok` while the process serves.
//! - `/readyz` ⇒ `200` `ready` when every [`ReadinessCheck`] passes, otherwise `503`
//!   `not ready: <kind>: <reason>` naming the first failing check (one line; never a URL, a host
//!   or a secret).
//! - Both answer `GET` and `HEAD`; any other method gets `405` `Method Not Allowed` with
//!   `Allow: GET, HEAD`. Both are plain text (`text/plain; charset=utf-8`), need no secret, and
//!   match the exact path only (a query string is ignored; `/healthz/` is not them).
//! - Every other request goes to the inner service untouched.
//!
//! Readiness is a list of named checks, each a cheap read of state kept up to date elsewhere (a
//! backend's last answer, say), so a probe never waits on a backend. The gateway's first check is
//! [`RoutesLoaded`]; a store or shared state adds its own.
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_webhooks::health::{HealthLayer, Readiness, RoutesLoaded};
//! use tower_webhooks::WebhookPipeline;
//! use tower_webhooks::body::BufferedBody;
//! use tower_webhooks::config::Limits;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let router = WebhookPipeline::in_memory(Limits::default()).router(&[]);
//! let readiness = Readiness::new().with(RoutesLoaded::new(router.table_handle()));
//! let service = ServiceBuilder::new()
//!     .layer(HealthLayer::new(readiness))
//!     .service(router);
//!
//! let probe = http::Request::get("/readyz").body(BufferedBody::from("")).unwrap();
//! let response = service.oneshot(probe).await.unwrap();
//! assert_eq!(response.status(), 503); // no route is served
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::rejection::{Rejection, TEXT_PLAIN_UTF8};
use crate::router::RouteTableHandle;

/// The liveness path.
pub const HEALTHZ: &str = "/healthz";
/// The readiness path.
pub const READYZ: &str = "/readyz";

/// One condition of readiness: the route table, a store, shared state.
///
/// `check` must be cheap and must not block: it reads the last known state, which something else
/// keeps current.
pub trait ReadinessCheck: Send + Sync + 'static {
    /// What is checked, as the `503` names it: `routes`, `store`, `shared state`.
    fn kind(&self) -> &str;

    /// `Err` with a one-line reason when not ready. The reason is sent to whoever asks: never a
    /// URL, a host name or a secret.
    fn check(&self) -> Result<(), Cow<'static, str>>;
}

/// The checks `/readyz` runs, in order. Cloning shares them.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|check| check.kind()))
            .finish()
    }
}

impl Readiness {
    /// No checks: always ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `check` after the others.
    pub fn with(mut self, check: impl ReadinessCheck) -> Self {
        Arc::make_mut(&mut self.checks).push(Arc::new(check));
        self
    }

    /// `Ok` when every check passes, else the first failure as `<kind>: <reason>`.
    pub fn check(&self) -> Result<(), String> {
        for check in self.checks.iter() {
            if let Err(reason) = check.check() {
                return Err(format!("{}: {}", check.kind(), one_line(&reason)));
            }
        }
        Ok(())
    }
}

/// A reason with its line breaks replaced, so the answer stays one line whatever a check says.
fn one_line(reason: &str) -> Cow<'_, str> {
    if reason.contains(['\r', '\n']) {
        Cow::Owned(reason.replace(['\r', '\n'], " "))
    } else {
        Cow::Borrowed(reason)
    }
}

/// Ready when the route table serves at least one route (kind `routes`).
///
/// A gateway whose every route was skipped (a secret provider down at start, say) answers `404` to
/// everything: a load balancer should send it no traffic until a reload brings routes back.
pub struct RoutesLoaded<S> {
    table: RouteTableHandle<S>,
}

impl<S> RoutesLoaded<S> {
    /// Checks the table behind `table` (from [`WebhookRouter::table_handle`](crate::WebhookRouter::table_handle)).
    pub fn new(table: RouteTableHandle<S>) -> Self {
        Self { table }
    }
}

impl<S> fmt::Debug for RoutesLoaded<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RoutesLoaded").field(&self.table).finish()
    }
}

impl<S: Send + Sync + 'static> ReadinessCheck for RoutesLoaded<S> {
    fn kind(&self) -> &str {
        "routes"
    }

    fn check(&self) -> Result<(), Cow<'static, str>> {
        if self.table.current().is_empty() {
            Err(Cow::Borrowed("no route is served"))
        } else {
            Ok(())
        }
    }
}

/// A plain-text response with `Content-Type: text/plain; charset=utf-8`.
pub(crate) fn text_response<B>(
    status: StatusCode,
    text: &'static str,
) -> Response<ResponseBody<B>> {
    text_response_owned(status, Bytes::from_static(text.as_bytes()))
}

fn text_response_owned<B>(status: StatusCode, text: Bytes) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN_UTF8);
    response
}

/// Layer of [`Health`].
#[derive(Clone, Debug, Default)]
pub struct HealthLayer {
    readiness: Readiness,
}

impl HealthLayer {
    /// `/readyz` runs `readiness`.
    pub fn new(readiness: Readiness) -> Self {
        Self { readiness }
    }
}

impl<S> Layer<S> for HealthLayer {
    type Service = Health<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Health::new(inner, self.readiness.clone())
    }
}

/// Answers `/healthz` and `/readyz`, passes everything else on. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Health<S> {
    inner: S,
    readiness: Readiness,
}

impl<S> Health<S> {
    /// Wraps `inner`; `/readyz` runs `readiness`.
    pub fn new(inner: S, readiness: Readiness) -> Self {
        Self { inner, readiness }
    }

    /// A layer running `readiness`.
    pub fn layer(readiness: Readiness) -> HealthLayer {
        HealthLayer::new(readiness)
    }

    /// The readiness checks.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    inner_service_accessors!();

    fn answer<B>(&self, path: &str, method: &Method) -> Response<ResponseBody<B>> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                Rejection::MethodNotAllowed.text(),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        if path == HEALTHZ {
            return text_response(StatusCode::OK, "ok");
        }
        match self.readiness.check() {
            Ok(()) => text_response(StatusCode::OK, "ready"),
            Err(reason) => text_response_owned(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from(format!("not ready: {reason}")),
            ),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Health<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = HealthFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        let kind = if path == HEALTHZ || path == READYZ {
            Kind::Answered {
                response: Some(self.answer(path, request.method())),
            }
        } else {
            Kind::Called {
                future: self.inner.call(request),
            }
        };
        HealthFuture { kind }
    }
}

pin_project! {
    /// Response future of [`Health`]: a probe's answer, or the inner service's future.
    pub struct HealthFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Called { #[pin] future: F },
        Answered { response: Option<Response<ResponseBody<B>>> },
    }
}

impl<F, B> fmt::Debug for HealthFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HealthFuture")
    }
}

impl<F, B, E> Future for HealthFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::new)))
            }
            KindProj::Answered { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| Rejection::InternalServerError.into_response()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Down;

    impl ReadinessCheck for Down {
        fn kind(&self) -> &str {
            "store"
        }

        fn check(&self) -> Result<(), Cow<'static, str>> {
            Err(Cow::Borrowed("last check failed\r\nsecond line"))
        }
    }

    #[test]
    fn readiness_names_the_first_failing_check_on_one_line() {
        assert_eq!(Readiness::new().check(), Ok(()));
        assert_eq!(
            Readiness::new().with(Down).check(),
            Err("store: last check failed  second line".to_owned())
        );
    }
}
