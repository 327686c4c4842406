//! [`Gateway`]: the route table the `gateway` example serves, loaded from a config file or the
//! embedded default, and reloadable while it serves; [`Gateway::service`] puts the health check and
//! telemetry in front of it, and [`ConfigCheck`] is what `--check-config` prints.
//!
//! A reload re-reads the file, re-resolves every secret and swaps the whole route table at once:
//! requests already routed finish on the old routes. The store, the limiters and the lockout are kept,
//! so a reload loses no flow, resets no budget and lifts no lockout. Changed `limits` and `store`
//! take effect at the next start; a reload says so in a warning.
//!
//! The store is the file's `store` key or a `--store` override ([`StoreUrl`]): memory, a SQLite
//! file or PostgreSQL, picked at runtime through [`AnyStore`]. One that cannot be opened is a
//! configuration error naming the key, never a fall back to memory. [`Gateway::watch_store`] keeps
//! `/readyz` informed about it and runs the retention sweep.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::auth::AuthLockout;
use crate::clock::SystemClock;
use crate::config::{
    AuthMode, ConfigError, Dispatch, Limits, MetricsSettings, ResolvedRoute, StoreSetting,
    WebhooksConfig,
};
use crate::health::{Health, Readiness, ReadinessCheck, RoutesLoaded};
use crate::in_flight::InFlightLimiter;
use crate::pipeline::{RouteService, WebhookPipeline};
use crate::rate_limit::FixedWindowLimiter;
use crate::router::WebhookRouter;
use crate::secret::Secret;
use crate::taskflow::{
    AnyLedger, AnyStore, CancelImmediately, StoreError, StoreUrl, TaskFlowStore,
};
use crate::telemetry::{Telemetry, TelemetryLayer};

#[cfg(feature = "redis")]
mod shared_state;
#[cfg(feature = "redis")]
pub use shared_state::{
    SHARED_STATE_READINESS_KIND, SharedStateReady, describe as describe_shared_state,
};

/// The rate windows of the gateway: in memory, or on Redis when it shares state (feature `redis`).
#[cfg(not(feature = "redis"))]
pub type GatewayWindows = FixedWindowLimiter;
/// The in-flight slots of the gateway: in memory, or on Redis when it shares state.
#[cfg(not(feature = "redis"))]
pub type GatewaySlots = InFlightLimiter;
/// The auth lockout of the gateway: in memory, or on Redis when it shares state.
#[cfg(not(feature = "redis"))]
pub type GatewayLockout = AuthLockout;
/// The rate windows of the gateway: in memory, or on Redis when it shares state (SPEC §7).
#[cfg(feature = "redis")]
pub type GatewayWindows = crate::redis::RedisWindowStore;
/// The in-flight slots of the gateway: in memory, or on Redis when it shares state.
#[cfg(feature = "redis")]
pub type GatewaySlots = crate::redis::RedisSlotStore;
/// The auth lockout of the gateway: in memory, or on Redis when it shares state.
#[cfg(feature = "redis")]
pub type GatewayLockout = crate::redis::RedisLockoutStore;

/// The pipeline the gateway builds its routes with.
pub type GatewayPipeline =
    WebhookPipeline<AnyStore, GatewayWindows, GatewaySlots, GatewayLockout, AnyLedger>;

/// The embedded default route: id, owner session and path.
pub const DEFAULT_ROUTE_ID: &str = "default";
/// The owner session of the embedded default route.
pub const DEFAULT_SESSION_KEY: &str = "agent:main:main";

/// The router type the gateway serves.
pub type GatewayRouter =
    WebhookRouter<RouteService<AnyStore, GatewayWindows, GatewaySlots, GatewayLockout, AnyLedger>>;

/// What the gateway serves on its webhook port: probes first, then the observed router.
pub type GatewayService = Health<Telemetry<GatewayRouter>>;

/// Where `--store` errors point: the command line rather than a key of the file.
pub const STORE_FLAG: &str = "--store";
/// How often [`Gateway::watch_store`] asks the store whether it answers.
pub const STORE_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How often [`Gateway::watch_store`] runs the retention sweep.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// What `--check-config` prints as the shared-state kind when the limiters share no state.
pub const SHARED_STATE_KIND: &str = "none";
/// How a route without `auth` authenticates, as `--check-config` prints it: the route's shared
/// secret, as a bearer token or in `x-openclaw-webhook-secret` (SPEC §2.2).
pub const AUTH_MODE_SECRET: &str = "secret";
/// What a route without `dispatch` does, as `--check-config` prints it: the TaskFlow actions of
/// SPEC §3.
pub const DISPATCH_TASKFLOW_ACTIONS: &str = "taskflow-actions";

