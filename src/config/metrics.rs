//! The `metrics` section (SPEC §6): where the gateway serves its Prometheus metrics.

use std::net::SocketAddr;

use serde_json::Value;

use super::ConfigError;
use super::value::{deny_unknown, join, object};

/// `metrics`: `{ listen: "127.0.0.1:9464" }`. The gateway's `--metrics-listen` overrides it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `listen`: the address of the metrics listener (`GET /metrics`). Default: none, no metrics
    /// listener.
    pub listen: Option<SocketAddr>,
}

impl MetricsSettings {
    pub(crate) fn from_value(value: &Value, path: &str) -> Result<Self, ConfigError> {
        let map = object(value, path)?;
        deny_unknown(map, path, &["listen"])?;
        let listen = match map.get("listen") {
            None => None,
            Some(listen) => {
                let at = join(path, "listen");
                let text = listen
                    .as_str()
                    .ok_or_else(|| ConfigError::invalid(&at, "must be a string"))?;
                let addr = text.trim().parse().map_err(|_| {
                    ConfigError::invalid(&at, "must be an address like 127.0.0.1:9464")
                })?;
                Some(addr)
            }
        };
        Ok(Self { listen })
    }
}
