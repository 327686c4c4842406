//! [`SignatureScheme`], [`SignatureVerifier`] and what a verification finds: [`VerifiedWebhook`]
//! or a [`SignatureError`].

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use super::parse::{
    Malformed, StandardSignatures, StripeSignature, Tag, parse_github_signature, parse_hex_tag,
    parse_slack_signature, parse_timestamp,
};
use crate::clock::{SharedClock, SystemClock};
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Standard Webhooks' message id header.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// Standard Webhooks' timestamp header.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// Standard Webhooks' signature header.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
/// GitHub's SHA-256 signature header.
pub const X_HUB_SIGNATURE_256: HeaderName = HeaderName::from_static("x-hub-signature-256");
/// GitHub's delivery id header: the message id of a GitHub delivery.
pub const X_GITHUB_DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
/// GitHub's event type header.
pub const X_GITHUB_EVENT: HeaderName = HeaderName::from_static("x-github-event");
/// Stripe's signature header.
pub const STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");
/// Slack's timestamp header.
pub const X_SLACK_REQUEST_TIMESTAMP: HeaderName =
    HeaderName::from_static("x-slack-request-timestamp");
/// Slack's signature header.
pub const X_SLACK_SIGNATURE: HeaderName = HeaderName::from_static("x-slack-signature");
/// The signature header of the `hmac-sha256` scheme when none is configured.
pub const X_WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("x-webhook-signature");

/// The default tolerance between a signed timestamp and the clock: 300 s either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// How a sender signs its deliveries (SPEC §8).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// `standard-webhooks` (Svix and every Standard Webhooks sender): `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature` (`v1,<base64>` entries) over
    /// `<id>.<timestamp>.<body>`; the key is the base64-decoded secret after an optional `whsec_`.
    StandardWebhooks,
    /// `github`: `X-Hub-Signature-256: sha256=<hex>` over the body; no timestamp.
    GitHub,
    /// `stripe`: `Stripe-Signature: t=<ts>,v1=<hex>…` over `<t>.<body>`; the key is the secret as
    /// written, `whsec_` included.
    Stripe,
    /// `slack`: `X-Slack-Request-Timestamp` and `X-Slack-Signature: v0=<hex>` over
    /// `v0:<ts>:<body>`.
    Slack,
    /// `hmac-sha256` (OpenClaw's generic-webhooks proposal): `header` carries the hex HMAC-SHA256 of
    /// the body, after `prefix` (matched case-sensitively) when there is one; no timestamp, so a
    /// captured delivery can be replayed for ever. Prefer a scheme that signs a timestamp.
    HmacSha256 {
        /// The header holding the signature.
        header: HeaderName,
        /// Text before the hex digits, such as `sha256=`.
        prefix: Option<String>,
    },
}

impl SignatureScheme {
    /// The scheme of a configuration name: `standard-webhooks`, `github`, `stripe`, `slack`, or
    /// `hmac-sha256` (reading [`X_WEBHOOK_SIGNATURE`] with no prefix).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "standard-webhooks" => Self::StandardWebhooks,
            "github" => Self::GitHub,
            "stripe" => Self::Stripe,
            "slack" => Self::Slack,
            "hmac-sha256" => Self::HmacSha256 {
                header: X_WEBHOOK_SIGNATURE,
                prefix: None,
            },
            _ => return None,
        })
    }

    /// The configuration name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard-webhooks",
            Self::GitHub => "github",
            Self::Stripe => "stripe",
            Self::Slack => "slack",
            Self::HmacSha256 { .. } => "hmac-sha256",
        }
    }

    /// Whether the scheme signs a timestamp, so the tolerance window applies.
    pub fn signs_timestamp(&self) -> bool {
        matches!(self, Self::StandardWebhooks | Self::Stripe | Self::Slack)
    }
}

/// Why a delivery was not verified. Only ever logged at `debug`: the response is the same `401`
/// whatever the reason, so a prober learns nothing from it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// A header the scheme needs is absent (or not visible ASCII).
    MissingHeader(HeaderName),
    /// A header is not in the scheme's format.
    MalformedHeader(HeaderName),
    /// The signed timestamp is further in the past than the tolerance.
    TooOld,
    /// The signed timestamp is further in the future than the tolerance.
    TooNew,
    /// No signature matches any secret.
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHeader(name) => write!(f, "missing header {name}"),
            Self::MalformedHeader(name) => write!(f, "malformed header {name}"),
            Self::TooOld => f.write_str("timestamp older than the tolerance"),
            Self::TooNew => f.write_str("timestamp further ahead than the tolerance"),
            Self::Mismatch => f.write_str("no signature matches"),
        }
    }
}

