//! The MQTT sink's driver task: keeps rumqttc's event loop polled (it only sends,
//! pings and reconnects while polled), reconnects with capped jittered backoff, feeds
//! acknowledgements to the outbox, and reports the link going down and up.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{ConnectReturnCode, ConnectionError, EventLoop, Outgoing, Packet, Publish, Request};

use super::outbox::{Finished, Outbox};
use super::Shared;
use crate::backoff::Backoff;
use crate::bus::SinkCounters;
use crate::logging::LogLimit;
use crate::sink::health::{Change, HealthReporter, LinkHealth};

/// Reconnect delays: 250 ms doubled per failed attempt up to 30 s, jittered into the
/// upper half.
pub const RECONNECT: Backoff = Backoff {
    min: Duration::from_millis(250),
    max: Duration::from_secs(30),
    low: 0.5,
    high: 1.0,
};
/// A session that lasted this long (or got an acknowledgement) resets the backoff, so a
/// broker that accepts and at once drops us is not redialled in a tight loop.
pub const STABLE_SESSION: Duration = Duration::from_secs(10);
/// While the broker stays away with the same error, it is logged again at most this often.
pub const STILL_DOWN_LOG_INTERVAL: Duration = Duration::from_secs(60);

pub(crate) struct Driver {
    pub(crate) eventloop: EventLoop,
    pub(crate) shared: Arc<Shared>,
    pub(crate) counters: Arc<SinkCounters>,
    /// Names the sink and its broker, and tells the link going down and up.
    pub(crate) reporter: HealthReporter,
    /// The retained `online` published at the start of each session.
    pub(crate) status: Publish,
}

/// Polls the event loop until the sink disconnects on purpose (or the task is aborted).
pub(crate) async fn drive(mut d: Driver) {
    let mut link = Link::default();
    let mut attempt = 0u32;
    let mut session: Option<(Instant, bool)> = None;
    loop {
        match d.eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => {
                d.session_started();
                session = Some((Instant::now(), false));
                let (was_down, failures) = link.connected();
                let broker = d.reporter.target();
                tracing::info!(sink = d.name(), broker, failures, "mqtt connected");
                if was_down {
                    d.reporter
                        .publish(Some(Change::Up), &format!("connected to {broker}"));
                }
            }
            Ok(rumqttc::Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(ev) => {
                if matches!(ev, rumqttc::Event::Incoming(Packet::PubAck(_))) {
                    if let Some((_, acked)) = session.as_mut() {
                        *acked = true;
                    }
                }
                let f = apply(&mut d.shared.lock(), &ev, d.name());
                d.account(f);
            }
            Err(e) => {
                d.session_lost();
                if let Some((since, acked)) = session.take() {
                    if acked || since.elapsed() >= STABLE_SESSION {
                        attempt = 0;
                    }
                }
                let (code, why) = describe(&e, d.reporter.target());
                match link.failed(code, Instant::now()) {
                    Report::Quiet => {
                        tracing::debug!(sink = d.name(), code, "mqtt still down: {why}")
                    }
                    r => {
                        let queued = d.shared.lock().len();
                        if code == "mqtt_auth_refused" {
                            tracing::error!(
                                sink = d.name(),
                                code,
                                failures = link.failures(),
                                queued,
                                "{why}"
                            );
                        } else {
                            tracing::warn!(
                                sink = d.name(),
                                code,
                                failures = link.failures(),
                                queued,
                                "{why}"
                            );
                        }
                        if r == Report::LogAndDown {
                            d.reporter.publish(Some(Change::Down), &why);
                        }
                    }
                }
                let delay = RECONNECT.random_delay(attempt);
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

impl Driver {
    fn name(&self) -> &str {
        self.reporter.sink().as_str()
    }

    /// A session started: the status, then every unacknowledged publish, oldest first,
    /// go before anything new (rumqttc sends its `pending` list before its channel).
    fn session_started(&mut self) {
        let mut outbox = self.shared.lock();
        self.eventloop.pending.clear();
        let resend = outbox.connected(self.status.clone());
        self.eventloop
            .pending
            .extend(resend.into_iter().map(Request::Publish));
    }

    /// The session ended: what rumqttc held (in flight, queued, in its unbounded
    /// `pending`) is dropped there and re-sent from the outbox next session.
    fn session_lost(&mut self) {
        let mut outbox = self.shared.lock();
        // Acknowledgements read just before the error are still true: apply them first.
        let mut f = Finished::default();
        while let Some(ev) = self.eventloop.state.events.pop_front() {
            let g = apply(&mut outbox, &ev, self.name());
            f.events += g.events;
            f.freed += g.freed;
        }
        // Under the lock, so nothing is handed over between this and `disconnected`.
        self.eventloop.clean();
        self.eventloop.pending.clear();
        let g = outbox.disconnected();
        drop(outbox);
        f.events += g.events;
        f.freed += g.freed;
        self.account(f);
    }

    /// Counts acknowledged events on the sink's own counters (what `SinkRx::delivered`
    /// adds to: the driver, not the reading side, learns of acknowledgements) and wakes
    /// the sink when room was freed.
    fn account(&self, f: Finished) {
        if f.events > 0 {
            self.counters
                .delivered
                .fetch_add(f.events, Ordering::Relaxed);
        }
        if f.freed > 0 {
            self.shared.freed.notify_one();
        }
    }
}

/// Applies one rumqttc event to the outbox.
fn apply(outbox: &mut Outbox, ev: &rumqttc::Event, sink: &str) -> Finished {
    match ev {
        rumqttc::Event::Outgoing(Outgoing::Publish(pkid)) => outbox.written(*pkid),
        rumqttc::Event::Incoming(Packet::PubAck(ack)) => outbox.acked(ack.pkid),
        rumqttc::Event::Outgoing(Outgoing::AwaitAck(pkid)) => {
            // Cannot happen with in-order acks and in-flight = window + 1; say so if it does.
            tracing::error!(
                sink,
                pkid,
                "mqtt packet id collision: the broker acknowledges out of order"
            );
            Finished::default()
        }
        _ => Finished::default(),
    }
}

/// A stable code and a message a user can act on, for a connection error.
pub fn describe(e: &ConnectionError, broker: &str) -> (&'static str, String) {
    match e {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
        ) => (
            "mqtt_auth_refused",
            format!(
                "the MQTT broker at {broker} refused our credentials ({code:?}): check the sink's username and password"
            ),
        ),
        ConnectionError::ConnectionRefused(code) => (
            "mqtt_refused",
            format!("the MQTT broker at {broker} refused the connection ({code:?})"),
        ),
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => (
            "mqtt_unreachable",
            format!("cannot connect to the MQTT broker at {broker}: {io}"),
        ),
        ConnectionError::NetworkTimeout => (
            "mqtt_timeout",
            format!(
                "no answer from the MQTT broker at {broker} within {}s",
                super::CONNECT_TIMEOUT_SECS
            ),
        ),
        ConnectionError::Tls(t) => (
            "mqtt_tls",
            format!("TLS with the MQTT broker at {broker} failed: {t}"),
        ),
        other => (
            "mqtt_connection_lost",
            format!("connection to the MQTT broker at {broker} lost: {other}"),
        ),
    }
}

/// What to say about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Same trouble, reported recently: debug only.
    Quiet,
    /// New reason, or a reminder: log it.
    Log,
    /// The link just went down: log it and publish `system.sink_down`.
    LogAndDown,
}

/// The link's ups and downs, for logs that say each thing once: the change of health
/// (`sink::health`), and reminders at most once per [`STILL_DOWN_LOG_INTERVAL`] unless
/// the reason changes.
#[derive(Debug)]
pub struct Link {
    health: LinkHealth,
    log: LogLimit,
    last_code: &'static str,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            health: LinkHealth::new(1),
            log: LogLimit::new(STILL_DOWN_LOG_INTERVAL),
            last_code: "",
        }
    }
}

