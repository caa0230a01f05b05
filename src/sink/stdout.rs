//! Stdout sink: one native JSON event per line. The embedded default and the demo's output.
//!
//! Lines are gathered in a buffer of [`STDOUT_BUFFER`] bytes and written when it is full or
//! the ring runs empty; they count as delivered once written. A write that fails (a full
//! disk, a reader that closed the pipe) loses the lines it held: they are counted as
//! dropped, the sink is down (told once, as every sink tells it), and it tries again after
//! [`RETRY`], its events waiting in its ring meanwhile.

use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::backoff::Backoff;
use crate::bus::{Publisher, SinkRx, TryRecv};
use crate::dialect::{native, Encoded};
use crate::sink::health::{HealthReporter, LinkHealth};

/// Bytes of encoded lines held before they are written to stdout; they are also written
/// whenever the ring runs empty.
pub const STDOUT_BUFFER: usize = 16 * 1024;
/// Wait after a failed write before the next: 1 s, doubling to 30 s while writes fail.
pub const RETRY: Backoff = Backoff {
    min: Duration::from_secs(1),
    max: Duration::from_secs(30),
    low: 1.0,
    high: 1.0,
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

pub struct StdoutSink {
    publisher: Publisher,
}

/// Lines waiting to be written, and how many events they are.
struct Lines {
    bytes: Vec<u8>,
    events: u64,
}

impl StdoutSink {
    pub fn new(_cfg: &StdoutSinkConfig, publisher: Publisher) -> Self {
        StdoutSink { publisher }
    }

    /// Writes events until the bus closes. Output is written whenever the ring runs
    /// empty, so a reader sees each burst at once without a write per event. Writes are
    /// asynchronous: a slow reader slows this sink only, never the tap or other sinks.
    pub async fn run(self, mut rx: SinkRx) {
        let reporter = HealthReporter::new(rx.counters().clone(), "stdout".into(), self.publisher);
        let mut health = LinkHealth::new(1);
        let mut out = tokio::io::stdout();
        let mut lines = Lines {
            bytes: Vec::with_capacity(STDOUT_BUFFER + crate::dialect::MAX_ENCODED_LEN + 1),
            events: 0,
        };
        let mut buf = Encoded::new();
        while let Some(ev) = rx.recv().await {
            let mut next = Some(ev);
            while let Some(ev) = next.take() {
                match native::encode(&ev, &mut buf) {
                    Ok(()) => {
                        lines.bytes.extend_from_slice(&buf);
                        lines.bytes.push(b'\n');
                        lines.events += 1;
                    }
                    Err(e) => tracing::error!(
                        sink = "stdout",
                        class = ev.class().as_str(),
                        event = ev.name(),
                        error = %e,
                        "event not written"
                    ),
                }
                if lines.bytes.len() >= STDOUT_BUFFER {
                    break;
                }
                if let TryRecv::Event(ev) = rx.try_recv() {
                    next = Some(ev);
                }
            }
            if let Err(e) = write(&mut out, &mut lines, &rx).await {
                reporter.report(health.failed(), &format!("cannot write to stdout: {e}"));
                tokio::time::sleep(RETRY.delay(health.failures() - 1, 0.0)).await;
            } else {
                reporter.report(health.reached(), "stdout takes lines again");
            }
        }
    }
}

/// Writes `lines` out and empties them: delivered when written, lost when not.
async fn write(out: &mut tokio::io::Stdout, lines: &mut Lines, rx: &SinkRx) -> std::io::Result<()> {
    let written = match out.write_all(&lines.bytes).await {
        Ok(()) => out.flush().await,
        Err(e) => Err(e),
    };
    match written {
        Ok(()) => rx.delivered(lines.events),
        Err(_) => rx.lost(lines.events),
    }
    lines.bytes.clear();
    lines.events = 0;
    written
}
