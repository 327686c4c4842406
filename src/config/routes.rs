//! Routes (SPEC §1): the configured form and the resolved form.

use std::fmt;

use serde_json::Value;

use super::ConfigError;
use super::path::normalize_webhook_path;
use super::secrets::SecretInput;
use super::value::{deny_unknown, index, join, js_trim, object, opt_bool, opt_string, string};
use crate::health::{HEALTHZ, READYZ};
use crate::secret::Secret;
use crate::taskflow::ChildSessionPolicy;

/// Reads `childSessions`: `"same-agent"`, `"descendant"`, `"any"` (JavaScript-trimmed, like every
/// config string) or an array of prefixes.
fn child_session_policy(value: &Value, path: &str) -> Result<ChildSessionPolicy, ConfigError> {
    const EXPECTED: &str = r#"must be "same-agent", "descendant", "any" or an array of prefixes"#;
    match value {
        Value::String(name) => ChildSessionPolicy::from_name(js_trim(name))
            .ok_or_else(|| ConfigError::invalid(path, EXPECTED)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(item, &index(path, i)))
            .collect::<Result<_, _>>()
            .map(ChildSessionPolicy::Prefixes),
        _ => Err(ConfigError::invalid(path, EXPECTED)),
    }
}

/// One route as configured, secrets not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// The route id (the key under `routes`), trimmed.
    pub id: String,
    /// `enabled`: a disabled route is validated but serves nothing and reserves no path.
    pub enabled: bool,
    /// `path`, normalised. Default `/plugins/webhooks/<id>`. `/healthz` and `/readyz` are refused:
    /// the health check answers them before route lookup.
    pub path: String,
    /// `sessionKey`: the owner of every flow this route touches.
    pub session_key: String,
    /// `secret`: one or more candidates; any of them authenticates.
    pub secret: Vec<SecretInput>,
    /// `controllerId`. Default `webhooks/<id>`.
    pub controller_id: String,
    /// `description`: an operator note.
    pub description: Option<String>,
    /// `childSessions`. Default [`ChildSessionPolicy::SameAgent`].
    pub child_sessions: ChildSessionPolicy,
}

const ROUTE_KEYS: &[&str] = &[
    "enabled",
    "path",
    "sessionKey",
    "secret",
    "controllerId",
    "description",
    "childSessions",
];

impl RouteConfig {
    fn from_value(id: String, value: &Value, path: &str) -> Result<Self, ConfigError> {
        let map = object(value, path)?;
        deny_unknown(map, path, ROUTE_KEYS)?;
        let enabled = opt_bool(map, "enabled", path)?.unwrap_or(true);
        let route_path = match map.get("path") {
            // An explicit path must be non-empty after trimming, although normalisation would turn
            // "" into "/": serving the root by accident is worse than a startup error.
            Some(v) => normalize_webhook_path(&string(v, &join(path, "path"))?).into_owned(),
            None => normalize_webhook_path(&format!("/plugins/webhooks/{id}")).into_owned(),
        };
        // Checked on disabled routes too, so the mistake shows before the route is switched on.
        if route_path == HEALTHZ || route_path == READYZ {
            return Err(ConfigError::invalid(
                join(path, "path"),
                format!("{route_path} is answered by the health check and cannot be a route"),
            ));
        }
        let session_key = opt_string(map, "sessionKey", path)?
            .ok_or_else(|| ConfigError::invalid(join(path, "sessionKey"), "is required"))?;
        let secret = match map.get("secret") {
            Some(v) => SecretInput::list_from_value(v, &join(path, "secret"))?,
            None => return Err(ConfigError::invalid(join(path, "secret"), "is required")),
        };
        let controller_id =
            opt_string(map, "controllerId", path)?.unwrap_or_else(|| format!("webhooks/{id}"));
        let description = opt_string(map, "description", path)?;
        let child_sessions = map
            .get("childSessions")
            .map(|v| child_session_policy(v, &join(path, "childSessions")))
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            id,
            enabled,
            path: route_path,
            session_key,
            secret,
            controller_id,
            description,
            child_sessions,
        })
    }
}

/// Reads `routes` (at `path`) in file order, then checks that no two enabled routes share a path.
pub(crate) fn parse_routes(value: &Value, path: &str) -> Result<Vec<RouteConfig>, ConfigError> {
    let map = object(value, path)?;
    let mut routes: Vec<RouteConfig> = Vec::with_capacity(map.len());
    for (raw_id, route) in map {
        let id = js_trim(raw_id);
        if id.is_empty() {
            return Err(ConfigError::invalid(path, "route ids must not be empty"));
        }
        let route_path = join(path, id);
        if routes.iter().any(|r| r.id == id) {
            return Err(ConfigError::invalid(
                route_path,
                "duplicate route id (ids are trimmed)",
            ));
        }
        routes.push(RouteConfig::from_value(id.to_owned(), route, &route_path)?);
    }
    let mut seen: Vec<&RouteConfig> = Vec::new();
    for route in routes.iter().filter(|r| r.enabled) {
        if let Some(first) = seen.iter().find(|r| r.path == route.path) {
            return Err(ConfigError::DuplicatePath {
                route_id: route.id.clone(),
                first_route_id: first.id.clone(),
                path: route.path.clone(),
            });
        }
        seen.push(route);
    }
    Ok(routes)
}

/// A route ready to serve: secrets resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRoute {
    /// The route id.
    pub id: String,
    /// The normalised path.
    pub path: String,
    /// The owner session.
    pub session_key: String,
    /// The accepted secrets (at least one); any of them authenticates.
    pub secrets: Vec<Secret>,
    /// The default controller id of created flows.
    pub controller_id: String,
    /// The operator note.
    pub description: Option<String>,
    /// The child-session policy.
    pub child_sessions: ChildSessionPolicy,
}

impl ResolvedRoute {
    /// A route built in code, with the contract's defaults: path `/plugins/webhooks/<id>`,
    /// controller id `webhooks/<id>`, `same-agent` child sessions.
    pub fn new(
        id: impl Into<String>,
        session_key: impl Into<String>,
        secrets: impl IntoIterator<Item = Secret>,
    ) -> Self {
        let id = id.into();
        Self {
            path: format!("/plugins/webhooks/{id}"),
            controller_id: format!("webhooks/{id}"),
            session_key: session_key.into(),
            secrets: secrets.into_iter().collect(),
            description: None,
            child_sessions: ChildSessionPolicy::default(),
            id,
        }
    }

    /// Serves the route at `path` (normalised).
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = normalize_webhook_path(path).into_owned();
        self
    }

    /// Creates flows with `controller_id` unless the caller names one.
    pub fn with_controller_id(mut self, controller_id: impl Into<String>) -> Self {
        self.controller_id = controller_id.into();
        self
    }

    /// Scopes `run_task`'s `childSessionKey` with `policy`.
    pub fn with_child_sessions(mut self, policy: ChildSessionPolicy) -> Self {
        self.child_sessions = policy;
        self
    }
}

/// A route left out because a secret did not resolve.
///
/// `Display` is the exact warning \[compat\]: `[webhooks] skipping route <routeId>: <reason>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRoute {
    /// The route id.
    pub route_id: String,
    /// Why: the config path of the secret, the ref as `source:provider:id`, and what failed. Never
    /// the secret value.
    pub reason: String,
}

impl fmt::Display for SkippedRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[webhooks] skipping route {}: {}",
            self.route_id, self.reason
        )
    }
}
