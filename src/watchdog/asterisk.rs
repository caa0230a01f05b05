//! Asterisk health: the process (from /proc) and the AMI link, judged up / degraded / down,
//! with a `system.asterisk_*` event on every change and an optional, rate-limited restart.
//!
//! The readers take the /proc root as a path and `Monitor` is a pure state machine fed
//! with observations and the time, so both are tested without a live Asterisk; `run` is the
//! thin task that reads, judges, publishes and runs the restart command.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::WatchdogConfig;
use crate::ami::client::AmiHealth;
use crate::bus::Publisher;
use crate::event::{self, AsteriskHealth, Body};
use crate::watchdog::Heartbeat;

/// Clock ticks per second of the times in `/proc/<pid>/stat` (Linux's USER_HZ, 100 on
/// every architecture pbxtap targets).
pub const USER_HZ: u64 = 100;
/// Longest `restart_command` run; it is killed after this.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(120);
/// Share of Asterisk's own open-files limit above which it is degraded, when
/// `watchdog.max_fds` is 0.
pub const DEFAULT_FDS_PCT: u64 = 90;

/// What /proc says about one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcSample {
    pub pid: u32,
    /// User plus system CPU time, in `USER_HZ` ticks.
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    pub threads: u32,
    /// Open file descriptors; `None` when /proc/<pid>/fd is not readable to us.
    pub fds: Option<u32>,
    /// The soft open-files limit; `None` when unknown or unlimited.
    pub fd_limit: Option<u64>,
}

/// Why a process could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcError {
    #[error("process {0} is not running")]
    Gone(u32),
    #[error("process {0} is a zombie (exited, not yet reaped)")]
    Zombie(u32),
    #[error("cannot parse {file} of process {pid}")]
    Malformed { pid: u32, file: &'static str },
}

/// The pid written in a pidfile, if it holds one.
pub fn read_pidfile(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok().filter(|&p| p > 0)
}

/// The lowest pid under `proc_root` whose `comm` is `name` (the daemon starts before any
/// `asterisk -r` console does). Skips `except` (ourselves).
pub fn find_by_name(proc_root: &Path, name: &str, except: u32) -> Option<u32> {
    let entries = std::fs::read_dir(proc_root).ok()?;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != except)
        .filter(|&pid| comm(proc_root, pid).is_some_and(|c| c == name))
        .min()
}

/// A process's command name (`/proc/<pid>/comm`, at most 15 bytes).
pub fn comm(proc_root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm")).ok()?;
    Some(text.trim_end_matches('\n').to_string())
}

/// Reads one process from `proc_root` (`/proc`, or a fixture tree in tests).
pub fn sample(proc_root: &Path, pid: u32) -> Result<ProcSample, ProcError> {
    let dir = proc_root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).map_err(|_| ProcError::Gone(pid))?;
    let malformed = |file| ProcError::Malformed { pid, file };
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or(malformed("stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), utime 14, stime 15, num_threads 20.
    let field = |n: usize| fields.get(n - 3).copied().ok_or(malformed("stat"));
    if matches!(field(3)?, "Z" | "X" | "x") {
        return Err(ProcError::Zombie(pid));
    }
    let num = |n: usize| field(n)?.parse::<u64>().map_err(|_| malformed("stat"));
    let cpu_ticks = num(14)? + num(15)?;
    let threads = num(20)? as u32;
    let status = std::fs::read_to_string(dir.join("status")).map_err(|_| ProcError::Gone(pid))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>())
        .transpose()
        .map_err(|_| malformed("status"))?
        .unwrap_or(0);
    let fds = std::fs::read_dir(dir.join("fd"))
        .ok()
        .map(|d| d.count() as u32);
    let fd_limit = std::fs::read_to_string(dir.join("limits"))
        .ok()
        .and_then(|l| parse_fd_limit(&l));
    Ok(ProcSample {
        pid,
        cpu_ticks,
        rss_kib,
        threads,
        fds,
        fd_limit,
    })
}

/// The soft limit from the `Max open files` line of /proc/<pid>/limits.
fn parse_fd_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU use between two samples of the same process, in percent of one core.
pub fn cpu_pct(before: u64, after: u64, elapsed: Duration) -> u32 {
    let ms = elapsed.as_millis() as u64;
    if ms == 0 {
        return 0;
    }
    (after.saturating_sub(before) * 1000 * 100 / USER_HZ / ms) as u32
}

