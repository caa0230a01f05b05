//! NATS sink: events to NATS subjects with async-nats, in the `routr` or `native` dialect.
//!
//! Design: during an outage events wait in the sink's own ring (the bus ring,
//! `buffers.per_sink`), not in the client. The sink hands async-nats at most
//! [`PUBLISH_WINDOW`] events, then flushes; async-nats completes a flush only once the
//! bytes went to a live connection, so while the server is away the sink waits on that
//! flush and takes nothing more off its ring. The ring then overflows oldest-first and
//! counts what it drops; the client never holds more than one window. With
//! `jetstream = true` every event is published with a `Nats-Msg-Id` and retried until the
//! stream acknowledges it (at least once into the stream, deduplicated by the id).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{ConnectOptions, HeaderMap, ServerAddr};
use serde::Deserialize;

use crate::bus::{Publisher, SinkRx, TryRecv};
use crate::dialect::{native, routr, Encoded};
use crate::event::{self, Body, Event, SinkStatus};
use crate::settings::{resolve_secret, ConfigError};
use crate::sink::SinkConfig;

/// Events handed to async-nats before the sink waits for them to be flushed. It bounds
/// what can sit in the client (and be lost if the connection breaks at that instant)
/// and what an outage holds beyond the ring.
pub const PUBLISH_WINDOW: usize = 64;
/// Capacity of async-nats's command channel (its default is 2048). The sink never has
/// more than a window of publishes and one flush queued, so `publish` never waits on it.
pub const CLIENT_CAPACITY: usize = 2 * PUBLISH_WINDOW;
/// Messages async-nats may queue per subscription; the sink's only subscription is the
/// inbox JetStream acknowledgements arrive on, and it awaits each one before the next.
pub const SUBSCRIPTION_CAPACITY: usize = 16;
/// How long a JetStream acknowledgement may take before the event is sent again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// First delay before reconnecting (the first retry is immediate) and before a retry.
pub const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest delay between reconnect attempts or retries: the backoff doubles up to this.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// Most often a repeated error (failed reconnects, refused publishes) is logged.
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// Longest base subject: the whole subject (`<base>.<class>.<event>`) stays under
/// [`SUBJECT_LEN`].
pub const MAX_BASE_SUBJECT_LEN: usize = 96;
/// Longest subject published.
pub const SUBJECT_LEN: usize = 128;
/// Routr's defaults when only `NATS_PUBLISHER_ENABLED=true` is set.
pub const ROUTR_DEFAULT_SUBJECT: &str = "routr";

