//! The bus: fans every event out to each sink through a fixed-capacity ring.
//!
//! Design: the rings share one storage, a `tokio::sync::broadcast` channel of
//! `buffers.per_sink` slots. Each sink reads at its own pace through its own cursor, so
//! for each sink it behaves as its own ring of that capacity: when a sink falls more than
//! `per_sink` events behind, its oldest unread events are overwritten (dropped), and the
//! sink learns how many on its next read, which counts them. Publishing never waits, so
//! the AMI tap never blocks on a sink, and memory is `per_sink` events whatever happens.

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

/// Largest `buffers.per_sink` accepted. An event takes about 1.4 KiB in the ring, so this
/// caps the rings at about 90 MiB: more than any appliance should spend on them.
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
/// Most often a `system.events_dropped` event is published.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Counters of one sink, shared with the status line and the watchdog.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub name: event::Text,
    /// Events the sink took off its ring.
    pub received: AtomicU64,
    /// Events the sink delivered (its own notion: published, acknowledged, written).
    pub delivered: AtomicU64,
    /// Events overwritten in the ring before the sink read them.
    pub dropped: AtomicU64,
    /// `dropped` as of the last `system.events_dropped` report.
    reported: AtomicU64,
    /// Events published before the sink subscribed (it never sees those).
    pub subscribed_at: u64,
    /// Events its ring holds (`buffers.per_sink`).
    pub capacity: u64,
    /// The sink cannot reach its destination (set by its `sink::health::HealthReporter`).
    pub down: std::sync::atomic::AtomicBool,
}

impl SinkCounters {
    /// Events published for this sink that it has neither taken nor been counted as
    /// losing, given `published` (`Bus::published`).
    fn unseen(&self, published: u64) -> u64 {
        published
            .saturating_sub(self.subscribed_at)
            .saturating_sub(self.received.load(Ordering::Relaxed))
            .saturating_sub(self.dropped.load(Ordering::Relaxed))
    }

    /// What waits in its ring: at most its capacity.
    pub fn backlog(&self, published: u64) -> u64 {
        self.unseen(published).min(self.capacity)
    }

    /// Events lost so far: those counted, and those overwritten in the ring that the sink
    /// has not come to yet (counted once it reads on).
    pub fn lost(&self, published: u64) -> u64 {
        self.dropped.load(Ordering::Relaxed) + self.unseen(published) - self.backlog(published)
    }
}

/// What the bus and its publishers share.
#[derive(Debug)]
struct Shared {
    seq: AtomicU64,
    /// Events published, per class (`Class::index`).
    classes: [AtomicU64; Class::ALL.len()],
    host: Host,
    /// Events each sink's ring holds.
    per_sink: usize,
    /// One entry per subscribed sink; bounded by the number of sinks in the config.
    sinks: Mutex<Vec<Arc<SinkCounters>>>,
    last_report: Mutex<Option<Instant>>,
}

/// The sending side, owned by the pipeline. Dropping it closes the bus: sinks drain
/// what is left in their rings and then see the end.
pub struct Bus {
    tx: broadcast::Sender<Event>,
    shared: Arc<Shared>,
}

/// A handle for parts that publish now and then (sinks reporting trouble, the watchdog)
/// without keeping the bus open: once the `Bus` is dropped, their events go nowhere.
#[derive(Clone)]
pub struct Publisher {
    tx: broadcast::WeakSender<Event>,
    shared: Arc<Shared>,
}

impl Publisher {
    /// Publishes a body stamped now. Never waits.
    pub fn publish_body(&self, body: Body) {
        if let Some(tx) = self.tx.upgrade() {
            send(
                &tx,
                &self.shared,
                Event::new(event::now_micros(), &self.shared.host, body),
            );
        }
    }

    pub fn host(&self) -> &Host {
        &self.shared.host
    }
}