/// What a load or reload produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// `(route id, path)` of every route now served, in file order.
    pub routes: Vec<(String, String)>,
    /// The `[webhooks] skipping route …` warnings, and any note about settings needing a restart.
    pub warnings: Vec<String>,
}

/// The gateway's routes over the configured store.
#[derive(Debug)]
pub struct Gateway {
    config_path: Option<PathBuf>,
    metrics: MetricsSettings,
    file_store: StoreSetting,
    store_url: StoreUrl,
    store_ready: Arc<AtomicBool>,
    pipeline: GatewayPipeline,
    router: GatewayRouter,
    /// `sharedState` of the file, URL resolved, until [`share_state`](Self::share_state) connects.
    #[cfg(feature = "redis")]
    shared_state: Option<(Secret, crate::redis::SharedStateConfig)>,
    /// The routes served, kept to rebuild them on shared state.
    #[cfg(feature = "redis")]
    routes: Vec<ResolvedRoute>,
}

/// The gateway's pipeline over `store`, event routes' idempotency keys beside the flows, its
/// limiters in memory until [`Gateway::share_state`] connects them to Redis.
fn local_pipeline(store: AnyStore, limits: Limits) -> GatewayPipeline {
    let clock = crate::clock::SystemClock::shared();
    let ledger = AnyLedger::for_store(&store, Arc::clone(&clock));
    let windows = FixedWindowLimiter::with_clock(limits.rate_limit, std::sync::Arc::clone(&clock));
    let slots = InFlightLimiter::new(limits.in_flight);
    let lockout = AuthLockout::with_clock(limits.auth_failures, clock);
    #[cfg(feature = "redis")]
    let (windows, slots, lockout) = (
        crate::redis::RedisWindowStore::local_only(windows),
        crate::redis::RedisSlotStore::local_only(slots),
        crate::redis::RedisLockoutStore::local_only(lockout),
    );
    WebhookPipeline::with_stores(store, limits, windows, slots, lockout).with_ledger(ledger)
}

/// Opens the store `url` names, or says which key named it and why it cannot be opened.
fn open_store(url: &StoreUrl, limits: &Limits, key: &str) -> Result<AnyStore, ConfigError> {
    AnyStore::open(
        url,
        limits.store.clone(),
        SystemClock::shared(),
        Arc::new(CancelImmediately),
    )
    .map_err(|error| {
        ConfigError::invalid(
            key,
            format!(
                "cannot open the {} store {url}: {}",
                url.kind(),
                store_reason(&error)
            ),
        )
    })
}

/// A store error without the `TaskFlow persistence failed:` prefix meant for request logs.
fn store_reason(error: &StoreError) -> String {
    match error {
        StoreError::PersistFailed(reason) | StoreError::OutcomeUnknown(reason) => reason.clone(),
        other => other.to_string(),
    }
}

/// `/readyz`'s view of the store: the answer to [`Gateway::watch_store`]'s last check.
struct StoreAnswers {
    backend: &'static str,
    ready: Arc<AtomicBool>,
}

impl ReadinessCheck for StoreAnswers {
    fn kind(&self) -> &str {
        "store"
    }

    fn check(&self) -> Result<(), Cow<'static, str>> {
        if self.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(Cow::Owned(format!(
                "the {} store does not answer",
                self.backend
            )))
        }
    }
}

impl Gateway {
    /// The embedded default: one route `default` at `/plugins/webhooks/default` for session
    /// `agent:main:main`, accepting `secret`, with default limits.
    pub fn embedded(secret: Secret) -> (Self, LoadReport) {
        let limits = Limits::default();
        let store = open_store(&StoreUrl::Memory, &limits, STORE_FLAG)
            .expect("the in-memory store always opens");
        Self::embedded_with(secret, StoreUrl::Memory, store, limits)
    }

    /// The embedded default route over the store `store` names (`--store` without `--config`).
    pub fn embedded_on(
        secret: Secret,
        store: &StoreUrl,
    ) -> Result<(Self, LoadReport), ConfigError> {
        let limits = Limits::default();
        let opened = open_store(store, &limits, STORE_FLAG)?;
        Ok(Self::embedded_with(secret, store.clone(), opened, limits))
    }

