//! Arbitrary bytes, or a near-valid request built from them, as the body of a TaskFlow action:
//! the oracle's status, exact `invalid_request` texts, no store change on a refusal, revision + 1 on
//! a successful mutation, no session key in an answer. See `tests/hardening/action.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_webhooks_fuzz::{enforce, hardening::action};

fuzz_target!(|data: &[u8]| enforce(action::check(data)));
