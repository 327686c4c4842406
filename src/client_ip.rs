//! Which client sent a request: the socket peer address, and `X-Forwarded-For` behind trusted proxies.
//!
//! The peer address is read from the request extensions, where the server put it: a bare
//! [`SocketAddr`] (insert it yourself in a hyper `service_fn`, as the examples do) or, with the `axum`
//! feature, axum's `ConnectInfo<SocketAddr>` (from `into_make_service_with_connect_info`).
//!
//! Forwarding headers are believed only when the peer itself is a configured trusted proxy. Then
//! `X-Forwarded-For` is walked right to left (the rightmost entries were appended by the proxies
//! nearest to us) and the first address that is not a trusted proxy is the client. IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`) count as the IPv4 address.
//!
//! # Worked out once per request
//!
//! The trusted proxies are configured in one place, [`ResolveClientIpLayer`] (the pipeline puts one
//! at the top of every route, from `limits.trustedProxies`). It walks `X-Forwarded-For` once and,
//! when that names someone other than the peer, leaves the answer in the request as a [`ClientIp`]
//! extension. Everything that keys on the client (the rate limit, the auth lockout, the access log)
//! reads [`ClientIp::of`]: that extension, or without one the socket peer. So the rate limiter and
//! the lockout can never disagree about who a client is, and a layer used alone, with no resolver in
//! front, simply trusts nobody.
//!
//! A request with no peer address at all counts as coming from `0.0.0.0` for the limiters: every such
//! request then shares one rate-limit and in-flight budget. The auth lockout, though, never counts or
//! refuses such a request ([`ClientIp::known`] is `None`): one unknown client's wrong secrets
//! must not lock every other unknown client out. That only happens when the server does not record
//! peer addresses (`axum::serve(listener, app)` without connect info, say); a warning is logged the
//! first time.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{HeaderName, Request};
use ipnet::{IpNet, Ipv4Net};
use tower_layer::Layer;
use tower_service::Service;

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The address standing in for a request without a peer address.
pub const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The socket peer address recorded in the request extensions, if any.
pub fn peer_addr<B>(request: &Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    if let Some(addr) = extensions.get::<SocketAddr>() {
        return Some(*addr);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    None
}

/// The socket peer IP (canonical: IPv4-mapped IPv6 as IPv4), or [`UNKNOWN_CLIENT`].
pub fn peer_ip<B>(request: &Request<B>) -> IpAddr {
    known_peer_ip(request).unwrap_or(UNKNOWN_CLIENT)
}

/// The socket peer IP (canonical), or `None` (with a one-time warning) when none was recorded.
fn known_peer_ip<B>(request: &Request<B>) -> Option<IpAddr> {
    let ip = peer_addr(request).map(|addr| addr.ip().to_canonical());
    if ip.is_none() {
        warn_missing_peer_once();
    }
    ip
}

fn warn_missing_peer_once() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        trace_warn!(
            "request without a peer address: insert the SocketAddr into the request extensions (or \
             use axum's into_make_service_with_connect_info); such requests share one client budget"
        );
    }
}

/// The client of a request, as the limiters and the lockout count it: a request extension.
///
/// [`ResolveClientIpLayer`] inserts one when the client, found behind trusted proxies, is not the
/// socket peer; [`ClientIp::of`] reads it back, or the peer when there is none. Insert one yourself
/// when something in front of this crate already knows the client better.
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use tower_webhooks::client_ip::ClientIp;
///
/// let mut request = http::Request::new(());
/// assert_eq!(ClientIp::of(&request).known(), None);
/// request.extensions_mut().insert(SocketAddr::from(([10, 0, 0, 1], 4000)));
/// assert_eq!(ClientIp::of(&request).known(), Some(IpAddr::from([10, 0, 0, 1])));
/// request.extensions_mut().insert(ClientIp::new(IpAddr::from([203, 0, 113, 9])));
/// assert_eq!(ClientIp::of(&request).ip(), IpAddr::from([203, 0, 113, 9]));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp {
    ip: Option<IpAddr>,
}

impl ClientIp {
    /// The client `ip` (IPv4-mapped IPv6 counts as IPv4).
    pub fn new(ip: IpAddr) -> Self {
        Self {
            ip: Some(ip.to_canonical()),
        }
    }