impl Link {
    pub fn failed(&mut self, code: &'static str, now: Instant) -> Report {
        let change = self.health.failed();
        if code != self.last_code {
            self.log.reset();
            self.last_code = code;
        }
        match (change, self.log.allow(now)) {
            (Some(_), _) => Report::LogAndDown,
            (None, Some(_)) => Report::Log,
            (None, None) => Report::Quiet,
        }
    }

    /// Consecutive failed attempts so far.
    pub fn failures(&self) -> u32 {
        self.health.failures()
    }

    /// Connected: returns whether it had been reported down, and how many attempts failed.
    pub fn connected(&mut self) -> (bool, u32) {
        let failures = self.health.failures();
        let was_down = self.health.reached().is_some();
        *self = Link::default();
        (was_down, failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_outage_is_reported_once_then_reminded_and_reasons_are_told() {
        let mut link = Link::default();
        let t0 = Instant::now();
        assert_eq!(link.failed("mqtt_unreachable", t0), Report::LogAndDown);
        for i in 1..100 {
            assert_eq!(
                link.failed("mqtt_unreachable", t0 + Duration::from_millis(i * 100)),
                Report::Quiet
            );
        }
        assert_eq!(
            link.failed("mqtt_auth_refused", t0 + Duration::from_secs(11)),
            Report::Log
        );
        assert_eq!(
            link.failed("mqtt_auth_refused", t0 + Duration::from_secs(12)),
            Report::Quiet
        );
        assert_eq!(
            link.failed("mqtt_auth_refused", t0 + Duration::from_secs(72)),
            Report::Log
        );
        assert_eq!(link.connected(), (true, 103));
        assert_eq!(link.connected(), (false, 0));
        assert_eq!(link.failed("mqtt_io", t0), Report::LogAndDown);
    }

    #[test]
    fn refused_credentials_say_what_to_fix() {
        let (code, why) = describe(
            &ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword),
            "127.0.0.1:1883",
        );
        assert_eq!(code, "mqtt_auth_refused");
        assert!(
            why.contains("127.0.0.1:1883") && why.contains("username and password"),
            "{why}"
        );
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            describe(&ConnectionError::Io(io), "b").0,
            "mqtt_unreachable"
        );
    }
}
