//! [`Telemetry`]: one access-log event per request and, with the `metrics` feature, the SPEC §6
//! Prometheus series, from one layer outside the router.
//!
//! The layer learns what happened inside the stack from the services that decided it: the route
//! service records its route id ([`RecordRoute`], which [`WebhookPipeline`](crate::WebhookPipeline)
//! puts around every route), a rejection records its [`RejectionReason`] when it becomes a response,
//! and the TaskFlow service records the action and its code. Unknown paths have no route id: they
//! are logged and counted under the route `""`.
//!
//! # How the words travel
//!
//! The producers write into a per-request record that the layer's future makes current, on the
//! polling thread, only while it polls the inner service; outside such a poll recording does
//! nothing. Response extensions would be the usual tower channel, but inserting the first one
//! allocates a map and boxes the value (≈ 125 ns per response on the benchmark VM, more than the
//! whole budget of this layer); the record costs a thread-local access. The price: a word recorded
//! on another task (behind a `tower::buffer::Buffer` worker, say) is not seen, and the request is
//! then logged and counted with its status alone.
//!
//! # The access log
//!
//! One `tracing` event per request at `info`, target `tower_webhooks::access`, when the response
//! head is ready: `method`, `route` (the id, `""` for none), `status`, `duration_ms` (fractional
//! milliseconds from the call to the response head), `client_ip` (the peer, or the
//! `X-Forwarded-For` client behind [`trusted_proxies`](TelemetryLayer::trusted_proxies), as the
//! limiters see it), and when they apply `reason` (a rejection's word), `action` and `code`. Never
//! a header, a path, a query string, a body, a secret or a session key. A request whose client goes
//! away before the response head is ready is not logged.
//!
// The example stacks the layer over the whole pipeline, which the `config` feature builds.
#![cfg_attr(feature = "config", doc = "```")]
#![cfg_attr(not(feature = "config"), doc = "```ignore")]
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_webhooks::telemetry::TelemetryLayer;
//! use tower_webhooks::WebhookPipeline;
//! use tower_webhooks::body::BufferedBody;
//! use tower_webhooks::config::{Limits, ResolvedRoute};
//! use tower_webhooks::secret::Secret;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let pipeline = WebhookPipeline::in_memory(Limits::default());
//! let route = ResolvedRoute::new("zap", "agent:main:main", [Secret::new("s3cret").unwrap()]);
//! let observed = ServiceBuilder::new()
//!     .layer(TelemetryLayer::new())
//!     .service(pipeline.router(&[route]));
//!
//! let mut request = http::Request::get("/plugins/webhooks/zap")
//!     .body(BufferedBody::from(""))
//!     .unwrap();
//! request.extensions_mut().insert(std::net::SocketAddr::from(([127, 0, 0, 1], 50000)));
//! // Logs `method=GET route="zap" status=405 … reason="method"` at `tower_webhooks::access`.
//! assert_eq!(observed.oneshot(request).await.unwrap().status(), 405);
//! # }
//! ```

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::client_ip::{ClientIp, TrustedProxies};
#[cfg(feature = "metrics")]
use crate::metrics::WebhookMetrics;
use crate::rejection::RejectionReason;
use crate::taskflow::{ActionCode, ActionName};

/// The `tracing` target of the access log.
pub const ACCESS_LOG_TARGET: &str = "tower_webhooks::access";

/// What the services inside the stack recorded about one request.
#[derive(Clone, Debug, Default)]
struct Observation {
    route: Option<Arc<str>>,
    reason: Option<RejectionReason>,
    action: Option<(ActionName, ActionCode)>,
}

thread_local! {
    /// The record of the request whose [`TelemetryFuture`] is polling on this thread, if any.
    static CURRENT: Cell<Option<Observation>> = const { Cell::new(None) };
}

/// Makes `slot` the current record until dropped, then puts back whatever was current before (a
/// telemetry layer nested in another sees its own requests only).
struct Scope<'a> {
    slot: &'a mut Observation,
    outer: Option<Observation>,
}

