//! The tap: what the AMI connection reports, normalized and published on the bus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::ami::client::{AmiError, Handler};
use crate::ami::filter::Wanted;
use crate::ami::frame::Message;
use crate::bus::Bus;
use crate::clock::{Clock, Reading, SystemClock, Timeline};
use crate::event::{self, AmiLink, Body, ClockStep, ClockSync, Event};
use crate::lag::LagWatch;
use crate::normalize::{self, Normalizer};

/// The normalizer's figures for the metrics page, stored at each tick (about once a
/// second).
#[derive(Debug, Default)]
pub struct TapGauges {
    /// Entries in use in each of `normalize::TABLES`.
    pub tables: [AtomicU64; normalize::TABLES.len()],
    pub truncated: AtomicU64,
    pub evicted: AtomicU64,
    /// How far behind Asterisk's own `Timestamp` the last message stamped with one was
    /// read, in ms (0 without `timestampevents`).
    pub lag_ms: AtomicU64,
}

pub struct Tap {
    normalizer: Normalizer,
    gauges: Arc<TapGauges>,
    bus: Arc<Bus>,
    address: event::Text,
    /// Whether the last attempt logged in: `None` before the first. An outage is one
    /// `system.ami_disconnected`, not one per failed redial.
    connected: Option<bool>,
    lag: LagWatch,
    clock: Box<dyn Clock>,
    timeline: Timeline,
    /// Until this timeline time the lag watch is not fed: events stamped just before a
    /// step, read after it, would look late (or early) by the step.
    lag_quiet_until: u64,
    /// What was last told of the clock's synchronisation (`None`: nothing yet).
    sync_told: Option<bool>,
}

/// After a clock step, how long (µs) the lag watch is not fed, and a `Timestamp` far from
/// the new clock is taken as on the old one.
const LAG_QUIET: u64 = 2_000_000;

impl Tap {
    pub fn new(normalizer: Normalizer, bus: Arc<Bus>, address: &str) -> Self {
        Tap {
            normalizer,
            gauges: Arc::default(),
            bus,
            address: event::text(address),
            connected: None,
            lag: LagWatch::new(0),
            clock: Box::new(SystemClock::default()),
            timeline: Timeline::default(),
            lag_quiet_until: 0,
            sync_told: None,
        }
    }

