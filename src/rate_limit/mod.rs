//! [`FixedWindowRateLimit`]: a per-key fixed-window request quota (SPEC §2.3).
//!
//! Each key (by default the raw request path and the client IP) may make `max_requests` requests
//! per `window`; the request after that gets `429 Too Many Requests` with
//! `Retry-After` set to the seconds left in the window, rounded up, at least 1. Defaults: 120
//! requests per 60,000 ms, 4,096 tracked keys.
//!
//! - **Windows are anchored per key.** A key's window starts at its first request, not on a
//!   wall-clock minute, and a request exactly `window` after the start opens the next window.
//! - **Every request counts**, rejected ones too: a client that keeps sending while limited does not
//!   earn requests back before the window ends.
//! - **Keys.** [`PathAndClientIp`](crate::keyed::PathAndClientIp) (the default) keys on the raw path as
//!   the URI gives it, so `/x` and `/x/` are separate budgets, and on
//!   [`ClientIp::of`](crate::client_ip::ClientIp::of): the socket peer, or the client a
//!   [`ResolveClientIpLayer`](crate::ResolveClientIpLayer) in front found behind trusted proxies.
//!   [`GlobalKey`](crate::keyed::GlobalKey) gives every request one budget; any
//!   [`KeyExtractor`](crate::keyed::KeyExtractor) can be plugged in. Keys are the stable keyed hash of
//!   [`keyed`](crate::keyed), a `u64`, so counting allocates nothing.
//! - **Bounded memory.** At most `max_tracked_keys` keys are tracked; a new key evicts the least
//!   recently touched key of its shard. [`FixedWindowLimiter`] states exactly what is guaranteed.
//! - **One limiter per layer.** The layer builds its [`FixedWindowLimiter`] once; clones of the layer
//!   and of its services share it. To share one limiter between several layers (routes of one
//!   pipeline, or across a configuration reload), build it yourself and pass it to
//!   [`FixedWindowRateLimitLayer::with_limiter`].
//! - **Time** comes from an injectable [`SharedClock`](crate::clock::SharedClock)'s monotonic reading, read
//!   once per request.
//!
//! The decision is made in `call`; `poll_ready` is the inner service's, and rejections are
//! responses (`Error = S::Error`).
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_webhooks::FixedWindowRateLimitLayer;
//! use tower_webhooks::rate_limit::RateLimitConfig;
//! # use bytes::Bytes; use http::{Request, Response}; use http_body_util::Empty;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = RateLimitConfig::new().max_requests(2);
//! let svc = ServiceBuilder::new()
//!     .layer(FixedWindowRateLimitLayer::new(config))
//!     .service_fn(|_req: Request<Empty<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
//!     });
//! let request = || {
//!     let mut req = Request::post("/hook").body(Empty::new()).unwrap();
//!     req.extensions_mut().insert("203.0.113.7:4000".parse::<std::net::SocketAddr>().unwrap());
//!     req
//! };
//! assert_eq!(svc.clone().oneshot(request()).await.unwrap().status(), 200);
//! assert_eq!(svc.clone().oneshot(request()).await.unwrap().status(), 200);
//! let limited = svc.clone().oneshot(request()).await.unwrap();
//! assert_eq!(limited.status(), 429);
//! assert_eq!(limited.headers()["retry-after"], "60");
//! # }
//! ```

mod config;
mod future;
mod layer;
mod limiter;
mod service;

pub use config::RateLimitConfig;
pub use future::RateLimitFuture;
pub use layer::FixedWindowRateLimitLayer;
pub use limiter::{FixedWindowLimiter, Limited};
pub use service::FixedWindowRateLimit;
