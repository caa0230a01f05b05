//! Many registrations lost at once: `normalize.mass_unregister` unregistrations (phones
//! de-registering, expiring or no longer answering qualify) within
//! `normalize.mass_unregister_secs` are told as one `system.mass_unregistration`, at most
//! once per window. A switch or a site link gone, a power cut on a floor, a firewall
//! change: one event, not a page of `endpoint.unregistered`. Fixed memory: the times of
//! the last `mass_unregister` unregistrations. Pure: time is passed in.

use std::collections::VecDeque;

use crate::event::{Body, MassUnregistration};

#[derive(Debug)]
pub struct Unregistrations {
    /// When the last `threshold` unregistrations came (µs since the epoch).
    times: VecDeque<u64>,
    threshold: usize,
    window: u64,
    /// No second event before this.
    quiet_until: u64,
}

impl Unregistrations {
    /// Tells `threshold` unregistrations within `window_secs` (0: never).
    pub fn new(threshold: u32, window_secs: u32) -> Unregistrations {
        Unregistrations {
            times: VecDeque::with_capacity(threshold as usize),
            threshold: threshold as usize,
            window: u64::from(window_secs) * 1_000_000,
            quiet_until: 0,
        }
    }

    /// An unregistration was published at `now`; the event to publish after it, if this
    /// one makes a burst.
    pub fn unregistered(&mut self, now: u64) -> Option<Body> {
        if self.threshold == 0 {
            return None;
        }
        if self.times.len() == self.threshold {
            self.times.pop_front();
        }
        self.times.push_back(now);
        let first = *self.times.front()?;
        if self.times.len() < self.threshold
            || now.saturating_sub(first) > self.window
            || now < self.quiet_until
        {
            return None;
        }
        self.quiet_until = now + self.window;
        Some(Body::MassUnregistration(MassUnregistration {
            unregistered: self.threshold as u64,
            window_secs: self.window / 1_000_000,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn a_burst_is_told_once_per_window_and_a_trickle_never() {
        let mut u = Unregistrations::new(3, 30);
        assert_eq!(u.unregistered(100 * S), None);
        assert_eq!(u.unregistered(101 * S), None);
        let Some(Body::MassUnregistration(m)) = u.unregistered(110 * S) else {
            panic!("no burst");
        };
        assert_eq!((m.unregistered, m.window_secs), (3, 30));
        // More in the same window: already told.
        assert_eq!(u.unregistered(111 * S), None);
        assert_eq!(u.unregistered(139 * S), None);
        // Once the window since the last event is over, a burst is told again (111, 139
        // and 141 are 3 within 30 s).
        assert!(u.unregistered(141 * S).is_some());
        // One every 20 s never makes 3 within 30 s.
        let mut slow = Unregistrations::new(3, 30);
        for t in 0..20 {
            assert_eq!(slow.unregistered(t * 20 * S), None);
        }
        assert_eq!(slow.times.len(), 3);
        assert_eq!(Unregistrations::new(0, 30).unregistered(0), None);
    }
}
