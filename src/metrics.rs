//! The Prometheus series of SPEC §6, in a [`prometheus_client`] registry the caller owns (feature
//! `metrics`).
//!
//! [`WebhookMetrics`] registers the request series; [`TelemetryLayer::metrics`] counts every
//! request into them. [`TrackedKeys`] reads the limiters' key counts when scraped, and
//! [`MetricsEndpoint`] answers `GET /metrics` in the OpenMetrics text format: serve it on a listener
//! of its own, never on the webhook port.
//!
//! | series | labels | counted |
//! |---|---|---|
//! | `webhook_requests_total` | `route`, `status` | every request the layer sees |
//! | `webhook_rejections_total` | `route`, `reason` | every refusal, with its [`RejectionReason`] word |
//! | `webhook_request_duration_seconds` | `route` | histogram, from the call to the response head |
//! | `taskflow_actions_total` | `route`, `action`, `code` | every executed action; `code` is `ok`, `cancel_pending` or the error code |
//! | `taskflow_store_errors_total` | `backend` | every `persist_failed` |
//! | `webhook_config_reloads_total` | `result` (`ok`, `error`) | [`record_config_reload`](WebhookMetrics::record_config_reload) |
//! | `webhook_tracked_keys` | `limiter` (`rate_limit`, `in_flight`, `lockout`) | gauge, read at scrape time by [`TrackedKeys`] |
//! | `webhook_shared_state_fallbacks_total` | — | with the `redis` feature, read at scrape time by `SharedStateFallbacks` |
//!
//! Labels are route ids and fixed words, never request paths: a request no route serves counts
//! under `route=""`. Each route's series are resolved once and kept, so counting a request hashes
//! its route id once and no label set.
//!
//! ```
//! use prometheus_client::registry::Registry;
//! use tower::ServiceBuilder;
//! use tower_webhooks::metrics::{MetricsEndpoint, TrackedKeys, WebhookMetrics};
//! use tower_webhooks::telemetry::TelemetryLayer;
//! use tower_webhooks::WebhookPipeline;
//! use tower_webhooks::config::Limits;
//!
//! let pipeline = WebhookPipeline::in_memory(Limits::default());
//! let mut registry = Registry::default();
//! let metrics = WebhookMetrics::new(&mut registry);
//! registry.register_collector(Box::new(TrackedKeys::of(&pipeline)));
//!
//! let webhooks = ServiceBuilder::new()
//!     .layer(TelemetryLayer::new().metrics(metrics))
//!     .service(pipeline.router(&[]));
//! let scrapes = MetricsEndpoint::new(registry); // on its own listener
//! # let _ = (webhooks, scrapes);
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tower_service::Service;

use crate::auth::AuthLockout;
use crate::body::StandaloneBody;
use crate::in_flight::InFlightLimiter;
use crate::pipeline::WebhookPipeline;
use crate::rate_limit::FixedWindowLimiter;
use crate::rejection::{Rejection, RejectionReason};
use crate::taskflow::{ActionCode, ActionName, ErrorCode};
#[cfg(doc)]
use crate::telemetry::TelemetryLayer;

/// Upper bounds of `webhook_request_duration_seconds`, in seconds: from a refusal answered in
/// process (well under a millisecond) to a body that takes the whole default 15 s deadline.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 15.0,
];

/// The statuses this crate answers; each route keeps a ready counter for every one of them, any
/// other status is looked up by label.
const KNOWN_STATUSES: [u16; 16] = [
    200, 202, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429, 500, 503, 504, 507,
];

/// A route id as a label value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RouteId(Arc<str>);

