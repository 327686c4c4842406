//! The [`SharedSecretAuth`] service.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, Request, Response, Uri};
use tower_service::Service;

use super::future::{AuthResponseFuture, Next, Step, after_check, after_record};
use super::layer::{AuthState, SharedSecretAuthConfig, SharedSecretAuthLayer};
use super::lockout::AuthLockout;
use super::secrets::SecretsHandle;
use crate::body::ResponseBody;
use crate::client_ip::ClientIp;
use crate::keyed::LockoutStore;
use crate::keyed::seam::{Waiting, poll_now};
use crate::rejection::Rejection;

/// Lets a request through only when it presents one of the configured secrets. See the
/// [module docs](crate::auth).
///
/// Counts failures in a [`LockoutStore`]: by default the in-memory [`AuthLockout`], whose answers
/// are ready at once, so everything is decided in `call`. A store that answers later (shared
/// state) is awaited in the response future; one that is unavailable is answered
/// `503 Service Unavailable`.
#[derive(Debug)]
pub struct SharedSecretAuth<S, L = AuthLockout> {
    inner: S,
    state: Arc<AuthState<L>>,
}

impl<S: Clone, L> Clone for SharedSecretAuth<S, L> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<S> SharedSecretAuth<S> {
    /// A layer with `config`.
    pub fn layer(config: SharedSecretAuthConfig) -> SharedSecretAuthLayer {
        SharedSecretAuthLayer::new(config)
    }
}

impl<S, L> SharedSecretAuth<S, L> {
    /// Wraps `inner` with `config`.
    pub fn new(inner: S, config: SharedSecretAuthConfig<L>) -> Self {
        Self::from_state(inner, AuthState::new(config))
    }

    pub(crate) fn from_state(inner: S, state: Arc<AuthState<L>>) -> Self {
        Self { inner, state }
    }

    /// A handle that replaces the accepted secrets of this service and its clones.
    pub fn secrets_handle(&self) -> SecretsHandle {
        self.state.secrets.clone()
    }

    inner_service_accessors!();
}

impl<S, L, ReqBody, ResBody> Service<Request<ReqBody>> for SharedSecretAuth<S, L>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    L: LockoutStore,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = AuthResponseFuture<S, Request<ReqBody>, L>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Self { inner, state } = self;
        if state.refuse_query_secrets && has_secret_in_query(request.uri()) {
            return AuthResponseFuture::rejected(Rejection::SecretInQueryString);
        }
        // A request without a known client is neither refused by nor counted towards the lockout
        // (see `ClientIp::known`).
        let known_client = state
            .lockout
            .as_ref()
            .and_then(|lockout| Some((lockout, ClientIp::of(&request).known()?)));
        let Some((lockout, ip)) = known_client else {
            let decision = if state.authenticates(&request) {
                Ok(())
            } else {
                Err(Rejection::Unauthorized)
            };
            return decided(inner, decision, request);
        };
        if lockout.nobody_failing() {
            // Nobody has failed lately (the usual case): nothing to ask the store, no key to hash.
            if state.authenticates(&request) {
                return AuthResponseFuture::called(inner.call(request));
            }
            let record = lockout.record_failure(lockout_key(lockout, ip));
            return recorded(inner, state, record, false, request);
        }
        let key = lockout_key(lockout, ip);
        let mut check = lockout.check(key);
        match poll_now(&mut check) {
            Poll::Ready(answer) => {
                match after_check(lockout, key, answer, || state.authenticates(&request)) {
                    Next::Decided(decision) => decided(inner, decision, request),
                    Next::Record {
                        record,
                        authenticated,
                    } => recorded(inner, state, record, authenticated, request),
                }
            }
            Poll::Pending => waiting(inner, state, Step::Checking { check, key }, request),
        }
    }
}

/// Calls `inner` or answers the rejection.
#[inline]
fn decided<S: Service<R>, R, L: LockoutStore>(
    inner: &mut S,
    decision: Result<(), Rejection>,
    request: R,
) -> AuthResponseFuture<S, R, L> {
    match decision {
        Ok(()) => AuthResponseFuture::called(inner.call(request)),
        Err(rejection) => AuthResponseFuture::rejected(rejection),
    }
}

/// Decides once `record` is written: now when it is ready (in memory), later when it is not.
#[inline]
fn recorded<S: Service<R> + Clone, R, L: LockoutStore>(
    inner: &mut S,
    state: &Arc<AuthState<L>>,
    mut record: L::RecordFuture,
    authenticated: bool,
    request: R,
) -> AuthResponseFuture<S, R, L> {
    match poll_now(&mut record) {
        Poll::Ready(answer) => decided(inner, after_record(answer, authenticated), request),
        Poll::Pending => waiting(
            inner,
            state,
            Step::Recording {
                record,
                authenticated,
            },
            request,
        ),
    }
}

/// Keeps the request, with the service `poll_ready` was driven on, until the store answers.
fn waiting<S: Service<R> + Clone, R, L: LockoutStore>(
    inner: &mut S,
    state: &Arc<AuthState<L>>,
    step: Step<L>,
    request: R,
) -> AuthResponseFuture<S, R, L> {
    let answer = (step, Arc::clone(state));
    AuthResponseFuture::waiting(Waiting::new(answer, request, inner))
}

/// The key of client `ip` in `lockout`.
#[inline]
fn lockout_key<L: LockoutStore>(lockout: &L, ip: IpAddr) -> u64 {
    let mut material = lockout.key_hasher().material();
    material.ip(ip);
    material.finish()
}

