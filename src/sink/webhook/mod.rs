//! Webhook sink: one HTTP(S) POST per event, in the enswitch dialect (a form, as Enswitch
//! and ASTPP send) or native JSON, with an auth key as URL parameter and an optional
//! HMAC-SHA256 signature.
//!
//! Flow: events wait in the sink's bus ring. At most `max_in_flight` are taken off it into
//! slots, one per call at a time, so a call's events arrive in order while different calls
//! go in parallel. A slot's request is retried with capped exponential backoff on 5xx,
//! timeouts and connection errors until the event is `max_age_secs` old; 4xx is final.
//! The tap never waits on this sink: while the endpoint is slow or dead the ring fills and
//! drops its oldest events, counted by the bus.

mod policy;
mod sign;
mod slots;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use tokio::task::JoinSet;

use crate::bus::{Publisher, SinkRx};
use crate::config::{resolve_secret, ConfigError};
use crate::dialect::{enswitch, native, Encoded};
use crate::event::{self, Body, Event, Id, SinkStatus, Value};
use policy::{Health, LogLimit, RetryPolicy, StatusesSeen, Transition, Verdict};
pub use sign::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use slots::Slots;

/// Most requests in flight `max_in_flight` may ask for.
pub const MAX_IN_FLIGHT: usize = 64;
/// Most bytes of a response body read (and thrown away) so that its connection can be
/// reused; after more, the connection is closed instead.
pub const MAX_RESPONSE_DRAIN: usize = 64 * 1024;
/// Read buffer of one connection, and so the largest response head accepted (hyper's
/// default is about 400 KiB); a larger head fails the attempt, which is retried.
pub const RESPONSE_BUFFER: usize = 16 * 1024;
/// How long an idle connection is kept open for the next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The URL parameter `authkey` is sent in, as Enswitch's own receivers expect.
pub const AUTHKEY_PARAM: &str = "authkey";

/// How events are written in the POST body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookDialect {
    /// `application/x-www-form-urlencoded`: `class`, `event`, `timestamp` and the fields.
    Enswitch,
    /// `application/json`: the native event object.
    Native,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSinkConfig {
    /// `http://` or `https://` URL every event is POSTed to; may carry query parameters.
    pub url: String,
    pub dialect: WebhookDialect,
    /// Added to the URL as `authkey=<key>`; `authkey_file` reads it from a file instead.
    pub authkey: Option<String>,
    pub authkey_file: Option<PathBuf>,
    /// Key of the HMAC-SHA256 signature sent in `X-Pbxtap-Signature`; none: unsigned.
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// PEM file of CA certificates trusted besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Milliseconds a request may take, connecting included, before it is retried.
    pub timeout_ms: u64,
    /// Requests in flight at once (at most one per call).
    pub max_in_flight: usize,
    /// First retry delay in milliseconds; doubles per attempt up to `retry_max_secs`.
    pub retry_min_ms: u64,
    pub retry_max_secs: u64,
    /// Seconds after its first attempt an event is given up (counted and logged).
    pub max_age_secs: u64,
}

impl Default for WebhookSinkConfig {
    fn default() -> Self {
        WebhookSinkConfig {
            url: String::new(),
            dialect: WebhookDialect::Enswitch,
            authkey: None,
            authkey_file: None,
            secret: None,
            secret_file: None,
            ca_file: None,
            timeout_ms: 2_000,
            max_in_flight: 4,
            retry_min_ms: 250,
            retry_max_secs: 30,
            max_age_secs: 120,
        }
    }
}

