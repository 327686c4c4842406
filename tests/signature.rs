//! `VerifySignature` and `SignatureVerifier` (SPEC §8): each scheme against its provider's
//! published test vector, then every way a delivery can be wrong.
//!
//! Vectors, each recomputed by the test rather than trusted:
//! - GitHub, "Validating webhook deliveries" (docs.github.com, "Testing the webhook payload
//!   validation"): secret `It's a Secret to Everybody`, payload `Hello, World!`, signature
//!   `sha256=757107ea…3e17`.
//! - Slack, "Verifying requests from Slack" (api.slack.com/authentication/verifying-requests-from-slack):
//!   signing secret `8f742231b10e8888abcd99yyyzzz85a5`, timestamp `1531420618`, the slash-command
//!   body below, signature `v0=a2114d57…b503`.
//! - Standard Webhooks, the reference libraries' tests (github.com/standard-webhooks/standard-webhooks,
//!   `libraries/*`; the same vector as Svix's docs): secret `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`,
//!   id `msg_p5jXN8AQM9LWM0D4loKWxJek`, timestamp `1614265330`, payload `{"test": 2432232314}`,
//!   signature `v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=`.
//! - Stripe publishes its scheme ("Verify webhook signatures manually", docs.stripe.com) and an
//!   example header whose secret it does not publish; its official libraries sign in their tests.
//!   So the Stripe vector is the scheme applied to a fixed secret, payload and time, with the tag
//!   computed independently (Python's `hmac`) and written here as hex.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use tower_webhooks::BodyLimitLayer;
use tower_webhooks::body::BufferedBody;
use tower_webhooks::body_limit::BodyLimitConfig;
use tower_webhooks::clock::ManualClock;
use tower_webhooks::secret::Secret;
use tower_webhooks::signature::{
    SignatureError, SignatureScheme, SignatureVerifier, VerifiedWebhook, VerifySignatureConfig,
    VerifySignatureLayer,
};

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_BODY: &[u8] = b"Hello, World!";
const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TIMESTAMP: u64 = 1_531_420_618;
const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const STANDARD_TIMESTAMP: u64 = 1_614_265_330;
const STANDARD_BODY: &str = r#"{"test": 2432232314}"#;
const STANDARD_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

const STRIPE_SECRET: &str = "whsec_test_5ecret";
const STRIPE_TIMESTAMP: u64 = 1_700_000_000;
const STRIPE_BODY: &str = r#"{"id":"evt_1","type":"invoice.paid"}"#;
/// HMAC-SHA256 of `1700000000.{"id":"evt_1","type":"invoice.paid"}` under `whsec_test_5ecret`.
const STRIPE_V1: &str = "330a8bf52dde844f404845f36e08a319ee8b646ae40687e2334375ed442f9b14";

fn secret(value: &str) -> Secret {
    Secret::new(value).unwrap()
}

fn verifier(scheme: SignatureScheme, secrets: &[&str]) -> SignatureVerifier {
    SignatureVerifier::new(VerifySignatureConfig::new(
        scheme,
        secrets.iter().map(|s| secret(s)),
    ))
    .unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn standard_key() -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(STANDARD_SECRET.trim_start_matches("whsec_"))
        .unwrap()
}

fn standard_sign(id: &str, ts: u64, body: &str) -> String {
    use base64::Engine as _;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&standard_key()).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn stripe_header(secret: &str, ts: u64, body: &str) -> String {
    format!(
        "t={ts},v1={}",
        hmac_hex(
            secret.as_bytes(),
            &[ts.to_string().as_bytes(), b".", body.as_bytes()]
        )
    )
}

fn slack_headers(secret: &str, ts: u64, body: &str) -> HeaderMap {
    let signature = format!(
        "v0={}",
        hmac_hex(
            secret.as_bytes(),
            &[format!("v0:{ts}:").as_bytes(), body.as_bytes()]
        )
    );
    headers(&[
        ("x-slack-request-timestamp", &ts.to_string()),
        ("x-slack-signature", &signature),
    ])
}

// ---- published vectors ----