impl EncodeLabelValue for RouteId {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: RouteId,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    route: RouteId,
    status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    route: RouteId,
    reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    route: RouteId,
    action: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// One route's series, resolved once.
struct RouteSeries {
    route: RouteId,
    duration: Histogram,
    statuses: [OnceLock<Counter>; KNOWN_STATUSES.len()],
    rejections: [OnceLock<Counter>; RejectionReason::ALL.len()],
    actions: [[OnceLock<Counter>; ActionCode::COUNT]; ActionName::ALL.len()],
}

impl RouteSeries {
    fn new(route: Arc<str>, families: &Families) -> Self {
        let route = RouteId(route);
        Self {
            duration: families.duration.get_or_create_owned(&RouteLabels {
                route: route.clone(),
            }),
            route,
            statuses: Default::default(),
            rejections: Default::default(),
            actions: Default::default(),
        }
    }
}

struct Families {
    requests: Family<StatusLabels, Counter>,
    rejections: Family<ReasonLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    actions: Family<ActionLabels, Counter>,
    store_errors: Family<BackendLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
}

struct Shared {
    families: Families,
    store_backend: &'static str,
    routes: RwLock<HashMap<Arc<str>, Arc<RouteSeries>>>,
    unrouted: RouteSeries,
}

/// The request series of SPEC §6, registered in a caller's [`Registry`]. Cloning shares them.
///
/// See the [module docs](self) for the series and where they are counted.
#[derive(Clone)]
pub struct WebhookMetrics {
    shared: Arc<Shared>,
}

impl fmt::Debug for WebhookMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookMetrics")
            .field("store_backend", &self.shared.store_backend)
            .field("routes", &self.shared.routes.read().len())
            .finish()
    }
}

impl WebhookMetrics {
    /// Registers the series in `registry`, for a pipeline over the in-memory store
    /// (`taskflow_store_errors_total{backend="memory"}`).
    pub fn new(registry: &mut Registry) -> Self {
        Self::with_store_backend(registry, "memory")
    }

    /// Registers the series in `registry`; store errors count under `backend`.
    pub fn with_store_backend(registry: &mut Registry, backend: &'static str) -> Self {
        let families = Families {
            requests: Family::default(),
            rejections: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            actions: Family::default(),
            store_errors: Family::default(),
            reloads: Family::default(),
        };
        registry.register(
            "webhook_requests",
            "Requests answered, by route id and status",
            families.requests.clone(),
        );
        registry.register(
            "webhook_rejections",
            "Requests refused, by route id and reason",
            families.rejections.clone(),
        );
        registry.register_with_unit(
            "webhook_request_duration",
            "Time from the call to the response head, by route id",
            Unit::Seconds,
            families.duration.clone(),
        );
        registry.register(
            "taskflow_actions",
            "TaskFlow actions executed, by route id, action and code",
            families.actions.clone(),
        );
        registry.register(
            "taskflow_store_errors",
            "TaskFlow store failures to persist, by backend",
            families.store_errors.clone(),
        );
        registry.register(
            "webhook_config_reloads",
            "Configuration reloads, by result",
            families.reloads.clone(),
        );
        let unrouted = RouteSeries::new(Arc::from(""), &families);
        Self {
            shared: Arc::new(Shared {
                families,
                store_backend: backend,
                routes: RwLock::new(HashMap::new()),
                unrouted,
            }),
        }
    }

    /// Counts one answered request: what [`Telemetry`](crate::telemetry::Telemetry) calls when the
    /// response head is ready. `route` is `None` for a request no route served.
    pub fn record_request(
        &self,
        route: Option<&Arc<str>>,
        status: u16,
        elapsed: Duration,
        reason: Option<RejectionReason>,
        action: Option<(ActionName, ActionCode)>,
    ) {
        let shared = &*self.shared;
        match route {
            None => shared.count(&shared.unrouted, status, elapsed, reason, action),
            Some(route) => {
                let known = shared.routes.read().get(route).cloned();
                let series = known.unwrap_or_else(|| {
                    let mut routes = shared.routes.write();
                    let series = routes.entry(Arc::clone(route)).or_insert_with(|| {
                        Arc::new(RouteSeries::new(Arc::clone(route), &shared.families))
                    });
                    Arc::clone(series)
                });
                shared.count(&series, status, elapsed, reason, action);
            }
        }
    }

    /// Counts a configuration reload: `webhook_config_reloads_total{result="ok"}` or
    /// `{result="error"}`.
    pub fn record_config_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.shared
            .families
            .reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }
}

impl Shared {
    fn count(
        &self,
        series: &RouteSeries,
        status: u16,
        elapsed: Duration,
        reason: Option<RejectionReason>,
        action: Option<(ActionName, ActionCode)>,
    ) {
        let families = &self.families;
        let by_status = || {
            families.requests.get_or_create_owned(&StatusLabels {
                route: series.route.clone(),
                status,
            })
        };
        match KNOWN_STATUSES.iter().position(|&known| known == status) {
            Some(i) => series.statuses[i].get_or_init(by_status).inc(),
            None => by_status().inc(),
        };
        series.duration.observe(elapsed.as_secs_f64());
        if let Some(reason) = reason {
            series.rejections[reason.index()]
                .get_or_init(|| {
                    families.rejections.get_or_create_owned(&ReasonLabels {
                        route: series.route.clone(),
                        reason: reason.as_str(),
                    })
                })
                .inc();
        }
        if let Some((name, code)) = action {
            series.actions[name.index()][code.index()]
                .get_or_init(|| {
                    families.actions.get_or_create_owned(&ActionLabels {
                        route: series.route.clone(),
                        action: name.as_str(),
                        code: code.as_str(),
                    })
                })
                .inc();
            if code == ActionCode::Error(ErrorCode::PersistFailed) {
                families
                    .store_errors
                    .get_or_create(&BackendLabels {
                        backend: self.store_backend,
                    })
                    .inc();
            }
        }
    }
}

