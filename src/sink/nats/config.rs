//! The NATS sink's settings: server, dialect, base subject, credentials, TLS and
//! JetStream, checked with the key named; and Routr's `NATS_PUBLISHER_*` variables.

use std::path::PathBuf;

use async_nats::{ConnectOptions, ServerAddr};
use serde::Deserialize;

use crate::dialect::routr;
use crate::settings::{
    credential_path, read_bounded, resolve_secret, with_host, ConfigError, MAX_PEM_FILE,
};
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
    /// `nats://host:port`, `tls://`, `ws://`, `wss://`, or `host:port` (Routr's
    /// `nats:4222`); several separated by commas; credentials may be in the URL.
    pub url: String,
    /// `routr` or `native`.
    pub dialect: String,
    /// Base subject: events go to `<subject>.call.started` and so on; `{host}` in it is
    /// replaced by the appliance's identity (`fleet.{host}` gives `fleet.pbx1.call.started`).
    pub subject: String,
    /// The host of the SIP URIs of the `routr` dialect (`sip:101@<sip_domain>`); the
    /// appliance's `host` when unset.
    pub sip_domain: Option<String>,
    /// `routr` dialect: keys and values added at the top level of every `call.started`, as
    /// Routr adds its resources' `extended` metadata (Fonoster's `accessKeyId`). Sorted by
    /// key.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// `routr` dialect: metadata per endpoint (the caller's, or the trunk a call from the
    /// PSTN came in on, by its pjsip.conf name), as Routr takes the `extended` of the
    /// caller's Agent or Peer, or of the called Number. Over `metadata`, key by key.
    pub endpoint_metadata:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// `routr` dialect: the call's own metadata, from the dialplan. The caller's `X-`
    /// variables named `<prefix><key>` (`X-Meta-accessKeyId` for `X-Meta-`) become the key
    /// `<key>` of its `call.started`, over `endpoint_metadata` and `metadata`, and leave
    /// `extraHeaders`. Unset: none.
    pub metadata_prefix: Option<String>,
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
    /// A `.creds` file (user JWT and NKey seed); a relative path is looked up in
    /// `$CREDENTIALS_DIRECTORY`.
    pub creds_file: Option<PathBuf>,
    /// Require TLS even when the URL says `nats://`.
    pub tls: bool,
    /// PEM file of the CA(s) that signed the server's certificate, added to the system's.
    pub tls_ca_file: Option<PathBuf>,
    /// Publish with JetStream acknowledgements and retry until acked.
    pub jetstream: bool,
    /// With `jetstream` and the native dialect: also publish the present (contacts, live
    /// calls, queue members and callers, trunks) to `<subject>.state.<host>.<kind>.<key>`,
    /// purged at start (`sink::nats::state`). Off unless set: it needs a stream of its
    /// own, and a stream on `<subject>.>` would store it among the events.
    pub state: bool,
}

impl Default for NatsSinkConfig {
    fn default() -> Self {
        NatsSinkConfig {
            url: "nats://127.0.0.1:4222".into(),
            dialect: "routr".into(),
            subject: ROUTR_DEFAULT_SUBJECT.into(),
            sip_domain: None,
            metadata: Default::default(),
            endpoint_metadata: Default::default(),
            metadata_prefix: None,
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
            state: false,
        }
    }
}

/// Most servers in one `url` (a comma-separated list, as Routr's client takes).
pub const MAX_SERVERS: usize = 16;

