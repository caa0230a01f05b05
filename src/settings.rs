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

/// In a sink's subject or topic, what stands for the appliance's identity (the top-level
/// `host`), so that a fleet's boxes publish under their own name: `fleet.{host}`.
pub const HOST_PLACEHOLDER: &str = "{host}";

/// `template` with every [`HOST_PLACEHOLDER`] replaced by `host`.
pub fn with_host(template: &str, host: &str) -> String {
    template.replace(HOST_PLACEHOLDER, host)
}

/// Whether `name` is usable as an appliance identity: 1 to `max` bytes of ASCII letters,
/// digits, `-` and `_`, so that it is one NATS subject token, one MQTT topic level and one
/// part of a dotted event id without quoting.
pub fn is_identity(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len()) && name.chars().all(identity_char)
}

/// Whether an appliance identity may hold `c`: an ASCII letter or digit, `-` or `_`.
pub fn identity_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
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

/// Largest PEM file read (a CA bundle, a certificate chain, a key) and NATS `.creds`
/// file.
pub const MAX_PEM_FILE: u64 = 1024 * 1024;

/// Largest secret file read (`secret_file`, `authkey_file`, `password_file`, ...): a
/// secret is a line, and a larger file is a mistake, refused before it is read.
pub const MAX_SECRET_FILE: u64 = 4096;

/// Reads the file at `path`, at most `max` bytes: a larger file is refused without being
/// read whole, whatever its size or kind (a FIFO, a device, a file still growing). `Err`
/// says why, without the path.
pub fn read_limited(path: &Path, max: u64) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let too_large = || format!("it is larger than {max} bytes");
    if file.metadata().is_ok_and(|m| m.is_file() && m.len() > max) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())
}

/// [`read_limited`], its errors naming `key` and the path.
pub fn read_bounded(key: &str, path: &Path, max: u64) -> Result<String, ConfigError> {
    read_limited(path, max)
        .map_err(|why| ConfigError::new(key, format!("cannot read {}: {why}", path.display())))
}

/// Refuses a secret or name that would break the line it is written into (an AMI
/// action, an HTTP header): CR, LF or NUL in it.
pub fn check_one_line(key: &str, value: &str) -> Result<(), ConfigError> {
    match value.chars().find(|c| matches!(c, '\r' | '\n' | '\0')) {
        None => Ok(()),
        Some(c) => Err(ConfigError::new(
            key,
            format!(
                "holds a {} character: it must be one line of text",
                match c {
                    '\r' => "carriage return (CR)",
                    '\n' => "line feed (LF)",
                    _ => "NUL",
                }
            ),
        )),
    }
}

/// Where a credential file is: a relative `path` in `$CREDENTIALS_DIRECTORY` (systemd
/// `LoadCredential=`) when that is set, else `path` as written.
pub fn credential_path(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match env("CREDENTIALS_DIRECTORY") {
        Some(dir) if path.is_relative() => Path::new(&dir).join(path),
        _ => path.to_path_buf(),
    }
}

/// Reads a secret from a file (at most [`MAX_SECRET_FILE`] bytes): its text, trimmed,
/// which must be one line. A relative path is looked up in `$CREDENTIALS_DIRECTORY`
/// (systemd `LoadCredential=`) when that is set.
pub fn read_secret_file(
    key: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let full = credential_path(path, env);
    let text = read_bounded(key, &full, MAX_SECRET_FILE)?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{} is empty", full.display()),
        ));
    }
    check_one_line(key, secret)
        .map_err(|e| ConfigError::new(key, format!("{}: {}", full.display(), e.message)))?;
    Ok(secret.to_string())
}

/// Resolves an optional inline secret / secret file pair (`file_key` names the file,
/// `authkey_file`; the inline key is the same without `_file`) into the secret, if any,
/// refusing one that is not a single line.
pub fn resolve_secret(
    file_key: &str,
    inline: &mut Option<String>,
    file: &mut Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    if let Some(f) = file.take() {
        *inline = Some(read_secret_file(file_key, &f, env)?);
    } else if let Some(value) = inline {
        check_one_line(file_key.strip_suffix("_file").unwrap_or(file_key), value)?;
    }
    Ok(())
}
