//! [`VerifySignature`]: lets a webhook delivery through only when its sender's signature verifies
//! (SPEC §8), in front of any handler.
//!
//! # Schemes
//!
//! | scheme | headers | signed content | key |
//! |---|---|---|---|
//! | `standard-webhooks` | `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> …` | `<id>.<timestamp>.<body>` | the secret base64-decoded, after an optional `whsec_` |
//! | `github` | `X-Hub-Signature-256: sha256=<hex>` | `<body>` | the secret's bytes |
//! | `stripe` | `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>…]` | `<t>.<body>` | the secret's bytes, `whsec_` included |
//! | `slack` | `X-Slack-Request-Timestamp`, `X-Slack-Signature: v0=<hex>` | `v0:<ts>:<body>` | the secret's bytes |
//! | `hmac-sha256` | a configured header, optional case-sensitive prefix, then hex | `<body>` | the secret's bytes |
//!
//! All are HMAC-SHA256. Hex is accepted in either case. Any of several `v1` entries may match
//! (senders list more than one while they rotate), and any of several configured secrets may
//! match (you list more than one while you rotate): every secret is compared with every signature
//! in constant time, with no early exit.
//!
//! # Replay
//!
//! The schemes that sign a timestamp (`standard-webhooks`, `stripe`, `slack`) refuse a delivery
//! whose timestamp is more than the tolerance (default 300 s, [`VerifySignatureConfig::tolerance`])
//! in the past **or** the future of the clock ([`VerifySignatureConfig::clock`]). Inside the window
//! a captured delivery still verifies: de-duplicate on the message id to make it harmless.
//! `github` and `hmac-sha256` sign no timestamp, so only de-duplication stops a replay.
//!
//! # Answers
//!
//! Every failure (a missing or malformed header, a stale or future timestamp, a wrong signature)
//! is `401` `unauthorized` (`text/plain; charset=utf-8`, no `WWW-Authenticate`: these senders do
//! not speak the Bearer scheme), the same for every reason; the reason is logged at `debug`
//! (target `tower_webhooks::signature`) and nowhere else. A verified request goes on with a
//! [`VerifiedWebhook`] extension: the message id, the signed timestamp and the event type.
//!
//! # The body
//!
//! A signature covers the raw body, so the body must be read first: the service takes a
//! `Request<`[`BufferedBody`](crate::body::BufferedBody)`>`, which [`BodyLimit`](crate::BodyLimit) in
//! buffered mode (the default) produces within its byte cap and deadline. The inner service gets
//! the same bytes, untouched.
//!
//! ```
//! use std::convert::Infallible;
//! use hmac::{Hmac, Mac};
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_webhooks::signature::{SignatureScheme, VerifiedWebhook, VerifySignatureConfig, VerifySignatureLayer};
//! use tower_webhooks::BodyLimitLayer;
//! use tower_webhooks::body_limit::BodyLimitConfig;
//! use tower_webhooks::body::BufferedBody;
//! use tower_webhooks::secret::Secret;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let secret = Secret::new("It's a Secret to Everybody").unwrap();
//! let verify = VerifySignatureLayer::new(VerifySignatureConfig::new(SignatureScheme::GitHub, [secret]))
//!     .expect("one secret");
//! let svc = ServiceBuilder::new()
//!     .layer(BodyLimitLayer::new(BodyLimitConfig::buffered()))
//!     .layer(verify)
//!     .service_fn(|req: Request<BufferedBody>| async move {
//!         let event = req.extensions().get::<VerifiedWebhook>().unwrap().event_type.clone();
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(event.unwrap_or_default()))))
//!     });
//!
//! let body = b"Hello, World!";
//! let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"It's a Secret to Everybody").unwrap();
//! mac.update(body);
//! let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
//! let signed = Request::post("/github")
//!     .header("x-hub-signature-256", signature)
//!     .header("x-github-event", "ping")
//!     .body(Full::new(Bytes::from_static(body)))
//!     .unwrap();
//! assert_eq!(svc.clone().oneshot(signed).await.unwrap().status(), 200);
//!
//! let forged = Request::post("/github")
//!     .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
//!     .body(Full::new(Bytes::from_static(body)))
//!     .unwrap();
//! assert_eq!(svc.oneshot(forged).await.unwrap().status(), 401);
//! # }
//! ```
//!
//! [`SignatureVerifier`] does the same without tower, for a handler that has the headers and the
//! body in hand; [`parse`] has the header parsers.

pub mod parse;
mod service;
mod verifier;

pub use service::{VerifySignature, VerifySignatureLayer};
pub use verifier::{
    DEFAULT_TOLERANCE, InvalidSignatureConfig, STRIPE_SIGNATURE, SignatureError, SignatureScheme,
    SignatureVerifier, VerifiedWebhook, VerifySignatureConfig, WEBHOOK_ID, WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP, X_GITHUB_DELIVERY, X_GITHUB_EVENT, X_HUB_SIGNATURE_256,
    X_SLACK_REQUEST_TIMESTAMP, X_SLACK_SIGNATURE, X_WEBHOOK_SIGNATURE,
};

#[cfg(test)]
mod assertions {
    use super::*;
    use static_assertions::assert_impl_all;

    assert_impl_all!(VerifySignatureLayer: Send, Sync, Clone);
    assert_impl_all!(SignatureVerifier: Send, Sync);
    assert_impl_all!(VerifiedWebhook: Send, Sync, Clone);
}
