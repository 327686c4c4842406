//! The crate-wide body types.
//!
//! [`ResponseBody`] is the response body of every middleware here: the inner service's body, a ready
//! rejection, or a structured JSON value that is serialised only when the body is first polled. One
//! enum instead of `http_body_util::Either` keeps the inner error type intact (no boxing, no
//! `From<OurError>` bound on user bodies).
//!
//! [`BufferedBody`] is a request body that is already complete in memory: what
//! [`BodyLimit`](crate::BodyLimit) hands the inner service in buffered mode and what
//! [`TaskFlowActionService`](crate::TaskFlowActionService) reads.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::OnceLock;
#[cfg(feature = "scrub")]
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
#[cfg(feature = "scrub")]
use serde_json::Value;

#[cfg(feature = "scrub")]
use crate::json::JsonDocument;

/// Without the `scrub` feature there are no JSON documents: the `Json` kind of [`ResponseBody`]
/// holds this uninhabited type, so it can never be built and its arms cost nothing.
#[cfg(not(feature = "scrub"))]
#[derive(Debug)]
enum JsonDocument {}

#[cfg(not(feature = "scrub"))]
impl JsonDocument {
    fn to_vec(&self) -> Vec<u8> {
        match *self {}
    }
}

/// Without the `scrub` feature there are no shared documents either.
#[cfg(not(feature = "scrub"))]
#[derive(Debug)]
enum JsonSlot {}

#[cfg(not(feature = "scrub"))]
impl JsonSlot {
    fn is_end_stream(&self) -> bool {
        match *self {}
    }
    fn size(&self) -> u64 {
        match *self {}
    }
    fn take_bytes(&self) -> Option<Bytes> {
        match *self {}
    }
}

pin_project! {
    /// Response body of every middleware in this crate.
    ///
    /// It is one of three things: the inner service's body, passed through untouched; a complete body
    /// known in advance (a rejection); or a structured JSON document, kept as a value (readable with
    /// [`json_document`](Self::json_document)) and serialised once, when the body is first asked
    /// for its size or polled, so the response still goes out with an exact `Content-Length`.
    ///
    /// `Data` is [`Bytes`] and `Error` is the inner body's error: our own variants cannot fail.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
        // `bytes` caches the serialised document from the first `size_hint`, which takes `&self`.
        Json { document: Option<JsonDocument>, bytes: OnceLock<Bytes> },
        // A document `json_response` shares with the response's extensions, so that the scrub
        // layer can reach it whatever body type it sees (see `StructuredJson`).
        Shared { slot: JsonSlotRef },
    }
}

/// The body of responses a service of this crate builds entirely itself, with no inner body: what
/// [`TaskFlowActionService`](crate::TaskFlowActionService) answers with.
pub type StandaloneBody = ResponseBody<http_body_util::Empty<Bytes>>;

#[cfg(feature = "scrub")]
type JsonSlotRef = Arc<JsonSlot>;
#[cfg(not(feature = "scrub"))]
type JsonSlotRef = JsonSlot;

/// A JSON document held by a body and, through [`StructuredJson`], by its response's extensions:
/// the document until the scrub layer or the first size or poll serialises it, then its bytes.
#[cfg(feature = "scrub")]
#[derive(Debug, Default)]
pub(crate) struct JsonSlot(Mutex<SlotState>);

#[cfg(feature = "scrub")]
#[derive(Debug, Default)]
struct SlotState {
    document: Option<JsonDocument>,
    bytes: Option<Bytes>,
}

#[cfg(feature = "scrub")]
impl JsonSlot {
    fn new(document: JsonDocument) -> Arc<Self> {
        Arc::new(Self(Mutex::new(SlotState {
            document: Some(document),
            bytes: None,
        })))
    }

