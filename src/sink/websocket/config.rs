//! The websocket sink's settings: `[[sinks]] type = "websocket"` and its `[[sinks.users]]`,
//! with defaults and validation that names the bad key.

use std::path::PathBuf;

use serde::Deserialize;

use super::history::MAX_RESUME_EVENTS;
use super::portsip::{self, Role};
use crate::dialect::portsip::Version;
use crate::settings::{self, ConfigError};
use crate::sink::filter::FilterConfig;

/// Default `max_clients`.
pub const DEFAULT_MAX_CLIENTS: usize = 64;
/// Largest `max_clients` accepted.
pub const MAX_CLIENTS: usize = 1024;
/// Default `resume_events`: as many frames as a sink's default ring holds events.
pub const DEFAULT_RESUME_EVENTS: usize = 1024;
/// Default `client_queue`: events queued per client before it counts as stalled.
pub const DEFAULT_CLIENT_QUEUE: usize = 256;
/// Largest `client_queue` accepted.
pub const MAX_CLIENT_QUEUE: usize = 4096;
/// Default `max_frame`: the largest message a client may send, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 4096;
/// Longest `authkey` accepted (and compared).
pub const MAX_AUTHKEY_LEN: usize = 256;
/// Shortest `authkey` accepted: the key is all that guards the feed from the network,
/// and the login limits (`limit`) bound guesses, not their odds. 12 random characters
/// outlast any guessing those limits allow.
pub const MIN_AUTHKEY_LEN: usize = 12;
/// Most `[[sinks.users]]`.
pub const MAX_USERS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Enswitch,
    Portsip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebsocketSinkConfig {
    /// `host:port`; default `0.0.0.0:4875` (enswitch), or for portsip `0.0.0.0:8887`
    /// (v22) or `0.0.0.0:8885` (v16).
    pub listen: Option<String>,
    pub protocol: Protocol,
    /// PortSIP: which generation of the protocol, `v22` (default: path `/wsi`, replies
    /// with `command` and `id`) or `v16` (path `/`, the seed's replies and messages).
    pub version: Version,
    /// Enswitch: the key clients pass as `?authkey=`.
    pub authkey: Option<String>,
    pub authkey_file: Option<PathBuf>,
    /// Serve WSS (TLS); default true for portsip, false for enswitch.
    pub tls: Option<bool>,
    /// PEM certificate chain and private key for WSS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PortSIP: SIP domain written in `sip:<ext>@<domain>`; default the `host`.
    pub domain: Option<String>,
    /// PortSIP: `tenant_id` in every message; default the `host`.
    pub tenant_id: Option<String>,
    /// PortSIP: `tenant_name` in CDRs; default the `tenant_id`.
    pub tenant_name: Option<String>,
    /// Clients connected at once; more are refused with HTTP 503.
    pub max_clients: usize,
    /// Events queued per client; a client that falls this far behind is disconnected.
    pub client_queue: usize,
    /// Largest message (and frame) a client may send, in bytes.
    pub max_frame: usize,
    /// PortSIP: who may log in.
    pub users: Vec<UserConfig>,
    /// Enswitch: `machine` in every event, which machine of the cluster this is.
    pub machine: u32,
    /// Frames kept for clients that come back: Enswitch with `&since=<event_id>`, PortSIP
    /// (with `event_ids`) with `"since"` in its subscribe (0: none).
    pub resume_events: usize,
    /// PortSIP: every event message also carries `event_id` (its event's id) as its last
    /// key, so a client can resume. Off: PortSIP's documented shapes exactly.
    pub event_ids: bool,
    /// `[sinks.filter]`: only one customer's events (`sink::filter`).
    pub filter: Option<FilterConfig>,
}

