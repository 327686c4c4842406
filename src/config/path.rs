//! Webhook path normalisation, shared by the loader and the router.

use std::borrow::Cow;

pub use crate::path::request_route_path;

/// Normalises a webhook path the way the original plugin does \[compat\].
///
/// Trims surrounding whitespace (as JavaScript's `trim` does, like every config string); an empty path becomes `/`; a missing leading `/` is added; a path
/// longer than one character loses exactly one trailing `/`. Nothing else changes: case is kept, `//`
/// is not collapsed and nothing is percent-decoded, so two paths that differ in any of those ways are
/// two different routes.
///
/// Borrows when the input is already normal, so the request path can be normalised on every request
/// without allocating.
///
/// ```
/// use tower_webhooks::config::normalize_webhook_path;
///
/// assert_eq!(normalize_webhook_path("webhooks/slack/"), "/webhooks/slack");
/// assert_eq!(normalize_webhook_path("  "), "/");
/// assert_eq!(normalize_webhook_path("/A//b//"), "/A//b/");
/// assert!(matches!(normalize_webhook_path("/hooks/zap"), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn normalize_webhook_path(path: &str) -> Cow<'_, str> {
    let trimmed = super::js_trim(path);
    if trimmed.is_empty() {
        return Cow::Borrowed("/");
    }
    let without_trailing = if trimmed.len() > 1 {
        trimmed.strip_suffix('/').unwrap_or(trimmed)
    } else {
        trimmed
    };
    if without_trailing.starts_with('/') {
        return Cow::Borrowed(without_trailing);
    }
    // Only reachable without a leading `/`. The trailing slash was stripped from the trimmed input,
    // which is what the original does before prefixing: `a/` → `/a`, and `/` alone stays `/`.
    let mut owned = String::with_capacity(without_trailing.len() + 1);
    owned.push('/');
    owned.push_str(without_trailing);
    Cow::Owned(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_slash_input_without_leading_slash() {
        // "a/" has length 2: strip the slash, then prefix.
        assert_eq!(normalize_webhook_path("a/"), "/a");
        // "/" is length 1: kept.
        assert_eq!(normalize_webhook_path("/"), "/");
        // "//" is longer than 1: exactly one slash goes.
        assert_eq!(normalize_webhook_path("//"), "/");
    }

    #[test]
    fn a_configured_path_is_trimmed_as_javascript_trims() {
        assert_eq!(normalize_webhook_path("\u{feff} /a/ \u{3000}"), "/a");
        // U+0085 is no whitespace to JavaScript's trim.
        assert_eq!(normalize_webhook_path("/a\u{85}"), "/a\u{85}");
    }
}
