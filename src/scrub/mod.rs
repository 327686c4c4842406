//! [`ScrubOwnerMetadata`]: no response carries owner or session metadata (SPEC §4).
//!
//! Every flow object of a TaskFlow envelope (`result.flow`, `result.flows[]`, `result.current`)
//! loses `ownerKey`, `requesterOrigin` and `chainId`; every task object (`result.task`,
//! `result.tasks[]`) loses `ownerKey`, `requesterSessionKey`, `requesterAgentId` and `metadata`.
//! Only those positions are touched: caller-supplied JSON such as a flow's `stateJson` or
//! `waitJson` is returned exactly as stored, even if it has a member named `ownerKey`. Positions and
//! key sets are a [`ScrubConfig`]; the scrubbing itself is [`ScrubConfig::scrub`], usable without
//! the middleware.
//!
//! # How each response is handled
//!
//! - **Answers this crate built owner-free** (the
//!   [`TaskFlowActionService`](crate::TaskFlowActionService)'s envelopes, whose records are
//!   allow-listed views): passed on as they are, with no parse. The service marks them by their
//!   `Content-Type` value, whose bytes live in a `static` of this crate (the same text built
//!   anywhere else is no mark), so the mark costs no allocation, survives any body wrapper in
//!   between, and no other handler can make one.
//! - **Structured documents of [`json_response`](crate::body::json_response)**: scrubbed in place and
//!   serialised once, with `Content-Length` set to the new length, whatever wraps the body on the
//!   way. The document is shared with the response's extensions; the scrub trusts it only while a
//!   body still holds it unserialised, so a body swapped or drained on the way is read like any
//!   other.
//! - **Any other response whose `Content-Type` is JSON** (`application/json` or `*/*+json`):
//!   the body is read completely, parsed, scrubbed and re-serialised, with `Content-Length` set to
//!   the new length (and any `Transfer-Encoding` removed). It is always re-serialised, even when
//!   nothing was removed, so that duplicate keys cannot smuggle a second copy past the scrubber.
//!   Trailers are dropped. An empty body passes as it is, headers untouched (a `204`, or a
//!   response to `HEAD`).
//! - **Everything else** (no `Content-Type`, or one that is not JSON) passes untouched, unread.
//!
//! # Failing closed
//!
//! A JSON response that cannot be scrubbed is never passed on. It is replaced by `500 Internal
//! Server Error` ([`Rejection::InternalServerError`](crate::rejection::Rejection::InternalServerError),
//! plain text) and, with the `tracing` feature, a warning names the reason (never the body) when:
//!
//! - the body is larger than [`ScrubConfig::max_buffered_bytes`] (4 MiB by default), known from
//!   its size hint before reading or found while reading (at most the cap plus one frame is held);
//! - the body fails while being read;
//! - the body is not valid JSON (including invalid UTF-8);
//! - it has a `Content-Encoding` other than `identity`: a compressed body cannot be inspected, so
//!   put compression outside this layer.
//!
//! The error type stays the inner service's: failures are responses.
//!
//! # Example
//!
//! The layer alone, in front of a plain handler answering JSON bytes:
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Empty, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_webhooks::ScrubOwnerMetadataLayer;
//! use tower_webhooks::scrub::ScrubConfig;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ScrubOwnerMetadataLayer::new(ScrubConfig::new()))
//!     .service_fn(|_req: Request<Empty<Bytes>>| async {
//!         let body = r#"{"ok":true,"routeId":"zapier","result":{"flow":
//!             {"flowId":"f1","ownerKey":"agent:main:owner","stateJson":{"ownerKey":"mine"}}}}"#;
//!         let response = Response::builder()
//!             .header("content-type", "application/json")
//!             .body(Full::new(Bytes::from_static(body.as_bytes())))
//!             .unwrap();
//!         Ok::<_, std::convert::Infallible>(response)
//!     });
//!
//! let response = svc.oneshot(Request::new(Empty::new())).await.unwrap();
//! let length = response.headers()["content-length"].clone();
//! let bytes = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(
//!     &bytes[..],
//!     br#"{"ok":true,"routeId":"zapier","result":{"flow":{"flowId":"f1","stateJson":{"ownerKey":"mine"}}}}"#
//! );
//! assert_eq!(length, bytes.len().to_string());
//! # }
//! ```

mod config;
mod future;
mod layer;
mod service;

pub use config::{InvalidScrubPath, ScrubConfig, ScrubPath};
pub use future::ScrubResponseFuture;
pub use layer::ScrubOwnerMetadataLayer;
pub use service::ScrubOwnerMetadata;

#[cfg(test)]
mod send_sync {
    use super::*;
    use crate::body::StandaloneBody;
    use static_assertions::assert_impl_all;

    type BoxFuture = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<http::Response<StandaloneBody>, ()>>
                + Send
                + Sync,
        >,
    >;

    assert_impl_all!(ScrubConfig: Send, Sync);
    // The response body: the inner one wrapped, or the re-serialised bytes.
    assert_impl_all!(crate::ResponseBody<StandaloneBody>: Send, Sync);
    assert_impl_all!(crate::ResponseBody<http_body_util::Full<bytes::Bytes>>: Send, Sync);
    assert_impl_all!(ScrubOwnerMetadataLayer: Send, Sync, Clone);
    assert_impl_all!(ScrubOwnerMetadata<()>: Send, Sync, Clone);
    assert_impl_all!(ScrubResponseFuture<BoxFuture, StandaloneBody>: Send, Sync);
    assert_impl_all!(ScrubResponseFuture<BoxFuture, http_body_util::Full<bytes::Bytes>>: Send, Sync);
}
