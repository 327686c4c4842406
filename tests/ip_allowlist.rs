//! `IpAllowlist` (SPEC §8 `allowedIps`): the client as `ClientIp` resolves it, `403 Forbidden`
//! outside the list, and nothing of the request read or passed on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use tower_webhooks::ResolveClientIpLayer;
use tower_webhooks::client_ip::TrustedProxies;
use tower_webhooks::ip_allowlist::{AllowedIps, IpAllowlistLayer};
use tower_webhooks::rejection::RejectionReason;

fn request(peer: Option<&str>, forwarded_for: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/hook");
    if let Some(xff) = forwarded_for {
        builder = builder.header("x-forwarded-for", xff);
    }
    let mut request = builder.body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    if let Some(peer) = peer {
        request
            .extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
    }
    request
}

#[tokio::test]
async fn clients_are_judged_by_the_resolved_client_ip_and_refused_before_the_handler() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let svc = ServiceBuilder::new()
        .layer(ResolveClientIpLayer::new(
            TrustedProxies::parse(["10.0.0.1"]).unwrap(),
        ))
        .layer(IpAllowlistLayer::new(
            AllowedIps::parse(["192.30.252.0/22", "::ffff:198.51.100.7"]).unwrap(),
        ))
        .service_fn(move |_req: Request<Full<Bytes>>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"in")))) }
        });

    let cases = [
        // (peer, X-Forwarded-For, status)
        (Some("192.30.252.1:5000"), None, StatusCode::OK),
        (Some("[::ffff:192.30.255.255]:5000"), None, StatusCode::OK),
        (Some("198.51.100.7:5000"), None, StatusCode::OK),
        // Behind the trusted proxy: the forwarded client decides, not the proxy.
        (Some("10.0.0.1:5000"), Some("192.30.252.9"), StatusCode::OK),
        (
            Some("10.0.0.1:5000"),
            Some("203.0.113.5"),
            StatusCode::FORBIDDEN,
        ),
        (Some("10.0.0.1:5000"), None, StatusCode::FORBIDDEN),
        // From an untrusted peer the header is not believed.
        (
            Some("203.0.113.5:5000"),
            Some("192.30.252.9"),
            StatusCode::FORBIDDEN,
        ),
        (None, None, StatusCode::FORBIDDEN),
        (Some("[2001:db8::1]:5000"), None, StatusCode::FORBIDDEN),
    ];
    let mut admitted = 0;
    for (peer, xff, status) in cases {
        let response = svc.clone().oneshot(request(peer, xff)).await.unwrap();
        assert_eq!(response.status(), status, "{peer:?} {xff:?}");
        if status == StatusCode::OK {
            admitted += 1;
            continue;
        }
        assert_eq!(response.headers().len(), 1);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "Forbidden");
    }
    assert_eq!(calls.load(Ordering::SeqCst), admitted);
}

#[tokio::test]
async fn an_empty_list_lets_nobody_in() {
    let svc = ServiceBuilder::new()
        .layer(IpAllowlistLayer::new(AllowedIps::new([])))
        .service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        });
    let response = svc
        .oneshot(request(Some("127.0.0.1:1"), None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[test]
fn the_refusal_counts_as_forbidden_ip() {
    assert_eq!(
        tower_webhooks::rejection::Rejection::ForbiddenIp.reason(),
        Some(RejectionReason::ForbiddenIp)
    );
    assert_eq!(RejectionReason::ForbiddenIp.as_str(), "forbidden_ip");
}