/// `metadata`: Routr's dialect only; at most `routr::MAX_METADATA` keys of letters, digits,
/// `_` and `-`; values of printable text; no key that would shadow a field of Routr's
/// own `call.started`.
fn validate_metadata(
    key: &str,
    metadata: &std::collections::BTreeMap<String, String>,
    dialect: NatsDialect,
) -> Result<(), ConfigError> {
    if metadata.is_empty() {
        return Ok(());
    }
    if dialect != NatsDialect::Routr {
        return Err(ConfigError::new(
            key,
            "is Routr's `extended` metadata: only for dialect = \"routr\"",
        ));
    }
    if metadata.len() > routr::MAX_METADATA {
        return Err(ConfigError::new(
            key,
            format!("{} keys: at most {}", metadata.len(), routr::MAX_METADATA),
        ));
    }
    for (name, value) in metadata {
        let at = format!("{key}.{name}");
        if !routr::is_metadata_key(name) {
            return Err(ConfigError::new(
                at,
                format!(
                    "is not a metadata key: 1 to {} letters, digits, `_` or `-` (e.g. accessKeyId)",
                    routr::MAX_METADATA_KEY
                ),
            ));
        }
        if routr::FIELDS.contains(&name.as_str()) {
            return Err(ConfigError::new(
                at,
                format!("would shadow Routr's own field `{name}`: choose another key"),
            ));
        }
        if value.len() > routr::MAX_METADATA_VALUE || value.chars().any(char::is_control) {
            return Err(ConfigError::new(
                at,
                format!(
                    "must be at most {} bytes of text without control characters",
                    routr::MAX_METADATA_VALUE
                ),
            ));
        }
    }
    Ok(())
}

/// `metadata_prefix`: Routr's dialect only; `X-` and a word short enough to leave room
/// for a key in a header name (`event::HEADER_NAME_LEN`).
fn validate_metadata_prefix(
    key: &str,
    prefix: &str,
    dialect: NatsDialect,
) -> Result<(), ConfigError> {
    if dialect != NatsDialect::Routr {
        return Err(ConfigError::new(
            key,
            "is Routr's per-call `extended` metadata: only for dialect = \"routr\"",
        ));
    }
    let longest = crate::event::HEADER_NAME_LEN - 1;
    let x = prefix.len() > 2 && prefix.as_bytes()[..2].eq_ignore_ascii_case(b"x-");
    if !x || prefix.len() > longest || !routr::is_metadata_key(prefix) {
        return Err(ConfigError::new(
            key,
            format!(
                "`{prefix}` is not a variable prefix: `X-` and then letters, digits, `_` or `-`, at most {longest} bytes in all (e.g. X-Meta-)"
            ),
        ));
    }
    Ok(())
}

/// A `url` setting read: the servers to dial, without credentials, and the login the
/// URLs carried (`nats://user:pass@host`, or `nats://token@host`), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Servers {
    pub addrs: Vec<ServerAddr>,
    pub login: Option<UrlLogin>,
}

/// Credentials written into a server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlLogin {
    UserPassword(String, String),
    Token(String),
}

/// Reads a NATS server address or a comma-separated list of them, as Routr's client
/// (jnats) takes them: `host:port` (nats:// assumed), `nats://`, `tls://`, `ws://`,
/// `wss://`, credentials in the URL. `key` names it in errors.
pub fn parse_servers(key: &str, url: &str) -> Result<Servers, ConfigError> {
    let bad = |why: String| ConfigError::new(key, why);
    let parts: Vec<&str> = url.split(',').map(str::trim).collect();
    if parts.len() > MAX_SERVERS {
        return Err(bad(format!(
            "at most {MAX_SERVERS} servers, comma-separated"
        )));
    }
    let mut servers = Servers {
        addrs: Vec::with_capacity(parts.len()),
        login: None,
    };
    for part in parts {
        if part.is_empty() {
            return Err(bad(format!("`{url}` has an empty server in its list")));
        }
        if let Some(rest) = part.strip_prefix("opentls://") {
            return Err(bad(format!(
                "`{part}`: opentls:// (TLS without checking the server's certificate) is not supported; write tls://{rest} and, for a private CA, tls_ca_file"
            )));
        }
        let addr: ServerAddr = part.parse().map_err(|e| {
            bad(format!(
                "`{part}` is not a NATS server address: {e} (expected nats://host:4222, tls://, ws://, wss:// or host:4222; several separated by commas)"
            ))
        })?;
        let mut u = addr.into_inner();
        if u.host_str().is_none_or(str::is_empty) {
            return Err(bad(format!("`{part}` has no host")));
        }
        let login = match (u.username(), u.password()) {
            ("", _) => None,
            (user, Some(pass)) => Some(UrlLogin::UserPassword(decode(user), decode(pass))),
            (token, None) => Some(UrlLogin::Token(decode(token))),
        };
        if let Some(login) = login {
            match &servers.login {
                Some(l) if *l != login => {
                    return Err(bad(format!(
                        "`{}`: the servers carry different credentials; pbxtap logs in one way",
                        redacted(url)
                    )))
                }
                _ => servers.login = Some(login),
            }
        }
        let _ = u.set_username("");
        let _ = u.set_password(None);
        let addr = ServerAddr::from_url(u).map_err(|e| bad(e.to_string()))?;
        servers.addrs.push(addr);
    }
    let ws = servers.addrs.iter().filter(|a| a.is_websocket()).count();
    if ws != 0 && ws != servers.addrs.len() {
        return Err(bad(format!(
            "`{}` mixes ws(s):// with nats:// or tls:// servers; use one kind",
            redacted(url)
        )));
    }
    Ok(servers)
}

