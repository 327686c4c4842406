//! The signature header parsers of `tower_webhooks::signature::parse` against oracles written
//! from SPEC §8, one check per parser; and the whole verifier on the same header with an
//! arbitrary body and clock: never a panic, never a delivery verified without its signature.
//!
//! The input's first byte picks the shape: raw bytes as the header value, or a valid value with
//! one byte flipped, inserted or removed (where parsers are most likely to disagree with the
//! format).

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use tower_webhooks::secret::Secret;
use tower_webhooks::signature::parse::{
    StandardSignatures, StripeSignature, parse_github_signature, parse_slack_signature,
};
use tower_webhooks::signature::{
    SignatureError, SignatureScheme, SignatureVerifier, VerifySignatureConfig,
};

use super::{Input, Outcome};

const HEX64: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
const B64: &str = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// A header value from the input: raw, or `valid` with one byte changed.
fn header_value(input: &mut Input<'_>, valid: &[String]) -> Vec<u8> {
    let mode = input.byte();
    if mode % 2 == 0 {
        return input.bytes(96).to_vec();
    }
    let mut value = input.pick(valid).clone().into_bytes();
    let at = input.below(value.len() + 1);
    let byte = input.byte();
    match input.below(3) {
        0 if at < value.len() => value[at] = byte,
        1 => value.insert(at, byte),
        _ if at < value.len() => {
            value.remove(at);
        }
        _ => {}
    }
    value
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

fn is_hex64(value: &[u8]) -> bool {
    value.len() == 64 && value.iter().all(u8::is_ascii_hexdigit)
}

fn is_timestamp(value: &[u8]) -> bool {
    let value = trim(value);
    !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit)
}

fn is_base64_tag(value: &[u8]) -> bool {
    value.len() == 44
        && base64::engine::general_purpose::STANDARD
            .decode(value)
            .is_ok_and(|tag| tag.len() == 32)
}

/// Runs the verifier of `scheme` on `value` in `header`, with an arbitrary body and time: it must
/// not panic, and since nobody signed this body, it must not verify.
fn verify_never_passes(
    input: &mut Input<'_>,
    scheme: SignatureScheme,
    extra: &[(&'static str, &'static str)],
    header: &'static str,
    value: &[u8],
) -> Outcome {
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return Ok(());
    };
    let secret = if scheme == SignatureScheme::StandardWebhooks {
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    } else {
        "fuzz-secret"
    };
    let verifier = SignatureVerifier::new(VerifySignatureConfig::new(
        scheme,
        [Secret::new(secret).unwrap()],
    ))
    .map_err(|e| e.to_string())?;
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static(header), value);
    for (name, value) in extra {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    let now = u64::from(input.byte()) * 1_000_000_000 / 255 * 2;
    let body = input.bytes(64);
    let outcome = verifier.verify_at(&headers, body, now);
    ensure!(
        outcome.is_err(),
        "an unsigned body verified: header {:?}",
        headers
    );
    // A value that is not visible ASCII is no signature: reported as missing, never parsed.
    let readable = headers[header].to_str().is_ok();
    ensure!(
        readable
            != matches!(outcome, Err(SignatureError::MissingHeader(ref name)) if name == header),
        "a present header was reported missing, or an unreadable one parsed: {headers:?}"
    );
    Ok(())
}

/// `X-Hub-Signature-256`: `sha256=` then exactly 64 hex digits.
pub fn check_github(data: &[u8]) -> Outcome {
    let mut input = Input::new(data);
    let value = header_value(&mut input, &[format!("sha256={HEX64}")]);
    let expected = trim(&value).strip_prefix(b"sha256=").is_some_and(is_hex64);
    let parsed = parse_github_signature(&value);
    ensure!(
        parsed.is_ok() == expected,
        "github {:?}: parsed {parsed:?}, oracle {expected}",
        String::from_utf8_lossy(&value)
    );
    verify_never_passes(
        &mut input,
        SignatureScheme::GitHub,
        &[],
        "x-hub-signature-256",
        &value,
    )
}

