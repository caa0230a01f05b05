//! The MQTT sink's outbox: the publishes handed to rumqttc and not yet acknowledged,
//! kept under our own accounting so that nothing is lost or repeated across reconnects.
//!
//! Design: rumqttc forgets unacknowledged QoS 1 publishes when a clean session reconnects
//! (and keeps them in an unbounded `pending` list until then). So the sink runs clean
//! sessions, empties rumqttc's `pending` on every disconnect, and re-sends from here,
//! oldest first, when the next session starts. Pure state: no I/O, the driver task feeds
//! it rumqttc's events and hands back what it returns.

use std::collections::VecDeque;

use rumqttc::{Publish, QoS};

/// What a publish is, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An event on `<topic>/<class>/<event>`: counted as delivered once acknowledged.
    Event,
    /// A second copy of an event (the retained `<topic>/health`): not counted again.
    Copy,
    /// The retained `<topic>/status` of this session: re-published at each connect,
    /// so it is forgotten, not re-sent, when the session ends.
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not in rumqttc: waits for a session.
    Waiting,
    /// Handed to rumqttc, not written yet.
    Queued,
    /// Written with this packet id (0 for QoS 0), waiting for its PUBACK.
    Written(u16),
    /// Acknowledged (or written, at QoS 0); leaves once everything older has.
    Done,
}

#[derive(Debug)]
struct Entry {
    publish: Publish,
    kind: Kind,
    state: State,
}

/// What an acknowledgement finished.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// Events delivered (counted once, however many copies they had).
    pub events: u64,
    /// Entries that left the outbox (room for new ones).
    pub freed: usize,
}

/// At most `window` event publishes plus one status publish, oldest first.
#[derive(Debug)]
pub struct Outbox {
    entries: VecDeque<Entry>,
    window: usize,
    connected: bool,
}

