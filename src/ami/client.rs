//! The AMI connection: a tokio task that dials Asterisk, logs in, keeps the link alive with
//! pings, feeds every message to a `Handler`, and redials forever with capped backoff.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::AmiConfig;
use super::filter::{self, Wanted};
use super::frame::{Frame, Limits, Message, Parser};
use super::session::{Filtering, Session, SessionConfig, SessionError};
use crate::backoff::Backoff;

/// Bytes read from the socket at a time; the parser takes any split.
pub const READ_BUFFER: usize = 64 * 1024;
/// How long a TCP connect may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the handler's `tick` and the session's ping check run.
pub const TICK: Duration = Duration::from_secs(1);

/// Everything the client needs, from `[ami]` and `[watchdog]`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub address: String,
    pub session: SessionConfig,
    /// Delays between redials: `ami.reconnect_min_ms` doubling to `ami.reconnect_max_secs`,
    /// jittered into the upper half.
    pub backoff: Backoff,
    pub limits: Limits,
    /// Redial after the connection ends. Off only for `pbxtap demo`, which ends with its replay.
    pub reconnect: bool,
    /// Ask Asterisk to send only what the handler reads (`ami.filter_at_source`).
    pub filter_at_source: bool,
}

impl ClientConfig {
    /// From `[ami]`, and the Ping interval (`watchdog.ping_interval_secs`).
    pub fn from_config(ami: &AmiConfig, ping_interval: Duration) -> Self {
        ClientConfig {
            address: ami.address.clone(),
            session: SessionConfig {
                username: ami.username.clone(),
                secret: ami.secret.clone().unwrap_or_default(),
                auth: ami.auth,
                events: ami.events.clone(),
                ping_interval,
                ping_timeout: Duration::from_secs(ami.ping_timeout_secs),
                contacts_every: (ami.contacts_poll_secs > 0)
                    .then(|| Duration::from_secs(ami.contacts_poll_secs)),
                login_timeout: Duration::from_secs(ami.login_timeout_secs),
                // Set by `run` from the handler's `wanted`.
                source_filter: None,
            },
            backoff: Backoff {
                min: Duration::from_millis(ami.reconnect_min_ms),
                max: Duration::from_secs(ami.reconnect_max_secs),
                low: 0.5,
                high: 1.0,
            },
            limits: Limits {
                max_message_len: ami.max_message_len,
                max_headers: ami.max_headers,
            },
            reconnect: true,
            filter_at_source: ami.filter_at_source,
        }
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum AmiError {
    #[error("cannot connect to Asterisk at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("connecting to Asterisk at {0} timed out")]
    ConnectTimeout(String),
    #[error("Asterisk at {0} closed the connection")]
    Closed(String),
    #[error("AMI connection to {address} failed: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl AmiError {
    /// A stable code for logs and journald.
    pub fn code(&self) -> &'static str {
        match self {
            AmiError::Connect { .. } => "ami_connect_failed",
            AmiError::ConnectTimeout(_) => "ami_connect_timeout",
            AmiError::Closed(_) => "ami_closed",
            AmiError::Io { .. } => "ami_io",
            AmiError::Session(SessionError::LoginRejected { .. }) => "ami_login_rejected",
            AmiError::Session(SessionError::PingTimeout(_)) => "ami_ping_timeout",
            AmiError::Session(SessionError::NoBanner) => "ami_no_banner",
            AmiError::Session(SessionError::LoginTimeout { .. }) => "ami_login_timeout",
        }
    }
}

/// What the connection reports to: the tap.
pub trait Handler {
    /// Logged in; `version` is the AMI banner's.
    fn connected(&mut self, version: &str);
    /// An event (or a reply not to the session's own actions).
    fn message(&mut self, msg: &Message<'_>);
    /// Whether `Handler::message` wants `message`, an event named `name`; the parser
    /// passes over the others unparsed (see `EventFilter`). Every event, unless the
    /// handler says otherwise.
    fn reads(_name: &str, _message: &[u8]) -> bool {
        true
    }
    /// What the handler reads, for Asterisk to filter on (`ami::filter`); `None`: every
    /// event.
    fn wanted() -> Option<Wanted> {
        None
    }
    /// The connection ended.
    fn disconnected(&mut self, reason: &AmiError);
    /// About once a second, connected or not.
    fn tick(&mut self) {}
    /// Whether the handler wants a fresh list of PJSIP contacts (asked after each read).
    fn wants_contacts(&mut self) -> bool {
        false
    }
    /// A list of PJSIP contacts (the `ContactList` events before) is complete.
    fn contacts_listed(&mut self) {}
}

/// Health of the AMI link, shared with the watchdog and the status line.
#[derive(Debug, Default)]
pub struct AmiHealth {
    pub connected: AtomicBool,
    pub fully_booted: AtomicBool,
    /// Round trip of the last answered Ping, in microseconds (0: none yet).
    pub last_ping_rtt_us: AtomicU64,
    /// AMI messages received, those the parser passed over unread included.
    pub messages: AtomicU64,
    /// Bytes read from the AMI socket.
    pub bytes: AtomicU64,
    /// Asterisk filters the events at the source on this connection.
    pub filtered_at_source: AtomicBool,
    pub reconnects: AtomicU64,
    /// Messages the parser skipped (too large, too many headers).
    pub frame_errors: AtomicU64,
    /// Ticks of the connection task (about one a second, connected or not): its progress,
    /// which the watchdog checks before telling systemd we are alive.
    pub ticks: AtomicU64,
}

/// Runs the connection until `shutdown` resolves (or, without `reconnect`, until the
/// first connection ends).
pub async fn run<H: Handler>(
    mut cfg: ClientConfig,
    handler: &mut H,
    health: &AmiHealth,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    if cfg.filter_at_source {
        // The same for every connection: what the handler reads does not change.
        cfg.session.source_filter = H::wanted().map(|w| filter::actions(&w));
    }
    let mut parser = Parser::new(cfg.limits);
    parser.set_filter(reads::<H>);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut attempt = 0u32;
    let mut last_error_code = "";
    loop {
        let result = tokio::select! {
            // Shutdown first, with the task's full coop budget: a busy connection can use
            // it all up, and then a stop signal would wait for the stream to go quiet.
            biased;
            _ = &mut shutdown => return,
            r = serve(&cfg, &mut parser, &mut buf, handler, health, &mut attempt) => r,
        };
        health.connected.store(false, Ordering::Relaxed);
        health.fully_booted.store(false, Ordering::Relaxed);
        // One log line per change of reason, not per retry.
        if result.code() != last_error_code {
            tracing::warn!(code = result.code(), address = %cfg.address, "AMI disconnected: {result}");
            last_error_code = result.code();
        } else {
            tracing::debug!(code = result.code(), "AMI still down: {result}");
        }
        handler.disconnected(&result);
        if !cfg.reconnect {
            return;
        }
        let delay = cfg.backoff.random_delay(attempt);
        attempt = attempt.saturating_add(1);
        health.reconnects.fetch_add(1, Ordering::Relaxed);
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        // Keep ticking while waiting, so the normalizer's timers and the watchdog go on.
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = &mut sleep => break,
                _ = tokio::time::sleep(TICK) => {
                    health.ticks.fetch_add(1, Ordering::Relaxed);
                    handler.tick();
                }
            }
        }
    }
}

