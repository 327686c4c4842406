//! [`SharedSecretAuthConfig`] and [`SharedSecretAuthLayer`].

use std::fmt;
use std::sync::Arc;

use http::{HeaderName, Request};
use tower_layer::Layer;

use super::lockout::{AuthLockout, LockoutConfig};
use super::secrets::{SecretDigests, SecretsHandle};
use super::service::{SharedSecretAuth, presented_secret};
use crate::keyed::LockoutStore;
use crate::secret::Secret;

/// The header OpenClaw clients send the secret in when they do not use `Authorization: Bearer`.
pub const WEBHOOK_SECRET_HEADER: HeaderName = HeaderName::from_static("x-openclaw-webhook-secret");

/// Settings of [`SharedSecretAuth`].
///
/// ```
/// use tower_webhooks::auth::{AuthLockout, LockoutConfig, SharedSecretAuthConfig};
/// use tower_webhooks::secret::Secret;
/// let config = SharedSecretAuthConfig::new([Secret::new("current").unwrap(), Secret::new("next").unwrap()])
///     .secret_header(http::HeaderName::from_static("x-hook-token"))
///     .lockout(AuthLockout::new(LockoutConfig::default()));
/// assert!(!format!("{config:?}").contains("current"));
/// ```
///
/// The lockout is any [`LockoutStore`]: by default a fresh in-memory [`AuthLockout`], or one
/// shared between replicas.
#[derive(Clone)]
pub struct SharedSecretAuthConfig<L = AuthLockout> {
    pub(crate) secrets: Vec<Secret>,
    pub(crate) secret_header: HeaderName,
    pub(crate) accept_bearer: bool,
    pub(crate) refuse_query_secrets: bool,
    pub(crate) lockout: Option<L>,
}

impl SharedSecretAuthConfig {
    /// Accepts any of `secrets`, from `Authorization: Bearer` or `x-openclaw-webhook-secret`, with a
    /// fresh lockout of the default settings, refusing secrets in the query string. An empty set
    /// refuses everybody.
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Self {
            secrets: secrets.into_iter().collect(),
            secret_header: WEBHOOK_SECRET_HEADER,
            accept_bearer: true,
            refuse_query_secrets: true,
            lockout: Some(AuthLockout::new(LockoutConfig::default())),
        }
    }
}

impl<L> SharedSecretAuthConfig<L> {
    /// The header consulted when there is no `Authorization: Bearer`.
    pub fn secret_header(mut self, name: HeaderName) -> Self {
        self.secret_header = name;
        self
    }

    /// Whether `Authorization: Bearer <secret>` is consulted (default `true`).
    pub fn accept_bearer(mut self, accept: bool) -> Self {
        self.accept_bearer = accept;
        self
    }

    /// Whether a `token` or `secret` query parameter is refused with `400` (default `true`).
    pub fn refuse_query_secrets(mut self, refuse: bool) -> Self {
        self.refuse_query_secrets = refuse;
        self
    }

    /// Uses `lockout`, which may be shared with other routes (clones share state): an
    /// [`AuthLockout`] in memory, or any other [`LockoutStore`].
    pub fn lockout<L2: LockoutStore>(self, lockout: L2) -> SharedSecretAuthConfig<L2> {
        SharedSecretAuthConfig {
            secrets: self.secrets,
            secret_header: self.secret_header,
            accept_bearer: self.accept_bearer,
            refuse_query_secrets: self.refuse_query_secrets,
            lockout: Some(lockout),
        }
    }

    /// Turns the brute-force lockout off.
    pub fn without_lockout(mut self) -> Self {
        self.lockout = None;
        self
    }
}

impl<L: fmt::Debug> fmt::Debug for SharedSecretAuthConfig<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSecretAuthConfig")
            .field("secrets", &self.secrets.len())
            .field("secret_header", &self.secret_header)
            .field("accept_bearer", &self.accept_bearer)
            .field("refuse_query_secrets", &self.refuse_query_secrets)
            .field("lockout", &self.lockout)
            .finish()
    }
}

/// What every clone of one layer shares.
#[derive(Debug)]
pub(crate) struct AuthState<L> {
    pub(crate) secrets: SecretsHandle,
    pub(crate) secret_header: HeaderName,
    pub(crate) accept_bearer: bool,
    pub(crate) refuse_query_secrets: bool,
    pub(crate) lockout: Option<L>,
}

impl<L> AuthState<L> {
    pub(crate) fn new(config: SharedSecretAuthConfig<L>) -> Arc<Self> {
        Arc::new(Self {
            secrets: SecretsHandle::new(SecretDigests::new(config.secrets)),
            secret_header: config.secret_header,
            accept_bearer: config.accept_bearer,
            refuse_query_secrets: config.refuse_query_secrets,
            lockout: config.lockout,
        })
    }

    /// Whether `request` presents one of the secrets.
    #[inline]
    pub(crate) fn authenticates<B>(&self, request: &Request<B>) -> bool {
        let presented =
            presented_secret(request.headers(), &self.secret_header, self.accept_bearer);
        !presented.is_empty() && self.secrets.matches(presented)
    }
}

/// Layer of [`SharedSecretAuth`]. Clones share one secret set and one lockout.
#[derive(Debug)]
pub struct SharedSecretAuthLayer<L = AuthLockout> {
    state: Arc<AuthState<L>>,
}

impl<L> Clone for SharedSecretAuthLayer<L> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
        }
    }
}

impl<L> SharedSecretAuthLayer<L> {
    /// A layer with `config`.
    pub fn new(config: SharedSecretAuthConfig<L>) -> Self {
        Self {
            state: AuthState::new(config),
        }
    }

    /// A handle that replaces the accepted secrets of this layer and every service it built.
    pub fn secrets_handle(&self) -> SecretsHandle {
        self.state.secrets.clone()
    }

    /// The lockout this layer counts failures in, if any.
    pub fn lockout(&self) -> Option<&L> {
        self.state.lockout.as_ref()
    }
}

impl<S, L> Layer<S> for SharedSecretAuthLayer<L> {
    type Service = SharedSecretAuth<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        SharedSecretAuth::from_state(inner, Arc::clone(&self.state))
    }
}