    fn embedded_with(
        secret: Secret,
        store_url: StoreUrl,
        store: AnyStore,
        limits: Limits,
    ) -> (Self, LoadReport) {
        let pipeline = local_pipeline(store, limits);
        let route = ResolvedRoute::new(DEFAULT_ROUTE_ID, DEFAULT_SESSION_KEY, [secret]);
        let report = LoadReport {
            routes: vec![(route.id.clone(), route.path.clone())],
            warnings: vec![],
        };
        let router = pipeline.router(std::slice::from_ref(&route));
        (
            Self {
                config_path: None,
                metrics: MetricsSettings::default(),
                file_store: StoreSetting::default(),
                store_url,
                store_ready: Arc::new(AtomicBool::new(true)),
                pipeline,
                router,
                #[cfg(feature = "redis")]
                shared_state: None,
                #[cfg(feature = "redis")]
                routes: vec![route],
            },
            report,
        )
    }

    /// Loads `path` (plugin config or whole OpenClaw file, JSON5), resolves its secrets and opens
    /// the store its `store` key names (memory when unset). Blocking.
    ///
    /// With the `redis` feature, a `sharedState` in the file is resolved here (its URL may be a
    /// SecretRef) and connected by [`share_state`](Self::share_state), which must come before
    /// serving: until then the limiters count in this process only.
    pub fn from_file(path: impl AsRef<Path>) -> Result<(Self, LoadReport), ConfigError> {
        Self::from_file_on(path, None)
    }

    /// [`from_file`](Self::from_file), on the store `store` names when given (`--store`, which
    /// overrides the file's key).
    pub fn from_file_on(
        path: impl AsRef<Path>,
        store: Option<&StoreUrl>,
    ) -> Result<(Self, LoadReport), ConfigError> {
        let path = path.as_ref().to_path_buf();
        let config = WebhooksConfig::load(&path)?;
        #[cfg(feature = "redis")]
        let shared_state = shared_state::resolve(&config)?;
        let (store_url, key) = match store {
            Some(url) => (url.clone(), STORE_FLAG.to_owned()),
            None => (
                config.store_url(path.parent())?,
                "webhooks.store".to_owned(),
            ),
        };
        let resolved = config.resolve();
        let opened = open_store(&store_url, &resolved.limits, &key)?;
        let pipeline = local_pipeline(opened, resolved.limits.clone());
        let report = report_of(&resolved.routes, resolved.warnings());
        let router = pipeline.router(&resolved.routes);
        Ok((
            Self {
                config_path: Some(path),
                metrics: *config.metrics(),
                file_store: config.store().clone(),
                store_url,
                store_ready: Arc::new(AtomicBool::new(true)),
                pipeline,
                router,
                #[cfg(feature = "redis")]
                shared_state,
                #[cfg(feature = "redis")]
                routes: resolved.routes,
            },
            report,
        ))
    }

    /// The router to serve. Clones share the route table, so a reload reaches them all.
    pub fn router(&self) -> GatewayRouter {
        self.router.clone()
    }

    /// The service for the webhook port: `/healthz` and `/readyz` (ready while at least one route is
    /// served), then `telemetry` around the router. Its client IPs follow `limits.trustedProxies`.
    pub fn service(&self, telemetry: TelemetryLayer) -> GatewayService {
        let telemetry = telemetry.trusted_proxies(self.pipeline.limits().trusted_proxies.clone());
        let readiness = Readiness::new()
            .with(RoutesLoaded::new(self.router.table_handle()))
            .with(StoreAnswers {
                backend: self.pipeline.store().backend(),
                ready: Arc::clone(&self.store_ready),
            });
        #[cfg(feature = "redis")]
        let readiness = match self.pipeline.rate_limiter().shared() {
            Some(shared) => readiness.with(SharedStateReady::new(shared.clone())),
            None => readiness,
        };
        Health::new(Telemetry::new(self.router(), &telemetry), readiness)
    }

    /// The config file's `metrics` section (empty for the embedded default).
    pub fn metrics_settings(&self) -> &MetricsSettings {
        &self.metrics
    }

    /// The pipeline behind the routes: its store and shared limiter state.
    pub fn pipeline(&self) -> &GatewayPipeline {
        &self.pipeline
    }

    /// The in-process limiters (with shared state, the ones that decide when Redis cannot): what
    /// [`TrackedKeys`](crate::metrics::TrackedKeys) counts.
    pub fn local_limiters(&self) -> (FixedWindowLimiter, InFlightLimiter, AuthLockout) {
        #[cfg(feature = "redis")]
        return (
            self.pipeline.rate_limiter().local().clone(),
            self.pipeline.in_flight_limiter().local().clone(),
            self.pipeline.lockout().local().clone(),
        );
        #[cfg(not(feature = "redis"))]
        return (
            self.pipeline.rate_limiter().clone(),
            self.pipeline.in_flight_limiter().clone(),
            self.pipeline.lockout().clone(),
        );
    }