impl Default for WebsocketSinkConfig {
    fn default() -> Self {
        WebsocketSinkConfig {
            listen: None,
            protocol: Protocol::Enswitch,
            version: Version::default(),
            authkey: None,
            authkey_file: None,
            tls: None,
            tls_cert: None,
            tls_key: None,
            domain: None,
            tenant_id: None,
            tenant_name: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            client_queue: DEFAULT_CLIENT_QUEUE,
            max_frame: DEFAULT_MAX_FRAME,
            machine: 1,
            resume_events: DEFAULT_RESUME_EVENTS,
            event_ids: false,
            filter: None,
            users: Vec::new(),
        }
    }
}

/// One `[[sinks.users]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    /// The SIP domain the user logs in with; none for a `system` administrator.
    #[serde(default)]
    pub domain: String,
    /// An extension's number, for v22's `extension_number` logins.
    pub extension_number: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_role")]
    pub role: Role,
    #[serde(default)]
    pub queues: Vec<String>,
}

fn default_role() -> Role {
    Role::Extension
}

impl WebsocketSinkConfig {
    pub fn listen(&self) -> &str {
        match (&self.listen, self.protocol) {
            (Some(l), _) => l,
            (None, Protocol::Enswitch) => "0.0.0.0:4875",
            (None, Protocol::Portsip) if self.version == Version::V16 => "0.0.0.0:8885",
            (None, Protocol::Portsip) => "0.0.0.0:8887",
        }
    }

