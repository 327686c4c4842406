//! Webhook path normalisation, shared by the loader, the router and the in-flight limiter.

use std::borrow::Cow;

/// Normalises a webhook path the way the original plugin does \[compat\].
///
/// Trims surrounding whitespace; an empty path becomes `/`; a missing leading `/` is added; a path
/// longer than one character loses exactly one trailing `/`. Nothing else changes: case is kept, `//`
/// is not collapsed and nothing is percent-decoded, so two paths that differ in any of those ways are
/// two different routes.
///
/// Borrows when the input is already normal, so the request path can be normalised on every request
/// without allocating.
///
/// ```
/// use tower_webhooks::normalize_webhook_path;
///
/// assert_eq!(normalize_webhook_path("webhooks/slack/"), "/webhooks/slack");
/// assert_eq!(normalize_webhook_path("  "), "/");
/// assert_eq!(normalize_webhook_path("/A//b//"), "/A//b/");
/// assert!(matches!(normalize_webhook_path("/hooks/zap"), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn normalize_webhook_path(path: &str) -> Cow<'_, str> {
    let trimmed = path.trim();
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

/// The normalised path without its leading `/`, as a slice of the input. Every normalised path starts
/// with `/`, so a limiter can key on this tail without building the path.
pub(crate) fn normalized_tail(path: &str) -> &str {
    let trimmed = path.trim();
    let tail = trimmed.strip_prefix('/').unwrap_or(trimmed);
    // "Longer than 1" for the whole path is "non-empty" for the tail.
    tail.strip_suffix('/').unwrap_or(tail)
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
    fn tail_agrees_with_the_normalised_path() {
        for input in [
            "",
            "   ",
            "/",
            "//",
            "///",
            "x",
            "x/",
            "/x",
            "/x/",
            "/x//",
            " webhooks/slack/ ",
            "/A/b%2F",
            "//a//b",
            "\t/\u{fc}/\n",
        ] {
            assert_eq!(
                normalized_tail(input),
                &normalize_webhook_path(input)[1..],
                "{input:?}"
            );
        }
    }
}