    fn state(&self) -> MutexGuard<'_, SlotState> {
        // Nothing that runs under the lock panics half-way through a change of the state; a
        // serialiser that panicked left the document as it was.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Edits the document, if it has not been serialised yet, and serialises it: `Some(length)`.
    pub(crate) fn edit_and_serialise(&self, edit: impl FnOnce(&mut JsonDocument)) -> Option<u64> {
        let mut state = self.state();
        let document = state.document.as_mut()?;
        edit(document);
        let bytes = Bytes::from(document.to_vec());
        let len = bytes.len() as u64;
        state.bytes = Some(bytes);
        Some(len)
    }

    fn is_end_stream(&self) -> bool {
        let state = self.state();
        state.document.is_none() && state.bytes.is_none()
    }

    fn size(&self) -> u64 {
        let mut state = self.state();
        if state.bytes.is_none() {
            let bytes = state.document.as_ref().map(|d| Bytes::from(d.to_vec()));
            state.bytes = bytes;
        }
        state.bytes.as_ref().map_or(0, |b| b.len() as u64)
    }

    fn take_bytes(&self) -> Option<Bytes> {
        let mut state = self.state();
        let document = state.document.take();
        state
            .bytes
            .take()
            .or_else(|| document.map(|d| Bytes::from(d.to_vec())))
    }

    fn to_value(&self) -> Option<Value> {
        self.state().document.as_ref().map(JsonDocument::to_value)
    }
}

/// Response extension of [`json_response`]: the document its body holds, shared, so that
/// [`ScrubOwnerMetadata`](crate::ScrubOwnerMetadata) scrubs it in place and serialises it once,
/// whatever wraps the body on the way, instead of reading, parsing and re-serialising the bytes.
///
/// The scrub takes it only while a body still holds the document (`strong_count` 2), and a body
/// that already serialised it is read like any other, so a body replaced or read on the way is
/// never trusted by this mark.
#[cfg(feature = "scrub")]
#[derive(Clone, Debug)]
pub(crate) struct StructuredJson(pub(crate) Arc<JsonSlot>);

/// The text of the `Content-Type` of answers this crate built owner-free, in a `static` of its
/// own: see [`is_owner_free`].
#[cfg(feature = "scrub")]
static OWNER_FREE_JSON_TEXT: [u8; 31] = *b"application/json; charset=utf-8";

/// The `Content-Type` this crate's own services put on a JSON answer built from allow-listed views
/// only (no owner or session metadata at any position). It reads like any JSON `Content-Type`;
/// what marks it is that its bytes are `OWNER_FREE_JSON_TEXT` itself.
#[cfg(feature = "taskflow")]
static OWNER_FREE_JSON: http::HeaderValue =
    http::HeaderValue::from_static(match std::str::from_utf8(&OWNER_FREE_JSON_TEXT) {
        Ok(text) => text,
        Err(_) => panic!("the Content-Type is ASCII"),
    });

