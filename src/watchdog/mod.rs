//! The watchdog: Asterisk's health into the bus (`asterisk`), and our own liveness and
//! status to systemd (`systemd`), gated on every pipeline task making progress.
//!
//! Progress: the AMI task beats on every tick (`AmiHealth::ticks`), the Asterisk monitor
//! on every check (`Heartbeat`), and a sink shows progress by taking events off its ring.
//! `Gate` is the pure judgement over those counters; `Pipeline` reads them.

pub mod asterisk;
pub mod config;
pub mod systemd;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::ami::client::{self, AmiHealth};
use crate::bus::Bus;
use crate::event::{self, Text};

/// How long the AMI task may go without a tick: a connect attempt may take
/// `CONNECT_TIMEOUT` without one, so three of those.
pub const AMI_STALL: Duration = Duration::from_secs(3 * client::CONNECT_TIMEOUT.as_secs());
/// Checks the Asterisk monitor may miss before it counts as stuck.
pub const MONITOR_MISSED_CHECKS: u32 = 3;

/// A progress counter a task bumps while it is alive.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    pub fn beat(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One task's progress at a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub name: Text,
    /// Anything that only grows while the task works.
    pub progress: u64,
    /// The task has work waiting (an idle sink is not stuck).
    pub busy: bool,
    /// How long it may show no progress while busy.
    pub allowance: Duration,
}

/// A task that made no progress for longer than its allowance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} made no progress for {}s", .stalled.as_secs())]
pub struct Stuck {
    pub name: Text,
    pub stalled: Duration,
}

/// Remembers when each task last progressed. Holds one entry per watched task.
#[derive(Debug, Default)]
pub struct Gate {
    tracked: Vec<(Text, u64, Instant)>,
}

impl Gate {
    /// Judges `readings` taken at `now`: the first task stuck, if any. Tasks no longer
    /// read (a sink removed by a reload) are forgotten.
    pub fn check(&mut self, now: Instant, readings: &[Reading]) -> Result<(), Stuck> {
        self.tracked
            .retain(|(name, _, _)| readings.iter().any(|r| r.name == *name));
        let mut stuck = None;
        for r in readings {
            match self.tracked.iter_mut().find(|(n, _, _)| *n == r.name) {
                None => self.tracked.push((r.name.clone(), r.progress, now)),
                Some((_, last, since)) => {
                    if *last != r.progress || !r.busy {
                        *last = r.progress;
                        *since = now;
                    } else if stuck.is_none() && now.duration_since(*since) > r.allowance {
                        stuck = Some(Stuck {
                            name: r.name.clone(),
                            stalled: now.duration_since(*since),
                        });
                    }
                }
            }
        }
        stuck.map_or(Ok(()), Err)
    }
}

/// The pipeline as the systemd task sees it: counters to judge progress and to summarise.
pub struct Pipeline {
    pub ami: Arc<AmiHealth>,
    /// Weak, so the watchdog never keeps the bus open at shutdown.
    pub bus: Weak<Bus>,
    /// The Asterisk monitor's heartbeat and check interval, when it runs.
    pub monitor: Option<(Heartbeat, Duration)>,
    /// `asterisk::State::code` of the last check, 0 before the first.
    pub asterisk: Arc<AtomicU8>,
    /// Sinks' allowance; zero: sinks are not judged.
    pub sink_stall: Duration,
}

impl Pipeline {
    /// Every task's progress now.
    pub fn readings(&self) -> Vec<Reading> {
        let mut out = vec![Reading {
            name: event::text("ami"),
            progress: self.ami.ticks.load(Ordering::Relaxed),
            busy: true,
            allowance: AMI_STALL,
        }];
        if let Some((beat, interval)) = &self.monitor {
            out.push(Reading {
                name: event::text("asterisk-monitor"),
                progress: beat.count(),
                busy: true,
                allowance: *interval * MONITOR_MISSED_CHECKS,
            });
        }
        if let (Some(bus), false) = (self.bus.upgrade(), self.sink_stall.is_zero()) {
            for s in bus.sinks() {
                out.push(Reading {
                    name: s.name.clone(),
                    progress: s.received() + s.dropped.load(Ordering::Relaxed),
                    busy: s.backlog() > 0,
                    allowance: self.sink_stall,
                });
            }
        }
        out
    }

