//! Which requests share a budget: the key extractors of both limiters.

use std::hash::{Hash, Hasher};

use http::Request;

use crate::client_ip::{TrustedProxies, peer_ip};

/// Decides which requests share a limiter budget, by feeding a request's key into a hasher.
///
/// Requests whose keys hash alike share one counter. The limiter supplies a hasher keyed with a
/// random seed of its own, so writing the key into it costs no allocation, and a client cannot
/// choose inputs that collide on purpose.
///
/// Used by [`FixedWindowRateLimit`](crate::FixedWindowRateLimit) and
/// [`InFlightLimit`](crate::InFlightLimit) alike.
///
/// ```
/// use std::hash::{Hash, Hasher};
/// use http::Request;
/// use tower_webhooks::KeyExtractor;
///
/// /// One budget per value of the `x-tenant` header; no header is its own budget.
/// #[derive(Clone, Debug)]
/// struct Tenant;
///
/// impl KeyExtractor for Tenant {
///     fn hash_key<B, H: Hasher>(&self, request: &Request<B>, state: &mut H) {
///         request.headers().get("x-tenant").map(|v| v.as_bytes()).hash(state);
///     }
/// }
/// ```
pub trait KeyExtractor {
    /// Writes the key of `request` into `state`.
    fn hash_key<B, H: Hasher>(&self, request: &Request<B>, state: &mut H);
}

/// The rate-limit key of SPEC §2.3: the raw request path and the client IP.
///
/// The path is taken exactly as the URI gives it, so `/x` and `/x/` are two budgets. The client IP
/// is [`TrustedProxies::client_ip`]: the socket peer, or, when the peer is a trusted proxy, the
/// first untrusted address of `X-Forwarded-For` read right to left. The default trusts nobody.
#[derive(Clone, Debug, Default)]
pub struct PathAndClientIp {
    proxies: TrustedProxies,
}

impl PathAndClientIp {
    /// Keys on the raw path and the client IP, believing `X-Forwarded-For` from `proxies` only.
    pub fn new(proxies: TrustedProxies) -> Self {
        Self { proxies }
    }

    /// The trusted proxies.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.proxies
    }
}

impl KeyExtractor for PathAndClientIp {
    fn hash_key<B, H: Hasher>(&self, request: &Request<B>, state: &mut H) {
        request.uri().path().hash(state);
        self.proxies.client_ip(request).hash(state);
    }
}

/// The in-flight key of SPEC §2.4: the normalised path and the socket peer IP.
///
/// The path is the route path the request asks for
/// ([`request_route_path`](crate::config::request_route_path): one trailing `/` removed, nothing
/// else), so `/x` and `/x/` share one budget. Forwarding headers are never read: the peer is what
/// holds a connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct NormalizedPathAndPeerIp {
    _private: (),
}

impl NormalizedPathAndPeerIp {
    /// The key extractor.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeyExtractor for NormalizedPathAndPeerIp {
    fn hash_key<B, H: Hasher>(&self, request: &Request<B>, state: &mut H) {
        crate::config::request_route_path(request.uri().path()).hash(state);
        peer_ip(request).hash(state);
    }
}

/// One budget for every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalKey {
    _private: (),
}

impl GlobalKey {
    /// The key extractor.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeyExtractor for GlobalKey {
    fn hash_key<B, H: Hasher>(&self, _request: &Request<B>, _state: &mut H) {}
}
