//! Two small guards of the pipeline: [`RequirePost`] (`405` + `Allow: POST`) and [`RequireJson`]
//! (`415`).
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_webhooks::{RequireJsonLayer, RequirePostLayer};
//! # use bytes::Bytes; use http::{Request, Response}; use http_body_util::Empty;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(RequirePostLayer::new())
//!     .layer(RequireJsonLayer::new())
//!     .service_fn(|_req: Request<Empty<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
//!     });
//! let get = Request::get("/hook").body(Empty::new()).unwrap();
//! assert_eq!(svc.clone().oneshot(get).await.unwrap().status(), 405);
//! let text = Request::post("/hook").header("content-type", "text/plain").body(Empty::new()).unwrap();
//! assert_eq!(svc.clone().oneshot(text).await.unwrap().status(), 415);
//! let json = Request::post("/hook")
//!     .header("content-type", "application/vnd.api+json; charset=utf-8")
//!     .body(Empty::new())
//!     .unwrap();
//! assert_eq!(svc.oneshot(json).await.unwrap().status(), 200);
//! # }
//! ```

use std::task::{Context, Poll};

use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::rejection::Rejection;

/// Answers every method but `POST` with `405 Method Not Allowed` and `Allow: POST`.
#[derive(Clone, Copy, Debug)]
pub struct RequirePost<S> {
    inner: S,
}

/// Layer of [`RequirePost`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RequirePostLayer {
    _private: (),
}

impl RequirePostLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for RequirePostLayer {
    type Service = RequirePost<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePost::new(inner)
    }
}

impl<S> RequirePost<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A layer wrapping services in `RequirePost`.
    pub fn layer() -> RequirePostLayer {
        RequirePostLayer::new()
    }

    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequirePost<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<crate::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.method() == Method::POST {
            ResponseFuture::called(self.inner.call(request))
        } else {
            ResponseFuture::rejected(Rejection::MethodNotAllowed)
        }
    }
}

/// Answers requests whose `Content-Type` is not JSON with `415 Unsupported Media Type`.
///
/// The first `Content-Type` value, the part before `;`, trimmed and lower-cased, must be
/// `application/json` or end in `+json`. A missing header is refused too.
#[derive(Clone, Copy, Debug)]
pub struct RequireJson<S> {
    inner: S,
}

/// Layer of [`RequireJson`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RequireJsonLayer {
    _private: (),
}

impl RequireJsonLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for RequireJsonLayer {
    type Service = RequireJson<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireJson::new(inner)
    }
}

impl<S> RequireJson<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A layer wrapping services in `RequireJson`.
    pub fn layer() -> RequireJsonLayer {
        RequireJsonLayer::new()
    }

    inner_service_accessors!();
}

/// Whether a media type (a `Content-Type` value) is JSON: `application/json` or `*/*+json`,
/// parameters ignored, case-insensitive. No allocation.
pub fn is_json_media_type(value: &[u8]) -> bool {
    let essence = match value.iter().position(|&b| b == b';') {
        Some(end) => &value[..end],
        None => value,
    };
    let essence = essence.trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json")
        || (essence.len() > b"+json".len()
            && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireJson<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<crate::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|value| is_json_media_type(value.as_bytes()));
        if is_json {
            ResponseFuture::called(self.inner.call(request))
        } else {
            ResponseFuture::rejected(Rejection::UnsupportedMediaType)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "  application/json ; charset=utf-8",
            "application/vnd.github+json",
            "text/x+JSON;q=1",
        ] {
            assert!(is_json_media_type(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "application/jsonx",
            "application/json5",
            "+json",
            "json",
            "application/x-www-form-urlencoded",
            "; application/json",
        ] {
            assert!(!is_json_media_type(bad.as_bytes()), "{bad}");
        }
    }
}