impl<'a> Scope<'a> {
    fn enter(slot: &'a mut Observation) -> Self {
        let mine = std::mem::take(slot);
        let outer = CURRENT
            .try_with(|current| current.replace(Some(mine)))
            .ok()
            .flatten();
        Self { slot, outer }
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        let outer = self.outer.take();
        if let Ok(Some(mine)) = CURRENT.try_with(|current| current.replace(outer)) {
            *self.slot = mine;
        }
    }
}

fn record(update: impl FnOnce(&mut Observation)) {
    let _ = CURRENT.try_with(|current| {
        if let Some(mut observation) = current.take() {
            update(&mut observation);
            current.set(Some(observation));
        }
    });
}

/// Records the route that serves the current request. [`RecordRoute`] calls it.
pub fn record_route(route: &Arc<str>) {
    record(|observation| observation.route = Some(Arc::clone(route)));
}

/// Records why the current request was refused; a later call replaces an earlier one.
/// [`Rejection::into_response`](crate::rejection::Rejection::into_response) calls it.
pub fn record_rejection(reason: RejectionReason) {
    record(|observation| observation.reason = Some(reason));
}

/// Records the action the current request ran and its code.
/// [`TaskFlowActionService`](crate::TaskFlowActionService) calls it.
pub fn record_action(action: ActionName, code: ActionCode) {
    record(|observation| observation.action = Some((action, code)));
}

/// Records its route id for the observing [`Telemetry`] layer, then calls the route's service.
#[derive(Clone, Debug)]
pub struct RecordRoute<S> {
    inner: S,
    route: Arc<str>,
}

impl<S> RecordRoute<S> {
    /// Wraps the service of route `route`.
    pub fn new(inner: S, route: impl Into<Arc<str>>) -> Self {
        Self {
            inner,
            route: route.into(),
        }
    }

    /// The route id.
    pub fn route(&self) -> &str {
        &self.route
    }

    inner_service_accessors!();
}

impl<S, R> Service<R> for RecordRoute<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        record_route(&self.route);
        self.inner.call(request)
    }
}

#[derive(Clone)]
struct Settings {
    access_log: bool,
    trusted_proxies: TrustedProxies,
    #[cfg(feature = "metrics")]
    metrics: Option<WebhookMetrics>,
}

impl Settings {
    fn counts(&self) -> bool {
        #[cfg(feature = "metrics")]
        return self.metrics.is_some();
        #[cfg(not(feature = "metrics"))]
        return false;
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("access_log", &self.access_log)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("metrics", &self.counts())
            .finish()
    }
}

/// Layer of [`Telemetry`]. The default writes the access log and counts nothing.
#[derive(Clone, Debug)]
pub struct TelemetryLayer {
    settings: Settings,
}

impl Default for TelemetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl TelemetryLayer {
    /// Writes the access log (when `tracing` lets `info` at [`ACCESS_LOG_TARGET`] through) and
    /// counts nothing.
    pub fn new() -> Self {
        Self {
            settings: Settings {
                access_log: true,
                trusted_proxies: TrustedProxies::default(),
                #[cfg(feature = "metrics")]
                metrics: None,
            },
        }
    }

    /// Whether to write the access log. Default `true`.
    pub fn access_log(mut self, enabled: bool) -> Self {
        self.settings.access_log = enabled;
        self
    }

    /// Proxies whose `X-Forwarded-For` names the client IP the access log writes; use the
    /// limiters' list (`limits.trustedProxies`). Default: none.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.settings.trusted_proxies = proxies;
        self
    }

    /// Counts every request into `metrics`.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: WebhookMetrics) -> Self {
        self.settings.metrics = Some(metrics);
        self
    }
}

impl<S> Layer<S> for TelemetryLayer {
    type Service = Telemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Telemetry {
            inner,
            settings: Arc::new(self.settings.clone()),
        }
    }
}

/// Logs and counts every request the inner service answers. See the [module docs](self).
#[derive(Debug)]
pub struct Telemetry<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S: Clone> Clone for Telemetry<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<S> Telemetry<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: &TelemetryLayer) -> Self {
        layer.layer(inner)
    }

    /// The default layer: access log on, no metrics.
    pub fn layer() -> TelemetryLayer {
        TelemetryLayer::new()
    }

    inner_service_accessors!();
}

