//! The route keys of SPEC §8: `auth`, `allowedIps`, `events`, `event`, `idempotency`,
//! `verification`, `dispatch`, `prompt`, `skills`.

use std::time::Duration;

use http::HeaderName;
use serde_json::Value;

use super::ConfigError;
use super::secrets::SecretInput;
use super::value::{
    Object, deny_unknown, index, join, object, opt_bool, opt_string, positive_int, string,
};
use crate::auth::WEBHOOK_SECRET_HEADER;
use crate::client_ip::parse_net;
use crate::events::{EventTypeSource, Idempotency, Verification};
use crate::ip_allowlist::AllowedIps;
use crate::signature::{DEFAULT_TOLERANCE, SignatureScheme, X_WEBHOOK_SIGNATURE};
use crate::taskflow::{FlowStatus, NotifyPolicy, TaskStatus};

/// How a route authenticates a request (`auth.mode`, SPEC §2.2 and §8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMode {
    /// No `auth`: `Authorization: Bearer` or `x-openclaw-webhook-secret`, as SPEC §2.2.
    #[default]
    SharedSecret,
    /// `bearer`: `Authorization: <prefix> <secret>` only (`prefix` default `Bearer`, matched
    /// case-insensitively); `x-openclaw-webhook-secret` is not read.
    Bearer {
        /// The scheme word before the secret.
        prefix: String,
    },
    /// `header`: the secret in `header` (default `x-openclaw-webhook-secret`), after `prefix`
    /// (case-sensitive) when there is one.
    Header {
        /// The header holding the secret.
        header: HeaderName,
        /// Text the value must start with, removed before comparing.
        prefix: Option<String>,
    },
    /// `hmac-sha256`: `header` (default `x-webhook-signature`) holds the hex HMAC-SHA256 of the raw
    /// body, after `prefix` (case-sensitive); checked once the body is read. No timestamp.
    HmacSha256 {
        /// The header holding the signature.
        header: HeaderName,
        /// Text before the hex digits.
        prefix: Option<String>,
    },
    /// `signature`: a sender's own scheme, checked once the body is read.
    Signature {
        /// `auth.scheme`.
        scheme: SignatureScheme,
        /// `auth.toleranceSeconds` (default 300).
        tolerance: Duration,
    },
}

impl AuthMode {
    /// The configuration word (`shared-secret` for a route without `auth`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::SharedSecret => "shared-secret",
            Self::Bearer { .. } => "bearer",
            Self::Header { .. } => "header",
            Self::HmacSha256 { .. } => "hmac-sha256",
            Self::Signature { .. } => "signature",
        }
    }

    /// Whether the check needs the body (`hmac-sha256`, `signature`): it then runs right after the
    /// body is read; the other modes are checked before a body byte is read.
    pub fn needs_body(&self) -> bool {
        matches!(self, Self::HmacSha256 { .. } | Self::Signature { .. })
    }

    /// The signature scheme the body is verified with, for the modes that need the body.
    pub fn signature_scheme(&self) -> Option<SignatureScheme> {
        match self {
            Self::HmacSha256 { header, prefix } => Some(SignatureScheme::HmacSha256 {
                header: header.clone(),
                prefix: prefix.clone(),
            }),
            Self::Signature { scheme, .. } => Some(scheme.clone()),
            _ => None,
        }
    }
}

/// What a route does with a request body (`dispatch`, SPEC §8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dispatch {
    /// The TaskFlow action API of SPEC §3 (a route without `dispatch.mode: "ack"`,
    /// `dispatch.taskflow` or `prompt`).
    #[default]
    Actions,
    /// `ack`: answer `200` with the event type and idempotency key; nothing else happens.
    Ack,
    /// `taskflow` with templates: a managed flow, and a child task unless turned off.
    TaskFlow(Box<TaskFlowDispatch>),
}

