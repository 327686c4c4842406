//! [`InFlightLimit`]: a per-key cap on concurrent requests (SPEC §2.4).
//!
//! Each key (by default the normalised path and the socket peer IP) may have `max_per_key`
//! requests in flight (default 8). The next one is answered at once with `429 Too Many Requests`
//! and `Retry-After: 1`; nothing queues and nothing waits in `poll_ready`.
//!
//! - **A slot lasts as long as the response.** It is taken in `call`, held by the response future,
//!   then moved into the response body ([`InFlightBody`]). It is freed when the body has been read
//!   to its end (or fails), when the body is dropped, when the response future is dropped before it
//!   completes, or when the inner service returns an error. A handler that returns a streaming body
//!   therefore keeps its slot until the stream is done.
//! - **Keys.** [`NormalizedPathAndPeerIp`](crate::keyed::NormalizedPathAndPeerIp) (the default) keys on the
//!   route path the request asks for ([`request_route_path`](crate::config::request_route_path)),
//!   so `/x` and `/x/` share a budget, and uses
//!   the socket peer, never forwarding headers. Any [`KeyExtractor`](crate::keyed::KeyExtractor), such as
//!   [`GlobalKey`](crate::keyed::GlobalKey), can be plugged in.
//! - **Bounded memory, failing closed.** A key is tracked only while it has requests in flight, and
//!   at most `max_tracked_keys` keys (default 4,096) are tracked. When that many keys are busy, a
//!   request with a new key is refused with the same `429` instead of evicting a busy key; see
//!   [`InFlightLimiter`].
//! - **One limiter per layer**, shared by clones; pass a limiter to
//!   [`InFlightLimitLayer::with_limiter`] to share it between layers.
//! - **Any [`SlotStore`](crate::keyed::SlotStore).** The in-memory [`InFlightLimiter`] answers at
//!   once, so the slot is taken in `call`. A store shared by replicas may answer later (the request
//!   waits for it) or be unavailable (`503 Service Unavailable`). Its slots are leases that expire
//!   unless renewed ([`RenewAtHalfLease`](crate::keyed::RenewAtHalfLease)): the response future
//!   and the body renew the lease when polled once more than half of it has passed, so a lease
//!   lasts while its body streams, and the slots of a crashed replica free themselves. In memory
//!   the renewal is [`NoRenewal`](crate::keyed::NoRenewal), which takes no room and reads no clock.
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_webhooks::InFlightLimitLayer;
//! use tower_webhooks::in_flight::InFlightConfig;
//! # use bytes::Bytes; use http::{Request, Response}; use http_body_util::{BodyExt, Full};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = InFlightLimitLayer::new(InFlightConfig::new());
//! let limiter = layer.limiter().clone();
//! let svc = ServiceBuilder::new().layer(layer).service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
//! });
//! let mut req = Request::post("/hook").body(Full::default()).unwrap();
//! req.extensions_mut().insert("203.0.113.7:4000".parse::<std::net::SocketAddr>().unwrap());
//! let response = svc.oneshot(req).await.unwrap();
//! // The handler has returned, but the body is not sent yet: the slot is still held.
//! assert_eq!(limiter.tracked_keys(), 1);
//! assert_eq!(&response.into_body().collect().await.unwrap().to_bytes()[..], b"done");
//! assert_eq!(limiter.tracked_keys(), 0);
//! # }
//! ```

mod body;
mod config;
mod future;
mod layer;
mod limiter;
mod service;

pub use body::InFlightBody;
pub use config::InFlightConfig;
pub use future::InFlightResponseFuture;
pub use layer::InFlightLimitLayer;
pub use limiter::{InFlightLimiter, InFlightPermit};
pub use service::InFlightLimit;
