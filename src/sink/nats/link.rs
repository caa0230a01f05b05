//! The NATS sink's client and link: the async-nats options (bounded buffers, reconnect
//! forever with [`RETRY`]), and what the client's event callback and the delivery loop
//! share: link health, told once per change (`sink::health`), and repeated errors logged
//! at most once per [`ERROR_LOG_INTERVAL`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::ConnectOptions;

use super::config::{NatsSinkConfig, UrlLogin};
use super::{NatsSinkError, PUBLISH_WINDOW};
use crate::backoff::Backoff;
use crate::logging::LogLimit;
use crate::sink::health::{HealthReporter, LinkHealth};

/// Capacity of async-nats's command channel (its default is 2048). The sink never has
/// more than a window of publishes and one flush queued, so `publish` never waits on it.
pub const CLIENT_CAPACITY: usize = 2 * PUBLISH_WINDOW;
/// Messages async-nats may queue per subscription; the sink's only subscription is the
/// inbox JetStream acknowledgements arrive on, and it awaits each one before the next.
pub const SUBSCRIPTION_CAPACITY: usize = 16;
/// How long a JetStream acknowledgement may take before the event is sent again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Delays between reconnect attempts (the first is immediate) and between retries:
/// 100 ms doubling up to 5 s. Reconnects take off up to a quarter of jitter so a fleet
/// does not reconnect in step; retries of one event are not jittered.
pub const RETRY: Backoff = Backoff {
    min: Duration::from_millis(100),
    max: Duration::from_secs(5),
    low: 0.75,
    high: 1.0,
};
/// Most often a repeated error (failed reconnects, refused publishes) is logged.
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The client options: credentials, TLS, bounded client buffers, reconnect forever.
pub(super) fn connect_options(
    cfg: &NatsSinkConfig,
    url_login: Option<&UrlLogin>,
    link: Arc<Link>,
) -> Result<ConnectOptions, NatsSinkError> {
    let mut o = ConnectOptions::new()
        .name(&cfg.name)
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
    match url_login {
        Some(UrlLogin::UserPassword(u, p)) => o = o.user_and_password(u.clone(), p.clone()),
        Some(UrlLogin::Token(t)) => o = o.token(t.clone()),
        None => {}
    }
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        o = o.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &cfg.token {
        o = o.token(t.clone());
    }
    if let Some(seed) = &cfg.nkey {
        o = o.nkey(seed.clone());
    }
    if let Some(path) = &cfg.creds_file {
        let text = crate::settings::read_limited(path, crate::settings::MAX_PEM_FILE).map_err(
            |error| NatsSinkError::Credentials {
                path: path.clone(),
                error,
            },
        )?;
        o = o
            .credentials(&text)
            .map_err(|e| NatsSinkError::Credentials {
                path: path.clone(),
                error: e.to_string(),
            })?;
    }
    if cfg.tls {
        o = o.require_tls(true);
    }
    if let Some(ca) = &cfg.tls_ca_file {
        o = o.add_root_certificates(ca.clone());
    }
    Ok(o)
}

/// Delay before reconnect attempt `attempts` (1 for the first): immediate, then
/// [`RETRY`], jittered.
fn reconnect_delay(attempts: usize) -> Duration {
    match attempts.checked_sub(2) {
        None => Duration::ZERO,
        Some(n) => RETRY.random_delay(u32::try_from(n).unwrap_or(u32::MAX)),
    }
}

/// [`RETRY`]'s ceiling after `n` failures: the delay before a retry.
pub(super) fn backoff(n: u32) -> Duration {
    RETRY.ceiling(n)
}

/// What the client's event callback and the delivery loop share: the link's health, its
/// error log limit, and the reporter that tells the other sinks.
pub(super) struct Link {
    pub(super) reporter: HealthReporter,
    state: Mutex<LinkState>,
}

/// Whether the sink reaches its server, and when a repeated error was last logged. No I/O.
#[derive(Debug)]
struct LinkState {
    health: LinkHealth,
    log: LogLimit,
}

impl Default for LinkState {
    fn default() -> Self {
        LinkState {
            // The client reports each failed attempt: the first is the outage.
            health: LinkHealth::new(1),
            log: LogLimit::new(ERROR_LOG_INTERVAL),
        }
    }
}

impl Link {
    pub(super) fn new(reporter: HealthReporter) -> Link {
        Link {
            reporter,
            state: Mutex::new(LinkState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection broke, or an attempt to make or use one failed: told once.
    pub(super) fn failed(&self, reason: &str) {
        let change = self.state().health.failed();
        self.reporter.report(change, reason);
    }

    /// A repeated error: logged at most once per interval.
    pub(super) fn error(&self, now: Instant, what: &str, error: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.state().log.allow(now) {
            let (sink, url) = (self.reporter.sink(), self.reporter.target());
            tracing::warn!(sink = %sink, url, suppressed, error = %error, "{what}");
        }
    }

    pub(super) fn on_client_event(&self, e: async_nats::Event, now: Instant) {
        use async_nats::Event as E;
        let (sink, url) = (self.reporter.sink(), self.reporter.target());
        match e {
            E::Connected => {
                let change = self.state().health.reached();
                if change.is_none() {
                    tracing::info!(sink = %sink, url, "connected to NATS");
                }
                self.reporter.report(change, "connected");
            }
            E::Disconnected => self.failed("disconnected from the NATS server"),
            E::ClientError(err) => {
                self.failed(&format!("cannot connect: {err}"));
                self.error(
                    now,
                    "cannot connect to NATS; retrying (RUST_LOG=async_nats=debug shows why)",
                    &err,
                );
            }
            E::ServerError(err) => self.error(now, "the NATS server reported an error", &err),
            E::LameDuckMode => {
                tracing::info!(sink = %sink, url, "NATS server entering lame duck mode")
            }
            other => tracing::debug!(sink = %sink, event = %other, "NATS client event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::health::Change;

    #[test]
    fn link_changes_are_reported_once_and_errors_rate_limited() {
        let mut s = LinkState::default();
        assert_eq!(s.health.reached(), None); // first connect: nothing was down
        assert_eq!(s.health.failed(), Some(Change::Down));
        assert_eq!(s.health.failed(), None); // every failed attempt after it: no new event
        assert_eq!(s.health.reached(), Some(Change::Up));
        let mut s = LinkState::default();
        assert_eq!(s.health.failed(), Some(Change::Down)); // down at start
        let t0 = Instant::now();
        assert_eq!(s.log.allow(t0), Some(0));
        assert_eq!(s.log.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(s.log.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(s.log.allow(t0 + ERROR_LOG_INTERVAL), Some(2));
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_below_it() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(backoff(0), RETRY.min);
        assert_eq!(backoff(1), RETRY.min * 2);
        assert_eq!(backoff(40), RETRY.max);
        for attempts in 2..50 {
            let d = reconnect_delay(attempts);
            let full = backoff(attempts as u32 - 2);
            assert!(d <= full && d >= full.mul_f64(0.75), "{attempts}: {d:?}");
        }
    }
}