#[test]
fn github_vector_from_githubs_docs() {
    assert_eq!(
        format!(
            "sha256={}",
            hmac_hex(GITHUB_SECRET.as_bytes(), &[GITHUB_BODY])
        ),
        GITHUB_SIGNATURE
    );
    let verified = verifier(SignatureScheme::GitHub, &[GITHUB_SECRET])
        .verify_at(
            &headers(&[
                ("x-hub-signature-256", GITHUB_SIGNATURE),
                ("x-github-event", "ping"),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ]),
            GITHUB_BODY,
            0,
        )
        .unwrap();
    assert_eq!(verified.event_type.as_deref(), Some("ping"));
    assert_eq!(
        verified.message_id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(verified.timestamp, None);
}

#[test]
fn slack_vector_from_slacks_docs() {
    let verified = verifier(SignatureScheme::Slack, &[SLACK_SECRET])
        .verify_at(
            &headers(&[
                ("x-slack-request-timestamp", "1531420618"),
                ("x-slack-signature", SLACK_SIGNATURE),
            ]),
            SLACK_BODY.as_bytes(),
            SLACK_TIMESTAMP + 10,
        )
        .unwrap();
    assert_eq!(verified.timestamp, Some(SLACK_TIMESTAMP));
    // A form-encoded slash command: no JSON fields to report.
    assert_eq!((verified.message_id, verified.event_type), (None, None));
}

#[test]
fn standard_webhooks_vector_from_the_reference_libraries() {
    assert_eq!(
        standard_sign(STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_BODY),
        STANDARD_SIGNATURE
    );
    let v = verifier(SignatureScheme::StandardWebhooks, &[STANDARD_SECRET]);
    let sent = headers(&[
        ("webhook-id", STANDARD_ID),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", STANDARD_SIGNATURE),
    ]);
    let verified = v
        .verify_at(&sent, STANDARD_BODY.as_bytes(), STANDARD_TIMESTAMP)
        .unwrap();
    assert_eq!(verified.message_id.as_deref(), Some(STANDARD_ID));
    assert_eq!(verified.timestamp, Some(STANDARD_TIMESTAMP));
    // The secret without its `whsec_` prefix is the same key.
    let bare = verifier(
        SignatureScheme::StandardWebhooks,
        &[STANDARD_SECRET.trim_start_matches("whsec_")],
    );
    assert!(
        bare.verify_at(&sent, STANDARD_BODY.as_bytes(), STANDARD_TIMESTAMP)
            .is_ok()
    );
}

#[test]
fn stripe_vector_keyed_by_the_whole_whsec_secret() {
    assert_eq!(
        stripe_header(STRIPE_SECRET, STRIPE_TIMESTAMP, STRIPE_BODY),
        format!("t={STRIPE_TIMESTAMP},v1={STRIPE_V1}")
    );
    let sent = headers(&[(
        "stripe-signature",
        &format!(
            "t={STRIPE_TIMESTAMP},v1={},v1={STRIPE_V1},v0=00",
            "0".repeat(64)
        ),
    )]);
    let verified = verifier(SignatureScheme::Stripe, &[STRIPE_SECRET])
        .verify_at(&sent, STRIPE_BODY.as_bytes(), STRIPE_TIMESTAMP)
        .unwrap();
    assert_eq!(verified.message_id.as_deref(), Some("evt_1"));
    assert_eq!(verified.event_type.as_deref(), Some("invoice.paid"));
    assert_eq!(verified.timestamp, Some(STRIPE_TIMESTAMP));
}

#[test]
fn hmac_sha256_with_a_prefix_and_either_case() {
    let scheme = SignatureScheme::HmacSha256 {
        header: HeaderName::from_static("x-signature"),
        prefix: Some("sha256=".to_owned()),
    };
    let v = verifier(scheme, &["k"]);
    let hex = hmac_hex(b"k", &[b"{}"]);
    for value in [
        format!("sha256={hex}"),
        format!("sha256={}", hex.to_uppercase()),
    ] {
        assert!(
            v.verify_at(&headers(&[("x-signature", &value)]), b"{}", 0)
                .is_ok()
        );
    }
    // The prefix is case-sensitive, and required.
    for value in [format!("SHA256={hex}"), hex.clone()] {
        assert_eq!(
            v.verify_at(&headers(&[("x-signature", &value)]), b"{}", 0),
            Err(SignatureError::MalformedHeader(HeaderName::from_static(
                "x-signature"
            )))
        );
    }
}

// ---- wrong deliveries ----

#[test]
fn a_tampered_body_or_a_wrong_secret_is_a_mismatch() {
    let github = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
    assert_eq!(
        verifier(SignatureScheme::GitHub, &[GITHUB_SECRET]).verify_at(&github, b"Hello, World?", 0),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verifier(SignatureScheme::GitHub, &["It's a secret to everybody"]).verify_at(
            &github,
            GITHUB_BODY,
            0
        ),
        Err(SignatureError::Mismatch)
    );
    let slack = slack_headers(SLACK_SECRET, SLACK_TIMESTAMP, "a=1");
    assert_eq!(
        verifier(SignatureScheme::Slack, &[SLACK_SECRET]).verify_at(
            &slack,
            b"a=2",
            SLACK_TIMESTAMP
        ),
        Err(SignatureError::Mismatch)
    );
    let stripe = headers(&[(
        "stripe-signature",
        &stripe_header("whsec_other", STRIPE_TIMESTAMP, STRIPE_BODY),
    )]);
    assert_eq!(
        verifier(SignatureScheme::Stripe, &[STRIPE_SECRET]).verify_at(
            &stripe,
            STRIPE_BODY.as_bytes(),
            STRIPE_TIMESTAMP
        ),
        Err(SignatureError::Mismatch)
    );
    // Standard Webhooks signs the id too: the same signature under another id fails.
    let moved = headers(&[
        ("webhook-id", "msg_other"),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", STANDARD_SIGNATURE),
    ]);
    assert_eq!(
        verifier(SignatureScheme::StandardWebhooks, &[STANDARD_SECRET]).verify_at(
            &moved,
            STANDARD_BODY.as_bytes(),
            STANDARD_TIMESTAMP
        ),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn a_second_secret_verifies_during_rotation_in_either_position() {
    let github = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
    for secrets in [
        [GITHUB_SECRET, "the-next-one"],
        ["the-next-one", GITHUB_SECRET],
    ] {
        assert!(
            verifier(SignatureScheme::GitHub, &secrets)
                .verify_at(&github, GITHUB_BODY, 0)
                .is_ok()
        );
    }
    let v = verifier(SignatureScheme::Stripe, &["whsec_old", STRIPE_SECRET]);
    let stripe = headers(&[(
        "stripe-signature",
        &stripe_header(STRIPE_SECRET, STRIPE_TIMESTAMP, STRIPE_BODY),
    )]);
    assert!(
        v.verify_at(&stripe, STRIPE_BODY.as_bytes(), STRIPE_TIMESTAMP)
            .is_ok()
    );
    assert_eq!(
        verifier(SignatureScheme::Stripe, &["whsec_old", "whsec_older"]).verify_at(
            &stripe,
            STRIPE_BODY.as_bytes(),
            STRIPE_TIMESTAMP
        ),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn timestamps_300_s_away_pass_and_301_s_away_fail_for_every_timed_scheme() {
    let ts = 1_700_000_000u64;
    let cases: Vec<(SignatureVerifier, HeaderMap, &str)> = vec![
        (
            verifier(SignatureScheme::Slack, &[SLACK_SECRET]),
            slack_headers(SLACK_SECRET, ts, "{}"),
            "{}",
        ),
        (
            verifier(SignatureScheme::Stripe, &[STRIPE_SECRET]),
            headers(&[("stripe-signature", &stripe_header(STRIPE_SECRET, ts, "{}"))]),
            "{}",
        ),
        (
            verifier(SignatureScheme::StandardWebhooks, &[STANDARD_SECRET]),
            headers(&[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &ts.to_string()),
                ("webhook-signature", &standard_sign("msg_1", ts, "{}")),
            ]),
            "{}",
        ),
    ];
    for (v, sent, body) in &cases {
        let body = body.as_bytes();
        assert!(v.verify_at(sent, body, ts).is_ok());
        assert!(v.verify_at(sent, body, ts + 300).is_ok());
        assert!(v.verify_at(sent, body, ts - 300).is_ok());
        assert_eq!(
            v.verify_at(sent, body, ts + 301),
            Err(SignatureError::TooOld)
        );
        assert_eq!(
            v.verify_at(sent, body, ts - 301),
            Err(SignatureError::TooNew)
        );
    }
}

#[test]
fn the_tolerance_is_configurable_and_whole_seconds_of_at_least_one() {
    let ts = 1_700_000_000u64;
    let v = SignatureVerifier::new(
        VerifySignatureConfig::new(SignatureScheme::Slack, [secret(SLACK_SECRET)])
            .tolerance(Duration::from_secs(10)),
    )
    .unwrap();
    let sent = slack_headers(SLACK_SECRET, ts, "x");
    assert!(v.verify_at(&sent, b"x", ts + 10).is_ok());
    assert_eq!(
        v.verify_at(&sent, b"x", ts + 11),
        Err(SignatureError::TooOld)
    );
    for bad in [
        Duration::ZERO,
        Duration::from_millis(999),
        Duration::from_millis(1_500),
    ] {
        let error = SignatureVerifier::new(
            VerifySignatureConfig::new(SignatureScheme::Slack, [secret("s")]).tolerance(bad),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the tolerance must be a whole number of seconds, at least 1"
        );
    }
}

#[test]
fn configurations_that_cannot_verify_are_refused() {
    let none = SignatureVerifier::new(VerifySignatureConfig::new(SignatureScheme::GitHub, []));
    assert_eq!(
        none.unwrap_err().to_string(),
        "at least one secret is required"
    );
    for bad in ["whsec_not base64!", "whsec_", "%%%"] {
        let Some(bad) = Secret::new(bad) else {
            continue;
        };
        let error = SignatureVerifier::new(VerifySignatureConfig::new(
            SignatureScheme::StandardWebhooks,
            [bad],
        ))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "a standard-webhooks secret must be base64, optionally after whsec_"
        );
    }
}

#[test]
fn every_missing_header_is_named() {
    let missing = |name: &'static str| SignatureError::MissingHeader(HeaderName::from_static(name));
    let slack = verifier(SignatureScheme::Slack, &[SLACK_SECRET]);
    let full = slack_headers(SLACK_SECRET, 5, "");
    for name in ["x-slack-request-timestamp", "x-slack-signature"] {
        let mut sent = full.clone();
        sent.remove(name);
        assert_eq!(slack.verify_at(&sent, b"", 5), Err(missing(name)));
    }
    let standard = verifier(SignatureScheme::StandardWebhooks, &[STANDARD_SECRET]);
    let full = headers(&[
        ("webhook-id", STANDARD_ID),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", STANDARD_SIGNATURE),
    ]);
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut sent = full.clone();
        sent.remove(name);
        assert_eq!(
            standard.verify_at(&sent, STANDARD_BODY.as_bytes(), STANDARD_TIMESTAMP),
            Err(missing(name))
        );
    }
    assert_eq!(
        verifier(SignatureScheme::GitHub, &["s"]).verify_at(&HeaderMap::new(), b"", 0),
        Err(missing("x-hub-signature-256"))
    );
    assert_eq!(
        verifier(SignatureScheme::Stripe, &["s"]).verify_at(&HeaderMap::new(), b"", 0),
        Err(missing("stripe-signature"))
    );
    assert_eq!(
        verifier(SignatureScheme::from_name("hmac-sha256").unwrap(), &["s"]).verify_at(
            &HeaderMap::new(),
            b"",
            0
        ),
        Err(missing("x-webhook-signature"))
    );
    // A value that is not visible ASCII is no signature at all.
    let mut opaque = HeaderMap::new();
    opaque.insert(
        "x-hub-signature-256",
        HeaderValue::from_bytes(b"sha256=\xff").unwrap(),
    );
    assert_eq!(
        verifier(SignatureScheme::GitHub, &["s"]).verify_at(&opaque, b"", 0),
        Err(missing("x-hub-signature-256"))
    );
}

#[test]
fn every_malformed_header_is_named() {
    let malformed =
        |name: &'static str| SignatureError::MalformedHeader(HeaderName::from_static(name));
    let hex = "0".repeat(64);
    /// A scheme, the headers sent, and the one reported malformed.
    type Case = (SignatureScheme, Vec<(&'static str, String)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            SignatureScheme::GitHub,
            vec![("x-hub-signature-256", hex.clone())],
            "x-hub-signature-256",
        ),
        (
            SignatureScheme::GitHub,
            vec![("x-hub-signature-256", format!("sha1={hex}"))],
            "x-hub-signature-256",
        ),
        (
            SignatureScheme::GitHub,
            vec![("x-hub-signature-256", "sha256=zz".into())],
            "x-hub-signature-256",
        ),
        (
            SignatureScheme::Slack,
            vec![
                ("x-slack-request-timestamp", "-5".into()),
                ("x-slack-signature", format!("v0={hex}")),
            ],
            "x-slack-request-timestamp",
        ),
        (
            SignatureScheme::Slack,
            vec![
                ("x-slack-request-timestamp", "5".into()),
                ("x-slack-signature", hex.clone()),
            ],
            "x-slack-signature",
        ),
        (
            SignatureScheme::Stripe,
            vec![("stripe-signature", format!("v1={hex}"))],
            "stripe-signature",
        ),
        (
            SignatureScheme::Stripe,
            vec![("stripe-signature", "t=5".into())],
            "stripe-signature",
        ),
        (
            SignatureScheme::Stripe,
            vec![("stripe-signature", format!("t=5,t=6,v1={hex}"))],
            "stripe-signature",
        ),
        (
            SignatureScheme::StandardWebhooks,
            vec![
                ("webhook-id", " ".into()),
                ("webhook-timestamp", "5".into()),
                ("webhook-signature", STANDARD_SIGNATURE.into()),
            ],
            "webhook-id",
        ),
        (
            SignatureScheme::StandardWebhooks,
            vec![
                ("webhook-id", "m".into()),
                ("webhook-timestamp", "5.0".into()),
                ("webhook-signature", STANDARD_SIGNATURE.into()),
            ],
            "webhook-timestamp",
        ),
        (
            SignatureScheme::StandardWebhooks,
            vec![
                ("webhook-id", "m".into()),
                ("webhook-timestamp", "5".into()),
                ("webhook-signature", "v1a,abc".into()),
            ],
            "webhook-signature",
        ),
    ];
    for (scheme, pairs, name) in cases {
        let secret = if scheme == SignatureScheme::StandardWebhooks {
            STANDARD_SECRET
        } else {
            "s"
        };
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            verifier(scheme.clone(), &[secret]).verify_at(&headers(&pairs), b"{}", 5),
            Err(malformed(name)),
            "{scheme:?} {pairs:?}"
        );
    }
}

#[test]
fn the_first_of_repeated_headers_is_the_one_verified() {
    let sent = headers(&[
        ("x-hub-signature-256", GITHUB_SIGNATURE),
        ("x-hub-signature-256", "sha256=nonsense"),
    ]);
    assert!(
        verifier(SignatureScheme::GitHub, &[GITHUB_SECRET])
            .verify_at(&sent, GITHUB_BODY, 0)
            .is_ok()
    );
}

#[test]
fn the_verifier_debug_shows_no_secret() {
    let v = verifier(SignatureScheme::Stripe, &[STRIPE_SECRET]);
    let shown = format!("{v:?}");
    assert!(!shown.contains("5ecret"), "{shown}");
    assert!(
        shown.contains("stripe") || shown.contains("Stripe"),
        "{shown}"
    );
}

// ---- as a layer ----

type Echo = Response<Full<Bytes>>;

/// The stack of the module docs: buffered body, then the signature, then a handler echoing what it
/// received (the body, and the event type from the extension).
fn stack(
    config: VerifySignatureConfig,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<tower_webhooks::ResponseBody<tower_webhooks::ResponseBody<Full<Bytes>>>>,
    Error = Infallible,
    Future: Send,
> + Clone {
    ServiceBuilder::new()
        .layer(BodyLimitLayer::new(
            BodyLimitConfig::buffered().max_bytes(1024),
        ))
        .layer(VerifySignatureLayer::new(config).unwrap())
        .service_fn(|request: Request<BufferedBody>| async move {
            let verified = request
                .extensions()
                .get::<VerifiedWebhook>()
                .cloned()
                .unwrap();
            let mut response: Echo = Response::new(Full::new(request.into_body().into_bytes()));
            if let Some(event) = verified.event_type {
                response
                    .headers_mut()
                    .insert("x-event", HeaderValue::from_str(&event).unwrap());
            }
            Ok::<_, Infallible>(response)
        })
}

#[tokio::test]
async fn the_layer_hands_the_same_bytes_on_with_the_verified_extension() {
    let clock = ManualClock::new(STANDARD_TIMESTAMP * 1_000);
    let svc = stack(
        VerifySignatureConfig::new(SignatureScheme::StandardWebhooks, [secret(STANDARD_SECRET)])
            .clock(clock.clone()),
    );
    let request = |sig: &str| {
        Request::post("/hook")
            .header("webhook-id", STANDARD_ID)
            .header("webhook-timestamp", "1614265330")
            .header("webhook-signature", sig)
            .body(Full::new(Bytes::from_static(STANDARD_BODY.as_bytes())))
            .unwrap()
    };
    let response = svc
        .clone()
        .oneshot(request(STANDARD_SIGNATURE))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, STANDARD_BODY.as_bytes());

    // The clock moves: 301 s later the same delivery is refused.
    clock.advance(301_000);
    let response = svc.oneshot(request(STANDARD_SIGNATURE)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_refusal_is_the_same_plain_401_without_www_authenticate() {
    let clock = ManualClock::new(STRIPE_TIMESTAMP * 1_000);
    let svc = stack(
        VerifySignatureConfig::new(SignatureScheme::Stripe, [secret(STRIPE_SECRET)]).clock(clock),
    );
    let good = stripe_header(STRIPE_SECRET, STRIPE_TIMESTAMP, STRIPE_BODY);
    let refusals = [
        None,
        Some("".to_owned()),
        Some("t=1700000000".to_owned()),
        Some("garbage".to_owned()),
        Some(stripe_header("whsec_wrong", STRIPE_TIMESTAMP, STRIPE_BODY)),
        Some(stripe_header(
            STRIPE_SECRET,
            STRIPE_TIMESTAMP - 301,
            STRIPE_BODY,
        )),
        Some(stripe_header(
            STRIPE_SECRET,
            STRIPE_TIMESTAMP + 301,
            STRIPE_BODY,
        )),
        Some(good.replace("t=1700000000", "t=1700000001")),
    ];
    for header in refusals {
        let mut request = Request::post("/hook");
        if let Some(header) = &header {
            request = request.header("stripe-signature", header);
        }
        let request = request
            .body(Full::new(Bytes::from_static(STRIPE_BODY.as_bytes())))
            .unwrap();
        let response = svc.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(response.headers().len(), 1, "{header:?}");
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert!(response.headers().get("www-authenticate").is_none());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "unauthorized");
    }
    let request = Request::post("/hook")
        .header("stripe-signature", good)
        .body(Full::new(Bytes::from_static(STRIPE_BODY.as_bytes())))
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-event"], "invoice.paid");
}

#[tokio::test]
async fn the_body_limit_in_front_answers_before_any_signature_is_checked() {
    let svc = stack(VerifySignatureConfig::new(
        SignatureScheme::GitHub,
        [secret(GITHUB_SECRET)],
    ));
    let request = Request::post("/hook")
        .header("x-hub-signature-256", GITHUB_SIGNATURE)
        .body(Full::new(Bytes::from(vec![b'x'; 1025])))
        .unwrap();
    assert_eq!(
        svc.oneshot(request).await.unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[test]
fn clones_of_a_layer_share_one_verifier() {
    let layer = VerifySignatureLayer::new(VerifySignatureConfig::new(
        SignatureScheme::GitHub,
        [secret("s")],
    ))
    .unwrap();
    assert!(Arc::ptr_eq(layer.verifier(), layer.clone().verifier()));
}