/// The AMI link as the watchdog sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmiView {
    pub connected: bool,
    pub fully_booted: bool,
    /// Last Ping round trip in milliseconds, 0 when unknown.
    pub ping_ms: u32,
}

/// One check's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// Whether the process is watched at all (a pidfile or a name is configured).
    pub watch_process: bool,
    /// The process, when found and alive.
    pub process: Option<ProcSample>,
    /// Why the process is not there, when it is not.
    pub missing: String,
    pub cpu_pct: u32,
    pub ami: AmiView,
}

/// Limits beyond which a live Asterisk is degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub max_ping_ms: u32,
    /// 0: no limit.
    pub max_rss_kib: u64,
    /// 0: `DEFAULT_FDS_PCT` of the process's own limit.
    pub max_fds: u32,
}

/// When to run the restart command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Consecutive down checks before a restart; 0: never.
    pub after: u32,
    pub min_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up,
    Degraded,
    Down,
}

impl State {
    /// A small number for sharing the state through an atomic (0 is "not checked yet").
    pub fn code(self) -> u8 {
        match self {
            State::Up => 1,
            State::Degraded => 2,
            State::Down => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<State> {
        match code {
            1 => Some(State::Up),
            2 => Some(State::Degraded),
            3 => Some(State::Down),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Degraded => "degraded",
            State::Down => "down",
        }
    }
}

/// Judges one observation: the state and why.
pub fn assess(obs: &Observation, t: &Thresholds) -> (State, String) {
    let ami = obs.ami;
    let Some(p) = &obs.process else {
        if obs.watch_process {
            return (State::Down, obs.missing.clone());
        }
        // Not watching a process (Asterisk elsewhere): the AMI link is all we know.
        return if ami.connected {
            ami_state(ami, t)
        } else {
            (State::Down, "AMI not connected".into())
        };
    };
    if !ami.connected {
        return (
            State::Degraded,
            "process running but AMI not connected".into(),
        );
    }
    if t.max_rss_kib > 0 && p.rss_kib > t.max_rss_kib {
        return (
            State::Degraded,
            format!("RSS {} KiB above {} KiB", p.rss_kib, t.max_rss_kib),
        );
    }
    let fd_max = match (t.max_fds, p.fd_limit) {
        (0, Some(limit)) => limit * DEFAULT_FDS_PCT / 100,
        (0, None) => u64::MAX,
        (n, _) => u64::from(n),
    };
    if let Some(fds) = p.fds.filter(|&n| u64::from(n) > fd_max) {
        return (State::Degraded, format!("{fds} open files, above {fd_max}"));
    }
    ami_state(ami, t)
}

fn ami_state(ami: AmiView, t: &Thresholds) -> (State, String) {
    if !ami.fully_booted {
        return (State::Degraded, "Asterisk not fully booted".into());
    }
    if ami.ping_ms > t.max_ping_ms {
        return (
            State::Degraded,
            format!("AMI ping {} ms above {} ms", ami.ping_ms, t.max_ping_ms),
        );
    }
    (State::Up, "healthy".into())
}

/// What a check asks the task to do.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// A transition to publish.
    pub event: Option<Body>,
    /// Run the restart command now.
    pub restart: bool,
}

/// The up / degraded / down state machine with its restart policy.
#[derive(Debug)]
pub struct Monitor {
    thresholds: Thresholds,
    policy: RestartPolicy,
    state: Option<State>,
    down_checks: u32,
    last_restart: Option<Instant>,
    restarting: bool,
}

impl Monitor {
    pub fn new(thresholds: Thresholds, policy: RestartPolicy) -> Self {
        Monitor {
            thresholds,
            policy,
            state: None,
            down_checks: 0,
            last_restart: None,
            restarting: false,
        }
    }

    pub fn state(&self) -> Option<State> {
        self.state
    }

    /// Takes one check's observation at `now`.
    pub fn check(&mut self, obs: &Observation, now: Instant) -> Step {
        let (state, reason) = assess(obs, &self.thresholds);
        let mut step = Step::default();
        if self.state != Some(state) {
            self.state = Some(state);
            let health = health_body(obs, &reason);
            step.event = Some(match state {
                State::Up => Body::AsteriskUp(health),
                State::Degraded => Body::AsteriskDegraded(health),
                State::Down => Body::AsteriskDown(health),
            });
        }
        if state != State::Down {
            self.down_checks = 0;
            return step;
        }
        self.down_checks = self.down_checks.saturating_add(1);
        let due = self.policy.after > 0 && self.down_checks >= self.policy.after;
        let spaced = self
            .last_restart
            .is_none_or(|t| now.duration_since(t) >= self.policy.min_interval);
        if due && spaced && !self.restarting {
            step.restart = true;
            self.restarting = true;
            self.last_restart = Some(now);
            self.down_checks = 0;
        }
        step
    }

