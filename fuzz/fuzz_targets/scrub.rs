//! Arbitrary JSON and bytes through `ScrubConfig::scrub` and `ScrubOwnerMetadata`: exactly SPEC §4's
//! keys removed, valid JSON stays valid, invalid JSON fails closed. See `tests/hardening/scrub.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_webhooks_fuzz::{enforce, hardening::scrub};

fuzz_target!(|data: &[u8]| enforce(scrub::check(data)));
