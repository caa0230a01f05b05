//! The webhook's requests in flight: a fixed number of slots, at most one per call, so
//! the events of one call are delivered in order while different calls go in parallel.
//! Pure bookkeeping; the sink's loop owns the requests.

use crate::event::Id;

/// A fixed set of slots, each holding one event's delivery under its ordering key (the
/// call id; empty for events that belong to no call and need no ordering).
#[derive(Debug)]
pub struct Slots<T> {
    /// Allocated once at start-up with the configured `max_in_flight` entries.
    slots: Vec<Option<(Id, T)>>,
}

impl<T> Slots<T> {
    pub fn new(capacity: usize) -> Self {
        Slots {
            slots: (0..capacity.max(1)).map(|_| None).collect(),
        }
    }

    /// Puts `item` in a free slot and returns its index, unless every slot is taken or
    /// an event of the same call is still in flight: then `item` comes back, to wait.
    pub fn admit(&mut self, key: &Id, item: T) -> Result<usize, T> {
        if !key.is_empty() && self.slots.iter().flatten().any(|(k, _)| k == key) {
            return Err(item);
        }
        match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some((key.clone(), item));
                Ok(i)
            }
            None => Err(item),
        }
    }

    pub fn has_free(&self) -> bool {
        self.slots.iter().any(Option::is_none)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
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
    use crate::event::text;

    #[test]
    fn one_call_waits_for_its_previous_event_others_go_in_parallel() {
        let mut s = Slots::new(3);
        let (a, b, none) = (text("1.1"), text("1.2"), Id::new());
        let a1 = s.admit(&a, "a1").unwrap();
        assert_eq!(s.admit(&a, "a2"), Err("a2"));
        let b1 = s.admit(&b, "b1").unwrap();
        let n1 = s.admit(&none, "n1").unwrap();
        assert!(!s.has_free());
        assert_eq!(s.admit(&none, "n2"), Err("n2"));
        assert_eq!(s.release(a1), Some("a1"));
        assert_eq!(s.admit(&a, "a2"), Ok(a1));
        assert_eq!(s.get_mut(b1), Some(&mut "b1"));
        s.release(b1);
        s.release(n1);
        s.release(a1);
        assert!(s.is_empty());
        assert_eq!(s.release(a1), None);
    }

    #[test]
    fn events_without_a_call_share_no_ordering() {
        let mut s = Slots::new(2);
        s.admit(&Id::new(), 1).unwrap();
        s.admit(&Id::new(), 2).unwrap();
        assert!(!s.is_empty() && !s.has_free());
    }
}