impl WebhookSinkConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        self.uri(key)?;
        for (name, value) in [("authkey", &self.authkey), ("secret", &self.secret)] {
            if value.as_deref() == Some("") {
                return Err(ConfigError::new(format!("{key}.{name}"), "is empty"));
            }
        }
        if !(10..=600_000).contains(&self.timeout_ms) {
            return Err(ConfigError::new(
                format!("{key}.timeout_ms"),
                "must be between 10 and 600000 milliseconds",
            ));
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            return Err(ConfigError::new(
                format!("{key}.max_in_flight"),
                format!("must be between 1 and {MAX_IN_FLIGHT}"),
            ));
        }
        if self.retry_min_ms == 0 || self.retry_max_secs.saturating_mul(1000) < self.retry_min_ms {
            return Err(ConfigError::new(
                format!("{key}.retry_min_ms"),
                "must be at least 1 and not above retry_max_secs",
            ));
        }
        if self.max_age_secs > 86_400 {
            return Err(ConfigError::new(
                format!("{key}.max_age_secs"),
                "must be at most 86400 (a day); events wait in the ring, not in retries",
            ));
        }
        Ok(())
    }

    pub fn resolve_secrets(
        &mut self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        resolve_secret(
            &format!("{key}.authkey_file"),
            &mut self.authkey,
            &mut self.authkey_file,
            env,
        )?;
        resolve_secret(
            &format!("{key}.secret_file"),
            &mut self.secret,
            &mut self.secret_file,
            env,
        )
    }

    /// The URL requests go to: `url` with `authkey` added as a parameter.
    fn uri(&self, key: &str) -> Result<Uri, ConfigError> {
        let url_key = format!("{key}.url");
        if self.url.is_empty() {
            return Err(ConfigError::new(
                url_key,
                "missing: the URL events are POSTed to, e.g. https://crm.example/pbx?authkey=KEY",
            ));
        }
        let mut url = self.url.clone();
        if let Some(k) = &self.authkey {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(AUTHKEY_PARAM);
            url.push('=');
            url.push_str(&percent_encode(k));
        }
        // The URL is not echoed: it may hold the auth key.
        let uri: Uri = url
            .parse()
            .map_err(|e| ConfigError::new(&url_key, format!("is not a valid URL: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(ConfigError::new(
                    url_key,
                    "must start with http:// or https://",
                ))
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(ConfigError::new(url_key, "has no host"));
        }
        Ok(uri)
    }
}

/// Percent-encodes a URL parameter value: unreserved characters as they are.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookSinkError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot use ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error(
        "no CA certificate to check the https endpoint with: the system has none; set ca_file"
    )]
    NoRoots,
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What every request needs; shared by the requests in flight.
struct Endpoint {
    client: HttpClient,
    uri: Uri,
    /// `scheme://host:port/path`: the URL without its query (which may hold the auth key),
    /// for logs.
    shown: String,
    content_type: HeaderValue,
    secret: Option<Box<[u8]>>,
    timeout: Duration,
}

pub struct WebhookSink {
    endpoint: Arc<Endpoint>,
    dialect: WebhookDialect,
    max_in_flight: usize,
    retry: RetryPolicy,
    publisher: Publisher,
}

impl WebhookSink {
    /// Checks the config and sets up the HTTP client. Does not connect: the endpoint may
    /// be down at start.
    pub async fn new(
        cfg: &WebhookSinkConfig,
        publisher: Publisher,
    ) -> Result<Self, WebhookSinkError> {
        cfg.validate("webhook")?;
        let uri = cfg.uri("webhook")?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let tls = tls_config(uri.scheme_str() == Some("https"), cfg.ca_file.as_ref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // Design: the pool keeps at most one idle connection per request in flight; the
        // client queues nothing itself: each request is one of our slots.
        let client = Client::builder(TokioExecutor::new())
            .http1_max_buf_size(RESPONSE_BUFFER)
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(cfg.max_in_flight)
            .build(connector);
        let shown = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map(|a| a.as_str()).unwrap_or(""),
            uri.path()
        );
        let content_type = HeaderValue::from_static(match cfg.dialect {
            WebhookDialect::Enswitch => "application/x-www-form-urlencoded",
            WebhookDialect::Native => "application/json",
        });
        Ok(WebhookSink {
            endpoint: Arc::new(Endpoint {
                client,
                uri,
                shown,
                content_type,
                secret: cfg.secret.as_ref().map(|s| s.as_bytes().into()),
                timeout,
            }),
            dialect: cfg.dialect,
            max_in_flight: cfg.max_in_flight,
            retry: RetryPolicy {
                min: Duration::from_millis(cfg.retry_min_ms),
                max: Duration::from_secs(cfg.retry_max_secs),
                max_age: Duration::from_secs(cfg.max_age_secs),
            },
            publisher,
        })
    }