    /// The one-line summary for systemd's STATUS=.
    pub fn status(&self, stuck: Option<&Stuck>) -> String {
        let ami = &self.ami;
        let mut line = if ami.connected.load(Ordering::Relaxed) {
            let booted = if ami.fully_booted.load(Ordering::Relaxed) {
                "booted"
            } else {
                "booting"
            };
            let rtt = ami.last_ping_rtt_us.load(Ordering::Relaxed);
            format!("AMI connected ({booted}, ping {} ms)", rtt.div_ceil(1000))
        } else {
            "AMI disconnected".to_string()
        };
        if let Some(state) = asterisk::State::from_code(self.asterisk.load(Ordering::Relaxed)) {
            line.push_str(&format!("; Asterisk {}", state.as_str()));
        }
        if let Some(bus) = self.bus.upgrade() {
            let sinks = bus.sinks();
            let out: u64 = sinks
                .iter()
                .map(|s| s.delivered.load(Ordering::Relaxed))
                .sum();
            line.push_str(&format!(
                "; events in {}, out {}, dropped {}",
                bus.published(),
                out,
                bus.dropped()
            ));
        }
        if let Some(s) = stuck {
            line.push_str(&format!("; STUCK: {s}"));
        }
        line
    }
}

/// The running watchdog tasks.
pub struct Watchdog {
    tasks: Vec<JoinHandle<()>>,
    notifier: Option<Arc<systemd::Notifier>>,
}

impl Watchdog {
    /// Starts the Asterisk monitor (when enabled) and the systemd task, which sends
    /// READY=1 at once: call this when the sinks have started.
    pub fn start(cfg: &config::WatchdogConfig, bus: &Arc<Bus>, ami: Arc<AmiHealth>) -> Watchdog {
        let mut tasks = Vec::new();
        let asterisk_state = Arc::new(AtomicU8::new(0));
        let monitor = cfg.enabled.then(|| {
            let beat = Heartbeat::default();
            let watch = asterisk::WatchConfig::from_config(cfg);
            let interval = watch.interval;
            tasks.push(tokio::spawn(asterisk::run(
                watch,
                ami.clone(),
                bus.publisher(),
                beat.clone(),
                asterisk_state.clone(),
            )));
            (beat, interval)
        });
        let pipeline = Pipeline {
            ami,
            bus: Arc::downgrade(bus),
            monitor,
            asterisk: asterisk_state,
            sink_stall: Duration::from_secs(cfg.stall_secs),
        };
        let notifier = match systemd::Notifier::from_env() {
            Ok(n) => n.map(Arc::new),
            Err(e) => {
                tracing::error!(
                    code = "systemd_notify_unavailable",
                    "{e}; not notifying systemd"
                );
                None
            }
        };
        let interval = systemd::watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        tasks.push(tokio::spawn(systemd::run(
            notifier.clone(),
            interval,
            pipeline,
        )));
        Watchdog { tasks, notifier }
    }

    /// Stops the tasks and tells systemd we are stopping (STOPPING=1).
    pub fn stopping(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(n) = &self.notifier {
            n.send_logged("STOPPING=1\nSTATUS=stopping: draining the sinks");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(name: &str, progress: u64, busy: bool) -> Reading {
        Reading {
            name: event::text(name),
            progress,
            busy,
            allowance: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_busy_task_without_progress_is_stuck_after_its_allowance() {
        let mut gate = Gate::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            gate.check(
                at(0),
                &[reading("ami", 1, true), reading("nats#0", 5, true)]
            ),
            Ok(())
        );
        // The sink takes nothing off its ring; the AMI task ticks on.
        for s in 1..=10 {
            assert_eq!(
                gate.check(
                    at(s),
                    &[reading("ami", 1 + s, true), reading("nats#0", 5, true)]
                ),
                Ok(()),
                "at {s}"
            );
        }
        let e = gate
            .check(
                at(11),
                &[reading("ami", 12, true), reading("nats#0", 5, true)],
            )
            .unwrap_err();
        assert_eq!(
            (e.name.as_str(), e.stalled),
            ("nats#0", Duration::from_secs(11))
        );
        assert_eq!(e.to_string(), "nats#0 made no progress for 11s");
        // Progress clears it.
        assert_eq!(
            gate.check(
                at(12),
                &[reading("ami", 13, true), reading("nats#0", 6, true)]
            ),
            Ok(())
        );
    }

    #[test]
    fn an_idle_sink_is_never_stuck_and_removed_tasks_are_forgotten() {
        let mut gate = Gate::default();
        let t0 = Instant::now();
        for s in 0..100 {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(gate.check(now, &[reading("stdout#0", 7, false)]), Ok(()));
        }
        // Busy from now on: the allowance counts from the last idle check.
        let now = t0 + Duration::from_secs(105);
        assert_eq!(gate.check(now, &[reading("stdout#0", 7, true)]), Ok(()));
        assert!(gate
            .check(
                now + Duration::from_secs(6),
                &[reading("stdout#0", 7, true)]
            )
            .is_err());
        assert_eq!(gate.check(now, &[reading("ami", 1, true)]), Ok(()));
        assert_eq!(gate.tracked.len(), 1);
    }
}
