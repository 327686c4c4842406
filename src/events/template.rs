//! The template language of SPEC §8: `{{ expr }}` and `{expr}` placeholders over a delivery.

use http::HeaderMap;
use serde_json::{Value, json};

use super::value::{cut, lookup, number_text, stable_json};
use crate::secret::js_trim;

/// How many characters a single-brace value keeps before `...`.
pub const SINGLE_BRACE_MAX_CHARS: usize = 2_000;
/// How many characters `__raw__` keeps before `...`.
pub const RAW_MAX_CHARS: usize = 4_000;

/// What a template can read: one delivery.
#[derive(Clone, Copy, Debug)]
pub struct TemplateContext<'a> {
    /// The route id (`route`, `routeId`).
    pub route_id: &'a str,
    /// The event type (`event`, `eventType`, and `type` under `event.`).
    pub event_type: Option<&'a str>,
    /// The idempotency key (`idempotency`, `idempotencyKey`).
    pub idempotency_key: Option<&'a str>,
    /// The request headers (`headers.<name>`, `header.<name>`).
    pub headers: &'a HeaderMap,
    /// The body as JSON (`body`, `payload`, `json <path>`, `__raw__`, and any other name as a
    /// path).
    pub body: &'a Value,
    /// The body as text (`rawBody`).
    pub raw_body: &'a str,
}

/// A placeholder's value before it is written.
enum Resolved {
    /// Nothing there: `{{ }}` writes nothing, `{ }` keeps the placeholder as written.
    Missing,
    /// Text that a single-brace placeholder cuts at 2,000 characters.
    Cuttable(String),
    /// Text written as it is (numbers, booleans, `null`, `__raw__` with its own cut).
    Exact(String),
}

/// Renders `template` over `context`: trimmed, `None` when nothing is left.
///
/// - `{{ expr }}`: the value, or nothing when it is missing.
/// - `{expr}`: the value cut at 2,000 characters (+ `...`), or the placeholder kept as written when
///   it is missing. The braces hold no `{`, `}` or newline; `{}` and other text that is no
///   expression stay as they are, so JSON in a template survives.
/// - `expr`: `body`/`payload` (the whole body), `body.<path>`/`payload.<path>`, `rawBody`,
///   `event`/`eventType`, `route`/`routeId`, `idempotency`/`idempotencyKey`,
///   `headers.<name>`/`header.<name>` (name lower-cased), `json <path>` (the value as stable JSON,
///   `null` included), `__raw__` (the body as stable JSON cut at 4,000 characters + `...`),
///   `event.<path>` (the event type for `event.type`, else the body path), and any other name as a
///   body path ([`lookup`]).
/// - Values: `null` is empty; strings as they are; numbers and booleans as text; objects and arrays
///   as stable JSON ([`stable_json`]).
///
/// ```
/// use http::HeaderMap;
/// use serde_json::json;
/// use tower_webhooks::events::{TemplateContext, render};
///
/// let body = json!({"action": "opened", "pull_request": {"number": 7, "title": "Fix it"}});
/// let headers = HeaderMap::new();
/// let context = TemplateContext {
///     route_id: "github", event_type: Some("pull_request"), idempotency_key: None,
///     headers: &headers, body: &body, raw_body: "",
/// };
/// assert_eq!(
///     render("Review PR #{pull_request.number}: {{ pull_request.title }} ({event}, {nope})", &context).as_deref(),
///     Some("Review PR #7: Fix it (pull_request, {nope})")
/// );
/// assert_eq!(render("  {{ missing }} ", &context), None);
/// ```
pub fn render(template: &str, context: &TemplateContext<'_>) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let from = &rest[open..];
        if let Some((inner, len)) = placeholder(from, 2) {
            match resolve(inner, context) {
                Resolved::Missing => {}
                Resolved::Cuttable(text) | Resolved::Exact(text) => out.push_str(&text),
            }
            rest = &from[len..];
        } else if let Some((inner, len)) = placeholder(from, 1) {
            match resolve(inner, context) {
                Resolved::Missing => out.push_str(&from[..len]),
                Resolved::Cuttable(text) => out.push_str(&cut(text, SINGLE_BRACE_MAX_CHARS)),
                Resolved::Exact(text) => out.push_str(&text),
            }
            rest = &from[len..];
        } else {
            out.push('{');
            rest = &from[1..];
        }
    }
    out.push_str(rest);
    let trimmed = js_trim(&out);
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// `text` starting with `braces` opening braces: the expression inside and the placeholder's
/// length, when it is a placeholder (closed by as many braces, nothing but an expression inside).
fn placeholder(text: &str, braces: usize) -> Option<(&str, usize)> {
    let open = &"{{"[..braces];
    let close = &"}}"[..braces];
    let body = text.strip_prefix(open)?;
    let end = body.find(['{', '}', '\n'])?;
    if !body[end..].starts_with(close) {
        return None;
    }
    let inner = js_trim(&body[..end]);
    (!inner.is_empty()).then_some((inner, braces + end + braces))
}

