//! The route path a request asks for: read by the router and by the in-flight limiter's key, so it
//! lives in neither.

/// The route path a *request* path asks for: the path with one trailing `/` removed (SPEC §1).
///
/// Unlike [`normalize_webhook_path`](crate::config::normalize_webhook_path), which is for configured paths, nothing is trimmed: an HTTP
/// target holds no ASCII whitespace, and trimming Unicode whitespace (U+00A0, U+3000…) would let
/// endless raw spellings reach one route, each with a fresh rate-limit window of its own. So apart
/// from `/x` and `/x/`, no two request paths reach the same route.
///
/// ```
/// # #[cfg(feature = "config")] {
/// use tower_webhooks::config::request_route_path;
///
/// assert_eq!(request_route_path("/hooks/zap/"), "/hooks/zap");
/// assert_eq!(request_route_path("/hooks/zap//"), "/hooks/zap/");
/// assert_eq!(request_route_path("/hooks/zap\u{a0}"), "/hooks/zap\u{a0}");
/// assert_eq!(request_route_path("/"), "/");
/// # }
/// ```
// Public through `config`; without that feature only the limiters' keys read it.
#[cfg_attr(not(feature = "config"), allow(unreachable_pub))]
pub fn request_route_path(path: &str) -> &str {
    if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_path_loses_one_trailing_slash_and_nothing_else() {
        for (input, expected) in [
            ("/", "/"),
            ("//", "/"),
            ("/x", "/x"),
            ("/x/", "/x"),
            ("/x//", "/x/"),
            (" /x", " /x"),
            ("/x ", "/x "),
            ("/x\u{a0}", "/x\u{a0}"),
            ("/x\u{3000}/", "/x\u{3000}"),
            ("/x\u{feff}", "/x\u{feff}"),
        ] {
            assert_eq!(request_route_path(input), expected, "{input:?}");
        }
    }
}
