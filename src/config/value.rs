//! Strict readers over a parsed `serde_json::Value`, producing path-named [`ConfigError`]s.
//!
//! The configuration is parsed into a `Value` first (not straight into serde structs) so that every
//! error can name the exact key path, unknown keys are reported in file order, and a value is never
//! quoted in a message.

use serde_json::{Map, Value};

use super::ConfigError;

pub(crate) type Object = Map<String, Value>;

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub(crate) fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Object, ConfigError> {
    value
        .as_object()
        .ok_or_else(|| ConfigError::invalid(path, "must be an object"))
}

/// Fails on the first key (in file order) that is not in `allowed`.
pub(crate) fn deny_unknown(map: &Object, path: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    match map.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(ConfigError::invalid(join(path, key), "unknown key")),
        None => Ok(()),
    }
}

// Secrets are trimmed the same way without the `config` feature, so the rule lives with `Secret`.
#[cfg(test)]
use crate::secret::is_js_whitespace;
pub(crate) use crate::secret::js_trim;

/// A non-empty string, trimmed as JavaScript does ([`js_trim`]).
pub(crate) fn string(value: &Value, path: &str) -> Result<String, ConfigError> {
    let s = value
        .as_str()
        .ok_or_else(|| ConfigError::invalid(path, "must be a string"))?;
    let trimmed = js_trim(s);
    if trimmed.is_empty() {
        return Err(ConfigError::invalid(path, "must not be empty"));
    }
    Ok(trimmed.to_owned())
}

pub(crate) fn opt_string(
    map: &Object,
    key: &str,
    path: &str,
) -> Result<Option<String>, ConfigError> {
    map.get(key)
        .map(|v| string(v, &join(path, key)))
        .transpose()
}

pub(crate) fn req_string(map: &Object, key: &str, path: &str) -> Result<String, ConfigError> {
    match map.get(key) {
        Some(v) => string(v, &join(path, key)),
        None => Err(ConfigError::invalid(join(path, key), "is required")),
    }
}

pub(crate) fn opt_bool(map: &Object, key: &str, path: &str) -> Result<Option<bool>, ConfigError> {
    map.get(key)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| ConfigError::invalid(join(path, key), "must be a boolean"))
        })
        .transpose()
}

/// A positive integer no larger than `max`.
///
/// JSON5 reads `6e4` or `60000.0` as a float; a float with no fractional part is accepted, since it
/// is the same number an operator meant.
pub(crate) fn positive_int(value: &Value, path: &str, max: u64) -> Result<u64, ConfigError> {
    let n = match value {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= u64::MAX as f64)
                    .map(|f| f as u64)
            })
            .filter(|n| *n >= 1),
        _ => None,
    };
    match n {
        Some(n) if n <= max => Ok(n),
        Some(_) => Err(ConfigError::invalid(
            path,
            format!("must be an integer from 1 to {max}"),
        )),
        None => Err(ConfigError::invalid(path, "must be an integer >= 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_whitespace_is_unicode_white_space_without_next_line_plus_the_byte_order_mark() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let expected = (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}';
            assert_eq!(is_js_whitespace(c), expected, "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn js_trim_removes_a_byte_order_mark_and_keeps_next_line() {
        assert_eq!(js_trim("\u{feff} \u{3000}s\u{2029}\u{feff}"), "s");
        assert_eq!(js_trim("\u{85}s\u{85} "), "\u{85}s\u{85}");
        assert_eq!(js_trim("\u{feff}\u{a0}\u{b}"), "");
    }
}