fn resolve(expr: &str, context: &TemplateContext<'_>) -> Resolved {
    let body = context.body;
    match expr {
        "body" | "payload" => return value_text(body),
        "rawBody" => return Resolved::Cuttable(context.raw_body.to_owned()),
        "event" | "eventType" => return text(context.event_type),
        "route" | "routeId" => return Resolved::Cuttable(context.route_id.to_owned()),
        "idempotency" | "idempotencyKey" => return text(context.idempotency_key),
        "__raw__" => return Resolved::Exact(cut(stable_json(body), RAW_MAX_CHARS)),
        _ => {}
    }
    if let Some(path) = expr
        .strip_prefix("body.")
        .or_else(|| expr.strip_prefix("payload."))
    {
        return found(lookup(body, path));
    }
    if let Some(name) = expr
        .strip_prefix("headers.")
        .or_else(|| expr.strip_prefix("header."))
    {
        let name = js_trim(name).to_ascii_lowercase();
        return text(
            context
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok()),
        );
    }
    if let Some(path) = expr.strip_prefix("json") {
        if path.starts_with(char::is_whitespace) {
            return match lookup(body, path) {
                Some(value) => Resolved::Cuttable(stable_json(value)),
                None => Resolved::Missing,
            };
        }
    }
    if let Some(path) = expr.strip_prefix("event.") {
        if let Some(event_type) = context.event_type {
            if let Some(value) = lookup(&json!({ "type": event_type }), path) {
                return value_text(value);
            }
        }
    }
    found(lookup(body, expr))
}

fn text(value: Option<&str>) -> Resolved {
    value.map_or(Resolved::Missing, |v| Resolved::Cuttable(v.to_owned()))
}

fn found(value: Option<&Value>) -> Resolved {
    value.map_or(Resolved::Missing, value_text)
}

fn value_text(value: &Value) -> Resolved {
    match value {
        Value::Null => Resolved::Exact(String::new()),
        Value::String(s) => Resolved::Cuttable(s.clone()),
        Value::Number(n) => Resolved::Exact(number_text(n)),
        Value::Bool(b) => Resolved::Exact(b.to_string()),
        Value::Array(_) | Value::Object(_) => Resolved::Cuttable(stable_json(value)),
    }
}

/// The default prompt: `Webhook route: <routeId>`, `Event: <eventType>` (if any),
/// `Delivery id: <key>` (if any), an empty line, `Payload:`, then the body as stable JSON, joined
/// by `\n`.
pub fn default_prompt(context: &TemplateContext<'_>) -> String {
    let mut lines = vec![format!("Webhook route: {}", context.route_id)];
    if let Some(event_type) = context.event_type {
        lines.push(format!("Event: {event_type}"));
    }
    if let Some(key) = context.idempotency_key {
        lines.push(format!("Delivery id: {key}"));
    }
    lines.push(String::new());
    lines.push("Payload:".to_owned());
    lines.push(stable_json(context.body));
    lines.join("\n")
}

/// The skills hint appended to a goal or a task: empty without skills, else
/// `\n\nUse these OpenClaw skills when useful: <skills, ", ">`.
pub fn skills_hint(skills: &[String]) -> String {
    if skills.is_empty() {
        String::new()
    } else {
        format!(
            "\n\nUse these OpenClaw skills when useful: {}",
            skills.join(", ")
        )
    }
}