    /// The restart command ended (however it ended).
    pub fn restart_finished(&mut self) {
        self.restarting = false;
    }
}

/// The measurements carried by a `system.asterisk_*` event.
pub fn health_body(obs: &Observation, reason: &str) -> AsteriskHealth {
    let p = obs.process.clone().unwrap_or_default();
    AsteriskHealth {
        pid: p.pid,
        rss_kib: p.rss_kib,
        cpu_pct: obs.cpu_pct,
        threads: p.threads,
        fds: p.fds.unwrap_or(0),
        ami_connected: obs.ami.connected,
        ping_ms: obs.ami.ping_ms,
        reason: event::text(reason),
    }
}

/// Where to look for Asterisk, and how to restart it.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub proc_root: PathBuf,
    /// Empty: no pidfile.
    pub pidfile: PathBuf,
    /// Empty: no lookup by name.
    pub process_name: String,
    pub interval: Duration,
    pub thresholds: Thresholds,
    pub policy: RestartPolicy,
    /// Run with `sh -c`; empty: never.
    pub restart_command: String,
}

impl WatchConfig {
    pub fn from_config(cfg: &WatchdogConfig) -> Self {
        WatchConfig {
            proc_root: "/proc".into(),
            pidfile: cfg.pidfile.clone(),
            process_name: cfg.process_name.clone(),
            interval: Duration::from_secs(cfg.check_interval_secs),
            thresholds: Thresholds {
                max_ping_ms: cfg.max_ping_ms,
                max_rss_kib: cfg.max_rss_mib.saturating_mul(1024),
                max_fds: cfg.max_fds,
            },
            policy: RestartPolicy {
                after: if cfg.restart_command.trim().is_empty() {
                    0
                } else {
                    cfg.restart_after
                },
                min_interval: Duration::from_secs(cfg.min_restart_interval_secs),
            },
            restart_command: cfg.restart_command.trim().to_string(),
        }
    }
}

/// Finds and reads the process: the pidfile's pid if that is a live Asterisk, else the
/// process found by name. When there is none, says why (each place looked, `; ` apart).
pub fn observe_process(cfg: &WatchConfig) -> (Option<ProcSample>, String) {
    let mut why: Vec<String> = Vec::new();
    if !cfg.pidfile.as_os_str().is_empty() {
        match read_pidfile(&cfg.pidfile) {
            None => why.push(format!("no pid in {}", cfg.pidfile.display())),
            Some(pid) => match read_live(cfg, pid, true) {
                Ok(s) => return (Some(s), String::new()),
                Err(e) => why.push(e),
            },
        }
    }
    if !cfg.process_name.is_empty() {
        match find_by_name(&cfg.proc_root, &cfg.process_name, std::process::id()) {
            None => why.push(format!("no process named `{}`", cfg.process_name)),
            Some(pid) => match read_live(cfg, pid, false) {
                Ok(s) => return (Some(s), String::new()),
                Err(e) => why.push(e),
            },
        }
    }
    (None, why.join("; "))
}

/// Reads `pid` if it is alive and, for a pid from the pidfile, really Asterisk (a stale
/// pidfile's pid may belong to another program by now).
fn read_live(cfg: &WatchConfig, pid: u32, from_pidfile: bool) -> Result<ProcSample, String> {
    if !alive(pid) {
        return Err(ProcError::Gone(pid).to_string());
    }
    if from_pidfile && !cfg.process_name.is_empty() {
        if let Some(comm) = comm(&cfg.proc_root, pid).filter(|c| *c != cfg.process_name) {
            return Err(format!(
                "pid {pid} from the pidfile is `{comm}`, not `{}`",
                cfg.process_name
            ));
        }
    }
    sample(&cfg.proc_root, pid).map_err(|e| e.to_string())
}

fn log_transition(state: State, body: &Body) {
    let (Body::AsteriskUp(h) | Body::AsteriskDegraded(h) | Body::AsteriskDown(h)) = body else {
        return;
    };
    let reason = h.reason.as_str();
    if state == State::Up {
        tracing::info!(
            code = "asterisk_state",
            state = state.as_str(),
            pid = h.pid,
            rss_kib = h.rss_kib,
            threads = h.threads,
            fds = h.fds,
            ping_ms = h.ping_ms,
            "Asterisk up"
        );
    } else {
        tracing::warn!(
            code = "asterisk_state",
            state = state.as_str(),
            pid = h.pid,
            rss_kib = h.rss_kib,
            threads = h.threads,
            fds = h.fds,
            ping_ms = h.ping_ms,
            "Asterisk {}: {reason}",
            state.as_str()
        );
    }
}

