//! Accepting on the daemon's listening sockets (the WebSocket feed, the metrics page):
//! the one rule for a failing `accept`. Out of file descriptors (`EMFILE`) or kernel
//! memory, the waiting connection stays queued and `accept` fails again at once; retrying
//! at once would burn a core. So a failure waits ([`BACKOFF`], doubling while failures
//! go on), and is logged at most once per [`LOG_INTERVAL`], saying how many it stands for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use crate::backoff::Backoff;
use crate::logging::LogLimit;

/// Wait after a failed `accept`: 100 ms, doubling while it keeps failing, at most 1 s.
pub const BACKOFF: Backoff = Backoff {
    min: Duration::from_millis(100),
    max: Duration::from_secs(1),
    low: 1.0,
    high: 1.0,
};
/// Most often an `accept` failure is logged.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A listener's accepting side: what it serves (for the log) and its failures so far.
pub struct Acceptor {
    listener: TcpListener,
    what: &'static str,
    log: LogLimit,
}

impl Acceptor {
    pub fn new(listener: TcpListener, what: &'static str) -> Acceptor {
        Acceptor {
            listener,
            what,
            log: LogLimit::new(LOG_INTERVAL),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection; failures wait and are retried, never returned.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let mut failures = 0;
        loop {
            match self.listener.accept().await {
                Ok(c) => return c,
                Err(e) => {
                    let wait = BACKOFF.delay(failures, 0.0);
                    if let Some(suppressed) = self.log.allow(Instant::now()) {
                        tracing::warn!(listener = self.what, error = %e, ?wait, suppressed, "cannot accept a connection (out of file descriptors?); waiting");
                    }
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}
