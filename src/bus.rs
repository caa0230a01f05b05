//! The bus: fans every event out to each sink through fixed-capacity rings, one per
//! priority, so that a storm sheds what matters least first.
//!
//! Design: each priority's rings share one storage, a `tokio::sync::broadcast` channel.
//! Each sink reads at its own pace through its own cursor, so for each sink it behaves as
//! its own ring of that capacity: when a sink falls further behind than that, its oldest
//! unread events of that priority are overwritten (shed), and the sink learns how many on
//! its next read, which counts them per priority. A sink reads the three rings merged by
//! `seq`, so it sees events in the order they were published.
//!
//! [`Priority`] says which ring an event goes to. Presence and ringing (`low`) are what a
//! storm is made of and are stale a moment later; `call.ended`, `call.cdr`, `trunk.*` and
//! the `system.*` health events (`high`) are what billing and alerting need. A storm of
//! presence changes therefore overwrites only presence and ringing: the normal and high
//! rings keep their events. Capacities, per sink: `buffers.per_sink` events in all, a
//! quarter of them low, a quarter high, half normal ([`Priority::capacity`]). Publishing
//! never waits, so the AMI tap never blocks on a sink, and memory is `per_sink` events
//! whatever happens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use serde::Deserialize;

use crate::event::{self, Body, Class, Dropped, Event, Host};
use crate::settings::ConfigError;

/// Events held per sink while it is slow or down, unless `buffers.per_sink` says otherwise.
pub const DEFAULT_PER_SINK: usize = 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuffersConfig {
    /// Events held per sink while it is slow or down.
    pub per_sink: usize,
    /// Seconds the sinks get at shutdown to deliver what their rings still hold.
    pub drain_secs: u64,
}

/// Largest `buffers.per_sink` accepted. An event takes about 1.7 KiB in a ring, so this caps
/// the rings at about 110 MiB: more than any appliance should spend on them.
pub const MAX_PER_SINK: usize = 65_536;

impl Default for BuffersConfig {
    fn default() -> Self {
        BuffersConfig {
            per_sink: DEFAULT_PER_SINK,
            drain_secs: 5,
        }
    }
}

impl BuffersConfig {
    /// Checks the `[buffers]` table, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.per_sink == 0 || self.per_sink > MAX_PER_SINK {
            return Err(ConfigError::new(
                "buffers.per_sink",
                format!("must be between 1 and {MAX_PER_SINK} events"),
            ));
        }
        Ok(())
    }
}
/// Which ring an event travels in, and so what a storm sheds first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Presence and ringing: shed first.
    Low,
    /// Everything else about calls, legs, registrations and queues.
    Normal,
    /// A call's end and its CDR, trunks, and the `system.*` health events: shed last.
    High,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Low, Priority::Normal, Priority::High];

    pub fn of(body: &Body) -> Priority {
        match body {
            Body::EndpointPresence(_) | Body::CallRinging(_) | Body::TargetRinging(_) => {
                Priority::Low
            }
            Body::CallEnded(_) | Body::CallCdr(_) => Priority::High,
            b if matches!(b.class(), Class::System | Class::Trunk) => Priority::High,
            _ => Priority::Normal,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    /// Events of this priority each sink's ring holds, for `buffers.per_sink` = `per_sink`:
    /// a quarter each for low and high, the rest (half) for normal, so the three together
    /// hold `per_sink`, in about the shares a day's calls make (at least 1 each).
    pub fn capacity(self, per_sink: usize) -> usize {
        match self {
            Priority::Low | Priority::High => (per_sink / 4).max(1),
            Priority::Normal => (per_sink - 2 * (per_sink / 4)).max(1),
        }
    }
}

/// Most often a `system.events_dropped` event is published.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Events published per priority (`Priority::index`), shared by the bus and every sink's
/// counters.
type PublishedBy = [AtomicU64; Priority::ALL.len()];

/// Counters of one sink's ring of one priority.
#[derive(Debug, Default)]
pub struct RingCounters {
    /// Events of this priority published before the sink subscribed (it never sees those).
    subscribed_at: u64,
    /// Events the ring holds (`Priority::capacity`).
    pub capacity: u64,
    /// Events the sink took off it.
    received: AtomicU64,
    /// Events overwritten in it before the sink read them: what a storm shed.
    pub shed: AtomicU64,
}

/// Counters of one sink, shared with the status line and the watchdog.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub name: event::Text,
    /// Events the sink delivered (its own notion: published, acknowledged, written).
    pub delivered: AtomicU64,
    /// Events overwritten in the rings before the sink read them (their `shed`, summed),
    /// and events it took but could not deliver (`SinkRx::lost`).
    pub dropped: AtomicU64,
    /// `dropped` as of the last `system.events_dropped` report.
    reported: AtomicU64,
    /// Its ring of each priority (`Priority::index`).
    pub rings: [RingCounters; Priority::ALL.len()],
    /// The bus's count of events published, per priority.
    published: Arc<PublishedBy>,
    /// The sink cannot reach its destination (set by its `sink::health::HealthReporter`).
    pub down: std::sync::atomic::AtomicBool,
}

