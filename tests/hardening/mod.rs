//! Checks shared by the property tests (`tests/properties.rs`, driven by proptest) and the fuzz
//! targets (`fuzz/fuzz_targets/*.rs`, driven by libFuzzer, which include this directory with
//! `#[path]`).
//!
//! Each surface has one entry point taking raw bytes: an [`Input`] turns them into choices (which
//! action, which field to break, which header to send), the harness builds the request, runs it,
//! and compares what came back with a small oracle written from SPEC.md. A check returns
//! `Err(description)` instead of panicking, so proptest can shrink and report it and a fuzz target
//! turns it into a crash.
//!
//! | module | surface |
//! |---|---|
//! | [`action`] | request bodies through `TaskFlowActionService` over `MemoryStore` |
//! | [`config`] | JSON5 text through `WebhooksConfig::from_json5`, `resolve` and the pipeline builder |
//! | [`headers`] | header values through the whole route pipeline, request after request |
//! | [`scrub`] | JSON values and raw bytes through `ScrubConfig::scrub` and `ScrubOwnerMetadata` |
//! | [`signature`] | signature header values through each parser and `SignatureVerifier` |
#![allow(dead_code, unreachable_pub)]

/// Returns early with a formatted failure unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

pub mod action;
pub mod config;
pub mod headers;
pub mod input;
pub mod scrub;
pub mod signature;

pub use input::Input;

use std::future::Future;

/// What a failed check says.
pub type Outcome = Result<(), String>;

/// Runs a future that never waits. Everything these harnesses drive is in memory (ready bodies, the
/// in-memory store, a manual clock), so `Pending` would be a bug: a request that hangs.
pub fn ready<F: Future>(future: F) -> Result<F::Output, String> {
    futures_util::FutureExt::now_or_never(future)
        .ok_or_else(|| "a request that needs no I/O did not complete at once".to_owned())
}
