//! The MQTT sink's config: keys, defaults, and checks that name the bad key.

use std::path::PathBuf;

use rumqttc::QoS;
use serde::Deserialize;

use crate::settings::{with_host, ConfigError};

/// Longest `topic` prefix accepted.
pub const MAX_TOPIC_LEN: usize = 128;
/// Longest `client_id` accepted.
pub const MAX_CLIENT_ID_LEN: usize = 128;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSinkConfig {
    /// `mqtt://host[:port]` (default port 1883) or `mqtts://host[:port]` (TLS, 8883).
    pub url: String,
    /// Topic prefix: events go to `<topic>/<class>/<event>`; `{host}` in it is replaced by
    /// the appliance's identity (`fleet/{host}` gives `fleet/pbx1/call/started`).
    pub topic: String,
    /// MQTT client id; empty: `pbxtap-<host>`.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// File holding the password (first line); relative paths are looked up in
    /// `$CREDENTIALS_DIRECTORY`.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA(s) that signed the broker's certificate (`mqtts://` only);
    /// unset: the system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// Seconds between MQTT pings when idle; the broker drops us (and publishes the
    /// last will) after 1.5 times this without traffic.
    pub keep_alive_secs: u64,
    /// QoS of event publishes: 1 (at least once, the default) or 0 (at most once).
    pub qos: u8,
    /// Publishes handed to the client and not yet acknowledged, at most.
    pub inflight: usize,
    /// Also publish events that name an extension (`extension`, else `aor`) to
    /// `<topic>/ext/<extension>/<class>/<event>`.
    pub extension_topics: bool,
    /// Keep the present (contacts, live calls, queue members and callers, trunks)
    /// retained under `<topic>/state/<host>/<kind>/<key>`, cleared at start.
    pub state: bool,
}

impl Default for MqttSinkConfig {
    fn default() -> Self {
        MqttSinkConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            topic: "pbxtap".into(),
            client_id: String::new(),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            keep_alive_secs: 30,
            qos: 1,
            inflight: 64,
            extension_topics: false,
            state: true,
        }
    }
}

/// Where the broker is, from `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Parses `mqtt://host[:port]` or `mqtts://host[:port]` (IPv6 hosts in brackets).
pub fn parse_url(url: &str) -> Result<BrokerUrl, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(format!(
            "`{url}` must start with mqtt:// or mqtts:// (e.g. mqtt://127.0.0.1:1883)"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        return Err(format!(
            "`{url}`: put credentials in `username` and `password`, not in the URL"
        ));
    }
    if rest.contains('/') || rest.contains('?') {
        return Err(format!("`{url}`: an MQTT URL has no path or query"));
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{url}`: unclosed `[` in the host"))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("`{url}`: expected `:port` after `]`"))?,
                ),
            ),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{url}` has no host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(format!(
                    "`{url}`: the port must be a number from 1 to 65535"
                ))
            }
        },
    };
    Ok(BrokerUrl {
        tls,
        host: host.to_string(),
        port,
    })
}

/// Checks a topic prefix: something to publish under, not a filter; `{host}` in it stands
/// for the appliance's identity.
pub fn validate_topic(template: &str) -> Result<(), String> {
    // `{host}` counts as the longest identity, so that every appliance's topic fits.
    let topic = &with_host(template, &"h".repeat(crate::event::TEXT_LEN));
    if template.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "must be 1 to {MAX_TOPIC_LEN} bytes, `{{host}}` counted as {} (the longest `host`)",
            crate::event::TEXT_LEN
        ));
    }
    if topic.contains(['{', '}']) {
        return Err(format!(
            "`{template}` has a brace that is not `{{host}}`, the only name replaced (e.g. fleet/{{host}})"
        ));
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(format!(
            "`{topic}` has a wildcard (+ or #) or NUL: a topic to publish to cannot"
        ));
    }
    if topic.starts_with('$') {
        return Err(format!(
            "`{topic}` starts with $, which brokers reserve for themselves"
        ));
    }
    if topic.starts_with('/') || topic.ends_with('/') || topic.contains("//") {
        return Err(format!(
            "`{topic}` has an empty level (a leading, trailing or double /)"
        ));
    }
    Ok(())
}

