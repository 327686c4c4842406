//! Configuration: JSON5 loading, routes, path normalisation, secrets and limits (SPEC §1, §2.5).
//!
//! # Two shapes, one rule
//!
//! A file (or string) is either the **plugin config alone**:
//!
//! ```json5
//! { routes: { zap: { sessionKey: "agent:main:main", secret: "…" } }, limits: { … } }
//! ```
//!
//! or a **whole OpenClaw config file**. The rule: a top-level `plugins` key means a whole file.
//!
//! - From a whole file only `plugins.entries.webhooks` (`enabled`, `config`) and `secrets.providers`
//!   are read; every other section and every other key of `plugins` and `secrets` is ignored.
//!   `plugins.entries.webhooks.enabled: false`, or no `plugins.entries.webhooks.config`, means no routes
//!   and default limits; a disabled plugin's config is not even validated. A top-level `routes` or
//!   `limits` beside `plugins` is an error, since it would otherwise be silently ignored.
//! - The plugin config alone accepts `routes`, `limits`, `metrics` (`{ listen }`, where the gateway
//!   serves Prometheus metrics), and also `secrets: { providers }` (same shape as in a whole file),
//!   so `file` and `exec` refs work without an OpenClaw file. In a whole file `metrics` sits beside
//!   `routes` under `plugins.entries.webhooks.config`.
//!
//! # Loading, then resolving
//!
//! [`WebhooksConfig`] is the validated configuration: JSON5 syntax, types, unknown keys, defaults,
//! path normalisation and duplicate paths are all checked here, and any problem is a [`ConfigError`].
//! [`WebhooksConfig::resolve`] then reads every secret (environment, files, helper programs) and gives
//! a [`ResolvedConfig`]: the routes to serve, and the routes skipped because a secret did not resolve
//! (also logged with `tracing::warn!`). Resolving never fails as a whole and may be run again at any
//! time, e.g. on `SIGHUP`, to pick up rotated secrets; the caller swaps its route table with the result.
//!
//! Routes keep the order of the file, both in [`WebhooksConfig::routes`] and in the resolved list.
//!
//! # Error messages
//!
//! A validation error reads `<path>: <message>`, where `<path>` is the dotted key path of the
//! offending value and array elements are written `[index]`:
//!
//! - inside the plugin config, paths start with `webhooks.` (as the original's duplicate-path
//!   message does), whichever shape was loaded: `webhooks.routes.zap.foo: unknown key`,
//!   `webhooks.routes.zap.secret[1].source: must be "env", "file" or "exec"`,
//!   `webhooks.limits.rateLimit.maxRequests: must be an integer >= 1`;
//! - elsewhere, the path is the one in the file: `secrets.providers.vault.command: must be an absolute
//!   path`, `plugins.entries.webhooks.enabled: must be a boolean`.
//!
//! Messages name the key, not the value, so a secret written in the wrong place is not echoed. The
//! one exception is an invalid `trustedProxies` entry, quoted so the operator can find it.
//! Two enabled routes on one path fail with the original's exact text:
//! `webhooks.routes.<laterId>.path conflicts with routes.<firstId>.path (<path>).`
//!
//! # Choices where the contract is silent
//!
//! - Arrays and objects may nest at most [`MAX_NESTING_DEPTH`] (128) levels deep, the outermost
//!   value being level 1; a deeper text is [`ConfigError::TooDeep`], also in a section that is
//!   otherwise ignored. The check is a scan before parsing, so no file can overflow the parser's
//!   stack, at startup or on a reload.
//! - Disabled routes are validated like enabled ones (a typo is caught before the route is switched
//!   on), but do not take part in the duplicate-path check and are never resolved.
//! - Duplicate paths are checked when loading, among enabled routes, before secrets are resolved: a
//!   route later skipped for an unresolved secret still conflicts. The route set is thus a property of
//!   the file alone, and reloading cannot turn a valid file into an invalid one.
//! - An explicit `path` must be non-empty after trimming, although normalisation would make `""` into
//!   `/`: serving the root by accident is worse than a startup error.
//! - "Trimmed" means as JavaScript's `String.prototype.trim` trims, since the original is
//!   JavaScript: a byte-order mark (U+FEFF) is removed, U+0085 (NEXT LINE) is kept, unlike Rust's
//!   `str::trim`. This holds for every configured string and every resolved secret.
//! - Route ids are trimmed; two keys that trim to the same id are an error. A key written twice in
//!   one object keeps its last value, as `JSON.parse` does (the json5 parser gives no way to tell).
//! - With several secrets, the route is skipped if **any** of them does not resolve: a route serves
//!   exactly what is configured or nothing, so a broken rotation is noticed at once. The reason then
//!   names `…secret[<index>]`.
//! - Limits accept a float without a fractional part (`6e4`), as JSON5 reads exponents as floats.
//!   Every number, durations included, is capped at `u32::MAX` (4294967295): no layer can then
//!   overflow an `Instant` or a counter with a configured value.
//! - `secrets.providers.*.path` and `command` must be absolute: a relative path would depend on the
//!   gateway's working directory. Every provider is validated when loading, used or not (in a whole
//!   file, only when the plugin has a config and is not disabled).
//! - `exec` helpers run with an empty environment plus the provider's `env`, without a shell, with
//!   stderr discarded (it may echo secrets). One ref used by several routes runs its helper once per
//!   resolve. On Unix a helper leads a process group of its own; one that times out (or whose
//!   output is unreadable or too large) is killed with that whole group, so a shell wrapper's
//!   children die with it.
//!
//! # Example
//!
//! ```
//! use tower_webhooks::{ChildSessionPolicy, WebhooksConfig};
//!
//! let config = WebhooksConfig::from_json5(r#"
//! {
//!   // Comments and trailing commas are fine: this is JSON5.
//!   routes: {
//!     zapier: {
//!       path: "hooks/zapier/",
//!       sessionKey: "agent:main:main",
//!       secret: "s3cret-from-the-file",
//!     },
//!     ci: {
//!       sessionKey: "agent:ci:main",
//!       secret: { source: "env", provider: "default", id: "TOWER_WEBHOOKS_DOC_UNSET_VAR" },
//!       childSessions: "descendant",
//!     },
//!   },
//!   limits: { rateLimit: { maxRequests: 60 } },
//! }
//! "#)?;
//!
//! assert_eq!(config.routes()[0].path, "/hooks/zapier");
//! assert_eq!(config.routes()[1].path, "/plugins/webhooks/ci");
//! assert_eq!(config.routes()[1].child_sessions, ChildSessionPolicy::Descendant);
//! assert_eq!(config.limits().rate_limit.max_requests, 60);
//!
//! let resolved = config.resolve();
//! assert_eq!(resolved.routes.len(), 1);
//! assert_eq!(resolved.routes[0].secrets[0].expose(), "s3cret-from-the-file");
//! assert_eq!(
//!     resolved.skipped[0].to_string(),
//!     "[webhooks] skipping route ci: could not resolve \
//!      plugins.entries.webhooks.config.routes.ci.secret \
//!      (env:default:TOWER_WEBHOOKS_DOC_UNSET_VAR): \
//!      environment variable TOWER_WEBHOOKS_DOC_UNSET_VAR is not set",
//! );
//! # Ok::<(), tower_webhooks::ConfigError>(())
//! ```

