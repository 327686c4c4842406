//! [`SharedSecretAuth`]: lets a request through only when it presents a configured secret, before a
//! single body byte is read.
//!
//! # What counts as the presented secret
//!
//! - If `Authorization`, trimmed, starts with `bearer ` (any case), the rest, trimmed, is the secret,
//!   even when that is empty: the secret header is then not consulted.
//! - Otherwise the first `x-openclaw-webhook-secret` value (the header name is configurable), trimmed.
//! - An empty presented secret is refused without comparing.
//!
//! # How it is compared
//!
//! Each configured secret is kept only as a SHA-256 digest; the presented value is digested too and
//! compared against every candidate in constant time, with no early exit: neither the length of a
//! secret, nor how many a route has, nor which one matched shows in the timing.
//!
//! # Answers
//!
//! | situation | status | body | headers |
//! |---|---|---|---|
//! | `token` or `secret` in the query string | `400` | `secret must not be sent in the query string` | |
//! | client IP locked out | `429` | `Too Many Requests` | `Retry-After` |
//! | missing, empty or wrong secret | `401` | `unauthorized` | `WWW-Authenticate: Bearer` |
//! | the lockout's shared store is unavailable and set to refuse | `503` | `Service Unavailable` | |
//!
//! All are `text/plain; charset=utf-8`. The query-string check comes first (the secret has already
//! leaked into logs, whether it is right or not), then the lockout, then the comparison.
//!
//! # Brute-force lockout
//!
//! After 20 failed authentications within 60 s from one client IP, that IP is answered `429` for 60 s,
//! even with the right secret; a success resets the count. The counts live in an [`AuthLockout`]
//! that several layers can share (the pipeline gives all routes one), bounded to 4,096 IPs. The
//! client IP is [`ClientIp::of`](crate::client_ip::ClientIp::of): the socket peer, or the forwarded client that
//! a [`ResolveClientIpLayer`](crate::ResolveClientIpLayer) in front found behind trusted proxies.
//! A request with no peer address neither counts towards nor is refused by the lockout.
//!
//! The lockout is any [`LockoutStore`](crate::keyed::LockoutStore). The in-memory [`AuthLockout`]
//! answers at once, so everything is decided in `call`, and while nobody is failing the check is
//! one atomic load. A store shared by replicas may answer later: the request waits for the check
//! before the secret is compared, and a failure is on record before the `401` is answered, so 20
//! failures spread over replicas lock the client out on all of them.
//!
//! # Rotation
//!
//! [`SharedSecretAuthLayer::secrets_handle`] replaces the accepted secrets of the layer and every
//! service built from it, without rebuilding the stack. Accept old and new together while clients
//! move over, then drop the old one.
//!
//! # Example: guarding any handler
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_webhooks::SharedSecretAuthLayer;
//! use tower_webhooks::auth::SharedSecretAuthConfig;
//! use tower_webhooks::secret::Secret;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let auth = SharedSecretAuthLayer::new(SharedSecretAuthConfig::new([Secret::new("s3cret").unwrap()]));
//! let rotate = auth.secrets_handle();
//! let svc = ServiceBuilder::new().layer(auth).service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
//! });
//!
//! let request = |secret: &str| {
//!     Request::post("/hook")
//!         .header("authorization", format!("Bearer {secret}"))
//!         .body(Full::default())
//!         .unwrap()
//! };
//! assert_eq!(svc.clone().oneshot(request("s3cret")).await.unwrap().status(), StatusCode::OK);
//! let refused = svc.clone().oneshot(request("guess")).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(refused.headers()["www-authenticate"], "Bearer");
//!
//! rotate.replace([Secret::new("n3w").unwrap()]);
//! assert_eq!(svc.clone().oneshot(request("s3cret")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(svc.oneshot(request("n3w")).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```

mod future;
mod layer;
mod lockout;
mod secrets;
mod service;

pub use future::AuthResponseFuture;
pub use layer::{SharedSecretAuthConfig, SharedSecretAuthLayer, WEBHOOK_SECRET_HEADER};
pub use lockout::{AuthLockout, LockoutConfig};
pub use secrets::SecretsHandle;
pub use service::{SharedSecretAuth, has_secret_in_query, presented_secret};

#[cfg(test)]
mod assertions {
    use super::*;
    use static_assertions::assert_impl_all;

    #[derive(Clone)]
    struct Inner;

    impl tower_service::Service<http::Request<()>> for Inner {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<http::Response<()>, std::convert::Infallible>>;

        fn poll_ready(
            &mut self,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(())))
        }
    }

    assert_impl_all!(SharedSecretAuth<()>: Send, Sync, Clone);
    assert_impl_all!(AuthResponseFuture<Inner, http::Request<()>>: Send, Sync);
    assert_impl_all!(SharedSecretAuthLayer: Send, Sync, Clone);
}
