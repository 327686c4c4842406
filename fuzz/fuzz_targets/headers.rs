//! Sequences of requests with arbitrary header values through one route's pipeline: the oracle's
//! status, text and headers for every answer, the oracle's client IP. See `tests/hardening/headers.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_webhooks_fuzz::{enforce, hardening::headers};

fuzz_target!(|data: &[u8]| enforce(headers::check(data)));
