//! Configuration: the TOML file, its defaults, environment overrides and secrets.
//!
//! `Config::parse` is pure (text in, config or an error naming the key out);
//! `Config::load` adds the file, the environment and `secret_file`s. Unknown keys are
//! errors, so a typo never silently falls back to a default.
//!
//! Config on top: each part owns its settings type (`ami::config::AmiConfig`,
//! `bus::BuffersConfig`, `watchdog::config::WatchdogConfig`, `logging::LogConfig`, each
//! sink's `XSinkConfig`) and checks it; this module only composes them. The shared error
//! and key helpers are in `settings`, which imports nothing, so nothing imports `config`
//! but `app` and `main`.

use std::path::Path;

use serde::Deserialize;

use crate::ami::config::AmiConfig;
use crate::bus::BuffersConfig;
use crate::logging::LogConfig;
use crate::metrics::MetricsConfig;
use crate::normalize::NormalizeConfig;
use crate::settings::{
    deserialize_at, identity_char, is_identity, read_limited, resolve_secret, toml_error,
    ConfigError,
};
use crate::sink::SinkConfig;
use crate::watchdog::config::WatchdogConfig;

/// Largest config file read; a larger one is refused unread.
pub const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// Where `pbxtap run` looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/pbxtap/pbxtap.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The appliance's identity: carried in every event (`host`, and the event id
    /// `<host>.<boot>.<seq>`), and what `{host}` in a sink's subject or topic stands for.
    /// ASCII letters, digits, `-` and `_`; default: the machine's short host name.
    pub host: String,
    pub ami: AmiConfig,
    pub buffers: BuffersConfig,
    /// Parsed on their own by `SinkConfig::from_toml`, so errors name keys inside a sink.
    #[serde(skip)]
    pub sinks: Vec<SinkConfig>,
    pub watchdog: WatchdogConfig,
    pub log: LogConfig,
    pub normalize: NormalizeConfig,
    /// `[metrics]`: the Prometheus endpoint, off by default.
    pub metrics: MetricsConfig,
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
            normalize: NormalizeConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

fn default_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| identity_of_hostname(s.trim()))
        .ok()
        .filter(|s| is_identity(s, crate::event::TEXT_LEN))
        .unwrap_or_else(|| "pbx".to_string())
}