mod error;
mod limits;
mod metrics;
mod nesting;
mod path;
mod routes;
mod secrets;
mod store;
mod value;

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

pub use error::ConfigError;
pub use limits::Limits;
pub use metrics::MetricsSettings;
pub use nesting::MAX_NESTING_DEPTH;
pub use path::{normalize_webhook_path, request_route_path};
pub use routes::{ResolvedRoute, RouteConfig, SkippedRoute};
pub use secrets::{
    DEFAULT_EXEC_TIMEOUT, ExecProvider, FileMode, MAX_SECRET_BYTES, SecretInput, SecretProvider,
    SecretProviders, SecretRef, SecretSource, UnresolvedSecret,
};
pub use store::StoreSetting;

use crate::secret::Secret;
pub(crate) use value::js_trim;
use value::{deny_unknown, join, object, opt_bool};

/// Where the plugin config sits in a whole OpenClaw file; also the prefix of skip reasons.
const OPENCLAW_CONFIG_PATH: &str = "plugins.entries.webhooks.config";
/// The prefix of every error path inside the plugin config.
const PLUGIN_PATH: &str = "webhooks";

/// A validated webhooks configuration, secrets not yet resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhooksConfig {
    enabled: bool,
    routes: Vec<RouteConfig>,
    limits: Limits,
    metrics: MetricsSettings,
    store: StoreSetting,
    providers: SecretProviders,
}

