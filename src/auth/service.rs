//! The [`SharedSecretAuth`] service.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, Request, Response, Uri};
use tower_service::Service;

use super::layer::{AuthState, SharedSecretAuthConfig, SharedSecretAuthLayer};
use super::lockout::LockState;
use super::secrets::SecretsHandle;
use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::rejection::Rejection;

/// Lets a request through only when it presents one of the configured secrets. See the
/// [module docs](crate::auth).
#[derive(Clone, Debug)]
pub struct SharedSecretAuth<S> {
    inner: S,
    state: Arc<AuthState>,
}

impl<S> SharedSecretAuth<S> {
    /// Wraps `inner` with `config`.
    pub fn new(inner: S, config: SharedSecretAuthConfig) -> Self {
        Self::from_state(inner, AuthState::new(config))
    }

    pub(crate) fn from_state(inner: S, state: Arc<AuthState>) -> Self {
        Self { inner, state }
    }

    /// A layer with `config`.
    pub fn layer(config: SharedSecretAuthConfig) -> SharedSecretAuthLayer {
        SharedSecretAuthLayer::new(config)
    }

    /// A handle that replaces the accepted secrets of this service and its clones.
    pub fn secrets_handle(&self) -> SecretsHandle {
        self.state.secrets.clone()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SharedSecretAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let state = &*self.state;
        if state.refuse_query_secrets && has_secret_in_query(request.uri()) {
            return ResponseFuture::rejected(Rejection::SecretInQueryString);
        }
        let mut client: Option<(IpAddr, LockState)> = None;
        if let Some(lockout) = &state.lockout {
            let ip = state.trusted_proxies.client_ip(&request);
            match lockout.check(ip) {
                LockState::Locked { retry_after_secs } => {
                    return ResponseFuture::rejected(Rejection::TooManyRequests {
                        retry_after_secs,
                    });
                }
                other => client = Some((ip, other)),
            }
        }
        let presented =
            presented_secret(request.headers(), &state.secret_header, state.accept_bearer);
        let authenticated = !presented.is_empty() && state.secrets.matches(presented);
        if let (Some(lockout), Some((ip, lock_state))) = (&state.lockout, client) {
            if !authenticated {
                lockout.record_failure(ip);
            } else if lock_state == LockState::Tracked {
                lockout.record_success(ip);
            }
        }
        if authenticated {
            ResponseFuture::called(self.inner.call(request))
        } else {
            ResponseFuture::rejected(Rejection::Unauthorized)
        }
    }
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
pub fn has_secret_in_query(uri: &Uri) -> bool {
    let Some(query) = uri.query() else {
        return false;
    };
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        name.eq_ignore_ascii_case("token") || name.eq_ignore_ascii_case("secret")
    })
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
        ] {
            assert_eq!(
                has_secret_in_query(&uri.parse().unwrap()),
                expected,
                "{uri}"
            );
        }
    }
}
