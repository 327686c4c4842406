//! [`BodyLimit`]: the `Content-Length` checks shared by both modes and the two `Service` impls.

use std::task::{Context, Poll};

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{BoxError, LimitedBody};
use super::future::BufferedFuture;
use super::layer::{BodyLimitConfig, BodyLimitLayer, Buffered, Streaming};
use crate::body::{BufferedBody, ResponseBody};
use crate::future::ResponseFuture;
use crate::rejection::Rejection;

/// Caps the size of request bodies and the time spent reading them.
///
/// See the [module documentation](crate::body_limit) for both modes and every status.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit<S, M = Buffered> {
    inner: S,
    config: BodyLimitConfig<M>,
}

impl<S, M> BodyLimit<S, M> {
    /// Wraps `inner`; the mode comes from `config`.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](BodyLimitConfig::validate); the message names the field.
    pub fn new(inner: S, config: BodyLimitConfig<M>) -> Self {
        Self::from_validated(inner, config.validated())
    }

    pub(crate) const fn from_validated(inner: S, config: BodyLimitConfig<M>) -> Self {
        Self { inner, config }
    }

    /// A layer wrapping services in `BodyLimit`; see [`BodyLimitLayer::new`].
    pub fn layer(config: BodyLimitConfig<M>) -> BodyLimitLayer<M> {
        BodyLimitLayer::new(config)
    }

    /// The configuration.
    pub const fn config(&self) -> &BodyLimitConfig<M> {
        &self.config
    }

    inner_service_accessors!();
}

/// What the headers say about the body length, once they are known to be acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Declared {
    /// The agreed `Content-Length`, if any was sent.
    pub(crate) length: Option<u64>,
    /// Several fields or a list carried the same value: RFC 9110 §8.6 lets us replace them with one.
    pub(crate) repeated: bool,
}

/// Checks every `Content-Length` field before a body byte is read.
///
/// Per RFC 9110 §8.6, `Content-Length` is `1*DIGIT`; several fields or a comma list are accepted only
/// when every value is the same. Anything else (empty value or element, a sign, spaces inside the
/// number, an overflow of `u64`, disagreeing values) is `400 invalid Content-Length`. A value above
/// `max_bytes` is `413` at once.
pub(crate) fn check_content_length(
    headers: &HeaderMap,
    max_bytes: usize,
) -> Result<Declared, Rejection> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(Declared {
            length: None,
            repeated: false,
        });
    };
    // The common case (one field, one number) is parsed without splitting.
    let (mut length, mut repeated) = match parse_digits(first.as_bytes()) {
        Some(n) => (n, false),
        None => (parse_list(first.as_bytes(), None)?, true),
    };
    for value in values {
        repeated = true;
        length = parse_list(value.as_bytes(), Some(length))?;
    }
    // `usize` is at most 64 bits on every supported target, so the cast never truncates.
    if length > max_bytes as u64 {
        return Err(Rejection::PayloadTooLarge);
    }
    Ok(Declared {
        length: Some(length),
        repeated,
    })
}

/// One `Content-Length` field that may be a comma list; every element must equal `agreed` (or the
/// first element when nothing is agreed yet).
fn parse_list(value: &[u8], mut agreed: Option<u64>) -> Result<u64, Rejection> {
    for element in value.split(|&b| b == b',') {
        // OWS around list elements is spaces and tabs only; `trim_ascii` would also accept CR/LF/FF,
        // which a header value cannot legally hold anyway, so the stricter trim costs nothing.
        let element = trim_ows(element);
        let n = parse_digits(element).ok_or(Rejection::InvalidContentLength)?;
        match agreed {
            Some(previous) if previous != n => return Err(Rejection::InvalidContentLength),
            _ => agreed = Some(n),
        }
    }
    agreed.ok_or(Rejection::InvalidContentLength)
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// `1*DIGIT` as a `u64`; `None` when empty, not all ASCII digits, or too large. `str::parse` would
/// accept a leading `+`, which RFC 9110 does not.
fn parse_digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Replaces repeated identical `Content-Length` values with one, so the inner service never sees a
/// list (RFC 9110 §8.6 allows this repair).
pub(crate) fn normalise_content_length(headers: &mut HeaderMap, declared: Declared) {
    if let (true, Some(length)) = (declared.repeated, declared.length) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyLimit<S, Buffered>
where
    S: Service<Request<BufferedBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = BufferedFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let declared = match check_content_length(request.headers(), self.config.max_bytes) {
            Ok(declared) => declared,
            Err(rejection) => return BufferedFuture::rejected(rejection),
        };
        // The inner service is called only after the body is complete, so the future must own a
        // service. `poll_ready` was driven on `self.inner`, and readiness belongs to that instance
        // (a concurrency permit, a buffer slot): the future takes the ready one and leaves a fresh
        // clone behind, which will get its own `poll_ready` before the next `call`.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        BufferedFuture::reading(inner, request, declared, &self.config)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyLimit<S, Streaming>
where
    S: Service<Request<LimitedBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let declared = match check_content_length(request.headers(), self.config.max_bytes) {
            Ok(declared) => declared,
            Err(rejection) => return ResponseFuture::rejected(rejection),
        };
        let (mut parts, body) = request.into_parts();
        normalise_content_length(&mut parts.headers, declared);
        let body = LimitedBody::new(body, self.config.max_bytes, self.config.timeout);
        ResponseFuture::called(self.inner.call(Request::from_parts(parts, body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(values: &[&str], max: usize) -> Result<Option<u64>, Rejection> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                CONTENT_LENGTH,
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        check_content_length(&headers, max).map(|d| d.length)
    }

    #[test]
    fn content_length_grammar() {
        let bad = Err(Rejection::InvalidContentLength);
        assert_eq!(check(&[], 10), Ok(None));
        assert_eq!(check(&["0"], 10), Ok(Some(0)));
        assert_eq!(check(&["007"], 10), Ok(Some(7)));
        assert_eq!(check(&["10"], 10), Ok(Some(10)));
        assert_eq!(check(&["11"], 10), Err(Rejection::PayloadTooLarge));
        assert_eq!(check(&["5, 5"], 10), Ok(Some(5)));
        assert_eq!(check(&["5", "5"], 10), Ok(Some(5)));
        assert_eq!(check(&["5,5", " 5\t"], 10), Ok(Some(5)));
        for value in [
            "", " ", "abc", "-1", "+5", "1 2", "5,", ",5", "5,,5", "0x5", "5.0", "٣",
        ] {
            assert_eq!(check(&[value], 10), bad, "{value:?}");
        }
        assert_eq!(check(&["99999999999999999999999"], 10), bad);
        assert_eq!(check(&["18446744073709551616"], usize::MAX), bad);
        assert_eq!(
            check(&["18446744073709551615"], 10),
            Err(Rejection::PayloadTooLarge)
        );
        assert_eq!(check(&["5", "6"], 10), bad);
        assert_eq!(check(&["5, 6"], 10), bad);
        // Disagreement is malformed even when one value is over the cap: 400 wins over 413.
        assert_eq!(check(&["5", "600"], 10), bad);
    }
}
