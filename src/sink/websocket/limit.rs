//! Who may try to get in, in fixed-size tables (pure; time passed in): failed logins per
//! address and for everyone together ([`AuthLimiter`]), and connections not yet let in
//! per address ([`Pending`], held as a [`PendingSlot`]).
//!
//! Failed logins are counted in token buckets. An address may fail [`ADDRESS_BURST`]
//! times, then once per [`ADDRESS_REFILL`]; all addresses together [`GLOBAL_BURST`]
//! times, then once per [`GLOBAL_REFILL`]. While a bucket is empty, logins it covers are
//! refused unchecked (HTTP 429, or PortSIP's error reply), so a guess then tells nothing.
//! The global bucket bounds guessing whatever the number of addresses an attacker
//! rotates through; the per-address one keeps one address from spending it all. A
//! correct key behind a NAT where someone else guesses waits for the next token
//! (at most `ADDRESS_REFILL`), never a whole minute.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failed logins an address may make at once.
pub const ADDRESS_BURST: u32 = 5;
/// After its burst, an address may fail again once per this.
pub const ADDRESS_REFILL: Duration = Duration::from_secs(10);
/// Failed logins all addresses together may make at once.
pub const GLOBAL_BURST: u32 = 30;
/// After the global burst, one more failure per this, whoever makes it: at most 43,200
/// guesses a day.
pub const GLOBAL_REFILL: Duration = Duration::from_secs(2);
/// Addresses tracked at once; when full, the one with the fullest bucket is forgotten.
pub const MAX_TRACKED: usize = 256;
/// Connections not yet let in at once, from all addresses (each holds a socket and a
/// task): in their handshake, and for PortSIP until they log in.
pub const MAX_PENDING: usize = 32;
/// Connections not yet let in at once from one address: one address cannot hold every
/// slot.
pub const MAX_PENDING_PER_ADDRESS: u16 = 4;

/// A token bucket of failures: `tokens` left at `at`, one more every `refill` up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    at: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Adds the tokens earned since `at`, keeping the time of a partly earned one.
    fn refill(&mut self, burst: u32, refill: Duration, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        let earned = (elapsed.as_nanos() / refill.as_nanos()).min(u128::from(burst)) as u32;
        if self.tokens + earned >= burst {
            self.tokens = burst;
            self.at = now;
        } else if earned > 0 {
            self.tokens += earned;
            self.at += refill * earned;
        }
    }

    fn take(&mut self) {
        self.tokens = self.tokens.saturating_sub(1);
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: IpAddr,
    bucket: Bucket,
}

/// Failed-login limits: per address and global.
#[derive(Debug)]
pub struct AuthLimiter {
    entries: heapless::Vec<Entry, MAX_TRACKED>,
    global: Bucket,
}

impl AuthLimiter {
    pub fn new(now: Instant) -> Self {
        AuthLimiter {
            entries: heapless::Vec::new(),
            global: Bucket::full(GLOBAL_BURST, now),
        }
    }

    fn refill(&mut self, now: Instant) {
        self.global.refill(GLOBAL_BURST, GLOBAL_REFILL, now);
        for e in &mut self.entries {
            e.bucket.refill(ADDRESS_BURST, ADDRESS_REFILL, now);
        }
        // A full bucket is the same as none.
        self.entries.retain(|e| e.bucket.tokens < ADDRESS_BURST);
    }

    /// Whether `ip` may try to log in now: its own budget and the global one have room.
    pub fn allowed(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.refill(now);
        self.global.tokens > 0
            && self
                .entries
                .iter()
                .find(|e| e.ip == ip)
                .is_none_or(|e| e.bucket.tokens > 0)
    }

    /// Counts a failed login from `ip`. Returns how many more it may make now.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> u32 {
        self.refill(now);
        self.global.take();
        if let Some(e) = self.entries.iter_mut().find(|e| e.ip == ip) {
            e.bucket.take();
            return e.bucket.tokens;
        }
        if self.entries.is_full() {
            // Forgetting the least spent address gives it at most a new burst, which the
            // global bucket still bounds.
            if let Some((i, _)) = self
                .entries
                .iter()
                .enumerate()
                .max_by_key(|(_, e)| e.bucket.tokens)
            {
                self.entries.swap_remove(i);
            }
        }
        let mut bucket = Bucket::full(ADDRESS_BURST, now);
        bucket.take();
        let _ = self.entries.push(Entry { ip, bucket });
        bucket.tokens
    }
}

/// Connections not yet let in (in their handshake, or logging in), counted per address.
#[derive(Debug, Default)]
pub struct Pending {
    /// At most one entry per pending connection, so `MAX_PENDING` entries suffice.
    by_address: heapless::Vec<(IpAddr, u16), MAX_PENDING>,
    total: usize,
}

