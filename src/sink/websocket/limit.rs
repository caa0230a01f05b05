//! Failed-login rate limit per client address, in a fixed-size table (pure; time passed in).

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed logins (wrong authkey or password) an address may make per [`WINDOW`]; after
/// that its logins are refused unchecked until the window ends.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered, from an address's first failure.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; when full, the one whose window started first is forgotten.
pub const MAX_TRACKED: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: IpAddr,
    failures: u32,
    since: Instant,
}

#[derive(Debug, Default)]
pub struct AuthLimiter {
    entries: heapless::Vec<Entry, MAX_TRACKED>,
}

impl AuthLimiter {
    /// Whether `ip` may try to log in now.
    pub fn allowed(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.expire(now);
        self.entries
            .iter()
            .find(|e| e.ip == ip)
            .is_none_or(|e| e.failures < MAX_FAILURES)
    }

    /// Counts a failed login from `ip`. Returns the failures in its current window.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> u32 {
        self.expire(now);
        if let Some(e) = self.entries.iter_mut().find(|e| e.ip == ip) {
            e.failures += 1;
            return e.failures;
        }
        if self.entries.is_full() {
            if let Some((i, _)) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.since) {
                self.entries.swap_remove(i);
            }
        }
        let _ = self.entries.push(Entry {
            ip,
            failures: 1,
            since: now,
        });
        1
    }

    fn expire(&mut self, now: Instant) {
        self.entries
            .retain(|e| now.saturating_duration_since(e.since) < WINDOW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let mut l = AuthLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for i in 1..=MAX_FAILURES {
            assert!(l.allowed(a, t0));
            assert_eq!(l.failed(a, t0), i);
        }
        assert!(!l.allowed(a, t0 + Duration::from_secs(59)));
        assert!(l.allowed(b, t0), "other addresses carry on");
        assert!(l.allowed(a, t0 + WINDOW));
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut l = AuthLimiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let ip = IpAddr::from(i.to_be_bytes());
            l.failed(ip, t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(l.entries.len(), MAX_TRACKED);
        // The oldest were forgotten, the newest kept.
        assert!(l
            .entries
            .iter()
            .all(|e| e.ip != IpAddr::from(0u32.to_be_bytes())));
    }
}
