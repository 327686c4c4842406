//! Arbitrary text, or a configuration built from the bytes, through `WebhooksConfig::from_json5`,
//! `resolve` (never running an `exec` helper) and the pipeline builder: no panic, no secret in any
//! output, a normalised result. See `tests/hardening/config.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_webhooks_fuzz::{enforce, hardening::config};

fuzz_target!(|data: &[u8]| enforce(config::check(data)));