/// Whether the response was built owner-free by this crate: its `Content-Type` value is the very
/// `OWNER_FREE_JSON` (a pointer compare; the same text built anywhere else lives elsewhere).
///
/// [`ScrubOwnerMetadata`](crate::ScrubOwnerMetadata) passes such a response on without parsing it.
/// A mark in the headers rather than in the body, whose type the scrub layer does not know, and
/// rather than a response extension, whose map would be allocated for every answer; like an
/// extension it survives any body wrapper in between, and no other handler can make one (a
/// handler that copies the header value from one of our answers onto a body of its own vouches
/// for that body).
#[cfg(feature = "scrub")]
pub(crate) fn is_owner_free(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| std::ptr::eq(value.as_bytes().as_ptr(), OWNER_FREE_JSON_TEXT.as_ptr()))
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A complete body, sent as one frame.
    pub fn full(data: Bytes) -> Self {
        let data = if data.is_empty() { None } else { Some(data) };
        Self {
            kind: Kind::Full { data },
        }
    }

    #[cfg(feature = "scrub")]
    /// A structured JSON document (a [`Value`], or a [`JsonDocument`] holding typed records),
    /// serialised once, when the body is first asked for its size or polled.
    ///
    /// The caller sets `Content-Type` on the response; [`json_response`] does both.
    pub fn json(document: impl Into<JsonDocument>) -> Self {
        Self {
            kind: Kind::Json {
                document: Some(document.into()),
                bytes: OnceLock::new(),
            },
        }
    }

    #[cfg(feature = "scrub")]
    /// The structured JSON document, if this body holds one of its own that has not been polled
    /// yet (not one [`json_response`] shares with the response's extensions: read that one with
    /// [`json_value`](Self::json_value)).
    pub fn json_document(&self) -> Option<&JsonDocument> {
        match &self.kind {
            Kind::Json { document, .. } => document.as_ref(),
            _ => None,
        }
    }

    #[cfg(feature = "scrub")]
    /// Mutable access to the structured JSON document, for in-place edits before the body is sent.
    pub fn json_document_mut(&mut self) -> Option<&mut JsonDocument> {
        match &mut self.kind {
            Kind::Json { document, bytes } => {
                // The caller may change the document: bytes serialised for a size are stale.
                bytes.take();
                document.as_mut()
            }
            _ => None,
        }
    }

    #[cfg(feature = "scrub")]
    /// The structured JSON document as a `serde_json::Value`, if this body holds one that has not
    /// been polled yet. Builds the value: for reading in tests and tools, not on a hot path.
    pub fn json_value(&self) -> Option<Value> {
        match &self.kind {
            Kind::Shared { slot } => slot.to_value(),
            _ => self.json_document().map(JsonDocument::to_value),
        }
    }

    /// The inner service's body, if this wraps one.
    pub fn inner_ref(&self) -> Option<&B> {
        match &self.kind {
            Kind::Inner { body } => Some(body),
            _ => None,
        }
    }

    /// Mutable access to the inner service's body, if this wraps one.
    pub fn inner_mut(&mut self) -> Option<&mut B> {
        match &mut self.kind {
            Kind::Inner { body } => Some(body),
            _ => None,
        }
    }
}

impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    // Deliberately shows only which kind of body this is: a JSON value may hold anything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Full { .. } => "Full",
            Kind::Json { .. } | Kind::Shared { .. } => "Json",
        };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            KindProj::Json { document, bytes } => Poll::Ready(document.take().map(|document| {
                let data = bytes
                    .take()
                    .unwrap_or_else(|| Bytes::from(document.to_vec()));
                Ok(Frame::data(data))
            })),
            KindProj::Shared { slot } => Poll::Ready(slot.take_bytes().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Json { document, .. } => document.is_none(),
            Kind::Shared { slot } => slot.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Json { document: None, .. } => SizeHint::with_exact(0),
            // Serialising for the size is no extra work: the bytes are kept for `poll_frame`.
            Kind::Json {
                document: Some(document),
                bytes,
            } => SizeHint::with_exact(
                bytes.get_or_init(|| Bytes::from(document.to_vec())).len() as u64
            ),
            Kind::Shared { slot } => SizeHint::with_exact(slot.size()),
        }
    }
}

/// A request body that is already complete in memory.
///
/// Produced by [`BodyLimit`](crate::BodyLimit) in buffered mode; read by
/// [`TaskFlowActionService`](crate::TaskFlowActionService). Build one from bytes to drive those
/// services directly.
#[derive(Clone, Default)]
pub struct BufferedBody {
    data: Bytes,
    sent: bool,
}

impl BufferedBody {
    /// A body holding `data`.
    pub fn new(data: impl Into<Bytes>) -> Self {
        Self {
            data: data.into(),
            sent: false,
        }
    }

    /// The bytes of the body.
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// The bytes of the body, by value.
    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// Length of the body in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl fmt::Debug for BufferedBody {
    // Request bodies may carry anything a caller sent; show the length only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedBody")
            .field("len", &self.data.len())
            .finish()
    }
}

impl From<Bytes> for BufferedBody {
    fn from(data: Bytes) -> Self {
        Self::new(data)
    }
}

impl From<&'static str> for BufferedBody {
    fn from(data: &'static str) -> Self {
        Self::new(Bytes::from_static(data.as_bytes()))
    }
}

