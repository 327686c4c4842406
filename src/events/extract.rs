//! What an event route reads from a delivery before it dispatches: the event type, the URL
//! verification challenge, whether the event is allowed, and the idempotency key (SPEC §8).

use std::time::Duration;

use http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};

use super::value::{lookup, scalar_text};
use crate::secret::js_trim;

/// Headers read for the event type when the route names none, in order.
pub const EVENT_TYPE_HEADERS: [&str; 4] = [
    "x-github-event",
    "x-gitlab-event",
    "x-event-type",
    "x-webhook-event",
];
/// Body paths read for the event type after the headers, in order.
pub const EVENT_TYPE_PATHS: [&str; 4] = ["event_type", "event.type", "event.action", "type"];
/// Headers read for the idempotency key after the scheme's message id, in order.
pub const IDEMPOTENCY_HEADERS: [&str; 4] = [
    "x-github-delivery",
    "x-request-id",
    "x-webhook-id",
    "x-delivery-id",
];
/// Body paths read for the idempotency key after the headers, in order.
pub const IDEMPOTENCY_PATHS: [&str; 4] = ["delivery.id", "event.id", "webhook.id", "request.id"];

/// The first value of header `name`, trimmed; none when absent, empty, or not UTF-8.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let text = js_trim(headers.get(name)?.to_str().ok()?);
    (!text.is_empty()).then(|| text.to_owned())
}

fn path_text(body: &Value, path: &str) -> Option<String> {
    lookup(body, path).and_then(scalar_text)
}

/// What a route's own `header` then `payloadPath` name, before any of the usual places.
fn configured(
    header: &Option<HeaderName>,
    payload_path: Option<&str>,
    headers: &HeaderMap,
    body: &Value,
) -> Option<String> {
    header
        .as_ref()
        .and_then(|name| header_text(headers, name.as_str()))
        .or_else(|| payload_path.and_then(|path| path_text(body, path)))
}

/// Where a route reads the event type: `event: { header?, payloadPath? }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventTypeSource {
    /// `event.header`: read first.
    pub header: Option<HeaderName>,
    /// `event.payloadPath`: read second.
    pub payload_path: Option<String>,
}

impl EventTypeSource {
    /// The event type: `header` → `payloadPath` → [`EVENT_TYPE_HEADERS`] → [`EVENT_TYPE_PATHS`].
    /// Strings are trimmed (empty is none); numbers and booleans count as text.
    pub fn event_type(&self, headers: &HeaderMap, body: &Value) -> Option<String> {
        configured(&self.header, self.payload_path.as_deref(), headers, body)
            .or_else(|| {
                EVENT_TYPE_HEADERS
                    .iter()
                    .find_map(|name| header_text(headers, name))
            })
            .or_else(|| {
                EVENT_TYPE_PATHS
                    .iter()
                    .find_map(|path| path_text(body, path))
            })
    }
}

/// A route's URL-verification handshake: `verification: { event?, challengePath?, responsePath? }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// `verification.event`: the handshake's event type; any when unset.
    pub event: Option<String>,
    /// `verification.challengePath` (default `challenge`).
    pub challenge_path: String,
    /// `verification.responsePath` (default `challenge`): the key of the answer.
    pub response_path: String,
}

impl Default for Verification {
    fn default() -> Self {
        Self {
            event: None,
            challenge_path: "challenge".to_owned(),
            response_path: "challenge".to_owned(),
        }
    }
}

impl Verification {
    /// The answer to a handshake, `{"<responsePath>":"<challenge>"}`, when `event_type` is the
    /// handshake's (or any, without `event`) and the body has a challenge (a string, number or
    /// boolean at `challengePath`, as text). `None`: not a handshake, dispatch as usual.
    ///
    /// `responsePath` is the answer's one key as written, dots and all: Slack, the usual sender of
    /// handshakes, wants a flat `{"challenge": …}`.
    pub fn answer(&self, event_type: Option<&str>, body: &Value) -> Option<Value> {
        if let Some(expected) = &self.event {
            if event_type != Some(expected.as_str()) {
                return None;
            }
        }
        let challenge = path_text(body, &self.challenge_path)?;
        let mut answer = Map::with_capacity(1);
        answer.insert(self.response_path.clone(), Value::String(challenge));
        Some(Value::Object(answer))
    }
}

/// Whether `event_type` passes the route's `events` list: an empty list lets everything through;
/// otherwise the type must be present and listed exactly.
pub fn event_allowed(events: &[String], event_type: Option<&str>) -> bool {
    events.is_empty() || event_type.is_some_and(|t| events.iter().any(|e| e == t))
}

/// De-duplication of a route: `idempotency: { header?, payloadPath?, ttlHours? }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    /// `idempotency.header`: read first.
    pub header: Option<HeaderName>,
    /// `idempotency.payloadPath`: read second.
    pub payload_path: Option<String>,
    /// `idempotency.ttlHours` (default 24 h): how long a dispatched key is remembered.
    pub ttl: Duration,
}

/// The default time a dispatched idempotency key is remembered: 24 hours.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3_600);

impl Default for Idempotency {
    fn default() -> Self {
        Self {
            header: None,
            payload_path: None,
            ttl: DEFAULT_IDEMPOTENCY_TTL,
        }
    }
}