impl SinkCounters {
    /// Per ring: events published for this sink that it has neither taken nor been
    /// counted as losing, and what of those the ring still holds.
    fn unseen(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.rings
            .iter()
            .zip(self.published.iter())
            .map(|(r, published)| {
                let unseen = published
                    .load(Ordering::Relaxed)
                    .saturating_sub(r.subscribed_at)
                    .saturating_sub(r.received.load(Ordering::Relaxed))
                    .saturating_sub(r.shed.load(Ordering::Relaxed));
                (unseen, unseen.min(r.capacity))
            })
    }

    /// Events the sink took off its rings.
    pub fn received(&self) -> u64 {
        self.rings
            .iter()
            .map(|r| r.received.load(Ordering::Relaxed))
            .sum()
    }

    /// Events its rings hold together.
    pub fn capacity(&self) -> u64 {
        self.rings.iter().map(|r| r.capacity).sum()
    }

    /// What waits in its rings: at most their capacity.
    pub fn backlog(&self) -> u64 {
        self.unseen().map(|(_, held)| held).sum()
    }

    /// Events lost so far: those counted, and those overwritten in the rings that the
    /// sink has not come to yet (counted once it reads on).
    pub fn lost(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
            + self
                .unseen()
                .map(|(unseen, held)| unseen - held)
                .sum::<u64>()
    }
}

/// What the bus and its publishers share.
#[derive(Debug)]
struct Shared {
    seq: AtomicU64,
    /// Events published, per priority.
    published: Arc<PublishedBy>,
    /// Events published, per class (`Class::index`).
    classes: [AtomicU64; Class::ALL.len()],
    host: Host,
    /// `buffers.per_sink`.
    per_sink: usize,
    /// One entry per subscribed sink; bounded by the number of sinks in the config.
    sinks: Mutex<Vec<Arc<SinkCounters>>>,
    last_report: Mutex<Option<Instant>>,
}

/// The sending side, owned by the pipeline: one sender per priority. Dropping it closes
/// the bus: sinks drain what is left in their rings and then see the end.
pub struct Bus {
    tx: [broadcast::Sender<Event>; Priority::ALL.len()],
    shared: Arc<Shared>,
}

/// A handle for parts that publish now and then (sinks reporting trouble, the watchdog)
/// without keeping the bus open: once the `Bus` is dropped, their events go nowhere.
#[derive(Clone)]
pub struct Publisher {
    tx: [broadcast::WeakSender<Event>; Priority::ALL.len()],
    shared: Arc<Shared>,
}

impl Publisher {
    /// Publishes a body stamped now. Never waits.
    pub fn publish_body(&self, body: Body) {
        let p = Priority::of(&body).index();
        if let Some(tx) = self.tx[p].upgrade() {
            let ev = Event::new(event::now_micros(), &self.shared.host, body);
            send(&tx, p, &self.shared, ev);
        }
    }