    /// The store the gateway runs on; its `Display` shows no password.
    pub fn store_url(&self) -> &StoreUrl {
        &self.store_url
    }

    /// Asks the store whether it answers every [`STORE_CHECK_INTERVAL`] (what `/readyz` reports)
    /// and runs the retention sweep every [`SWEEP_INTERVAL`]; runs until dropped. A failure is
    /// logged when it starts and when it ends, with the backend kind and no URL.
    pub fn watch_store(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let store = Arc::clone(self.pipeline.store());
        let ready = Arc::clone(&self.store_ready);
        let sweep_every = (SWEEP_INTERVAL.as_secs() / STORE_CHECK_INTERVAL.as_secs()).max(1);
        async move {
            let mut checks = tokio::time::interval(STORE_CHECK_INTERVAL);
            for tick in 1u64.. {
                checks.tick().await;
                let answered = store.check().await;
                let was_ready = ready.swap(answered.is_ok(), Ordering::Relaxed);
                match (&answered, was_ready) {
                    (Err(error), true) => tracing::error!(
                        backend = store.backend(),
                        reason = %store_reason(error),
                        "the TaskFlow store does not answer: /readyz answers 503"
                    ),
                    (Ok(()), false) => {
                        tracing::info!(
                            backend = store.backend(),
                            "the TaskFlow store answers again"
                        );
                    }
                    _ => {}
                }
                if answered.is_ok() && tick % sweep_every == 0 {
                    match store.sweep_expired().await {
                        Ok(0) => {}
                        Ok(removed) => {
                            tracing::info!(removed, "retention sweep removed expired flows");
                        }
                        Err(error) => tracing::warn!(
                            backend = store.backend(),
                            reason = %store_reason(&error),
                            "retention sweep failed"
                        ),
                    }
                }
            }
        }
    }

    /// The config file, if the gateway was loaded from one.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Re-reads the config file, re-resolves every secret and swaps the route table. On error the
    /// old table stays in service. The embedded default has nothing to reload.
    pub fn reload(&self) -> Result<LoadReport, ConfigError> {
        let Some(path) = &self.config_path else {
            return Ok(LoadReport {
                routes: vec![(
                    DEFAULT_ROUTE_ID.into(),
                    format!("/plugins/webhooks/{DEFAULT_ROUTE_ID}"),
                )],
                warnings: vec![
                    "no config file to reload: the embedded default is unchanged".into(),
                ],
            });
        };
        let config = WebhooksConfig::load(path)?;
        let resolved = config.resolve();
        let mut warnings = resolved.warnings();
        if resolved.limits != *self.pipeline.limits() {
            warnings.push("[webhooks] limits changed: they take effect at the next start".into());
        }
        if *config.metrics() != self.metrics {
            warnings.push("[webhooks] metrics changed: they take effect at the next start".into());
        }
        if *config.store() != self.file_store {
            warnings.push("[webhooks] store changed: it takes effect at the next start".into());
        }
        let report = report_of(&resolved.routes, warnings);
        self.router
            .table_handle()
            .replace(self.pipeline.table(&resolved.routes));
        Ok(report)
    }
}

fn report_of(routes: &[ResolvedRoute], warnings: Vec<String>) -> LoadReport {
    LoadReport {
        routes: routes
            .iter()
            .map(|route| (route.id.clone(), route.path.clone()))
            .collect(),
        warnings,
    }
}

/// What `--check-config` prints: every served route, the skipped ones, and the kinds of store and
/// shared state, never a secret or a session key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigCheck {
    /// Where the routes come from: `config <file>` or `embedded default`.
    pub source: String,
    /// Every route that would be served, in file order.
    pub routes: Vec<RouteSummary>,
    /// The `[webhooks] skipping route …` warnings.
    pub warnings: Vec<String>,
    /// The store, as its kind and its setting without a password: `sqlite (sqlite:/var/…/flows.db)`.
    pub store: String,
    /// The shared-state kind: [`SHARED_STATE_KIND`], or `redis (…)` with its settings and never
    /// its URL.
    pub shared_state: String,
    /// The metrics listener the file asks for.
    pub metrics_listen: Option<SocketAddr>,
}

/// One served route, as `--check-config` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSummary {
    /// The route id.
    pub id: String,
    /// The normalised path.
    pub path: String,
    /// How it authenticates: [`AUTH_MODE_SECRET`] (SPEC §2.2), `bearer`, `header`, `hmac-sha256`, or
    /// the signature scheme (`github`, `stripe`, `slack`, `standard-webhooks`).
    pub auth: &'static str,
    /// How many secrets it accepts (more than one while rotating).
    pub secrets: usize,
    /// What it does with a request: [`DISPATCH_TASKFLOW_ACTIONS`], `taskflow` (flows from
    /// templates) or `ack`.
    pub dispatch: &'static str,
}

