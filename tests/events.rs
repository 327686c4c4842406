//! The pieces of an event route (SPEC §8): the memory idempotency ledger (claimed before dispatch,
//! recorded after, abandoned on failure, at most 25,000 keys per route, oldest out first) and a property
//! test of the template renderer.

use std::time::Duration;

use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower_webhooks::clock::ManualClock;
use tower_webhooks::events::{
    Begin, IN_PROGRESS_LEASE, IdempotencyLedger, MemoryLedger, TemplateContext, render, stable_json,
};

const DAY: Duration = Duration::from_secs(24 * 3_600);

fn ledger(clock: &std::sync::Arc<ManualClock>, capacity: usize) -> MemoryLedger {
    MemoryLedger::with_capacity(capacity).with_clock(clock.clone())
}

/// Every memory-ledger future is ready at once.
fn now<F: std::future::Future>(future: F) -> F::Output {
    future
        .now_or_never()
        .expect("the memory ledger never waits")
}

fn claimed(begin: Begin) -> tower_webhooks::events::Claim {
    match begin {
        Begin::Begun(claim) => claim,
        other => panic!("expected a claim, got {other:?}"),
    }
}

#[test]
fn a_key_is_a_duplicate_only_after_its_dispatch_completed() {
    let clock = ManualClock::new(1_700_000_000_000);
    let ledger = ledger(&clock, 100);
    let claim = claimed(now(ledger.begin("gh", "d-1", DAY)).unwrap());
    // While the first is handled, a second delivery is told so, not dispatched.
    assert_eq!(now(ledger.begin("gh", "d-1", DAY)), Ok(Begin::InProgress));
    // Other routes and other keys are independent.
    assert!(matches!(
        now(ledger.begin("stripe", "d-1", DAY)),
        Ok(Begin::Begun(_))
    ));
    assert!(matches!(
        now(ledger.begin("gh", "d-2", DAY)),
        Ok(Begin::Begun(_))
    ));
    now(ledger.complete("gh", "d-1", claim)).unwrap();
    assert_eq!(now(ledger.begin("gh", "d-1", DAY)), Ok(Begin::Duplicate));
    // Remembered for the TTL, to the millisecond.
    clock.advance(DAY.as_millis() as u64 - 1);
    assert_eq!(now(ledger.begin("gh", "d-1", DAY)), Ok(Begin::Duplicate));
    clock.advance(1);
    assert!(matches!(
        now(ledger.begin("gh", "d-1", DAY)),
        Ok(Begin::Begun(_))
    ));
}

#[test]
fn an_abandoned_key_is_dispatched_again() {
    let clock = ManualClock::new(0);
    let ledger = ledger(&clock, 100);
    let claim = claimed(now(ledger.begin("gh", "d-1", DAY)).unwrap());
    now(ledger.abandon("gh", "d-1", claim)).unwrap();
    let retry = claimed(now(ledger.begin("gh", "d-1", DAY)).unwrap());
    assert_ne!(retry, claim);
    now(ledger.complete("gh", "d-1", retry)).unwrap();
    assert_eq!(now(ledger.begin("gh", "d-1", DAY)), Ok(Begin::Duplicate));
}

#[test]
fn a_lapsed_claim_is_taken_over_and_the_first_holder_cannot_undo_the_second() {
    let clock = ManualClock::new(0);
    let ledger = ledger(&clock, 100);
    let first = claimed(now(ledger.begin("gh", "d-1", DAY)).unwrap());
    clock.advance(IN_PROGRESS_LEASE.as_millis() as u64 - 1);
    assert_eq!(now(ledger.begin("gh", "d-1", DAY)), Ok(Begin::InProgress));
    clock.advance(1);
    let second = claimed(now(ledger.begin("gh", "d-1", DAY)).unwrap());
    // The first holder finally gives up: the second's claim stands.
    now(ledger.abandon("gh", "d-1", first)).unwrap();
    assert_eq!(now(ledger.begin("gh", "d-1", DAY)), Ok(Begin::InProgress));
    // Nor can it complete on the second's behalf.
    now(ledger.complete("gh", "d-1", first)).unwrap();
    assert_eq!(now(ledger.begin("gh", "d-1", DAY)), Ok(Begin::InProgress));
    now(ledger.complete("gh", "d-1", second)).unwrap();
    assert_eq!(now(ledger.begin("gh", "d-1", DAY)), Ok(Begin::Duplicate));
}

