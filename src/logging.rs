//! Logging: journald (structured fields, through `tracing-journald`) when running under
//! systemd, readable stderr otherwise.
//!
//! The level comes from `log.level`, and `RUST_LOG` overrides it. Repeated lines are
//! rate-limited per call site (`RateLimit`): at most `LOG_BURST` lines from one place per
//! `LOG_WINDOW`; the rest are counted and reported by the watchdog as one line.
//!
//! `LogLimit` is the finer tool a component uses for one repeated failure (a sink that
//! cannot reach its server, refused connections): one line per interval, saying how many
//! were held back since the last.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

use serde::Deserialize;

use crate::settings::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl LogConfig {
    /// Checks the `[log]` table, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !["error", "warn", "info", "debug", "trace"].contains(&self.level.as_str()) {
            return Err(ConfigError::new(
                "log.level",
                format!(
                    "`{}` is not one of error, warn, info, debug, trace",
                    self.level
                ),
            ));
        }
        Ok(())
    }
}

/// Lines one call site may log per `LOG_WINDOW` before the rest are suppressed.
pub const LOG_BURST: u32 = 10;
pub const LOG_WINDOW: Duration = Duration::from_secs(60);
/// Call sites tracked at once; sites sharing a slot share its budget.
pub const RATE_SLOTS: usize = 128;
/// journald's socket; `tracing-journald` sends to this path, which it hardcodes.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Log lines suppressed since the last call.
pub fn take_suppressed() -> u64 {
    SUPPRESSED.swap(0, Ordering::Relaxed)
}

/// True when systemd connected our output to the journal (`JOURNAL_STREAM` is set) and
/// the journal's socket is there: then logs go to journald natively.
pub fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some() && Path::new(JOURNAL_SOCKET).exists()
}

/// Installs the global subscriber for `pbxtap run`.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(RateLimit::default());
    if under_journald() {
        // Each tracing field becomes its own journal field, unprefixed: `sink` → `SINK`.
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("pbxtap".into());
                let _ = registry.with(layer).try_init();
                return;
            }
            Err(e) => eprintln!("pbxtap: journald unavailable ({e}); logging to stderr"),
        }
    }
    let _ = registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr),
        )
        .try_init();
}

/// The demo logs errors only, to stderr, so stdout holds nothing but events.
pub fn init_demo() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// One slot of the rate limiter: when its window began, lines in it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    since: Option<Instant>,
    lines: u32,
}

/// Per-call-site budget for info, warn and error lines (debug and trace are for
/// debugging, and are off by default). Fixed size: `RATE_SLOTS` slots.
#[derive(Debug)]
pub struct RateLimit {
    slots: Mutex<[Slot; RATE_SLOTS]>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            slots: Mutex::new(
                [Slot {
                    since: None,
                    lines: 0,
                }; RATE_SLOTS],
            ),
        }
    }
}

impl RateLimit {
    /// Whether a line from call site `site` may go out at `now`.
    pub fn allow(&self, site: usize, now: Instant) -> bool {
        let Ok(mut slots) = self.slots.lock() else {
            return true;
        };
        let hash = (site as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let slot = &mut slots[hash as usize % RATE_SLOTS];
        let expired = slot
            .since
            .is_none_or(|t| now.duration_since(t) >= LOG_WINDOW);
        if expired {
            *slot = Slot {
                since: Some(now),
                lines: 0,
            };
        }
        slot.lines = slot.lines.saturating_add(1);
        if slot.lines <= LOG_BURST {
            return true;
        }
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        false
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for RateLimit {
    fn event_enabled(&self, event: &Event<'_>, _cx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::INFO {
            return true;
        }
        // The callsite's static metadata is its identity.
        self.allow(meta as *const _ as usize, Instant::now())
    }
}

/// Lets one line of a repeated failure through per interval and counts the ones held
/// back, so the line that does go out can say how many it stands for. No I/O.
#[derive(Debug, Clone)]
pub struct LogLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    pub const fn new(interval: Duration) -> LogLimit {
        LogLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged at `now`, `n` being how many were held back
    /// since the last one; `None` when this one is held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// Lets the next line through whenever it comes (a new reason is worth telling at
    /// once); the count held back is kept for it.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limit_lets_one_through_per_interval_and_counts_the_rest() {
        let interval = Duration::from_secs(10);
        let mut l = LogLimit::new(interval);
        let t = Instant::now();
        assert_eq!(l.allow(t), Some(0));
        assert_eq!(l.allow(t + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t + Duration::from_secs(2)), None);
        assert_eq!(l.allow(t + interval), Some(2));
        assert_eq!(l.allow(t + interval), None);
        l.reset();
        assert_eq!(l.allow(t + interval), Some(1));
    }

    #[test]
    fn a_call_site_gets_a_burst_per_window() {
        let limit = RateLimit::default();
        let t0 = Instant::now();
        let site = 0x1000;
        let allowed = (0..100).filter(|_| limit.allow(site, t0)).count();
        assert_eq!(allowed, LOG_BURST as usize);
        assert!(take_suppressed() >= 90);
        // Another site has its own budget; a new window a new burst.
        assert!(limit.allow(0x2000, t0));
        assert!(limit.allow(site, t0 + LOG_WINDOW));
    }
}
