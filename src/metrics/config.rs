//! `[metrics]`: the OpenMetrics endpoint's settings, off by default.

use serde::Deserialize;

use crate::settings::{self, ConfigError};

/// Default `listen`: loopback only; a scraper elsewhere needs it said.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9188";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// `host:port` serving `GET /metrics`.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: false,
            listen: DEFAULT_LISTEN.into(),
        }
    }
}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        settings::validate_host_port("metrics.listen", &self.listen)
    }
}
