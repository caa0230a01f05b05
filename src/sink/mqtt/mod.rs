//! MQTT sink: events to `<topic>/<class>/<event>` with rumqttc (native JSON), a retained
//! `<topic>/status` (`online`, with a last will that sets it `offline`) and the retained
//! `<topic>/health` (the watchdog's latest `system.asterisk_*` event), and with `state`
//! the present kept retained under `<topic>/state/<host>/<kind>/<key>` (`crate::state`;
//! cleared at start by [`sweep`]).
//!
//! Flow: `run` takes events off the sink's ring into the [`outbox::Outbox`] (at most
//! `inflight` publishes) and hands them to rumqttc; the [`driver`] task polls rumqttc's
//! event loop, reconnects with backoff, and reports acknowledgements back to the outbox.
//! While the broker is away, events wait in the ring (`buffers.per_sink`) and the outbox.

pub mod config;
pub mod driver;
pub mod outbox;
pub mod sweep;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, LastWill, MqttOptions, Publish, QoS, TlsConfiguration, Transport};
use tokio::sync::Notify;

use super::health::HealthReporter;
use crate::bus::{Publisher, SinkRx};
use crate::dialect::{native, Encoded, MAX_ENCODED_LEN};
use crate::event::{Body, Event};
use crate::settings::{with_host, ConfigError};
use crate::state;
pub use config::{parse_url, validate_topic, BrokerUrl, MqttSinkConfig};
use outbox::{Kind, Outbox};