/// What the access log needs from the request, taken before the request moves on.
struct AccessFields {
    method: Method,
    client_ip: IpAddr,
}

struct Watch {
    start: Instant,
    observation: Observation,
    access: Option<AccessFields>,
    #[cfg(feature = "metrics")]
    metrics: Option<WebhookMetrics>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Telemetry<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = TelemetryFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let settings = &self.settings;
        let log = settings.access_log
            && tracing::enabled!(target: ACCESS_LOG_TARGET, tracing::Level::INFO);
        if !log && !settings.counts() {
            return TelemetryFuture {
                future: self.inner.call(request),
                watch: None,
            };
        }
        let access = log.then(|| AccessFields {
            method: request.method().clone(),
            // Resolved once: the limiters inside read the same answer back.
            client_ip: ClientIp::resolve(&mut request, &settings.trusted_proxies).ip(),
        });
        let start = Instant::now();
        let mut observation = Observation::default();
        // A service that decides in `call` (no router in between) records here.
        let future = {
            let _scope = Scope::enter(&mut observation);
            self.inner.call(request)
        };
        TelemetryFuture {
            future,
            watch: Some(Watch {
                start,
                observation,
                access,
                #[cfg(feature = "metrics")]
                metrics: settings.metrics.clone(),
            }),
        }
    }
}

pin_project! {
    /// Response future of [`Telemetry`]: the inner future, polled with the request's record
    /// current; logs and counts once the response head is ready.
    pub struct TelemetryFuture<F> {
        #[pin]
        future: F,
        watch: Option<Watch>,
    }
}

impl<F> fmt::Debug for TelemetryFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryFuture")
            .field("observing", &self.watch.is_some())
            .finish()
    }
}

impl<F, B, E> Future for TelemetryFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(watch) = this.watch.as_mut() else {
            return this.future.poll(cx);
        };
        let result = {
            let _scope = Scope::enter(&mut watch.observation);
            ready!(this.future.poll(cx))
        };
        let watch = this.watch.take().expect("checked above");
        if let Ok(response) = &result {
            watch.finish(response.status().as_u16());
        }
        Poll::Ready(result)
    }
}

impl Watch {
    fn finish(self, status: u16) {
        let elapsed = self.start.elapsed();
        let Observation {
            route,
            reason,
            action,
        } = self.observation;
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.record_request(route.as_ref(), status, elapsed, reason, action);
        }
        if let Some(access) = self.access {
            tracing::info!(
                target: ACCESS_LOG_TARGET,
                method = access.method.as_str(),
                route = route.as_deref().unwrap_or(""),
                status,
                duration_ms = elapsed.as_secs_f64() * 1_000.0,
                client_ip = %access.client_ip,
                reason = reason.map(RejectionReason::as_str),
                action = action.map(|(name, _)| name.as_str()),
                code = action.map(|(_, code)| code.as_str()),
                "request"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_outside_a_scope_does_nothing() {
        record_rejection(RejectionReason::Method);
        assert!(CURRENT.with(|current| current.take()).is_none());
    }

    #[test]
    fn a_nested_scope_keeps_its_own_record_and_restores_the_outer_one() {
        let mut outer = Observation::default();
        let mut inner = Observation::default();
        {
            let _outer = Scope::enter(&mut outer);
            record_rejection(RejectionReason::Unauthorized);
            {
                let _inner = Scope::enter(&mut inner);
                record_rejection(RejectionReason::InFlight);
            }
            record_action(ActionName::GetFlow, ActionCode::Ok);
        }
        assert_eq!(outer.reason, Some(RejectionReason::Unauthorized));
        assert_eq!(outer.action, Some((ActionName::GetFlow, ActionCode::Ok)));
        assert_eq!(inner.reason, Some(RejectionReason::InFlight));
        assert_eq!(inner.action, None);
        assert!(CURRENT.with(|current| current.take()).is_none());
    }
}
