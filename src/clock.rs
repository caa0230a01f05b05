//! pbxtap's two clocks, and the one timeline every length of time is measured on.
//!
//! A Raspberry Pi has no battery-backed clock: it boots at a stale time and its wall clock
//! steps when NTP first syncs, perhaps hours later. So the wall clock only *stamps* events
//! (`Event::time`), and every length (a call's duration, a queue wait, the SLA, grace
//! periods, failure windows) is a difference of *timeline* times: the wall time pbxtap
//! started at plus the monotonic time since (`CLOCK_MONOTONIC`, which never steps; a Pi
//! does not suspend). [`Timeline`] converts between the two and notices a step: the
//! wall clock moving against the monotonic one by more than [`STEP_THRESHOLD`] between two
//! readings (NTP's slewing moves it by well under a millisecond a second).
//!
//! [`Clock`] is the seam tests inject a stepping clock through; [`SystemClock`] is the
//! real one.

use std::path::Path;
use std::time::Instant;

/// A wall clock moving this far (µs) against the monotonic one between two readings is a
/// step.
pub const STEP_THRESHOLD: u64 = 500_000;
/// systemd-timesyncd's flag file: there once the clock was synchronised since boot.
pub const TIMESYNC_SYNCHRONIZED: &str = "/run/systemd/timesync/synchronized";

/// Both clocks, in µs.
pub trait Clock: Send {
    /// The wall clock: µs since the Unix epoch. May step.
    fn wall(&self) -> u64;
    /// A monotonic clock: µs since some start. Never steps.
    fn monotonic(&self) -> u64;
    /// Whether the wall clock is known to be synchronised ([`synchronized`]).
    fn synchronized(&self) -> Option<bool>;
}

/// The system's clocks.
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn wall(&self) -> u64 {
        crate::event::now_micros()
    }

    fn monotonic(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn synchronized(&self) -> Option<bool> {
        synchronized(Path::new(TIMESYNC_SYNCHRONIZED))
    }
}

/// A wall-clock step: how far, and which way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// µs.
    pub size: u64,
    pub forward: bool,
}

/// The timeline, and the wall clock's offset from it. Pure: both readings passed in.
#[derive(Debug, Default)]
pub struct Timeline {
    /// Timeline time of monotonic 0: the wall time at the first reading minus the
    /// monotonic time then.
    base: Option<u64>,
    /// Wall minus timeline at the last reading, µs.
    offset: i64,
}

/// What one reading of both clocks gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Now on the timeline (µs; the wall time, as long as the wall clock has not stepped
    /// since pbxtap started).
    pub now: u64,
    /// Now on the wall clock.
    pub wall: u64,
    /// The wall clock stepped since the last reading.
    pub step: Option<Step>,
}

impl Timeline {
    /// Reads the clocks: `wall` and `monotonic` as a [`Clock`] gives them.
    pub fn read(&mut self, wall: u64, monotonic: u64) -> Reading {
        let base = *self
            .base
            .get_or_insert_with(|| wall.saturating_sub(monotonic));
        let now = base.saturating_add(monotonic);
        let offset = wall as i64 - now as i64;
        let moved = offset - self.offset;
        self.offset = offset;
        let step = (moved.unsigned_abs() > STEP_THRESHOLD).then_some(Step {
            size: moved.unsigned_abs(),
            forward: moved > 0,
        });
        Reading { now, wall, step }
    }

    /// A wall time (Asterisk's `Timestamp`, say) on the timeline, by the offset of the
    /// last reading.
    pub fn from_wall(&self, wall: u64) -> u64 {
        wall.saturating_add_signed(-self.offset)
    }

    /// Wall minus timeline, µs: what to add to a timeline time to compare it with a wall
    /// time Asterisk gives (a contact's expiry, a member's last call).
    pub fn offset(&self) -> i64 {
        self.offset
    }
}

/// Whether the system clock is known to be synchronised: `Some(false)` where
/// systemd-timesyncd runs (`/run/systemd/timesync` exists) and has not synchronised it
/// yet, `Some(true)` once it has, `None` where nothing tells (another NTP client).
pub fn synchronized(flag: &Path) -> Option<bool> {
    if flag.exists() {
        return Some(true);
    }
    flag.parent()
        .is_some_and(|dir| dir.is_dir())
        .then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn the_timeline_follows_the_monotonic_clock_and_tells_each_step_once() {
        let mut t = Timeline::default();
        let start = 1_000_000 * S;
        let r = t.read(start, 5 * S);
        assert_eq!((r.now, r.step), (start, None));
        // NTP slewing: 0.4 ms in a second is no step.
        let r = t.read(start + S + 400, 6 * S);
        assert_eq!((r.now, r.step), (start + S, None));
        // Ten years forward, during a call: the timeline goes on.
        let ten_years = 315_360_000 * S;
        let r = t.read(start + 2 * S + ten_years, 7 * S);
        assert_eq!(r.now, start + 2 * S);
        assert_eq!(
            r.step,
            Some(Step {
                size: ten_years - 400,
                forward: true
            })
        );
        assert_eq!(t.read(start + 3 * S + ten_years, 8 * S).step, None);
        // Asterisk's times go through the offset; so do the wall times compared with them.
        assert_eq!(t.offset(), ten_years as i64);
        assert_eq!(t.from_wall(start + 3 * S + ten_years), start + 3 * S);
        // An hour back.
        let r = t.read(start + 4 * S + ten_years - 3600 * S, 9 * S);
        assert_eq!(r.now, start + 4 * S);
        assert_eq!(
            r.step,
            Some(Step {
                size: 3600 * S,
                forward: false
            })
        );
    }

    #[test]
    fn synchronised_is_told_only_where_timesyncd_tells() {
        let dir = tempfile::tempdir().unwrap();
        let timesync = dir.path().join("timesync");
        let flag = timesync.join("synchronized");
        assert_eq!(synchronized(&flag), None);
        std::fs::create_dir(&timesync).unwrap();
        assert_eq!(synchronized(&flag), Some(false));
        std::fs::write(&flag, "").unwrap();
        assert_eq!(synchronized(&flag), Some(true));
    }
}
