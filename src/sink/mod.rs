//! Sinks: where events go. Each sink has the same shape: a config struct (`XSinkConfig`),
//! a constructor that validates it (`XSink::new`), and `run(self, rx)`, which delivers
//! events from its ring until the bus closes and the ring is drained.
//!
//! A new sink is a folder `sink/<name>/` with `config.rs` (its `[[sinks]]` keys, serde
//! with `deny_unknown_fields`, `validate(key)` and `resolve_secrets` naming the key; only
//! `crate::settings` for the shared helpers) and `mod.rs` (`XSink::new`, `run`), plus files
//! for its link or wire details; a variant in `SinkConfig`, `SinkError` and `start` below.
//! It reuses, never rewrites: `crate::backoff::Backoff` for reconnects and retries,
//! `logging::LogLimit` for repeated failures, `health::{LinkHealth, HealthReporter}` for
//! `system.sink_down`/`sink_up`, and a `dialect` for the bytes. It holds at most a fixed
//! window beyond its bus ring, documented as a named constant, and never blocks the tap.

pub mod filter;
pub mod health;
pub mod mqtt;
pub mod nats;
pub mod stdout;
pub mod webhook;
pub mod websocket;

use tokio::task::JoinHandle;

use crate::bus::{Bus, Publisher};
use crate::settings::{deserialize_at, ConfigError};

/// One `[[sinks]]` table, chosen by its `type`.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // parsed once at start; a few hundred bytes per sink
pub enum SinkConfig {
    Nats(nats::NatsSinkConfig),
    Mqtt(mqtt::MqttSinkConfig),
    Webhook(webhook::WebhookSinkConfig),
    Websocket(websocket::WebsocketSinkConfig),
    Stdout(stdout::StdoutSinkConfig),
}

/// The sink types, as written in `type = "..."`.
pub const KINDS: &str = "nats, mqtt, webhook, websocket, stdout";

impl SinkConfig {
    /// Parses one `[[sinks]]` table found at `key` (`sinks[2]`); errors name the key inside
    /// it (`sinks[2].qos`), which serde's tagged enums would lose.
    pub fn from_toml(key: &str, value: toml::Value) -> Result<SinkConfig, ConfigError> {
        let toml::Value::Table(mut table) = value else {
            return Err(ConfigError::new(
                key,
                "must be a table, written `[[sinks]]`",
            ));
        };
        let type_key = format!("{key}.type");
        let kind = match table.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            Some(other) => {
                return Err(ConfigError::new(
                    type_key,
                    format!(
                        "must be a string, one of {KINDS}; found {}",
                        other.type_str()
                    ),
                ))
            }
            None => {
                return Err(ConfigError::new(
                    type_key,
                    format!("missing: every sink needs a type, one of {KINDS}"),
                ))
            }
        };
        let rest = toml::Value::Table(table);
        Ok(match kind.as_str() {
            "nats" => SinkConfig::Nats(deserialize_at(key, rest)?),
            "mqtt" => SinkConfig::Mqtt(deserialize_at(key, rest)?),
            "webhook" => SinkConfig::Webhook(deserialize_at(key, rest)?),
            "websocket" => SinkConfig::Websocket(deserialize_at(key, rest)?),
            "stdout" => SinkConfig::Stdout(deserialize_at(key, rest)?),
            other => {
                return Err(ConfigError::new(
                    type_key,
                    format!("unknown sink type `{other}`: expected one of {KINDS}"),
                ))
            }
        })
    }

    /// The sink's type, as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Nats(_) => "nats",
            SinkConfig::Mqtt(_) => "mqtt",
            SinkConfig::Webhook(_) => "webhook",
            SinkConfig::Websocket(_) => "websocket",
            SinkConfig::Stdout(_) => "stdout",
        }
    }

    /// The address the sink listens on, for a sink that serves clients.
    pub fn listen_address(&self) -> Option<&str> {
        match self {
            SinkConfig::Websocket(c) => Some(c.listen()),
            _ => None,
        }
    }

    /// Checks the sink's settings; `key` is its place in the file (`sinks[2]`).
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        match self {
            SinkConfig::Nats(c) => c.validate(key),
            SinkConfig::Mqtt(c) => c.validate(key),
            SinkConfig::Webhook(c) => c.validate(key),
            SinkConfig::Websocket(c) => c.validate(key),
            SinkConfig::Stdout(_) => Ok(()),
        }
    }

    /// Replaces the sink's `*_file` secrets by their contents.
    pub fn resolve_secrets(
        &mut self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        match self {
            SinkConfig::Nats(c) => c.resolve_secrets(key, env),
            SinkConfig::Mqtt(c) => c.resolve_secrets(key, env),
            SinkConfig::Webhook(c) => c.resolve_secrets(key, env),
            SinkConfig::Websocket(c) => c.resolve_secrets(key, env),
            SinkConfig::Stdout(_) => Ok(()),
        }
    }
}

/// Environment variables that add or configure sinks (Routr's `NATS_PUBLISHER_*`).
pub fn apply_env(
    sinks: &mut Vec<SinkConfig>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    nats::apply_routr_env(sinks, env)
}

/// A sink that could not start.
#[derive(Debug, thiserror::Error)]
/// (The caller names the sink and its type: `sinks[0] (websocket): ...`.)
pub enum SinkError {
    #[error(transparent)]
    Nats(#[from] nats::NatsSinkError),
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttSinkError),
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookSinkError),
    #[error(transparent)]
    Websocket(#[from] websocket::WebsocketSinkError),
}

/// Subscribes the sink described by `cfg` to the bus and starts it on the runtime.
/// `index` is its place in the config, used to name it in logs and counters.
pub async fn start(cfg: &SinkConfig, index: usize, bus: &Bus) -> Result<JoinHandle<()>, SinkError> {
    let name = format!("{}#{index}", cfg.kind());
    let publisher: Publisher = bus.publisher();
    Ok(match cfg {
        SinkConfig::Stdout(c) => {
            let sink = stdout::StdoutSink::new(c, publisher);
            let rx = bus.subscribe(&name);
            tokio::spawn(sink.run(rx))
        }
        SinkConfig::Nats(c) => {
            let sink = nats::NatsSink::new(c, publisher).await?;
            let rx = bus.subscribe(&name);
            tokio::spawn(sink.run(rx))
        }
        SinkConfig::Mqtt(c) => {
            let sink = mqtt::MqttSink::new(c, publisher).await?;
            let rx = bus.subscribe(&name);
            tokio::spawn(sink.run(rx))
        }
        SinkConfig::Webhook(c) => {
            let sink = webhook::WebhookSink::new(c, publisher).await?;
            let rx = bus.subscribe(&name);
            tokio::spawn(sink.run(rx))
        }
        SinkConfig::Websocket(c) => {
            let sink = websocket::WebsocketSink::new(c, publisher).await?;
            let rx = bus.subscribe(&name);
            tokio::spawn(sink.run(rx))
        }
    })
}