    /// The client of `request`: its `ClientIp` extension, or, without one, its socket peer.
    #[inline]
    pub fn of<B>(request: &Request<B>) -> Self {
        let extensions = request.extensions();
        let peer = peer_addr(request);
        // A request whose only extension is its peer address (the usual case without forwarding)
        // has no resolved client to look up; any other extension may be one.
        if extensions.len() > usize::from(peer.is_some()) {
            if let Some(resolved) = extensions.get::<Self>() {
                return *resolved;
            }
        }
        match peer {
            Some(peer) => Self {
                ip: Some(peer.ip().to_canonical()),
            },
            None => {
                warn_missing_peer_once();
                Self { ip: None }
            }
        }
    }

    /// The client of `request` behind `proxies`; when that is not the socket peer, it is also left
    /// in the request as an extension, for [`ClientIp::of`]. A `ClientIp` already in the request is
    /// kept: whoever put it there resolved it first.
    pub fn resolve<B>(request: &mut Request<B>, proxies: &TrustedProxies) -> Self {
        if let Some(resolved) = request.extensions().get::<Self>() {
            return *resolved;
        }
        let peer = known_peer_ip(request);
        let client = match peer {
            Some(peer) if proxies.contains(peer) => Some(proxies.client_behind(peer, request)),
            other => other,
        };
        let resolved = Self { ip: client };
        // Only a forwarded client needs the extension (and its allocation): for everyone else
        // `of` finds the same answer in the peer address.
        if client != peer {
            request.extensions_mut().insert(resolved);
        }
        resolved
    }

    /// The client IP, or `None` when the request had no peer address at all.
    ///
    /// What the auth lockout keys on: a client nobody can tell apart from the others must neither
    /// count towards a lockout nor be refused by one, or a single unknown caller sending wrong
    /// secrets would lock every caller out.
    #[inline]
    pub fn known(self) -> Option<IpAddr> {
        self.ip
    }

    /// The client IP, or [`UNKNOWN_CLIENT`] for a request without a peer address: what the rate
    /// limit keys on.
    #[inline]
    pub fn ip(self) -> IpAddr {
        self.ip.unwrap_or(UNKNOWN_CLIENT)
    }
}

/// Layer of [`ResolveClientIp`]: the one place the trusted proxies are configured.
#[derive(Clone, Debug, Default)]
pub struct ResolveClientIpLayer {
    proxies: TrustedProxies,
}

impl ResolveClientIpLayer {
    /// Believes `X-Forwarded-For` from `proxies`.
    pub fn new(proxies: TrustedProxies) -> Self {
        Self { proxies }
    }

    /// The trusted proxies.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.proxies
    }
}

impl<S> Layer<S> for ResolveClientIpLayer {
    type Service = ResolveClientIp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResolveClientIp::new(inner, self.proxies.clone())
    }
}

/// Works out the client of each request once, behind trusted proxies, for every limiter after it
/// ([`ClientIp::resolve`]). Never answers by itself.
///
/// ```
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_webhooks::client_ip::{ClientIp, ResolveClientIpLayer};
/// use tower_webhooks::client_ip::TrustedProxies;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = ServiceBuilder::new()
///     .layer(ResolveClientIpLayer::new(TrustedProxies::parse(["10.0.0.0/8"]).unwrap()))
///     .service_fn(|req: http::Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(ClientIp::of(&req).ip().to_string())
///     });
/// let mut request = http::Request::builder().header("x-forwarded-for", "203.0.113.9").body(()).unwrap();
/// request.extensions_mut().insert(std::net::SocketAddr::from(([10, 0, 0, 2], 80)));
/// assert_eq!(svc.oneshot(request).await.unwrap(), "203.0.113.9");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ResolveClientIp<S> {
    inner: S,
    proxies: TrustedProxies,
}

impl<S> ResolveClientIp<S> {
    /// Wraps `inner`, believing `X-Forwarded-For` from `proxies`.
    pub fn new(inner: S, proxies: TrustedProxies) -> Self {
        Self { inner, proxies }
    }

    /// A layer believing `X-Forwarded-For` from `proxies`.
    pub fn layer(proxies: TrustedProxies) -> ResolveClientIpLayer {
        ResolveClientIpLayer::new(proxies)
    }

    inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for ResolveClientIp<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Nobody trusted: the client is the peer, which `ClientIp::of` reads without help.
        if !self.proxies.is_empty() {
            ClientIp::resolve(&mut request, &self.proxies);
        }
        self.inner.call(request)
    }
}