impl Outbox {
    /// An outbox of `window` publishes (at least 2: an event and its health copy).
    /// rumqttc must allow `window + 1` in flight, so its packet ids never collide.
    pub fn new(window: usize) -> Self {
        let window = window.max(2);
        Outbox {
            entries: VecDeque::with_capacity(window + 1),
            window,
            connected: false,
        }
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Whether `n` more event publishes fit.
    pub fn has_room(&self, n: usize) -> bool {
        let events = self
            .entries
            .iter()
            .filter(|e| e.kind != Kind::Status)
            .count();
        events + n <= self.window
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Adds a publish (the caller checked `has_room`). Returns it when it should be
    /// handed to rumqttc now; while disconnected it waits for the next session.
    pub fn push(&mut self, publish: Publish, kind: Kind) -> Option<Publish> {
        debug_assert!(kind == Kind::Status || self.has_room(1));
        let state = if self.connected {
            State::Queued
        } else {
            State::Waiting
        };
        let out = self.connected.then(|| publish.clone());
        self.entries.push_back(Entry {
            publish,
            kind,
            state,
        });
        out
    }

    /// A session started: `status` goes first, then everything waiting, oldest first.
    /// Returns the publishes to put before any new ones (rumqttc's `pending`).
    pub fn connected(&mut self, status: Publish) -> Vec<Publish> {
        self.connected = true;
        self.entries.push_front(Entry {
            publish: status,
            kind: Kind::Status,
            state: State::Waiting,
        });
        let mut out = Vec::with_capacity(self.entries.len());
        for e in self.entries.iter_mut() {
            if e.state == State::Waiting {
                e.state = State::Queued;
                out.push(e.publish.clone());
            }
        }
        out
    }

    /// The session ended: whatever was not acknowledged waits for the next one, except
    /// the session's status, which the next session publishes anew.
    pub fn disconnected(&mut self) -> Finished {
        self.connected = false;
        self.entries
            .retain(|e| !(e.kind == Kind::Status && e.state != State::Done));
        for e in self.entries.iter_mut() {
            if e.state != State::Done {
                e.state = State::Waiting;
            }
        }
        self.pop_done()
    }

    /// rumqttc wrote the oldest queued publish with packet id `pkid` (0 at QoS 0).
    pub fn written(&mut self, pkid: u16) -> Finished {
        if let Some(e) = self.entries.iter_mut().find(|e| e.state == State::Queued) {
            e.state = if e.publish.qos == QoS::AtMostOnce {
                State::Done
            } else {
                State::Written(pkid)
            };
        }
        self.pop_done()
    }

    /// The broker acknowledged packet id `pkid`.
    pub fn acked(&mut self, pkid: u16) -> Finished {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.state == State::Written(pkid))
        {
            e.state = State::Done;
        }
        self.pop_done()
    }

    /// Drops finished entries from the front (order is kept: an entry leaves only once
    /// every older one has, so the window bounds what rumqttc holds in flight).
    fn pop_done(&mut self) -> Finished {
        let mut f = Finished::default();
        while self.entries.front().is_some_and(|e| e.state == State::Done) {
            let e = self.entries.pop_front().expect("front exists");
            if e.kind == Kind::Event {
                f.events += 1;
            }
            f.freed += 1;
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, qos: QoS) -> Publish {
        Publish::new(topic, qos, topic.as_bytes().to_vec())
    }

    fn topics(ps: &[Publish]) -> Vec<&str> {
        ps.iter().map(|p| p.topic.as_str()).collect()
    }

    #[test]
    fn waits_while_disconnected_then_sends_status_first_and_in_order() {
        let mut o = Outbox::new(4);
        assert!(o.push(p("a", QoS::AtLeastOnce), Kind::Event).is_none());
        assert!(o.push(p("b", QoS::AtLeastOnce), Kind::Event).is_none());
        let out = o.connected(p("status", QoS::AtLeastOnce));
        assert_eq!(topics(&out), ["status", "a", "b"]);
        assert_eq!(
            o.push(p("c", QoS::AtLeastOnce), Kind::Event).unwrap().topic,
            "c"
        );
        for pkid in 1..=4 {
            o.written(pkid);
        }
        // Acks out of order: nothing leaves before the oldest is acknowledged.
        assert_eq!(o.acked(3).events, 0);
        assert_eq!(
            o.acked(1),
            Finished {
                events: 0,
                freed: 1
            }
        );
        assert_eq!(
            o.acked(2),
            Finished {
                events: 2,
                freed: 2
            }
        );
        assert_eq!(o.acked(4).events, 1);
        assert!(o.is_empty());
    }

    #[test]
    fn a_lost_session_resends_unacknowledged_once_and_forgets_its_status() {
        let mut o = Outbox::new(4);
        o.connected(p("status", QoS::AtLeastOnce));
        o.push(p("a", QoS::AtLeastOnce), Kind::Event);
        o.push(p("b", QoS::AtLeastOnce), Kind::Event);
        o.written(1); // status
        o.written(2); // a
        o.written(3); // b
        assert_eq!(o.acked(2).events, 0); // a acked, status not yet
                                          // The unacknowledged status is forgotten, so the acknowledged a leaves.
        assert_eq!(
            o.disconnected(),
            Finished {
                events: 1,
                freed: 1
            }
        );
        assert_eq!(o.len(), 1);
        let out = o.connected(p("status2", QoS::AtLeastOnce));
        assert_eq!(topics(&out), ["status2", "b"], "a is not sent twice");
        o.written(4);
        o.written(5);
        assert_eq!(
            o.acked(4),
            Finished {
                events: 0,
                freed: 1
            }
        );
        assert_eq!(
            o.acked(5),
            Finished {
                events: 1,
                freed: 1
            }
        );
        assert!(o.is_empty());
    }

    #[test]
    fn qos0_is_done_when_written_and_copies_are_not_counted() {
        let mut o = Outbox::new(2);
        o.connected(p("status", QoS::AtLeastOnce));
        o.written(1);
        o.acked(1);
        o.push(p("e", QoS::AtMostOnce), Kind::Event);
        o.push(p("health", QoS::AtLeastOnce), Kind::Copy);
        assert!(!o.has_room(1));
        assert_eq!(
            o.written(0),
            Finished {
                events: 1,
                freed: 1
            }
        );
        o.written(2);
        assert_eq!(
            o.acked(2),
            Finished {
                events: 0,
                freed: 1
            }
        );
        assert!(o.has_room(2));
    }

    #[test]
    fn the_window_counts_events_not_the_status() {
        let mut o = Outbox::new(2);
        o.push(p("a", QoS::AtLeastOnce), Kind::Event);
        o.push(p("b", QoS::AtLeastOnce), Kind::Event);
        assert!(!o.has_room(1));
        o.connected(p("status", QoS::AtLeastOnce));
        assert_eq!(o.len(), 3, "window + 1: what rumqttc must allow in flight");
        assert!(!o.has_room(1));
    }
}