impl Idempotency {
    /// The idempotency key: `header` → `payloadPath` → `message_id` (the verified scheme's message
    /// id) → [`IDEMPOTENCY_HEADERS`] → [`IDEMPOTENCY_PATHS`]; none when none of them holds one.
    pub fn key(
        &self,
        headers: &HeaderMap,
        body: &Value,
        message_id: Option<&str>,
    ) -> Option<String> {
        configured(&self.header, self.payload_path.as_deref(), headers, body)
            .or_else(|| {
                message_id
                    .map(js_trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
            })
            .or_else(|| {
                IDEMPOTENCY_HEADERS
                    .iter()
                    .find_map(|name| header_text(headers, name))
            })
            .or_else(|| {
                IDEMPOTENCY_PATHS
                    .iter()
                    .find_map(|path| path_text(body, path))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn event_type_in_the_order_of_the_spec() {
        let configured = EventTypeSource {
            header: Some(HeaderName::from_static("x-kind")),
            payload_path: Some("meta.kind".into()),
        };
        let body = json!({"meta": {"kind": "from-path"}, "type": "from-type", "event": {"type": 7, "action": "act"}});
        let all = headers(&[("x-kind", "from-header"), ("x-github-event", "gh")]);
        assert_eq!(
            configured.event_type(&all, &body).as_deref(),
            Some("from-header")
        );
        let no_kind = headers(&[("x-kind", "  "), ("x-github-event", "gh")]);
        assert_eq!(
            configured.event_type(&no_kind, &body).as_deref(),
            Some("from-path")
        );
        let plain = EventTypeSource::default();
        assert_eq!(plain.event_type(&no_kind, &body).as_deref(), Some("gh"));
        assert_eq!(
            plain
                .event_type(&headers(&[("x-webhook-event", "w")]), &body)
                .as_deref(),
            Some("w")
        );
        // No header: event_type → event.type (a number, as text) → event.action → type.
        assert_eq!(
            plain.event_type(&HeaderMap::new(), &body).as_deref(),
            Some("7")
        );
        assert_eq!(
            plain
                .event_type(
                    &HeaderMap::new(),
                    &json!({"event": {"action": "a"}, "type": "t"})
                )
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            plain
                .event_type(&HeaderMap::new(), &json!({"event_type": true, "type": "t"}))
                .as_deref(),
            Some("true")
        );
        assert_eq!(
            plain.event_type(&HeaderMap::new(), &json!({"type": {"nested": 1}})),
            None
        );
        assert_eq!(plain.event_type(&HeaderMap::new(), &json!([1, 2])), None);
    }

    #[test]
    fn verification_answers_only_its_event_with_a_challenge() {
        let slack = Verification {
            event: Some("url_verification".into()),
            ..Verification::default()
        };
        let body = json!({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"});
        assert_eq!(
            slack.answer(Some("url_verification"), &body),
            Some(json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}))
        );
        assert_eq!(slack.answer(Some("event_callback"), &body), None);
        assert_eq!(slack.answer(None, &body), None);
        assert_eq!(slack.answer(Some("url_verification"), &json!({})), None);
        let custom = Verification {
            event: None,
            challenge_path: "hub.challenge".into(),
            response_path: "hub.challenge".into(),
        };
        assert_eq!(
            custom.answer(None, &json!({"hub": {"challenge": 42}})),
            Some(json!({"hub.challenge": "42"}))
        );
    }

    #[test]
    fn the_event_allowlist_is_exact_and_needs_a_type() {
        let events = vec!["pull_request".to_owned()];
        assert!(event_allowed(&events, Some("pull_request")));
        assert!(!event_allowed(&events, Some("Pull_Request")));
        assert!(!event_allowed(&events, Some("pull_request_review")));
        assert!(!event_allowed(&events, None));
        assert!(event_allowed(&[], None));
    }

    #[test]
    fn idempotency_key_in_the_order_of_the_spec() {
        let configured = Idempotency {
            header: Some(HeaderName::from_static("x-key")),
            payload_path: Some("meta.key".into()),
            ..Idempotency::default()
        };
        let body = json!({"meta": {"key": 9}, "delivery": {"id": "body-delivery"}, "event": {"id": "body-event"}});
        let sent = headers(&[("x-key", "k"), ("x-request-id", "r")]);
        assert_eq!(
            configured.key(&sent, &body, Some("m")).as_deref(),
            Some("k")
        );
        assert_eq!(
            configured
                .key(&headers(&[("x-request-id", "r")]), &body, Some("m"))
                .as_deref(),
            Some("9")
        );
        let plain = Idempotency::default();
        assert_eq!(plain.key(&sent, &body, Some(" m ")).as_deref(), Some("m"));
        assert_eq!(plain.key(&sent, &body, Some("  ")).as_deref(), Some("r"));
        assert_eq!(
            plain.key(&HeaderMap::new(), &body, None).as_deref(),
            Some("body-delivery")
        );
        assert_eq!(
            plain
                .key(&HeaderMap::new(), &json!({"request": {"id": "q"}}), None)
                .as_deref(),
            Some("q")
        );
        assert_eq!(plain.key(&HeaderMap::new(), &json!({}), None), None);
    }
}
