//! A sink's link health: whether it reaches its server or endpoint, and the one way a
//! change is told: a log line and a `system.sink_down` / `system.sink_up` event that every
//! other sink carries, once per change, never once per failed attempt.
//!
//! `LinkHealth` is the pure judgement (failures in, changes out); `HealthReporter` tells.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::bus::{Publisher, SinkCounters};
use crate::event::{self, Body, SinkStatus, Text};

/// A change worth telling everyone about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Down,
    Up,
}

/// Whether a sink reaches its destination, from the outcomes of its attempts. No I/O.
#[derive(Debug, Clone)]
pub struct LinkHealth {
    /// Consecutive failures before the link counts as down.
    down_after: u32,
    failures: u32,
    down: bool,
}

impl LinkHealth {
    /// A link that counts as down after `down_after` consecutive failures (at least 1).
    pub const fn new(down_after: u32) -> LinkHealth {
        LinkHealth {
            down_after: if down_after == 0 { 1 } else { down_after },
            failures: 0,
            down: false,
        }
    }

    /// An attempt failed (a refused or broken connection, a timeout, a 5xx). `Down` once,
    /// when the failures reach `down_after`.
    pub fn failed(&mut self) -> Option<Change> {
        self.failures = self.failures.saturating_add(1);
        if !self.down && self.failures >= self.down_after {
            self.down = true;
            return Some(Change::Down);
        }
        None
    }

    /// The destination was reached. `Up` only after a `Down`.
    pub fn reached(&mut self) -> Option<Change> {
        self.failures = 0;
        if self.down {
            self.down = false;
            return Some(Change::Up);
        }
        None
    }

    /// Consecutive failed attempts so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Tells a sink's link changes: one log line naming the sink and its destination, and the
/// `system.sink_down` / `system.sink_up` event with the reason.
#[derive(Clone)]
pub struct HealthReporter {
    sink: Text,
    /// The sink's counters: `down` is kept there for the metrics.
    counters: Arc<SinkCounters>,
    /// The destination as shown in logs (a URL without credentials, `host:port`).
    target: String,
    publisher: Publisher,
}

impl HealthReporter {
    pub fn new(
        counters: Arc<SinkCounters>,
        target: String,
        publisher: Publisher,
    ) -> HealthReporter {
        HealthReporter {
            sink: counters.name.clone(),
            counters,
            target,
            publisher,
        }
    }

    /// Tells `change`, if any, with `reason` (why it went down, or how it came back): a
    /// log line, then the event.
    pub fn report(&self, change: Option<Change>, reason: &str) {
        match change {
            Some(Change::Down) => {
                tracing::warn!(sink = %self.sink, target = %self.target, reason, "sink cannot reach its destination; events wait in its ring (oldest dropped when full)");
            }
            Some(Change::Up) => {
                tracing::info!(sink = %self.sink, target = %self.target, reason, "sink reaches its destination again; sending what its ring holds");
            }
            None => {}
        }
        self.publish(change, reason);
    }

    /// Publishes the event for `change`, if any, without a log line: for a sink whose
    /// own line about the failure already said why (MQTT's, with its stable code).
    pub fn publish(&self, change: Option<Change>, reason: &str) {
        let status = SinkStatus {
            sink: self.sink.clone(),
            reason: event::text(reason),
        };
        match change {
            Some(Change::Down) => {
                self.counters.down.store(true, Ordering::Relaxed);
                self.publisher.publish_body(Body::SinkDown(status))
            }
            Some(Change::Up) => {
                self.counters.down.store(false, Ordering::Relaxed);
                self.publisher.publish_body(Body::SinkUp(status))
            }
            None => {}
        }
    }

    pub fn sink(&self) -> &Text {
        &self.sink
    }

    pub fn target(&self) -> &str {
        &self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_consecutive_failures_up_on_any_answer() {
        let mut h = LinkHealth::new(3);
        assert_eq!(h.failed(), None);
        assert_eq!(h.reached(), None); // resets the count
        assert_eq!(h.failed(), None);
        assert_eq!(h.failed(), None);
        assert_eq!(h.failed(), Some(Change::Down));
        assert_eq!(h.failed(), None);
        assert_eq!(h.failures(), 4);
        assert_eq!(h.reached(), Some(Change::Up));
        assert_eq!(h.reached(), None);
    }

    #[test]
    fn a_link_down_at_once_is_told_once_and_the_first_connect_is_no_change() {
        let mut s = LinkHealth::new(1);
        assert_eq!(s.reached(), None); // first connect: nothing was down
        assert_eq!(s.failed(), Some(Change::Down));
        assert_eq!(s.failed(), None); // every failed attempt after it: no new event
        assert_eq!(s.reached(), Some(Change::Up));
        let mut s = LinkHealth::new(0);
        assert_eq!(s.failed(), Some(Change::Down)); // down at start
    }
}
