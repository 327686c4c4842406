//! [`BodyLimit`]: a byte cap and a total read deadline for request bodies (SPEC §2 step 7).
//!
//! # Limits
//!
//! - **Byte cap**, default 262,144 bytes. A body of exactly the cap passes; one byte more does not.
//! - **Deadline**, default 15,000 ms in total (not per chunk) from the start of reading. The clock
//!   starts the first time the body makes the middleware wait: bytes already in memory are consumed
//!   without a timer, so an in-process body never reads the clock. Work done before that first wait
//!   is bounded by the cap, so this cannot be used to stretch the deadline.
//!
//! Both are set with [`BodyLimitConfig`].
//!
//! # `Content-Length`, in both modes, before any body byte is read
//!
//! | header | answer |
//! |---|---|
//! | above the cap | `413` `Payload too large`, `Connection: close`; the body is never polled |
//! | not `1*DIGIT` (empty, a sign, spaces or letters inside, over `u64`) | `400` `invalid Content-Length`, `Connection: close` |
//! | several fields or a comma list with different values | `400` `invalid Content-Length`, `Connection: close` |
//! | several fields or a list, all the same value (RFC 9110 §8.6) | accepted, and replaced by one field before the inner service sees it |
//!
//! An empty list element (`5,`, `5,,5`) is refused too: a length is not a list that tolerates
//! gaps, and accepting it would only widen what two parsers on the path may read differently.
//! Malformed wins over too large: `5` and `600` disagreeing is a `400` even with a cap of 10.
//!
//! # Buffered mode: [`BodyLimitConfig::buffered`] (the default)
//!
//! The middleware reads the whole body, then calls the inner service with a
//! `Request<`[`BufferedBody`](crate::body::BufferedBody)`>`. The inner service is called only once the
//! body is complete and is never called on a rejection, so the statuses are exact:
//!
//! | while reading | answer |
//! |---|---|
//! | more bytes than the cap (chunked, or a lying `Content-Length`) | `413` `Payload too large`, `Connection: close` |
//! | more bytes than the declared `Content-Length`, still within the cap | `400` `invalid Content-Length`, `Connection: close` |
//! | fewer bytes than the declared `Content-Length` when the body ends | `400` `invalid Content-Length`, `Connection: close` |
//! | deadline passed | `408` `Request body timeout`, `Connection: close` |
//! | the body fails with an `http_body_util::LengthLimitError` in its source chain (an outer limit) | `413` `Payload too large`, `Connection: close` |
//! | the body fails otherwise (client gone, broken chunked framing) | `400` `invalid request body`, `Connection: close` |
//!
//! Choices where the contract is silent:
//!
//! - A body that does not match its own `Content-Length` (shorter or longer) is a framing error.
//!   Over HTTP/1 hyper enforces the framing itself and reports a short body as a read error; an
//!   in-process body can still disagree. Passing such a body on would let the inner service act on
//!   truncated input or on a header that lies about it, so it is refused as `invalid Content-Length`.
//!   A longer body is refused as soon as it passes the declared length, so the middleware never holds
//!   more than one frame beyond what was declared.
//! - A body read error is answered `400 invalid request body` with `Connection: close`: the common
//!   causes are a client that went away (who will not see any answer) and malformed chunked framing
//!   (a client error). The inner error cannot be returned as `S::Error`, so it is logged at `debug`.
//! - Trailers are dropped: a [`BufferedBody`](crate::body::BufferedBody) has none.
//! - No more than the cap plus one frame is ever held: reading stops at the frame that passes the
//!   cap, and the body is not polled again.
//! - A body received as a single frame is handed on as that frame, without a copy. A second frame
//!   allocates once, for the declared `Content-Length` when there is one.
//! - An always-ready body (in-process, or one yielding empty frames forever) is read in batches of
//!   32 frames; between batches the future yields and the deadline runs, so no body can keep a task
//!   busy past it.
//! - The inner service's readiness is honoured: the service that `poll_ready` was driven on is moved
//!   into the future and called there; a clone stays behind for the next request.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_webhooks::BodyLimitLayer;
//! use tower_webhooks::body::BufferedBody;
//! use tower_webhooks::body_limit::BodyLimitConfig;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(BodyLimitLayer::new(
//!         BodyLimitConfig::buffered()
//!             .max_bytes(16)
//!             .timeout(Duration::from_secs(5)),
//!     ))
//!     .service_fn(|req: Request<BufferedBody>| async move {
//!         // The whole body is already here.
//!         let len = req.body().len();
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(len.to_string()))))
//!     });
//!
//! let ok = Request::post("/hook").body(Full::new(Bytes::from_static(b"{\"a\":1}"))).unwrap();
//! let response = svc.clone().oneshot(ok).await.unwrap();
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "7");
//!
//! let big = Request::post("/hook")
//!     .header("content-length", "17")
//!     .body(Full::new(Bytes::from_static(&[b'x'; 17])))
//!     .unwrap();
//! let response = svc.clone().oneshot(big).await.unwrap();
//! assert_eq!(response.status(), 413);
//! assert_eq!(response.headers()["connection"], "close");
//! assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "Payload too large");
//!
//! let bad = Request::post("/hook")
//!     .header("content-length", "+5")
//!     .body(Full::new(Bytes::from_static(b"hello")))
//!     .unwrap();
//! assert_eq!(svc.oneshot(bad).await.unwrap().status(), 400);
//! # }
//! ```
//!
//! # Streaming mode: [`BodyLimitConfig::streaming`]
//!
//! The `Content-Length` checks above still answer before the inner service is called. Otherwise the
//! inner service is called at once with a `Request<`[`LimitedBody`]`<B>>`:
//!
//! - Reading past the cap fails with a boxed `http_body_util::LengthLimitError` (the body wraps
//!   `http_body_util::Limited`), so axum's `Bytes`, `String` and `Json` extractors answer `413`, as
//!   they do behind tower-http's `RequestBodyLimitLayer`.
//! - Waiting on the body past the deadline fails with a boxed [`BodyTimeoutError`]. Downcast to it
//!   to answer `408` yourself; axum's extractors answer `400`. The deadline runs only while someone
//!   reads the body: a handler that never reads it is not timed.
//! - A body that disagrees with its `Content-Length` is left to the server (hyper enforces the
//!   framing); only the cap is checked.
//!
//! ```
//! use axum::{Router, routing::post};
//! use bytes::Bytes;
//! use http::Request;
//! use tower::ServiceExt;
//! use tower_webhooks::BodyLimitLayer;
//! use tower_webhooks::body_limit::BodyLimitConfig;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let app = Router::new()
//!     .route("/hook", post(|body: Bytes| async move { body.len().to_string() }))
//!     .layer(BodyLimitLayer::new(BodyLimitConfig::streaming().max_bytes(4)));
//!
//! // No Content-Length: the overrun is found while axum reads the body.
//! let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"hello"))]);
//! let request = Request::post("/hook").body(axum::body::Body::from_stream(stream)).unwrap();
//! assert_eq!(app.clone().oneshot(request).await.unwrap().status(), 413);
//!
//! let request = Request::post("/hook").body(axum::body::Body::from("four")).unwrap();
//! assert_eq!(app.oneshot(request).await.unwrap().status(), 200);
//! # }
//! ```
//!
//! # Layout
//!
//! [`BodyLimit::new`], [`BodyLimit::layer`] and [`BodyLimitLayer::new`] all take a
//! [`BodyLimitConfig`], whose type parameter ([`Buffered`] or [`Streaming`]) selects the mode: the
//! two modes hand the inner service different body types, so the choice is made at compile time.
//! Rejections are responses (`type Error = S::Error`), and `poll_ready` passes through.

