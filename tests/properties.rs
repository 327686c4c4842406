//! Properties of every surface that takes untrusted input, over generated input (SPEC §2–§5).
//!
//! The checks live in `tests/hardening/` and are shared with the fuzz targets in `fuzz/`: each
//! takes bytes, reads them as choices (which action, which field to break, which header to send)
//! and compares the crate's answer with an oracle written from SPEC.md. Here proptest supplies the
//! bytes; `cargo fuzz` does the same with coverage guidance (see `fuzz/README.md`).
//!
//! Each property runs proptest's default 256 cases; set `PROPTEST_CASES` for more or fewer.

mod hardening;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use hardening::{action, config, headers, scrub, signature};

fn run(outcome: hardening::Outcome) -> Result<(), TestCaseError> {
    outcome.map_err(TestCaseError::fail)
}

/// Enough bytes for every choice a generator makes; shorter inputs mean simpler requests.
fn choices() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

/// Choices that start with a structured mode (the first byte selects the mode of each harness:
/// 0 is raw bytes, the rest build near-valid input).
fn structured(modes: u8) -> impl Strategy<Value = Vec<u8>> {
    (1..modes, choices()).prop_map(|(mode, mut rest)| {
        rest.insert(0, mode);
        rest
    })
}

proptest! {
    /// Each signature header parser against its oracle (raw bytes, or a valid value with one byte
    /// changed), and the verifier on the same value: no panic, no unsigned body verified.
    #[test]
    fn signature_headers(data in choices()) {
        run(signature::check_github(&data))?;
        run(signature::check_slack(&data))?;
        run(signature::check_stripe(&data))?;
        run(signature::check_standard(&data))?;
    }

    /// Near-valid action requests (a real action, each field kept, dropped or broken; unknown
    /// fields; ids of every kind of flow; right and wrong revisions): the exact `invalid_request`
    /// text or the oracle's status and code; refusals change nothing; a successful mutation
    /// advances its flow's revision by exactly one; no session key leaks.
    #[test]
    fn action_requests_near_valid(data in structured(8)) {
        run(action::check(&data))?;
    }

    /// Arbitrary bytes as an action body: plain `400 invalid request body` unless they are JSON,
    /// then as above; never a panic, never a change from a refusal.
    #[test]
    fn action_bodies_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
        run(action::check_body(&body))?;
    }

    /// Arbitrary JSON text (objects with the real keys and any values) as an action body.
    #[test]
    fn action_bodies_arbitrary_json(value in arb_json_object()) {
        run(action::check_body(value.to_string().as_bytes()))?;
    }

    /// Generated configurations (both shapes, routes with fields kept, dropped or broken, plain
    /// secrets and env/file/exec refs, providers, limits out of range, bytes spliced in): no
    /// panic, no secret in any error, Debug output or warning, a normalised result, resolution
    /// that accounts for every enabled route, a pipeline that builds.
    #[test]
    fn config_texts_generated(data in structured(4)) {
        run(config::check(&data))?;
    }

    /// Arbitrary text as a configuration, alone or after a route holding a canary secret.
    #[test]
    fn config_texts_arbitrary(tail in "\\PC{0,64}", after_canary in any::<bool>()) {
        let mut data = vec![u8::from(after_canary)];
        data.extend_from_slice(tail.as_bytes());
        run(config::check(&data))?;
    }

    /// Sequences of requests with generated header values, paths, peers and bodies through one
    /// route's pipeline: the oracle's status for every answer, exact texts and headers for the
    /// plain refusals, the oracle's client IP behind trusted proxies.
    #[test]
    fn header_sequences(data in choices()) {
        run(headers::check(&data))?;
    }

    /// Generated envelopes through `ScrubConfig::scrub` and the layer: exactly SPEC §4's keys
    /// removed at exactly its positions, order kept, nothing else touched.
    #[test]
    fn scrub_values(data in choices()) {
        let mut data = data;
        data.insert(0, 0);
        run(scrub::check(&data))?;
    }

    /// Response bytes through the layer: valid JSON stays valid and is scrubbed, an empty body
    /// passes, anything else fails closed with `500`.
    #[test]
    fn scrub_response_bytes(data in structured(4)) {
        run(scrub::check(&data))?;
    }
}

fn arb_json_object() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
        prop::sample::select(vec![
            "queued",
            "running",
            "subagent",
            "acp",
            "create_flow",
            "run_task"
        ])
        .prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let key = prop::sample::select(vec![
        "action",
        "flowId",
        "goal",
        "status",
        "expectedRevision",
        "runtime",
        "task",
        "stateJson",
        "currentStep",
        "blockedTaskId",
        "startedAt",
        "progressSummary",
        "runId",
        "token",
        "x",
    ]);
    prop::collection::vec((key, value), 0..6).prop_map(|members| {
        let mut map = serde_json::Map::new();
        for (k, v) in members {
            map.insert(k.to_owned(), v);
        }
        if !map.contains_key("action") {
            map.insert("action".into(), json!("create_flow"));
        }
        Value::Object(map)
    })
}

// ---------------------------------------------------------------------- regressions
//
// Found by the `scrub` fuzz target: serde_json's default float parser is not correctly rounded,
// so a number went in as one double and came out as another (`1.6666666666666665` came back as
// `1.6666666666666663`), in caller JSON the action service stores and in every JSON body the
// scrub layer re-serialises. Fixed by serde_json's `float_roundtrip` feature.

/// Numbers whose shortest text form the default parser does not read back exactly.
const ROUND_TRIP: [&str; 3] = [
    "1.6666666666666665",
    "3.0261999441573203e-52",
    "-1.81996730402717e-179",
];

#[test]
fn caller_json_numbers_come_back_exactly_as_sent() {
    for number in ROUND_TRIP {
        let body = format!(r#"{{"action":"create_flow","goal":"g","stateJson":{{"x":{number}}}}}"#);
        let answer = action::answer_text(body.as_bytes()).unwrap();
        assert!(
            answer.contains(&format!(r#""stateJson":{{"x":{number}}}"#)),
            "{number} came back as {answer}"
        );
    }
}

#[test]
fn the_scrub_layer_keeps_numbers_exactly() {
    for number in ROUND_TRIP {
        let body = format!(r#"{{"result":{{"flow":{{"ownerKey":"o","n":{number}}}}}}}"#);
        let out = scrub::layer_output(body.as_bytes()).unwrap();
        assert_eq!(out, format!(r#"{{"result":{{"flow":{{"n":{number}}}}}}}"#));
    }
}
