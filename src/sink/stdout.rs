//! Stdout sink: one native JSON event per line. The embedded default and the demo's output.

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::bus::{SinkRx, TryRecv};
use crate::dialect::{native, Encoded};

/// Bytes of encoded events held before they are written to stdout; they are also written
/// whenever the ring runs empty.
pub const STDOUT_BUFFER: usize = 16 * 1024;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

pub struct StdoutSink;

impl StdoutSink {
    pub fn new(_cfg: &StdoutSinkConfig) -> Self {
        StdoutSink
    }

    /// Writes events until the bus closes. Output is flushed whenever the ring runs
    /// empty, so a reader sees each burst at once without a write per event. Writes are
    /// asynchronous: a slow reader slows this sink only, never the tap or other sinks.
    pub async fn run(self, mut rx: SinkRx) {
        let mut out = tokio::io::BufWriter::with_capacity(STDOUT_BUFFER, tokio::io::stdout());
        let mut buf = Encoded::new();
        while let Some(ev) = rx.recv().await {
            let mut next = Some(ev);
            while let Some(ev) = next.take() {
                match native::encode(&ev, &mut buf) {
                    Ok(()) => {
                        let written = match out.write_all(&buf).await {
                            Ok(()) => out.write_all(b"\n").await,
                            Err(e) => Err(e),
                        };
                        if written.is_err() {
                            tracing::error!(
                                sink = "stdout",
                                "stdout is closed; stopping the stdout sink"
                            );
                            return;
                        }
                        rx.delivered(1);
                    }
                    Err(e) => tracing::error!(
                        sink = "stdout",
                        class = ev.class().as_str(),
                        event = ev.name(),
                        error = %e,
                        "event not written"
                    ),
                }
                if let TryRecv::Event(ev) = rx.try_recv() {
                    next = Some(ev);
                }
            }
            let _ = out.flush().await;
        }
        let _ = out.flush().await;
    }
}