/// The outcome of [`WebhooksConfig::resolve`]: what to serve, and what was left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedConfig {
    /// Enabled routes whose secrets all resolved, in file order.
    pub routes: Vec<ResolvedRoute>,
    /// Enabled routes left out, in file order; each was also logged as a warning.
    pub skipped: Vec<SkippedRoute>,
    /// The limits, as configured.
    pub limits: Limits,
}

impl ResolvedConfig {
    /// The warning lines, exactly as logged: `[webhooks] skipping route <routeId>: <reason>`.
    pub fn warnings(&self) -> Vec<String> {
        self.skipped.iter().map(ToString::to_string).collect()
    }
}

impl WebhooksConfig {
    /// Parses and validates JSON5 text in either shape (see the [module docs](self)).
    ///
    /// Text nested deeper than [`MAX_NESTING_DEPTH`] levels is refused before it is parsed.
    pub fn from_json5(text: &str) -> Result<Self, ConfigError> {
        Self::from_value(&parse_json5(text, None)?)
    }

    /// Reads, parses and validates a JSON5 file in either shape, refusing one nested deeper than
    /// [`MAX_NESTING_DEPTH`] levels before it is parsed.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_value(&parse_json5(&text, Some(path))?)
    }

    /// Validates an already parsed value in either shape.
    pub fn from_value(value: &Value) -> Result<Self, ConfigError> {
        let root = value
            .as_object()
            .ok_or_else(|| ConfigError::invalid("", "the configuration must be an object"))?;
        if root.contains_key("plugins") {
            Self::from_openclaw_file(root)
        } else {
            deny_unknown(
                root,
                PLUGIN_PATH,
                &["routes", "limits", "metrics", "store", "secrets"],
            )?;
            let providers = match root.get("secrets") {
                Some(secrets) => providers_from_secrets(secrets)?,
                None => SecretProviders::default(),
            };
            Self::from_plugin_config(root, providers)
        }
    }

    fn from_openclaw_file(root: &value::Object) -> Result<Self, ConfigError> {
        for misplaced in ["routes", "limits"] {
            if root.contains_key(misplaced) {
                return Err(ConfigError::invalid(
                    misplaced,
                    format!(
                        "belongs under {OPENCLAW_CONFIG_PATH} in a whole OpenClaw config file \
                         (a top-level `plugins` key makes this one)"
                    ),
                ));
            }
        }
        let plugins = object(&root["plugins"], "plugins")?;
        let entry = match plugins.get("entries") {
            Some(entries) => object(entries, "plugins.entries")?.get("webhooks"),
            None => None,
        };
        let Some(entry) = entry else {
            return Ok(Self::empty(true));
        };
        let entry = object(entry, "plugins.entries.webhooks")?;
        if opt_bool(entry, "enabled", "plugins.entries.webhooks")? == Some(false) {
            return Ok(Self::empty(false));
        }
        let Some(config) = entry.get("config") else {
            return Ok(Self::empty(true));
        };
        let config = object(config, PLUGIN_PATH)?;
        deny_unknown(
            config,
            PLUGIN_PATH,
            &["routes", "limits", "metrics", "store"],
        )?;
        let providers = match root.get("secrets") {
            Some(secrets) => providers_from_secrets(secrets)?,
            None => SecretProviders::default(),
        };
        Self::from_plugin_config(config, providers)
    }

    fn from_plugin_config(
        config: &value::Object,
        providers: SecretProviders,
    ) -> Result<Self, ConfigError> {
        let routes = match config.get("routes") {
            Some(routes) => routes::parse_routes(routes, &join(PLUGIN_PATH, "routes"))?,
            None => Vec::new(),
        };
        let limits = match config.get("limits") {
            Some(limits) => Limits::from_value(limits, &join(PLUGIN_PATH, "limits"))?,
            None => Limits::default(),
        };
        let metrics = match config.get("metrics") {
            Some(metrics) => MetricsSettings::from_value(metrics, &join(PLUGIN_PATH, "metrics"))?,
            None => MetricsSettings::default(),
        };
        let store = match config.get("store") {
            Some(store) => StoreSetting::from_value(store, &join(PLUGIN_PATH, "store"))?,
            None => StoreSetting::default(),
        };
        Ok(Self {
            enabled: true,
            routes,
            limits,
            metrics,
            store,
            providers,
        })
    }

    fn empty(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }

    /// `false` when a whole OpenClaw file sets `plugins.entries.webhooks.enabled: false`.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Every configured route, disabled ones included, in file order.
    pub fn routes(&self) -> &[RouteConfig] {
        &self.routes
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// `metrics`: where the gateway serves its metrics.
    pub fn metrics(&self) -> &MetricsSettings {
        &self.metrics
    }

    /// `store`: which TaskFlow store to run on (memory when unset).
    pub fn store(&self) -> &StoreSetting {
        &self.store
    }

    /// The store `store` names, resolving a SecretRef now (blocking) and taking a relative SQLite
    /// path relative to `base` (the config file's directory). Errors name `webhooks.store` and
    /// never show the URL.
    pub fn store_url(&self, base: Option<&Path>) -> Result<crate::taskflow::StoreUrl, ConfigError> {
        self.store
            .resolve(&self.providers, base, &join(PLUGIN_PATH, "store"))
    }

    /// `secrets.providers`.
    pub fn providers(&self) -> &SecretProviders {
        &self.providers
    }

    /// Resolves every enabled route's secrets now.
    ///
    /// Blocking: reads environment variables and files and runs `exec` helpers (each bounded by its
    /// timeout). Call it at startup and again to reload; call it from `spawn_blocking` inside an
    /// async runtime. Each skipped route is logged with `tracing::warn!` and listed in
    /// [`ResolvedConfig::skipped`].
    pub fn resolve(&self) -> ResolvedConfig {
        let mut cache: HashMap<&SecretRef, Result<Secret, UnresolvedSecret>> = HashMap::new();
        let mut routes = Vec::new();
        let mut skipped = Vec::new();
        for route in self.routes.iter().filter(|r| r.enabled) {
            match self.resolve_route(route, &mut cache) {
                Ok(secrets) => routes.push(ResolvedRoute {
                    id: route.id.clone(),
                    path: route.path.clone(),
                    session_key: route.session_key.clone(),
                    secrets,
                    controller_id: route.controller_id.clone(),
                    description: route.description.clone(),
                    child_sessions: route.child_sessions.clone(),
                }),
                Err(reason) => {
                    let skip = SkippedRoute {
                        route_id: route.id.clone(),
                        reason,
                    };
                    tracing::warn!("{skip}");
                    skipped.push(skip);
                }
            }
        }
        ResolvedConfig {
            routes,
            skipped,
            limits: self.limits.clone(),
        }
    }

    fn resolve_route<'a>(
        &'a self,
        route: &'a RouteConfig,
        cache: &mut HashMap<&'a SecretRef, Result<Secret, UnresolvedSecret>>,
    ) -> Result<Vec<Secret>, String> {
        let mut secrets = Vec::with_capacity(route.secret.len());
        for (i, input) in route.secret.iter().enumerate() {
            match input {
                SecretInput::Plain(secret) => secrets.push(secret.clone()),
                SecretInput::Ref(reference) => {
                    let resolved = cache
                        .entry(reference)
                        .or_insert_with(|| self.providers.resolve(reference));
                    match resolved {
                        Ok(secret) => secrets.push(secret.clone()),
                        Err(why) => {
                            let mut at =
                                format!("{OPENCLAW_CONFIG_PATH}.routes.{}.secret", route.id);
                            if route.secret.len() > 1 {
                                at = value::index(&at, i);
                            }
                            return Err(format!("could not resolve {at} ({reference}): {why}"));
                        }
                    }
                }
            }
        }
        Ok(secrets)
    }
}

/// Parses JSON5 text, refusing first what nests too deep for the parser's recursion.
fn parse_json5(text: &str, file: Option<&Path>) -> Result<Value, ConfigError> {
    nesting::check_nesting(text, MAX_NESTING_DEPTH).map_err(|at| ConfigError::TooDeep {
        file: file.map(Path::to_owned),
        line: at.line,
        column: at.column,
    })?;
    json5::from_str(text).map_err(|e| ConfigError::from_json5(e, file.map(Path::to_owned)))
}

fn providers_from_secrets(secrets: &Value) -> Result<SecretProviders, ConfigError> {
    match object(secrets, "secrets")?.get("providers") {
        Some(providers) => SecretProviders::from_value(providers, "secrets.providers"),
        None => Ok(SecretProviders::default()),
    }
}
