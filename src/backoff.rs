//! Capped exponential backoff with jitter: the one delay rule behind every reconnect and
//! retry (the AMI client, NATS, MQTT, webhook retries). Pure: the caller passes the
//! random unit in, so tests pin it.

use std::time::Duration;

/// `min` doubled per attempt up to `max`, then scaled by a factor drawn from
/// `low..=high` so a fleet of appliances does not redial a restarted server in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    /// The jittered delay is the ceiling times `low + (high - low) * unit`.
    pub low: f64,
    pub high: f64,
}

impl Backoff {
    /// The ceiling before attempt `attempt` (0 for the first): `min` doubled `attempt`
    /// times, at most `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.min
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max)
    }

    /// The delay before attempt `attempt`, jittered with `unit` in [0, 1].
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let factor = self.low + (self.high - self.low) * unit.clamp(0.0, 1.0);
        self.ceiling(attempt).mul_f64(factor)
    }

    /// [`Backoff::delay`] with a fresh random unit.
    pub fn random_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_jitters_within_its_range() {
        let b = Backoff {
            min: Duration::from_millis(500),
            max: Duration::from_secs(30),
            low: 0.5,
            high: 1.0,
        };
        assert_eq!(b.delay(0, 1.0), b.min);
        assert_eq!(b.delay(0, 0.0), b.min / 2);
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(30, 1.0), b.max);
        assert_eq!(b.ceiling(u32::MAX), b.max);
        for i in 0..100 {
            let d = b.delay(i % 12, f64::from(i) / 100.0);
            assert!(d >= b.min / 2 && d <= b.max, "{d:?}");
        }
        let r = b.random_delay(2);
        assert!(r >= b.ceiling(2) / 2 && r <= b.ceiling(2), "{r:?}");
    }
}
