//! The `standard` signature header parser against its oracle, and the verifier on the same value. See
//! `tests/hardening/signature.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_webhooks_fuzz::{enforce, hardening::signature};

fuzz_target!(|data: &[u8]| enforce(signature::check_standard(data)));