/// `kill(pid, 0)`: the process exists (EPERM: it exists but is not ours to signal).
fn alive(pid: u32) -> bool {
    use nix::errno::Errno;
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Ok(()) | Err(Errno::EPERM)
    )
}

/// Checks Asterisk every `interval` until the runtime ends, publishing transitions and
/// running the restart command when the policy says so. Beats `heartbeat` each check.
pub async fn run(
    cfg: WatchConfig,
    ami: Arc<AmiHealth>,
    publisher: Publisher,
    heartbeat: Heartbeat,
    state: Arc<AtomicU8>,
) {
    let mut monitor = Monitor::new(cfg.thresholds, cfg.policy);
    let watch_process = !cfg.pidfile.as_os_str().is_empty() || !cfg.process_name.is_empty();
    let mut last_cpu: Option<(u32, u64, Instant)> = None;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    // The first check waits one interval, so the AMI link has had time to come up.
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + cfg.interval, cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(()) = done_rx.recv() => {
                monitor.restart_finished();
                continue;
            }
        }
        heartbeat.beat();
        let now = Instant::now();
        let (process, missing) = if watch_process {
            observe_process(&cfg)
        } else {
            (None, String::new())
        };
        let cpu = match (&process, last_cpu) {
            (Some(p), Some((pid, ticks, at))) if pid == p.pid => {
                cpu_pct(ticks, p.cpu_ticks, now.duration_since(at))
            }
            _ => 0,
        };
        last_cpu = process.as_ref().map(|p| (p.pid, p.cpu_ticks, now));
        let rtt_us = ami.last_ping_rtt_us.load(Ordering::Relaxed);
        let obs = Observation {
            watch_process,
            process,
            missing,
            cpu_pct: cpu,
            ami: AmiView {
                connected: ami.connected.load(Ordering::Relaxed),
                fully_booted: ami.fully_booted.load(Ordering::Relaxed),
                ping_ms: rtt_us.div_ceil(1000) as u32,
            },
        };
        let step = monitor.check(&obs, now);
        if let Some(body) = step.event {
            let new = monitor.state().unwrap_or(State::Down);
            state.store(new.code(), Ordering::Relaxed);
            log_transition(new, &body);
            publisher.publish_body(body);
        }
        if step.restart {
            tracing::warn!(code = "asterisk_restart", command = %cfg.restart_command, "Asterisk down for {} checks: running the restart command", cfg.policy.after);
            let command = cfg.restart_command.clone();
            let publisher = publisher.clone();
            let done = done_tx.clone();
            let health = health_body(&obs, "");
            tokio::spawn(async move {
                let outcome = run_restart(&command).await;
                let mut body = health;
                // The outcome first: the reason field is bounded and commands can be long.
                body.reason = event::text(&format!("restart command {outcome}: {command}"));
                publisher.publish_body(Body::AsteriskRestarted(body));
                let _ = done.send(()).await;
            });
        }
    }
}

