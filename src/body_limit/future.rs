//! [`BufferedFuture`], the response future of buffered mode.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::CONNECTION;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::body::BoxError;
use super::layer::BodyLimitConfig;
use super::service::{Declared, normalise_content_length};
use crate::body::{BufferedBody, FrameBuffer, ResponseBody};
use crate::rejection::Rejection;

/// Frames consumed in one `poll` before yielding. A body that is always ready (in-process, or a
/// hostile one yielding empty frames forever) would otherwise keep the task busy; after yielding, the
/// deadline runs as for any other wait.
const FRAMES_PER_POLL: usize = 32;

pin_project! {
    /// Response future of [`BodyLimit`](crate::BodyLimit) in buffered mode.
    ///
    /// It reads the request body within the limits, then calls the inner service with the complete
    /// body as a [`BufferedBody`], then waits for its response. A rejection decided in `call` (by
    /// `Content-Length`) is ready at once.
    pub struct BufferedFuture<S, B>
    where
        S: Service<Request<BufferedBody>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<BufferedBody>>,
    {
        Reading {
            #[pin]
            body: B,
            // `Option`s so they can be moved out when the body is complete.
            parts: Option<Parts>,
            inner: Option<S>,
            collected: FrameBuffer,
            declared: Declared,
            max_bytes: usize,
            timeout: Duration,
            // Created the first time the body makes us wait (see `LimitedBody`): a body already in
            // memory is collected without reading the clock. Boxed because it is only needed on
            // that slow path, and inline it would add a hundred bytes to every future, rejections
            // included, that are moved on each `oneshot`.
            deadline: Option<Pin<Box<Sleep>>>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Rejected {
            rejection: Option<Rejection>,
        },
    }
}

impl<S, B> BufferedFuture<S, B>
where
    S: Service<Request<BufferedBody>>,
{
    pub(crate) fn rejected(rejection: Rejection) -> Self {
        Self {
            state: State::Rejected {
                rejection: Some(rejection),
            },
        }
    }

    pub(crate) fn reading<M>(
        inner: S,
        request: Request<B>,
        declared: Declared,
        config: &BodyLimitConfig<M>,
    ) -> Self {
        let (parts, body) = request.into_parts();
        Self {
            state: State::Reading {
                body,
                parts: Some(parts),
                inner: Some(inner),
                collected: FrameBuffer::Empty,
                declared,
                max_bytes: config.max_bytes,
                timeout: config.timeout,
                deadline: None,
            },
        }
    }
}

impl<S, B> fmt::Debug for BufferedFuture<S, B>
where
    S: Service<Request<BufferedBody>>,
{
    // Only the phase: the parts and body may hold anything a client sent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Reading { .. } => "Reading",
            State::Calling { .. } => "Calling",
            State::Rejected { .. } => "Rejected",
        };
        f.debug_struct("BufferedFuture")
            .field("state", &state)
            .finish()
    }
}

/// Why reading stopped early; turned into a response by [`respond`].
enum Stop {
    Reject(Rejection),
    /// The body failed to read (the client went away, broken chunked framing): `400 invalid request
    /// body`, and since the rest of the body is unread, the connection cannot carry another request.
    ReadError,
}