/// The secret a request presents (SPEC §2.2), as raw bytes; empty when there is none.
///
/// An `Authorization` value that, trimmed, starts with `bearer ` (any case) decides alone: its rest,
/// trimmed, is the secret even when empty, and the secret header is then not consulted. Otherwise the
/// first value of the secret header, trimmed. Works on bytes, so odd header bytes cannot fail it.
pub fn presented_secret<'a>(
    headers: &'a HeaderMap,
    secret_header: &HeaderName,
    accept_bearer: bool,
) -> &'a [u8] {
    const BEARER: &[u8] = b"bearer ";
    if accept_bearer {
        if let Some(value) = headers.get(AUTHORIZATION) {
            let value = value.as_bytes().trim_ascii();
            if value.len() >= BEARER.len() && value[..BEARER.len()].eq_ignore_ascii_case(BEARER) {
                return value[BEARER.len()..].trim_ascii();
            }
        }
    }
    headers
        .get(secret_header)
        .map_or(&[], |value| value.as_bytes().trim_ascii())
}

/// Whether the query string has a `token` or `secret` parameter (name compared ignoring ASCII case,
/// with or without a value). Secrets in URLs end up in proxy and access logs, so such a request is
/// refused even when its headers are right.
///
/// Names are read as proxies, log processors and web frameworks read them (SPEC §2.2): parameters
/// are separated by `&` or `;`, and a name is percent-decoded (`%74oken` is `token`) before it is
/// compared. Decoding happens while comparing, so nothing is allocated.
pub fn has_secret_in_query(uri: &Uri) -> bool {
    let Some(query) = uri.query() else {
        return false;
    };
    query.split(['&', ';']).any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        decoded_name_is(name, b"token") || decoded_name_is(name, b"secret")
    })
}

/// Whether `name`, percent-decoded (`+` as a space, as form decoding does), equals `expected`
/// ignoring ASCII case. A `%` not followed by two hex digits stands for itself.
fn decoded_name_is(name: &str, expected: &[u8]) -> bool {
    let mut bytes = name.as_bytes();
    let mut expected = expected.iter();
    while let Some((&first, rest)) = bytes.split_first() {
        let (byte, rest) = match (first, rest) {
            (b'%', [high, low, after @ ..]) => match (hex_value(*high), hex_value(*low)) {
                (Some(high), Some(low)) => (high << 4 | low, after),
                _ => (b'%', rest),
            },
            (b'+', _) => (b' ', rest),
            _ => (first, rest),
        };
        match expected.next() {
            Some(want) if want.eq_ignore_ascii_case(&byte) => bytes = rest,
            _ => return false,
        }
    }
    expected.next().is_none()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const HEADER: HeaderName = super::super::layer::WEBHOOK_SECRET_HEADER;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    type Headers<'a> = &'a [(&'a str, &'a [u8])];

    #[test]
    fn bearer_rules() {
        let cases: &[(Headers<'_>, &[u8])] = &[
            (&[("authorization", b"Bearer abc")], b"abc"),
            (&[("authorization", b"  bEaReR    abc  ")], b"abc"),
            (
                &[
                    ("authorization", b"Bearer abc"),
                    ("x-openclaw-webhook-secret", b"hdr"),
                ],
                b"abc",
            ),
            (
                &[
                    ("authorization", b"Basic abc"),
                    ("x-openclaw-webhook-secret", b" hdr "),
                ],
                b"hdr",
            ),
            // "Bearer" alone, trimmed, does not start with "bearer ": falls back to the header.
            (
                &[
                    ("authorization", b"Bearer   "),
                    ("x-openclaw-webhook-secret", b"hdr"),
                ],
                b"hdr",
            ),
            (
                &[
                    ("authorization", b"Bearer\tabc"),
                    ("x-openclaw-webhook-secret", b"hdr"),
                ],
                b"hdr",
            ),
            (
                &[
                    ("x-openclaw-webhook-secret", b"first"),
                    ("x-openclaw-webhook-secret", b"second"),
                ],
                b"first",
            ),
            (&[("authorization", b"Bearer \xff\xfe")], b"\xff\xfe"),
            (&[], b""),
        ];
        for (pairs, expected) in cases {
            assert_eq!(
                presented_secret(&headers(pairs), &HEADER, true),
                *expected,
                "{pairs:?}"
            );
        }
        let no_bearer = headers(&[
            ("authorization", b"Bearer abc"),
            ("x-openclaw-webhook-secret", b"h"),
        ]);
        assert_eq!(presented_secret(&no_bearer, &HEADER, false), b"h");
    }

    #[test]
    fn query_secret_detection() {
        for (uri, expected) in [
            ("/hook", false),
            ("/hook?", false),
            ("/hook?token=abc", true),
            ("/hook?a=1&SECRET=x", true),
            ("/hook?token", true),
            ("/hook?tokens=1&secretive=2", false),
            ("/hook?x=token", false),
            // Names as proxies and logs decode them, and `;` as a separator.
            ("/hook?%74oken=abc", true),
            ("/hook?%74%4F%6b%65%6E=abc", true),
            ("/hook?%73ecret", true),
            ("/hook?a=1;token=abc", true),
            ("/hook?a=1;SeCrEt=abc&b=2", true),
            ("/hook?a=%74oken", false),
            ("/hook?%74oke=abc", false),
            ("/hook?%74okens=abc", false),
            ("/hook?%7", false),
            ("/hook?%zztoken=1", false),
            ("/hook?tok%en=1", false),
            ("/hook?+token=1", false),
        ] {
            assert_eq!(
                has_secret_in_query(&uri.parse().unwrap()),
                expected,
                "{uri}"
            );
        }
    }
}
