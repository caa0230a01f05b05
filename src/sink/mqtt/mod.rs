//! MQTT sink: events to `<topic>/<class>/<event>` with rumqttc (native JSON), a retained
//! `<topic>/status` (`online`, with a last will that sets it `offline`) and the retained
//! `<topic>/health` (the watchdog's latest `system.asterisk_*` event).
//!
//! Flow: `run` takes events off the sink's ring into the [`outbox::Outbox`] (at most
//! `inflight` publishes) and hands them to rumqttc; the [`driver`] task polls rumqttc's
//! event loop, reconnects with backoff, and reports acknowledgements back to the outbox.
//! While the broker is away, events wait in the ring (`buffers.per_sink`) and the outbox.

pub mod driver;
pub mod outbox;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, LastWill, MqttOptions, Publish, QoS, TlsConfiguration, Transport};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::bus::{Publisher, SinkRx};
use crate::config::ConfigError;
use crate::dialect::{native, Encoded, MAX_ENCODED_LEN};
use crate::event::{Body, Event};
use outbox::{Kind, Outbox};

/// Longest `topic` prefix accepted.
pub const MAX_TOPIC_LEN: usize = 128;
/// Longest `client_id` accepted.
pub const MAX_CLIENT_ID_LEN: usize = 128;
/// Largest packet we send: the largest encoded event plus its topic and MQTT header.
pub const MAX_OUTGOING_PACKET: usize = MAX_ENCODED_LEN + 1024;
/// Largest packet we accept from the broker. We subscribe to nothing, so only
/// acknowledgements and ping responses arrive.
pub const MAX_INCOMING_PACKET: usize = 4 * 1024;
/// Seconds rumqttc waits for the TCP/TLS connect and the CONNACK.
pub const CONNECT_TIMEOUT_SECS: u64 = 5;
/// Payload of `<topic>/status` while connected, and of the last will.
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSinkConfig {
    /// `mqtt://host[:port]` (default port 1883) or `mqtts://host[:port]` (TLS, 8883).
    pub url: String,
    /// Topic prefix: events go to `<topic>/<class>/<event>`.
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

/// Checks a topic prefix: something to publish under, not a filter.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(format!("must be 1 to {MAX_TOPIC_LEN} bytes"));
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
        crate::config::resolve_secret(
            &format!("{key}.password_file"),
            &mut self.password,
            &mut self.password_file,
            env,
        )
    }

    fn qos(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }
}

/// Largest `inflight` accepted: bounds the outbox to this many encoded events.
pub const MAX_INFLIGHT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MqttSinkError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot read the CA file {path}: {error}")]
    CaFile { path: PathBuf, error: String },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// What the sink and its driver task share. Bounded: the outbox holds at most
/// `inflight + 1` publishes.
pub(crate) struct Shared {
    pub(crate) outbox: Mutex<Outbox>,
    /// Signalled whenever publishes leave the outbox.
    pub(crate) freed: Notify,
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().expect("mqtt outbox poisoned")
    }
}

pub struct MqttSink {
    options: MqttOptions,
    topic: String,
    qos: QoS,
    window: usize,
    extension_topics: bool,
    publisher: Publisher,
    broker: String,
}