impl From<String> for BufferedBody {
    fn from(data: String) -> Self {
        Self::new(data)
    }
}

impl From<Vec<u8>> for BufferedBody {
    fn from(data: Vec<u8>) -> Self {
        Self::new(data)
    }
}

impl Body for BufferedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.sent || this.data.is_empty() {
            return Poll::Ready(None);
        }
        this.sent = true;
        Poll::Ready(Some(Ok(Frame::data(this.data.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent || self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(if self.is_end_stream() {
            0
        } else {
            self.data.len() as u64
        })
    }
}

/// Data frames read into one buffer, for the layers that must see a whole body (the body limit's
/// buffered mode, the scrub).
///
/// A body that arrives as one frame, the common case, is kept as that frame: no copy. Only a
/// second frame allocates, once, for the expected length when the caller knows it; handing the
/// bytes on freezes the buffer rather than copying it.
#[cfg(any(feature = "body-limit", feature = "scrub"))]
#[derive(Debug, Default)]
pub(crate) enum FrameBuffer {
    #[default]
    Empty,
    One(Bytes),
    Many(bytes::BytesMut),
}

#[cfg(any(feature = "body-limit", feature = "scrub"))]
impl FrameBuffer {
    /// Appends a frame. `expected_len` is the whole body's length if known (else 0), so a second
    /// frame reserves it at once instead of growing by doubling.
    pub(crate) fn push(&mut self, mut data: impl bytes::Buf, expected_len: usize) {
        use bytes::BufMut;
        let len = data.remaining();
        if len == 0 {
            return;
        }
        match self {
            Self::Empty => *self = Self::One(data.copy_to_bytes(len)),
            Self::One(first) => {
                let mut all = bytes::BytesMut::with_capacity(expected_len.max(first.len() + len));
                all.extend_from_slice(first);
                all.put(data);
                *self = Self::Many(all);
            }
            Self::Many(all) => all.put(data),
        }
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(bytes) => bytes.len(),
            Self::Many(all) => all.len(),
        }
    }

    /// The bytes held, leaving the buffer empty.
    pub(crate) fn take(&mut self) -> Bytes {
        match std::mem::take(self) {
            Self::Empty => Bytes::new(),
            Self::One(bytes) => bytes,
            Self::Many(all) => all.freeze(),
        }
    }
}

#[cfg(feature = "scrub")]
/// `Content-Type` of every JSON body this crate produces.
pub(crate) const APPLICATION_JSON_UTF8: http::HeaderValue =
    http::HeaderValue::from_static("application/json; charset=utf-8");

#[cfg(feature = "scrub")]
/// A response with `status`, `Content-Type: application/json; charset=utf-8`, and `document` as a
/// structured body, serialised once, when first sized or polled.
///
/// [`ScrubOwnerMetadata`](crate::ScrubOwnerMetadata) scrubs such a document in place, whatever
/// wraps the body on the way, instead of parsing its bytes: the document is shared with the
/// response's extensions (one small allocation, and the extensions map). Read it back with
/// [`ResponseBody::json_value`].
pub fn json_response<B>(
    status: http::StatusCode,
    document: impl Into<JsonDocument>,
) -> http::Response<ResponseBody<B>> {
    let slot = JsonSlot::new(document.into());
    let mut response = http::Response::new(ResponseBody {
        kind: Kind::Shared {
            slot: Arc::clone(&slot),
        },
    });
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, APPLICATION_JSON_UTF8);
    response.extensions_mut().insert(StructuredJson(slot));
    response
}

#[cfg(feature = "taskflow")]
/// A response with `status` and `document` as a structured body (like [`json_response`]) that this
/// crate built from allow-listed views only: marked so (see `is_owner_free`) and holding the
/// document itself, with nothing shared and no extension.
pub(crate) fn owner_free_json_response<B>(
    status: http::StatusCode,
    document: JsonDocument,
) -> http::Response<ResponseBody<B>> {
    let mut response = http::Response::new(ResponseBody::json(document));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, OWNER_FREE_JSON.clone());
    response
}

