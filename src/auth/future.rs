//! [`AuthResponseFuture`] and the lockout steps it shares with `call`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::layer::AuthState;
use super::lockout::AuthLockout;
use crate::body::ResponseBody;
use crate::keyed::seam::Waiting;
use crate::keyed::{LockState, LockoutStore, Unavailable};
use crate::rejection::Rejection;

/// Where a request stands with a lockout store that has not answered yet.
pub(crate) enum Step<L: LockoutStore> {
    /// Asked whether the client is locked out; the secret is compared once it answers.
    Checking { check: L::CheckFuture, key: u64 },
    /// Recording the outcome; the request goes on (or is refused `401`) once it is on record.
    Recording {
        record: L::RecordFuture,
        authenticated: bool,
    },
}

/// What to do after a lockout answer: go on or refuse now, or wait for a record to be written.
pub(crate) enum Next<L: LockoutStore> {
    Decided(Result<(), Rejection>),
    Record {
        record: L::RecordFuture,
        authenticated: bool,
    },
}

/// After the check: refuse a locked-out client, compare the secret, and record a failure (or the
/// success of a client with failures on record) before answering.
#[inline]
pub(crate) fn after_check<L: LockoutStore>(
    lockout: &L,
    key: u64,
    answer: Result<LockState, Unavailable>,
    authenticated: impl FnOnce() -> bool,
) -> Next<L> {
    let lock_state = match answer {
        Ok(LockState::Locked { retry_after_secs }) => {
            return Next::Decided(Err(Rejection::LockedOut { retry_after_secs }));
        }
        Ok(lock_state) => lock_state,
        Err(_unavailable) => return Next::Decided(Err(Rejection::ServiceUnavailable)),
    };
    if !authenticated() {
        Next::Record {
            record: lockout.record_failure(key),
            authenticated: false,
        }
    } else if lock_state == LockState::Tracked {
        Next::Record {
            record: lockout.record_success(key),
            authenticated: true,
        }
    } else {
        Next::Decided(Ok(()))
    }
}

/// After the record is written: let the request through, or refuse it.
#[inline]
pub(crate) fn after_record(
    answer: Result<(), Unavailable>,
    authenticated: bool,
) -> Result<(), Rejection> {
    match (answer, authenticated) {
        (Err(_unavailable), _) => Err(Rejection::ServiceUnavailable),
        (Ok(()), true) => Ok(()),
        (Ok(()), false) => Err(Rejection::Unauthorized),
    }
}

/// A request waiting for the lockout store, with the layer's state to finish deciding with.
pub(crate) type WaitingForLockout<S, R, L> = Waiting<S, R, (Step<L>, Arc<AuthState<L>>)>;

pin_project! {
    /// Response future of [`SharedSecretAuth`](crate::SharedSecretAuth).
    ///
    /// With the in-memory lockout everything is decided in `call`, and this is the inner future
    /// or a ready rejection. A lockout store that answers later keeps the request and the inner
    /// service (the one `poll_ready` was driven on) in a box: the check is awaited before the
    /// secret is compared, and a failure is on record before the `401` is answered.
    pub struct AuthResponseFuture<S, R, L = AuthLockout>
    where
        S: Service<R>,
        L: LockoutStore,
    {
        #[pin]
        kind: Kind<S, R, L>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, R, L>
    where
        S: Service<R>,
        L: LockoutStore,
    {
        Called { #[pin] future: S::Future },
        Rejected { rejection: Option<Rejection> },
        Waiting { waiting: Box<WaitingForLockout<S, R, L>> },
    }
}

impl<S: Service<R>, R, L: LockoutStore> AuthResponseFuture<S, R, L> {
    pub(crate) fn called(future: S::Future) -> Self {
        Self {
            kind: Kind::Called { future },
        }
    }

    pub(crate) fn rejected(rejection: Rejection) -> Self {
        Self {
            kind: Kind::Rejected {
                rejection: Some(rejection),
            },
        }
    }

    pub(crate) fn waiting(waiting: Box<WaitingForLockout<S, R, L>>) -> Self {
        Self {
            kind: Kind::Waiting { waiting },
        }
    }
}

impl<S: Service<R>, R, L: LockoutStore> fmt::Debug for AuthResponseFuture<S, R, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Called { .. } => f.write_str("AuthResponseFuture::Called"),
            Kind::Rejected { rejection } => f
                .debug_tuple("AuthResponseFuture::Rejected")
                .field(rejection)
                .finish(),
            Kind::Waiting { .. } => f.write_str("AuthResponseFuture::Waiting"),
        }
    }
}

impl<S, ReqBody, L, B> Future for AuthResponseFuture<S, Request<ReqBody>, L>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    L: LockoutStore,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().kind.project() {
                KindProj::Called { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::new)));
                }
                KindProj::Rejected { rejection } => {
                    // Polling again after completion is a caller bug; answer 500 rather than panic.
                    let rejection = rejection.take().unwrap_or(Rejection::InternalServerError);
                    return Poll::Ready(Ok(rejection.into_response()));
                }
                KindProj::Waiting { waiting } => {
                    let decision = match &mut waiting.answer.0 {
                        Step::Checking { check, key } => {
                            let answer = ready!(Pin::new(check).poll(cx));
                            let key = *key;
                            let state = &waiting.answer.1;
                            let request = waiting.request();
                            let next = match state.lockout.as_ref() {
                                Some(lockout) => after_check(lockout, key, answer, || {
                                    request.is_some_and(|request| state.authenticates(request))
                                }),
                                // Only a layer with a lockout asks one: cannot happen, so 500.
                                None => Next::Decided(Err(Rejection::InternalServerError)),
                            };
                            match next {
                                Next::Decided(decision) => decision,
                                Next::Record {
                                    record,
                                    authenticated,
                                } => {
                                    waiting.answer.0 = Step::Recording {
                                        record,
                                        authenticated,
                                    };
                                    continue;
                                }
                            }
                        }
                        Step::Recording {
                            record,
                            authenticated,
                        } => after_record(ready!(Pin::new(record).poll(cx)), *authenticated),
                    };
                    match waiting.proceed(decision) {
                        Ok(future) => Kind::Called { future },
                        Err(rejection) => Kind::Rejected {
                            rejection: Some(rejection),
                        },
                    }
                }
            };
            self.as_mut().project().kind.set(next);
        }
    }
}