/// The `webhook_tracked_keys{limiter}` gauge: how many keys the rate limiter, the in-flight limiter
/// and the auth-failure lockout track, read when scraped (counting them per request would cost
/// every request a map walk).
#[derive(Clone)]
pub struct TrackedKeys {
    rate_limit: FixedWindowLimiter,
    in_flight: InFlightLimiter,
    lockout: AuthLockout,
}

impl fmt::Debug for TrackedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedKeys").finish_non_exhaustive()
    }
}

impl TrackedKeys {
    /// The gauge over these limiters.
    pub fn new(
        rate_limit: FixedWindowLimiter,
        in_flight: InFlightLimiter,
        lockout: AuthLockout,
    ) -> Self {
        Self {
            rate_limit,
            in_flight,
            lockout,
        }
    }

    /// The gauge over a pipeline's shared limiters.
    pub fn of<St>(pipeline: &WebhookPipeline<St>) -> Self
    where
        St: crate::taskflow::TaskFlowStore,
    {
        Self::new(
            pipeline.rate_limiter().clone(),
            pipeline.in_flight_limiter().clone(),
            pipeline.lockout().clone(),
        )
    }
}

impl Collector for TrackedKeys {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut gauge = encoder.encode_descriptor(
            "webhook_tracked_keys",
            "Keys each limiter tracks now",
            None,
            MetricType::Gauge,
        )?;
        for (limiter, keys) in [
            ("rate_limit", self.rate_limit.tracked_keys()),
            ("in_flight", self.in_flight.tracked_keys()),
            ("lockout", self.lockout.tracked_ips()),
        ] {
            let labels = [("limiter", limiter)];
            let keys = i64::try_from(keys).unwrap_or(i64::MAX);
            gauge.encode_family(&labels)?.encode_gauge(&keys)?;
        }
        Ok(())
    }
}

/// `webhook_shared_state_fallbacks_total` (SPEC §7): decisions the in-process limiters took
/// because Redis could not answer, read from the [`RedisState`](crate::redis::RedisState) at
/// scrape time.
#[cfg(feature = "redis")]
#[derive(Debug)]
pub struct SharedStateFallbacks {
    shared: crate::redis::RedisState,
}

#[cfg(feature = "redis")]
impl SharedStateFallbacks {
    /// The counter of `shared`.
    pub fn new(shared: crate::redis::RedisState) -> Self {
        Self { shared }
    }
}

#[cfg(feature = "redis")]
impl Collector for SharedStateFallbacks {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut counter = encoder.encode_descriptor(
            "webhook_shared_state_fallbacks",
            "Decisions taken by the in-process limiters because Redis could not answer",
            None,
            MetricType::Counter,
        )?;
        counter.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
            &self.shared.fallbacks(),
            None,
        )
    }
}

/// `Content-Type` of the OpenMetrics text format, which [`MetricsEndpoint`] answers in.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Answers `GET /metrics` (and `HEAD`) with the registry in the OpenMetrics text format; other
/// methods there `405` with `Allow: GET, HEAD`, other paths `404`. Serve it on a listener of its
/// own: the webhook port never answers `/metrics`.
#[derive(Clone)]
pub struct MetricsEndpoint {
    registry: Arc<Registry>,
}

impl fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsEndpoint").finish_non_exhaustive()
    }
}

impl MetricsEndpoint {
    /// Serves `registry`.
    pub fn new(registry: impl Into<Arc<Registry>>) -> Self {
        Self {
            registry: registry.into(),
        }
    }

    /// The exposition text, as a scrape gets it.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a collector.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "encoding the metrics failed");
        }
        text
    }
}