    pub fn tls(&self) -> bool {
        self.tls.unwrap_or(self.protocol == Protocol::Portsip)
    }

    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        settings::validate_host_port(&format!("{key}.listen"), self.listen())?;
        if let Some(f) = &self.filter {
            f.validate(&format!("{key}.filter"))?;
        }
        if !(1..=MAX_CLIENTS).contains(&self.max_clients) {
            return Err(ConfigError::new(
                format!("{key}.max_clients"),
                format!("must be between 1 and {MAX_CLIENTS}"),
            ));
        }
        if !(1..=MAX_CLIENT_QUEUE).contains(&self.client_queue) {
            return Err(ConfigError::new(
                format!("{key}.client_queue"),
                format!("must be between 1 and {MAX_CLIENT_QUEUE} events"),
            ));
        }
        if self.resume_events > MAX_RESUME_EVENTS {
            return Err(ConfigError::new(
                format!("{key}.resume_events"),
                format!("must be at most {MAX_RESUME_EVENTS} frames (0: no resume)"),
            ));
        }
        if !(128..=65_536).contains(&self.max_frame) {
            return Err(ConfigError::new(
                format!("{key}.max_frame"),
                "must be between 128 and 65536 bytes",
            ));
        }
        if self.tls() {
            for (name, v) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
                if v.is_none() {
                    return Err(ConfigError::new(
                        format!("{key}.{name}"),
                        "missing: WSS needs tls_cert and tls_key (PEM files), or set tls = false for plain WS",
                    ));
                }
            }
        }
        if self.event_ids && self.protocol == Protocol::Enswitch {
            return Err(ConfigError::new(
                format!("{key}.event_ids"),
                "is for protocol = \"portsip\": Enswitch events carry event_id already",
            ));
        }
        match self.protocol {
            Protocol::Enswitch => match &self.authkey {
                None => Err(ConfigError::new(
                    format!("{key}.authkey"),
                    "missing: set authkey, or authkey_file to a file holding it",
                )),
                Some(k) if k.len() < MIN_AUTHKEY_LEN || k.len() > MAX_AUTHKEY_LEN => {
                    Err(ConfigError::new(
                        format!("{key}.authkey"),
                        format!(
                            "must be {MIN_AUTHKEY_LEN} to {MAX_AUTHKEY_LEN} bytes (it is {}): anyone who guesses it reads every event; `openssl rand -hex 16` makes a good one",
                            k.len()
                        ),
                    ))
                }
                Some(_) => Ok(()),
            },
            Protocol::Portsip => {
                if self.users.is_empty() || self.users.len() > MAX_USERS {
                    return Err(ConfigError::new(
                        format!("{key}.users"),
                        format!("portsip needs 1 to {MAX_USERS} [[sinks.users]] who may log in"),
                    ));
                }
                for (i, u) in self.users.iter().enumerate() {
                    let k = format!("{key}.users[{i}]");
                    if u.username.is_empty() {
                        return Err(ConfigError::new(format!("{k}.username"), "is empty"));
                    }
                    // A system administrator logs in without a domain; everyone else with.
                    match (u.role, u.domain.is_empty()) {
                        (Role::System, false) => {
                            return Err(ConfigError::new(
                                format!("{k}.domain"),
                                "a system administrator logs in without a domain: remove it, or choose role admin",
                            ))
                        }
                        (Role::System, true) if self.version == Version::V16 => {
                            return Err(ConfigError::new(
                                format!("{k}.role"),
                                "PortSIP v16 has no system administrator logins: use admin, or version = \"v22\"",
                            ))
                        }
                        (Role::Extension | Role::Admin, true) => {
                            return Err(ConfigError::new(
                                format!("{k}.domain"),
                                "missing: the SIP domain this user logs in with",
                            ))
                        }
                        _ => {}
                    }
                    if u.extension_number.as_deref() == Some("") {
                        return Err(ConfigError::new(
                            format!("{k}.extension_number"),
                            "is empty",
                        ));
                    }
                    match &u.password {
                        None => {
                            return Err(ConfigError::new(
                                format!("{k}.password"),
                                "missing: set password, or password_file to a file holding it",
                            ))
                        }
                        Some(p) if p.is_empty() => {
                            return Err(ConfigError::new(format!("{k}.password"), "is empty"))
                        }
                        _ => {}
                    }
                    if u.queues.len() > portsip::MAX_FILTER {
                        return Err(ConfigError::new(
                            format!("{k}.queues"),
                            format!("at most {} queues", portsip::MAX_FILTER),
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    pub fn resolve_secrets(
        &mut self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        settings::resolve_secret(
            &format!("{key}.authkey_file"),
            &mut self.authkey,
            &mut self.authkey_file,
            env,
        )?;
        for (i, u) in self.users.iter_mut().enumerate() {
            settings::resolve_secret(
                &format!("{key}.users[{i}].password_file"),
                &mut u.password,
                &mut u.password_file,
                env,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn err(sink: &str) -> (String, String) {
        let text = format!("[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"websocket\"\n{sink}");
        let e = Config::from_text(&text, &no_env).unwrap_err();
        (e.key, e.message)
    }

    #[test]
    fn defaults_per_protocol() {
        let text = "[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"websocket\"\nauthkey = \"0123456789ab\"\n\
                    [[sinks]]\ntype = \"websocket\"\nprotocol = \"portsip\"\ntls_cert = \"c\"\ntls_key = \"k\"\n\
                    [[sinks.users]]\nusername = \"101\"\ndomain = \"pbx.local\"\npassword = \"p\"\nqueues = [\"8001\"]\n";
        let cfg = Config::from_text(text, &no_env).unwrap();
        let [crate::sink::SinkConfig::Websocket(e), crate::sink::SinkConfig::Websocket(p)] =
            &cfg.sinks[..]
        else {
            panic!("{:?}", cfg.sinks)
        };
        assert_eq!((e.listen(), e.tls()), ("0.0.0.0:4875", false));
        assert_eq!((p.listen(), p.tls()), ("0.0.0.0:8887", true));
        assert_eq!(p.version, crate::dialect::portsip::Version::V22);
        assert_eq!(p.users[0].role, super::Role::Extension);
        assert_eq!(p.max_clients, super::DEFAULT_MAX_CLIENTS);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "sinks[0].authkey", "missing"),
            ("authkey = \"\"\n", "sinks[0].authkey", "12 to 256 bytes (it is 0)"),
            ("authkey = \"abc\"\n", "sinks[0].authkey", "12 to 256 bytes (it is 3)"),
            ("authkey = \"0123456789a\\nb\"\n", "sinks[0].authkey", "one line"),
            ("protocol = \"sip\"\n", "sinks[0].protocol", "unknown variant `sip`, expected `enswitch` or `portsip`"),
            ("authkey = \"0123456789ab\"\nlisten = \"4875\"\n", "sinks[0].listen", "no port"),
            ("authkey = \"0123456789ab\"\nmax_clients = 0\n", "sinks[0].max_clients", "between"),
            ("authkey = \"0123456789ab\"\nclient_queue = 100000\n", "sinks[0].client_queue", "between"),
            ("authkey = \"0123456789ab\"\nmax_frame = 10\n", "sinks[0].max_frame", "between"),
            ("authkey = \"0123456789ab\"\nevent_ids = true\n", "sinks[0].event_ids", "portsip"),
            ("authkey = \"0123456789ab\"\ntls = true\n", "sinks[0].tls_cert", "tls = false"),
            ("protocol = \"portsip\"\ntls = false\n", "sinks[0].users", "[[sinks.users]]"),
            (
                "protocol = \"portsip\"\ntls = false\n[[sinks.users]]\nusername = \"1\"\ndomain = \"d\"\n",
                "sinks[0].users[0].password",
                "missing",
            ),
            (
                "protocol = \"portsip\"\ntls = false\n[[sinks.users]]\nusername = \"1\"\ndomain = \"d\"\npassword = \"p\"\nrole = \"root\"\n",
                "sinks[0].users[0].role",
                "unknown variant `root`, expected one of `extension`, `admin`, `system`",
            ),
            (
                "protocol = \"portsip\"\ntls = false\n[[sinks.users]]\nusername = \"1\"\npassword = \"p\"\n",
                "sinks[0].users[0].domain",
                "missing",
            ),
            (
                "protocol = \"portsip\"\ntls = false\n[[sinks.users]]\nusername = \"a\"\ndomain = \"d\"\npassword = \"p\"\nrole = \"system\"\n",
                "sinks[0].users[0].domain",
                "without a domain",
            ),
            (
                "protocol = \"portsip\"\nversion = \"v16\"\ntls = false\n[[sinks.users]]\nusername = \"a\"\npassword = \"p\"\nrole = \"system\"\n",
                "sinks[0].users[0].role",
                "v16 has no system",
            ),
            (
                "protocol = \"portsip\"\nversion = \"v20\"\n",
                "sinks[0].version",
                "unknown variant `v20`, expected `v16` or `v22`",
            ),
            (
                "authkey_file = \"/nonexistent/key\"\n",
                "sinks[0].authkey_file",
                "/nonexistent/key",
            ),
        ];
        for (sink, key, needle) in cases {
            let (k, m) = err(sink);
            assert_eq!(&k, key, "{sink}: {m}");
            assert!(m.contains(needle), "{sink}: {k}: {m}");
        }
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "k3y-0123456789\n").unwrap();
        std::fs::write(dir.path().join("pw"), "pw101\n").unwrap();
        let text = format!(
            "[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"websocket\"\nauthkey_file = \"{d}/key\"\n\
             [[sinks]]\ntype = \"websocket\"\nprotocol = \"portsip\"\ntls = false\n\
             [[sinks.users]]\nusername = \"101\"\ndomain = \"d\"\npassword_file = \"{d}/pw\"\n",
            d = dir.path().display()
        );
        let cfg = Config::from_text(&text, &no_env).unwrap();
        let [crate::sink::SinkConfig::Websocket(e), crate::sink::SinkConfig::Websocket(p)] =
            &cfg.sinks[..]
        else {
            panic!()
        };
        assert_eq!(e.authkey.as_deref(), Some("k3y-0123456789"));
        assert_eq!(p.users[0].password.as_deref(), Some("pw101"));
    }
}