/// A URL's user or password as written, percent-decoded.
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `url` (one server or a list) with any credentials taken out, for logs and errors.
pub fn redacted(url: &str) -> String {
    url.split(',')
        .map(|part| match part.trim().parse::<ServerAddr>() {
            Ok(addr) => {
                let mut u = addr.into_inner();
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.to_string()
            }
            Err(_) => match part.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => part.trim().to_string(),
            },
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks a base subject: dot-separated tokens without spaces or wildcards, where
/// `{host}` stands for the appliance's identity.
fn validate_subject(key: &str, subject: &str) -> Result<(), ConfigError> {
    if subject.is_empty() {
        return Err(ConfigError::new(
            key,
            "is empty: the subjects would be `.call.started` and so on, which NATS refuses (Routr, given it, loses every event); leave it unset for `routr`",
        ));
    }
    // `{host}` counts as the longest identity, so that every appliance's subject fits.
    let longest = with_host(subject, &"h".repeat(crate::event::TEXT_LEN));
    if longest.len() > MAX_BASE_SUBJECT_LEN {
        return Err(ConfigError::new(
            key,
            format!("must be 1 to {MAX_BASE_SUBJECT_LEN} bytes, `{{host}}` counted as {} (the longest `host`)", crate::event::TEXT_LEN),
        ));
    }
    if longest.contains(['{', '}']) {
        return Err(ConfigError::new(
            key,
            format!("`{subject}` has a brace that is not `{{host}}`, the only name replaced (e.g. fleet.{{host}})"),
        ));
    }
    if longest
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
        let servers = parse_servers(&format!("{key}.url"), &self.url)?;
        let dialect = NatsDialect::parse(&format!("{key}.dialect"), &self.dialect)?;
        validate_subject(&format!("{key}.subject"), &self.subject)?;
        if self.state && !(self.jetstream && dialect == NatsDialect::Native) {
            return Err(ConfigError::new(
                format!("{key}.state"),
                "needs jetstream = true and dialect = \"native\": the present is kept as the last message of each subject in a stream",
            ));
        }
        if self.name.is_empty() {
            return Err(ConfigError::new(format!("{key}.name"), "must not be empty"));
        }
        validate_metadata(&format!("{key}.metadata"), &self.metadata, dialect)?;
        if self.endpoint_metadata.len() > routr::MAX_METADATA_ENDPOINTS {
            return Err(ConfigError::new(
                format!("{key}.endpoint_metadata"),
                format!(
                    "{} endpoints: at most {}",
                    self.endpoint_metadata.len(),
                    routr::MAX_METADATA_ENDPOINTS
                ),
            ));
        }
        for (endpoint, metadata) in &self.endpoint_metadata {
            let at = format!("{key}.endpoint_metadata.{endpoint}");
            if endpoint.is_empty() || endpoint.len() > crate::event::TEXT_LEN {
                return Err(ConfigError::new(
                    at,
                    format!(
                        "is not an endpoint name: 1 to {} bytes",
                        crate::event::TEXT_LEN
                    ),
                ));
            }
            validate_metadata(&at, metadata, dialect)?;
            let keys = self
                .metadata
                .keys()
                .chain(metadata.keys().filter(|k| !self.metadata.contains_key(*k)))
                .count();
            if keys > routr::MAX_METADATA {
                return Err(ConfigError::new(
                    at,
                    format!(
                        "{keys} keys with metadata's: at most {} together",
                        routr::MAX_METADATA
                    ),
                ));
            }
        }
        if let Some(prefix) = &self.metadata_prefix {
            validate_metadata_prefix(&format!("{key}.metadata_prefix"), prefix, dialect)?;
        }
        if let Some(domain) = &self.sip_domain {
            let bad = domain.is_empty()
                || domain.len() > crate::event::TEXT_LEN
                || domain.contains(|c: char| c.is_whitespace() || "@:;<>\"".contains(c));
            if bad {
                return Err(ConfigError::new(
                    format!("{key}.sip_domain"),
                    format!(
                        "`{domain}` is not a SIP domain: 1 to {} bytes, a host name or address without spaces, `@`, `:` or `;` (e.g. pbx.example.com)",
                        crate::event::TEXT_LEN
                    ),
                ));
            }
        }
        let methods = [
            ("url", servers.login.is_some()),
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

    /// Reads `password_file`, `token_file` and `nkey_file` into their secrets, and finds a
    /// relative `creds_file` in `$CREDENTIALS_DIRECTORY`.
    pub fn resolve_secrets(
        &mut self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(path) = &mut self.creds_file {
            *path = credential_path(path, env);
        }
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
        parse_servers("NATS_PUBLISHER_URL", u)?;
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
            (
                "url = \"opentls://x:4222\"",
                "sinks[0].url",
                "write tls://x:4222",
            ),
            (
                "url = \"nats://a:4222,ws://b:8080\"",
                "sinks[0].url",
                "mixes ws(s)://",
            ),
            ("url = \"nats://a:4222,,b\"", "sinks[0].url", "empty server"),
            (
                "url = \"nats://u:p@a:4222,nats://v:q@b:4222\"",
                "sinks[0].url",
                "different credentials",
            ),
            (
                "url = \"nats://u:p@a:4222\"\ntoken = \"t\"",
                "sinks[0].token",
                "only one way",
            ),
            (
                "sip_domain = \"pbx local\"",
                "sinks[0].sip_domain",
                "not a SIP domain",
            ),
            (
                "sip_domain = \"a@b\"",
                "sinks[0].sip_domain",
                "not a SIP domain",
            ),
            (
                "metadata = { callId = \"x\" }",
                "sinks[0].metadata.callId",
                "would shadow Routr's own field `callId`",
            ),
            (
                "metadata = { \"access key\" = \"x\" }",
                "sinks[0].metadata.access key",
                "not a metadata key",
            ),
            (
                "metadata = { accessKeyId = \"a\\nb\" }",
                "sinks[0].metadata.accessKeyId",
                "without control characters",
            ),
            (
                "endpoint_metadata = { 101 = { callId = \"x\" } }",
                "sinks[0].endpoint_metadata.101.callId",
                "would shadow Routr's own field `callId`",
            ),
            (
                "metadata = { a = \"1\", b = \"2\", c = \"3\", d = \"4\", e = \"5\", f = \"6\", g = \"7\", h = \"8\", i = \"9\" }\n\
                 endpoint_metadata = { 101 = { j = \"1\", k = \"2\", l = \"3\", m = \"4\", n = \"5\", o = \"6\", p = \"7\", q = \"8\" } }",
                "sinks[0].endpoint_metadata.101",
                "17 keys with metadata's: at most 16 together",
            ),
            (
                "dialect = \"native\"\nmetadata = { accessKeyId = \"x\" }",
                "sinks[0].metadata",
                "only for dialect = \"routr\"",
            ),
            (
                "metadata_prefix = \"Meta-\"",
                "sinks[0].metadata_prefix",
                "`Meta-` is not a variable prefix",
            ),
            (
                "metadata_prefix = \"X-\"",
                "sinks[0].metadata_prefix",
                "`X-` is not a variable prefix",
            ),
            (
                "metadata_prefix = \"X-Meta.\"",
                "sinks[0].metadata_prefix",
                "not a variable prefix",
            ),
            (
                "metadata_prefix = \"X-0123456789012345678901234567890\"",
                "sinks[0].metadata_prefix",
                "at most 31 bytes",
            ),
            (
                "dialect = \"native\"\nmetadata_prefix = \"X-Meta-\"",
                "sinks[0].metadata_prefix",
                "only for dialect = \"routr\"",
            ),
            ("url = \"nats://\"", "sinks[0].url", "no host"),
            (
                "url = \"nats://a b:4222\"",
                "sinks[0].url",
                "not a NATS server address",
            ),
            ("subject = \"a..b\"", "sinks[0].subject", "not a subject"),
            ("subject = \"a.>\"", "sinks[0].subject", "not a subject"),
            (
                "subject = \"a.{hostname}\"",
                "sinks[0].subject",
                "only name replaced",
            ),
            ("subject = \"a}\"", "sinks[0].subject", "only name replaced"),
            (
                "subject = \"{host}.{host}\"",
                "sinks[0].subject",
                "counted as 64",
            ),
            ("subject = \"\"", "sinks[0].subject", "is empty"),
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
            ("state = true", "sinks[0].state", "needs jetstream"),
            (
                "state = true\njetstream = true",
                "sinks[0].state",
                "dialect = \"native\"",
            ),
        ];
        for (extra, key, words) in cases {
            let e = err(extra);
            assert_eq!(e.key, key, "{extra}: {e}");
            assert!(e.message.contains(words), "{extra}: {e}");
        }
    }

    #[test]
    fn server_lists_as_routrs_client_takes_them() {
        let s = parse_servers(
            "k",
            "nats:4222, tls://alice:s%40cret@n2.example:4443,nats://alice:s%40cret@10.0.0.3",
        )
        .unwrap();
        let urls: Vec<String> = s.addrs.iter().map(|a| a.as_url_str().to_string()).collect();
        assert_eq!(
            urls,
            [
                "nats://nats:4222",
                "tls://n2.example:4443",
                "nats://10.0.0.3"
            ]
        );
        assert_eq!(
            s.login,
            Some(UrlLogin::UserPassword("alice".into(), "s@cret".into()))
        );
        let s = parse_servers("k", "wss://tok3n@nats.example,ws://127.0.0.1:8080").unwrap();
        assert_eq!(s.login, Some(UrlLogin::Token("tok3n".into())));
        assert!(s.addrs.iter().all(ServerAddr::is_websocket));
        assert_eq!(parse_servers("k", "nats://a:4222").unwrap().login, None);
        // Logs and errors never show the credentials.
        assert_eq!(
            redacted("nats://u:secret@h:4222,tok@h2:1"),
            "nats://h:4222,nats://h2:1"
        );
        assert_eq!(redacted("h:4222"), "nats://h:4222");
        let e = parse_servers("k", "nats://u:secret@a:1,nats://v:other@b:1").unwrap_err();
        assert!(!e.message.contains("secret"), "{e}");
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

        // A relative creds_file is the systemd credential of that name.
        let creds_dir = dir.path().to_str().unwrap().to_string();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| creds_dir.clone());
        let e = Config::from_text(&sink("creds_file = \"x.creds\""), &env).unwrap_err();
        assert_eq!(e.key, "sinks[0].creds_file");
        assert!(
            e.message.contains(&format!(
                "{} is not a NATS .creds file",
                bad_creds.display()
            )),
            "{e}"
        );
        let e = Config::from_text(&sink("creds_file = \"x.creds\""), &no_env).unwrap_err();
        assert!(e.message.contains("cannot read x.creds"), "{e}");
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
        // Empty: Routr would publish to `.call.started`, which NATS refuses.
        let e = Config::from_text(
            "[ami]\nsecret = \"s\"\n",
            &env_of(&[
                ("NATS_PUBLISHER_ENABLED", "true"),
                ("NATS_PUBLISHER_SUBJECT", ""),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.key, "NATS_PUBLISHER_SUBJECT");
        assert!(e.message.contains("empty"), "{e}");
    }
}