/// Runs the restart command with `sh -c`, stdout and stdin closed (stdout may be the
/// event stream), stderr inherited (the journal), and no systemd notify variables.
async fn run_restart(command: &str) -> String {
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                code = "asterisk_restart_failed",
                "cannot run the restart command: {e}"
            );
            return format!("could not start: {e}");
        }
    };
    match tokio::time::timeout(RESTART_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::info!(code = "asterisk_restart_done", "restart command succeeded");
            "exit 0".into()
        }
        Ok(Ok(status)) => {
            tracing::error!(code = "asterisk_restart_failed", %status, "restart command failed");
            format!("failed ({status})")
        }
        Ok(Err(e)) => format!("could not wait for it: {e}"),
        Err(_) => {
            tracing::error!(
                code = "asterisk_restart_failed",
                "restart command still running after {RESTART_TIMEOUT:?}; killed"
            );
            let _ = child.kill().await;
            format!("killed after {}s", RESTART_TIMEOUT.as_secs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture /proc entry for `pid`.
    fn proc_entry(root: &Path, pid: u32, comm: &str, state: &str, fds: u32) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        // A name with spaces and a ')' to check parsing from the last ')'.
        std::fs::write(
            dir.join("stat"),
            format!("{pid} ({comm} x) y) {state} 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 37 0 100 1000 200"),
        )
        .unwrap();
        std::fs::write(
            dir.join("status"),
            "Name:\tasterisk\nThreads:\t37\nVmRSS:\t   81234 kB\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("limits"),
            "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n",
        )
        .unwrap();
        for i in 0..fds {
            std::fs::write(dir.join("fd").join(i.to_string()), "").unwrap();
        }
    }

    #[test]
    fn reads_a_process_from_a_fixture_tree() {
        let root = tempfile::tempdir().unwrap();
        proc_entry(root.path(), 4242, "asterisk", "S", 12);
        let s = sample(root.path(), 4242).unwrap();
        assert_eq!(
            s,
            ProcSample {
                pid: 4242,
                cpu_ticks: 300,
                rss_kib: 81234,
                threads: 37,
                fds: Some(12),
                fd_limit: Some(1024),
            }
        );
        assert_eq!(sample(root.path(), 1), Err(ProcError::Gone(1)));
        proc_entry(root.path(), 7, "asterisk", "Z", 0);
        assert_eq!(sample(root.path(), 7), Err(ProcError::Zombie(7)));
        std::fs::write(root.path().join("7/stat"), "7 (asterisk").unwrap();
        assert!(matches!(
            sample(root.path(), 7),
            Err(ProcError::Malformed { file: "stat", .. })
        ));
    }

    #[test]
    fn finds_the_lowest_pid_by_name_and_reads_pidfiles() {
        let root = tempfile::tempdir().unwrap();
        proc_entry(root.path(), 900, "asterisk", "S", 0);
        proc_entry(root.path(), 300, "asterisk", "S", 0);
        proc_entry(root.path(), 100, "sshd", "S", 0);
        std::fs::create_dir(root.path().join("self")).unwrap();
        assert_eq!(find_by_name(root.path(), "asterisk", 0), Some(300));
        assert_eq!(find_by_name(root.path(), "asterisk", 300), Some(900));
        assert_eq!(find_by_name(root.path(), "freeswitch", 0), None);
        let pidfile = root.path().join("asterisk.pid");
        std::fs::write(&pidfile, "1234\n").unwrap();
        assert_eq!(read_pidfile(&pidfile), Some(1234));
        std::fs::write(&pidfile, "garbage").unwrap();
        assert_eq!(read_pidfile(&pidfile), None);
        assert_eq!(read_pidfile(&root.path().join("none.pid")), None);
    }

    #[test]
    fn a_stale_pidfile_naming_another_program_is_not_asterisk() {
        let root = tempfile::tempdir().unwrap();
        // Our own pid: alive for kill(pid, 0), with a fixture /proc entry.
        let me = std::process::id();
        proc_entry(root.path(), me, "sleep", "S", 3);
        let pidfile = root.path().join("asterisk.pid");
        std::fs::write(&pidfile, format!("{me}\n")).unwrap();
        let mut cfg = WatchConfig::from_config(&WatchdogConfig::default());
        cfg.proc_root = root.path().to_path_buf();
        cfg.pidfile = pidfile.clone();
        let (found, why) = observe_process(&cfg);
        assert_eq!(found, None);
        assert_eq!(
            why,
            format!(
                "pid {me} from the pidfile is `sleep`, not `asterisk`; no process named `asterisk`"
            )
        );
        proc_entry(root.path(), me, "asterisk", "S", 3);
        let (found, why) = observe_process(&cfg);
        assert_eq!(found.map(|s| (s.pid, s.fds)), Some((me, Some(3))), "{why}");
        std::fs::write(&pidfile, "").unwrap();
        cfg.process_name.clear();
        assert_eq!(
            observe_process(&cfg),
            (None, format!("no pid in {}", pidfile.display()))
        );
    }

    #[test]
    fn cpu_percent_of_one_core() {
        assert_eq!(cpu_pct(100, 150, Duration::from_secs(1)), 50);
        assert_eq!(cpu_pct(0, 400, Duration::from_secs(2)), 200);
        assert_eq!(cpu_pct(10, 5, Duration::from_secs(1)), 0);
        assert_eq!(cpu_pct(0, 5, Duration::ZERO), 0);
    }

    const T: Thresholds = Thresholds {
        max_ping_ms: 500,
        max_rss_kib: 100_000,
        max_fds: 0,
    };

    fn healthy() -> Observation {
        Observation {
            watch_process: true,
            process: Some(ProcSample {
                pid: 42,
                cpu_ticks: 0,
                rss_kib: 50_000,
                threads: 30,
                fds: Some(100),
                fd_limit: Some(1024),
            }),
            missing: String::new(),
            cpu_pct: 3,
            ami: AmiView {
                connected: true,
                fully_booted: true,
                ping_ms: 2,
            },
        }
    }

    fn down() -> Observation {
        Observation {
            process: None,
            missing: "process 42 is not running".into(),
            ..healthy()
        }
    }

    #[test]
    fn assess_names_the_threshold() {
        assert_eq!(assess(&healthy(), &T).0, State::Up);
        let mut o = healthy();
        o.ami.ping_ms = 800;
        assert_eq!(
            assess(&o, &T),
            (State::Degraded, "AMI ping 800 ms above 500 ms".into())
        );
        let mut o = healthy();
        o.process.as_mut().unwrap().rss_kib = 200_000;
        assert!(assess(&o, &T).1.starts_with("RSS 200000 KiB"));
        let mut o = healthy();
        o.process.as_mut().unwrap().fds = Some(950); // 90% of 1024 is 921
        assert_eq!(
            assess(&o, &T),
            (State::Degraded, "950 open files, above 921".into())
        );
        let explicit = Thresholds { max_fds: 2000, ..T };
        assert_eq!(assess(&o, &explicit).0, State::Up);
        let mut o = healthy();
        o.ami.connected = false;
        assert_eq!(assess(&o, &T).0, State::Degraded);
        let mut o = healthy();
        o.ami.fully_booted = false;
        assert_eq!(
            assess(&o, &T),
            (State::Degraded, "Asterisk not fully booted".into())
        );
        assert_eq!(
            assess(&down(), &T),
            (State::Down, "process 42 is not running".into())
        );
        // Watching AMI only: the link decides.
        let mut o = down();
        o.watch_process = false;
        assert_eq!(assess(&o, &T).0, State::Up);
        o.ami.connected = false;
        assert_eq!(assess(&o, &T).0, State::Down);
    }

    #[test]
    fn events_only_on_transitions_carrying_the_measurements() {
        let policy = RestartPolicy {
            after: 0,
            min_interval: Duration::from_secs(60),
        };
        let mut m = Monitor::new(T, policy);
        let t0 = Instant::now();
        let step = m.check(&healthy(), t0);
        let Some(Body::AsteriskUp(h)) = step.event else {
            panic!("{step:?}")
        };
        assert_eq!(
            (h.pid, h.rss_kib, h.threads, h.fds, h.cpu_pct, h.ping_ms),
            (42, 50_000, 30, 100, 3, 2)
        );
        assert_eq!(h.reason, "healthy");
        assert_eq!(m.check(&healthy(), t0), Step::default());
        let step = m.check(&down(), t0);
        let Some(Body::AsteriskDown(h)) = step.event else {
            panic!("{step:?}")
        };
        assert_eq!(h.reason, "process 42 is not running");
        assert!(!step.restart, "restarts are off");
        assert_eq!(m.check(&down(), t0), Step::default());
        let mut slow = healthy();
        slow.ami.ping_ms = 900;
        assert!(matches!(
            m.check(&slow, t0).event,
            Some(Body::AsteriskDegraded(_))
        ));
    }

    #[test]
    fn restart_after_n_down_checks_and_not_more_often_than_allowed() {
        let policy = RestartPolicy {
            after: 3,
            min_interval: Duration::from_secs(60),
        };
        let mut m = Monitor::new(T, policy);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let restarts: Vec<u64> = (0..200)
            .filter(|&s| {
                let step = m.check(&down(), at(s));
                if step.restart {
                    m.restart_finished();
                }
                step.restart
            })
            .collect();
        // The third down check, then every 60 s (3 more checks are long done by then).
        assert_eq!(restarts, [2, 62, 122, 182]);

        // Coming up resets the count; a restart still running blocks another.
        let mut m = Monitor::new(T, policy);
        assert!(!m.check(&down(), at(0)).restart);
        assert!(!m.check(&down(), at(1)).restart);
        assert!(!m.check(&healthy(), at(2)).restart);
        assert!(!m.check(&down(), at(3)).restart);
        assert!(!m.check(&down(), at(4)).restart);
        assert!(m.check(&down(), at(5)).restart);
        for s in 6..100 {
            assert!(!m.check(&down(), at(s)).restart, "still running at {s}");
        }
        m.restart_finished();
        assert!(m.check(&down(), at(100)).restart);
    }
}