    pub fn host(&self) -> &Host {
        &self.shared.host
    }
}

/// Sends `ev` on `tx`, the ring of priority `p`.
fn send(tx: &broadcast::Sender<Event>, p: usize, shared: &Shared, mut ev: Event) {
    ev.seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    shared.classes[ev.body.class().index()].fetch_add(1, Ordering::Relaxed);
    shared.published[p].fetch_add(1, Ordering::Relaxed);
    // Err means no sink is subscribed: nothing to deliver to.
    let _ = tx.send(ev);
}

impl Bus {
    /// A bus whose rings hold `per_sink` events for each sink, split by priority
    /// (`Priority::capacity`).
    pub fn new(per_sink: usize, host: Host) -> Self {
        let per_sink = per_sink.max(1);
        Bus {
            tx: Priority::ALL.map(|p| broadcast::channel(p.capacity(per_sink)).0),
            shared: Arc::new(Shared {
                seq: AtomicU64::new(0),
                published: Arc::default(),
                classes: Default::default(),
                host,
                per_sink,
                sinks: Mutex::new(Vec::new()),
                last_report: Mutex::new(None),
            }),
        }
    }

    pub fn host(&self) -> &Host {
        &self.shared.host
    }

    /// Publishes an event to every sink. Never waits; assigns `seq`.
    pub fn publish(&self, ev: Event) {
        let p = Priority::of(&ev.body).index();
        send(&self.tx[p], p, &self.shared, ev);
    }

    /// Publishes a body stamped now with this bus's host.
    pub fn publish_body(&self, body: Body) {
        self.publish(Event::new(event::now_micros(), &self.shared.host, body));
    }

    pub fn publisher(&self) -> Publisher {
        Publisher {
            tx: self.tx.each_ref().map(broadcast::Sender::downgrade),
            shared: self.shared.clone(),
        }
    }

    /// Events published since start.
    pub fn published(&self) -> u64 {
        self.shared.seq.load(Ordering::Relaxed)
    }

    /// Events published since start in `class`.
    pub fn published_in(&self, class: Class) -> u64 {
        self.shared.classes[class.index()].load(Ordering::Relaxed)
    }

    /// A new sink's ring. Events published before this call are not seen. The counters of
    /// sinks that are gone (their `SinkRx` dropped, e.g. replaced by a reload) are
    /// forgotten here, so the list stays as long as the config's list of sinks.
    pub fn subscribe(&self, name: &str) -> SinkRx {
        let shared = &self.shared;
        let counters = Arc::new(SinkCounters {
            name: event::text(name),
            rings: Priority::ALL.map(|p| RingCounters {
                subscribed_at: shared.published[p.index()].load(Ordering::Relaxed),
                capacity: p.capacity(shared.per_sink) as u64,
                ..Default::default()
            }),
            published: shared.published.clone(),
            ..Default::default()
        });
        let mut sinks = self.shared.sinks.lock().expect("bus sink list poisoned");
        sinks.retain(|c| Arc::strong_count(c) > 1);
        sinks.push(counters.clone());
        drop(sinks);
        SinkRx {
            rx: self.tx.each_ref().map(broadcast::Sender::subscribe),
            next: Default::default(),
            closed: [false; Priority::ALL.len()],
            last_seq: 0,
            last_ring: Priority::Normal.index(),
            counters,
        }
    }

    /// The counters of every subscribed sink.
    pub fn sinks(&self) -> Vec<Arc<SinkCounters>> {
        self.shared
            .sinks
            .lock()
            .expect("bus sink list poisoned")
            .clone()
    }

    /// Total events dropped across sinks.
    pub fn dropped(&self) -> u64 {
        self.sinks()
            .iter()
            .map(|s| s.dropped.load(Ordering::Relaxed))
            .sum()
    }

