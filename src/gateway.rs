//! [`Gateway`]: the route table the `gateway` example serves, loaded from a config file or the
//! embedded default, and reloadable while it serves.
//!
//! A reload re-reads the file, re-resolves every secret and swaps the whole route table at once:
//! requests already routed finish on the old routes. The store, the limiters and the lockout are kept,
//! so a reload loses no flow, resets no budget and lifts no lockout. Changed `limits` take effect at
//! the next start; a reload says so in a warning.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, Limits, ResolvedRoute, WebhooksConfig};
use crate::pipeline::{RouteService, WebhookPipeline};
use crate::router::WebhookRouter;
use crate::secret::Secret;
use crate::taskflow::MemoryStore;

/// The embedded default route: id, owner session and path.
pub const DEFAULT_ROUTE_ID: &str = "default";
/// The owner session of the embedded default route.
pub const DEFAULT_SESSION_KEY: &str = "agent:main:main";

/// The router type the gateway serves.
pub type GatewayRouter = WebhookRouter<RouteService<MemoryStore>>;

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
    pipeline: WebhookPipeline<MemoryStore>,
    router: GatewayRouter,
}

impl Gateway {
    /// The embedded default: one route `default` at `/plugins/webhooks/default` for session
    /// `agent:main:main`, accepting `secret`, with default limits.
    pub fn embedded(secret: Secret) -> (Self, LoadReport) {
        let pipeline = WebhookPipeline::in_memory(Limits::default());
        let route = ResolvedRoute::new(DEFAULT_ROUTE_ID, DEFAULT_SESSION_KEY, [secret]);
        let report = LoadReport {
            routes: vec![(route.id.clone(), route.path.clone())],
            warnings: vec![],
        };
        let router = pipeline.router(&[route]);
        (
            Self {
                config_path: None,
                pipeline,
                router,
            },
            report,
        )
    }

    /// Loads `path` (plugin config or whole OpenClaw file, JSON5) and resolves its secrets.
    pub fn from_file(path: impl AsRef<Path>) -> Result<(Self, LoadReport), ConfigError> {
        let path = path.as_ref().to_path_buf();
        let config = WebhooksConfig::load(&path)?;
        let resolved = config.resolve();
        let pipeline = WebhookPipeline::in_memory(resolved.limits.clone());
        let report = report_of(&resolved.routes, resolved.warnings());
        let router = pipeline.router(&resolved.routes);
        Ok((
            Self {
                config_path: Some(path),
                pipeline,
                router,
            },
            report,
        ))
    }

    /// The router to serve. Clones share the route table, so a reload reaches them all.
    pub fn router(&self) -> GatewayRouter {
        self.router.clone()
    }

    /// The pipeline behind the routes: its store and shared limiter state.
    pub fn pipeline(&self) -> &WebhookPipeline<MemoryStore> {
        &self.pipeline
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
