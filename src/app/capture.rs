//! `pbxtap capture`: what Asterisk says, written to a file for a bug report. It logs in
//! with the configured AMI user and sends nothing but the login, one version query
//! (`CoreSettings`) and, at the end, `Logoff`: it never changes Asterisk and never asks it
//! for lists. The file (`ami::recording`) is a short header, then the AMI byte stream from
//! the banner on, each message as sent but for the values `--redact` names.
//!
//! What we send (the user name, the secret or its MD5 key) never reaches the file: only
//! what Asterisk sends is written. It stops on Ctrl-C or SIGTERM, after `--duration`, at
//! `--max-bytes`, or when Asterisk closes the connection; it never overwrites a file.
//!
//! Bounds: one message at a time in memory, at most `ami.max_message_len` bytes (a longer
//! one is left out and counted); the login and the version query within
//! `ami.login_timeout_secs`; events that arrive before the version answer are held, at
//! most [`EARLY`] bytes, and written after the header. While capturing, Asterisk may stay
//! quiet for as long as it likes; a vanished Asterisk is found by TCP keepalive (idle
//! [`KEEPALIVE`], 60 s, then probes), which ends the capture like a closed connection.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ami::config::AmiAuth;
use crate::ami::recording::{self, Redactor};
use crate::ami::session::{challenge_action, login_action};
use crate::config::Config;

/// The file grows to at most this by default (`--max-bytes`).
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Events held while waiting for the version answer, at most.
const EARLY: usize = 1 << 20;
/// How long `Logoff` may take at the end.
const LOGOFF_WAIT: Duration = Duration::from_secs(2);
const CHALLENGE_ID: &str = "pbxtap-capture-challenge";
const LOGIN_ID: &str = "pbxtap-capture-login";
const VERSION_ID: &str = "pbxtap-capture-version";
/// TCP keepalive of the AMI connection: idle this long, then probed every sixth of it.
const KEEPALIVE: Duration = Duration::from_secs(60);

/// How a capture runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub output: PathBuf,
    /// Stop after this long; `None`: on Ctrl-C.
    pub duration: Option<Duration>,
    pub max_bytes: u64,
    /// Values replaced by placeholders (`--redact`).
    pub redact: Vec<String>,
}

/// Why a capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Signal,
    Duration,
    Size,
    Closed,
}

/// The AMI stream cut into messages, one held at a time: at most `max` bytes of an
/// unfinished one; a longer message is skipped to its end and counted.
struct Splitter {
    buf: Vec<u8>,
    max: usize,
    skipping: bool,
    skipped: u64,
}

impl Splitter {
    fn new(max: usize) -> Splitter {
        Splitter {
            buf: Vec::with_capacity(max.min(64 << 10)),
            max,
            skipping: false,
            skipped: 0,
        }
    }

    /// The banner line, once the buffer holds it.
    fn banner(&mut self) -> Option<Vec<u8>> {
        let end = self.buf.windows(2).position(|w| w == b"\r\n")? + 2;
        Some(self.buf.drain(..end).collect())
    }

    /// Adds `data` without looking for messages (the banner is a line of its own).
    fn push_raw(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Adds `data`, then calls `each` with every complete message (blank line included).
    fn push(&mut self, data: &[u8], each: &mut dyn FnMut(&[u8])) {
        self.buf.extend_from_slice(data);
        while let Some(end) = recording::message_end(&self.buf) {
            let msg: Vec<u8> = self.buf.drain(..end).collect();
            if self.skipping {
                self.skipping = false;
            } else {
                each(&msg);
            }
        }
        if self.buf.len() > self.max {
            // Keep the last 3 bytes: the start of a blank line may be among them.
            let keep = self.buf.split_off(self.buf.len() - 3);
            self.buf = keep;
            if !self.skipping {
                self.skipping = true;
                self.skipped += 1;
            }
        }
    }
}

/// The value of `key` in an AMI message's text.
fn field<'a>(msg: &'a [u8], key: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(msg).ok()?;
    text.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// Reads from `sock` into `split` until `done` says so for a message, handing every
/// other message to `other`; fails at `deadline`.
async fn until_reply(
    sock: &mut TcpStream,
    split: &mut Splitter,
    deadline: tokio::time::Instant,
    what: &str,
    done: &mut dyn FnMut(&[u8]) -> bool,
    other: &mut dyn FnMut(&[u8]),
) -> anyhow::Result<Vec<u8>> {
    let mut buf = [0u8; 8192];
    // The messages already buffered first, then what each read brings.
    let mut n = 0;
    loop {
        let mut found: Option<Vec<u8>> = None;
        split.push(&buf[..n], &mut |m| {
            if found.is_none() && done(m) {
                found = Some(m.to_vec());
            } else {
                other(m);
            }
        });
        if let Some(reply) = found {
            return Ok(reply);
        }
        n = tokio::time::timeout_at(deadline, sock.read(&mut buf))
            .await
            .with_context(|| format!("no answer to {what} within ami.login_timeout_secs"))??;
        if n == 0 {
            bail!("Asterisk closed the connection before answering {what}");
        }
    }
}

/// Opens `path` for a new capture: never over an existing file.
fn create(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} exists: a capture never overwrites a file (name another)",
                path.display()
            ),
            _ => anyhow::anyhow!("cannot create {}: {e}", path.display()),
        })
}

