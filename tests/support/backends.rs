//! Which real backends the backend tests may use (SPEC §7).
//!
//! A backend test asks for its service's URL here. Unset, the test prints one line saying it was
//! skipped and why, and leaves a marker file that `.ci/run` looks for: CI sets both variables and
//! fails if any backend test was skipped. Set, the test uses it and fails if it is unreachable:
//! a typo in the URL must never look like a pass.
//!
//! Use with `#[path = "support/backends.rs"] mod backends;` so a test file that needs only this
//! does not compile the rest of `support`.

#![allow(dead_code)]

use std::path::PathBuf;

/// The variable naming the PostgreSQL server the store tests use.
pub const POSTGRES_URL: &str = "TOWER_WEBHOOKS_POSTGRES_URL";
/// The variable naming the Redis server the shared-state tests use.
pub const REDIS_URL: &str = "TOWER_WEBHOOKS_REDIS_URL";

/// The PostgreSQL URL, or `None` after recording that `test` was skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    backend_url(POSTGRES_URL, test)
}

/// The Redis URL, or `None` after recording that `test` was skipped.
pub fn redis_url(test: &str) -> Option<String> {
    backend_url(REDIS_URL, test)
}

/// Where skipped backend tests leave their markers; `.ci/run` empties it before the tests and
/// fails if anything is in it after them.
pub fn skip_marker_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backend-skips")
}

fn backend_url(variable: &str, test: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!(
                "skipped {test}: {variable} is not set (see the README, \"Running the backend tests\")"
            );
            let dir = skip_marker_dir();
            let _ = std::fs::create_dir_all(&dir);
            let marker = format!("{}--{test}", variable.to_ascii_lowercase());
            let _ = std::fs::write(
                dir.join(marker),
                format!("{test} skipped: {variable} unset\n"),
            );
            None
        }
    }
}
