//! [`Gateway`]: the route table the `gateway` example serves, loaded from a config file or the
//! embedded default, and reloadable while it serves; [`Gateway::service`] puts the health check and
//! telemetry in front of it, and [`ConfigCheck`] is what `--check-config` prints.
//!
//! A reload re-reads the file, re-resolves every secret and swaps the whole route table at once:
//! requests already routed finish on the old routes. The store, the limiters and the lockout are kept,
//! so a reload loses no flow, resets no budget and lifts no lockout. Changed `limits` take effect at
//! the next start; a reload says so in a warning.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::auth::AuthLockout;
use crate::config::{
    AuthMode, ConfigError, Dispatch, Limits, MetricsSettings, ResolvedRoute, WebhooksConfig,
};
use crate::health::{Health, Readiness, RoutesLoaded};
use crate::in_flight::InFlightLimiter;
use crate::pipeline::{RouteService, WebhookPipeline};
use crate::rate_limit::FixedWindowLimiter;
use crate::router::WebhookRouter;
use crate::secret::Secret;
use crate::taskflow::MemoryStore;
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
    WebhookPipeline<MemoryStore, GatewayWindows, GatewaySlots, GatewayLockout>;

/// The embedded default route: id, owner session and path.
pub const DEFAULT_ROUTE_ID: &str = "default";
/// The owner session of the embedded default route.
pub const DEFAULT_SESSION_KEY: &str = "agent:main:main";

/// The router type the gateway serves.
pub type GatewayRouter =
    WebhookRouter<RouteService<MemoryStore, GatewayWindows, GatewaySlots, GatewayLockout>>;

/// What the gateway serves on its webhook port: probes first, then the observed router.
pub type GatewayService = Health<Telemetry<GatewayRouter>>;

/// The store kind the gateway runs on, as `--check-config` prints it.
pub const STORE_KIND: &str = "memory";
/// The shared-state kind of a gateway whose replicas share nothing, as `--check-config` prints it.
pub const SHARED_STATE_KIND: &str = "none";
/// How every route authenticates today: a shared secret, as a bearer token or in
/// `x-openclaw-webhook-secret` (SPEC §2.2).
pub const AUTH_MODE_SECRET: &str = "secret";
/// What every route does today: the TaskFlow actions of SPEC §3.
pub const DISPATCH_TASKFLOW_ACTIONS: &str = "taskflow-actions";

/// What a load or reload produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// `(route id, path)` of every route now served, in file order.
    pub routes: Vec<(String, String)>,
    /// The `[webhooks] skipping route …` warnings, and any note about settings needing a restart.
    pub warnings: Vec<String>,
}

/// The gateway's routes over an in-memory store.
#[derive(Debug)]
pub struct Gateway {
    config_path: Option<PathBuf>,
    metrics: MetricsSettings,
    pipeline: GatewayPipeline,
    router: GatewayRouter,
    /// `sharedState` of the file, URL resolved, until [`share_state`](Self::share_state) connects.
    #[cfg(feature = "redis")]
    shared_state: Option<(Secret, crate::redis::SharedStateConfig)>,
    /// The routes served, kept to rebuild them on shared state.
    #[cfg(feature = "redis")]
    routes: Vec<ResolvedRoute>,
}

/// The gateway's pipeline over the in-memory store, its limiters in memory until
/// [`Gateway::share_state`] connects them to Redis.
fn local_pipeline(limits: Limits) -> GatewayPipeline {
    let store = MemoryStore::with_config(limits.store.clone());
    let clock = crate::clock::SystemClock::shared();
    let windows = FixedWindowLimiter::with_clock(limits.rate_limit, std::sync::Arc::clone(&clock));
    let slots = InFlightLimiter::new(limits.in_flight);
    let lockout = AuthLockout::with_clock(limits.auth_failures, clock);
    #[cfg(feature = "redis")]
    let (windows, slots, lockout) = (
        crate::redis::RedisWindowStore::local_only(windows),
        crate::redis::RedisSlotStore::local_only(slots),
        crate::redis::RedisLockoutStore::local_only(lockout),
    );
    WebhookPipeline::with_stores(store, limits, windows, slots, lockout)
}

impl Gateway {
    /// The embedded default: one route `default` at `/plugins/webhooks/default` for session
    /// `agent:main:main`, accepting `secret`, with default limits.
    pub fn embedded(secret: Secret) -> (Self, LoadReport) {
        let pipeline = local_pipeline(Limits::default());
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

    /// Loads `path` (plugin config or whole OpenClaw file, JSON5) and resolves its secrets.
    ///
    /// With the `redis` feature, a `sharedState` in the file is resolved here (its URL may be a
    /// SecretRef) and connected by [`share_state`](Self::share_state), which must come before
    /// serving: until then the limiters count in this process only.
    pub fn from_file(path: impl AsRef<Path>) -> Result<(Self, LoadReport), ConfigError> {
        let path = path.as_ref().to_path_buf();
        let config = WebhooksConfig::load(&path)?;
        #[cfg(feature = "redis")]
        let shared_state = shared_state::resolve(&config)?;
        let resolved = config.resolve();
        let pipeline = local_pipeline(resolved.limits.clone());
        let report = report_of(&resolved.routes, resolved.warnings());
        let router = pipeline.router(&resolved.routes);
        Ok((
            Self {
                config_path: Some(path),
                metrics: *config.metrics(),
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
        let readiness = Readiness::new().with(RoutesLoaded::new(self.router.table_handle()));
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
    /// The store kind ([`STORE_KIND`]).
    pub store: &'static str,
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
        let path = path.as_ref();
        let config = WebhooksConfig::load(path)?;
        #[cfg(feature = "redis")]
        let shared_state = shared_state::resolve(&config)?.map_or_else(
            || SHARED_STATE_KIND.into(),
            |(_, config)| describe_shared_state(&config),
        );
        #[cfg(not(feature = "redis"))]
        let shared_state = SHARED_STATE_KIND.into();
        let resolved = config.resolve();
        Ok(Self {
            source: format!("config {}", path.display()),
            routes: resolved.routes.iter().map(RouteSummary::of).collect(),
            warnings: resolved.warnings(),
            store: STORE_KIND,
            shared_state,
            metrics_listen: config.metrics().listen,
        })
    }

    /// The embedded default route, whose secret comes from `WEBHOOK_SECRET` or is generated.
    pub fn embedded() -> Self {
        let route = ResolvedRoute::new(DEFAULT_ROUTE_ID, DEFAULT_SESSION_KEY, [Secret::generate()]);
        Self {
            source: "embedded default".into(),
            routes: vec![RouteSummary::of(&route)],
            warnings: vec![],
            store: STORE_KIND,
            shared_state: SHARED_STATE_KIND.into(),
            metrics_listen: None,
        }
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