impl Pending {
    /// Takes a pending slot for `ip`: `Err` says why there is none.
    pub fn begin(&mut self, ip: IpAddr) -> Result<(), &'static str> {
        if self.total >= MAX_PENDING {
            return Err("too many connections not yet logged in");
        }
        match self.by_address.iter_mut().find(|(a, _)| *a == ip) {
            Some((_, n)) if *n >= MAX_PENDING_PER_ADDRESS => {
                return Err("too many connections not yet logged in from this address")
            }
            Some((_, n)) => *n += 1,
            // Cannot fail: fewer than MAX_PENDING connections means fewer entries.
            None => {
                let _ = self.by_address.push((ip, 1));
            }
        }
        self.total += 1;
        Ok(())
    }

    /// Gives back a slot `begin` took for `ip`.
    pub fn end(&mut self, ip: IpAddr) {
        if let Some(i) = self.by_address.iter().position(|(a, _)| *a == ip) {
            self.total -= 1;
            self.by_address[i].1 -= 1;
            if self.by_address[i].1 == 0 {
                self.by_address.swap_remove(i);
            }
        }
    }
}

/// A slot of [`Pending`] for one address, given back when dropped.
pub struct PendingSlot {
    table: Arc<Mutex<Pending>>,
    ip: IpAddr,
}

impl PendingSlot {
    pub fn take(table: &Arc<Mutex<Pending>>, ip: IpAddr) -> Result<Self, &'static str> {
        table.lock().unwrap_or_else(|e| e.into_inner()).begin(ip)?;
        Ok(PendingSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .end(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn an_address_gets_its_burst_then_one_try_per_refill() {
        let t0 = Instant::now();
        let mut l = AuthLimiter::new(t0);
        for left in (0..ADDRESS_BURST).rev() {
            assert!(l.allowed(ip(1), t0));
            assert_eq!(l.failed(ip(1), t0), left);
        }
        assert!(!l.allowed(ip(1), t0 + ADDRESS_REFILL - Duration::from_millis(1)));
        assert!(l.allowed(ip(2), t0), "other addresses carry on");
        // A correct key behind the same address waits one refill, not a minute.
        assert!(l.allowed(ip(1), t0 + ADDRESS_REFILL));
        l.failed(ip(1), t0 + ADDRESS_REFILL);
        assert!(!l.allowed(ip(1), t0 + ADDRESS_REFILL));
        assert!(l.allowed(ip(1), t0 + ADDRESS_REFILL * 2));
    }

    #[test]
    fn rotating_addresses_cannot_guess_past_the_global_budget() {
        let t0 = Instant::now();
        let mut l = AuthLimiter::new(t0);
        // 300 addresses, more than the table holds, each guessing once, all at once.
        let mut guesses = 0;
        for n in 0..300 {
            if l.allowed(ip(n), t0) {
                l.failed(ip(n), t0);
                guesses += 1;
            }
        }
        assert_eq!(guesses, GLOBAL_BURST);
        // Then one guess per GLOBAL_REFILL, for everyone together, over ten minutes.
        let (mut t, mut n, mut later) = (t0, 300u32, 0);
        while t < t0 + Duration::from_secs(600) {
            t += Duration::from_millis(6);
            n += 1;
            if l.allowed(ip(n), t) {
                l.failed(ip(n), t);
                later += 1;
            }
        }
        assert_eq!(later, 300, "600 s / 2 s");
        assert!(l.entries.len() <= MAX_TRACKED);
    }

    #[test]
    fn the_table_stays_bounded_and_forgets_the_least_spent() {
        let t0 = Instant::now();
        let mut l = AuthLimiter::new(t0);
        for _ in 0..ADDRESS_BURST {
            l.failed(ip(0), t0);
        }
        for n in 1..(MAX_TRACKED as u32 + 10) {
            l.failed(ip(n), t0);
        }
        assert_eq!(l.entries.len(), MAX_TRACKED);
        assert!(
            l.entries.iter().any(|e| e.ip == ip(0)),
            "the spent one stays"
        );
    }

    #[test]
    fn one_address_cannot_hold_every_handshake_slot() {
        let mut p = Pending::default();
        for _ in 0..MAX_PENDING_PER_ADDRESS {
            p.begin(ip(1)).unwrap();
        }
        assert!(p.begin(ip(1)).is_err());
        p.begin(ip(2)).unwrap();
        p.end(ip(1));
        p.begin(ip(1)).unwrap();
        // Many addresses still fill MAX_PENDING and no more.
        let mut n = 3;
        while p.begin(ip(n)).is_ok() {
            n += 1;
        }
        assert_eq!(p.total, MAX_PENDING);
        for a in 2..n {
            p.end(ip(a));
        }
        for _ in 0..MAX_PENDING_PER_ADDRESS {
            p.end(ip(1));
        }
        assert_eq!((p.total, p.by_address.len()), (0, 0));
    }
}