mod body;
mod future;
mod layer;
mod service;

pub use body::{BodyTimeoutError, BoxError, LimitedBody};
pub use future::BufferedFuture;
pub use layer::{BodyLimitConfig, BodyLimitLayer, Buffered, Streaming};
pub use service::BodyLimit;

#[cfg(test)]
mod assertions {
    use std::convert::Infallible;
    use std::future::Ready;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;
    use static_assertions::assert_impl_all;

    use super::*;
    use crate::body::BufferedBody;

    #[derive(Clone)]
    struct Inner;

    impl tower_service::Service<Request<BufferedBody>> for Inner {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(
            &mut self,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: Request<BufferedBody>) -> Self::Future {
            std::future::ready(Ok(Response::new(Full::default())))
        }
    }

    // warp 0.4 needs a `Sync` request body, and axum and hyper need `Send` futures.
    assert_impl_all!(BufferedFuture<Inner, Full<Bytes>>: Send, Sync);
    assert_impl_all!(LimitedBody<Full<Bytes>>: Send, Sync);
    assert_impl_all!(BodyLimit<Inner, Buffered>: Send, Sync, Clone);
    assert_impl_all!(BodyLimit<Inner, Streaming>: Send, Sync, Clone);
    assert_impl_all!(BodyLimitLayer<Buffered>: Send, Sync, Copy);
    assert_impl_all!(BodyTimeoutError: Send, Sync, std::error::Error);
}
