//! The feed's recent frames, for a client that comes back: `resume_events` frames with the
//! `seq` of the event each was written from, oldest dropped first. A client that says where
//! it stopped (`since`, an event id) gets what is held after that point before the live
//! events, and is told how many it missed when that point has already been dropped. Pure:
//! the sink records and asks under its hub lock.

use std::collections::VecDeque;

use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Largest `resume_events` accepted: with frames of a few hundred bytes, about 30 MiB at
/// most, more than an appliance should hold for late clients.
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
    frames: VecDeque<(u64, Utf8Bytes)>,
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

    /// Records the frame written for the event `seq`.
    pub fn push(&mut self, seq: u64, frame: Utf8Bytes) {
        if self.capacity == 0 {
            self.dropped_through = seq;
            return;
        }
        if self.frames.len() == self.capacity {
            if let Some((old, _)) = self.frames.pop_front() {
                self.dropped_through = old;
            }
        }
        self.frames.push_back((seq, frame));
    }

    /// What a client that last had the event `since` is owed.
    pub fn after(&self, since: u64) -> Resume {
        Resume {
            missed: self.dropped_through.saturating_sub(since),
            frames: self
                .frames
                .iter()
                .filter(|(seq, _)| *seq > since)
                .map(|(_, f)| f.clone())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(r: &Resume) -> Vec<&str> {
        r.frames.iter().map(|f| f.as_str()).collect()
    }

    #[test]
    fn a_client_gets_what_is_held_after_its_point_and_is_told_what_is_gone() {
        let mut h = History::new(3);
        for seq in 1..=3 {
            h.push(seq, Utf8Bytes::from(format!("e{seq}")));
        }
        let r = h.after(1);
        assert_eq!((r.missed, texts(&r)), (0, vec!["e2", "e3"]));
        assert_eq!(h.after(3).frames.len(), 0);
        // 4, 5 and 7 push out 1, 2 and 3; 6 was not for this feed (a gap in seq).
        h.push(4, Utf8Bytes::from("e4"));
        h.push(5, Utf8Bytes::from("e5"));
        h.push(7, Utf8Bytes::from("e7"));
        let r = h.after(1);
        assert_eq!((r.missed, texts(&r)), (2, vec!["e4", "e5", "e7"]));
        let r = h.after(3);
        assert_eq!((r.missed, texts(&r)), (0, vec!["e4", "e5", "e7"]));
        let r = h.after(5);
        assert_eq!((r.missed, texts(&r)), (0, vec!["e7"]));
        // Never more than the capacity.
        for seq in 8..100 {
            h.push(seq, Utf8Bytes::from("x"));
        }
        assert_eq!(h.frames.len(), 3);
        assert_eq!(h.after(0).missed, 96);
    }

    #[test]
    fn without_a_history_every_resume_says_what_it_missed() {
        let mut h = History::new(0);
        h.push(5, Utf8Bytes::from("e5"));
        assert_eq!(
            h.after(2),
            Resume {
                missed: 3,
                frames: vec![]
            }
        );
    }
}
