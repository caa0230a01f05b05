//! Settings: the error and key helpers every part's settings use. A leaf: it imports
//! nothing of pbxtap, so each part (the AMI client, the bus, each sink, the watchdog,
//! logging) can own its settings type and `config` can compose them on top.

use std::path::{Path, PathBuf};

/// A config problem, naming the key (`sinks[2].url`) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Deserializes `value`, naming the failing key below `prefix` (`sinks[0]` + `.qos`).
pub fn deserialize_at<T: serde::de::DeserializeOwned>(
    prefix: &str,
    value: toml::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let key = match (prefix, path.as_str()) {
            (p, "" | ".") => p.to_string(),
            ("", path) => path.to_string(),
            (p, path) if path.starts_with('[') => format!("{p}{path}"),
            (p, path) => format!("{p}.{path}"),
        };
        toml_error(&key, e.into_inner())
    })
}

pub fn toml_error(key: &str, e: toml::de::Error) -> ConfigError {
    let mut message = e.message().to_string();
    if let Some(span) = e.span() {
        message.push_str(&format!(" (at byte {})", span.start));
    }
    ConfigError::new(
        if key.is_empty() || key == "." {
            "(file)"
        } else {
            key
        },
        message,
    )
}

/// Checks a `host:port` address: a port number after the last colon, a host before it.
pub fn validate_host_port(key: &str, value: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        ConfigError::new(
            key,
            format!(
                "`{value}` is not a valid address: {why} (expected host:port, e.g. 127.0.0.1:5038)"
            ),
        )
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() || host.trim_matches(['[', ']']).is_empty() {
        return Err(bad("no host"));
    }
    if host.contains(char::is_whitespace) || host.contains('/') {
        return Err(bad("the host has spaces or slashes"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad("the port must be a number from 1 to 65535")),
    }
}

/// Reads a secret from a file: its first line, trimmed. A relative path is looked up in
/// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`) when that is set.
pub fn read_secret_file(
    key: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let full = match env("CREDENTIALS_DIRECTORY") {
        Some(dir) if path.is_relative() => Path::new(&dir).join(path),
        _ => path.to_path_buf(),
    };
    let text = std::fs::read_to_string(&full)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", full.display())))?;
    let secret = text.lines().next().unwrap_or("").trim().to_string();
    if secret.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{} is empty", full.display()),
        ));
    }
    Ok(secret)
}

/// Resolves an optional inline secret / secret file pair into the secret, if any.
pub fn resolve_secret(
    key: &str,
    inline: &mut Option<String>,
    file: &mut Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    if let Some(f) = file.take() {
        *inline = Some(read_secret_file(key, &f, env)?);
    }
    Ok(())
}
