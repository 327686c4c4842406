//! The `store` key (SPEC §7): which TaskFlow store the gateway runs on.

use std::path::Path;

use serde_json::Value;

use super::ConfigError;
use super::secrets::{SecretInput, SecretProviders};
use crate::taskflow::StoreUrl;

/// `store`: `"memory"` (the default), `"sqlite:<path>"`, `"postgres://…"`, or a SecretRef whose
/// value is one of those (for URLs with passwords). Held as a [`SecretInput`], so a URL never
/// shows in `Debug`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreSetting {
    input: Option<SecretInput>,
}

impl StoreSetting {
    pub(crate) fn from_value(value: &Value, path: &str) -> Result<Self, ConfigError> {
        let input = SecretInput::from_value(value, path).map_err(|_| {
            ConfigError::invalid(
                path,
                "must be memory, sqlite:<path>, postgres://… or a SecretRef object",
            )
        })?;
        // A written URL is checked now, so a typo fails the load rather than the start.
        if let SecretInput::Plain(text) = &input {
            StoreUrl::parse(text.expose(), None).map_err(|why| ConfigError::invalid(path, why))?;
        }
        Ok(Self { input: Some(input) })
    }

    /// Whether the file names a store (else the default, memory).
    pub fn is_set(&self) -> bool {
        self.input.is_some()
    }

    /// The store this names, a relative SQLite path taken relative to `base` (the config file's
    /// directory). Resolves a SecretRef now (blocking, like route secrets); errors name `path`.
    pub(crate) fn resolve(
        &self,
        providers: &SecretProviders,
        base: Option<&Path>,
        path: &str,
    ) -> Result<StoreUrl, ConfigError> {
        let text = match &self.input {
            None => return Ok(StoreUrl::Memory),
            Some(SecretInput::Plain(text)) => text.clone(),
            Some(SecretInput::Ref(reference)) => providers.resolve(reference).map_err(|why| {
                ConfigError::invalid(path, format!("could not resolve ({reference}): {why}"))
            })?,
        };
        StoreUrl::parse(text.expose(), base).map_err(|why| ConfigError::invalid(path, why))
    }
}