/// Tells how Asterisk filters for this connection (once per connection).
fn log_filtering(f: &Filtering, health: &AmiHealth) {
    match f {
        Filtering::On { version } => {
            health.filtered_at_source.store(true, Ordering::Relaxed);
            tracing::info!(code = "ami_filtered_at_source", asterisk = %version, "Asterisk sends only the events pbxtap reads (filters at the source)");
        }
        Filtering::Unsupported { version } => tracing::info!(
            code = "ami_filter_unsupported",
            asterisk = %version,
            "this Asterisk cannot filter events by name (18.26, 20.11, 21.6, 22.1 and later can): it sends every event, and pbxtap passes over those it does not read"
        ),
        Filtering::Refused { message } => tracing::warn!(
            code = "ami_filter_refused",
            reason = %message,
            "Asterisk refused the event filter (the AMI user needs `write = system` in manager.conf): it sends every event, and pbxtap passes over those it does not read"
        ),
    }
}

/// The parser's filter: the events `H` reads, and `FullyBooted`, which the client watches.
fn reads<H: Handler>(name: &str, message: &[u8]) -> bool {
    name.eq_ignore_ascii_case("FullyBooted") || H::reads(name, message)
}

/// One connection, from dial to its end. Resets `attempt` once logged in.
async fn serve<H: Handler>(
    cfg: &ClientConfig,
    parser: &mut Parser,
    buf: &mut [u8],
    handler: &mut H,
    health: &AmiHealth,
    attempt: &mut u32,
) -> AmiError {
    let address = &cfg.address;
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await
    {
        Err(_) => return AmiError::ConnectTimeout(address.clone()),
        Ok(Err(source)) => {
            return AmiError::Connect {
                address: address.clone(),
                source,
            }
        }
        Ok(Ok(s)) => s,
    };
    let io_err = |source| AmiError::Io {
        address: address.clone(),
        source,
    };
    parser.reset();
    let mut session = Session::new(cfg.session.clone(), Instant::now());
    health.filtered_at_source.store(false, Ordering::Relaxed);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Actions to write after a read: at most the login steps and one ping at a time.
    let mut outbox: Vec<String> = Vec::with_capacity(4);
    let mut version = String::new();
    loop {
        tokio::select! {
            r = stream.read(buf) => {
                let n = match r {
                    Ok(0) => return AmiError::Closed(address.clone()),
                    Ok(n) => n,
                    Err(e) => return io_err(e),
                };
                health.bytes.fetch_add(n as u64, Ordering::Relaxed);
                let mut failed: Option<SessionError> = None;
                let now = Instant::now();
                let passed_over = parser.stats().passed_over;
                parser.push(&buf[..n], &mut |frame| {
                    if failed.is_some() {
                        return;
                    }
                    match frame {
                        Ok(Frame::Banner(v)) => {
                            outbox.push(session.on_banner());
                            version.clear();
                            version.push_str(v);
                        }
                        Ok(Frame::Message(msg)) => {
                            health.messages.fetch_add(1, Ordering::Relaxed);
                            match session.on_message(&msg, now) {
                                Err(e) => failed = Some(e),
                                Ok(step) => {
                                    if let Some(action) = step.send {
                                        outbox.push(action);
                                    }
                                    if step.logged_in {
                                        *attempt = 0;
                                        health.connected.store(true, Ordering::Relaxed);
                                        tracing::info!(code = "ami_connected", address = %cfg.address, version = %version, "AMI connected");
                                        handler.connected(&version);
                                    }
                                    if step.deliver {
                                        if msg.is_event("FullyBooted") {
                                            health.fully_booted.store(true, Ordering::Relaxed);
                                        }
                                        handler.message(&msg);
                                    }
                                    if step.contacts_listed {
                                        handler.contacts_listed();
                                    }
                                    if let Some(f) = step.filtering {
                                        log_filtering(&f, health);
                                    }
                                    if let Some(r) = step.list_refused {
                                        tracing::warn!(code = "ami_list_refused", action = r.action, reason = %r.message, "Asterisk refused {}: what it lists is told by live events alone (no such module here, or the AMI user may not list it); the other lists go on", r.action);
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            let n = health.frame_errors.fetch_add(1, Ordering::Relaxed);
                            // Rate-limited: the first, then every 1000th.
                            if n.is_multiple_of(1000) {
                                tracing::warn!(code = "ami_frame_skipped", total = n + 1, "{e}");
                            }
                        }
                    }
                });
                health.messages.fetch_add(parser.stats().passed_over - passed_over, Ordering::Relaxed);
                if let Some(e) = failed {
                    return e.into();
                }
                if handler.wants_contacts() {
                    outbox.extend(session.request_contacts());
                }
                for action in outbox.drain(..) {
                    if let Err(e) = stream.write_all(action.as_bytes()).await {
                        return io_err(e);
                    }
                }
                // Let the rest of the runtime (shutdown, sinks, timers) in between reads,
                // however fast Asterisk sends.
                tokio::task::yield_now().await;
            }
            _ = ticker.tick() => {
                health.ticks.fetch_add(1, Ordering::Relaxed);
                handler.tick();
                match session.poll(Instant::now()) {
                    Err(e) => return e.into(),
                    Ok(Some(ping)) => {
                        if let Err(e) = stream.write_all(ping.as_bytes()).await {
                            return io_err(e);
                        }
                    }
                    Ok(None) => {}
                }
                if let Some(rtt) = session.last_rtt {
                    health.last_ping_rtt_us.store(rtt.as_micros() as u64, Ordering::Relaxed);
                }
            }
        }
    }
}