    /// Delivers events until the bus closes and every event taken is settled.
    pub async fn run(self, mut rx: SinkRx) {
        let mut run = Run {
            name: rx.counters().name.clone(),
            sink: &self,
            slots: Slots::new(self.max_in_flight),
            tasks: JoinSet::new(),
            health: Health::default(),
            failure_log: LogLimit::default(),
            give_up_log: LogLimit::default(),
            refused: StatusesSeen::default(),
            rejected: 0,
            given_up: 0,
        };
        tracing::info!(sink = %run.name, endpoint = %self.endpoint.shown, "webhook sink started");
        let mut buf = Encoded::new();
        // An event whose call has a request in flight, or that found every slot taken.
        let mut waiting: Option<(Id, InFlight)> = None;
        let mut open = true;
        loop {
            if let Some((key, item)) = waiting.take() {
                waiting = run.admit(key, item);
            }
            if !open && waiting.is_none() && run.slots.is_empty() {
                break;
            }
            let can_take = open && waiting.is_none() && run.slots.has_free();
            // Invariant: every occupied slot has one task, so when nothing can be taken
            // (slots full, or an event waiting for its call's slot) a task is running.
            tokio::select! {
                Some(done) = run.tasks.join_next_with_id(), if !run.tasks.is_empty() => {
                    run.settle(done, &rx);
                }
                ev = rx.recv(), if can_take => match ev {
                    None => open = false,
                    Some(ev) => {
                        if let Some((key, item)) = run.prepare(&ev, &mut buf) {
                            waiting = run.admit(key, item);
                        }
                    }
                },
            }
        }
        let c = rx.counters();
        tracing::info!(
            sink = %run.name,
            delivered = c.delivered.load(std::sync::atomic::Ordering::Relaxed),
            rejected = run.rejected,
            given_up = run.given_up,
            dropped = c.dropped.load(std::sync::atomic::Ordering::Relaxed),
            "webhook sink stopped"
        );
    }
}

/// One event being delivered.
struct InFlight {
    body: Bytes,
    seq: u64,
    first: Instant,
    attempts: u32,
    task: Option<tokio::task::Id>,
}

type Attempt = Result<u16, AttemptError>;

/// The state of one `run`.
struct Run<'a> {
    name: event::Text,
    sink: &'a WebhookSink,
    slots: Slots<InFlight>,
    tasks: JoinSet<(usize, Attempt)>,
    health: Health,
    failure_log: LogLimit,
    give_up_log: LogLimit,
    refused: StatusesSeen,
    rejected: u64,
    given_up: u64,
}