fn send(tx: &broadcast::Sender<Event>, shared: &Shared, mut ev: Event) {
    ev.seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    shared.classes[ev.body.class().index()].fetch_add(1, Ordering::Relaxed);
    // Err means no sink is subscribed: nothing to deliver to.
    let _ = tx.send(ev);
}

impl Bus {
    /// A bus whose rings hold `per_sink` events each (at least 1).
    pub fn new(per_sink: usize, host: Host) -> Self {
        let per_sink = per_sink.max(1);
        let (tx, _) = broadcast::channel(per_sink);
        Bus {
            tx,
            shared: Arc::new(Shared {
                seq: AtomicU64::new(0),
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
        send(&self.tx, &self.shared, ev);
    }

    /// Publishes a body stamped now with this bus's host.
    pub fn publish_body(&self, body: Body) {
        self.publish(Event::new(event::now_micros(), &self.shared.host, body));
    }

    pub fn publisher(&self) -> Publisher {
        Publisher {
            tx: self.tx.downgrade(),
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
        let counters = Arc::new(SinkCounters {
            name: event::text(name),
            subscribed_at: self.published(),
            capacity: self.shared.per_sink as u64,
            ..Default::default()
        });
        let mut sinks = self.shared.sinks.lock().expect("bus sink list poisoned");
        sinks.retain(|c| Arc::strong_count(c) > 1);
        sinks.push(counters.clone());
        drop(sinks);
        SinkRx {
            rx: self.tx.subscribe(),
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

/// A sink's receiving end of the bus.
pub struct SinkRx {
    rx: broadcast::Receiver<Event>,
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
    /// The next event, waiting for one; `None` once the bus is gone and the ring drained.
    /// Overwritten events are counted as dropped on the way.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(ev) => {
                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                    return Some(ev);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting. Never waits.
    pub fn try_recv(&mut self) -> TryRecv {
        loop {
            match self.rx.try_recv() {
                Ok(ev) => {
                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                    return TryRecv::Event(ev);
                }
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::TryRecvError::Empty) => return TryRecv::Empty,
                Err(broadcast::error::TryRecvError::Closed) => return TryRecv::Closed,
            }
        }
    }

    /// Events waiting in this sink's ring (at most its capacity).
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Records that the sink delivered `n` events.
    pub fn delivered(&self, n: u64) {
        self.counters.delivered.fetch_add(n, Ordering::Relaxed);
    }

    pub fn counters(&self) -> &Arc<SinkCounters> {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{text, AmiLink};

    fn body(i: u64) -> Body {
        Body::AmiConnected(AmiLink {
            address: text(&i.to_string()),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_stalled_sink_keeps_capacity_and_counts_the_rest() {
        let bus = Bus::new(8, text("h"));
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
        let bus = Bus::new(2, text("h"));
        let mut slow = bus.subscribe("nats");
        let mut watcher = bus.subscribe("watcher");
        for i in 0..5 {
            bus.publish(Event::new(i, bus.host(), body(i)));
        }
        while let TryRecv::Event(_) = slow.try_recv() {}
        let t0 = Instant::now();
        // The watcher itself lagged too (ring of 2, 5 published): both are reported.
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
        let bus = Bus::new(4, text("h"));
        bus.publish_body(body(0)); // before anyone subscribed
        let mut rx = bus.subscribe("a");
        for i in 1..=6 {
            bus.publish_body(body(i));
        }
        let a = rx.counters().clone();
        // The ring holds 4; the other 2 are lost, though the sink has not noticed yet.
        assert_eq!(a.backlog(bus.published()), 4);
        assert_eq!(a.lost(bus.published()), 2);
        rx.recv().await.unwrap(); // 2 overwritten, 1 taken
        assert_eq!(a.backlog(bus.published()), 3);
        // Overrun while the sink is stuck: the ring holds 4, the rest are lost, though
        // the sink has not noticed yet.
        for i in 7..=16 {
            bus.publish_body(body(i));
        }
        assert_eq!(a.backlog(bus.published()), 4);
        assert_eq!(a.lost(bus.published()), 2 + 9);
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
