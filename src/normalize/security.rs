//! Bursts of failed logins, SIP or AMI, from one address: Asterisk's security events
//! (`InvalidPassword`, `ChallengeResponseFailed`, `FailedACL`, `InvalidAccountID`; the AMI
//! user needs the `security` class) counted per source address and service in a fixed
//! table. The `normalize.login_failures`-th failure within `normalize.login_window_secs` is
//! told once as `system.login_failures`, with the address, the service, the last account
//! tried and the count; the next window counts afresh. Pure: time is passed in.

use super::{bounded, NormalizeStats};
use crate::ami::frame::Message;
use crate::event::{Body, LoginFailures, Text};

/// Addresses followed at once. A scan from more addresses than this replaces the oldest
/// (counted in `evicted`); each address still shows once it fails `login_failures` times
/// within a window while it is followed.
pub const MAX_SOURCES: usize = 64;

#[derive(Debug, Clone, Default)]
struct Source {
    address: Text,
    service: Text,
    /// When the current window began (µs since the epoch).
    since: u64,
    failures: u32,
    last_seen: u64,
}

#[derive(Debug)]
pub struct Logins {
    sources: Vec<Source>,
    /// Failures within a window that make a burst; 0: off.
    threshold: u32,
    window: u64,
}

impl Logins {
    /// Tells the `threshold`-th failure from one address within `window_secs` (0: never).
    pub fn new(threshold: u32, window_secs: u32) -> Logins {
        Logins {
            sources: Vec::with_capacity(MAX_SOURCES),
            threshold,
            window: u64::from(window_secs) * 1_000_000,
        }
    }

    /// One of the security events read (`names::SecurityEvent`): each is a failed login.
    pub fn handle(
        &mut self,
        msg: &Message<'_>,
        now: u64,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        if self.threshold == 0 {
            return;
        }
        // `IPV4/UDP/192.0.2.7/5060`: the address, without protocol and port.
        let remote = msg.get("RemoteAddress").unwrap_or("");
        let address = remote.split('/').nth(2).unwrap_or(remote);
        let service = msg.get("Service").unwrap_or("");
        let at = match self
            .sources
            .iter()
            .position(|s| s.address == address && s.service == service)
        {
            Some(i) => i,
            None => {
                let fresh = Source {
                    address: bounded(stats, address),
                    service: bounded(stats, service),
                    since: now,
                    ..Source::default()
                };
                if self.sources.len() < MAX_SOURCES {
                    self.sources.push(fresh);
                    self.sources.len() - 1
                } else {
                    stats.evicted += 1;
                    let oldest = (0..self.sources.len())
                        .min_by_key(|&i| self.sources[i].last_seen)
                        .unwrap_or(0);
                    self.sources[oldest] = fresh;
                    oldest
                }
            }
        };
        let s = &mut self.sources[at];
        if now.saturating_sub(s.since) > self.window {
            s.since = now;
            s.failures = 0;
        }
        s.failures += 1;
        s.last_seen = now;
        if s.failures == self.threshold {
            emit(Body::LoginFailures(LoginFailures {
                address: s.address.clone(),
                service: s.service.clone(),
                account: bounded(stats, msg.get("AccountID").unwrap_or("")),
                failures: u64::from(s.failures),
                window_secs: self.window / 1_000_000,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::frame::{Frame, Limits, Parser};

    fn failed(logins: &mut Logins, address: &str, service: &str, now: u64) -> Vec<Body> {
        let text = format!(
            "Event: ChallengeResponseFailed\r\nService: {service}\r\nAccountID: 101\r\n\
             RemoteAddress: IPV4/UDP/{address}/5061\r\n\r\n"
        );
        let mut p = Parser::new(Limits::default());
        p.push(b"Asterisk Call Manager/11.0.0\r\n", &mut |_| {});
        let mut out = Vec::new();
        let mut stats = NormalizeStats::default();
        p.push(text.as_bytes(), &mut |f| {
            if let Ok(Frame::Message(m)) = f {
                logins.handle(&m, now, &mut stats, &mut |b| out.push(b));
            }
        });
        out
    }

    const S: u64 = 1_000_000;

    #[test]
    fn the_nth_failure_from_an_address_within_the_window_is_told_once() {
        let mut l = Logins::new(3, 60);
        assert!(failed(&mut l, "192.0.2.7", "PJSIP", 100 * S).is_empty());
        assert!(failed(&mut l, "192.0.2.7", "AMI", 101 * S).is_empty());
        assert!(failed(&mut l, "192.0.2.8", "PJSIP", 101 * S).is_empty());
        assert!(failed(&mut l, "192.0.2.7", "PJSIP", 110 * S).is_empty());
        let told = failed(&mut l, "192.0.2.7", "PJSIP", 120 * S);
        let [Body::LoginFailures(b)] = &told[..] else {
            panic!("{told:?}");
        };
        assert_eq!(
            (b.address.as_str(), b.service.as_str(), b.account.as_str()),
            ("192.0.2.7", "PJSIP", "101")
        );
        assert_eq!((b.failures, b.window_secs), (3, 60));
        // More in the same window: already told.
        assert!(failed(&mut l, "192.0.2.7", "PJSIP", 121 * S).is_empty());
        // A new window counts afresh.
        for t in [200, 201] {
            assert!(failed(&mut l, "192.0.2.7", "PJSIP", t * S).is_empty());
        }
        assert_eq!(failed(&mut l, "192.0.2.7", "PJSIP", 202 * S).len(), 1);
        // Failures spread wider than the window never make a burst.
        let mut slow = Logins::new(3, 60);
        for t in 0..10 {
            assert!(failed(&mut slow, "192.0.2.9", "AMI", t * 61 * S).is_empty());
        }
        assert!(failed(&mut Logins::new(0, 60), "192.0.2.7", "AMI", 0).is_empty());
    }

    #[test]
    fn a_scan_from_many_addresses_stays_in_the_table() {
        let mut l = Logins::new(2, 60);
        for i in 0..1000u64 {
            failed(&mut l, &format!("10.0.{}.{}", i / 256, i % 256), "PJSIP", i);
        }
        assert_eq!(l.sources.len(), MAX_SOURCES);
        // The newest are still followed.
        assert_eq!(failed(&mut l, "10.0.3.231", "PJSIP", 2000).len(), 1);
    }
}