impl Run<'_> {
    /// Encodes `ev` into a request body; its key is its call, if any.
    fn prepare(&mut self, ev: &Event, buf: &mut Encoded) -> Option<(Id, InFlight)> {
        let encoded = match self.sink.dialect {
            WebhookDialect::Enswitch => enswitch::encode_form(ev, buf),
            WebhookDialect::Native => native::encode(ev, buf),
        };
        if let Err(e) = encoded {
            self.given_up += 1;
            tracing::error!(sink = %self.name, seq = ev.seq, error = %e, "event not sent");
            return None;
        }
        let key = match ev.field("call_id") {
            Some(Value::Str(id)) => event::text(id),
            _ => Id::new(),
        };
        let item = InFlight {
            body: Bytes::copy_from_slice(buf),
            seq: ev.seq,
            first: Instant::now(),
            attempts: 0,
            task: None,
        };
        Some((key, item))
    }

    /// Starts `item` in a free slot, or hands it back to wait.
    fn admit(&mut self, key: Id, item: InFlight) -> Option<(Id, InFlight)> {
        match self.slots.admit(&key, item) {
            Ok(i) => {
                self.spawn(i, Duration::ZERO);
                None
            }
            Err(item) => Some((key, item)),
        }
    }

    /// Sends slot `i`'s event after `delay`.
    fn spawn(&mut self, i: usize, delay: Duration) {
        let Some(item) = self.slots.get_mut(i) else {
            return;
        };
        let endpoint = self.sink.endpoint.clone();
        let body = item.body.clone();
        let handle = self.tasks.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            (i, attempt(&endpoint, body).await)
        });
        item.task = Some(handle.id());
    }

    /// Acts on a finished attempt: done, retried later, or given up.
    fn settle(
        &mut self,
        done: Result<(tokio::task::Id, (usize, Attempt)), tokio::task::JoinError>,
        rx: &SinkRx,
    ) {
        let (i, outcome) = match done {
            Ok((_, r)) => r,
            Err(e) => {
                // The attempt panicked: treat it as a failed attempt of its slot.
                let i = (0..MAX_IN_FLIGHT).find(|&i| {
                    self.slots
                        .get_mut(i)
                        .is_some_and(|s| s.task == Some(e.id()))
                });
                let Some(i) = i else { return };
                (i, Err(AttemptError::Panicked))
            }
        };
        let now = Instant::now();
        let Some(item) = self.slots.get_mut(i) else {
            return;
        };
        item.attempts += 1;
        let (seq, attempts, first) = (item.seq, item.attempts, item.first);
        let error = match outcome {
            Ok(status) => match policy::verdict(status) {
                Verdict::Delivered => {
                    let t = self.health.answered();
                    self.announce(t, "");
                    rx.delivered(1);
                    self.slots.release(i);
                    return;
                }
                Verdict::Rejected => {
                    let t = self.health.answered();
                    self.announce(t, "");
                    self.rejected += 1;
                    if self.refused.first_time(status) {
                        tracing::warn!(
                            sink = %self.name,
                            endpoint = %self.sink.endpoint.shown,
                            status,
                            seq,
                            "endpoint refused an event; refused events are not retried \
                             (logged once per status; check the URL, auth key and signature)"
                        );
                    }
                    self.slots.release(i);
                    return;
                }
                Verdict::Retry => AttemptError::Status(status),
            },
            Err(e) => e,
        };
        let t = self.health.failed();
        self.announce(t, &error.to_string());
        match self
            .sink
            .retry
            .next_delay(attempts, first, now, fastrand::f64())
        {
            Some(delay) => {
                if let Some(suppressed) = self.failure_log.allow(now) {
                    tracing::warn!(
                        sink = %self.name,
                        endpoint = %self.sink.endpoint.shown,
                        error = %error,
                        seq,
                        attempts,
                        retry_in_ms = delay.as_millis() as u64,
                        suppressed,
                        "webhook request failed; retrying"
                    );
                }
                self.spawn(i, delay);
            }
            None => {
                self.given_up += 1;
                if let Some(suppressed) = self.give_up_log.allow(now) {
                    tracing::error!(
                        sink = %self.name,
                        endpoint = %self.sink.endpoint.shown,
                        error = %error,
                        seq,
                        attempts,
                        given_up = self.given_up,
                        suppressed,
                        "event given up: still failing after max_age_secs"
                    );
                }
                self.slots.release(i);
            }
        }
    }

    /// Tells every sink that the endpoint went down or came back.
    fn announce(&self, transition: Option<Transition>, reason: &str) {
        let status = |reason: &str| SinkStatus {
            sink: self.name.clone(),
            reason: event::text(reason),
        };
        match transition {
            Some(Transition::Down) => {
                tracing::warn!(
                    sink = %self.name,
                    endpoint = %self.sink.endpoint.shown,
                    error = reason,
                    "webhook endpoint down; events wait in the ring (oldest dropped when full)"
                );
                self.sink
                    .publisher
                    .publish_body(Body::SinkDown(status(reason)));
            }
            Some(Transition::Up) => {
                tracing::info!(sink = %self.name, endpoint = %self.sink.endpoint.shown, "webhook endpoint answers again");
                self.sink
                    .publisher
                    .publish_body(Body::SinkUp(status("endpoint answers again")));
            }
            None => {}
        }
    }
}

/// Why an attempt did not get an answer the sink can act on.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("HTTP {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{}", error_chain(.0))]
    Http(hyper_util::client::legacy::Error),
    #[error("the request task panicked")]
    Panicked,
}

/// An error and its causes: `client error (Connect): tcp connect error: Connection refused`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// One POST of `body`: the endpoint's status, or why there was none.
async fn attempt(endpoint: &Endpoint, body: Bytes) -> Attempt {
    let mut req = hyper::Request::post(endpoint.uri.clone())
        .header(CONTENT_TYPE, endpoint.content_type.clone())
        .header(
            USER_AGENT,
            HeaderValue::from_static(concat!("pbxtap/", env!("CARGO_PKG_VERSION"))),
        );
    if let Some(secret) = &endpoint.secret {
        let now = event::now_micros() / 1_000_000;
        req = req
            .header(TIMESTAMP_HEADER, now)
            .header(SIGNATURE_HEADER, sign(secret, now, &body).as_str());
    }
    // Cannot fail: the URI was checked at start and the headers are valid.
    let req = req.body(Full::new(body)).expect("request parts are valid");
    let response = tokio::time::timeout(endpoint.timeout, endpoint.client.request(req))
        .await
        .map_err(|_| AttemptError::Timeout(endpoint.timeout))?
        .map_err(AttemptError::Http)?;
    let status = response.status().as_u16();
    // The body is ignored (as Enswitch does); reading it lets the connection be reused.
    let mut body = response.into_body();
    let _ = tokio::time::timeout(endpoint.timeout, async {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > MAX_RESPONSE_DRAIN {
                break;
            }
        }
    })
    .await;
    Ok(status)
}