fn respond<ResBody>(stop: Stop) -> Response<ResponseBody<ResBody>> {
    match stop {
        Stop::Reject(rejection) => rejection.into_response(),
        Stop::ReadError => {
            let mut response = Rejection::InvalidRequestBody.into_response();
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// An outer limit (tower-http's `RequestBodyLimit`, axum's `DefaultBodyLimit`) shows up as a body
/// error; it still means "too large", so it keeps its 413.
fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = error.source();
    }
    false
}

impl<S, B, ResBody> Future for BufferedFuture<S, B>
where
    S: Service<Request<BufferedBody>, Response = Response<ResBody>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let future = match state.as_mut().project() {
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::new)));
                }
                StateProj::Rejected { rejection } => {
                    // Polling again after completion is a caller bug; answer 500 rather than panic.
                    let rejection = rejection.take().unwrap_or(Rejection::InternalServerError);
                    return Poll::Ready(Ok(rejection.into_response()));
                }
                StateProj::Reading {
                    mut body,
                    parts,
                    inner,
                    collected,
                    declared,
                    max_bytes,
                    timeout,
                    deadline,
                } => {
                    match read(
                        body.as_mut(),
                        collected,
                        *declared,
                        *max_bytes,
                        *timeout,
                        deadline,
                        cx,
                    ) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(stop)) => {
                            // Dropping the unread body and the unused (ready) service here releases
                            // whatever they hold before the client is answered.
                            state.set(State::Rejected { rejection: None });
                            return Poll::Ready(Ok(respond(stop)));
                        }
                        Poll::Ready(Ok(bytes)) => {
                            let (Some(mut parts), Some(mut inner)) = (parts.take(), inner.take())
                            else {
                                // Unreachable: both are taken only here, right before leaving the
                                // state. Answer 500 rather than panic.
                                state.set(State::Rejected { rejection: None });
                                return Poll::Ready(Ok(
                                    Rejection::InternalServerError.into_response()
                                ));
                            };
                            normalise_content_length(&mut parts.headers, *declared);
                            inner.call(Request::from_parts(parts, BufferedBody::new(bytes)))
                        }
                    }
                }
            };
            state.set(State::Calling { future });
        }
    }
}

/// Reads frames until the body ends, a limit is passed, or it has to wait.
fn read<B>(
    mut body: Pin<&mut B>,
    collected: &mut FrameBuffer,
    declared: Declared,
    max_bytes: usize,
    timeout: Duration,
    deadline: &mut Option<Pin<Box<Sleep>>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Bytes, Stop>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    // Bytes beyond a declared length are refused as soon as they arrive, like bytes beyond the cap,
    // so a lying `Content-Length` never makes us buffer more than one frame past what it declared.
    let declared_len = declared.length.unwrap_or(u64::MAX);
    // Within the cap (checked in `call`), so the cast cannot truncate.
    let capacity_hint = declared.length.map_or(0, |n| n as usize);
    let mut total = collected.len() as u64;
    for _ in 0..FRAMES_PER_POLL {
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // Trailers cannot be carried by a `BufferedBody`; they are dropped.
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                total = total.saturating_add(data.remaining() as u64);
                if total > max_bytes as u64 {
                    return Poll::Ready(Err(Stop::Reject(Rejection::PayloadTooLarge)));
                }
                if total > declared_len {
                    return Poll::Ready(Err(Stop::Reject(Rejection::InvalidContentLength)));
                }
                collected.push(data, capacity_hint);
                // Most bodies know when they are done (a full in-memory body, hyper once the
                // declared length has arrived); asking saves a poll.
                if body.is_end_stream() {
                    return Poll::Ready(finish(collected, declared, total));
                }
            }
            Poll::Ready(Some(Err(error))) => {
                let error: BoxError = error.into();
                if is_length_limit(&*error) {
                    return Poll::Ready(Err(Stop::Reject(Rejection::PayloadTooLarge)));
                }
                trace_debug!(%error, "request body failed while buffering");
                return Poll::Ready(Err(Stop::ReadError));
            }
            Poll::Ready(None) => return Poll::Ready(finish(collected, declared, total)),
            Poll::Pending => return wait(deadline, timeout, cx),
        }
    }
    // Budget spent on an always-ready body: yield, and let the deadline bound how long this goes on.
    cx.waker().wake_by_ref();
    wait(deadline, timeout, cx)
}

/// The body has ended: hand it on if it is as long as it said.
fn finish(collected: &mut FrameBuffer, declared: Declared, total: u64) -> Result<Bytes, Stop> {
    // A body that ends short of its declared length was cut off or framed wrongly; handing a
    // partial body on would let the inner service act on truncated input.
    if declared.length.is_some_and(|n| n != total) {
        return Err(Stop::Reject(Rejection::InvalidContentLength));
    }
    Ok(collected.take())
}

/// Starts the deadline on the first wait and answers 408 once it has passed.
fn wait(
    deadline: &mut Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Poll<Result<Bytes, Stop>> {
    let sleep = deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
    match sleep.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(Err(Stop::Reject(Rejection::RequestBodyTimeout))),
        Poll::Pending => Poll::Pending,
    }
}