/// The set of proxies whose `X-Forwarded-For` is believed: the `trustedProxies` CIDR list.
///
/// Cloning is a reference-count increment. The default trusts nobody.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: IpNets,
}

/// A CIDR list compared in canonical form: the trusted proxies, and the IP allowlist of SPEC §8.
///
/// A network written in IPv4-mapped IPv6 form (`::ffff:10.0.0.1`, `::ffff:10.0.0.0/104`) means
/// its IPv4 network: addresses are compared in canonical form (IPv4-mapped as IPv4), so kept as
/// IPv6 it would never match anything. Cloning is a reference-count increment.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct IpNets(Arc<[IpNet]>);

impl IpNets {
    pub(crate) fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self(
            nets.into_iter()
                .map(|net| canonical_net(net.trunc()))
                .collect(),
        )
    }

    /// Parses CIDR blocks or bare addresses (a single host).
    pub(crate) fn parse<I, S>(entries: I) -> Result<Self, InvalidCidr>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = entries
            .into_iter()
            .map(|entry| parse_net(entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(nets))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl fmt::Debug for IpNets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|net| net.to_string()))
            .finish()
    }
}

/// A `trustedProxies` entry that is neither a CIDR block nor an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidCidr {
    input: String,
}

impl fmt::Display for InvalidCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid CIDR block or IP address `{}`", self.input)
    }
}

impl std::error::Error for InvalidCidr {}

impl TrustedProxies {
    /// Trusts nobody: the peer address is always the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts the given networks (IPv4-mapped IPv6 networks as their IPv4 network).
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

