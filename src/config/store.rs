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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebhooksConfig;

    fn error(text: &str) -> String {
        WebhooksConfig::from_json5(text).unwrap_err().to_string()
    }

    #[test]
    fn a_bad_store_setting_is_named_by_its_key() {
        for (text, expected) in [
            (
                "{ store: 5 }",
                "webhooks.store: must be memory, sqlite:<path>, postgres://… or a SecretRef object",
            ),
            (
                "{ store: \"\" }",
                "webhooks.store: must be memory, sqlite:<path>, postgres://… or a SecretRef object",
            ),
            (
                "{ store: \"sqlite:\" }",
                "webhooks.store: sqlite: needs a file path, like sqlite:/var/lib/tower-webhooks/flows.db",
            ),
            (
                "{ store: \"ftp://u:hunter2@h\" }",
                "webhooks.store: unknown store scheme \"ftp\": must be memory, sqlite:<path> or postgres://…",
            ),
            (
                "{ store: { source: \"env\", provider: \"default\", id: \"X\", extra: 1 } }",
                "webhooks.store: must be memory, sqlite:<path>, postgres://… or a SecretRef object",
            ),
        ] {
            assert_eq!(error(text), expected, "{text}");
        }
    }

    #[test]
    fn the_setting_resolves_relative_to_the_file_and_hides_its_url_in_debug() {
        let config =
            WebhooksConfig::from_json5("{ store: \"postgres://u:hunter2@db/x\" }").unwrap();
        assert!(config.store().is_set());
        assert!(!format!("{config:?}").contains("hunter2"));
        let url = config.store_url(None).unwrap();
        assert_eq!(url.to_string(), "postgres://u:***@db/x");
        let config = WebhooksConfig::from_json5("{ store: \"sqlite:f.db\" }").unwrap();
        assert_eq!(
            config.store_url(Some(Path::new("/etc/hooks"))).unwrap(),
            StoreUrl::Sqlite("/etc/hooks/f.db".into())
        );
        let config = WebhooksConfig::from_json5("{ }").unwrap();
        assert!(!config.store().is_set());
        assert_eq!(config.store_url(None).unwrap(), StoreUrl::Memory);
    }
}
