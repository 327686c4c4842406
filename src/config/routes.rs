//! Routes (SPEC §1): the configured form and the resolved form.

use std::fmt;

use serde_json::Value;

use super::ConfigError;
use super::events::{
    AuthMode, Dispatch, EVENT_ROUTE_KEYS, EventSettings, parse_allowed_ips, parse_auth,
    parse_event_settings,
};
use super::path::normalize_webhook_path;
use super::secrets::SecretInput;
use super::value::{deny_unknown, index, join, js_trim, object, opt_bool, opt_string, string};
use crate::health::{HEALTHZ, READYZ};
use crate::ip_allowlist::AllowedIps;
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
    /// `sessionKey`: the owner of every flow this route touches. Empty only on an `ack` route
    /// configured without one: it never touches a flow.
    pub session_key: String,
    /// `secret`: one or more candidates; any of them authenticates. Empty when `auth.secret`
    /// stands in for it.
    pub secret: Vec<SecretInput>,
    /// `auth.mode` and its settings; [`AuthMode::SharedSecret`] without `auth`.
    pub auth: AuthMode,
    /// `auth.secret`: when set, the route's secrets in place of `secret`.
    pub auth_secret: Option<Vec<SecretInput>>,
    /// `allowedIps`: replaces the plugin-level list when set.
    pub allowed_ips: Option<AllowedIps>,
    /// The other SPEC §8 keys: event type, allowlist, idempotency, verification, dispatch.
    pub event: EventSettings,
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
    "auth",
    "allowedIps",
    "events",
    "event",
    "idempotency",
    "verification",
    "dispatch",
    "prompt",
    "skills",
];

impl RouteConfig {
    fn from_value(id: String, value: &Value, path: &str) -> Result<Self, ConfigError> {
        let map = object(value, path)?;
        debug_assert!(EVENT_ROUTE_KEYS.iter().all(|k| ROUTE_KEYS.contains(k)));
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
        let (auth, auth_secret) = match map.get("auth") {
            Some(v) => parse_auth(v, &join(path, "auth"))?,
            None => (AuthMode::SharedSecret, None),
        };
        let event = parse_event_settings(map, path)?;
        // Only an `ack` route may go without an owner: it never touches a flow.
        let session_key = match opt_string(map, "sessionKey", path)? {
            Some(key) => key,
            None if event.dispatch == Dispatch::Ack => String::new(),
            None => {
                return Err(ConfigError::invalid(
                    join(path, "sessionKey"),
                    "is required",
                ));
            }
        };
        let secret = match map.get("secret") {
            Some(v) => SecretInput::list_from_value(v, &join(path, "secret"))?,
            None if auth_secret.is_some() => Vec::new(),
            None => return Err(ConfigError::invalid(join(path, "secret"), "is required")),
        };
        let allowed_ips = map
            .get("allowedIps")
            .map(|v| parse_allowed_ips(v, &join(path, "allowedIps")))
            .transpose()?;
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
            auth,
            auth_secret,
            allowed_ips,
            event,
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
    /// How requests authenticate ([`AuthMode::SharedSecret`] by default).
    pub auth: AuthMode,
    /// The clients let in (`allowedIps`, the route's own or the plugin's); `None` lets everyone in.
    pub allowed_ips: Option<AllowedIps>,
    /// The SPEC §8 settings; the default leaves the route a SPEC §1 route.
    pub event: EventSettings,
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
            auth: AuthMode::SharedSecret,
            allowed_ips: None,
            event: EventSettings::default(),
            id,
        }
    }

    /// Authenticates with `auth` instead of SPEC §2.2's shared secret.
    pub fn with_auth(mut self, auth: AuthMode) -> Self {
        self.auth = auth;
        self
    }

    /// Lets in only clients inside `allowed`.
    pub fn with_allowed_ips(mut self, allowed: AllowedIps) -> Self {
        self.allowed_ips = Some(allowed);
        self
    }

    /// Applies the SPEC §8 `settings`.
    pub fn with_event_settings(mut self, settings: EventSettings) -> Self {
        self.event = settings;
        self
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