impl MqttSinkConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let url = parse_url(&self.url).map_err(|m| ConfigError::new(format!("{key}.url"), m))?;
        validate_topic(&self.topic).map_err(|m| ConfigError::new(format!("{key}.topic"), m))?;
        if self.client_id.len() > MAX_CLIENT_ID_LEN
            || self
                .client_id
                .contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::new(
                format!("{key}.client_id"),
                format!("must be at most {MAX_CLIENT_ID_LEN} bytes without spaces"),
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(ConfigError::new(
                format!("{key}.password"),
                "is set but username is not: MQTT sends a password only with a username",
            ));
        }
        if self.ca_file.is_some() && !url.tls {
            return Err(ConfigError::new(
                format!("{key}.ca_file"),
                "is only used with TLS: make the url mqtts://",
            ));
        }
        if !(1..=65_535).contains(&self.keep_alive_secs) {
            return Err(ConfigError::new(
                format!("{key}.keep_alive_secs"),
                "must be between 1 and 65535",
            ));
        }
        if self.qos > 1 {
            return Err(ConfigError::new(
                format!("{key}.qos"),
                format!(
                    "{} is not supported: use 1 (at least once) or 0 (at most once)",
                    self.qos
                ),
            ));
        }
        if !(2..=MAX_INFLIGHT).contains(&self.inflight) {
            return Err(ConfigError::new(
                format!("{key}.inflight"),
                format!("must be between 2 and {MAX_INFLIGHT} publishes"),
            ));
        }
        Ok(())
    }

    pub fn resolve_secrets(
        &mut self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        crate::settings::resolve_secret(
            &format!("{key}.password_file"),
            &mut self.password,
            &mut self.password_file,
            env,
        )
    }

    /// The QoS of event publishes.
    pub fn qos_level(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }
}

/// Largest `inflight` accepted: bounds the outbox to this many encoded events.
pub const MAX_INFLIGHT: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn sink(extra: &str) -> Result<Config, ConfigError> {
        Config::from_text(
            &format!("[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"mqtt\"\n{extra}"),
            &no_env,
        )
    }

    #[test]
    fn urls_parse_with_default_ports_and_ipv6() {
        let u = |s| parse_url(s).unwrap();
        assert_eq!(
            u("mqtt://127.0.0.1:1884"),
            BrokerUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1884
            }
        );
        assert_eq!(u("mqtt://broker.lan").port, 1883);
        assert_eq!(u("mqtts://broker.lan/").port, 8883);
        assert!(u("mqtts://broker.lan").tls);
        assert_eq!(u("mqtt://[::1]:1885").host, "::1");
        assert_eq!(u("mqtt://[::1]").port, 1883);
        for bad in [
            "http://x",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://x:0",
            "mqtt://x:http",
            "mqtt://u:p@x",
            "mqtt://x/topic",
            "mqtt://[::1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topics_must_be_publishable() {
        validate_topic("pbxtap").unwrap();
        validate_topic("site/pbx1").unwrap();
        validate_topic("fleet/{host}").unwrap();
        for bad in [
            "",
            "a/+",
            "a/#",
            "$SYS",
            "/a",
            "a/",
            "a//b",
            "a/{hostname}",
            "a}",
        ] {
            assert!(validate_topic(bad).is_err(), "{bad}");
        }
        assert!(validate_topic(&"x".repeat(MAX_TOPIC_LEN + 1)).is_err());
        assert!(validate_topic(&format!("{}/{{host}}", "x".repeat(MAX_TOPIC_LEN - 64))).is_err());
    }

    #[test]
    fn defaults_are_valid_and_every_bad_value_names_its_key() {
        let cfg = sink("").unwrap();
        let crate::sink::SinkConfig::Mqtt(m) = &cfg.sinks[0] else {
            panic!("not mqtt")
        };
        assert_eq!((m.qos, m.inflight, m.keep_alive_secs), (1, 64, 30));
        for (extra, key) in [
            ("url = \"tcp://x\"", "sinks[0].url"),
            ("topic = \"a/#\"", "sinks[0].topic"),
            ("client_id = \"a b\"", "sinks[0].client_id"),
            ("password = \"p\"", "sinks[0].password"),
            ("ca_file = \"/x.pem\"", "sinks[0].ca_file"),
            ("keep_alive_secs = 0", "sinks[0].keep_alive_secs"),
            ("qos = 2", "sinks[0].qos"),
            ("inflight = 1", "sinks[0].inflight"),
            ("inflight = 100000", "sinks[0].inflight"),
            (
                "password_file = \"/nonexistent/pw\"",
                "sinks[0].password_file",
            ),
        ] {
            let e = sink(extra).unwrap_err();
            assert_eq!(e.key, key, "{extra}: {e}");
        }
        // Unknown keys are named with their sink.
        let e = sink("retain = true").unwrap_err();
        assert!(
            e.key == "sinks[0].retain" && e.message.contains("unknown field"),
            "{e}"
        );
    }

    #[test]
    fn password_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("mqtt.pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let cfg = sink(&format!(
            "username = \"u\"\npassword_file = \"{}\"",
            pw.display()
        ))
        .unwrap();
        let crate::sink::SinkConfig::Mqtt(m) = &cfg.sinks[0] else {
            panic!("not mqtt")
        };
        assert_eq!(m.password.as_deref(), Some("s3cret"));
    }
}
