//! The checks of `tests/hardening/`, shared with the property tests, for the fuzz targets.
#![deny(unsafe_code)]

#[path = "../../tests/hardening/mod.rs"]
pub mod hardening;

/// Panics with the failure, so libFuzzer records the input as a crash.
pub fn enforce(outcome: hardening::Outcome) {
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