    /// Publishes one `system.events_dropped` per sink that dropped events since the last
    /// report, at most once per `DROP_REPORT_INTERVAL`. Returns how many were published.
    pub fn report_drops(&self, now: Instant) -> usize {
        {
            let mut last = self
                .shared
                .last_report
                .lock()
                .expect("bus report clock poisoned");
            if matches!(*last, Some(t) if now.duration_since(t) < DROP_REPORT_INTERVAL) {
                return 0;
            }
            // The interval runs from the last report, not from the last look: the first
            // drops after a quiet spell are reported at once.
            let unreported = self
                .sinks()
                .iter()
                .any(|s| s.dropped.load(Ordering::Relaxed) > s.reported.load(Ordering::Relaxed));
            if !unreported {
                return 0;
            }
            *last = Some(now);
        }
        let mut n = 0;
        for s in self.sinks() {
            let total = s.dropped.load(Ordering::Relaxed);
            let before = s.reported.swap(total, Ordering::Relaxed);
            if total > before {
                tracing::warn!(
                    sink = s.name.as_str(),
                    dropped = total - before,
                    total,
                    "sink ring overflowed: oldest events dropped"
                );
                self.publish_body(Body::EventsDropped(Dropped {
                    sink: s.name.clone(),
                    dropped: total - before,
                    total,
                }));
                n += 1;
            }
        }
        n
    }
}

/// A sink's receiving end of the bus: its three rings, read merged by `seq`.
pub struct SinkRx {
    rx: [broadcast::Receiver<Event>; Priority::ALL.len()],
    /// The next event of each ring, taken off it to compare with the others' (at most one
    /// each).
    next: [Option<Event>; Priority::ALL.len()],
    /// The ring's sender is gone and the ring is drained.
    closed: [bool; Priority::ALL.len()],
    /// The `seq` of the last event read, and the ring it came from.
    last_seq: u64,
    last_ring: usize,
    counters: Arc<SinkCounters>,
}

/// Result of a non-waiting read.
// Design: the event is not boxed, though it is large: a Box here was one heap allocation
// per event on the NATS sink's hot path (tests/alloc_free.rs counts them).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum TryRecv {
    Event(Event),
    Empty,
    Closed,
}