impl RouteSummary {
    fn of(route: &ResolvedRoute) -> Self {
        Self {
            id: route.id.clone(),
            path: route.path.clone(),
            auth: match &route.auth {
                AuthMode::SharedSecret => AUTH_MODE_SECRET,
                AuthMode::Signature { scheme, .. } => scheme.name(),
                other => other.name(),
            },
            secrets: route.secrets.len(),
            dispatch: match &route.event.dispatch {
                Dispatch::Actions => DISPATCH_TASKFLOW_ACTIONS,
                Dispatch::TaskFlow(_) => "taskflow",
                Dispatch::Ack => "ack",
            },
        }
    }
}

impl ConfigCheck {
    /// Loads `path` and resolves every secret, as a start would. Blocking (secret providers).
    pub fn of_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::of_file_on(path, None)
    }

    /// [`of_file`](Self::of_file) with `--store` overriding the file's `store`. The store is named,
    /// not opened: checking a config never creates a database file.
    pub fn of_file_on(
        path: impl AsRef<Path>,
        store: Option<&StoreUrl>,
    ) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let config = WebhooksConfig::load(path)?;
        #[cfg(feature = "redis")]
        let shared_state = shared_state::resolve(&config)?.map_or_else(
            || SHARED_STATE_KIND.into(),
            |(_, config)| describe_shared_state(&config),
        );
        #[cfg(not(feature = "redis"))]
        let shared_state = SHARED_STATE_KIND.into();
        let store = match store {
            Some(url) => url.clone(),
            None => config.store_url(path.parent())?,
        };
        let resolved = config.resolve();
        Ok(Self {
            source: format!("config {}", path.display()),
            routes: resolved.routes.iter().map(RouteSummary::of).collect(),
            warnings: resolved.warnings(),
            store: store_summary(&store),
            shared_state,
            metrics_listen: config.metrics().listen,
        })
    }

    /// The embedded default route, whose secret comes from `WEBHOOK_SECRET` or is generated, on
    /// the store `store` names (memory when `None`).
    pub fn embedded_on(store: Option<&StoreUrl>) -> Self {
        let mut check = Self::embedded();
        if let Some(store) = store {
            check.store = store_summary(store);
        }
        check
    }

    /// The embedded default route, whose secret comes from `WEBHOOK_SECRET` or is generated.
    pub fn embedded() -> Self {
        let route = ResolvedRoute::new(DEFAULT_ROUTE_ID, DEFAULT_SESSION_KEY, [Secret::generate()]);
        Self {
            source: "embedded default".into(),
            routes: vec![RouteSummary::of(&route)],
            warnings: vec![],
            store: store_summary(&StoreUrl::Memory),
            shared_state: SHARED_STATE_KIND.into(),
            metrics_listen: None,
        }
    }
}

/// `memory`, or the kind and the setting without a password: `sqlite (sqlite:/var/…/flows.db)`.
fn store_summary(store: &StoreUrl) -> String {
    match store {
        StoreUrl::Memory => "memory".into(),
        other => format!("{} ({other})", other.kind()),
    }
}

impl fmt::Display for ConfigCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: ok", self.source)?;
        for route in &self.routes {
            let plural = if route.secrets == 1 { "" } else { "s" };
            writeln!(
                f,
                "route {}: path {}, auth {} ({} secret{plural}), dispatch {}",
                route.id, route.path, route.auth, route.secrets, route.dispatch
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        if self.routes.is_empty() {
            writeln!(
                f,
                "warning: no route is served: every request will answer 404"
            )?;
        }
        writeln!(f, "store: {}", self.store)?;
        writeln!(f, "shared state: {}", self.shared_state)?;
        match self.metrics_listen {
            Some(listen) => writeln!(f, "metrics: {listen}"),
            None => writeln!(f, "metrics: off"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_names_the_store_kind_while_it_does_not_answer() {
        let ready = Arc::new(AtomicBool::new(false));
        let readiness = Readiness::new().with(StoreAnswers {
            backend: "sqlite",
            ready: Arc::clone(&ready),
        });
        assert_eq!(
            readiness.check(),
            Err("store: the sqlite store does not answer".to_owned())
        );
        ready.store(true, Ordering::Relaxed);
        assert_eq!(readiness.check(), Ok(()));
    }
}
