//! systemd notification (Type=notify): READY=1, WATCHDOG=1 only while every pipeline task
//! progresses, STATUS= with a one-line summary, STOPPING=1 at shutdown.
//!
//! The sd_notify protocol in plain Rust: one datagram of `KEY=value` lines to the unix
//! socket named by `$NOTIFY_SOCKET` (a path, or an abstract name starting with `@`).

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Gate, Pipeline, Stuck};

/// How often STATUS= is refreshed when systemd's watchdog is off.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET `{0}` is neither an absolute path nor an abstract name (@...)")]
    BadAddress(String),
    #[error("cannot open a socket for NOTIFY_SOCKET `{path}`: {source}")]
    Socket { path: String, source: io::Error },
}

/// A connection to systemd's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names, or `None` when not run by systemd with
    /// Type=notify.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(path) if !path.is_empty() => Notifier::new(&path).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for `path`: a socket path, or `@name` for an abstract socket.
    pub fn new(path: &str) -> Result<Notifier, NotifyError> {
        let socket_err = |source| NotifyError::Socket {
            path: path.to_string(),
            source,
        };
        let addr = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(socket_err)?
        } else if path.starts_with('/') {
            SocketAddr::from_pathname(path).map_err(socket_err)?
        } else {
            return Err(NotifyError::BadAddress(path.to_string()));
        };
        let socket = UnixDatagram::unbound().map_err(socket_err)?;
        Ok(Notifier { socket, addr })
    }

    /// Sends one notification (`KEY=value` lines). Never waits: a datagram that does not
    /// fit in the socket's buffer right now is an error, not a stall.
    pub fn send(&self, message: &str) -> io::Result<()> {
        self.socket.set_nonblocking(true)?;
        self.socket
            .send_to_addr(message.as_bytes(), &self.addr)
            .map(|_| ())
    }

    /// `send`, logging a failure (rate-limited with every other log line). Whether it
    /// was sent.
    pub fn send_logged(&self, message: &str) -> bool {
        match self.send(message) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(code = "systemd_notify_failed", "cannot notify systemd: {e}");
                false
            }
        }
    }
}

/// How often to send WATCHDOG=1: half of `WATCHDOG_USEC`, when it is set for this process
/// (`WATCHDOG_PID`, when set, must be ours).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// Sends READY=1, then every `watchdog` period (or `STATUS_INTERVAL`) refreshes STATUS=
/// and, while the gate passes, WATCHDOG=1. Runs until aborted.
pub async fn run(notifier: Option<Arc<Notifier>>, watchdog: Option<Duration>, pipeline: Pipeline) {
    let period = watchdog.unwrap_or(STATUS_INTERVAL);
    if let Some(n) = &notifier {
        if n.send_logged(&format!("READY=1\nSTATUS={}", pipeline.status(None))) {
            tracing::info!(
                code = "systemd_ready",
                watchdog_ms = watchdog.map(|d| d.as_millis() as u64),
                "told systemd we are ready"
            );
        }
    }
    let mut suppressed = Suppressed::default();
    let mut gate = Gate::default();
    let mut was_stuck: Option<Stuck> = None;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let verdict = gate.check(Instant::now(), &pipeline.readings());
        let stuck = verdict.err();
        match (&stuck, &was_stuck) {
            (Some(s), None) => tracing::error!(
                code = "pipeline_stuck",
                task = s.name.as_str(),
                stalled_s = s.stalled.as_secs(),
                "{s}: withholding WATCHDOG=1 so systemd restarts us"
            ),
            (None, Some(s)) => tracing::info!(
                code = "pipeline_unstuck",
                task = s.name.as_str(),
                "{} progresses again",
                s.name
            ),
            _ => {}
        }
        suppressed.tell(Instant::now());
        if let Some(n) = &notifier {
            let status = pipeline.status(stuck.as_ref());
            if watchdog.is_some() && stuck.is_none() {
                n.send_logged(&format!("WATCHDOG=1\nSTATUS={status}"));
            } else {
                n.send_logged(&format!("STATUS={status}"));
            }
        }
        was_stuck = stuck;
    }
}

/// Tells how many log lines the rate limit held back, at most once per
/// `logging::LOG_WINDOW` (the limit's own window), however often the loop runs.
struct Suppressed {
    count: u64,
    limit: crate::logging::LogLimit,
}

impl Default for Suppressed {
    fn default() -> Self {
        Suppressed {
            count: 0,
            limit: crate::logging::LogLimit::new(crate::logging::LOG_WINDOW),
        }
    }
}

impl Suppressed {
    fn tell(&mut self, now: Instant) {
        self.count += crate::logging::take_suppressed();
        if self.count > 0 && self.limit.allow(now).is_some() {
            let suppressed = std::mem::take(&mut self.count);
            tracing::warn!(
                code = "log_suppressed",
                suppressed,
                "{suppressed} repeated log lines suppressed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_of_usec_and_only_for_us() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("1000000"), Some("7"), 7),
            Some(Duration::from_millis(500))
        );
        assert_eq!(watchdog_interval(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }

    #[test]
    fn notifies_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        Notifier::new(path.to_str().unwrap())
            .unwrap()
            .send("READY=1")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("pbxtap-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        Notifier::new(&format!("@{name}"))
            .unwrap()
            .send("STOPPING=1")
            .unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        assert!(matches!(
            Notifier::new("relative/path"),
            Err(NotifyError::BadAddress(_))
        ));
    }
}
