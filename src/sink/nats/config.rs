//! The NATS sink's settings: server, dialect, base subject, credentials, TLS and
//! JetStream, checked with the key named; and Routr's `NATS_PUBLISHER_*` variables.

use std::path::PathBuf;

use async_nats::{ConnectOptions, ServerAddr};
use serde::Deserialize;

use crate::settings::{read_bounded, resolve_secret, ConfigError, MAX_PEM_FILE};
use crate::sink::SinkConfig;

/// Longest base subject: the whole subject (`<base>.<class>.<event>`) stays under
/// [`SUBJECT_LEN`].
pub const MAX_BASE_SUBJECT_LEN: usize = 96;
/// Routr's defaults when only `NATS_PUBLISHER_ENABLED=true` is set.
pub const ROUTR_DEFAULT_SUBJECT: &str = "routr";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsDialect {
    /// Routr's subjects and payloads: call.started, call.ended, endpoint.registered only.
    Routr,
    /// Every event, native JSON, on `<base>.<class>.<event>`.
    Native,
}

impl NatsDialect {
    /// The dialect named `name` in the config; `key` names it in the error.
    pub fn parse(key: &str, name: &str) -> Result<Self, ConfigError> {
        match name {
            "routr" => Ok(NatsDialect::Routr),
            "native" => Ok(NatsDialect::Native),
            _ => Err(ConfigError::new(
                key,
                format!("`{name}` is not a NATS dialect: use routr or native"),
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSinkConfig {
    /// `nats://host:port`, `tls://host:port`, or `host:port` (Routr's `nats:4222`).
    pub url: String,
    /// `routr` or `native`.
    pub dialect: String,
    /// Base subject: events go to `<subject>.call.started` and so on.
    pub subject: String,
    /// Connection name shown by the server (`nats server report connections`).
    pub name: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// NKey user seed (`SU...`).
    pub nkey: Option<String>,
    pub nkey_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// Require TLS even when the URL says `nats://`.
    pub tls: bool,
    /// PEM file of the CA(s) that signed the server's certificate, added to the system's.
    pub tls_ca_file: Option<PathBuf>,
    /// Publish with JetStream acknowledgements and retry until acked.
    pub jetstream: bool,
}

impl Default for NatsSinkConfig {
    fn default() -> Self {
        NatsSinkConfig {
            url: "nats://127.0.0.1:4222".into(),
            dialect: "routr".into(),
            subject: ROUTR_DEFAULT_SUBJECT.into(),
            name: "pbxtap".into(),
            user: None,
            password: None,
            password_file: None,
            token: None,
            token_file: None,
            nkey: None,
            nkey_file: None,
            creds_file: None,
            tls: false,
            tls_ca_file: None,
            jetstream: false,
        }
    }
}

/// Checks a NATS server address; `key` names it in the error.
pub(super) fn validate_url(key: &str, url: &str) -> Result<ServerAddr, ConfigError> {
    let addr: ServerAddr = url.parse().map_err(|e| {
        ConfigError::new(
            key,
            format!("`{url}` is not a NATS server address: {e} (expected nats://host:4222, tls://host:4222 or host:4222)"),
        )
    })?;
    let u = addr.clone().into_inner();
    if !matches!(u.scheme(), "nats" | "tls") {
        return Err(ConfigError::new(
            key,
            format!(
                "`{url}`: only nats:// and tls:// are supported, not {}://",
                u.scheme()
            ),
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(key, format!("`{url}` has no host")));
    }
    Ok(addr)
}

/// Checks a base subject: dot-separated tokens without spaces or wildcards.
fn validate_subject(key: &str, subject: &str) -> Result<(), ConfigError> {
    if subject.is_empty() || subject.len() > MAX_BASE_SUBJECT_LEN {
        return Err(ConfigError::new(
            key,
            format!("must be 1 to {MAX_BASE_SUBJECT_LEN} bytes"),
        ));
    }
    if subject
        .split('.')
        .any(|t| t.is_empty() || t.contains(|c: char| c.is_whitespace() || c == '*' || c == '>'))
    {
        return Err(ConfigError::new(
            key,
            format!("`{subject}` is not a subject: use dot-separated words without spaces, `*` or `>` (e.g. routr)"),
        ));
    }
    Ok(())
}

impl NatsSinkConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        validate_url(&format!("{key}.url"), &self.url)?;
        NatsDialect::parse(&format!("{key}.dialect"), &self.dialect)?;
        validate_subject(&format!("{key}.subject"), &self.subject)?;
        if self.name.is_empty() {
            return Err(ConfigError::new(format!("{key}.name"), "must not be empty"));
        }
        let methods = [
            ("user", self.user.is_some() || self.password.is_some()),
            ("token", self.token.is_some()),
            ("nkey", self.nkey.is_some()),
            ("creds_file", self.creds_file.is_some()),
        ];
        let set: Vec<&str> = methods.iter().filter(|m| m.1).map(|m| m.0).collect();
        if set.len() > 1 {
            return Err(ConfigError::new(
                format!("{key}.{}", set[1]),
                format!(
                    "only one way to log in may be set, but {} are",
                    set.join(" and ")
                ),
            ));
        }
        match (&self.user, &self.password) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    format!("{key}.password"),
                    "missing: user needs password (or password_file)",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    format!("{key}.user"),
                    "missing: password needs user",
                ))
            }
            _ => {}
        }
        if let Some(seed) = &self.nkey {
            if !seed.starts_with("SU") {
                return Err(ConfigError::new(
                    format!("{key}.nkey"),
                    "is not an NKey user seed (those start with SU)",
                ));
            }
        }
        if let Some(path) = &self.creds_file {
            let text = read_bounded(&format!("{key}.creds_file"), path, MAX_PEM_FILE)?;
            ConnectOptions::new().credentials(&text).map_err(|e| {
                ConfigError::new(
                    format!("{key}.creds_file"),
                    format!("{} is not a NATS .creds file: {e}", path.display()),
                )
            })?;
        }
        if let Some(path) = &self.tls_ca_file {
            let pem = read_bounded(&format!("{key}.tls_ca_file"), path, MAX_PEM_FILE)?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(ConfigError::new(
                    format!("{key}.tls_ca_file"),
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
        }
        Ok(())
    }

    /// Reads `password_file`, `token_file` and `nkey_file` into their secrets.
    pub fn resolve_secrets(
        &mut self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        resolve_secret(
            &format!("{key}.password_file"),
            &mut self.password,
            &mut self.password_file,
            env,
        )?;
        resolve_secret(
            &format!("{key}.token_file"),
            &mut self.token,
            &mut self.token_file,
            env,
        )?;
        resolve_secret(
            &format!("{key}.nkey_file"),
            &mut self.nkey,
            &mut self.nkey_file,
            env,
        )
    }
}

/// Routr's environment variables: `NATS_PUBLISHER_ENABLED=true` adds a routr-dialect NATS
/// sink (or configures the first one in the file), `NATS_PUBLISHER_URL` sets its server
/// (`nats:4222` works) and `NATS_PUBLISHER_SUBJECT` its base subject. As in Routr, only
/// `true` (any case) enables it, and the other two are ignored unless it is enabled.
pub fn apply_routr_env(
    sinks: &mut Vec<SinkConfig>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let enabled =
        env("NATS_PUBLISHER_ENABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !enabled {
        return Ok(());
    }
    let url = env("NATS_PUBLISHER_URL");
    if let Some(u) = &url {
        validate_url("NATS_PUBLISHER_URL", u)?;
    }
    let subject = env("NATS_PUBLISHER_SUBJECT");
    if let Some(s) = &subject {
        validate_subject("NATS_PUBLISHER_SUBJECT", s)?;
    }
    let existing = sinks.iter_mut().find_map(|s| match s {
        SinkConfig::Nats(c) if c.dialect == "routr" => Some(c),
        _ => None,
    });
    let cfg = match existing {
        Some(c) => c,
        None => {
            sinks.push(SinkConfig::Nats(NatsSinkConfig::default()));
            match sinks.last_mut() {
                Some(SinkConfig::Nats(c)) => c,
                _ => unreachable!("a NATS sink was just added"),
            }
        }
    };
    if let Some(u) = url {
        cfg.url = u;
    }
    if let Some(s) = subject {
        cfg.subject = s;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn sink(extra: &str) -> String {
        format!("[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"nats\"\n{extra}")
    }

    fn nats_of(cfg: &Config) -> Vec<&NatsSinkConfig> {
        cfg.sinks
            .iter()
            .filter_map(|s| match s {
                SinkConfig::Nats(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn err(extra: &str) -> ConfigError {
        Config::from_text(&sink(extra), &no_env).unwrap_err()
    }

    #[test]
    fn defaults_are_routrs() {
        let cfg = Config::from_text(&sink(""), &no_env).unwrap();
        let c = nats_of(&cfg)[0];
        assert_eq!(c.url, "nats://127.0.0.1:4222");
        assert_eq!((c.dialect.as_str(), c.subject.as_str()), ("routr", "routr"));
        assert!(!c.jetstream && !c.tls);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("url = \"http://x:4222\"", "sinks[0].url", "invalid scheme"),
            ("url = \"ws://x:4222\"", "sinks[0].url", "only nats://"),
            ("url = \"nats://\"", "sinks[0].url", "no host"),
            (
                "url = \"nats://a b:4222\"",
                "sinks[0].url",
                "not a NATS server address",
            ),
            ("subject = \"a..b\"", "sinks[0].subject", "not a subject"),
            ("subject = \"a.>\"", "sinks[0].subject", "not a subject"),
            ("subject = \"\"", "sinks[0].subject", "1 to"),
            (
                "dialect = \"enswitch\"",
                "sinks[0].dialect",
                "not a NATS dialect",
            ),
            ("name = \"\"", "sinks[0].name", "empty"),
            ("user = \"u\"", "sinks[0].password", "needs password"),
            ("password = \"p\"", "sinks[0].user", "needs user"),
            (
                "user = \"u\"\npassword = \"p\"\ntoken = \"t\"",
                "sinks[0].token",
                "only one way",
            ),
            ("nkey = \"UABC\"", "sinks[0].nkey", "seed"),
            (
                "creds_file = \"/nonexistent/x.creds\"",
                "sinks[0].creds_file",
                "/nonexistent/x.creds",
            ),
            (
                "tls_ca_file = \"/nonexistent/ca.pem\"",
                "sinks[0].tls_ca_file",
                "cannot read",
            ),
            (
                "token_file = \"/nonexistent/token\"",
                "sinks[0].token_file",
                "/nonexistent/token",
            ),
            (
                "subjet = \"x\"",
                "sinks[0].subjet",
                "unknown field `subjet`",
            ),
        ];
        for (extra, key, words) in cases {
            let e = err(extra);
            assert_eq!(e.key, key, "{extra}: {e}");
            assert!(e.message.contains(words), "{extra}: {e}");
        }
    }

    #[test]
    fn files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let text = format!("user = \"u\"\npassword_file = \"{}\"", pw.display());
        let cfg = Config::from_text(&sink(&text), &no_env).unwrap();
        assert_eq!(nats_of(&cfg)[0].password.as_deref(), Some("s3cret"));

        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = err(&format!("tls_ca_file = \"{}\"", not_pem.display()));
        assert_eq!(e.key, "sinks[0].tls_ca_file");
        assert!(e.message.contains("no PEM certificate"), "{e}");

        let bad_creds = dir.path().join("x.creds");
        std::fs::write(&bad_creds, "not creds").unwrap();
        let e = err(&format!("creds_file = \"{}\"", bad_creds.display()));
        assert_eq!(e.key, "sinks[0].creds_file");
        assert!(e.message.contains("not a NATS .creds file"), "{e}");
    }

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn routrs_environment_adds_a_routr_sink() {
        let env = env_of(&[
            ("NATS_PUBLISHER_ENABLED", "TRUE"),
            ("NATS_PUBLISHER_URL", "nats:4222"),
            ("NATS_PUBLISHER_SUBJECT", "myserver"),
        ]);
        let cfg = Config::from_text("[ami]\nsecret = \"s\"\n", &env).unwrap();
        let n = nats_of(&cfg);
        assert_eq!(n.len(), 1);
        assert_eq!(
            (n[0].url.as_str(), n[0].subject.as_str()),
            ("nats:4222", "myserver")
        );
        assert_eq!(n[0].dialect, "routr");
        // Enabled alone: Routr's defaults.
        let cfg = Config::from_text(
            "[ami]\nsecret = \"s\"\n",
            &env_of(&[("NATS_PUBLISHER_ENABLED", "true")]),
        )
        .unwrap();
        assert_eq!(nats_of(&cfg)[0].subject, "routr");
    }

    #[test]
    fn routrs_environment_configures_the_files_routr_sink_and_needs_enabling() {
        let env = env_of(&[
            ("NATS_PUBLISHER_ENABLED", "true"),
            ("NATS_PUBLISHER_SUBJECT", "pbx9"),
        ]);
        let cfg = Config::from_text(&sink("url = \"nats://10.0.0.9:4222\""), &env).unwrap();
        let n = nats_of(&cfg);
        assert_eq!(n.len(), 1);
        assert_eq!(
            (n[0].url.as_str(), n[0].subject.as_str()),
            ("nats://10.0.0.9:4222", "pbx9")
        );
        for off in ["false", "1", "yes", ""] {
            let vars: &'static [(&str, &str)] = Box::leak(Box::new([
                ("NATS_PUBLISHER_ENABLED", off),
                ("NATS_PUBLISHER_URL", "nats:4222"),
            ]));
            let cfg = Config::from_text("[ami]\nsecret = \"s\"\n", &env_of(vars)).unwrap();
            assert!(nats_of(&cfg).is_empty(), "{off}");
        }
    }

    #[test]
    fn bad_routr_environment_names_the_variable() {
        let e = Config::from_text(
            "[ami]\nsecret = \"s\"\n",
            &env_of(&[
                ("NATS_PUBLISHER_ENABLED", "true"),
                ("NATS_PUBLISHER_URL", "http://nats:4222"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.key, "NATS_PUBLISHER_URL");
        let e = Config::from_text(
            "[ami]\nsecret = \"s\"\n",
            &env_of(&[
                ("NATS_PUBLISHER_ENABLED", "true"),
                ("NATS_PUBLISHER_SUBJECT", "my server"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.key, "NATS_PUBLISHER_SUBJECT");
    }
}
