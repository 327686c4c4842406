//! The connection URL, the pool and the errors the driver reports, told apart for the caller.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;

use crate::taskflow::store::StoreError;

/// How a [`PostgresStore`](super::PostgresStore) talks to the database.
///
/// Defaults: 16 pooled connections per process, 10 s for one store operation (checking out a
/// connection, every statement and the commit), 5 s to open a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    pub(super) max_connections: usize,
    pub(super) operation_timeout: Duration,
    pub(super) connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            operation_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl PostgresOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Most connections this process holds in its pool (at least 1). The change feed uses one
    /// more, outside the pool.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Longest one store operation may take before it answers `503` `persist_failed`: a database
    /// that stopped answering (a dropped network path rather than a refused connection) must not
    /// hold a webhook request forever.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Longest the opening of one connection may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// The parsed URL, and the one secret in it, kept so that no message ever repeats it.
pub(super) struct Target {
    pub(super) config: tokio_postgres::Config,
    password: Option<String>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio-postgres redacts the password in its own `Debug`; the host and database are not
        // secret, but an operator reading a log does not need the options either.
        f.debug_struct("Target")
            .field("hosts", &self.config.get_hosts().len())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Parses a `postgres://` or `postgresql://` URL (or a `key=value` connection string).
    ///
    /// The error never quotes the URL: the driver's parse errors name an option, never a value,
    /// and that is all that is passed on.
    pub(super) fn parse(url: &str, options: &PostgresOptions) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|error| {
            StoreError::PersistFailed(format!("invalid PostgreSQL URL: {error}{}", source(&error)))
        })?;
        if config.get_ssl_mode() == SslMode::Require {
            // This build speaks plain TCP only; refusing is better than a surprise in clear text.
            return Err(StoreError::PersistFailed(
                "invalid PostgreSQL URL: sslmode=require is not supported by this build (it \
                 connects without TLS); use a local socket, a TLS-terminating proxy or sslmode=disable"
                    .into(),
            ));
        }
        if config.get_application_name().is_none() {
            config.application_name("tower-webhooks");
        }
        config.connect_timeout(options.connect_timeout);
        // A peer that vanished without a FIN is noticed by the keepalive probes within a minute
        // rather than the kernel's two hours.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        config.keepalives_interval(Duration::from_secs(10));
        config.keepalives_retries(3);
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .filter(|p| !p.is_empty());
        Ok(Self { config, password })
    }

    /// `text` with every occurrence of the URL's password replaced. The driver and the server are
    /// not known to quote it, but an error message is cheap to check and costly to leak.
    pub(super) fn redact(&self, text: String) -> String {
        match &self.password {
            Some(password) if text.contains(password.as_str()) => text.replace(password, "***"),
            _ => text,
        }
    }

    pub(super) fn pool(&self, options: &PostgresOptions) -> Result<Pool, StoreError> {
        let manager = Manager::from_config(
            self.config.clone(),
            NoTls,
            ManagerConfig {
                // A connection the server closed is noticed by `is_closed` at checkout for free;
                // one that merely went silent is caught by the operation timeout and dropped.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(options.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.operation_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|error| StoreError::PersistFailed(format!("PostgreSQL pool: {error}")))
    }
}

/// The driver error's cause, which carries the detail its `Display` leaves out.
fn source(error: &tokio_postgres::Error) -> String {
    std::error::Error::source(error)
        .map(|cause| format!(": {cause}"))
        .unwrap_or_default()
}

/// What went wrong with one database call, classified for the caller.
#[derive(Debug)]
pub(super) enum DbFailure {
    /// The call did not change anything: the server refused it, or it never reached the server.
    NotApplied(String),
    /// The connection failed while a commit was in flight: it may or may not have happened.
    Unknown(String),
}

impl DbFailure {
    /// Classifies a driver error. `committing` says whether the failed call was the one that
    /// commits (an explicit `COMMIT`, or a write statement run outside a transaction).
    pub(super) fn from_driver(
        target: &Target,
        error: &tokio_postgres::Error,
        committing: bool,
    ) -> Self {
        let text = target.redact(describe(error));
        // A statement the server answered with an error did not commit, nor did one the driver
        // refused to send; a connection that closed or failed while the commit was in flight
        // leaves the outcome unknown.
        let connection_lost = error.is_closed()
            || std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>());
        if committing && connection_lost {
            Self::Unknown(text)
        } else {
            Self::NotApplied(text)
        }
    }

    pub(super) fn pool(target: &Target, error: &deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        // The pool's own text says only "db error" for a refused connection: name the cause.
        let text = match error {
            PoolError::Backend(error) => format!("PostgreSQL connection: {}", describe(error)),
            other => format!("PostgreSQL connection pool: {other}"),
        };
        Self::NotApplied(target.redact(text))
    }
}

/// One line for a log: the SQLSTATE and message for a server error, the kind and cause otherwise.
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("PostgreSQL error {}: {}", db.code().code(), db.message()),
        None => format!("PostgreSQL: {error}{}", source(error)),
    }
}

/// A pooled connection that goes back to the pool only when the operation ended cleanly.
///
/// If the operation fails, times out or is dropped half-way (its future cancelled), the connection
/// may still hold an open transaction or an unanswered statement; it is closed instead of being
/// handed to the next request.
pub(super) struct Checkout {
    object: Option<Object>,
}

impl Checkout {
    pub(super) fn new(object: Object) -> Self {
        Self {
            object: Some(object),
        }
    }

    pub(super) fn client(&self) -> &Object {
        self.object.as_ref().expect("checkout used after release")
    }

    /// Hands the connection back to the pool.
    pub(super) fn release(mut self) {
        self.object.take();
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            // Detached from the pool and dropped: the client closes and its connection task ends.
            drop(Object::take(object));
        }
    }
}