/// `dispatch.taskflow`: the flow an event creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFlowDispatch {
    /// `goalTemplate`: rendered first for the goal, then `prompt`, then the default prompt.
    pub goal_template: Option<String>,
    /// `currentStep`.
    pub current_step: Option<String>,
    /// `status` (default `queued`): `queued`, `running`, `waiting` or `blocked`.
    pub status: FlowStatus,
    /// `notifyPolicy` (default `done_only`).
    pub notify_policy: NotifyPolicy,
    /// `runTask`: `None` without the key (no child task); `enabled: false` also means no task.
    pub run_task: Option<RunTaskDispatch>,
}

impl Default for TaskFlowDispatch {
    fn default() -> Self {
        Self {
            goal_template: None,
            current_step: None,
            status: FlowStatus::Queued,
            notify_policy: NotifyPolicy::DoneOnly,
            run_task: None,
        }
    }
}

/// `dispatch.taskflow.runTask`: the child task (runtime `acp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunTaskDispatch {
    /// `enabled` (default `true`).
    pub enabled: bool,
    /// `taskTemplate`: rendered first for the task text, then `prompt`, then the default prompt.
    pub task_template: Option<String>,
    /// `runIdTemplate`: rendered first for the run id, then the idempotency key, then
    /// `<routeId>:<flowId>`.
    pub run_id_template: Option<String>,
    /// `labelTemplate`.
    pub label_template: Option<String>,
    /// `childSessionKey` (checked against the route's `childSessions` policy).
    pub child_session_key: Option<String>,
    /// `sourceId`.
    pub source_id: Option<String>,
    /// `parentTaskId`.
    pub parent_task_id: Option<String>,
    /// `agentId`.
    pub agent_id: Option<String>,
    /// `notifyPolicy` (default: the task default, `state_changes`).
    pub notify_policy: Option<NotifyPolicy>,
    /// `status` (default `queued`): `queued` or `running`.
    pub status: TaskStatus,
}

/// The SPEC §8 settings of one route. The default is a route without any of them: it behaves
/// exactly as a SPEC §1 route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventSettings {
    /// `events`: the allowed event types; empty lets every event through.
    pub events: Vec<String>,
    /// `event`: where the event type is read.
    pub event: EventTypeSource,
    /// `idempotency`: de-duplication, off without the key.
    pub idempotency: Option<Idempotency>,
    /// `verification`: URL-verification handshakes.
    pub verification: Option<Verification>,
    /// `dispatch` (with `prompt`, which alone makes a `taskflow` event route).
    pub dispatch: Dispatch,
    /// `prompt`: the fallback template of the goal and the task.
    pub prompt: Option<String>,
    /// `skills`: appended to goal and task as a hint.
    pub skills: Vec<String>,
}

impl EventSettings {
    /// Whether the body is a sender's event (`ack` or `taskflow` dispatch) rather than a TaskFlow
    /// action.
    pub fn is_event_route(&self) -> bool {
        !matches!(self.dispatch, Dispatch::Actions)
    }

    /// Whether any SPEC §8 key is set, so the route needs the event pipeline.
    pub fn is_set(&self) -> bool {
        *self != Self::default()
    }
}

