//! The feed's recent frames, for a client that comes back: `resume_events` frames with the
//! `seq` of the event each was written from (and, for PortSIP, where the frame goes: its
//! route, since each client gets only what it subscribed to), oldest dropped first. A
//! client that says where it stopped (`since`, an event id) gets what is held after that
//! point before the live events, and is told how many it missed when that point has
//! already been dropped. Pure: the sink records and asks under its hub lock.

use std::collections::VecDeque;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::dialect::portsip::Route;

/// Largest `resume_events` accepted: with frames of a few hundred bytes (and a PortSIP
/// route of about 300), about 40 MiB at most, more than an appliance should hold for late
/// clients.
pub const MAX_RESUME_EVENTS: usize = 65_536;

/// What a returning client is owed.
#[derive(Debug, PartialEq, Eq)]
pub struct Resume {
    /// Events published after `since` that are no longer held (some may not have been for
    /// this feed: the count is of the bus's events); 0 when nothing is missing.
    pub missed: u64,
    /// The held frames after `since`, oldest first.
    pub frames: Vec<Utf8Bytes>,
}

#[derive(Debug)]
pub struct History {
    /// Each frame with its event's `seq`, and its route for PortSIP.
    frames: VecDeque<(u64, Option<Route>, Utf8Bytes)>,
    capacity: usize,
    /// The highest `seq` whose frame was dropped to make room (0: none yet).
    dropped_through: u64,
}

impl History {
    /// Holds `capacity` frames (0: none, and every resume reports what it missed).
    pub fn new(capacity: usize) -> History {
        History {
            frames: VecDeque::with_capacity(capacity),
            capacity,
            dropped_through: 0,
        }
    }

    /// Whether frames are held at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Records the frame written for the event `seq` (going to `route`, for PortSIP).
    pub fn push(&mut self, seq: u64, route: Option<&Route>, frame: Utf8Bytes) {
        if self.capacity == 0 {
            self.dropped_through = seq;
            return;
        }
        if self.frames.len() == self.capacity {
            if let Some((old, ..)) = self.frames.pop_front() {
                self.dropped_through = old;
            }
        }
        self.frames.push_back((seq, route.cloned(), frame));
    }

    /// What a client that last had the event `since` is owed, of the frames whose route
    /// it `wants`.
    pub fn after(&self, since: u64, wants: impl Fn(Option<&Route>) -> bool) -> Resume {
        Resume {
            missed: self.dropped_through.saturating_sub(since),
            frames: self
                .frames
                .iter()
                .filter(|(seq, route, _)| *seq > since && wants(route.as_ref()))
                .map(|(.., f)| f.clone())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl History {
        fn after_all(&self, since: u64) -> Resume {
            self.after(since, |_| true)
        }
    }

    fn texts(r: &Resume) -> Vec<&str> {
        r.frames.iter().map(|f| f.as_str()).collect()
    }

    #[test]
    fn a_client_gets_what_is_held_after_its_point_and_is_told_what_is_gone() {
        let mut h = History::new(3);
        for seq in 1..=3 {
            h.push(seq, None, Utf8Bytes::from(format!("e{seq}")));
        }
        let r = h.after_all(1);
        assert_eq!((r.missed, texts(&r)), (0, vec!["e2", "e3"]));
        assert_eq!(h.after_all(3).frames.len(), 0);
        // 4, 5 and 7 push out 1, 2 and 3; 6 was not for this feed (a gap in seq).
        h.push(4, None, Utf8Bytes::from("e4"));
        h.push(5, None, Utf8Bytes::from("e5"));
        h.push(7, None, Utf8Bytes::from("e7"));
        let r = h.after_all(1);
        assert_eq!((r.missed, texts(&r)), (2, vec!["e4", "e5", "e7"]));
        let r = h.after_all(3);
        assert_eq!((r.missed, texts(&r)), (0, vec!["e4", "e5", "e7"]));
        let r = h.after_all(5);
        assert_eq!((r.missed, texts(&r)), (0, vec!["e7"]));
        // Never more than the capacity.
        for seq in 8..100 {
            h.push(seq, None, Utf8Bytes::from("x"));
        }
        assert_eq!(h.frames.len(), 3);
        assert_eq!(h.after_all(0).missed, 96);
    }

    #[test]
    fn a_portsip_client_gets_only_the_held_frames_it_subscribed_to() {
        use crate::dialect::portsip::Topic;
        let mut h = History::new(8);
        let route = |topic| Route {
            topic,
            extensions: Default::default(),
            queue: Default::default(),
        };
        h.push(1, Some(&route(Topic::CdrEvents)), Utf8Bytes::from("cdr"));
        h.push(
            1,
            Some(&route(Topic::ExtensionEvents)),
            Utf8Bytes::from("ext"),
        );
        let r = h.after(0, |r| r.is_some_and(|r| r.topic == Topic::ExtensionEvents));
        assert_eq!(texts(&r), ["ext"]);
    }

    #[test]
    fn without_a_history_every_resume_says_what_it_missed() {
        let mut h = History::new(0);
        h.push(5, None, Utf8Bytes::from("e5"));
        assert_eq!(
            h.after_all(2),
            Resume {
                missed: 3,
                frames: vec![]
            }
        );
    }
}