/// The identity a host name gives: its first label (`pbx1` of `pbx1.example.com`), with
/// any byte an identity cannot hold written as `-`, cut to an event's text length.
fn identity_of_hostname(name: &str) -> String {
    let label = name.split('.').next().unwrap_or_default();
    let mut id: String = label
        .chars()
        .map(|c| if identity_char(c) { c } else { '-' })
        .collect();
    id.truncate(crate::event::TEXT_LEN);
    id
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
        let text = read_limited(path, MAX_CONFIG_FILE).map_err(|why| {
            ConfigError::new(
                path.display().to_string(),
                format!("cannot read the config file: {why}"),
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
        resolve_secret(
            "ami.secret_file",
            &mut self.ami.secret,
            &mut self.ami.secret_file,
            env,
        )?;
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            sink.resolve_secrets(&format!("sinks[{i}]"), env)?;
        }
        Ok(())
    }

    /// Checks values that parse but cannot work, naming the key and what to do.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_identity(&self.host, crate::event::TEXT_LEN) {
            return Err(ConfigError::new(
                "host",
                format!(
                    "`{}` cannot name this appliance: use 1 to {} ASCII letters, digits, `-` or `_` (it is one token of NATS subjects, one MQTT topic level and part of every event id; dots would split it)",
                    self.host,
                    crate::event::TEXT_LEN
                ),
            ));
        }
        self.ami.validate()?;
        self.buffers.validate()?;
        self.watchdog.validate()?;
        self.log.validate()?;
        self.normalize.validate()?;
        self.metrics.validate()?;
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.validate(&format!("sinks[{i}]"))?;
        }
        // One stdout: a second would print every event again, the same line twice on the
        // same stream.
        let mut stdout = self
            .sinks
            .iter()
            .enumerate()
            .filter(|(_, s)| s.kind() == "stdout");
        if let (Some((first, _)), Some((second, _))) = (stdout.next(), stdout.next()) {
            return Err(ConfigError::new(
                format!("sinks[{second}].type"),
                format!("a second stdout sink (sinks[{first}] is one): every event would be printed twice on the same stream; keep one"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::validate_host_port;

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
    fn host_is_one_subject_token() {
        for good in ["pbx1", "site-7_b", &"a".repeat(64)] {
            let text = format!("host = \"{good}\"\n{MINIMAL}");
            assert_eq!(Config::from_text(&text, &no_env).unwrap().host, good);
        }
        for bad in [
            "",
            "pbx1.example.com",
            "a b",
            "pbx*",
            "pbx>",
            "x/y",
            "zoë",
            &"a".repeat(65),
        ] {
            let text = format!("host = \"{bad}\"\n{MINIMAL}");
            let e = Config::from_text(&text, &no_env).unwrap_err();
            assert_eq!(e.key, "host", "{bad}");
            assert!(e.message.contains("letters, digits"), "{e}");
        }
        let env = |k: &str| (k == "PBXTAP_HOST").then(|| "a.b".to_string());
        assert_eq!(Config::from_text(MINIMAL, &env).unwrap_err().key, "host");
        assert!(is_identity(&default_host(), crate::event::TEXT_LEN));
        assert_eq!(identity_of_hostname("pbx1.example.com"), "pbx1");
        assert_eq!(identity_of_hostname("Büro 2"), "B-ro-2");
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
        let e = Config::from_text("[ami]\nsecret = \"s\"\nlag_warn_ms = 3600001\n", &no_env)
            .unwrap_err();
        assert_eq!(e.key, "ami.lag_warn_ms", "{e}");
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
    fn a_secret_file_is_read_bounded_and_must_be_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let large = vec![b'k'; crate::settings::MAX_SECRET_FILE as usize + 1];
        std::fs::write(path("large"), &large).unwrap();
        std::fs::write(path("two-lines"), "s3cret\nAction: Originate\n").unwrap();
        std::fs::write(path("nul"), "s3\0cret\n").unwrap();
        std::fs::write(path("crlf"), "s3cret\r\n").unwrap();
        // A FIFO never ends: only the bound stops the read (a writer feeds it forever).
        let fifo = path("fifo");
        nix::unistd::mkfifo(fifo.as_str(), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let feeder = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                while w.write_all(&[b'x'; 4096]).is_ok() {}
            })
        };
        for (file, why) in [
            ("large", "larger than 4096 bytes"),
            ("fifo", "larger than 4096 bytes"),
            ("two-lines", "line feed (LF)"),
            ("nul", "NUL"),
        ] {
            let text = format!("[ami]\nsecret_file = \"{}\"\n", path(file));
            let e = Config::from_text(&text, &no_env).unwrap_err();
            assert_eq!(e.key, "ami.secret_file", "{file}: {e}");
            assert!(e.message.contains(why), "{file}: {e}");
        }
        feeder.join().unwrap();
        let text = format!("[ami]\nsecret_file = \"{}\"\n", path("crlf"));
        let cfg = Config::from_text(&text, &no_env).unwrap();
        assert_eq!(
            cfg.ami.secret.as_deref(),
            Some("s3cret"),
            "the line end is not the secret"
        );
    }

    #[test]
    fn bad_health_thresholds_are_named() {
        for (text, key) in [
            ("login_failures = 10001", "normalize.login_failures"),
            ("login_window_secs = 0", "normalize.login_window_secs"),
            ("mass_unregister = 1001", "normalize.mass_unregister"),
            ("mass_unregister_secs = 0", "normalize.mass_unregister_secs"),
            ("asr_calls = 1001", "normalize.asr_calls"),
            ("asr_min_percent = 0", "normalize.asr_min_percent"),
            ("asr_min_percent = 101", "normalize.asr_min_percent"),
            ("asr_min_pct = 30", "normalize.asr_min_pct"),
        ] {
            let e =
                Config::from_text(&format!("{MINIMAL}[normalize]\n{text}\n"), &no_env).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn a_line_break_in_what_the_login_carries_is_refused() {
        for (text, key) in [
            (
                "username = \"tap\\r\\nAction: Originate\"\nsecret = \"s\"",
                "ami.username",
            ),
            ("secret = \"s\\nAction: Originate\"", "ami.secret"),
            ("secret = \"s\\u0000\"", "ami.secret"),
            ("secret = \"s\"\nevents = \"on\\r\"", "ami.events"),
        ] {
            let e = Config::from_text(&format!("[ami]\n{text}\n"), &no_env).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.message.contains("one line"), "{text}: {e}");
        }
        let env = |k: &str| (k == "PBXTAP_AMI_SECRET").then(|| "s\r\nAction: Logoff".to_string());
        let e = Config::from_text("", &env).unwrap_err();
        assert_eq!(e.key, "ami.secret");
    }

    #[test]
    fn a_second_stdout_sink_is_refused() {
        let text = "[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"stdout\"\n\
                    [[sinks]]\ntype = \"stdout\"\n";
        let e = Config::from_text(text, &no_env).unwrap_err();
        assert_eq!(e.key, "sinks[1].type");
        assert!(e.message.contains("sinks[0] is one"), "{e}");
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
