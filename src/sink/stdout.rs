//! Stdout sink: one native JSON event per line. The embedded default and the demo's output.
//!
//! Lines are gathered in a buffer of [`STDOUT_BUFFER`] bytes and written when it is full or
//! the ring runs empty; they count as delivered once written. A write that fails (a full
//! disk, a reader that closed the pipe) loses the lines it held: they are counted as
//! dropped, the sink is down (told once, as every sink tells it), and it tries again after
//! [`RETRY`], its events waiting in its ring meanwhile.
//!
//! A pipe or a socket (a reader process, journald's stream) is written from the runtime's
//! own thread without blocking, epoll saying when it takes more ([`Out`]); a file or a
//! terminal through tokio's stdout, which writes on a blocking thread.

use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::unix::AsyncFd;
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
        let mut out = Out::new();
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

/// Where the lines go. Tokio's stdout hands every write to a blocking thread and back: two
/// thread switches a write, most of this sink's CPU when events come one at a time, as
/// calls bring them (`benches/asterisk_cost.rs`). A pipe or a socket needs none of that.
enum Out {
    /// A pipe or a socket, written from the runtime's thread when epoll says it takes more.
    /// A pipe is opened again with a file description of its own that does not block; a
    /// socket is written with `MSG_DONTWAIT` (its flags are shared with whoever else holds
    /// it). Either way, the description stdout shares with other processes is left as it is.
    Ready { fd: AsyncFd<OwnedFd>, socket: bool },
    /// Anything else: a file, a terminal.
    Blocking(tokio::io::Stdout),
}

impl Out {
    fn new() -> Out {
        use nix::sys::stat::{fstat, SFlag};
        use std::os::fd::AsFd;
        let stdout = std::io::stdout();
        let kind =
            fstat(stdout.as_fd()).map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT);
        let own: std::io::Result<(OwnedFd, bool)> = match kind {
            Ok(SFlag::S_IFIFO) => std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open("/proc/self/fd/1")
                .map(|f| (f.into(), false)),
            Ok(SFlag::S_IFSOCK) => stdout.as_fd().try_clone_to_owned().map(|f| (f, true)),
            _ => Err(std::io::ErrorKind::Unsupported.into()),
        };
        // SAFETY: the descriptor is one the `AsyncFd` owns (opened or cloned here), so it
        // stays open and the same until dropped.
        own.and_then(|(fd, socket)| Ok((unsafe { AsyncFd::register(fd) }?, socket)))
            .map(|(fd, socket)| Out::Ready { fd, socket })
            .unwrap_or_else(|_| Out::Blocking(tokio::io::stdout()))
    }

    async fn write_all(&mut self, mut buf: &[u8]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let (fd, socket) = match self {
            Out::Blocking(out) => {
                out.write_all(buf).await?;
                return out.flush().await;
            }
            Out::Ready { fd, socket } => (fd, *socket),
        };
        while !buf.is_empty() {
            let mut ready = fd.writable().await?;
            let write = |f: &AsyncFd<OwnedFd>| {
                use nix::sys::socket::{send, MsgFlags};
                let sent = if socket {
                    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
                    send(f.get_ref().as_raw_fd(), buf, flags)
                } else {
                    nix::unistd::write(f.get_ref(), buf)
                };
                sent.map_err(std::io::Error::from)
            };
            let n = match ready.try_io(write) {
                Ok(n) => n?,
                Err(_would_block) => continue,
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }
}

/// Writes `lines` out and empties them: delivered when written, lost when not.
async fn write(out: &mut Out, lines: &mut Lines, rx: &SinkRx) -> std::io::Result<()> {
    let written = out.write_all(&lines.bytes).await;
    match written {
        Ok(()) => rx.delivered(lines.events),
        Err(_) => rx.lost(lines.events),
    }
    lines.bytes.clear();
    lines.events = 0;
    written
}
