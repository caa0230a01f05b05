//! A tracing layer writing journald's native protocol: one datagram per log line, each
//! event field its own journal field (`sink` → `SINK`), so `journalctl SINK=nats#0` works.
//!
//! Written here rather than taken from tracing-journald so the socket path can be set
//! (`PBXTAP_JOURNAL_SOCKET`, for tests) and entries have a fixed maximum size.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// journald's socket.
pub const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";
/// Largest journal entry we send; longer values are cut (journald's datagram limit is
/// larger, and a log line this long helps nobody).
pub const MAX_ENTRY: usize = 8 * 1024;
/// Longest single field value, in bytes.
pub const MAX_VALUE: usize = 2 * 1024;

/// The layer: an unbound datagram socket and the journal's address.
pub struct Journald {
    socket: UnixDatagram,
    path: PathBuf,
    identifier: String,
}

impl Journald {
    pub fn new(path: PathBuf, identifier: &str) -> std::io::Result<Self> {
        Ok(Journald {
            socket: UnixDatagram::unbound()?,
            path,
            identifier: identifier.to_string(),
        })
    }
}

/// syslog priority of a tracing level.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Appends `NAME=value\n`, or the length-prefixed form when the value has a newline.
/// Stops adding once the entry is `MAX_ENTRY` long.
fn put(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    let mut end = value.len().min(MAX_VALUE);
    while end < value.len() && end > 0 && (value[end] & 0xC0) == 0x80 {
        end -= 1; // keep UTF-8 whole
    }
    let value = &value[..end];
    if buf.len() + name.len() + value.len() + 10 > MAX_ENTRY {
        return;
    }
    buf.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// A tracing field name as a journal field name: upper case, `[A-Z0-9_]`, not starting
/// with `_` or a digit (those are journald's own); `message` is `MESSAGE`.
fn field_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.starts_with(|c: char| c == '_' || c.is_ascii_digit()) {
        out.insert(0, 'F');
    }
    out
}

struct Fields<'a> {
    buf: &'a mut Vec<u8>,
    scratch: String,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        put(self.buf, &field_name(field.name()), value.as_bytes());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.scratch.clear();
        let _ = write!(self.scratch, "{value:?}");
        put(self.buf, &field_name(field.name()), self.scratch.as_bytes());
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Journald {
    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        let meta = event.metadata();
        let mut buf = Vec::with_capacity(512);
        put(&mut buf, "PRIORITY", &[b'0' + priority(meta.level())]);
        put(&mut buf, "SYSLOG_IDENTIFIER", self.identifier.as_bytes());
        put(&mut buf, "TARGET", meta.target().as_bytes());
        if let Some(file) = meta.file() {
            put(&mut buf, "CODE_FILE", file.as_bytes());
        }
        if let Some(line) = meta.line() {
            put(&mut buf, "CODE_LINE", line.to_string().as_bytes());
        }
        event.record(&mut Fields {
            buf: &mut buf,
            scratch: String::new(),
        });
        if self.socket.send_to(&buf, &self.path).is_err() {
            // The journal is gone (restarting): stderr still reaches it through the stream.
            let mut line = String::new();
            event.record(&mut MessageOnly(&mut line));
            let _ = writeln!(std::io::stderr(), "pbxtap: {} {line}", meta.level());
        }
    }
}

struct MessageOnly<'a>(&'a mut String);

impl Visit for MessageOnly<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_journal_names_and_multiline_values_length_prefixed() {
        assert_eq!(field_name("sink"), "SINK");
        assert_eq!(field_name("message"), "MESSAGE");
        assert_eq!(field_name("ping.ms"), "PING_MS");
        assert_eq!(field_name("_x"), "F_X");
        let mut buf = Vec::new();
        put(&mut buf, "SINK", b"nats#0");
        put(&mut buf, "MESSAGE", b"a\nb");
        assert_eq!(buf, b"SINK=nats#0\nMESSAGE\n\x03\0\0\0\0\0\0\0a\nb\n");
    }

    #[test]
    fn entries_are_bounded() {
        let mut buf = Vec::new();
        let long = "é".repeat(MAX_VALUE);
        put(&mut buf, "A", long.as_bytes());
        assert!(buf.len() <= MAX_VALUE + 3);
        assert!(std::str::from_utf8(&buf[2..buf.len() - 1]).is_ok());
        for _ in 0..100 {
            put(&mut buf, "A", long.as_bytes());
        }
        assert!(buf.len() <= MAX_ENTRY);
    }
}