#[test]
fn a_route_keeps_at_most_its_capacity_and_forgets_the_oldest_first() {
    let clock = ManualClock::new(0);
    // Below 128 keys the map is one shard, so eviction order is exact.
    let ledger = ledger(&clock, 100);
    for i in 0..100 {
        let claim = claimed(now(ledger.begin("gh", &format!("k{i}"), DAY)).unwrap());
        now(ledger.complete("gh", &format!("k{i}"), claim)).unwrap();
    }
    assert_eq!(ledger.len("gh"), 100);
    // Looking a key up as a duplicate does not make it younger.
    assert_eq!(now(ledger.begin("gh", "k0", DAY)), Ok(Begin::Duplicate));
    let claim = claimed(now(ledger.begin("gh", "new", DAY)).unwrap());
    now(ledger.complete("gh", "new", claim)).unwrap();
    assert_eq!(ledger.len("gh"), 100);
    assert!(matches!(
        now(ledger.begin("gh", "k0", DAY)),
        Ok(Begin::Begun(_))
    ));
    assert_eq!(now(ledger.begin("gh", "k2", DAY)), Ok(Begin::Duplicate));
    assert_eq!(ledger.len("other"), 0);
}

#[test]
fn the_default_capacity_is_25000_keys_per_route() {
    let clock = ManualClock::new(0);
    let ledger = MemoryLedger::new().with_clock(clock);
    for i in 0..25_100 {
        let claim = claimed(now(ledger.begin("gh", &format!("k{i}"), DAY)).unwrap());
        now(ledger.complete("gh", &format!("k{i}"), claim)).unwrap();
    }
    // Shards evict on their own (each holds its share of the cap), so the route may forget a key a
    // little before the whole map is full; never more than 25,000 are held.
    let held = ledger.len("gh");
    assert!((24_000..=25_000).contains(&held), "{held}");
    assert_eq!(now(ledger.begin("gh", "k25099", DAY)), Ok(Begin::Duplicate));
}

#[test]
fn a_key_still_being_handled_outlives_recorded_ones_when_the_route_is_full() {
    let clock = ManualClock::new(0);
    let ledger = ledger(&clock, 3);
    let busy = claimed(now(ledger.begin("gh", "busy", DAY)).unwrap());
    for key in ["a", "b", "c", "d"] {
        let claim = claimed(now(ledger.begin("gh", key, DAY)).unwrap());
        now(ledger.complete("gh", key, claim)).unwrap();
    }
    assert_eq!(now(ledger.begin("gh", "busy", DAY)), Ok(Begin::InProgress));
    now(ledger.complete("gh", "busy", busy)).unwrap();
    assert_eq!(now(ledger.begin("gh", "busy", DAY)), Ok(Begin::Duplicate));
}

// ---- the renderer ----

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("x".repeat(2_100))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,8}|__proto__|constructor|0|1", inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Template pieces: text, both brace forms around every kind of expression, and near misses.
fn arb_template() -> impl Strategy<Value = String> {
    let expr = prop_oneof![
        Just("body".to_owned()),
        Just("payload".to_owned()),
        Just("rawBody".to_owned()),
        Just("event".to_owned()),
        Just("eventType".to_owned()),
        Just("route".to_owned()),
        Just("idempotencyKey".to_owned()),
        Just("__raw__".to_owned()),
        Just("event.type".to_owned()),
        "[a-z_]{1,8}(\\.[a-z_0-9]{1,8}){0,3}",
        "body\\.[a-z_0-9.]{0,12}",
        "headers\\.[A-Za-z-]{1,12}",
        "json [a-z_0-9.]{0,12}",
        ".{0,12}",
    ];
    let piece = prop_oneof![
        ".{0,16}",
        expr.clone().prop_map(|e| format!("{{{e}}}")),
        expr.prop_map(|e| format!("{{{{ {e} }}}}")),
        Just("{".to_owned()),
        Just("}}".to_owned()),
        Just("\n".to_owned()),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// What JavaScript's `String.prototype.trim` removes (SPEC §8: "a rendered template is trimmed", as
/// the proposal's JavaScript trims): WhiteSpace (TAB, VT, FF, ZWNBSP and every `Zs` space) and
/// LineTerminator (LF, CR, LS, PS). Not Rust's `trim`: that one removes U+0085 (NEXT LINE), which
/// JavaScript keeps, and keeps U+FEFF, which JavaScript removes.
fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
                | '\n'
                | '\r'
                | '\u{2028}'
                | '\u{2029}'
    )
}