impl std::error::Error for SignatureError {}

/// What a verified delivery says about itself: a request extension left by
/// [`VerifySignature`](super::VerifySignature).
///
/// | scheme | `message_id` | `timestamp` | `event_type` |
/// |---|---|---|---|
/// | `standard-webhooks` | `webhook-id` | `webhook-timestamp` | body `type` |
/// | `github` | `X-GitHub-Delivery` | — | `X-GitHub-Event` |
/// | `stripe` | body `id` | `t=` | body `type` |
/// | `slack` | body `event_id` | `X-Slack-Request-Timestamp` | body `event.type`, else `type` |
/// | `hmac-sha256` | — | — | — |
///
/// Only the signed parts are authenticated: GitHub's two headers are not covered by its signature.
/// Body values are read only when the body is a JSON object and they are non-empty strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedWebhook {
    /// The sender's message (delivery) id.
    pub message_id: Option<String>,
    /// The signed Unix timestamp, in seconds.
    pub timestamp: Option<u64>,
    /// The event type.
    pub event_type: Option<String>,
}

/// A configuration [`SignatureVerifier::new`] cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSignatureConfig {
    message: &'static str,
}

impl fmt::Display for InvalidSignatureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for InvalidSignatureConfig {}

/// Settings of [`SignatureVerifier`] and [`VerifySignature`](super::VerifySignature).
///
/// ```
/// use std::time::Duration;
/// use tower_webhooks::secret::Secret;
/// use tower_webhooks::signature::{SignatureScheme, VerifySignatureConfig};
///
/// let config = VerifySignatureConfig::new(
///     SignatureScheme::Stripe,
///     [Secret::new("whsec_old").unwrap(), Secret::new("whsec_new").unwrap()],
/// )
/// .tolerance(Duration::from_secs(120));
/// assert!(!format!("{config:?}").contains("whsec"));
/// ```
#[derive(Clone)]
pub struct VerifySignatureConfig {
    pub(crate) scheme: SignatureScheme,
    pub(crate) secrets: Vec<Secret>,
    pub(crate) tolerance: Duration,
    pub(crate) clock: SharedClock,
}

impl fmt::Debug for VerifySignatureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifySignatureConfig")
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets.len())
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

impl VerifySignatureConfig {
    /// Verifies `scheme` with any of `secrets` (several during a rotation), a tolerance of 300 s
    /// and the system clock.
    pub fn new(scheme: SignatureScheme, secrets: impl IntoIterator<Item = Secret>) -> Self {
        Self {
            scheme,
            secrets: secrets.into_iter().collect(),
            tolerance: DEFAULT_TOLERANCE,
            clock: SystemClock::shared(),
        }
    }

    /// How far a signed timestamp may be from the clock, either way: whole seconds, at least one.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The clock timestamps are checked against (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }
}

/// Checks a delivery's signature: the scheme's headers, the tolerance window, and an HMAC-SHA256
/// under each configured secret compared in constant time against every signature presented.
///
/// The keyed HMAC state of each secret is built once, here, and cloned per delivery. Every secret
/// is tried against every presented signature with no early exit, so neither which secret matched
/// nor how many there are shows in the timing.
pub struct SignatureVerifier {
    scheme: SignatureScheme,
    keys: Vec<HmacSha256>,
    tolerance_secs: u64,
    clock: SharedClock,
}

impl fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureVerifier")
            .field("scheme", &self.scheme)
            .field("secrets", &self.keys.len())
            .field("tolerance_secs", &self.tolerance_secs)
            .finish_non_exhaustive()
    }
}