    /// Whether nobody is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.contains(ip)
    }

    /// The client IP of `request`: the peer, or, when the peer is trusted, the rightmost
    /// `X-Forwarded-For` entry that is not trusted.
    ///
    /// When every forwarded entry is trusted, the leftmost is the client. When an entry cannot be
    /// parsed the walk stops there and the last address it reached is the client: what lies beyond a
    /// garbled hop cannot be believed. A request without a peer address is [`UNKNOWN_CLIENT`].
    ///
    /// This works the answer out afresh; inside a stack, read [`ClientIp::of`] instead, which
    /// [`ResolveClientIp`] prepared once.
    pub fn client_ip<B>(&self, request: &Request<B>) -> IpAddr {
        match known_peer_ip(request) {
            Some(peer) if self.contains(peer) => self.client_behind(peer, request),
            Some(peer) => peer,
            None => UNKNOWN_CLIENT,
        }
    }

    /// The client behind the trusted `peer`, from `X-Forwarded-For`.
    fn client_behind<B>(&self, peer: IpAddr, request: &Request<B>) -> IpAddr {
        let mut client = peer;
        // Several X-Forwarded-For headers form one list in order; walk it from the end.
        for value in request.headers().get_all(X_FORWARDED_FOR).iter().rev() {
            let Ok(value) = value.to_str() else {
                return client;
            };
            for hop in value.rsplit(',') {
                let hop = hop.trim();
                if hop.is_empty() {
                    continue;
                }
                let Some(ip) = parse_forwarded_ip(hop) else {
                    return client;
                };
                client = ip;
                if !self.contains(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.nets.fmt(f)
    }
}

/// `::ffff:a.b.c.d/n` (n ≥ 96) as `a.b.c.d/(n - 96)`; any other network as it is.
pub(crate) fn canonical_net(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else {
        return net;
    };
    let Some(v4) = v6.network().to_ipv4_mapped() else {
        return net;
    };
    match v6.prefix_len().checked_sub(96) {
        Some(v4_prefix) => Ipv4Net::new(v4, v4_prefix).map_or(net, IpNet::V4),
        // Wider than the mapped range (`::ffff:0:0/95`, say): it also holds addresses that are not
        // IPv4-mapped, so it stays an IPv6 network.
        None => net,
    }
}

/// One CIDR block or bare address (a single host), as `trustedProxies` and `allowedIps` write it.
pub(crate) fn parse_net(entry: &str) -> Result<IpNet, InvalidCidr> {
    let trimmed = entry.trim();
    IpNet::from_str(trimmed)
        .or_else(|_| IpAddr::from_str(trimmed).map(IpNet::from))
        .map_err(|_| InvalidCidr {
            input: entry.to_owned(),
        })
}

/// One `X-Forwarded-For` hop: `1.2.3.4`, `1.2.3.4:5678`, `::1`, or `[::1]:5678`.
fn parse_forwarded_ip(hop: &str) -> Option<IpAddr> {
    IpAddr::from_str(hop)
        .or_else(|_| SocketAddr::from_str(hop).map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: Option<&str>, xff: &[&str]) -> Request<()> {
        let mut builder = Request::builder();
        for value in xff {
            builder = builder.header(X_FORWARDED_FOR, *value);
        }
        let mut request = builder.body(()).unwrap();
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(SocketAddr::from_str(peer).unwrap());
        }
        request
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_forwarding_headers() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let req = request(Some("203.0.113.9:4000"), &["1.1.1.1"]);
        assert_eq!(proxies.client_ip(&req), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::none().client_ip(&req), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peer_walks_right_to_left_past_trusted_hops() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8", "192.168.1.1"]).unwrap();
        let req = request(
            Some("10.0.0.2:80"),
            &["6.6.6.6, 7.7.7.7", "192.168.1.1, 10.9.9.9"],
        );
        assert_eq!(proxies.client_ip(&req), ip("7.7.7.7"));
    }

    #[test]
    fn all_trusted_hops_yield_the_leftmost() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let req = request(Some("10.0.0.2:80"), &["10.1.1.1, 10.2.2.2"]);
        assert_eq!(proxies.client_ip(&req), ip("10.1.1.1"));
        let no_header = request(Some("10.0.0.2:80"), &[]);
        assert_eq!(proxies.client_ip(&no_header), ip("10.0.0.2"));
    }

    #[test]
    fn garbled_hop_stops_the_walk() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let req = request(Some("10.0.0.2:80"), &["8.8.8.8, not-an-ip, 10.3.3.3"]);
        assert_eq!(proxies.client_ip(&req), ip("10.3.3.3"));
        let req = request(Some("10.0.0.2:80"), &["garbage"]);
        assert_eq!(proxies.client_ip(&req), ip("10.0.0.2"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let proxies = TrustedProxies::parse(["127.0.0.1/32"]).unwrap();
        let req = request(Some("[::ffff:127.0.0.1]:9"), &["[2001:db8::1]:443"]);
        assert_eq!(proxies.client_ip(&req), ip("2001:db8::1"));
        let req = request(Some("127.0.0.1:9"), &["::ffff:5.6.7.8, 9.9.9.9:80"]);
        assert_eq!(proxies.client_ip(&req), ip("9.9.9.9"));
        let req = request(Some("[::ffff:198.51.100.7]:1"), &[]);
        assert_eq!(peer_ip(&req), ip("198.51.100.7"));
    }

    #[test]
    fn ipv4_mapped_trusted_proxy_entries_match_their_ipv4_peers() {
        for entry in [
            "::ffff:10.0.0.1",
            "::ffff:10.0.0.1/128",
            "::ffff:10.0.0.0/120",
        ] {
            let proxies = TrustedProxies::parse([entry]).unwrap();
            for peer in ["10.0.0.1:80", "[::ffff:10.0.0.1]:80"] {
                let req = request(Some(peer), &["203.0.113.5"]);
                assert_eq!(
                    proxies.client_ip(&req),
                    ip("203.0.113.5"),
                    "{entry} behind {peer}"
                );
            }
            assert!(proxies.contains(ip("10.0.0.1")), "{entry}");
            assert!(!proxies.contains(ip("10.0.1.1")), "{entry}");
        }
        assert_eq!(
            format!(
                "{:?}",
                TrustedProxies::parse(["::ffff:10.0.0.0/104"]).unwrap()
            ),
            r#"["10.0.0.0/8"]"#
        );
        // Not in the mapped range: stays IPv6.
        let v6 = TrustedProxies::parse(["fd00::/8"]).unwrap();
        assert!(v6.contains(ip("fd00::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
    }

    #[test]
    fn missing_peer_is_the_unknown_client() {
        assert_eq!(
            TrustedProxies::none().client_ip(&request(None, &[])),
            UNKNOWN_CLIENT
        );
    }

    #[test]
    fn invalid_cidr_is_an_error_naming_the_entry() {
        let err = TrustedProxies::parse(["10.0.0.0/8", "10.0.0.0/99"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid CIDR block or IP address `10.0.0.0/99`"
        );
        assert!(TrustedProxies::parse(["nope"]).is_err());
    }
}
