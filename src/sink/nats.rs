//! NATS sink: events to NATS subjects in the routr or native dialect.
//!
//! Placeholder: the config keys of DESIGN.md, accepted and validated; the sink itself
//! is not built yet, so starting it is an error that says so.

use serde::Deserialize;

use crate::bus::{Publisher, SinkRx};
use crate::config::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSinkConfig {
    pub url: String,
    pub dialect: String,
    pub subject: String,
}

impl Default for NatsSinkConfig {
    fn default() -> Self {
        NatsSinkConfig {
            url: "nats://127.0.0.1:4222".into(),
            dialect: "routr".into(),
            subject: "routr".into(),
        }
    }
}

impl NatsSinkConfig {
    pub fn validate(&self, _key: &str) -> Result<(), ConfigError> {
        Ok(())
    }

    pub fn resolve_secrets(
        &mut self,
        _key: &str,
        _env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NatsSinkError {
    #[error("not available in this build yet")]
    NotBuilt,
}

pub struct NatsSink;

impl NatsSink {
    pub async fn new(_cfg: &NatsSinkConfig, _publisher: Publisher) -> Result<Self, NatsSinkError> {
        Err(NatsSinkError::NotBuilt)
    }

    pub async fn run(self, _rx: SinkRx) {}
}

/// Routr's environment variables (`NATS_PUBLISHER_ENABLED`, `_URL`, `_SUBJECT`).
pub fn apply_routr_env(
    _sinks: &mut Vec<crate::sink::SinkConfig>,
    _env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    Ok(())
}