/// The header JetStream deduplicates on.
const MSG_ID_HEADER: &str = "Nats-Msg-Id";

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
fn validate_url(key: &str, url: &str) -> Result<ServerAddr, ConfigError> {
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
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    format!("{key}.creds_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            ConnectOptions::new().credentials(&text).map_err(|e| {
                ConfigError::new(
                    format!("{key}.creds_file"),
                    format!("{} is not a NATS .creds file: {e}", path.display()),
                )
            })?;
        }
        if let Some(path) = &self.tls_ca_file {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    format!("{key}.tls_ca_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
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

    /// The client options: credentials, TLS, bounded client buffers, reconnect forever.
    fn connect_options(&self, link: Arc<Link>) -> Result<ConnectOptions, NatsSinkError> {
        let mut o = ConnectOptions::new()
            .name(&self.name)
            // A server down at start must not stop pbxtap: connect in the background.
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .client_capacity(CLIENT_CAPACITY)
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .request_timeout(Some(ACK_TIMEOUT))
            .event_callback(move |e| {
                let link = link.clone();
                async move { link.on_client_event(e, Instant::now()) }
            });
        if let (Some(u), Some(p)) = (&self.user, &self.password) {
            o = o.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &self.token {
            o = o.token(t.clone());
        }
        if let Some(seed) = &self.nkey {
            o = o.nkey(seed.clone());
        }
        if let Some(path) = &self.creds_file {
            let text = std::fs::read_to_string(path).map_err(|e| NatsSinkError::Credentials {
                path: path.clone(),
                error: e.to_string(),
            })?;
            o = o
                .credentials(&text)
                .map_err(|e| NatsSinkError::Credentials {
                    path: path.clone(),
                    error: e.to_string(),
                })?;
        }
        if self.tls {
            o = o.require_tls(true);
        }
        if let Some(ca) = &self.tls_ca_file {
            o = o.add_root_certificates(ca.clone());
        }
        Ok(o)
    }
}

/// Delay before reconnect attempt `attempts` (1 for the first): immediate, then
/// doubling from [`RETRY_MIN`] up to [`RETRY_MAX`], less up to a quarter of jitter so a
/// fleet of appliances does not reconnect in step.
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let full = backoff(attempts - 2);
    full - full.mul_f64(fastrand::f64() / 4.0)
}

/// [`RETRY_MIN`] doubled `n` times, at most [`RETRY_MAX`].
fn backoff(n: usize) -> Duration {
    RETRY_MIN.saturating_mul(1u32 << n.min(16)).min(RETRY_MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum NatsSinkError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot use the credentials file {}: {error}", path.display())]
    Credentials { path: PathBuf, error: String },
    #[error("the NATS client stopped: {0}")]
    ClientGone(String),
}

/// A change in whether the sink reaches its server, worth a `system.sink_*` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkChange {
    Down,
    Up,
}

/// Whether the sink reaches its server, from what the client reports: each change is
/// reported once (not once per failed attempt), and repeated errors are logged at most
/// once per [`ERROR_LOG_INTERVAL`], with how many were left out. No I/O.
#[derive(Debug, Default)]
pub struct LinkState {
    /// `None` until the first connect or failure.
    up: Option<bool>,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl LinkState {
    /// Connected (again). `Up` only after a `Down`.
    pub fn connected(&mut self) -> Option<LinkChange> {
        let was = self.up.replace(true);
        (was == Some(false)).then_some(LinkChange::Up)
    }

    /// The connection broke, or an attempt to make one failed.
    pub fn failed(&mut self) -> Option<LinkChange> {
        let was = self.up.replace(false);
        (was != Some(false)).then_some(LinkChange::Down)
    }

    /// Whether an error seen at `now` should be logged; `Some(n)` with the number of
    /// errors left out since the last one logged.
    pub fn log_error(&mut self, now: Instant) -> Option<u64> {
        match self.last_log {
            Some(t) if now.duration_since(t) < ERROR_LOG_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_log = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// What the client's event callback and the delivery loop share: the link state, and the
/// publisher that tells the other sinks.
struct Link {
    sink: event::Text,
    url: String,
    publisher: Publisher,
    state: Mutex<LinkState>,
}

impl Link {
    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn report(&self, change: Option<LinkChange>, reason: &str) {
        let status = SinkStatus {
            sink: self.sink.clone(),
            reason: event::text(reason),
        };
        match change {
            Some(LinkChange::Down) => {
                tracing::warn!(sink = %self.sink, url = %self.url, reason, "NATS unreachable; events wait in the sink's ring");
                self.publisher.publish_body(Body::SinkDown(status));
            }
            Some(LinkChange::Up) => {
                tracing::info!(sink = %self.sink, url = %self.url, "NATS reachable again; sending what the ring holds");
                self.publisher.publish_body(Body::SinkUp(status));
            }
            None => {}
        }
    }

    /// A repeated error: logged at most once per interval.
    fn error(&self, now: Instant, what: &str, error: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.state().log_error(now) {
            tracing::warn!(sink = %self.sink, url = %self.url, suppressed, error = %error, "{what}");
        }
    }

    fn on_client_event(&self, e: async_nats::Event, now: Instant) {
        use async_nats::Event as E;
        match e {
            E::Connected => {
                let change = self.state().connected();
                if change.is_none() {
                    tracing::info!(sink = %self.sink, url = %self.url, "connected to NATS");
                }
                self.report(change, "connected");
            }
            E::Disconnected => {
                let change = self.state().failed();
                self.report(change, "disconnected from the NATS server");
            }
            E::ClientError(err) => {
                let change = self.state().failed();
                self.report(change, &format!("cannot connect: {err}"));
                self.error(
                    now,
                    "cannot connect to NATS; retrying (RUST_LOG=async_nats=debug shows why)",
                    &err,
                );
            }
            E::ServerError(err) => self.error(now, "the NATS server reported an error", &err),
            E::LameDuckMode => {
                tracing::info!(sink = %self.sink, url = %self.url, "NATS server entering lame duck mode")
            }
            other => tracing::debug!(sink = %self.sink, event = %other, "NATS client event"),
        }
    }
}

pub struct NatsSink {
    cfg: NatsSinkConfig,
    dialect: NatsDialect,
    publisher: Publisher,
    /// Start time in microseconds: makes JetStream message ids of this run unique, since
    /// bus sequence numbers start again at 1 on every start.
    run_id: u64,
}

impl NatsSink {
    /// Validates the settings. Never fails because the server is down: the connection is
    /// made (and remade) in the background.
    pub async fn new(cfg: &NatsSinkConfig, publisher: Publisher) -> Result<Self, NatsSinkError> {
        cfg.validate("nats")?;
        let dialect = NatsDialect::parse("nats.dialect", &cfg.dialect)?;
        // async-nats builds its rustls config (for tls://, `tls`, or a server that asks for
        // TLS) with the process-wide provider: ring, as everywhere in pbxtap.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(NatsSink {
            cfg: cfg.clone(),
            dialect,
            publisher,
            run_id: event::now_micros(),
        })
    }

    /// Delivers events until the bus closes and the ring is drained.
    pub async fn run(self, mut rx: SinkRx) {
        let link = Arc::new(Link {
            sink: rx.counters().name.clone(),
            url: redacted(&self.cfg.url),
            publisher: self.publisher.clone(),
            state: Mutex::new(LinkState::default()),
        });
        let mut batch: Vec<Event> = Vec::with_capacity(PUBLISH_WINDOW);
        let mut buf = Box::new(Encoded::new());
        let mut failures = 0;
        loop {
            let client = match self.connect(&link).await {
                Ok(c) => c,
                Err(e) => {
                    link.report(link.state().failed(), &e.to_string());
                    link.error(Instant::now(), "cannot start the NATS client", &e);
                    tokio::time::sleep(backoff(failures)).await;
                    failures += 1;
                    continue;
                }
            };
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
                        link.report(link.state().failed(), &e.to_string());
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

    async fn connect(&self, link: &Arc<Link>) -> Result<async_nats::Client, NatsSinkError> {
        let options = self.cfg.connect_options(link.clone())?;
        // With retry_on_initial_connect this returns at once; it fails only on a bad URL.
        options
            .connect(self.cfg.url.as_str())
            .await
            .map_err(|e| NatsSinkError::ClientGone(e.to_string()))
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
            NatsDialect::Routr => routr::encode(ev, buf).map(|s| {
                s.map(|suffix| {
                    let _ = write_subject(&mut subject, &[&self.cfg.subject, suffix]);
                })
            }),
            NatsDialect::Native => native::encode(ev, buf).map(|()| {
                let _ = write_subject(
                    &mut subject,
                    &[&self.cfg.subject, ev.class().as_str(), ev.name()],
                );
                Some(())
            }),
        };
        match encoded {
            Ok(Some(())) => Some(subject),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(sink = %link.sink, seq = ev.seq, error = %e, "event not sent");
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
            let id = msg_id(&ev.host, self.run_id, ev.seq);
            let mut retries = 0;
            loop {
                let mut headers = HeaderMap::new();
                headers.insert(MSG_ID_HEADER, id.as_str());
                let acked = match js
                    .publish_with_headers(
                        subject.as_str().to_string(),
                        headers,
                        payload.clone().into(),
                    )
                    .await
                {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                match acked {
                    Ok(_) => break,
                    Err(e) => link.error(
                        Instant::now(),
                        &format!("JetStream did not acknowledge an event on {subject}; retrying until it does (is there a stream for it?)"),
                        &e,
                    ),
                }
                // Wait for a live connection before sending again, so that retries do
                // not pile up in the client while the server is away.
                client
                    .flush()
                    .await
                    .map_err(|e| NatsSinkError::ClientGone(e.to_string()))?;
                tokio::time::sleep(backoff(retries)).await;
                retries += 1;
            }
            n += 1;
        }
        Ok(n)
    }
}

/// `url` without a user name or password, for logs.
fn redacted(url: &str) -> String {
    match url.parse::<ServerAddr>() {
        Ok(addr) => {
            let mut u = addr.into_inner();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// Writes `parts` joined by dots into `out`; `Err` when it does not fit.
fn write_subject<const N: usize>(out: &mut heapless::String<N>, parts: &[&str]) -> Result<(), ()> {
    out.clear();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push('.').map_err(|_| ())?;
        }
        out.push_str(p).map_err(|_| ())?;
    }
    Ok(())
}

/// The JetStream message id of an event: `<host>.<run>.<seq>`.
fn msg_id(host: &str, run_id: u64, seq: u64) -> heapless::String<{ event::TEXT_LEN + 42 }> {
    let mut id = heapless::String::new();
    let _ = core::fmt::write(&mut id, format_args!("{host}.{run_id}.{seq}"));
    id
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

    #[test]
    fn link_changes_are_reported_once_and_errors_rate_limited() {
        let mut s = LinkState::default();
        assert_eq!(s.connected(), None); // first connect: nothing was down
        assert_eq!(s.failed(), Some(LinkChange::Down));
        assert_eq!(s.failed(), None); // every failed attempt after it: no new event
        assert_eq!(s.connected(), Some(LinkChange::Up));
        let mut s = LinkState::default();
        assert_eq!(s.failed(), Some(LinkChange::Down)); // down at start
        let t0 = Instant::now();
        assert_eq!(s.log_error(t0), Some(0));
        assert_eq!(s.log_error(t0 + Duration::from_secs(1)), None);
        assert_eq!(s.log_error(t0 + Duration::from_secs(2)), None);
        assert_eq!(s.log_error(t0 + ERROR_LOG_INTERVAL), Some(2));
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_below_it() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(backoff(0), RETRY_MIN);
        assert_eq!(backoff(1), RETRY_MIN * 2);
        assert_eq!(backoff(40), RETRY_MAX);
        for attempts in 2..50 {
            let d = reconnect_delay(attempts);
            let full = backoff(attempts - 2);
            assert!(d <= full && d >= full.mul_f64(0.75), "{attempts}: {d:?}");
        }
    }

    #[test]
    fn subjects_and_ids() {
        let mut s = heapless::String::<SUBJECT_LEN>::new();
        write_subject(&mut s, &["routr", "call.started"]).unwrap();
        assert_eq!(s, "routr.call.started");
        let mut tiny = heapless::String::<4>::new();
        assert!(write_subject(&mut tiny, &["routr", "x"]).is_err());
        // The longest base subject and event name fit.
        let base = "b".repeat(MAX_BASE_SUBJECT_LEN);
        write_subject(&mut s, &[&base, "system", "asterisk_restarted"]).unwrap();
        assert_eq!(msg_id("pbx1", 17, 42), "pbx1.17.42");
        assert_eq!(redacted("nats://u:secret@h:4222"), "nats://h:4222");
        assert_eq!(redacted("h:4222"), "nats://h:4222");
        assert_eq!(
            msg_id(&"h".repeat(event::TEXT_LEN), u64::MAX, u64::MAX).len(),
            event::TEXT_LEN + 42
        );
    }
}
