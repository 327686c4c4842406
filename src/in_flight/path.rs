use std::borrow::Cow;

/// Normalises a route or request path (SPEC §1): trim; empty becomes `/`; a leading `/` is added if
/// missing; if the result is longer than 1 and ends in `/`, exactly one trailing `/` is removed.
///
/// Case is kept, `//` is not collapsed and nothing is percent-decoded. Borrows unless a leading `/`
/// has to be added.
///
/// ```
/// use tower_webhooks::in_flight::normalize_path;
/// assert_eq!(normalize_path(" webhooks/slack/ "), "/webhooks/slack");
/// assert_eq!(normalize_path(""), "/");
/// assert_eq!(normalize_path("/a//"), "/a/");
/// ```
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let trimmed = path.trim();
    let tail = normalized_tail(path);
    if trimmed.starts_with('/') {
        // The normalised path is a prefix of the trimmed input: `/` followed by the tail.
        Cow::Borrowed(&trimmed[..1 + tail.len()])
    } else if tail.is_empty() {
        Cow::Borrowed("/")
    } else {
        let mut owned = String::with_capacity(1 + tail.len());
        owned.push('/');
        owned.push_str(tail);
        Cow::Owned(owned)
    }
}

/// The normalised path without its leading `/`, as a slice of the input: every normalised path
/// starts with `/`, so this identifies it without building it.
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
    fn normalises_as_the_spec_says() {
        for (input, expected) in [
            ("", "/"),
            ("   ", "/"),
            ("/", "/"),
            ("//", "/"),
            ("///", "//"),
            ("x", "/x"),
            ("x/", "/x"),
            ("/x", "/x"),
            ("/x/", "/x"),
            ("/x//", "/x/"),
            (" webhooks/slack/ ", "/webhooks/slack"),
            ("/A/b%2F", "/A/b%2F"),
            ("//a//b", "//a//b"),
            ("\t/ü/\n", "/ü"),
        ] {
            assert_eq!(normalize_path(input), expected, "{input:?}");
            assert_eq!(normalized_tail(input), &expected[1..], "tail of {input:?}");
        }
    }

    #[test]
    fn borrows_unless_a_slash_is_added() {
        assert!(matches!(normalize_path("/x/"), Cow::Borrowed("/x")));
        assert!(matches!(normalize_path(""), Cow::Borrowed("/")));
        assert!(matches!(normalize_path("x"), Cow::Owned(_)));
    }
}
