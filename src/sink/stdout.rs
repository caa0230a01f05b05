//! Stdout sink: one native JSON event per line. The embedded default and the demo's output.

use std::io::Write;

use serde::Deserialize;

use crate::bus::{SinkRx, TryRecv};
use crate::dialect::{native, Encoded};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

pub struct StdoutSink;

impl StdoutSink {
    pub fn new(_cfg: &StdoutSinkConfig) -> Self {
        StdoutSink
    }

    /// Writes events until the bus closes. Output is flushed whenever the ring runs
    /// empty, so a reader sees each burst at once without a write per event.
    pub async fn run(self, mut rx: SinkRx) {
        let stdout = std::io::stdout();
        let mut buf = Encoded::new();
        while let Some(ev) = rx.recv().await {
            let mut out = stdout.lock();
            let mut next = Some(ev);
            while let Some(ev) = next.take() {
                match native::encode(&ev, &mut buf) {
                    Ok(()) => {
                        if out
                            .write_all(&buf)
                            .and_then(|_| out.write_all(b"\n"))
                            .is_err()
                        {
                            tracing::error!(
                                sink = "stdout",
                                "stdout is closed; stopping the stdout sink"
                            );
                            return;
                        }
                        rx.delivered(1);
                    }
                    Err(e) => tracing::error!(sink = "stdout", error = %e, "event not written"),
                }
                if let TryRecv::Event(ev) = rx.try_recv() {
                    next = Some(*ev);
                }
            }
            let _ = out.flush();
        }
    }
}
