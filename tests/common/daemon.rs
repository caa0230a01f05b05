//! The real `pbxtap run` as a child process against a replaying fake Asterisk: its
//! config in a temp dir, its stdout lines and stderr collected, signals, exit.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pbxtap::ami::replay::{self, ReplayConfig, ReplayPeer};

/// A fake Asterisk on loopback, with the runtime that serves it.
pub struct Peer {
    pub peer: ReplayPeer,
    _rt: tokio::runtime::Runtime,
}

impl Peer {
    /// Replays `recordings` (fixture names, each `times` over) and stays connected.
    pub fn start(recordings: &[&str], times: usize, pace: Option<Duration>) -> Peer {
        let mut all = Vec::new();
        for _ in 0..times {
            all.extend(recordings.iter().map(|r| super::ami::fixture(r)));
        }
        let mut cfg = ReplayConfig::new(all);
        cfg.pace = pace;
        Peer::start_with(cfg)
    }

    /// Replays as `cfg` says (recordings of the test's own making, for one).
    pub fn start_with(cfg: ReplayConfig) -> Peer {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let peer = rt.block_on(replay::start(cfg)).unwrap();
        Peer { peer, _rt: rt }
    }

    pub fn address(&self) -> &str {
        &self.peer.address
    }

    /// The `[ami]` table for this peer.
    pub fn ami_toml(&self) -> String {
        format!(
            "[ami]\naddress = \"{}\"\nusername = \"tap\"\nsecret = \"tapsecret\"\n",
            self.address()
        )
    }
}

pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    lines: Option<mpsc::Receiver<String>>,
    /// The thread reading stdout (when collected); it ends at end of file.
    reader: Option<std::thread::JoinHandle<()>>,
    /// Every stdout line so far (when collected), for tests that look at the whole output.
    all_lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `pbxtap run` with `config` (TOML text) and extra environment. With
    /// `read_stdout`, a thread collects stdout lines; else stdout is left for the test.
    pub fn start(config: &str, env: &[(&str, &str)], read_stdout: bool) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Daemon::start_in(dir, config, env, read_stdout)
    }

    pub fn start_in(
        dir: tempfile::TempDir,
        config: &str,
        env: &[(&str, &str)],
        read_stdout: bool,
    ) -> Daemon {
        Daemon::start_wrapped(dir, config, env, read_stdout, &[])
    }

    /// As `start_in`, with pbxtap's command line appended to `wrapper` (a program and its
    /// arguments). The wrapper must end by exec'ing that command line, so the child's pid
    /// is pbxtap's and signals reach it.
    pub fn start_wrapped(
        dir: tempfile::TempDir,
        config: &str,
        env: &[(&str, &str)],
        read_stdout: bool,
        wrapper: &[&OsStr],
    ) -> Daemon {
        let path = dir.path().join("pbxtap.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(super::pbxtap_bin());
                cmd
            }
            None => Command::new(super::pbxtap_bin()),
        };
        cmd.args(["run", "--config", path.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start pbxtap");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let all_lines = Arc::new(Mutex::new(Vec::new()));
        let mut reader = None;
        let lines = read_stdout.then(|| {
            let (tx, rx) = mpsc::channel();
            let out = child.stdout.take().unwrap();
            let all = all_lines.clone();
            reader = Some(std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    all.lock().unwrap().push(line.clone());
                    // The test may have stopped reading lines one by one: keep collecting.
                    let _ = tx.send(line);
                }
            }));
            rx
        });
        Daemon {
            child,
            dir,
            config: path,
            lines,
            reader,
            all_lines,
            stderr,
        }
    }

    pub fn take_stdout(&mut self) -> ChildStdout {
        self.child.stdout.take().expect("stdout already taken")
    }

    /// Stdout lines until one satisfies `pred`; panics after `within`.
    pub fn wait_line(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let rx = self.lines.as_ref().expect("stdout not collected");
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no matching stdout line within {within:?}; stderr:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    /// Stdout lines that arrive within `within`.
    pub fn lines_for(&self, within: Duration) -> Vec<String> {
        let rx = self.lines.as_ref().expect("stdout not collected");
        let until = Instant::now() + within;
        let mut out = Vec::new();
        while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            out.push(line);
        }
        out
    }

    /// Every stdout line printed so far (stdout collected).
    pub fn stdout_lines(&self) -> Vec<String> {
        assert!(self.lines.is_some(), "stdout not collected");
        self.all_lines.lock().unwrap().clone()
    }

    /// For async tests: SIGTERM, then waits (on the runtime) for a clean exit within
    /// `within` and for stdout to close. Returns every stdout line and stderr.
    pub async fn stop(mut self, within: Duration) -> (Vec<String>, String) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut status = None;
        super::until("pbxtap to exit after SIGTERM", within, async || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        })
        .await;
        let status = status.unwrap();
        let stderr = self.stderr();
        assert!(status.success(), "pbxtap exited with {status}:\n{stderr}");
        if let Some(reader) = &self.reader {
            super::until("stdout to close", within, async || reader.is_finished()).await;
        }
        (self.stdout_lines(), self.stderr())
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`; panics after `within`.
    pub fn wait_stderr(&self, within: Duration, needle: &str) {
        let until = Instant::now() + within;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < until,
                "stderr never said `{needle}` within {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(super::POLL);
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig)
            .expect("signal pbxtap");
    }

    /// Waits for the process to end; panics after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "pbxtap still running {within:?} later; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `"key":` in a native JSON line (string or number), if there.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat)? + pat.len()..];
    if let Some(s) = rest.strip_prefix('"') {
        return s.split('"').next();
    }
    rest.split([',', '}']).next()
}

/// `class.event` of a native JSON line.
pub fn name(line: &str) -> String {
    format!(
        "{}.{}",
        field(line, "class").unwrap_or("?"),
        field(line, "event").unwrap_or("?")
    )
}
