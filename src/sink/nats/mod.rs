//! NATS sink: events to NATS subjects with async-nats, in the `routr` or `native` dialect.
//!
//! Design: during an outage events wait in the sink's own ring (the bus ring,
//! `buffers.per_sink`), not in the client. The sink hands async-nats at most
//! [`PUBLISH_WINDOW`] events, then flushes; async-nats completes a flush only once the
//! bytes went to a live connection, so while the server is away the sink waits on that
//! flush and takes nothing more off its ring. The ring then overflows oldest-first and
//! counts what it drops; the client never holds more than one window. With
//! `jetstream = true` every event is published with its id as `Nats-Msg-Id` and retried
//! until the stream acknowledges it (at least once into the stream, deduplicated by the
//! id). Core NATS sends each event once and carries no headers: they cost a sixth of the
//! flood's throughput, and the native payload has the id. With JetStream and the native
//! dialect the present is kept as well (`state`).
//!
//! Layout: `config` (keys, Routr's environment), `link` (client options, link health and
//! error logs), `wire` (subjects and message ids), `state` (the present's subjects and
//! the start-up purge); this file runs the delivery loop.

pub mod config;
pub mod link;
pub mod state;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::bus::{Publisher, SinkRx, TryRecv};
use crate::dialect::{native, routr, Encoded};
use crate::event::Event;
use crate::settings::{with_host, ConfigError};
use crate::sink::health::HealthReporter;
use config::Servers;
pub use config::{apply_routr_env, parse_servers, redacted, NatsDialect, NatsSinkConfig};
use link::{backoff, connect_options, Link, ACK_TIMEOUT};
use wire::{headers, state_headers, write_subject, SUBJECT_LEN};

/// Events handed to async-nats before the sink waits for them to be flushed. It bounds
/// what can sit in the client (and be lost if the connection breaks at that instant)
/// and what an outage holds beyond the ring.
pub const PUBLISH_WINDOW: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum NatsSinkError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot use the credentials file {}: {error}", path.display())]
    Credentials { path: PathBuf, error: String },
    #[error("the NATS client stopped: {0}")]
    ClientGone(String),
}

pub struct NatsSink {
    cfg: NatsSinkConfig,
    /// The base subject with `{host}` replaced by this appliance's identity.
    subject: String,
    servers: Servers,
    dialect: NatsDialect,
    /// With `state` (JetStream, native dialect): `<subject>.state.<host>`.
    state: Option<String>,
    /// `metadata` and `endpoint_metadata`, as the Routr dialect takes them.
    metadata: Vec<(String, String)>,
    endpoint_metadata: Vec<(String, Vec<(String, String)>)>,
    publisher: Publisher,
}

impl NatsSink {
    /// Validates the settings. Never fails because the server is down: the connection is
    /// made (and remade) in the background.
    pub async fn new(cfg: &NatsSinkConfig, publisher: Publisher) -> Result<Self, NatsSinkError> {
        cfg.validate("nats")?;
        let dialect = NatsDialect::parse("nats.dialect", &cfg.dialect)?;
        let servers = parse_servers("nats.url", &cfg.url)?;
        // async-nats builds its rustls config (for tls://, `tls`, or a server that asks for
        // TLS) with the process-wide provider: ring, as everywhere in pbxtap.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let subject = with_host(&cfg.subject, publisher.host());
        let state = (cfg.state && cfg.jetstream && dialect == NatsDialect::Native)
            .then(|| state::prefix(&subject, publisher.host()));
        Ok(NatsSink {
            subject,
            state,
            metadata: cfg.metadata.clone().into_iter().collect(),
            endpoint_metadata: cfg
                .endpoint_metadata
                .iter()
                .map(|(e, m)| (e.clone(), m.clone().into_iter().collect()))
                .collect(),
            cfg: cfg.clone(),
            servers,
            dialect,
            publisher,
        })
    }

