//! The gateway on shared state (SPEC §7): `sharedState` resolved at load, connected by
//! [`Gateway::share_state`], reported by `/readyz` and `--check-config`.

use std::borrow::Cow;
use std::sync::Arc;

use super::Gateway;
use crate::config::{ConfigError, SecretInput, WebhooksConfig};
use crate::health::ReadinessCheck;
use crate::pipeline::WebhookPipeline;
use crate::redis::{
    OnUnavailable, RedisLockoutStore, RedisSlotStore, RedisState, RedisWindowStore,
    SharedStateConfig,
};
use crate::secret::Secret;

/// The key errors about `sharedState` name.
const SHARED_STATE_KEY: &str = "webhooks.sharedState";
/// The flag errors about `--shared-state` name.
const SHARED_STATE_FLAG: &str = "--shared-state";
/// What `/readyz` calls the shared state.
pub const SHARED_STATE_READINESS_KIND: &str = "redis";

/// `sharedState` of `config` with its URL resolved (a SecretRef is resolved like a route's
/// secret, but one that cannot be resolved is an error: the file asks for shared limits).
pub(super) fn resolve(
    config: &WebhooksConfig,
) -> Result<Option<(Secret, SharedStateConfig)>, ConfigError> {
    let Some(source) = config.shared_state() else {
        return Ok(None);
    };
    let url = match &source.url {
        SecretInput::Plain(url) => url.clone(),
        SecretInput::Ref(reference) => config.providers().resolve(reference).map_err(|why| {
            ConfigError::invalid(
                SHARED_STATE_KEY,
                format!("could not resolve the URL ({reference}): {why}"),
            )
        })?,
    };
    crate::config::check_shared_state_scheme(url.expose(), SHARED_STATE_KEY)?;
    Ok(Some((url, source.config.clone())))
}

impl Gateway {
    /// Connects the limiters to Redis: `url` (the `--shared-state` flag) if given, else the
    /// file's `sharedState`; with neither, the gateway stays as it is. The file's `keyPrefix`,
    /// `onUnavailable`, `timeoutMs` and `leaseMs` apply either way.
    ///
    /// The in-process limiters stay, as the fallback of `onUnavailable: "local"`. Redis
    /// unreachable now is an error naming the key (or the flag), never a silent start on memory.
    pub async fn share_state(mut self, url: Option<&str>) -> Result<Self, ConfigError> {
        let config = self
            .shared_state
            .as_ref()
            .map_or_else(SharedStateConfig::new, |(_, config)| config.clone());
        let (url, key) = match (url, &self.shared_state) {
            (Some(url), _) => {
                let url = Secret::new(url)
                    .ok_or_else(|| ConfigError::invalid(SHARED_STATE_FLAG, "must not be empty"))?;
                crate::config::check_shared_state_scheme(url.expose(), SHARED_STATE_FLAG)?;
                (url, SHARED_STATE_FLAG)
            }
            (None, Some((url, _))) => (url.clone(), SHARED_STATE_KEY),
            (None, None) => return Ok(self),
        };
        let shared = RedisState::connect(url.expose(), config)
            .await
            .map_err(|error| ConfigError::invalid(key, error.to_string()))?;
        let old = &self.pipeline;
        let lockout = RedisLockoutStore::new(shared.clone(), old.lockout().local().clone());
        let slots = RedisSlotStore::new(shared.clone(), old.in_flight_limiter().local().clone())
            .reading_lockout(lockout.clone());
        let windows = RedisWindowStore::new(shared, old.rate_limiter().local().clone());
        self.pipeline = WebhookPipeline::with_stores(
            Arc::clone(old.store()),
            old.limits().clone(),
            windows,
            slots,
            lockout,
        )
        .with_ledger(Arc::clone(old.ledger()));
        self.router
            .table_handle()
            .replace(self.pipeline.table(&self.routes));
        Ok(self)
    }

    /// The shared state the limiters use, once [`share_state`](Self::share_state) connected it.
    pub fn shared_state(&self) -> Option<&RedisState> {
        self.pipeline.rate_limiter().shared()
    }
}

/// What `--check-config` prints for a shared-state configuration: the kind and its settings,
/// never the URL (it may carry a password).
pub fn describe(config: &SharedStateConfig) -> String {
    format!(
        "redis (keyPrefix {:?}, onUnavailable {}, timeoutMs {}, leaseMs {})",
        config.key_prefix,
        config.on_unavailable,
        config.timeout.as_millis(),
        config.lease.as_millis()
    )
}

/// `/readyz` on shared state (kind `redis`): with `onUnavailable: "reject"` the gateway is not
/// ready while Redis is marked down (every limited request would be `503`); with `"local"` it
/// serves on its own budgets and stays ready. The reason never names the URL.
#[derive(Debug)]
pub struct SharedStateReady {
    shared: RedisState,
}

impl SharedStateReady {
    /// The check of `shared`.
    pub fn new(shared: RedisState) -> Self {
        Self { shared }
    }
}

impl ReadinessCheck for SharedStateReady {
    fn kind(&self) -> &str {
        SHARED_STATE_READINESS_KIND
    }

    fn check(&self) -> Result<(), Cow<'static, str>> {
        let refusing = self.shared.config().on_unavailable == OnUnavailable::Reject;
        if refusing && !self.shared.is_available() {
            return Err(Cow::Borrowed("unavailable"));
        }
        Ok(())
    }
}

impl super::ConfigCheck {
    /// What `--shared-state URL` makes of the check: the URL refused unless it is `redis://…`,
    /// the file's settings (or the defaults) reported with it. Nothing is connected.
    pub fn with_shared_state_url(mut self, url: &str) -> Result<Self, ConfigError> {
        crate::config::check_shared_state_scheme(url, SHARED_STATE_FLAG)?;
        if self.shared_state == super::SHARED_STATE_KIND {
            self.shared_state = describe(&SharedStateConfig::new());
        }
        Ok(self)
    }
}
