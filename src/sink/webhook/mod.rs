//! Webhook sink: one HTTP(S) POST per event, in the enswitch dialect (a form, as Enswitch
//! and ASTPP send) or native JSON, with an auth key as URL parameter and an optional
//! HMAC-SHA256 signature.
//!
//! Flow: events wait in the sink's bus ring. At most `max_in_flight` are in flight, one
//! per call (or endpoint) at a time, so a call's events arrive in order while different
//! calls go in parallel; up to `max_in_flight` more, of busy calls, wait in a short line
//! and let other calls' events overtake them. With `delivery = "once"` (Enswitch's way, the
//! enswitch dialect's default) each event gets one attempt and the answer is ignored; with
//! `"at_least_once"` a slot's request is retried with capped exponential backoff on 5xx,
//! timeouts and connection errors until the event is `max_age_secs` old (4xx is final),
//! every copy carrying the event's id in `Idempotency-Key`.
//! The tap never waits on this sink: while the endpoint is slow or dead the ring fills and
//! drops its oldest events, counted by the bus.
//!
//! Layout: `config` (keys), `http` (client and one attempt), `policy` (retry and log
//! decisions; when the endpoint is down is `sink::health`), `slots` (requests in flight and waiting, per call), `sign` (signature); this file
//! runs the loop that ties them together.

mod config;
mod http;
mod policy;
mod sign;
mod slots;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use tokio::task::JoinSet;

use super::health::{HealthReporter, LinkHealth};
use crate::backoff::Backoff;
use crate::bus::{Publisher, SinkRx};
use crate::dialect::{enswitch, native, Encoded};
use crate::event::{self, Event};
use crate::logging::LogLimit;
use crate::settings::ConfigError;
use crate::sink::filter::{Filter, FilterConfig};
pub use config::{Delivery, WebhookDialect, WebhookSinkConfig, AUTHKEY_PARAM, MAX_IN_FLIGHT};
use http::{attempt, Attempt, AttemptError, Endpoint};
pub use http::{IDEMPOTENCY_HEADER, IDLE_TIMEOUT, MAX_RESPONSE_DRAIN, RESPONSE_BUFFER};
use policy::{RetryPolicy, StatusesSeen, Verdict, DOWN_AFTER_FAILURES, LOG_INTERVAL};
pub use sign::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use slots::Slots;

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

