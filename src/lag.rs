//! AMI lag: how far behind Asterisk the events arrive, from Asterisk's own time on each
//! event (manager.conf `timestampevents = yes`) against the time pbxtap reads it. A lag
//! past `ami.lag_warn_ms` is told once as `system.ami_lagging`, and its end, once the lag
//! is under half the threshold again, as `system.ami_caught_up` with the worst lag seen.
//! A slow pbxtap, a starved CPU or a stalled AMI socket shows here before anything is
//! lost. Pure and fixed-size: the tap passes both times in.

use crate::event::{AmiLag, Body};

#[derive(Debug)]
pub struct LagWatch {
    /// µs; 0: off.
    threshold: u64,
    /// The worst lag of the current spell, while lagging.
    worst: Option<u64>,
}

impl LagWatch {
    /// Warns past `threshold_ms` (0: never).
    pub fn new(threshold_ms: u64) -> LagWatch {
        LagWatch {
            threshold: threshold_ms.saturating_mul(1000),
            worst: None,
        }
    }

    /// An event Asterisk stamped `stamped` was read at `received` (µs since the epoch);
    /// the event to publish when the lag crosses the threshold either way.
    pub fn observe(&mut self, stamped: u64, received: u64) -> Option<Body> {
        if self.threshold == 0 {
            return None;
        }
        let lag = received.saturating_sub(stamped);
        let body = |lag: u64| AmiLag {
            lag_ms: lag / 1000,
            threshold_ms: self.threshold / 1000,
        };
        match self.worst {
            None if lag > self.threshold => {
                self.worst = Some(lag);
                Some(Body::AmiLagging(body(lag)))
            }
            Some(worst) if lag < self.threshold / 2 => {
                self.worst = None;
                Some(Body::AmiCaughtUp(body(worst)))
            }
            Some(worst) => {
                self.worst = Some(worst.max(lag));
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn a_lag_spell_is_told_once_when_it_starts_and_once_when_it_ends() {
        let mut w = LagWatch::new(2000);
        assert_eq!(w.observe(100 * S, 100 * S + 1500 * 1000), None);
        let Some(Body::AmiLagging(l)) = w.observe(100 * S, 102 * S + 1) else {
            panic!("no lagging");
        };
        assert_eq!((l.lag_ms, l.threshold_ms), (2000, 2000));
        // Still lagging (above half the threshold): nothing new; the worst is kept.
        assert_eq!(w.observe(100 * S, 105 * S), None);
        assert_eq!(w.observe(106 * S, 107 * S + 500 * 1000), None);
        let Some(Body::AmiCaughtUp(l)) = w.observe(107 * S, 107 * S + 999 * 1000) else {
            panic!("no caught up");
        };
        assert_eq!(l.lag_ms, 5000);
        assert_eq!(w.observe(108 * S, 108 * S), None);
        // A clock Asterisk has ahead of ours is no lag.
        assert_eq!(w.observe(110 * S, 109 * S), None);
        assert_eq!(LagWatch::new(0).observe(0, 100 * S), None);
    }
}
