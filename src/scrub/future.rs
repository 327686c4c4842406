use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Response, response::Parts};
use http_body::Body;
use pin_project_lite::pin_project;

use super::config::ScrubConfig;
use crate::body::{FrameBuffer, ResponseBody, StructuredJson, is_owner_free};
use crate::guard::is_json_media_type;
use crate::json::JsonDocument;
use crate::rejection::Rejection;

pin_project! {
    /// Response future of [`ScrubOwnerMetadata`](crate::ScrubOwnerMetadata).
    ///
    /// Waits for the inner service; then, for a JSON response that this crate did not build
    /// owner-free, reads the whole body (up to the configured cap) before answering, so a body that
    /// cannot be scrubbed turns into a `500` instead of reaching the client.
    pub struct ScrubResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        config: Arc<ScrubConfig>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Calling { #[pin] future: F },
        Buffering { parts: Option<Parts>, #[pin] body: B, buffer: FrameBuffer, expected_len: usize },
        Done,
    }
}

impl<F, B> ScrubResponseFuture<F, B> {
    pub(super) fn new(future: F, config: Arc<ScrubConfig>) -> Self {
        Self {
            state: State::Calling { future },
            config,
        }
    }
}

impl<F, B> fmt::Debug for ScrubResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Calling { .. } => "Calling",
            State::Buffering { .. } => "Buffering",
            State::Done => "Done",
        };
        f.debug_struct("ScrubResponseFuture")
            .field("state", &state)
            .finish()
    }
}

/// Why a JSON response could not be scrubbed. Each one is answered with `500`: passing the body on
/// could leak what we failed to remove.
#[derive(Clone, Copy, Debug)]
enum Failure {
    Encoded,
    TooLarge,
    BodyError,
    InvalidJson,
}

impl Failure {
    // Read by the warning only, which is compiled out without the `tracing` feature.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    fn reason(self) -> &'static str {
        match self {
            Self::Encoded => "response has a Content-Encoding",
            Self::TooLarge => "response body exceeds the buffer cap",
            Self::BodyError => "response body failed while being read",
            Self::InvalidJson => "response body is not valid JSON",
        }
    }

    fn into_response<B>(self) -> Response<ResponseBody<B>> {
        trace_warn!(reason = self.reason(), "scrub: refusing a JSON response");
        Rejection::InternalServerError.into_response()
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| is_json_media_type(value.as_bytes()))
}

fn is_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().any(|value| {
        !value
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"identity")
    })
}

impl<F, B, E> Future for ScrubResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match this.state.project() {
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    let (mut parts, body) = response.into_parts();
                    // Built by this crate from allow-listed views: nothing to remove, so no parse.
                    if is_owner_free(&parts.headers) || !is_json(&parts.headers) {
                        return done(self, Response::from_parts(parts, ResponseBody::new(body)));
                    }
                    // We cannot see inside a compressed body; compress outside this layer.
                    if is_encoded(&parts.headers) {
                        return done(self, Failure::Encoded.into_response());
                    }
                    if scrub_in_place(&mut parts, &body, this.config) {
                        return done(self, Response::from_parts(parts, ResponseBody::new(body)));
                    }
                    // The size hint, not the `Content-Length` header: a response to `HEAD` may
                    // announce a large length over an empty body.
                    let expected_len = body.size_hint().lower();
                    if expected_len > this.config.max_buffered_bytes() as u64 {
                        return done(self, Failure::TooLarge.into_response());
                    }
                    self.as_mut().project().state.set(State::Buffering {
                        parts: Some(parts),
                        body,
                        buffer: FrameBuffer::Empty,
                        // Within the cap, checked above, so the cast cannot truncate.
                        expected_len: expected_len as usize,
                    });
                }
                StateProj::Buffering {
                    parts,
                    mut body,
                    buffer,
                    expected_len,
                } => {
                    while let Some(frame) = ready!(body.as_mut().poll_frame(cx)) {
                        let Ok(frame) = frame else {
                            return done(self, Failure::BodyError.into_response());
                        };
                        // Trailers are dropped: the scrubbed body is sent as one complete frame.
                        if let Ok(data) = frame.into_data() {
                            if buffer.len() + data.len() > this.config.max_buffered_bytes() {
                                return done(self, Failure::TooLarge.into_response());
                            }
                            buffer.push(data, *expected_len);
                        }
                    }
                    let Some(mut parts) = parts.take() else {
                        // Only reachable if polled again after completion: answer, never panic.
                        return done(self, Rejection::InternalServerError.into_response());
                    };
                    let response = match rewrite(&mut parts.headers, &buffer.take(), this.config) {
                        Ok(bytes) => Response::from_parts(parts, ResponseBody::full(bytes)),
                        Err(failure) => failure.into_response(),
                    };
                    return done(self, response);
                }
                StateProj::Done => {
                    return Poll::Ready(Ok(Rejection::InternalServerError.into_response()));
                }
            }
        }
    }
}

fn done<F, B, E>(
    mut future: Pin<&mut ScrubResponseFuture<F, B>>,
    response: Response<ResponseBody<B>>,
) -> Poll<Result<Response<ResponseBody<B>>, E>> {
    future.as_mut().project().state.set(State::Done);
    Poll::Ready(Ok(response))
}

/// Scrubs the document of a [`json_response`](crate::body::json_response) in place and serialises it, if
/// the response carries one that its body still holds unserialised; whether it did.
///
/// The length is the body's own exact size hint after that: the document's length through any
/// wrapper that passes it on, and no `Content-Length` for one whose size is unknown.
fn scrub_in_place<B: Body>(parts: &mut Parts, body: &B, config: &ScrubConfig) -> bool {
    let Some(StructuredJson(slot)) = parts.extensions.remove::<StructuredJson>() else {
        return false;
    };
    // Ours and the body's: with fewer, the body that held the document was dropped, and what
    // goes out is something else, to be read like any other body.
    if std::sync::Arc::strong_count(&slot) < 2 {
        return false;
    }
    let scrubbed = slot.edit_and_serialise(|document| {
        document.edit_as_value(|value| {
            config.scrub(value);
        });
    });
    if scrubbed.is_none() {
        return false;
    }
    match body.size_hint().exact() {
        Some(len) => {
            parts.headers.remove(TRANSFER_ENCODING);
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        None => {
            parts.headers.remove(CONTENT_LENGTH);
        }
    }
    true
}

/// Parses, scrubs and re-serialises a buffered body, and fixes the framing headers.
///
/// The body is re-serialised even when nothing was removed: with duplicate keys the parsed value
/// is not what every client would read from the original bytes, so only our own serialisation of
/// the scrubbed value is safe to send.
fn rewrite(headers: &mut HeaderMap, bytes: &[u8], config: &ScrubConfig) -> Result<Bytes, Failure> {
    if bytes.is_empty() {
        // Nothing to leak, and no JSON to parse: `204`, or a response to `HEAD`, whose headers
        // describe a body that is not there and must stay as they are.
        return Ok(Bytes::new());
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| Failure::InvalidJson)?;
    config.scrub(&mut value);
    let bytes = Bytes::from(JsonDocument::from(value).to_vec());
    headers.remove(TRANSFER_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_not_an_encoding() {
        let mut headers = HeaderMap::new();
        assert!(!is_encoded(&headers));
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("Identity"));
        assert!(!is_encoded(&headers));
        headers.append(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(is_encoded(&headers));
    }
}