pub struct WebhookSink {
    endpoint: Arc<Endpoint>,
    dialect: WebhookDialect,
    enswitch: enswitch::Context,
    delivery: Delivery,
    filter: Option<FilterConfig>,
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
        let endpoint = Endpoint::new(cfg, cfg.uri("webhook")?)?;
        Ok(WebhookSink {
            endpoint: Arc::new(endpoint),
            dialect: cfg.dialect,
            enswitch: enswitch::Context {
                machine: cfg.machine,
            },
            delivery: cfg.delivery(),
            filter: cfg.filter.clone(),
            max_in_flight: cfg.max_in_flight,
            retry: RetryPolicy {
                backoff: Backoff {
                    min: Duration::from_millis(cfg.retry_min_ms),
                    max: Duration::from_secs(cfg.retry_max_secs),
                    low: 0.75,
                    high: 1.25,
                },
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
            health: LinkHealth::new(DOWN_AFTER_FAILURES),
            reporter: HealthReporter::new(
                rx.counters().clone(),
                self.endpoint.shown.clone(),
                self.publisher.clone(),
            ),
            failure_log: LogLimit::new(LOG_INTERVAL),
            give_up_log: LogLimit::new(LOG_INTERVAL),
            refused: StatusesSeen::default(),
            rejected: 0,
            given_up: 0,
        };
        tracing::info!(sink = %run.name, endpoint = %self.endpoint.shown, "webhook sink started");
        let mut buf = Encoded::new();
        let mut filter = self.filter.clone().map(Filter::new);
        let mut open = true;
        loop {
            while let Some(i) = run.slots.start_next() {
                run.spawn(i, Duration::ZERO);
            }
            if !open && run.slots.is_idle() {
                break;
            }
            let can_take = open && run.slots.wants_more();
            // Invariant: every occupied slot has one task, so when nothing can be taken
            // (slots full, or the waiting line full of events of busy calls) or the bus
            // is closed with events left, a task is running.
            tokio::select! {
                Some(done) = run.tasks.join_next_with_id(), if !run.tasks.is_empty() => {
                    run.settle(done, &rx);
                }
                ev = rx.recv(), if can_take => match ev {
                    None => open = false,
                    // Another customer's event: not this feed's (taken off the ring all the same).
                    Some(ev) if filter.as_mut().is_some_and(|f| !f.admits(&ev)) => {}
                    Some(ev) => {
                        if let Some(item) = run.prepare(&ev, &mut buf) {
                            let queued = run.slots.push(slots::ordering_key(&ev), item);
                            debug_assert!(queued.is_ok(), "taken only when the line has room");
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
    /// The event's id, sent with every copy.
    id: hyper::header::HeaderValue,
    seq: u64,
    first: Instant,
    attempts: u32,
    task: Option<tokio::task::Id>,
}

/// The state of one `run`.
struct Run<'a> {
    name: event::Text,
    sink: &'a WebhookSink,
    slots: Slots<InFlight>,
    tasks: JoinSet<(usize, Attempt)>,
    health: LinkHealth,
    reporter: HealthReporter,
    failure_log: LogLimit,
    give_up_log: LogLimit,
    refused: StatusesSeen,
    rejected: u64,
    given_up: u64,
}

impl Run<'_> {
    /// Encodes `ev` into a request body.
    fn prepare(&mut self, ev: &Event, buf: &mut Encoded) -> Option<InFlight> {
        let encoded = match self.sink.dialect {
            WebhookDialect::Enswitch => enswitch::encode_form(ev, &self.sink.enswitch, buf),
            WebhookDialect::Native => native::encode(ev, buf),
        };
        if let Err(e) = encoded {
            self.given_up += 1;
            tracing::error!(sink = %self.name, seq = ev.seq, error = %e, "event not sent");
            return None;
        }
        Some(InFlight {
            body: Bytes::copy_from_slice(buf),
            // Cannot fail: an id is a host name, dots and digits.
            id: hyper::header::HeaderValue::from_str(&ev.id())
                .unwrap_or(hyper::header::HeaderValue::from_static("")),
            seq: ev.seq,
            first: Instant::now(),
            attempts: 0,
            task: None,
        })
    }

    /// Sends slot `i`'s event after `delay`.
    fn spawn(&mut self, i: usize, delay: Duration) {
        let Some(item) = self.slots.get_mut(i) else {
            return;
        };
        let endpoint = self.sink.endpoint.clone();
        let (body, id) = (item.body.clone(), item.id.clone());
        let handle = self.tasks.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            (i, attempt(&endpoint, body, id).await)
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
        let once = self.sink.delivery == Delivery::Once;
        let error = match outcome {
            // Enswitch's way: whatever the endpoint answers, the event is done.
            Ok(_) if once => {
                self.reporter
                    .report(self.health.reached(), "endpoint answers again");
                rx.delivered(1);
                self.slots.release(i);
                return;
            }
            Ok(status) => match policy::verdict(status) {
                Verdict::Delivered => {
                    self.reporter
                        .report(self.health.reached(), "endpoint answers again");
                    rx.delivered(1);
                    self.slots.release(i);
                    return;
                }
                Verdict::Rejected => {
                    self.reporter
                        .report(self.health.reached(), "endpoint answers again");
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
        self.reporter
            .report(self.health.failed(), &error.to_string());
        let retry = match once {
            true => None,
            false => self
                .sink
                .retry
                .next_delay(attempts, first, now, fastrand::f64()),
        };
        match retry {
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
                        "{}",
                        if once {
                            "event lost: its one attempt failed (delivery = \"once\")"
                        } else {
                            "event given up: still failing after max_age_secs"
                        }
                    );
                }
                self.slots.release(i);
            }
        }
    }
}
