//! The layers compose under other frameworks: the whole stack under `axum::Router::layer`, with no
//! `HandleErrorLayer`, around a plain axum handler.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::post;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};
use tower_webhooks::{
    BodyLimitLayer, FixedWindowRateLimitLayer, InFlightLimitLayer, RequireJsonLayer,
    RequirePostLayer, ScrubOwnerMetadataLayer, SharedSecretAuthLayer, auth::SharedSecretAuthConfig,
    body::BufferedBody, body_limit::BodyLimitConfig, in_flight::InFlightConfig,
    rate_limit::RateLimitConfig, scrub::ScrubConfig, secret::Secret,
};

fn app() -> Router {
    let stack = ServiceBuilder::new()
        .layer(RequirePostLayer::new())
        .layer(FixedWindowRateLimitLayer::new(RateLimitConfig::new()))
        .layer(RequireJsonLayer::new())
        .layer(InFlightLimitLayer::new(InFlightConfig::new()))
        .layer(SharedSecretAuthLayer::new(SharedSecretAuthConfig::new([
            Secret::new("s3cret").unwrap(),
        ])))
        .layer(BodyLimitLayer::new(
            BodyLimitConfig::buffered().max_bytes(64),
        ))
        // axum routes take axum's body; the buffered body converts back without a copy.
        .map_request(|request: Request<BufferedBody>| request.map(Body::new))
        .layer(ScrubOwnerMetadataLayer::new(ScrubConfig::new()));
    Router::new()
        .route(
            "/hook",
            post(|body: String| async move {
                axum::Json(json!({"ok": true, "result": {"flow": {"goal": body, "ownerKey": "agent:main:main"}}}))
            }),
        )
        .layer(stack)
}

async fn send(request: Request<Body>) -> (StatusCode, String) {
    let mut request = request;
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 5000))));
    let response = app().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn hook(secret: &str, body: &'static str) -> Request<Body> {
    Request::post("/hook")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {secret}"))
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn the_whole_stack_serves_an_axum_handler_and_scrubs_its_json() {
    let (status, text) = send(hook("s3cret", "\"hello\"")).await;
    assert_eq!(status, 200);
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value,
        json!({"ok": true, "result": {"flow": {"goal": "\"hello\""}}})
    );
}

#[tokio::test]
async fn rejections_come_from_the_layers_as_responses() {
    assert_eq!(
        send(hook("wrong", "{}")).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    let get = Request::get("/hook").body(Body::empty()).unwrap();
    assert_eq!(
        send(get).await,
        (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed".into())
    );
    let too_big = hook(
        "s3cret",
        "\"0123456789012345678901234567890123456789012345678901234567890123456789\"",
    );
    assert_eq!(
        send(too_big).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "Payload too large".into())
    );
    let text = Request::post("/hook")
        .header("content-type", "text/plain")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(text).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}
