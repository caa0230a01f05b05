//! Configuration: the TOML file, its defaults, environment overrides and secrets.
//!
//! `Config::parse` is pure (text in, config or an error naming the key out);
//! `Config::load` adds the file, the environment and `secret_file`s. Unknown keys are
//! errors, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sink::SinkConfig;

/// Where `pbxtap run` looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/pbxtap/pbxtap.toml";

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Appliance name carried in every event.
    pub host: String,
    pub ami: AmiConfig,
    pub buffers: BuffersConfig,
    /// Parsed on their own by `SinkConfig::from_toml`, so errors name keys inside a sink.
    #[serde(skip)]
    pub sinks: Vec<SinkConfig>,
    pub watchdog: WatchdogConfig,
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: default_host(),
            ami: AmiConfig::default(),
            buffers: BuffersConfig::default(),
            sinks: vec![SinkConfig::Stdout(Default::default())],
            watchdog: WatchdogConfig::default(),
            log: LogConfig::default(),
        }
    }
}

fn default_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "pbx".to_string())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmiConfig {
    /// `host:port` of Asterisk's manager interface.
    pub address: String,
    pub username: String,
    pub secret: Option<String>,
    /// File holding the secret (first line); relative paths are looked up in
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
    pub secret_file: Option<PathBuf>,
    /// `md5` (challenge/response, the secret never crosses the wire) or `plain`.
    pub auth: AmiAuth,
    /// Event classes asked for at login (`Events:` mask).
    pub events: String,
    /// Seconds without an answer to Ping before the connection is dropped and redialled.
    pub ping_timeout_secs: u64,
    /// First reconnect delay in milliseconds; doubles up to `reconnect_max_secs`, with jitter.
    pub reconnect_min_ms: u64,
    pub reconnect_max_secs: u64,
    /// Largest AMI message accepted; larger ones are skipped and counted.
    pub max_message_len: usize,
    /// Most headers in one AMI message; more and the message is skipped and counted.
    pub max_headers: usize,
}