impl MqttSink {
    /// Validates the config and prepares the client; never connects (the broker may be
    /// down at start: the sink connects, and keeps trying, once it runs).
    pub async fn new(cfg: &MqttSinkConfig, publisher: Publisher) -> Result<Self, MqttSinkError> {
        cfg.validate("mqtt")?;
        let url = parse_url(&cfg.url).map_err(|m| ConfigError::new("mqtt.url", m))?;
        let client_id = if cfg.client_id.is_empty() {
            format!("pbxtap-{}", publisher.host())
        } else {
            cfg.client_id.clone()
        };
        let mut options = MqttOptions::new(client_id, url.host.clone(), url.port);
        options
            .set_keep_alive(Duration::from_secs(cfg.keep_alive_secs))
            // Design: clean sessions; unacknowledged publishes are re-sent from the outbox.
            .set_clean_session(true)
            .set_inflight((cfg.inflight + 1) as u16)
            .set_request_channel_capacity(cfg.inflight + 1)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET)
            .set_last_will(LastWill::new(
                status_topic(&cfg.topic),
                OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        if let Some(user) = &cfg.username {
            options.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
        }
        if url.tls {
            options.set_transport(Transport::Tls(tls_config(cfg.ca_file.as_deref())?));
        }
        Ok(MqttSink {
            options,
            topic: cfg.topic.clone(),
            qos: cfg.qos(),
            window: cfg.inflight,
            extension_topics: cfg.extension_topics,
            publisher,
            broker: format!("{}:{}", url.host, url.port),
        })
    }

    /// Publishes events until the bus closes and the ring is drained, then sets the
    /// status `offline` and disconnects. Never returns early because the broker is away:
    /// it waits (the ring keeps the newest `buffers.per_sink`), and the driver reconnects.
    pub async fn run(self, mut rx: SinkRx) {
        let name = rx.counters().name.clone();
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), self.window + 1);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_connection_timeout(CONNECT_TIMEOUT_SECS);
        // rumqttc writes and flushes one packet per poll: without this, Nagle's algorithm
        // and the broker's delayed ACKs hold small publishes back by tens of milliseconds.
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::new(self.window)),
            freed: Notify::new(),
        });
        let status = Publish {
            retain: true,
            ..Publish::new(status_topic(&self.topic), QoS::AtLeastOnce, ONLINE)
        };
        let mut driver = AbortOnDrop(tokio::spawn(driver::drive(driver::Driver {
            eventloop,
            shared: shared.clone(),
            counters: rx.counters().clone(),
            publisher: self.publisher.clone(),
            name: name.clone(),
            broker: self.broker.clone(),
            status,
        })));
        let mut buf = Encoded::new();
        let mut encode_errors = 0u64;
        while let Some(ev) = rx.recv().await {
            let publishes = match self.publishes(&ev, &mut buf) {
                Ok(p) => p,
                Err(e) => {
                    encode_errors += 1;
                    if encode_errors.is_power_of_two() {
                        tracing::error!(sink = name.as_str(), error = %e, encode_errors, "event not published");
                    }
                    continue;
                }
            };
            wait_until(&shared, |o| o.has_room(publishes.len())).await;
            let mut outbox = shared.lock();
            for (publish, kind) in publishes {
                if let Some(p) = outbox.push(publish, kind) {
                    hand_over(&client, p, name.as_str());
                }
            }
        }
        // The bus closed and the ring is drained: deliver what is left, then go offline.
        wait_until(&shared, Outbox::is_empty).await;
        if !shared.lock().is_connected() {
            // The broker is away: it published our last will (`offline`) when we left.
            tracing::info!(
                sink = name.as_str(),
                "mqtt sink drained; broker away at shutdown"
            );
            return;
        }
        let offline = Publish {
            retain: true,
            ..Publish::new(status_topic(&self.topic), QoS::AtLeastOnce, OFFLINE)
        };
        if let Some(p) = shared.lock().push(offline, Kind::Copy) {
            hand_over(&client, p, name.as_str());
        }
        wait_until(&shared, Outbox::is_empty).await;
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut driver.0).await;
        tracing::info!(sink = name.as_str(), "mqtt sink drained and disconnected");
    }

    /// The publishes for one event: its own topic; the retained health topic for the
    /// watchdog's Asterisk state, or its extension's topic (never both: the Asterisk
    /// states name no extension).
    fn publishes(
        &self,
        ev: &Event,
        buf: &mut Encoded,
    ) -> Result<heapless::Vec<(Publish, Kind), 2>, crate::dialect::EncodeError> {
        native::encode(ev, buf)?;
        let (class, name) = (ev.class().as_str(), ev.name());
        let main = Publish::new(
            format!("{}/{class}/{name}", self.topic),
            self.qos,
            buf.to_vec(),
        );
        let copy = if is_health(&ev.body) {
            Some(Publish {
                retain: true,
                ..Publish::from_bytes(
                    health_topic(&self.topic),
                    QoS::AtLeastOnce,
                    main.payload.clone(),
                )
            })
        } else if self.extension_topics {
            extension_of(ev).map(|ext| {
                Publish::from_bytes(
                    format!("{}/ext/{ext}/{class}/{name}", self.topic),
                    self.qos,
                    main.payload.clone(),
                )
            })
        } else {
            None
        };
        let mut out = heapless::Vec::new();
        let _ = out.push((main, Kind::Event));
        if let Some(copy) = copy {
            let _ = out.push((copy, Kind::Copy));
        }
        Ok(out)
    }
}