impl SignatureVerifier {
    /// A verifier for `config`. Refused: no secret; a `standard-webhooks` secret that is not
    /// base64 (after an optional `whsec_`) or decodes to nothing; a tolerance under one second or
    /// with a fraction of a second.
    pub fn new(config: VerifySignatureConfig) -> Result<Self, InvalidSignatureConfig> {
        let invalid = |message| InvalidSignatureConfig { message };
        if config.secrets.is_empty() {
            return Err(invalid("at least one secret is required"));
        }
        if config.tolerance < Duration::from_secs(1) || config.tolerance.subsec_nanos() != 0 {
            return Err(invalid(
                "the tolerance must be a whole number of seconds, at least 1",
            ));
        }
        let keys = config
            .secrets
            .iter()
            .map(|secret| key_for(&config.scheme, secret))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                invalid("a standard-webhooks secret must be base64, optionally after whsec_")
            })?;
        Ok(Self {
            scheme: config.scheme,
            keys,
            tolerance_secs: config.tolerance.as_secs(),
            clock: config.clock,
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> &SignatureScheme {
        &self.scheme
    }

    /// Verifies a delivery against the clock's current time.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<VerifiedWebhook, SignatureError> {
        // GitHub and plain HMAC sign no timestamp: they never read the clock.
        let now = if self.scheme.signs_timestamp() {
            self.clock.epoch_millis() / 1_000
        } else {
            0
        };
        self.verify_at(headers, body, now)
    }

    /// Verifies a delivery as if the time were `now_secs` (Unix seconds).
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: u64,
    ) -> Result<VerifiedWebhook, SignatureError> {
        match &self.scheme {
            SignatureScheme::GitHub => {
                let tag = parse_github_signature(header(headers, &X_HUB_SIGNATURE_256)?)
                    .map_err(malformed(&X_HUB_SIGNATURE_256))?;
                self.check(&[body], [tag])?;
                Ok(VerifiedWebhook {
                    message_id: header_text(headers, &X_GITHUB_DELIVERY),
                    timestamp: None,
                    event_type: header_text(headers, &X_GITHUB_EVENT),
                })
            }
            SignatureScheme::HmacSha256 {
                header: name,
                prefix,
            } => {
                let value = header(headers, name)?;
                let prefix = prefix.as_deref().unwrap_or("").as_bytes();
                let hex = value
                    .trim_ascii()
                    .strip_prefix(prefix)
                    .ok_or_else(|| SignatureError::MalformedHeader(name.clone()))?;
                let tag = parse_hex_tag(hex.trim_ascii()).map_err(malformed(name))?;
                self.check(&[body], [tag])?;
                Ok(VerifiedWebhook::default())
            }
            SignatureScheme::Slack => {
                let ts_text = header(headers, &X_SLACK_REQUEST_TIMESTAMP)?.trim_ascii();
                let timestamp =
                    parse_timestamp(ts_text).map_err(malformed(&X_SLACK_REQUEST_TIMESTAMP))?;
                let tag = parse_slack_signature(header(headers, &X_SLACK_SIGNATURE)?)
                    .map_err(malformed(&X_SLACK_SIGNATURE))?;
                self.check_time(timestamp, now_secs)?;
                self.check(&[b"v0:", ts_text, b":", body], [tag])?;
                let fields = BodyFields::read(body);
                Ok(VerifiedWebhook {
                    message_id: fields.event_id,
                    timestamp: Some(timestamp),
                    event_type: fields.event_type.or(fields.kind),
                })
            }
            SignatureScheme::Stripe => {
                let signature = StripeSignature::parse(header(headers, &STRIPE_SIGNATURE)?)
                    .map_err(malformed(&STRIPE_SIGNATURE))?;
                self.check_time(signature.timestamp, now_secs)?;
                self.check(
                    &[signature.timestamp_text(), b".", body],
                    signature.signatures(),
                )?;
                let fields = BodyFields::read(body);
                Ok(VerifiedWebhook {
                    message_id: fields.id,
                    timestamp: Some(signature.timestamp),
                    event_type: fields.kind,
                })
            }
            SignatureScheme::StandardWebhooks => {
                let id = header(headers, &WEBHOOK_ID)?.trim_ascii();
                if id.is_empty() {
                    return Err(SignatureError::MalformedHeader(WEBHOOK_ID));
                }
                let ts_text = header(headers, &WEBHOOK_TIMESTAMP)?.trim_ascii();
                let timestamp = parse_timestamp(ts_text).map_err(malformed(&WEBHOOK_TIMESTAMP))?;
                let signatures = StandardSignatures::parse(header(headers, &WEBHOOK_SIGNATURE)?)
                    .map_err(malformed(&WEBHOOK_SIGNATURE))?;
                self.check_time(timestamp, now_secs)?;
                self.check(&[id, b".", ts_text, b".", body], signatures.signatures())?;
                let fields = BodyFields::read(body);
                Ok(VerifiedWebhook {
                    // Visible ASCII, checked by `header`.
                    message_id: Some(String::from_utf8_lossy(id).into_owned()),
                    timestamp: Some(timestamp),
                    event_type: fields.kind,
                })
            }
        }
    }

    fn check_time(&self, timestamp: u64, now_secs: u64) -> Result<(), SignatureError> {
        if timestamp.saturating_add(self.tolerance_secs) < now_secs {
            Err(SignatureError::TooOld)
        } else if now_secs.saturating_add(self.tolerance_secs) < timestamp {
            Err(SignatureError::TooNew)
        } else {
            Ok(())
        }
    }

    /// The HMAC of `parts` under every key, each compared with every presented tag, all in
    /// constant time and to the end.
    fn check(
        &self,
        parts: &[&[u8]],
        presented: impl IntoIterator<Item = Tag>,
    ) -> Result<(), SignatureError> {
        // At most a handful of keys (a rotation overlaps two or three): computed once each.
        let expected: Vec<Tag> = self
            .keys
            .iter()
            .map(|key| {
                let mut mac = key.clone();
                for part in parts {
                    mac.update(part);
                }
                mac.finalize().into_bytes().into()
            })
            .collect();
        let mut matched = Choice::from(0);
        for tag in presented {
            for candidate in &expected {
                matched |= candidate.ct_eq(&tag);
            }
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The HMAC key of `secret` under `scheme`: its UTF-8 bytes as written, except for Standard
/// Webhooks, whose secret is base64 after an optional `whsec_`.
fn key_for(scheme: &SignatureScheme, secret: &Secret) -> Option<HmacSha256> {
    let value = secret.expose();
    let key = match scheme {
        SignatureScheme::StandardWebhooks => {
            let encoded = value.strip_prefix("whsec_").unwrap_or(value);
            let key = STANDARD.decode(encoded).ok()?;
            if key.is_empty() {
                return None;
            }
            key
        }
        _ => value.as_bytes().to_vec(),
    };
    // HMAC takes a key of any length.
    HmacSha256::new_from_slice(&key).ok()
}

/// The first value of `name`, which must be visible ASCII (what every signature header is).
fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a [u8], SignatureError> {
    headers
        .get(name)
        .filter(|value| value.to_str().is_ok())
        .map(|value| value.as_bytes())
        .ok_or_else(|| SignatureError::MissingHeader(name.clone()))
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let text = headers.get(name)?.to_str().ok()?.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn malformed(name: &HeaderName) -> impl FnOnce(Malformed) -> SignatureError + '_ {
    move |Malformed| SignatureError::MalformedHeader(name.clone())
}

/// The few body fields a [`VerifiedWebhook`] reports, read in one pass that skips everything else.
#[derive(Default, serde::Deserialize)]
struct BodyFields {
    #[serde(default, deserialize_with = "non_empty_string")]
    id: Option<String>,
    #[serde(default, deserialize_with = "non_empty_string")]
    event_id: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "non_empty_string")]
    kind: Option<String>,
    #[serde(default, rename = "event", deserialize_with = "event_type")]
    event_type: Option<String>,
}

impl BodyFields {
    fn read(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// A non-empty string, or `None` for any other JSON value (never an error, so one odd field does
/// not hide the others).
fn non_empty_string<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let value: serde_json::Value = serde::Deserialize::deserialize(de)?;
    Ok(match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s),
        _ => None,
    })
}

/// `type` of the `event` object (Slack's Events API), or `None`.
fn event_type<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Event {
        #[serde(default, rename = "type", deserialize_with = "non_empty_string")]
        kind: Option<String>,
    }
    let value: serde_json::Value = serde::Deserialize::deserialize(de)?;
    Ok(serde_json::from_value::<Event>(value)
        .ok()
        .and_then(|event| event.kind))
}