/// Largest packet we send: the largest encoded event plus its topic and MQTT header.
pub const MAX_OUTGOING_PACKET: usize = MAX_ENCODED_LEN + 1024;
/// Largest packet we accept from the broker. The sink subscribes to nothing, so only
/// acknowledgements and ping responses arrive; the state sweep's connection takes the
/// retained state, each an event.
pub const MAX_INCOMING_PACKET: usize = MAX_OUTGOING_PACKET;
/// Seconds rumqttc waits for the TCP/TLS connect and the CONNACK.
pub const CONNECT_TIMEOUT_SECS: u64 = 5;
/// Payload of `<topic>/status` while connected, and of the last will.
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

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
    /// With `state`: `<topic>/state/<host>`, and the options of the sweep's connection.
    state: Option<(String, MqttOptions)>,
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
        let topic = with_host(&cfg.topic, publisher.host());
        let mut options = Self::options(cfg, &url, client_id.clone())?;
        options.set_last_will(LastWill::new(
            status_topic(&topic),
            OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
        let state = if cfg.state {
            Some((
                // The host is an identity token (`settings::is_identity`): one level.
                format!("{topic}/state/{}", publisher.host()),
                Self::options(cfg, &url, format!("{client_id}-sweep"))?,
            ))
        } else {
            None
        };
        Ok(MqttSink {
            options,
            topic,
            qos: cfg.qos_level(),
            window: cfg.inflight,
            extension_topics: cfg.extension_topics,
            state,
            publisher,
            broker: format!("{}:{}", url.host, url.port),
        })
    }

    /// The connection's options, but its last will.
    fn options(
        cfg: &MqttSinkConfig,
        url: &BrokerUrl,
        client_id: String,
    ) -> Result<MqttOptions, MqttSinkError> {
        let mut options = MqttOptions::new(client_id, url.host.clone(), url.port);
        options
            .set_keep_alive(Duration::from_secs(cfg.keep_alive_secs))
            // Design: clean sessions; unacknowledged publishes are re-sent from the outbox.
            .set_clean_session(true)
            .set_inflight((cfg.inflight + 1) as u16)
            .set_request_channel_capacity(cfg.inflight + 1)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
        if let Some(user) = &cfg.username {
            options.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
        }
        if url.tls {
            options.set_transport(Transport::Tls(tls_config(cfg.ca_file.as_deref())?));
        }
        Ok(options)
    }

    /// Clears the state an earlier run left, retrying with the reconnect backoff until it
    /// is done: events wait in the ring meanwhile, as they would for a broker away. Asked
    /// for once the sink's own connection is up.
    async fn sweep(&self, sink: &str) {
        let Some((prefix, options)) = &self.state else {
            return;
        };
        let mut attempt = 0;
        loop {
            match sweep::sweep(options.clone(), prefix).await {
                Ok(cleared) => {
                    tracing::info!(
                        sink,
                        prefix,
                        cleared,
                        code = "mqtt_state_swept",
                        "retained state of an earlier run cleared"
                    );
                    return;
                }
                Err(error) => {
                    let delay = driver::RECONNECT.random_delay(attempt);
                    attempt += 1;
                    if attempt.is_power_of_two() {
                        tracing::warn!(sink, prefix, %error, attempt, code = "mqtt_state_sweep_failed", "cannot clear the retained state of an earlier run yet; retrying in {delay:?}");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
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
            reporter: HealthReporter::new(
                rx.counters().clone(),
                self.broker.clone(),
                self.publisher.clone(),
            ),
            status,
        })));
        if self.state.is_some() {
            // Only once the sink's own connection is up: a broker that refuses it (or is
            // away) is not tried twice as often.
            wait_until(&shared, Outbox::is_connected).await;
            self.sweep(name.as_str()).await;
        }
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
    /// states name no extension); and with `state`, the retained state it sets or clears.
    fn publishes(
        &self,
        ev: &Event,
        buf: &mut Encoded,
    ) -> Result<heapless::Vec<(Publish, Kind), 3>, crate::dialect::EncodeError> {
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
        let state = self.state.as_ref().and_then(|(prefix, _)| {
            let entry = state::entry(&ev.body)?;
            let payload = if entry.set {
                main.payload.clone()
            } else {
                Default::default()
            };
            Some(Publish {
                retain: true,
                ..Publish::from_bytes(state_topic(prefix, &entry), QoS::AtLeastOnce, payload)
            })
        });
        let mut out = heapless::Vec::new();
        let _ = out.push((main, Kind::Event));
        for copy in [copy, state].into_iter().flatten() {
            let _ = out.push((copy, Kind::Copy));
        }
        Ok(out)
    }
}

/// `<prefix>/<kind>/<key>[/<second key>]`: where a piece of state is kept retained.
pub fn state_topic(prefix: &str, entry: &state::Entry<'_>) -> String {
    entry.path(prefix, '/', |c| NOT_IN_A_LEVEL.contains(&c))
}

/// What cannot stand in one topic level: the separator, the wildcards, NUL.
const NOT_IN_A_LEVEL: [char; 4] = ['/', '+', '#', '\0'];

/// The extension an event names (`extension`, else `aor`), when it is usable as one
/// topic level (no `/`, `+`, `#`).
pub fn extension_of(ev: &Event) -> Option<&str> {
    let ext = match ev.str_field("extension") {
        "" => ev.str_field("aor"),
        e => e,
    };
    (!ext.is_empty() && !ext.contains(NOT_IN_A_LEVEL)).then_some(ext)
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
            let pem =
                crate::settings::read_limited(path, crate::settings::MAX_PEM_FILE).map_err(bad)?;
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
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
    fn each_part_of_a_state_key_is_one_topic_level() {
        use state::{Entry, Kind};
        let contact = Entry {
            kind: Kind::Contact,
            key: ["101", "sip:101@10.0.0.5:5060;x=a/b+c#"],
            set: true,
        };
        assert_eq!(
            state_topic("pbx/state/h", &contact),
            "pbx/state/h/contact/101/sip:101@10.0.0.5:5060;x=a_b_c_"
        );
        let call = Entry {
            kind: Kind::Call,
            key: ["1796.4", ""],
            set: false,
        };
        assert_eq!(state_topic("pbx/state/h", &call), "pbx/state/h/call/1796.4");
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