/// `X-Slack-Signature`: `v0=` then exactly 64 hex digits.
pub fn check_slack(data: &[u8]) -> Outcome {
    let mut input = Input::new(data);
    let value = header_value(&mut input, &[format!("v0={HEX64}")]);
    let expected = trim(&value).strip_prefix(b"v0=").is_some_and(is_hex64);
    let parsed = parse_slack_signature(&value);
    ensure!(
        parsed.is_ok() == expected,
        "slack {:?}: parsed {parsed:?}, oracle {expected}",
        String::from_utf8_lossy(&value)
    );
    verify_never_passes(
        &mut input,
        SignatureScheme::Slack,
        &[("x-slack-request-timestamp", "1000000000")],
        "x-slack-signature",
        &value,
    )
}

/// `Stripe-Signature`: `key=value` entries, one `t` of digits, at least one `v1` of 64 hex digits,
/// other keys ignored.
pub fn check_stripe(data: &[u8]) -> Outcome {
    let mut input = Input::new(data);
    let value = header_value(
        &mut input,
        &[
            format!("t=1000000000,v1={HEX64}"),
            format!("t=1000000000,v1={HEX64},v0={HEX64}"),
            format!("v1={HEX64},t=5,v1={HEX64}"),
        ],
    );
    let mut times = 0;
    let mut signatures = 0;
    let mut well_formed = true;
    for entry in trim(&value).split(|b| *b == b',') {
        let Some(eq) = entry.iter().position(|b| *b == b'=') else {
            well_formed = false;
            break;
        };
        let (key, rest) = (&entry[..eq], &entry[eq + 1..]);
        match key {
            b"t" => {
                times += 1;
                well_formed &= is_timestamp(rest);
            }
            b"v1" => {
                signatures += 1;
                well_formed &= is_hex64(rest);
            }
            _ => {}
        }
    }
    let expected = well_formed && times == 1 && signatures > 0;
    let parsed = StripeSignature::parse(&value);
    ensure!(
        parsed.is_ok() == expected,
        "stripe {:?}: parsed {parsed:?}, oracle {expected}",
        String::from_utf8_lossy(&value)
    );
    if let Ok(parsed) = parsed {
        ensure!(
            parsed.signatures().count() == signatures,
            "stripe: {signatures} v1 entries, {} read",
            parsed.signatures().count()
        );
    }
    verify_never_passes(
        &mut input,
        SignatureScheme::Stripe,
        &[],
        "stripe-signature",
        &value,
    )
}

/// `webhook-signature`: space-separated `version,signature` entries, at least one `v1` whose
/// signature is a 32-byte base64 tag; other versions ignored.
pub fn check_standard(data: &[u8]) -> Outcome {
    let mut input = Input::new(data);
    let value = header_value(
        &mut input,
        &[
            format!("v1,{B64}"),
            format!("v1a,xyz v1,{B64}"),
            format!("v1,{B64}  v1,{B64}"),
        ],
    );
    let mut signatures = 0;
    let mut well_formed = true;
    for entry in trim(&value).split(|b| *b == b' ').filter(|e| !e.is_empty()) {
        let Some(comma) = entry.iter().position(|b| *b == b',') else {
            well_formed = false;
            break;
        };
        if &entry[..comma] == b"v1" {
            signatures += 1;
            well_formed &= is_base64_tag(&entry[comma + 1..]);
        }
    }
    let expected = well_formed && signatures > 0;
    let parsed = StandardSignatures::parse(&value);
    ensure!(
        parsed.is_ok() == expected,
        "standard {:?}: parsed {parsed:?}, oracle {expected}",
        String::from_utf8_lossy(&value)
    );
    if let Ok(parsed) = parsed {
        ensure!(
            parsed.signatures().count() == signatures,
            "standard: {signatures} v1 entries, {} read",
            parsed.signatures().count()
        );
    }
    verify_never_passes(
        &mut input,
        SignatureScheme::StandardWebhooks,
        &[("webhook-id", "msg_1"), ("webhook-timestamp", "1000000000")],
        "webhook-signature",
        &value,
    )
}
