//! The webhook's delivery decisions, as pure state machines: what an HTTP status means,
//! when to retry and when to give up, and which refusals are worth a log line (when the
//! endpoint counts as down is `sink::health`, after [`DOWN_AFTER_FAILURES`]). The sink's I/O loop asks; nothing here waits.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// Consecutive failed attempts (timeouts, connection errors, 5xx) before the endpoint is
/// reported down with `system.sink_down`.
pub const DOWN_AFTER_FAILURES: u32 = 3;
/// Least time between two log lines about the same kind of repeated failure.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What an answer from the endpoint means for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered.
    Delivered,
    /// 5xx: the endpoint is in trouble; try again later.
    Retry,
    /// Anything else (4xx, and 1xx/3xx, which a webhook never should answer): the
    /// endpoint refuses this request and would refuse it again. Not retried.
    Rejected,
}

pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        500..=599 => Verdict::Retry,
        _ => Verdict::Rejected,
    }
}

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// `retry_min_ms` doubling per attempt up to `retry_max_secs`, spread over 75–125 %
    /// so parallel retries do not march in step.
    pub backoff: Backoff,
    /// An event is given up once a retry would start later than this after its first attempt.
    pub max_age: Duration,
}

impl RetryPolicy {
    /// After `attempts` failed attempts of an event first tried at `first`, failing now:
    /// the delay before the next attempt, or `None` to give it up. `jitter` in `[0, 1)`
    /// picks where in the backoff's spread the delay falls.
    pub fn next_delay(
        &self,
        attempts: u32,
        first: Instant,
        now: Instant,
        jitter: f64,
    ) -> Option<Duration> {
        let delay = self.backoff.delay(attempts.saturating_sub(1), jitter);
        let age = now.saturating_duration_since(first) + delay;
        (age <= self.max_age).then_some(delay)
    }
}

/// HTTP statuses already logged: each refused status is logged once, not once per event.
#[derive(Debug, Default)]
pub struct StatusesSeen([u64; 10]);

impl StatusesSeen {
    /// `true` the first time `status` (100–639) is seen; statuses outside that range are
    /// all seen as one.
    pub fn first_time(&mut self, status: u16) -> bool {
        let i = usize::from(status).min(639);
        let bit = 1u64 << (i % 64);
        let word = &mut self.0[i / 64];
        let first = *word & bit == 0;
        *word |= bit;
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_mean_what_the_issue_says() {
        assert_eq!(verdict(200), Verdict::Delivered);
        assert_eq!(verdict(204), Verdict::Delivered);
        assert_eq!(verdict(500), Verdict::Retry);
        assert_eq!(verdict(503), Verdict::Retry);
        assert_eq!(verdict(400), Verdict::Rejected);
        assert_eq!(verdict(404), Verdict::Rejected);
        assert_eq!(verdict(301), Verdict::Rejected);
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff {
                min: Duration::from_millis(100),
                max: Duration::from_secs(1),
                low: 0.75,
                high: 1.25,
            },
            max_age: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let p = policy();
        let t = Instant::now();
        let mid = |n| p.next_delay(n, t, t, 0.5).unwrap();
        assert_eq!(mid(1), Duration::from_millis(100));
        assert_eq!(mid(2), Duration::from_millis(200));
        assert_eq!(mid(4), Duration::from_millis(800));
        assert_eq!(mid(5), Duration::from_secs(1));
        assert_eq!(mid(u32::MAX), Duration::from_secs(1));
        assert_eq!(p.next_delay(1, t, t, 0.0), Some(Duration::from_millis(75)));
        assert_eq!(p.next_delay(1, t, t, 1.0), Some(Duration::from_millis(125)));
    }

    #[test]
    fn an_event_is_given_up_once_too_old() {
        let p = policy();
        let t = Instant::now();
        assert!(p
            .next_delay(3, t, t + Duration::from_millis(9_500), 0.5)
            .is_some());
        assert_eq!(p.next_delay(3, t, t + Duration::from_secs(10), 0.5), None);
        let never = RetryPolicy {
            max_age: Duration::ZERO,
            ..p
        };
        assert_eq!(never.next_delay(1, t, t, 0.0), None);
    }

    #[test]
    fn each_status_is_first_seen_once() {
        let mut s = StatusesSeen::default();
        assert!(s.first_time(400));
        assert!(!s.first_time(400));
        assert!(s.first_time(404));
        assert!(s.first_time(700));
        assert!(!s.first_time(65535)); // folded with 700
    }
}