/// Found by the property below in a CI run: a template of U+0085 alone was held to Rust's `trim`.
#[test]
fn a_rendered_template_is_trimmed_as_javascript_trims() {
    let headers = HeaderMap::new();
    let body = json!({"v": "\u{feff} x \u{feff}"});
    let context = TemplateContext {
        route_id: "gh",
        event_type: None,
        idempotency_key: None,
        headers: &headers,
        body: &body,
        raw_body: "",
    };
    assert_eq!(render("\u{85}", &context).as_deref(), Some("\u{85}"));
    assert_eq!(
        render("\u{85}x\u{85}", &context).as_deref(),
        Some("\u{85}x\u{85}")
    );
    assert_eq!(render("{v}", &context).as_deref(), Some("x"));
    assert_eq!(
        render("\u{3000}\u{2028}{{ v }}\t", &context).as_deref(),
        Some("x")
    );
}

proptest! {
    /// Any template over any body: no panic, and the output is bounded by the template plus, per
    /// placeholder, the longest value it could write (a single-brace value is cut at 2,000
    /// characters, `__raw__` at 4,000, a double-brace value is at most the whole body or a header).
    #[test]
    fn the_renderer_never_panics_and_its_output_is_bounded(
        template in arb_template(),
        body in arb_json(),
        raw in ".{0,64}",
        event in proptest::option::of("[a-z_.]{1,12}"),
        key in proptest::option::of("[a-z0-9-]{1,12}"),
    ) {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", HeaderValue::from_static("pull_request"));
        let context = TemplateContext {
            route_id: "gh",
            event_type: event.as_deref(),
            idempotency_key: key.as_deref(),
            headers: &headers,
            body: &body,
            raw_body: &raw,
        };
        let rendered = render(&template, &context);
        let placeholders = template.matches('{').count();
        let largest = [
            stable_json(&body).chars().count(),
            raw.chars().count(),
            4_003,
        ]
        .into_iter()
        .max()
        .unwrap();
        if let Some(text) = &rendered {
            prop_assert!(!text.is_empty());
            prop_assert_eq!(text.trim_matches(is_js_whitespace), text.as_str());
            prop_assert!(
                text.chars().count() <= template.chars().count() + placeholders * largest,
                "{} characters from a template of {}", text.chars().count(), template.chars().count()
            );
        }
    }

    /// A name the body does not hold: `{name}` stays as written, `{{ name }}` writes nothing, and a
    /// present `null` writes nothing in both forms.
    #[test]
    fn missing_values_are_kept_or_dropped_by_brace_form(name in "[a-z]{1,8}", body in arb_json()) {
        let headers = HeaderMap::new();
        let context = TemplateContext {
            route_id: "gh",
            event_type: None,
            idempotency_key: None,
            headers: &headers,
            body: &body,
            raw_body: "",
        };
        let reserved = ["body", "payload", "event", "route", "idempotency"];
        prop_assume!(!reserved.contains(&name.as_str()));
        prop_assume!(tower_webhooks::events::lookup(&body, &name).is_none());
        let single = format!("<{{{name}}}>");
        prop_assert_eq!(render(&single, &context), Some(single.clone()));
        prop_assert_eq!(render(&format!("<{{{{ {name} }}}}>"), &context), Some("<>".to_owned()));
        let with_null = json!({ name.clone(): null });
        let context = TemplateContext { body: &with_null, ..context };
        prop_assert_eq!(render(&format!("<{{{name}}}>"), &context), Some("<>".to_owned()));
        prop_assert_eq!(render(&format!("<{{{{{name}}}}}>"), &context), Some("<>".to_owned()));
    }
}
