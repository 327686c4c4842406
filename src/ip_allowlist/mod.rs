//! [`IpAllowlist`]: answers `403` `Forbidden` to every client outside a list of networks (SPEC §8
//! `allowedIps`), before anything else looks at the request.
//!
//! The client is [`ClientIp::of`](crate::client_ip::ClientIp::of): the socket peer, or the client a
//! [`ResolveClientIpLayer`](crate::ResolveClientIpLayer) in front found behind trusted proxies, so
//! a sender behind your load balancer is judged by its own address, never by the balancer's, and a
//! forwarding header from an untrusted peer changes nothing. Entries are CIDR blocks or bare
//! addresses; IPv4-mapped IPv6 entries and clients count as IPv4. A request with no peer address
//! at all is outside every list (it cannot be shown to be inside).
//!
//! The answer is `403` `Forbidden`, `text/plain; charset=utf-8`, counted under the rejection
//! reason `forbidden_ip`. Nothing else is read: not the headers, not the body.
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_webhooks::ip_allowlist::{AllowedIps, IpAllowlistLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // GitHub's hook ranges are published at https://api.github.com/meta ("hooks").
//! let allowed = AllowedIps::parse(["192.30.252.0/22", "2a0a:a440::/29"]).unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(IpAllowlistLayer::new(allowed))
//!     .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
//!
//! let from = |peer: &str| {
//!     let mut request = Request::post("/hook").body(()).unwrap();
//!     request.extensions_mut().insert(peer.parse::<SocketAddr>().unwrap());
//!     request
//! };
//! assert_eq!(svc.clone().oneshot(from("192.30.252.7:443")).await.unwrap().status(), 200);
//! assert_eq!(svc.oneshot(from("203.0.113.9:443")).await.unwrap().status(), 403);
//! # }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::task::{Context, Poll};

use http::{Request, Response};
use ipnet::IpNet;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::client_ip::{ClientIp, InvalidCidr, IpNets};
use crate::future::ResponseFuture;
use crate::rejection::Rejection;

/// The networks an [`IpAllowlist`] lets in. Cloning is a reference-count increment.
#[derive(Clone, PartialEq, Eq)]
pub struct AllowedIps {
    nets: IpNets,
}

impl AllowedIps {
    /// The given networks (IPv4-mapped IPv6 networks as their IPv4 network).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            nets: IpNets::new(nets),
        }
    }

    /// Parses CIDR blocks (`10.0.0.0/8`, `fd00::/8`) or bare addresses (a single host).
    pub fn parse<I, S>(entries: I) -> Result<Self, InvalidCidr>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self {
            nets: IpNets::parse(entries)?,
        })
    }

    /// Whether the list is empty (and so lets nobody in).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is inside one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.contains(ip)
    }
}

impl fmt::Debug for AllowedIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.nets.fmt(f)
    }
}

/// Layer of [`IpAllowlist`].
#[derive(Clone, Debug)]
pub struct IpAllowlistLayer {
    allowed: AllowedIps,
}

impl IpAllowlistLayer {
    /// Lets in clients inside `allowed`.
    pub fn new(allowed: AllowedIps) -> Self {
        Self { allowed }
    }
}

impl<S> Layer<S> for IpAllowlistLayer {
    type Service = IpAllowlist<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IpAllowlist::new(inner, self.allowed.clone())
    }
}

/// Answers `403` `Forbidden` to clients outside its [`AllowedIps`]. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct IpAllowlist<S> {
    inner: S,
    allowed: Option<AllowedIps>,
}

impl<S> IpAllowlist<S> {
    /// Wraps `inner`, letting in clients inside `allowed`.
    pub fn new(inner: S, allowed: AllowedIps) -> Self {
        Self {
            inner,
            allowed: Some(allowed),
        }
    }

    /// Wraps `inner`, letting in clients inside `allowed`, or everyone (a request without a peer
    /// address too) when it is `None`: what a route without `allowedIps` is.
    pub fn optional(inner: S, allowed: Option<AllowedIps>) -> Self {
        Self { inner, allowed }
    }

    /// A layer letting in clients inside `allowed`.
    pub fn layer(allowed: AllowedIps) -> IpAllowlistLayer {
        IpAllowlistLayer::new(allowed)
    }

    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for IpAllowlist<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(allowed) = &self.allowed else {
            return ResponseFuture::called(self.inner.call(request));
        };
        match ClientIp::of(&request).known() {
            Some(ip) if allowed.contains(ip) => ResponseFuture::called(self.inner.call(request)),
            client => {
                tracing::debug!(
                    target: "tower_webhooks::ip_allowlist",
                    client = ?client,
                    "client outside allowedIps"
                );
                ResponseFuture::rejected(Rejection::ForbiddenIp)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use static_assertions::assert_impl_all;

    assert_impl_all!(IpAllowlistLayer: Send, Sync, Clone);
    assert_impl_all!(AllowedIps: Send, Sync, Clone);

    #[test]
    fn networks_hosts_and_mapped_addresses() {
        let allowed =
            AllowedIps::parse(["10.0.0.0/8", "2001:db8::1", "::ffff:192.0.2.0/120"]).unwrap();
        for inside in ["10.1.2.3", "::ffff:10.1.2.3", "2001:db8::1", "192.0.2.200"] {
            assert!(allowed.contains(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["11.0.0.1", "2001:db8::2", "192.0.3.1", "::1"] {
            assert!(!allowed.contains(outside.parse().unwrap()), "{outside}");
        }
        assert_eq!(
            format!("{allowed:?}"),
            r#"["10.0.0.0/8", "2001:db8::1/128", "192.0.2.0/24"]"#
        );
        assert_eq!(
            AllowedIps::parse(["10.0.0.0/33"]).unwrap_err().to_string(),
            "invalid CIDR block or IP address `10.0.0.0/33`"
        );
        assert!(AllowedIps::parse(Vec::<&str>::new()).unwrap().is_empty());
    }
}
