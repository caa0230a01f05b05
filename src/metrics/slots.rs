//! Who is being answered on the metrics port, in a fixed table (pure): at most
//! [`MAX_SCRAPES`] connections at once, [`MAX_PER_ADDRESS`] of them from one address.
//!
//! A connection that has not yet sent its whole request is *reading*. When a newcomer's
//! address holds its whole share, the newcomer takes the place of that address's oldest
//! reading connection. When the table is full, it takes the place of the oldest reading
//! connection of the address holding the most, if that is more than its own address
//! holds. The one pushed out is closed unanswered. A scraper sends its request at once and
//! is answered in milliseconds, so sockets that idle or dribble a byte a second from other
//! addresses cannot keep it out, however fast they reconnect: they only push out each
//! other.

use std::net::IpAddr;

/// Connections served at once.
pub const MAX_SCRAPES: usize = 8;
/// Connections served at once from one address.
pub const MAX_PER_ADDRESS: usize = 4;

/// The table. `H` is what a connection's task holds on to: dropping it (when its entry is
/// pushed out) tells the task to close.
pub struct Slots<H> {
    /// Oldest first.
    entries: heapless::Vec<Entry<H>, MAX_SCRAPES>,
    next_id: u64,
}

struct Entry<H> {
    id: u64,
    ip: IpAddr,
    reading: bool,
    _handle: H,
}

impl<H> Default for Slots<H> {
    fn default() -> Self {
        Slots {
            entries: heapless::Vec::new(),
            next_id: 0,
        }
    }
}

impl<H> Slots<H> {
    /// Takes a place for a connection from `ip`, pushing out the oldest reading one when
    /// needed: its id, or `Err` with why there is none (every place is answering).
    pub fn admit(&mut self, ip: IpAddr, handle: H) -> Result<u64, &'static str> {
        let own = self.held_by(ip);
        if own >= MAX_PER_ADDRESS {
            let i = self
                .entries
                .iter()
                .position(|e| e.reading && e.ip == ip)
                .ok_or("every scrape from this address is being answered")?;
            self.entries.remove(i);
        } else if self.entries.is_full() {
            // The oldest reading entry of the address holding the most (oldest first, so
            // the first found of that count).
            let mut victim: Option<(usize, usize)> = None;
            for (i, e) in self.entries.iter().enumerate() {
                let held = self.held_by(e.ip);
                if e.reading && held > own && victim.is_none_or(|(_, most)| held > most) {
                    victim = Some((i, held));
                }
            }
            let (i, _) = victim.ok_or("every scrape slot is being answered or fairly shared")?;
            self.entries.remove(i);
        }
        self.next_id += 1;
        let entry = Entry {
            id: self.next_id,
            ip,
            reading: true,
            _handle: handle,
        };
        // Cannot fail: a place was made above when full.
        let _ = self.entries.push(entry);
        Ok(self.next_id)
    }

    /// Connections `ip` holds.
    fn held_by(&self, ip: IpAddr) -> usize {
        self.entries.iter().filter(|e| e.ip == ip).count()
    }

    /// Connection `id` has sent its request: it is answered, and no longer pushed out.
    pub fn answering(&mut self, id: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            e.reading = false;
        }
    }

    /// Connection `id` is done (or was pushed out already).
    pub fn end(&mut self, id: u64) {
        if let Some(i) = self.entries.iter().position(|e| e.id == id) {
            self.entries.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn idle_connections_make_way_and_one_address_pushes_out_only_its_own() {
        let mut slots = Slots::default();
        let idle: Vec<Rc<()>> = (0..MAX_PER_ADDRESS).map(|_| Rc::new(())).collect();
        for h in &idle {
            slots.admit(ip(1), h.clone()).unwrap();
        }
        // A fifth from the same address pushes out that address's oldest.
        let newer = Rc::new(());
        slots.admit(ip(1), newer.clone()).unwrap();
        assert_eq!(Rc::strong_count(&idle[0]), 1, "the oldest was dropped");
        assert_eq!(Rc::strong_count(&idle[1]), 2);
        // Another address fills the rest; one answering is never pushed out.
        let scraper = Rc::new(());
        let id = slots.admit(ip(2), scraper.clone()).unwrap();
        slots.answering(id);
        for _ in 1..MAX_PER_ADDRESS {
            slots.admit(ip(2), Rc::new(())).unwrap();
        }
        // Full: a third address pushes out the oldest reading one, which is ip(1)'s.
        slots.admit(ip(3), Rc::new(())).unwrap();
        assert_eq!(Rc::strong_count(&idle[1]), 1);
        assert_eq!(Rc::strong_count(&scraper), 2, "answering: kept");
        slots.end(id);
        assert_eq!(Rc::strong_count(&scraper), 1);
    }

    /// Two addresses hold every place and reconnect as soon as they are pushed out; a
    /// scraper from a third is never the one pushed out while it reads its request.
    #[test]
    fn reconnecting_holders_push_out_each_other_not_a_scraper() {
        let mut slots = Slots::default();
        for n in 0..MAX_SCRAPES {
            slots.admit(ip(2 + (n % 2) as u8), Rc::new(())).unwrap();
        }
        let scraper = Rc::new(());
        slots.admit(ip(1), scraper.clone()).unwrap();
        for round in 0..100 {
            slots.admit(ip(2 + round % 2), Rc::new(())).unwrap();
            assert_eq!(Rc::strong_count(&scraper), 2, "round {round}");
        }
    }

    #[test]
    fn with_every_place_answering_a_newcomer_is_refused() {
        let mut slots = Slots::default();
        for n in 0..MAX_SCRAPES {
            let id = slots.admit(ip(n as u8), ()).unwrap();
            slots.answering(id);
        }
        assert!(slots.admit(ip(100), ()).is_err());
        let mut one = Slots::default();
        for _ in 0..MAX_PER_ADDRESS {
            let id = one.admit(ip(1), ()).unwrap();
            one.answering(id);
        }
        assert_eq!(
            one.admit(ip(1), ()),
            Err("every scrape from this address is being answered")
        );
        assert!(one.admit(ip(2), ()).is_ok());
    }
}