/// The extension an event names (`extension`, else `aor`), when it is usable as one
/// topic level (no `/`, `+`, `#`).
pub fn extension_of(ev: &Event) -> Option<&str> {
    let ext = match ev.str_field("extension") {
        "" => ev.str_field("aor"),
        e => e,
    };
    (!ext.is_empty() && !ext.contains(['/', '+', '#', '\0'])).then_some(ext)
}

/// `<topic>/status`: retained `online` / `offline`.
pub fn status_topic(topic: &str) -> String {
    format!("{topic}/status")
}

/// `<topic>/health`: retained latest Asterisk state.
pub fn health_topic(topic: &str) -> String {
    format!("{topic}/health")
}

/// The watchdog's Asterisk states, which also go retained to `<topic>/health`.
pub fn is_health(body: &Body) -> bool {
    matches!(
        body,
        Body::AsteriskUp(_) | Body::AsteriskDown(_) | Body::AsteriskDegraded(_)
    )
}

/// Hands a publish to rumqttc's request channel. It cannot be full: the channel holds
/// `inflight + 1`, and the outbox never has more than that handed over.
fn hand_over(client: &AsyncClient, p: Publish, sink: &str) {
    if let Err(e) = client.try_publish(p.topic, p.qos, p.retain, p.payload) {
        tracing::error!(sink, error = %e, "mqtt client refused a publish; it is re-sent after the next reconnect");
    }
}

/// Waits until `cond` holds for the outbox, woken whenever publishes leave it.
async fn wait_until(shared: &Shared, cond: impl Fn(&Outbox) -> bool) {
    loop {
        let freed = shared.freed.notified();
        if cond(&shared.lock()) {
            return;
        }
        freed.await;
    }
}

/// Stops the driver task when the sink stops (also when `run` is aborted at shutdown).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// rustls with ring, trusting `ca_file` or else the system's roots.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<TlsConfiguration, MqttSinkError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |error: String| MqttSinkError::CaFile {
                path: path.to_path_buf(),
                error,
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("unusable certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(bad("no certificate in it".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

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
        for bad in ["", "a/+", "a/#", "$SYS", "/a", "a/", "a//b"] {
            assert!(validate_topic(bad).is_err(), "{bad}");
        }
        assert!(validate_topic(&"x".repeat(MAX_TOPIC_LEN + 1)).is_err());
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
        // Unknown keys: serde reports them on the tagged sink table, naming the key.
        let e = sink("retain = true").unwrap_err();
        assert!(e.key == "sinks[0]" && e.message.contains("`retain`"), "{e}");
    }

    #[test]
    fn the_extension_is_the_extension_or_else_the_aor_when_usable_as_a_level() {
        use crate::event::{text, Presence, Registration};
        let host = text("h");
        let reg = |aor: &str| {
            Event::new(
                0,
                &host,
                Body::EndpointRegistered(Registration {
                    aor: text(aor),
                    ..Default::default()
                }),
            )
        };
        assert_eq!(extension_of(&reg("101")), Some("101"));
        assert_eq!(extension_of(&reg("")), None);
        assert_eq!(extension_of(&reg("a/b")), None);
        assert_eq!(extension_of(&reg("#")), None);
        let presence = Event::new(
            0,
            &host,
            Body::EndpointPresence(Presence {
                extension: text("102"),
                ..Default::default()
            }),
        );
        assert_eq!(extension_of(&presence), Some("102"));
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

    #[test]
    fn a_bad_ca_file_is_a_clear_start_error() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let e = tls_config(Some(&ca)).unwrap_err().to_string();
        assert!(e.contains("ca.pem") && e.contains("no certificate"), "{e}");
        let e = tls_config(Some(&dir.path().join("missing.pem")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