impl<B> Service<Request<B>> for MetricsEndpoint {
    type Response = Response<StandaloneBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.uri().path() != "/metrics" {
            return ready(Ok(Rejection::NotFound.into_response()));
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = crate::health::text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                Rejection::MethodNotAllowed.text(),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return ready(Ok(response));
        }
        let mut response = Response::new(StandaloneBody::full(Bytes::from(self.render())));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
        );
        ready(Ok(response))
    }
}

/// The metric values of an OpenMetrics text, by series (name and labels as written).
#[cfg(test)]
fn parse_samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(registry: Registry) -> HashMap<String, f64> {
        parse_samples(&MetricsEndpoint::new(registry).render())
    }

    #[test]
    fn a_request_counts_under_its_route_status_reason_and_action() {
        let mut registry = Registry::default();
        let metrics = WebhookMetrics::new(&mut registry);
        let zap: Arc<str> = Arc::from("zap");
        metrics.record_request(
            Some(&zap),
            200,
            Duration::from_micros(300),
            None,
            Some((ActionName::GetFlow, ActionCode::Ok)),
        );
        metrics.record_request(
            Some(&zap),
            429,
            Duration::from_micros(50),
            Some(RejectionReason::InFlight),
            None,
        );
        metrics.record_request(
            Some(&zap),
            503,
            Duration::from_millis(2),
            None,
            Some((
                ActionName::CreateFlow,
                ActionCode::Error(ErrorCode::PersistFailed),
            )),
        );
        metrics.record_request(None, 404, Duration::from_micros(10), None, None);
        metrics.record_request(None, 418, Duration::from_micros(10), None, None);
        metrics.record_config_reload(true);
        metrics.record_config_reload(false);
        metrics.record_config_reload(false);
        let samples = scrape(registry);
        for (series, value) in [
            (r#"webhook_requests_total{route="zap",status="200"}"#, 1.0),
            (r#"webhook_requests_total{route="zap",status="429"}"#, 1.0),
            (r#"webhook_requests_total{route="zap",status="503"}"#, 1.0),
            (r#"webhook_requests_total{route="",status="404"}"#, 1.0),
            (r#"webhook_requests_total{route="",status="418"}"#, 1.0),
            (
                r#"webhook_rejections_total{route="zap",reason="in_flight"}"#,
                1.0,
            ),
            (
                r#"taskflow_actions_total{route="zap",action="get_flow",code="ok"}"#,
                1.0,
            ),
            (
                r#"taskflow_actions_total{route="zap",action="create_flow",code="persist_failed"}"#,
                1.0,
            ),
            (r#"taskflow_store_errors_total{backend="memory"}"#, 1.0),
            (r#"webhook_config_reloads_total{result="ok"}"#, 1.0),
            (r#"webhook_config_reloads_total{result="error"}"#, 2.0),
            (
                r#"webhook_request_duration_seconds_count{route="zap"}"#,
                3.0,
            ),
            (
                r#"webhook_request_duration_seconds_bucket{le="0.0005",route="zap"}"#,
                2.0,
            ),
            (r#"webhook_request_duration_seconds_count{route=""}"#, 2.0),
        ] {
            assert_eq!(
                samples.get(series),
                Some(&value),
                "{series} in {samples:#?}"
            );
        }
    }

    #[test]
    fn tracked_keys_are_read_from_the_limiters_when_scraped() {
        let pipeline = WebhookPipeline::in_memory(crate::config::Limits::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(TrackedKeys::of(&pipeline)));
        let endpoint = MetricsEndpoint::new(registry);
        let zero = parse_samples(&endpoint.render());
        assert_eq!(
            zero.get(r#"webhook_tracked_keys{limiter="rate_limit"}"#),
            Some(&0.0)
        );
        let limiter = pipeline.rate_limiter();
        limiter.hit(limiter.hash("a")).unwrap();
        limiter.hit(limiter.hash("b")).unwrap();
        let lockout = pipeline.lockout();
        lockout.failed(lockout.key_of("192.0.2.1".parse().unwrap()));
        let samples = parse_samples(&endpoint.render());
        for (series, value) in [
            (r#"webhook_tracked_keys{limiter="rate_limit"}"#, 2.0),
            (r#"webhook_tracked_keys{limiter="in_flight"}"#, 0.0),
            (r#"webhook_tracked_keys{limiter="lockout"}"#, 1.0),
        ] {
            assert_eq!(
                samples.get(series),
                Some(&value),
                "{series} in {samples:#?}"
            );
        }
    }
}