impl Default for AmiConfig {
    fn default() -> Self {
        AmiConfig {
            address: "127.0.0.1:5038".into(),
            username: "pbxtap".into(),
            secret: None,
            secret_file: None,
            auth: AmiAuth::Md5,
            events: "system,call,agent,user,cdr".into(),
            ping_timeout_secs: 5,
            reconnect_min_ms: 500,
            reconnect_max_secs: 30,
            max_message_len: 16 * 1024,
            max_headers: 128,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmiAuth {
    Md5,
    Plain,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuffersConfig {
    /// Events held per sink while it is slow or down.
    pub per_sink: usize,
    /// Seconds the sinks get at shutdown to deliver what their rings still hold.
    pub drain_secs: u64,
}

/// Largest `buffers.per_sink` accepted. An event takes about 1.4 KiB in the ring, so this
/// caps the rings at about 90 MiB: more than any appliance should spend on them.
pub const MAX_PER_SINK: usize = 65_536;

impl Default for BuffersConfig {
    fn default() -> Self {
        BuffersConfig {
            per_sink: crate::bus::DEFAULT_PER_SINK,
            drain_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogConfig {
    /// Asterisk's pidfile; when missing, the process is looked up in /proc by name.
    pub pidfile: PathBuf,
    /// Seconds between AMI Pings (also the keepalive of the AMI connection).
    pub ping_interval_secs: u64,
    /// Command run to restart Asterisk after repeated down checks; empty: never.
    pub restart_command: String,
    /// Watch the Asterisk process and AMI health at all.
    pub enabled: bool,
    /// Process name looked up in /proc when the pidfile is missing; empty: never look.
    /// With neither a pidfile nor a name, AMI health alone decides up/down.
    pub process_name: String,
    /// Seconds between health checks.
    pub check_interval_secs: u64,
    /// AMI Ping round trip above which Asterisk is degraded, in milliseconds.
    pub max_ping_ms: u32,
    /// Resident memory above which Asterisk is degraded, in MiB; 0: no limit.
    pub max_rss_mib: u64,
    /// Open file descriptors above which Asterisk is degraded; 0: 90% of Asterisk's own
    /// open-files limit.
    pub max_fds: u32,
    /// Consecutive down checks before `restart_command` runs; 0: never restart.
    pub restart_after: u32,
    /// Least time between two runs of `restart_command`, in seconds.
    pub min_restart_interval_secs: u64,
    /// Seconds a sink may leave waiting events untouched before it counts as stuck and
    /// systemd's WATCHDOG=1 pings stop; 0: sinks are not watched.
    pub stall_secs: u64,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            pidfile: "/var/run/asterisk/asterisk.pid".into(),
            ping_interval_secs: 5,
            restart_command: String::new(),
            enabled: true,
            process_name: "asterisk".into(),
            check_interval_secs: 5,
            max_ping_ms: 1000,
            max_rss_mib: 0,
            max_fds: 0,
            restart_after: 3,
            min_restart_interval_secs: 300,
            stall_secs: 300,
        }
    }
}

impl WatchdogConfig {
    /// Checks the `[watchdog]` table, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.check_interval_secs) {
            return Err(ConfigError::new(
                "watchdog.check_interval_secs",
                "must be between 1 and 3600",
            ));
        }
        if self.max_ping_ms == 0 {
            return Err(ConfigError::new(
                "watchdog.max_ping_ms",
                "must be at least 1",
            ));
        }
        if !self.restart_command.trim().is_empty() {
            if self.restart_after == 0 {
                return Err(ConfigError::new(
                    "watchdog.restart_after",
                    "is 0, so restart_command would never run: set it to at least 1, or empty restart_command",
                ));
            }
            if self.min_restart_interval_secs == 0 {
                return Err(ConfigError::new(
                    "watchdog.min_restart_interval_secs",
                    "must be at least 1 (restarting Asterisk in a tight loop helps nobody)",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Parses TOML text. Errors name the key: `sinks[1].type: unknown variant ...`.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e| toml_error("(file)", e))?;
        let sinks = table.remove("sinks");
        let mut cfg: Config = deserialize_at("", toml::Value::Table(table))?;
        match sinks {
            None => {}
            Some(toml::Value::Array(list)) => {
                cfg.sinks = list
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| SinkConfig::from_toml(&format!("sinks[{i}]"), v))
                    .collect::<Result<_, _>>()?;
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "sinks",
                    "must be a list of tables, each written `[[sinks]]` with a `type`",
                ))
            }
        }
        Ok(cfg)
    }

    /// Reads and parses the file at `path`, applies environment overrides from `env`,
    /// reads secret files and validates.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path.display().to_string(),
                format!("cannot read the config file: {e}"),
            )
        })?;
        Config::from_text(&text, env)
    }

    /// `parse`, then environment overrides, secrets and validation.
    pub fn from_text(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut cfg = Config::parse(text)?;
        cfg.apply_env(env)?;
        cfg.resolve_secrets(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Environment overrides: `PBXTAP_HOST`, `PBXTAP_AMI_ADDRESS`, `PBXTAP_AMI_USERNAME`,
    /// `PBXTAP_AMI_SECRET`, `PBXTAP_BUFFERS_PER_SINK`, `PBXTAP_LOG_LEVEL`, and Routr's
    /// `NATS_PUBLISHER_*` (see `sink::nats`).
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("PBXTAP_HOST") {
            self.host = v;
        }
        if let Some(v) = env("PBXTAP_AMI_ADDRESS") {
            self.ami.address = v;
        }
        if let Some(v) = env("PBXTAP_AMI_USERNAME") {
            self.ami.username = v;
        }
        if let Some(v) = env("PBXTAP_AMI_SECRET") {
            self.ami.secret = Some(v);
            self.ami.secret_file = None;
        }
        if let Some(v) = env("PBXTAP_BUFFERS_PER_SINK") {
            self.buffers.per_sink = v.parse().map_err(|_| {
                ConfigError::new(
                    "PBXTAP_BUFFERS_PER_SINK",
                    format!("`{v}` is not a whole number of events"),
                )
            })?;
        }
        if let Some(v) = env("PBXTAP_LOG_LEVEL") {
            self.log.level = v;
        }
        crate::sink::apply_env(&mut self.sinks, env)
    }

    /// Replaces every `secret_file` by the secret it holds.
    pub fn resolve_secrets(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(file) = self.ami.secret_file.take() {
            self.ami.secret = Some(read_secret_file("ami.secret_file", &file, env)?);
        }
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            sink.resolve_secrets(&format!("sinks[{i}]"), env)?;
        }
        Ok(())
    }

    /// Checks values that parse but cannot work, naming the key and what to do.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.host.is_empty() || self.host.len() > crate::event::TEXT_LEN {
            return Err(ConfigError::new(
                "host",
                format!(
                    "must be 1 to {} bytes (it is carried in every event)",
                    crate::event::TEXT_LEN
                ),
            ));
        }
        validate_host_port("ami.address", &self.ami.address)?;
        if self.ami.username.is_empty() {
            return Err(ConfigError::new("ami.username", "must not be empty"));
        }
        match &self.ami.secret {
            None => {
                return Err(ConfigError::new(
                    "ami.secret",
                    "missing: set ami.secret, or ami.secret_file to a file holding it",
                ))
            }
            Some(s) if s.is_empty() => {
                return Err(ConfigError::new("ami.secret", "is empty"));
            }
            _ => {}
        }
        if self.ami.ping_timeout_secs == 0 {
            return Err(ConfigError::new(
                "ami.ping_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.ami.reconnect_min_ms == 0
            || self.ami.reconnect_max_secs * 1000 < self.ami.reconnect_min_ms
        {
            return Err(ConfigError::new(
                "ami.reconnect_min_ms",
                "must be at least 1 and not above ami.reconnect_max_secs",
            ));
        }
        if !(512..=1024 * 1024).contains(&self.ami.max_message_len) {
            return Err(ConfigError::new(
                "ami.max_message_len",
                "must be between 512 and 1048576 bytes",
            ));
        }
        if !(8..=4096).contains(&self.ami.max_headers) {
            return Err(ConfigError::new(
                "ami.max_headers",
                "must be between 8 and 4096",
            ));
        }
        if self.buffers.per_sink == 0 || self.buffers.per_sink > MAX_PER_SINK {
            return Err(ConfigError::new(
                "buffers.per_sink",
                format!("must be between 1 and {MAX_PER_SINK} events"),
            ));
        }
        if self.watchdog.ping_interval_secs == 0 {
            return Err(ConfigError::new(
                "watchdog.ping_interval_secs",
                "must be at least 1",
            ));
        }
        self.watchdog.validate()?;
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return Err(ConfigError::new(
                "log.level",
                format!(
                    "`{}` is not one of error, warn, info, debug, trace",
                    self.log.level
                ),
            ));
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.validate(&format!("sinks[{i}]"))?;
        }
        Ok(())
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

fn toml_error(key: &str, e: toml::de::Error) -> ConfigError {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const MINIMAL: &str = "[ami]\nsecret = \"s\"\n";

    #[test]
    fn defaults_fill_everything_but_the_secret() {
        let cfg = Config::from_text(MINIMAL, &no_env).unwrap();
        assert_eq!(cfg.ami.address, "127.0.0.1:5038");
        assert_eq!(cfg.buffers.per_sink, 1024);
        assert!(matches!(cfg.sinks[..], [SinkConfig::Stdout(_)]));
    }

    #[test]
    fn missing_secret_names_the_key() {
        let e = Config::from_text("host = \"pbx1\"\n", &no_env).unwrap_err();
        assert_eq!(e.key, "ami.secret");
        assert!(e.to_string().contains("secret_file"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("[ami]\nadress = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "ami.adress");
        assert!(e.message.contains("adress"), "{e}");
    }

    #[test]
    fn unknown_sink_type_names_the_sink() {
        let e =
            Config::parse("[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"ftp\"\n").unwrap_err();
        assert_eq!(e.key, "sinks[1].type");
        assert!(e.message.contains("ftp"), "{e}");
    }

    #[test]
    fn keys_inside_a_sink_are_named() {
        let e = Config::parse("[[sinks]]\ntype = \"nats\"\njetstream = \"yes\"\n").unwrap_err();
        assert_eq!(e.key, "sinks[0].jetstream");
        assert!(e.message.contains("bool"), "{e}");
        let e = Config::parse(
            "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"webhook\"\nulr = \"x\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "sinks[1].ulr");
        let e = Config::parse("[[sinks]]\nurl = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "sinks[0].type");
        assert!(e.message.contains("missing"), "{e}");
        let e = Config::parse("sinks = 3\n").unwrap_err();
        assert_eq!(e.key, "sinks");
    }

    #[test]
    fn bad_address_is_named() {
        for bad in [
            "localhost",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            ":5038",
            "a b:1",
        ] {
            let text = format!("[ami]\nsecret = \"s\"\naddress = \"{bad}\"\n");
            let e = Config::from_text(&text, &no_env).unwrap_err();
            assert_eq!(e.key, "ami.address", "{bad}: {e}");
        }
        for good in ["127.0.0.1:5038", "pbx.local:5038", "[::1]:5038"] {
            validate_host_port("k", good).unwrap();
        }
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = Config::parse("[buffers]\nper_sink = \"many\"\n").unwrap_err();
        assert_eq!(e.key, "buffers.per_sink");
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = |k: &str| match k {
            "PBXTAP_AMI_ADDRESS" => Some("10.0.0.1:5038".to_string()),
            "PBXTAP_BUFFERS_PER_SINK" => Some("16".to_string()),
            _ => None,
        };
        let cfg = Config::from_text(MINIMAL, &env).unwrap();
        assert_eq!(cfg.ami.address, "10.0.0.1:5038");
        assert_eq!(cfg.buffers.per_sink, 16);
        let env = |k: &str| (k == "PBXTAP_BUFFERS_PER_SINK").then(|| "lots".to_string());
        let e = Config::from_text(MINIMAL, &env).unwrap_err();
        assert_eq!(e.key, "PBXTAP_BUFFERS_PER_SINK");
    }

    #[test]
    fn secret_file_is_read_and_credentials_directory_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ami.secret"), "s3cret\n").unwrap();
        let text = "[ami]\nsecret_file = \"ami.secret\"\n";
        let d = dir.path().display().to_string();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
        let cfg = Config::from_text(text, &env).unwrap();
        assert_eq!(cfg.ami.secret.as_deref(), Some("s3cret"));
        let e =
            Config::from_text("[ami]\nsecret_file = \"/nonexistent/x\"\n", &no_env).unwrap_err();
        assert_eq!(e.key, "ami.secret_file");
        assert!(e.message.contains("/nonexistent/x"), "{e}");
    }

    #[test]
    fn bad_watchdog_values_are_named() {
        for (text, key) in [
            ("check_interval_secs = 0", "watchdog.check_interval_secs"),
            ("max_ping_ms = 0", "watchdog.max_ping_ms"),
            (
                "restart_command = \"true\"\nrestart_after = 0",
                "watchdog.restart_after",
            ),
            (
                "restart_command = \"true\"\nmin_restart_interval_secs = 0",
                "watchdog.min_restart_interval_secs",
            ),
        ] {
            let text = format!("[ami]\nsecret = \"s\"\n[watchdog]\n{text}\n");
            let e = Config::from_text(&text, &no_env).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
        let e = Config::parse("[watchdog]\nrestart_afterr = 2\n").unwrap_err();
        assert_eq!(e.key, "watchdog.restart_afterr");
        let cfg = Config::from_text(MINIMAL, &no_env).unwrap();
        assert_eq!(cfg.watchdog.restart_after, 3);
        assert_eq!(cfg.watchdog.check_interval_secs, 5);
    }

    #[test]
    fn bad_log_level_and_buffer_size_are_named() {
        let e =
            Config::from_text("[ami]\nsecret=\"s\"\n[log]\nlevel=\"loud\"\n", &no_env).unwrap_err();
        assert_eq!(e.key, "log.level");
        let e =
            Config::from_text("[ami]\nsecret=\"s\"\n[buffers]\nper_sink=0\n", &no_env).unwrap_err();
        assert_eq!(e.key, "buffers.per_sink");
    }
}