    /// Delivers events until the bus closes and the ring is drained.
    pub async fn run(mut self, mut rx: SinkRx) {
        let link = Arc::new(Link::new(HealthReporter::new(
            rx.counters().clone(),
            redacted(&self.cfg.url),
            self.publisher.clone(),
        )));
        let mut batch: Vec<Event> = Vec::with_capacity(PUBLISH_WINDOW);
        let mut buf = Box::new(Encoded::new());
        let mut failures = 0;
        let mut swept = false;
        loop {
            let client = match self.connect(&link).await {
                Ok(c) => c,
                Err(e) => {
                    link.failed(&e.to_string());
                    link.error(Instant::now(), "cannot start the NATS client", &e);
                    tokio::time::sleep(backoff(failures)).await;
                    failures += 1;
                    continue;
                }
            };
            if !swept {
                self.sweep(&client, &link).await;
                swept = true;
            }
            loop {
                if batch.is_empty() && !fill(&mut rx, &mut batch).await {
                    return;
                }
                let sent = if self.cfg.jetstream {
                    self.send_acked(&client, &link, &batch, &mut buf).await
                } else {
                    self.send(&client, &link, &batch, &mut buf).await
                };
                match sent {
                    Ok(n) => {
                        rx.delivered(n);
                        batch.clear();
                        failures = 0;
                    }
                    Err(e) => {
                        // The client is gone: a new one sends the batch again.
                        link.failed(&e.to_string());
                        link.error(
                            Instant::now(),
                            "the NATS client stopped; starting a new one",
                            &e,
                        );
                        tokio::time::sleep(backoff(failures)).await;
                        failures += 1;
                        break;
                    }
                }
            }
        }
    }