    /// Reads time from `clock` instead of the system's (tests step it).
    pub fn with_clock(mut self, clock: Box<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reads both clocks; a step is told (`system.clock_stepped`) and quiets the lag
    /// watch a moment.
    fn read_clock(&mut self) -> Reading {
        let r = self
            .timeline
            .read(self.clock.wall(), self.clock.monotonic());
        self.normalizer.set_wall_offset(self.timeline.offset());
        if let Some(step) = r.step {
            self.lag_quiet_until = r.now + LAG_QUIET;
            let synchronized = self.clock.synchronized() == Some(true);
            tracing::warn!(code = "clock_stepped", step_ms = step.size / 1000, forward = step.forward, synchronized, "the wall clock stepped: stamps before it were on the old clock; lengths pbxtap measures are not affected");
            let body = Body::ClockStepped(ClockStep {
                step_ms: step.size / 1000,
                direction: if step.forward { "forward" } else { "backward" },
                synchronized,
            });
            self.bus.publish(Event::new(r.wall, self.bus.host(), body));
        }
        r
    }

    /// Tells `system.clock_unsynchronized` while systemd-timesyncd says the clock is not
    /// synchronised (once), and `system.clock_synchronized` once it is.
    fn tell_sync(&mut self, wall: u64) {
        let now = self.clock.synchronized();
        let body = match (now, self.sync_told) {
            (Some(false), None | Some(true)) => Body::ClockUnsynchronized,
            (Some(true), Some(false)) => Body::ClockSynchronized,
            _ => return,
        };
        self.sync_told = now;
        let sync = ClockSync {
            source: "systemd-timesyncd",
        };
        self.bus
            .publish(Event::new(wall, self.bus.host(), body(sync)));
    }

    /// Tells `system.ami_lagging` past `threshold_ms` (`ami.lag_warn_ms`; 0: never).
    pub fn with_lag_warning(mut self, threshold_ms: u64) -> Self {
        self.lag = LagWatch::new(threshold_ms);
        self
    }

    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    pub fn gauges(&self) -> Arc<TapGauges> {
        self.gauges.clone()
    }

    /// What the normalizer holds back (starts waiting for the dialplan's variables, CDRs
    /// in their grace, queue callers waiting for their agent) goes onto the bus now.
    fn flush(&mut self) {
        let r = self.read_clock();
        let bus = &self.bus;
        self.normalizer
            .flush_cdrs(&mut |body| bus.publish(Event::new(r.wall, bus.host(), body)));
    }

    /// pbxtap is stopping: what the normalizer holds goes onto the bus, so the drain that
    /// follows delivers the CDR of a call that just ended.
    pub fn stop(mut self) {
        self.flush();
    }

    fn link(&self, reason: &str) -> AmiLink {
        AmiLink {
            address: self.address.clone(),
            reason: event::text(reason),
        }
    }
}

/// When the event happened: Asterisk's own `Timestamp:` (manager.conf
/// `timestampevents = yes`, seconds with microseconds) when it is there and sane, else
/// `received` (µs since the Unix epoch). Asterisk's time keeps an event's time true when
/// the AMI link lags.
pub fn event_time(msg: &Message<'_>, received: u64) -> u64 {
    let Some(ts) = msg.get("Timestamp") else {
        return received;
    };
    let (secs, frac) = ts.trim().split_once('.').unwrap_or((ts.trim(), ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(secs) || !(frac.is_empty() || digits(frac)) {
        return received;
    }
    let Ok(secs) = secs.parse::<u64>() else {
        return received;
    };
    // Microseconds: the first six digits of the fraction, padded.
    let micros = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(6)
        .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    let at = secs.saturating_mul(1_000_000).saturating_add(micros);
    // A clock a day off is not a timestamp to trust.
    if at.abs_diff(received) > 86_400 * 1_000_000 {
        return received;
    }
    at
}

impl Handler for Tap {
    fn connected(&mut self, version: &str) {
        self.connected = Some(true);
        self.normalizer.begin_resync();
        let reason = format!("logged in (AMI {version})");
        self.bus
            .publish_body(Body::AmiConnected(self.link(&reason)));
    }

    fn message(&mut self, msg: &Message<'_>) {
        let r = self.read_clock();
        let received = r.wall;
        // Stamped with the wall time of the event; measured on the timeline. Just after a
        // step, a Timestamp far from the new clock is on the old one: read time instead.
        let stamped = match event_time(msg, received) {
            t if r.now < self.lag_quiet_until
                && t.abs_diff(received) > crate::clock::STEP_THRESHOLD =>
            {
                received
            }
            t => t,
        };
        let now = self.timeline.from_wall(stamped);
        self.gauges
            .lag_ms
            .store(received.saturating_sub(stamped) / 1000, Ordering::Relaxed);
        let bus = &self.bus;
        if r.now >= self.lag_quiet_until {
            if let Some(body) = self.lag.observe(stamped, received) {
                bus.publish(Event::new(received, bus.host(), body));
            }
        }
        self.normalizer.handle(msg, now, &mut |body| {
            bus.publish(Event::new(stamped, bus.host(), body))
        });
    }

    fn reads(name: &str, message: &[u8]) -> bool {
        normalize::reads(name, message)
    }

    fn wanted() -> Option<Wanted> {
        Some(normalize::WANTED)
    }

    fn disconnected(&mut self, reason: &AmiError) {
        self.flush();
        self.normalizer.connection_lost();
        if self.connected.replace(false) == Some(false) {
            // Still down: the client logs each failed redial.
            return;
        }
        let link = self.link(&reason.to_string());
        self.bus.publish_body(Body::AmiDisconnected(link));
    }

    fn wants_contacts(&mut self) -> bool {
        self.normalizer.take_contacts_wanted()
    }

    fn contacts_listed(&mut self) {
        self.normalizer.contacts_listed();
    }

    fn tick(&mut self) {
        let r = self.read_clock();
        self.tell_sync(r.wall);
        let bus = &self.bus;
        self.normalizer.tick(r.now, &mut |body| {
            bus.publish(Event::new(r.wall, bus.host(), body))
        });
        bus.report_drops(std::time::Instant::now());
        let stats = self.normalizer.stats();
        let g = &self.gauges;
        for (slot, n) in g.tables.iter().zip(self.normalizer.tables_in_use()) {
            slot.store(n as u64, Ordering::Relaxed);
        }
        g.truncated.store(stats.truncated, Ordering::Relaxed);
        g.evicted.store(stats.evicted, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::frame::{Frame, Limits, Parser};

    fn time_of(text: &str, received: u64) -> u64 {
        let mut p = Parser::new(Limits::default());
        p.push(b"Asterisk Call Manager/11.0.0\r\n", &mut |_| {});
        let mut out = 0;
        p.push(text.as_bytes(), &mut |f| {
            if let Ok(Frame::Message(m)) = f {
                out = event_time(&m, received);
            }
        });
        out
    }

    #[test]
    fn the_lag_gauge_is_how_far_behind_its_timestamp_the_last_message_was_read() {
        use crate::normalize::NormalizeConfig;
        let bus = Arc::new(Bus::new(16, event::text("h")));
        let mut tap = Tap::new(Normalizer::new(NormalizeConfig::default()), bus, "a");
        let gauges = tap.gauges();
        let stamped = event::now_micros() - 2_500_000;
        let ev = format!(
            "Event: Hangup\r\nTimestamp: {}.{:06}\r\n\r\n",
            stamped / 1_000_000,
            stamped % 1_000_000
        );
        let mut p = Parser::new(Limits::default());
        p.push(b"Asterisk Call Manager/11.0.0\r\n", &mut |_| {});
        p.push(ev.as_bytes(), &mut |f| {
            if let Ok(Frame::Message(m)) = f {
                tap.message(&m);
            }
        });
        let lag = gauges.lag_ms.load(Ordering::Relaxed);
        assert!((2_500..10_000).contains(&lag), "{lag}");
        // A message without a Timestamp is not late.
        p.push(b"Event: Hangup\r\n\r\n", &mut |f| {
            if let Ok(Frame::Message(m)) = f {
                tap.message(&m);
            }
        });
        assert_eq!(gauges.lag_ms.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn asterisks_timestamp_is_the_event_time_when_sane() {
        let received = 1_796_424_140_500_000;
        let ev = "Event: Hangup\r\nTimestamp: 1796424140.232584\r\n\r\n";
        assert_eq!(time_of(ev, received), 1_796_424_140_232_584);
        let short = "Event: Hangup\r\nTimestamp: 1796424140.2\r\n\r\n";
        assert_eq!(time_of(short, received), 1_796_424_140_200_000);
        for bad in [
            "Timestamp: soon",
            "Timestamp: 1000.5",
            "Other: 1",
            "Timestamp: 1796424140.é",
        ] {
            let ev = format!("Event: Hangup\r\n{bad}\r\n\r\n");
            assert_eq!(time_of(&ev, received), received, "{bad}");
        }
    }
}
