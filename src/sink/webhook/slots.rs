//! The webhook's requests in flight: a fixed number of slots, at most one per ordering key
//! (the call), so the events of one call are delivered in order while different calls go
//! in parallel; and a short waiting line for events whose call is busy, so they do not
//! hold back the events of other calls. Pure bookkeeping; the sink's loop owns the requests.

use std::collections::VecDeque;

use crate::event::{Event, Id, Value};

/// The key that orders an event's delivery: events with the same key are sent one at a
/// time, in order. Its call (`call_id`), else the endpoint or agent it is about; system
/// events have none (empty) and need no ordering.
pub fn ordering_key(ev: &Event) -> Id {
    for field in ["call_id", "aor", "extension", "agent"] {
        if let Some(Value::Str(s)) = ev.field(field) {
            if !s.is_empty() {
                return crate::event::text(s);
            }
        }
    }
    Id::new()
}

/// Slots for the requests in flight and a waiting line, both of the capacity fixed at
/// start-up (`max_in_flight`).
#[derive(Debug)]
pub struct Slots<T> {
    slots: Vec<Option<(Id, T)>>,
    /// Events taken off the ring but not started, oldest first; at most `slots.len()`.
    waiting: VecDeque<(Id, T)>,
}

impl<T> Slots<T> {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Slots {
            slots: (0..capacity).map(|_| None).collect(),
            waiting: VecDeque::with_capacity(capacity),
        }
    }

    /// Whether taking another event now is useful and fits: a slot is free and the
    /// waiting line has room.
    pub fn wants_more(&self) -> bool {
        self.slots.iter().any(Option::is_none) && self.waiting.len() < self.slots.len()
    }

    /// Adds an event at the end of the waiting line; gives it back when the line is full.
    pub fn push(&mut self, key: Id, item: T) -> Result<(), T> {
        if self.waiting.len() >= self.slots.len() {
            return Err(item);
        }
        self.waiting.push_back((key, item));
        Ok(())
    }

    /// Starts the oldest waiting event whose key has nothing in flight, in a free slot,
    /// and returns the slot. Events of a busy key stay behind, in order.
    pub fn start_next(&mut self) -> Option<usize> {
        let free = self.slots.iter().position(Option::is_none)?;
        let busy = |key: &Id| !key.is_empty() && self.slots.iter().flatten().any(|(k, _)| k == key);
        let next = self.waiting.iter().position(|(k, _)| !busy(k))?;
        self.slots[free] = self.waiting.remove(next);
        Some(free)
    }

    /// Nothing in flight and nothing waiting.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.slots.iter().all(Option::is_none)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.slots.get_mut(i)?.as_mut().map(|(_, t)| t)
    }

    /// Frees slot `i`, returning what it held.
    pub fn release(&mut self, i: usize) -> Option<T> {
        self.slots.get_mut(i)?.take().map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{text, AmiLink, Body, CallTarget, Presence};

    fn start_all<T: Copy>(s: &mut Slots<T>) -> Vec<T> {
        let mut started = Vec::new();
        while let Some(i) = s.start_next() {
            started.push(*s.get_mut(i).unwrap());
        }
        started
    }

    #[test]
    fn one_call_waits_for_its_previous_event_others_overtake_it() {
        let mut s = Slots::new(3);
        let (a, b, none) = (text("1.1"), text("1.2"), Id::new());
        s.push(a.clone(), "a1").unwrap();
        s.push(a.clone(), "a2").unwrap();
        s.push(b.clone(), "b1").unwrap();
        assert!(!s.wants_more()); // the waiting line is full
        assert_eq!(start_all(&mut s), ["a1", "b1"]);
        s.push(none.clone(), "n1").unwrap();
        s.push(none.clone(), "n2").unwrap();
        assert_eq!(start_all(&mut s), ["n1"]); // slots full; a2 and n2 wait
        assert!(!s.wants_more());
        // Freeing n1 lets a2 wait on (its call is busy) and n2 go.
        let n1 = 2;
        assert_eq!(s.release(n1), Some("n1"));
        assert_eq!(start_all(&mut s), ["n2"]);
        // Once a1 is done, a2 goes.
        assert_eq!(s.release(0), Some("a1"));
        assert_eq!(start_all(&mut s), ["a2"]);
        for i in 0..3 {
            s.release(i);
        }
        assert!(s.is_idle());
        assert_eq!(s.release(0), None);
    }

    #[test]
    fn the_waiting_line_is_bounded() {
        let mut s = Slots::new(2);
        s.push(text("x"), 1).unwrap();
        s.push(text("x"), 2).unwrap();
        assert_eq!(s.push(text("y"), 3), Err(3));
        assert_eq!(start_all(&mut s), [1]);
        assert!(s.wants_more());
        s.push(text("y"), 3).unwrap();
        assert_eq!(start_all(&mut s), [3]);
    }

    #[test]
    fn calls_then_endpoints_and_agents_order_events() {
        let host = text("h");
        let ev = |body| Event::new(1, &host, body);
        let call = ev(Body::CallRinging(CallTarget {
            call_id: text("1.2"),
            target: text("102"),
            ..Default::default()
        }));
        assert_eq!(ordering_key(&call), "1.2");
        let presence = ev(Body::EndpointPresence(Presence {
            extension: text("101"),
            ..Default::default()
        }));
        assert_eq!(ordering_key(&presence), "101");
        let system = ev(Body::AmiConnected(AmiLink::default()));
        assert_eq!(ordering_key(&system), "");
    }
}