/// A capture file just made: removed again unless kept (once its header is written), so
/// that a capture that could not log in leaves no empty file behind to refuse the next.
struct Fresh<'a> {
    path: &'a Path,
    kept: bool,
}

impl Drop for Fresh<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(self.path);
        }
    }
}

/// Writes to the capture, naming a full disk as such.
fn write_all(
    file: &mut std::fs::File,
    path: &Path,
    data: &[u8],
    written: u64,
) -> anyhow::Result<()> {
    file.write_all(data).map_err(|e| {
        if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
            anyhow::anyhow!(
                "{}: the disk is full after {written} bytes; what was written so far is kept",
                path.display()
            )
        } else {
            anyhow::anyhow!(
                "{}: write failed after {written} bytes: {e}",
                path.display()
            )
        }
    })
}

/// Captures until a stop; returns a one-line summary for stderr.
pub async fn run(
    cfg: Config,
    opts: Options,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<String> {
    let redactor = Redactor::new(&opts.redact).map_err(anyhow::Error::msg)?;
    let mut file = create(&opts.output)?;
    let mut fresh = Fresh {
        path: &opts.output,
        kept: false,
    };
    let ami = &cfg.ami;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(ami.login_timeout_secs.max(1));
    let mut sock = tokio::time::timeout_at(deadline, TcpStream::connect(&ami.address))
        .await
        .with_context(|| format!("cannot reach Asterisk's AMI at {} (timed out)", ami.address))?
        .with_context(|| format!("cannot reach Asterisk's AMI at {}", ami.address))?;
    // A quiet Asterisk is normal and capture sends no Ping; TCP keepalive finds a vanished
    // one (no FIN: powered off, cable out) within minutes, which ends the capture.
    let _ = socket2::SockRef::from(&sock).set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE)
            .with_interval(KEEPALIVE / 6),
    );
    let mut split = Splitter::new(ami.max_message_len);
    let mut buf = [0u8; 8192];
    let banner = loop {
        if let Some(b) = split.banner() {
            break b;
        }
        let n = tokio::time::timeout_at(deadline, sock.read(&mut buf))
            .await
            .context("no AMI banner within ami.login_timeout_secs")??;
        if n == 0 {
            bail!("{} closed the connection before its banner", ami.address);
        }
        split.push_raw(&buf[..n]);
    };
    if !banner.starts_with(recording::BANNER_PREFIX) {
        bail!(
            "{} is not Asterisk's AMI (its first line: {:?})",
            ami.address,
            String::from_utf8_lossy(&banner)
        );
    }
    let secret = ami.secret.clone().unwrap_or_default();
    let mut early: Vec<u8> = Vec::new();
    let mut hold = |m: &[u8]| {
        if early.len() + m.len() <= EARLY {
            early.extend_from_slice(&redactor.apply(m));
        }
    };
    let challenge = match ami.auth {
        AmiAuth::Md5 => {
            sock.write_all(challenge_action(CHALLENGE_ID).as_bytes())
                .await?;
            let reply = until_reply(
                &mut sock,
                &mut split,
                deadline,
                "the MD5 challenge",
                &mut |m| field(m, "ActionID") == Some(CHALLENGE_ID),
                &mut hold,
            )
            .await?;
            Some(field(&reply, "Challenge").unwrap_or("").to_string())
        }
        AmiAuth::Plain => None,
    };
    let login = login_action(
        &ami.username,
        &secret,
        &ami.events,
        challenge.as_deref(),
        LOGIN_ID,
    );
    sock.write_all(login.as_bytes()).await?;
    let reply = until_reply(
        &mut sock,
        &mut split,
        deadline,
        "the login",
        &mut |m| field(m, "ActionID") == Some(LOGIN_ID),
        &mut hold,
    )
    .await?;
    if field(&reply, "Response") != Some("Success") {
        bail!(
            "Asterisk refused the login of `{}`: {}",
            ami.username,
            field(&reply, "Message").unwrap_or("no reason given")
        );
    }
    sock.write_all(format!("Action: CoreSettings\r\nActionID: {VERSION_ID}\r\n\r\n").as_bytes())
        .await?;
    let settings = until_reply(
        &mut sock,
        &mut split,
        deadline,
        "the version query (CoreSettings)",
        &mut |m| field(m, "ActionID") == Some(VERSION_ID),
        &mut hold,
    )
    .await?;
    let version = field(&settings, "AsteriskVersion")
        .unwrap_or("unknown")
        .to_string();
    let captured = crate::dialect::routr::iso8601(crate::event::now_micros());
    let head = recording::header(
        &version,
        env!("CARGO_PKG_VERSION"),
        captured.as_str(),
        redactor.len(),
    );
    let mut written = 0u64;
    fresh.kept = true;
    for part in [head.as_bytes(), &banner, &early] {
        write_all(&mut file, &opts.output, part, written)?;
        written += part.len() as u64;
    }
    let mut messages = 0u64;
    let until = opts.duration.map(|d| tokio::time::Instant::now() + d);
    tokio::pin!(stop);
    let end = loop {
        let read = tokio::select! {
            _ = &mut stop => break End::Signal,
            _ = async { match until { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => break End::Duration,
            r = sock.read(&mut buf) => r,
        };
        let n = match read {
            Ok(0) | Err(_) => break End::Closed,
            Ok(n) => n,
        };
        let mut failed = None;
        let mut full = false;
        split.push(&buf[..n], &mut |m| {
            if failed.is_some() || full {
                return;
            }
            let m = redactor.apply(m);
            if written + m.len() as u64 > opts.max_bytes {
                full = true;
                return;
            }
            match write_all(&mut file, &opts.output, &m, written) {
                Ok(()) => {
                    written += m.len() as u64;
                    messages += 1;
                }
                Err(e) => failed = Some(e),
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if full {
            break End::Size;
        }
    };
    if end != End::Closed {
        let _ = tokio::time::timeout(
            LOGOFF_WAIT,
            sock.write_all(b"Action: Logoff\r\nActionID: pbxtap-capture-logoff\r\n\r\n"),
        )
        .await;
    }
    file.sync_all()
        .with_context(|| format!("{}: cannot sync", opts.output.display()))?;
    let why = match end {
        End::Signal => "stopped",
        End::Duration => "its --duration passed",
        End::Size => "--max-bytes reached",
        End::Closed => "Asterisk closed the connection",
    };
    let mut summary = format!(
        "capture: {messages} messages, {written} bytes to {} (Asterisk {version}); {why}",
        opts.output.display()
    );
    if split.skipped > 0 {
        summary.push_str(&format!(
            "; {} messages over ami.max_message_len left out",
            split.skipped
        ));
    }
    if end == End::Closed {
        bail!("{summary}");
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_cut_into_messages_and_one_too_long_is_left_out_and_counted() {
        let mut split = Splitter::new(64);
        split.push_raw(b"Asterisk Call Manager/11.0.0\r\nEvent: A\r\n");
        assert_eq!(split.banner().unwrap(), b"Asterisk Call Manager/11.0.0\r\n");
        let mut got: Vec<Vec<u8>> = Vec::new();
        let long = format!("Event: B\r\nData: {}\r\n\r\n", "x".repeat(200));
        for part in [
            &b"\r\n"[..],
            long.as_bytes(),
            b"Event: C\r\n\r\nEvent: D\r\n",
        ] {
            // Byte by byte too: a blank line split across reads.
            for chunk in part.chunks(7) {
                split.push(chunk, &mut |m| got.push(m.to_vec()));
            }
        }
        assert_eq!(got, [&b"Event: A\r\n\r\n"[..], b"Event: C\r\n\r\n"]);
        assert_eq!(split.skipped, 1);
        assert_eq!(
            field(
                b"Response: Success\r\nAsteriskVersion: 22.10.1\r\n\r\n",
                "asteriskversion"
            ),
            Some("22.10.1")
        );
    }
}