    /// Purges the state an earlier run left (`state::sweep`), retrying until JetStream
    /// answers: events wait in the ring meanwhile, as they would for a server away. When
    /// no stream stores the state subjects, the present is not kept (and said so).
    async fn sweep(&mut self, client: &async_nats::Client, link: &Link) {
        let Some(prefix) = self.state.clone() else {
            return;
        };
        let sink = link.reporter.sink();
        let mut js = async_nats::jetstream::new(client.clone());
        js.set_timeout(ACK_TIMEOUT);
        let mut attempt = 0;
        loop {
            match state::sweep(&js, &prefix).await {
                Ok(Some(purged)) => {
                    tracing::info!(sink = %sink, prefix, purged, code = "nats_state_swept", "state of an earlier run purged");
                    return;
                }
                Ok(None) => {
                    tracing::warn!(sink = %sink, prefix, code = "nats_state_no_stream", "no stream stores {prefix}.>: the present is not kept (create one with max_msgs_per_subject = 1, docs/nats.md, or set state = false)");
                    self.state = None;
                    return;
                }
                Err(e) => {
                    link.error(
                        Instant::now(),
                        "cannot purge the state of an earlier run yet; retrying",
                        &e,
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn connect(&self, link: &Arc<Link>) -> Result<async_nats::Client, NatsSinkError> {
        let options = connect_options(&self.cfg, self.servers.login.as_ref(), link.clone())?;
        // With retry_on_initial_connect this returns at once; it fails only on a bad URL.
        options
            .connect(self.servers.addrs.clone())
            .await
            .map_err(|e| NatsSinkError::ClientGone(e.to_string()))
    }

    /// What Routr's payloads need: the SIP domain (`sip_domain`, else the host).
    fn routr(&self) -> routr::Context<'_> {
        routr::Context {
            metadata: &self.metadata,
            endpoints: &self.endpoint_metadata,
            prefix: self.cfg.metadata_prefix.as_deref().unwrap_or(""),
            domain: self
                .cfg
                .sip_domain
                .as_deref()
                .unwrap_or(self.publisher.host().as_str()),
        }
    }

    /// The subject and payload of `ev` in this sink's dialect; `None` when the dialect
    /// does not send it.
    fn encode(
        &self,
        link: &Link,
        ev: &Event,
        buf: &mut Encoded,
    ) -> Option<heapless::String<SUBJECT_LEN>> {
        let mut subject = heapless::String::<SUBJECT_LEN>::new();
        let encoded = match self.dialect {
            NatsDialect::Routr => routr::encode(ev, &self.routr(), buf).map(|s| {
                s.map(|suffix| {
                    let _ = write_subject(&mut subject, &[&self.subject, suffix]);
                })
            }),
            NatsDialect::Native => native::encode(ev, buf).map(|()| {
                let _ = write_subject(
                    &mut subject,
                    &[&self.subject, ev.class().as_str(), ev.name()],
                );
                Some(())
            }),
        };
        match encoded {
            Ok(Some(())) => Some(subject),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(sink = %link.reporter.sink(), seq = ev.seq, error = %e, "event not sent");
                None
            }
        }
    }

    /// Core NATS: publish the batch, then wait until async-nats flushed it to a live
    /// connection (while the server is away, that wait is where the sink holds back).
    async fn send(
        &self,
        client: &async_nats::Client,
        link: &Link,
        batch: &[Event],
        buf: &mut Encoded,
    ) -> Result<u64, NatsSinkError> {
        let mut n = 0;
        for ev in batch {
            let Some(subject) = self.encode(link, ev, buf) else {
                continue;
            };
            client
                .publish(subject.as_str().to_string(), buf.to_vec().into())
                .await
                .map_err(|e| NatsSinkError::ClientGone(e.to_string()))?;
            n += 1;
        }
        client
            .flush()
            .await
            .map_err(|e| NatsSinkError::ClientGone(e.to_string()))?;
        Ok(n)
    }

    /// JetStream: each event in turn, sent until acknowledged, under an id the stream
    /// deduplicates on, so a retry after a lost acknowledgement is not stored twice.
    async fn send_acked(
        &self,
        client: &async_nats::Client,
        link: &Link,
        batch: &[Event],
        buf: &mut Encoded,
    ) -> Result<u64, NatsSinkError> {
        let mut js = async_nats::jetstream::new(client.clone());
        js.set_timeout(ACK_TIMEOUT);
        let mut n = 0;
        for ev in batch {
            let Some(subject) = self.encode(link, ev, buf) else {
                continue;
            };
            let payload = buf.to_vec();
            let entry = self.state.as_deref().zip(crate::state::entry(&ev.body));
            // The present after the event: its latest event, or nothing once it is gone.
            let piece = entry.map(|(prefix, entry)| {
                let subject = state::subject(prefix, &entry);
                let payload = if entry.set {
                    payload.clone()
                } else {
                    Vec::new()
                };
                (subject, payload)
            });
            publish_acked(&js, client, link, subject.as_str(), headers(ev), payload).await?;
            if let Some((subject, payload)) = piece {
                publish_acked(&js, client, link, &subject, state_headers(ev), payload).await?;
            }
            n += 1;
        }
        Ok(n)
    }
}

/// Publishes one message until JetStream acknowledges it (see `send_acked`).
async fn publish_acked(
    js: &async_nats::jetstream::Context,
    client: &async_nats::Client,
    link: &Link,
    subject: &str,
    headers: async_nats::HeaderMap,
    payload: Vec<u8>,
) -> Result<(), NatsSinkError> {
    let mut retries = 0;
    loop {
        let acked = match js
            .publish_with_headers(subject.to_string(), headers.clone(), payload.clone().into())
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match acked {
            Ok(_) => return Ok(()),
            Err(e) => link.error(
                Instant::now(),
                &format!("JetStream did not acknowledge an event on {subject}; retrying until it does (is there a stream for it?)"),
                &e,
            ),
        }
        // Wait for a live connection before sending again, so that retries do not pile
        // up in the client while the server is away.
        client
            .flush()
            .await
            .map_err(|e| NatsSinkError::ClientGone(e.to_string()))?;
        tokio::time::sleep(backoff(retries)).await;
        retries += 1;
    }
}

/// Waits for an event, then takes what else is waiting, up to a window. `false` when the
/// bus is closed and the ring drained.
async fn fill(rx: &mut SinkRx, batch: &mut Vec<Event>) -> bool {
    let Some(ev) = rx.recv().await else {
        return false;
    };
    batch.push(ev);
    while batch.len() < PUBLISH_WINDOW {
        match rx.try_recv() {
            TryRecv::Event(ev) => batch.push(ev),
            TryRecv::Empty | TryRecv::Closed => break,
        }
    }
    true
}
