//! Which requests share a budget: the key extractors of every limiter.

use http::Request;

use super::hash::KeyMaterial;
use crate::client_ip::{ClientIp, peer_ip};
use crate::path::request_route_path;

/// Decides which requests share a limiter budget, by writing a request's key material.
///
/// Requests whose material is the same share one counter. The limiter turns the material into a
/// `u64` with its [`KeyHasher`](super::KeyHasher), so writing a key allocates nothing, and the same
/// request gives the same key in every process (SPEC §7).
///
/// Used by [`FixedWindowRateLimit`](crate::FixedWindowRateLimit) and
/// [`InFlightLimit`](crate::InFlightLimit) alike.
///
/// ```
/// use http::Request;
/// use tower_webhooks::keyed::{KeyExtractor, KeyMaterial};
///
/// /// One budget per value of the `x-tenant` header; no header is a budget of its own.
/// #[derive(Clone, Debug)]
/// struct Tenant;
///
/// impl KeyExtractor for Tenant {
///     fn key_material<B>(&self, request: &Request<B>, material: &mut KeyMaterial) {
///         match request.headers().get("x-tenant") {
///             Some(tenant) => material.bytes(tenant.as_bytes()),
///             None => material.u64(0),
///         }
///     }
/// }
/// ```
pub trait KeyExtractor {
    /// Writes the key material of `request` into `material`.
    fn key_material<B>(&self, request: &Request<B>, material: &mut KeyMaterial);
}

/// The rate-limit key of SPEC §2.3: the raw request path and the client IP.
///
/// The path is taken exactly as the URI gives it, so `/x` and `/x/` are two budgets. The client IP
/// is [`ClientIp::of`]: the client a [`ResolveClientIp`](crate::client_ip::ResolveClientIp) in
/// front found behind trusted proxies, or else the socket peer.
#[derive(Clone, Copy, Debug, Default)]
pub struct PathAndClientIp {
    _private: (),
}

impl PathAndClientIp {
    /// The key extractor.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeyExtractor for PathAndClientIp {
    #[inline]
    fn key_material<B>(&self, request: &Request<B>, material: &mut KeyMaterial) {
        material.str(request.uri().path());
        material.ip(ClientIp::of(request).ip());
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
    #[inline]
    fn key_material<B>(&self, request: &Request<B>, material: &mut KeyMaterial) {
        material.str(request_route_path(request.uri().path()));
        material.ip(peer_ip(request));
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
    fn key_material<B>(&self, _request: &Request<B>, _material: &mut KeyMaterial) {}
}
