//! Webhook sink: one HTTP(S) POST per event, enswitch (form) or native (JSON).
//!
//! Placeholder: the config keys of DESIGN.md, accepted and validated; the sink itself
//! is not built yet, so starting it is an error that says so.

use serde::Deserialize;

use crate::bus::{Publisher, SinkRx};
use crate::config::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSinkConfig {
    pub url: String,
    pub dialect: String,
}

impl Default for WebhookSinkConfig {
    fn default() -> Self {
        WebhookSinkConfig {
            url: String::new(),
            dialect: "enswitch".into(),
        }
    }
}

impl WebhookSinkConfig {
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
pub enum WebhookSinkError {
    #[error("not available in this build yet")]
    NotBuilt,
}

pub struct WebhookSink;

impl WebhookSink {
    pub async fn new(
        _cfg: &WebhookSinkConfig,
        _publisher: Publisher,
    ) -> Result<Self, WebhookSinkError> {
        Err(WebhookSinkError::NotBuilt)
    }

    pub async fn run(self, _rx: SinkRx) {}
}