impl SinkRx {
    /// The next event, waiting for one; `None` once the bus is gone and the rings drained.
    /// Overwritten events are counted as dropped on the way.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.try_recv() {
                TryRecv::Event(ev) => return Some(ev),
                TryRecv::Closed => return None,
                TryRecv::Empty => {}
            }
            // Every ring is empty: wait for one to have an event (or to close).
            let [low, normal, high] = &mut self.rx;
            let (p, got) = tokio::select! {
                r = low.recv(), if !self.closed[0] => (0, r),
                r = normal.recv(), if !self.closed[1] => (1, r),
                r = high.recv(), if !self.closed[2] => (2, r),
                else => return None,
            };
            use broadcast::error::{RecvError, TryRecvError};
            self.took(
                p,
                got.map_err(|e| match e {
                    RecvError::Lagged(n) => TryRecvError::Lagged(n),
                    RecvError::Closed => TryRecvError::Closed,
                }),
            );
        }
    }

    /// The next event if one is waiting. Never waits.
    pub fn try_recv(&mut self) -> TryRecv {
        // The event one past the last is looked for first in the ring the last came from,
        // then in the others; once it is found, nothing can come before it.
        let want = self.last_seq + 1;
        let from = self.last_ring;
        let rings = self.rx.len();
        let found = (0..rings).map(|i| (from + i) % rings).any(|p| {
            self.fill_one(p);
            self.holds(p, want)
        });
        // Not there: a gap (events shed, or published by another task in between). An
        // event published before the earliest one taken is in its ring by now, even if
        // that ring looked empty a moment ago: look again before choosing.
        if !found && self.next.iter().any(Option::is_some) && self.next.iter().any(Option::is_none)
        {
            self.fill();
        }
        let Some(p) = self.earliest() else {
            return if self.closed.iter().all(|c| *c) {
                TryRecv::Closed
            } else {
                TryRecv::Empty
            };
        };
        let Some(ev) = self.next[p].take() else {
            return TryRecv::Empty;
        };
        (self.last_seq, self.last_ring) = (ev.seq, p);
        self.counters.rings[p]
            .received
            .fetch_add(1, Ordering::Relaxed);
        TryRecv::Event(ev)
    }

    /// Whether the event taken off ring `p` is `seq`.
    fn holds(&self, p: usize, seq: u64) -> bool {
        self.next[p].as_ref().is_some_and(|e| e.seq == seq)
    }

    /// Takes the next event of each ring that has none taken yet, if one is waiting.
    fn fill(&mut self) {
        for p in 0..self.rx.len() {
            self.fill_one(p);
        }
    }

    /// Takes the next event of ring `p` if it has none taken yet and one is waiting.
    fn fill_one(&mut self, p: usize) {
        while self.next[p].is_none() && !self.closed[p] {
            match self.rx[p].try_recv() {
                Err(broadcast::error::TryRecvError::Empty) => break,
                got => self.took(p, got),
            }
        }
    }

    /// What a read of ring `p` gave: its next event, a count of overwritten ones, or its end.
    fn took(&mut self, p: usize, got: Result<Event, broadcast::error::TryRecvError>) {
        match got {
            Ok(ev) => self.next[p] = Some(ev),
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                self.counters.rings[p].shed.fetch_add(n, Ordering::Relaxed);
            }
            Err(broadcast::error::TryRecvError::Closed) => self.closed[p] = true,
            Err(broadcast::error::TryRecvError::Empty) => {}
        }
    }

    /// The ring whose taken event was published first.
    fn earliest(&self) -> Option<usize> {
        (0..self.next.len())
            .filter(|&p| self.next[p].is_some())
            .min_by_key(|&p| self.next[p].as_ref().map_or(u64::MAX, |e| e.seq))
    }

    /// Events waiting in this sink's rings (at most their capacity).
    pub fn len(&self) -> usize {
        self.rx.iter().map(broadcast::Receiver::len).sum::<usize>()
            + self.next.iter().filter(|e| e.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records that the sink delivered `n` events.
    pub fn delivered(&self, n: u64) {
        self.counters.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// Records that the sink took `n` events and could not deliver them (a failed write
    /// it cannot retry): counted as dropped, and reported as such.
    pub fn lost(&self, n: u64) {
        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub fn counters(&self) -> &Arc<SinkCounters> {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{text, AmiLink};

    /// An event of normal priority, in the ring of half `per_sink`.
    fn body(i: u64) -> Body {
        Body::EndpointRegistered(event::Registration {
            aor: text(&i.to_string()),
            ..Default::default()
        })
    }

    /// A health event (high priority).
    fn health() -> Body {
        Body::AmiConnected(AmiLink::default())
    }

    #[tokio::test]
    async fn a_stalled_sink_keeps_capacity_and_counts_the_rest() {
        let bus = Bus::new(16, text("h")); // 8 of normal priority
        let mut slow = bus.subscribe("slow");
        let mut fast = bus.subscribe("fast");
        for i in 0..100_000u64 {
            bus.publish(Event::new(i, bus.host(), body(i)));
            assert!(matches!(fast.try_recv(), TryRecv::Event(_)));
        }
        assert_eq!(slow.len(), 100_000); // behind by this much; the ring holds only 8
        let first = slow.recv().await.unwrap();
        assert_eq!(first.seq, 100_000 - 8 + 1);
        assert_eq!(slow.counters().dropped.load(Ordering::Relaxed), 100_000 - 8);
        assert_eq!(fast.counters().dropped.load(Ordering::Relaxed), 0);
        for _ in 1..8 {
            slow.recv().await.unwrap();
        }
        assert!(matches!(slow.try_recv(), TryRecv::Empty));
    }

    #[tokio::test]
    async fn drops_are_reported_once_per_interval() {
        let bus = Bus::new(8, text("h")); // 4 normal, 2 high
        let mut slow = bus.subscribe("nats");
        let mut watcher = bus.subscribe("watcher");
        for i in 0..5 {
            bus.publish(Event::new(i, bus.host(), body(i)));
        }
        while let TryRecv::Event(_) = slow.try_recv() {}
        let t0 = Instant::now();
        // The watcher itself lagged too (ring of 4, 5 published): both are reported.
        while let TryRecv::Event(_) = watcher.try_recv() {}
        assert_eq!(bus.report_drops(t0), 2);
        assert_eq!(bus.report_drops(t0 + Duration::from_secs(1)), 0);
        let ev = watcher.recv().await.unwrap();
        assert_eq!(
            (ev.class().as_str(), ev.name()),
            ("system", "events_dropped")
        );
        assert_eq!(ev.str_field("sink"), "nats");
    }

    #[tokio::test]
    async fn backlog_counts_what_waits_and_gone_sinks_are_forgotten() {
        let bus = Bus::new(8, text("h")); // 4 of normal priority
        bus.publish_body(body(0)); // before anyone subscribed
        let mut rx = bus.subscribe("a");
        for i in 1..=6 {
            bus.publish_body(body(i));
        }
        let a = rx.counters().clone();
        // The ring holds 4; the other 2 are lost, though the sink has not noticed yet.
        assert_eq!(a.backlog(), 4);
        assert_eq!(a.lost(), 2);
        rx.recv().await.unwrap(); // 2 overwritten, 1 taken
        assert_eq!(a.backlog(), 3);
        // Overrun while the sink is stuck: the ring holds 4, the rest are lost, though
        // the sink has not noticed yet.
        for i in 7..=16 {
            bus.publish_body(body(i));
        }
        assert_eq!(a.backlog(), 4);
        assert_eq!(a.lost(), 2 + 9);
        drop((rx, a));
        let _b = bus.subscribe("b");
        let names: std::vec::Vec<_> = bus.sinks().iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ["b"]);
    }

    #[tokio::test]
    async fn first_drops_after_a_quiet_spell_are_reported_at_once() {
        let bus = Bus::new(1, text("h"));
        let mut slow = bus.subscribe("slow");
        let t0 = Instant::now();
        assert_eq!(bus.report_drops(t0), 0); // nothing dropped yet: no clock started
        for i in 0..3 {
            bus.publish(Event::new(i, bus.host(), body(i)));
        }
        while let TryRecv::Event(_) = slow.try_recv() {}
        assert_eq!(bus.report_drops(t0 + Duration::from_secs(1)), 1);
    }

    fn presence(i: u64) -> Body {
        Body::EndpointPresence(event::Presence {
            extension: text(&i.to_string()),
            ..Default::default()
        })
    }

    fn ended(i: u64) -> Body {
        Body::CallEnded(event::CallEnded {
            call_id: text(&i.to_string()),
            ..Default::default()
        })
    }

    fn started(i: u64) -> Body {
        Body::CallStarted(event::CallStarted {
            call_id: text(&i.to_string()),
            ..Default::default()
        })
    }

    /// A storm of presence changes with calls in it, far more than a stalled sink's rings
    /// hold: what it reads afterwards is every call's start and end and the health event,
    /// in publishing order, and only presence was shed, counted as low.
    #[tokio::test]
    async fn a_storm_sheds_presence_first_and_keeps_ends_and_health_in_order() {
        let bus = Bus::new(64, text("h"));
        let mut stalled = bus.subscribe("stalled");
        let mut calls = 0;
        for i in 0..20_000u64 {
            bus.publish_body(presence(i));
            if i % 2000 == 0 {
                bus.publish_body(started(i));
                bus.publish_body(ended(i));
                calls += 1;
            }
        }
        bus.publish_body(health());
        let published = bus.published();
        let counters = stalled.counters().clone();
        assert_eq!(counters.backlog(), 16 + 2 * calls + 1);
        let mut got = std::vec::Vec::new();
        while let TryRecv::Event(ev) = stalled.try_recv() {
            got.push(ev);
        }
        let seqs: std::vec::Vec<u64> = got.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in publishing order");
        let named = |n: &str| got.iter().filter(|e| e.name() == n).count() as u64;
        assert_eq!((named("started"), named("ended")), (calls, calls));
        assert_eq!(named("ami_connected"), 1);
        // The low ring holds a quarter of 64: the last 16 presence changes.
        assert_eq!(named("presence"), 16);
        assert_eq!(got.last().unwrap().seq, published);
        let shed = counters
            .rings
            .each_ref()
            .map(|r| r.shed.load(Ordering::Relaxed));
        assert_eq!(shed, [20_000 - 16, 0, 0]);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 20_000 - 16);
        assert_eq!(counters.backlog(), 0);
        assert_eq!(counters.lost(), 20_000 - 16);
    }

    #[tokio::test]
    async fn a_waiting_reader_gets_events_of_every_priority_in_order() {
        let bus = Arc::new(Bus::new(8, text("h")));
        let mut rx = bus.subscribe("s");
        let publisher = bus.clone();
        let reader = tokio::spawn(async move {
            let mut seqs = std::vec::Vec::new();
            while let Some(ev) = rx.recv().await {
                seqs.push((ev.seq, Priority::of(&ev.body)));
            }
            seqs
        });
        for i in 0..3u64 {
            tokio::task::yield_now().await;
            publisher.publish_body(presence(i));
            tokio::task::yield_now().await;
            publisher.publish_body(ended(i));
            publisher.publish_body(started(i));
        }
        drop(publisher);
        drop(Arc::try_unwrap(bus).ok().expect("the only bus"));
        let seqs = reader.await.unwrap();
        assert_eq!(
            seqs.iter().map(|(s, _)| *s).collect::<std::vec::Vec<_>>(),
            (1..=9).collect::<std::vec::Vec<_>>()
        );
        assert_eq!(seqs[0].1, Priority::Low);
        assert_eq!(seqs[1].1, Priority::High);
        assert_eq!(seqs[2].1, Priority::Normal);
    }

    #[test]
    fn what_a_storm_is_made_of_goes_first_and_what_billing_needs_last() {
        assert_eq!(Priority::of(&presence(1)), Priority::Low);
        assert_eq!(Priority::of(&ended(1)), Priority::High);
        assert_eq!(
            Priority::of(&Body::CallCdr(Default::default())),
            Priority::High
        );
        assert_eq!(
            Priority::of(&Body::TrunkFailed(Default::default())),
            Priority::High
        );
        assert_eq!(Priority::of(&health()), Priority::High);
        assert_eq!(Priority::of(&body(1)), Priority::Normal);
        assert_eq!(Priority::of(&started(1)), Priority::Normal);
        assert_eq!(
            Priority::of(&Body::CallRinging(Default::default())),
            Priority::Low
        );
        let split = |n| Priority::ALL.map(|p| p.capacity(n));
        assert_eq!(split(1024), [256, 512, 256]);
        assert_eq!(split(1023), [255, 513, 255]);
        assert_eq!(split(2), [1, 2, 1]);
    }

    #[tokio::test]
    async fn closed_bus_drains_then_ends_even_with_publishers_left() {
        let bus = Bus::new(4, text("h"));
        let mut rx = bus.subscribe("s");
        let publisher = bus.publisher();
        publisher.publish_body(body(1));
        bus.publish(Event::new(2, bus.host(), body(2)));
        drop(bus);
        publisher.publish_body(body(3)); // goes nowhere
        assert_eq!(rx.recv().await.unwrap().seq, 1);
        assert_eq!(rx.recv().await.unwrap().seq, 2);
        assert!(rx.recv().await.is_none());
    }
}
