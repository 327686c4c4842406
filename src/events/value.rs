//! Reading a delivery's JSON the way SPEC §8 reads it: dotted paths, values as text, stable JSON
//! and the character cuts.

use std::fmt::Write as _;

use serde_json::Value;

use crate::secret::js_trim;

/// Path segments that match nothing, whatever the payload holds: the proposal runs on JavaScript,
/// where they would reach the prototype chain, and a template must not tell them apart.
const FORBIDDEN_SEGMENTS: [&str; 3] = ["__proto__", "prototype", "constructor"];

/// The value at `path` in `root`.
///
/// The path splits on `.`; each segment is trimmed (as JavaScript trims) and empty segments are
/// skipped, so `a..b` and ` a . b ` are `a.b` and an empty path is the root itself. A segment
/// written as a canonical non-negative integer (`0`, `12`; not `01`, `+1`) indexes an array; on an
/// object every segment is a key. `__proto__`, `prototype` and `constructor` match nothing.
///
/// ```
/// use serde_json::json;
/// use tower_webhooks::events::lookup;
///
/// let body = json!({"pull_request": {"labels": [{"name": "bug"}]}, "0": "zero"});
/// assert_eq!(lookup(&body, "pull_request.labels.0.name"), Some(&json!("bug")));
/// assert_eq!(lookup(&body, "0"), Some(&json!("zero")));
/// assert_eq!(lookup(&body, "pull_request.labels.01"), None);
/// assert_eq!(lookup(&body, "constructor"), None);
/// ```
pub fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = root;
    for segment in path.split('.').map(js_trim).filter(|s| !s.is_empty()) {
        if FORBIDDEN_SEGMENTS.contains(&segment) {
            return None;
        }
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(array_index(segment)?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// `segment` as an array index: ASCII digits without a leading zero (JavaScript's canonical
/// numeric string), or `None`.
fn array_index(segment: &str) -> Option<usize> {
    let canonical = segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    if canonical {
        segment.parse().ok()
    } else {
        None
    }
}

/// A scalar as the event type and the idempotency key read it: a string trimmed (empty is none),
/// a number or a boolean as text; anything else none.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => {
            let trimmed = js_trim(s);
            (!trimmed.is_empty()).then(|| trimmed.to_owned())
        }
        Value::Number(n) => Some(number_text(n)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A number as JavaScript's `String(n)` writes the common cases: integers without a fraction
/// (`1.0` is `1`), other numbers in Rust's shortest round-trip form.
pub(crate) fn number_text(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        // Below 2^53 an integral float is an exact integer, printed without a fraction.
        Some(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => {
            format!("{}", f as i64)
        }
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}

/// `value` as stable JSON: object keys sorted (by UTF-16 code units, as JavaScript sorts them),
/// two-space indentation, integral numbers without a fraction (`1.0` is `1`, as JavaScript writes it).
pub fn stable_json(value: &Value) -> String {
    let mut out = String::new();
    write_stable(value, 0, &mut out);
    out
}

fn write_stable(value: &Value, depth: usize, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => write_string(s, out),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(depth + 1, out);
                write_stable(item, depth + 1, out);
            }
            newline(depth, out);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(depth + 1, out);
                write_string(key, out);
                out.push_str(": ");
                write_stable(item, depth + 1, out);
            }
            newline(depth, out);
            out.push('}');
        }
    }
}

fn newline(depth: usize, out: &mut String) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json escapes exactly as JSON.stringify does for every character it must escape.
    let _ = write!(out, "{}", Value::String(s.to_owned()));
}

/// `text` cut to `max` characters, with `...` appended when anything was cut.
pub(crate) fn cut(mut text: String, max: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(max) {
        text.truncate(at);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_skip_empty_segments_trim_and_refuse_prototype_names() {
        let body = json!({"a": {"b": [10, {"c": true}]}, "__proto__": 1, "": 2});
        assert_eq!(lookup(&body, " a . b .1.c"), Some(&json!(true)));
        assert_eq!(lookup(&body, "a..b.0"), Some(&json!(10)));
        assert_eq!(lookup(&body, ""), Some(&body));
        assert_eq!(lookup(&body, "a.b.2"), None);
        assert_eq!(lookup(&body, "a.b.-1"), None);
        assert_eq!(lookup(&body, "a.b.+1"), None);
        assert_eq!(lookup(&body, "a.b.1.c.d"), None);
        for forbidden in ["__proto__", "a.constructor", "a.prototype.b"] {
            assert_eq!(lookup(&body, forbidden), None, "{forbidden}");
        }
        assert_eq!(lookup(&json!([1, 2]), "1"), Some(&json!(2)));
        assert_eq!(lookup(&json!("text"), "length"), None);
    }

    #[test]
    fn scalars_as_text() {
        assert_eq!(scalar_text(&json!("  push \u{feff}")), Some("push".into()));
        assert_eq!(scalar_text(&json!(" ")), None);
        assert_eq!(scalar_text(&json!(42)), Some("42".into()));
        assert_eq!(scalar_text(&json!(-7)), Some("-7".into()));
        assert_eq!(scalar_text(&json!(1.0)), Some("1".into()));
        assert_eq!(scalar_text(&json!(1.5)), Some("1.5".into()));
        assert_eq!(scalar_text(&json!(false)), Some("false".into()));
        assert_eq!(scalar_text(&json!(null)), None);
        assert_eq!(scalar_text(&json!([1])), None);
        assert_eq!(scalar_text(&json!({})), None);
    }

    #[test]
    fn stable_json_sorts_keys_and_indents_two_spaces() {
        let value = json!({"b": [1, {"z": null, "a": "x\"y"}], "a": {}, "c": []});
        assert_eq!(
            stable_json(&value),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    {\n      \"a\": \"x\\\"y\",\n      \"z\": null\n    }\n  ],\n  \"c\": []\n}"
        );
        assert_eq!(stable_json(&json!("é")), "\"é\"");
    }

    #[test]
    fn cuts_count_characters() {
        assert_eq!(cut("ééé".into(), 2), "éé...");
        assert_eq!(cut("ééé".into(), 3), "ééé");
        assert_eq!(cut(String::new(), 0), "");
    }
}
