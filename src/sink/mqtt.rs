//! MQTT sink: events to <topic>/<class>/<event> with rumqttc, retained status and last will.
//!
//! Placeholder: the config keys of DESIGN.md, accepted and validated; the sink itself
//! is not built yet, so starting it is an error that says so.

use serde::Deserialize;

use crate::bus::{Publisher, SinkRx};
use crate::config::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSinkConfig {
    pub url: String,
    pub topic: String,
}

impl Default for MqttSinkConfig {
    fn default() -> Self {
        MqttSinkConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            topic: "pbxtap".into(),
        }
    }
}

impl MqttSinkConfig {
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
pub enum MqttSinkError {
    #[error("not available in this build yet")]
    NotBuilt,
}

pub struct MqttSink;

impl MqttSink {
    pub async fn new(_cfg: &MqttSinkConfig, _publisher: Publisher) -> Result<Self, MqttSinkError> {
        Err(MqttSinkError::NotBuilt)
    }

    pub async fn run(self, _rx: SinkRx) {}
}