/// The keys of a route this module reads.
pub(crate) const EVENT_ROUTE_KEYS: &[&str] = &[
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

/// `auth`, read: the mode and the secrets of `auth.secret`, if any.
pub(crate) fn parse_auth(
    value: &Value,
    path: &str,
) -> Result<(AuthMode, Option<Vec<SecretInput>>), ConfigError> {
    let map = object(value, path)?;
    deny_unknown(
        map,
        path,
        &[
            "mode",
            "secret",
            "header",
            "prefix",
            "scheme",
            "toleranceSeconds",
        ],
    )?;
    let mode_path = join(path, "mode");
    let mode = match map.get("mode") {
        Some(v) => string(v, &mode_path)?,
        None => return Err(ConfigError::invalid(mode_path, "is required")),
    };
    let secret = map
        .get("secret")
        .map(|v| SecretInput::list_from_value(v, &join(path, "secret")))
        .transpose()?;
    let header = map
        .get("header")
        .map(|v| header_name(v, &join(path, "header")))
        .transpose()?;
    let prefix = opt_string(map, "prefix", path)?;
    let only_with = |key: &str, modes: &str| -> Result<(), ConfigError> {
        if map.contains_key(key) {
            Err(ConfigError::invalid(
                join(path, key),
                format!("only applies to mode {modes}"),
            ))
        } else {
            Ok(())
        }
    };
    let mode = match mode.as_str() {
        "bearer" => {
            only_with("header", r#""header" or "hmac-sha256""#)?;
            only_with("scheme", r#""signature""#)?;
            only_with("toleranceSeconds", r#""signature""#)?;
            AuthMode::Bearer {
                prefix: prefix.unwrap_or_else(|| "Bearer".to_owned()),
            }
        }
        "header" | "hmac-sha256" => {
            only_with("scheme", r#""signature""#)?;
            only_with("toleranceSeconds", r#""signature""#)?;
            if mode == "header" {
                AuthMode::Header {
                    header: header.unwrap_or(WEBHOOK_SECRET_HEADER),
                    prefix,
                }
            } else {
                AuthMode::HmacSha256 {
                    header: header.unwrap_or(X_WEBHOOK_SIGNATURE),
                    prefix,
                }
            }
        }
        "signature" => {
            only_with("header", r#""header" or "hmac-sha256""#)?;
            only_with("prefix", r#""bearer", "header" or "hmac-sha256""#)?;
            let scheme_path = join(path, "scheme");
            let scheme = match map.get("scheme") {
                Some(v) => {
                    let name = string(v, &scheme_path)?;
                    SignatureScheme::from_name(&name)
                        .filter(|s| !matches!(s, SignatureScheme::HmacSha256 { .. }))
                        .ok_or_else(|| {
                            ConfigError::invalid(
                                &scheme_path,
                                r#"must be "standard-webhooks", "github", "stripe" or "slack""#,
                            )
                        })?
                }
                None => {
                    return Err(ConfigError::invalid(
                        scheme_path,
                        r#"is required with mode "signature""#,
                    ));
                }
            };
            let tolerance = match map.get("toleranceSeconds") {
                Some(v) => Duration::from_secs(positive_int(
                    v,
                    &join(path, "toleranceSeconds"),
                    u64::from(u32::MAX),
                )?),
                None => DEFAULT_TOLERANCE,
            };
            AuthMode::Signature { scheme, tolerance }
        }
        _ => {
            return Err(ConfigError::invalid(
                mode_path,
                r#"must be "bearer", "header", "hmac-sha256" or "signature""#,
            ));
        }
    };
    Ok((mode, secret))
}

fn header_name(value: &Value, path: &str) -> Result<HeaderName, ConfigError> {
    let name = string(value, path)?;
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| ConfigError::invalid(path, "must be a header name"))
}

/// `allowedIps`: an array of CIDR blocks or addresses.
pub(crate) fn parse_allowed_ips(value: &Value, path: &str) -> Result<AllowedIps, ConfigError> {
    let nets = string_list(value, path)?
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            parse_net(entry)
                .map_err(|invalid| ConfigError::invalid(index(path, i), invalid.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AllowedIps::new(nets))
}

/// An array of non-empty strings (trimmed).
fn string_list(value: &Value, path: &str) -> Result<Vec<String>, ConfigError> {
    value
        .as_array()
        .ok_or_else(|| ConfigError::invalid(path, "must be an array of strings"))?
        .iter()
        .enumerate()
        .map(|(i, item)| string(item, &index(path, i)))
        .collect()
}

/// The SPEC §8 keys of a route (`allowedIps` and `auth` aside).
pub(crate) fn parse_event_settings(map: &Object, path: &str) -> Result<EventSettings, ConfigError> {
    let events = map
        .get("events")
        .map(|v| string_list(v, &join(path, "events")))
        .transpose()?
        .unwrap_or_default();
    let event = match map.get("event") {
        Some(v) => {
            let at = join(path, "event");
            let event = object(v, &at)?;
            deny_unknown(event, &at, &["header", "payloadPath"])?;
            EventTypeSource {
                header: event
                    .get("header")
                    .map(|v| header_name(v, &join(&at, "header")))
                    .transpose()?,
                payload_path: opt_string(event, "payloadPath", &at)?,
            }
        }
        None => EventTypeSource::default(),
    };
    let idempotency = map
        .get("idempotency")
        .map(|v| parse_idempotency(v, &join(path, "idempotency")))
        .transpose()?;
    let verification = map
        .get("verification")
        .map(|v| {
            let at = join(path, "verification");
            let verification = object(v, &at)?;
            deny_unknown(
                verification,
                &at,
                &["event", "challengePath", "responsePath"],
            )?;
            let defaults = Verification::default();
            Ok::<_, ConfigError>(Verification {
                event: opt_string(verification, "event", &at)?,
                challenge_path: opt_string(verification, "challengePath", &at)?
                    .unwrap_or(defaults.challenge_path),
                response_path: opt_string(verification, "responsePath", &at)?
                    .unwrap_or(defaults.response_path),
            })
        })
        .transpose()?;
    let prompt = opt_string(map, "prompt", path)?;
    let skills = map
        .get("skills")
        .map(|v| string_list(v, &join(path, "skills")))
        .transpose()?
        .unwrap_or_default();
    let dispatch = match map.get("dispatch") {
        Some(v) => parse_dispatch(v, &join(path, "dispatch"), prompt.is_some())?,
        // `prompt` alone makes a `taskflow` event route with the default flow settings.
        None if prompt.is_some() => Dispatch::TaskFlow(Box::default()),
        None => Dispatch::Actions,
    };
    Ok(EventSettings {
        events,
        event,
        idempotency,
        verification,
        dispatch,
        prompt,
        skills,
    })
}

fn parse_idempotency(value: &Value, path: &str) -> Result<Idempotency, ConfigError> {
    /// A century: far beyond any sender's retry window, and far from overflowing a clock.
    const MAX_TTL_HOURS: f64 = 876_600.0;
    let map = object(value, path)?;
    deny_unknown(map, path, &["header", "payloadPath", "ttlHours"])?;
    let ttl = match map.get("ttlHours") {
        Some(v) => {
            let hours = v
                .as_f64()
                .filter(|h| h.is_finite() && *h > 0.0 && *h <= MAX_TTL_HOURS)
                .ok_or_else(|| {
                    ConfigError::invalid(
                        join(path, "ttlHours"),
                        "must be a number > 0 and at most 876600 (a century)",
                    )
                })?;
            // Whole milliseconds; a positive TTL never rounds down to nothing.
            Duration::from_millis(((hours * 3_600_000.0) as u64).max(1))
        }
        None => Idempotency::default().ttl,
    };
    Ok(Idempotency {
        header: map
            .get("header")
            .map(|v| header_name(v, &join(path, "header")))
            .transpose()?,
        payload_path: opt_string(map, "payloadPath", path)?,
        ttl,
    })
}

fn parse_dispatch(value: &Value, path: &str, has_prompt: bool) -> Result<Dispatch, ConfigError> {
    let map = object(value, path)?;
    deny_unknown(map, path, &["mode", "taskflow"])?;
    let mode_path = join(path, "mode");
    let mode = match map.get("mode") {
        Some(v) => string(v, &mode_path)?,
        None => return Err(ConfigError::invalid(mode_path, "is required")),
    };
    match mode.as_str() {
        "ack" => {
            if map.contains_key("taskflow") {
                return Err(ConfigError::invalid(
                    join(path, "taskflow"),
                    r#"only applies to mode "taskflow""#,
                ));
            }
            Ok(Dispatch::Ack)
        }
        "taskflow" => match map.get("taskflow") {
            Some(v) => Ok(Dispatch::TaskFlow(Box::new(parse_taskflow(
                v,
                &join(path, "taskflow"),
            )?))),
            None if has_prompt => Ok(Dispatch::TaskFlow(Box::default())),
            // Neither templates nor a prompt: the body stays a TaskFlow action (SPEC §8).
            None => Ok(Dispatch::Actions),
        },
        "agent" | "deliver" => Err(ConfigError::invalid(
            mode_path,
            format!("\"{mode}\" is not supported"),
        )),
        _ => Err(ConfigError::invalid(
            mode_path,
            r#"must be "taskflow" or "ack""#,
        )),
    }
}

fn enum_value<T>(
    map: &Object,
    key: &str,
    path: &str,
    allowed: &[T],
    name: impl Fn(&T) -> &'static str,
) -> Result<Option<T>, ConfigError>
where
    T: Copy,
{
    let Some(value) = opt_string(map, key, path)? else {
        return Ok(None);
    };
    allowed
        .iter()
        .find(|candidate| name(candidate) == value)
        .copied()
        .map(Some)
        .ok_or_else(|| {
            let words: Vec<String> = allowed.iter().map(|a| format!("\"{}\"", name(a))).collect();
            ConfigError::invalid(
                join(path, key),
                format!("must be one of {}", words.join(", ")),
            )
        })
}

fn parse_taskflow(value: &Value, path: &str) -> Result<TaskFlowDispatch, ConfigError> {
    let map = object(value, path)?;
    deny_unknown(
        map,
        path,
        &[
            "goalTemplate",
            "currentStep",
            "status",
            "notifyPolicy",
            "runTask",
        ],
    )?;
    let flow_statuses = [
        FlowStatus::Queued,
        FlowStatus::Running,
        FlowStatus::Waiting,
        FlowStatus::Blocked,
    ];
    let run_task = map
        .get("runTask")
        .map(|v| parse_run_task(v, &join(path, "runTask")))
        .transpose()?;
    Ok(TaskFlowDispatch {
        goal_template: opt_string(map, "goalTemplate", path)?,
        current_step: opt_string(map, "currentStep", path)?,
        status: enum_value(map, "status", path, &flow_statuses, |s| s.as_str())?
            .unwrap_or(FlowStatus::Queued),
        notify_policy: enum_value(map, "notifyPolicy", path, NotifyPolicy::ALL, |p| p.as_str())?
            .unwrap_or(NotifyPolicy::DoneOnly),
        run_task,
    })
}

fn parse_run_task(value: &Value, path: &str) -> Result<RunTaskDispatch, ConfigError> {
    let map = object(value, path)?;
    deny_unknown(
        map,
        path,
        &[
            "enabled",
            "taskTemplate",
            "runIdTemplate",
            "labelTemplate",
            "childSessionKey",
            "sourceId",
            "parentTaskId",
            "agentId",
            "notifyPolicy",
            "status",
        ],
    )?;
    Ok(RunTaskDispatch {
        enabled: opt_bool(map, "enabled", path)?.unwrap_or(true),
        task_template: opt_string(map, "taskTemplate", path)?,
        run_id_template: opt_string(map, "runIdTemplate", path)?,
        label_template: opt_string(map, "labelTemplate", path)?,
        child_session_key: opt_string(map, "childSessionKey", path)?,
        source_id: opt_string(map, "sourceId", path)?,
        parent_task_id: opt_string(map, "parentTaskId", path)?,
        agent_id: opt_string(map, "agentId", path)?,
        notify_policy: enum_value(map, "notifyPolicy", path, NotifyPolicy::ALL, |p| p.as_str())?,
        status: enum_value(
            map,
            "status",
            path,
            &[TaskStatus::Queued, TaskStatus::Running],
            |s| s.as_str(),
        )?
        .unwrap_or(TaskStatus::Queued),
    })
}