#[cfg(all(test, feature = "scrub"))]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use serde_json::json;

    #[tokio::test]
    async fn json_is_serialised_once_when_polled() {
        let mut body = ResponseBody::<Full<Bytes>>::json(JsonDocument::object([
            ("ok", true.into()),
            ("n", json!(1).into()),
        ]));
        *body.json_document_mut().unwrap() = JsonDocument::object([("n", json!(2).into())]);
        assert!(!body.is_end_stream());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], br#"{"n":2}"#);
    }

    #[tokio::test]
    async fn json_has_an_exact_size_and_an_edit_after_sizing_is_sent() {
        let mut body = ResponseBody::<Full<Bytes>>::json(json!({"n": 1}));
        assert_eq!(body.size_hint().exact(), Some(7));
        assert_eq!(body.json_value(), Some(json!({"n": 1})), "still readable");
        *body.json_document_mut().unwrap() = json!({"n": 22}).into();
        assert_eq!(body.size_hint().exact(), Some(8));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], br#"{"n":22}"#);
    }

    #[tokio::test]
    async fn full_has_exact_size_and_empty_is_end_stream() {
        let body = ResponseBody::<Full<Bytes>>::full(Bytes::from_static(b"unauthorized"));
        assert_eq!(body.size_hint().exact(), Some(12));
        assert_eq!(
            &body.collect().await.unwrap().to_bytes()[..],
            b"unauthorized"
        );
        let empty = ResponseBody::<Full<Bytes>>::full(Bytes::new());
        assert!(empty.is_end_stream());
    }

    #[tokio::test]
    async fn inner_body_passes_through() {
        let body = ResponseBody::new(Full::new(Bytes::from_static(b"hello")));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"hello");
    }

    #[cfg(feature = "taskflow")]
    #[test]
    fn only_our_own_owner_free_header_value_marks_a_response() {
        let mut headers = http::HeaderMap::new();
        assert!(!is_owner_free(&headers));
        let response = owner_free_json_response::<Full<Bytes>>(
            http::StatusCode::OK,
            JsonDocument::object([("ok", true.into())]),
        );
        assert!(is_owner_free(response.headers()));
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        // The same text built anywhere else, including our own public constant, is no mark.
        for value in [
            APPLICATION_JSON_UTF8,
            http::HeaderValue::from_static("application/json; charset=utf-8"),
            http::HeaderValue::from_bytes(OWNER_FREE_JSON_TEXT.as_slice()).unwrap(),
        ] {
            headers.insert(http::header::CONTENT_TYPE, value);
            assert!(!is_owner_free(&headers));
        }
        // And the mark is no extension: an answer allocates no extensions map.
        assert!(response.extensions().is_empty());
    }

    #[test]
    fn frame_buffer_keeps_one_frame_and_joins_more() {
        let mut buffer = FrameBuffer::default();
        buffer.push(Bytes::from_static(b""), 0);
        assert!(matches!(buffer, FrameBuffer::Empty));
        let first = Bytes::from_static(b"ab");
        buffer.push(first.clone(), 4);
        assert!(matches!(&buffer, FrameBuffer::One(one) if one.as_ptr() == first.as_ptr()));
        buffer.push(Bytes::from_static(b"c"), 4);
        buffer.push(Bytes::from_static(b"d"), 4);
        assert!(matches!(&buffer, FrameBuffer::Many(all) if all.capacity() == 4));
        assert_eq!(buffer.len(), 4);
        assert_eq!(&buffer.take()[..], b"abcd");
        assert_eq!(buffer.len(), 0);
        assert!(buffer.take().is_empty());
    }

    #[tokio::test]
    async fn buffered_body_yields_its_bytes_once() {
        let body = BufferedBody::from("{\"a\":1}");
        assert_eq!(body.size_hint().exact(), Some(7));
        assert_eq!(format!("{body:?}"), "BufferedBody { len: 7 }");
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"{\"a\":1}");
    }
}