/// The first template that renders to something, else the default prompt; then the skills hint.
/// What a flow's goal and its task's text are made of (SPEC §8 dispatch).
pub fn compose(
    templates: &[Option<&str>],
    context: &TemplateContext<'_>,
    skills: &[String],
) -> String {
    let mut text = templates
        .iter()
        .flatten()
        .find_map(|template| render(template, context))
        .unwrap_or_else(|| default_prompt(context));
    text.push_str(&skills_hint(skills));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn context<'a>(body: &'a Value, headers: &'a HeaderMap, raw: &'a str) -> TemplateContext<'a> {
        TemplateContext {
            route_id: "gh",
            event_type: Some("pull_request"),
            idempotency_key: Some("d-1"),
            headers,
            body,
            raw_body: raw,
        }
    }

    #[test]
    fn every_expression() {
        let body = json!({
            "event": {"type": "inner", "id": 5},
            "n": 1.0, "ok": true, "nothing": null, "list": [2, 1], "s": "text",
            "obj": {"b": 1, "a": 2}
        });
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", HeaderValue::from_static("pull_request"));
        let raw = r#"{"raw":1}"#;
        let ctx = context(&body, &headers, raw);
        let cases = [
            ("{route}|{routeId}", "gh|gh"),
            ("{event}|{{eventType}}", "pull_request|pull_request"),
            ("{idempotency}|{idempotencyKey}", "d-1|d-1"),
            (
                "{headers.X-GitHub-Event}|{header.x-github-event}",
                "pull_request|pull_request",
            ),
            (
                "{headers.x-missing}|{{ headers.x-missing }}|",
                "{headers.x-missing}||",
            ),
            ("{rawBody}", raw),
            ("{n}|{ok}|{s}|{nothing}|{{nothing}}", "1|true|text||"),
            ("{body.s}|{payload.s}|{list.1}", "text|text|1"),
            ("{obj}", "{\n  \"a\": 2,\n  \"b\": 1\n}"),
            ("{json list}", "[\n  2,\n  1\n]"),
            ("{json nothing}|{json missing}", "null|{json missing}"),
            (
                "{event.type}|{event.id}|{body.event.type}",
                "pull_request|5|inner",
            ),
            ("{} {x\ny} {{a}b} {a{b}", "{} {x\ny} {{a}b} {a{b}"),
            ("{ s }|{{s}}|{{ s }}", "text|text|text"),
            ("{__proto__}|{constructor}", "{__proto__}|{constructor}"),
        ];
        for (template, expected) in cases {
            assert_eq!(
                render(template, &ctx).as_deref(),
                Some(expected),
                "{template}"
            );
        }
    }

    #[test]
    fn single_braces_cut_at_2000_characters_and_raw_at_4000() {
        let long = "é".repeat(2_500);
        let body = json!({"s": long, "many": (0..2_000).collect::<Vec<_>>()});
        let headers = HeaderMap::new();
        let ctx = context(&body, &headers, "");
        let single = render("{s}", &ctx).unwrap();
        assert_eq!(single.chars().count(), 2_003);
        assert!(single.ends_with("é..."));
        assert_eq!(render("{{s}}", &ctx).unwrap().chars().count(), 2_500);
        let raw = render("{{__raw__}}", &ctx).unwrap();
        assert_eq!(raw.chars().count(), 4_003);
        assert!(raw.ends_with("..."));
        assert_eq!(render("{__raw__}", &ctx), Some(raw));
    }

    #[test]
    fn rendered_text_is_trimmed_and_empty_is_unset() {
        let body = json!({"blank": "  "});
        let headers = HeaderMap::new();
        let ctx = context(&body, &headers, "");
        assert_eq!(render("  {{ blank }} \n", &ctx), None);
        assert_eq!(render("", &ctx), None);
        assert_eq!(render(" x ", &ctx).as_deref(), Some("x"));
    }

    #[test]
    fn the_default_prompt_and_the_skills_hint() {
        let body = json!({"b": 1, "a": [true]});
        let headers = HeaderMap::new();
        let ctx = context(&body, &headers, "");
        assert_eq!(
            default_prompt(&ctx),
            "Webhook route: gh\nEvent: pull_request\nDelivery id: d-1\n\nPayload:\n{\n  \"a\": [\n    true\n  ],\n  \"b\": 1\n}"
        );
        let bare = TemplateContext {
            event_type: None,
            idempotency_key: None,
            ..ctx
        };
        assert_eq!(
            default_prompt(&bare),
            "Webhook route: gh\n\nPayload:\n{\n  \"a\": [\n    true\n  ],\n  \"b\": 1\n}"
        );
        let skills = ["github".to_owned(), "review".to_owned()];
        assert_eq!(
            compose(&[Some("{{nope}}"), Some("Go {event}")], &ctx, &skills),
            "Go pull_request\n\nUse these OpenClaw skills when useful: github, review"
        );
        assert_eq!(compose(&[None], &bare, &[]), default_prompt(&bare));
    }
}