/// rustls with ring: the system's CA certificates (for https) and those of `ca_file`.
fn tls_config(
    https: bool,
    ca_file: Option<&PathBuf>,
) -> Result<rustls::ClientConfig, WebhookSinkError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    if https {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(sink = "webhook", error = %e, "some system CA certificates could not be read");
        }
        roots.add_parsable_certificates(native.certs);
    }
    if let Some(path) = ca_file {
        let bad = |reason: String| WebhookSinkError::CaFile {
            path: path.clone(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        }
    }
    if https && roots.is_empty() {
        return Err(WebhookSinkError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn config(sink: &str) -> Result<Config, ConfigError> {
        Config::from_text(
            &format!("[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"webhook\"\n{sink}"),
            &no_env,
        )
    }

    fn webhook(cfg: &Config) -> &WebhookSinkConfig {
        match &cfg.sinks[0] {
            crate::sink::SinkConfig::Webhook(w) => w,
            other => panic!("not a webhook: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_the_authkey_parameter() {
        let cfg = config("url = \"https://crm.example/pbx?x=1\"\nauthkey = \"a b&c\"\n").unwrap();
        let w = webhook(&cfg);
        assert_eq!(w.dialect, WebhookDialect::Enswitch);
        assert_eq!((w.timeout_ms, w.max_in_flight), (2_000, 4));
        assert_eq!(
            w.uri("k").unwrap().to_string(),
            "https://crm.example/pbx?x=1&authkey=a%20b%26c"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("", "sinks[0].url"),
            ("url = \"ftp://x/\"", "sinks[0].url"),
            ("url = \"http://\"", "sinks[0].url"),
            ("url = \"http://a b/\"", "sinks[0].url"),
            ("url = \"http://x/\"\ntimeout_ms = 0", "sinks[0].timeout_ms"),
            (
                "url = \"http://x/\"\nmax_in_flight = 0",
                "sinks[0].max_in_flight",
            ),
            (
                "url = \"http://x/\"\nmax_in_flight = 65",
                "sinks[0].max_in_flight",
            ),
            (
                "url = \"http://x/\"\nretry_min_ms = 5000\nretry_max_secs = 1",
                "sinks[0].retry_min_ms",
            ),
            (
                "url = \"http://x/\"\nmax_age_secs = 100000",
                "sinks[0].max_age_secs",
            ),
            ("url = \"http://x/\"\nsecret = \"\"", "sinks[0].secret"),
            ("url = \"http://x/\"\nauthkey = \"\"", "sinks[0].authkey"),
            (
                "url = \"http://x/\"\nsecret_file = \"/nonexistent/s\"",
                "sinks[0].secret_file",
            ),
            (
                "url = \"http://x/\"\nauthkey_file = \"/nonexistent/k\"",
                "sinks[0].authkey_file",
            ),
        ] {
            let e = config(text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
        // Inside a `[[sinks]]` table serde names the table, and the message the culprit.
        let e = config("url = \"http://x/\"\ndialect = \"xml\"").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("sinks[0]: unknown variant `xml`, expected `enswitch` or `native`"),
            "{e}"
        );
        let e = config("url = \"http://x/\"\nretries = 3").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("sinks[0]: unknown field `retries`"),
            "{e}"
        );
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook.key"), "k3y\n").unwrap();
        std::fs::write(dir.path().join("hook.secret"), "s3cret\n").unwrap();
        let d = dir.path().display().to_string();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
        let cfg = Config::from_text(
            "[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"webhook\"\nurl = \"http://x/\"\n\
             authkey_file = \"hook.key\"\nsecret_file = \"hook.secret\"\n",
            &env,
        )
        .unwrap();
        let w = webhook(&cfg);
        assert_eq!(w.authkey.as_deref(), Some("k3y"));
        assert_eq!(w.secret.as_deref(), Some("s3cret"));
    }

    #[test]
    fn a_bad_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = tls_config(true, Some(&path)).unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
        let e = tls_config(false, Some(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }
}
