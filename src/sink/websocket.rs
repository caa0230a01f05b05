//! WebSocket sink: a feed server, Enswitch-style path with authkey or PortSIP-style Pub/Sub.
//!
//! Placeholder: the config keys of DESIGN.md, accepted and validated; the sink itself
//! is not built yet, so starting it is an error that says so.

use serde::Deserialize;

use crate::bus::{Publisher, SinkRx};
use crate::config::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebsocketSinkConfig {
    pub listen: String,
    pub protocol: String,
    pub authkey: Option<String>,
}

impl Default for WebsocketSinkConfig {
    fn default() -> Self {
        WebsocketSinkConfig {
            listen: "0.0.0.0:4875".into(),
            protocol: "enswitch".into(),
            authkey: None,
        }
    }
}

impl WebsocketSinkConfig {
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
pub enum WebsocketSinkError {
    #[error("not available in this build yet")]
    NotBuilt,
}

pub struct WebsocketSink;

impl WebsocketSink {
    pub async fn new(
        _cfg: &WebsocketSinkConfig,
        _publisher: Publisher,
    ) -> Result<Self, WebsocketSinkError> {
        Err(WebsocketSinkError::NotBuilt)
    }

    pub async fn run(self, _rx: SinkRx) {}
}
