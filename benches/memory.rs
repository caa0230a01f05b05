//! Memory under load: the recordings replayed through parser, normalizer and bus again and
//! again, with one sink that never reads (a dead broker) and one that keeps up. Prints the
//! process's resident memory as events go by: it must stay flat once the stalled sink's
//! ring is full, whatever the number of events. Run: `cargo bench --bench memory`.

#[path = "../tests/common/mod.rs"]
mod common;

use pbxtap::ami::frame::{Frame, Limits, Parser};
use std::sync::atomic::Ordering;

use pbxtap::bus::{Bus, TryRecv};
use pbxtap::event::{text, Event};
use pbxtap::normalize::{NormalizeConfig, Normalizer};

fn main() {
    // `cargo test --benches` runs this too: keep that run short.
    let rounds: u64 = if std::env::args().any(|a| a == "--bench") {
        2000
    } else {
        5
    };
    let stream = common::bench::recordings();

    let (before, _) = common::bench::rss_kib();
    let per_sink = pbxtap::bus::DEFAULT_PER_SINK;
    let bus = Bus::new(per_sink, text("pbx1"));
    let mut stalled = bus.subscribe("stalled");
    let mut live = bus.subscribe("live");
    let mut parser = Parser::new(Limits::default());
    // As the daemon does: events the normalizer does not read are passed over.
    parser.set_filter(pbxtap::normalize::reads);
    let mut normalizer = Normalizer::new(NormalizeConfig::default());
    let (start, _) = common::bench::rss_kib();
    println!(
        "buffers.per_sink = {per_sink}, {} bytes per event: RSS {before} KiB before the bus, {start} KiB with its rings",
        std::mem::size_of::<Event>()
    );
    println!(
        "{:>8} {:>12} {:>12} {:>10} {:>10}",
        "round", "AMI msgs", "events", "RSS KiB", "peak KiB"
    );
    let began = std::time::Instant::now();
    for round in 1..=rounds {
        for chunk in stream.chunks(4096) {
            parser.push(chunk, &mut |f| {
                if let Ok(Frame::Message(m)) = f {
                    normalizer.handle(&m, round, &mut |b| {
                        bus.publish(Event::new(round, bus.host(), b))
                    });
                }
            });
        }
        while let TryRecv::Event(_) = live.try_recv() {}
        if round.is_power_of_two() || round == rounds {
            let (rss, peak) = common::bench::rss_kib();
            println!(
                "{round:>8} {:>12} {:>12} {rss:>10} {peak:>10}",
                parser.stats().messages + parser.stats().passed_over,
                bus.published()
            );
        }
    }
    let secs = began.elapsed().as_secs_f64();
    // The stalled sink wakes up: it finds its ring's worth and counts what was overwritten.
    let mut kept = 0u64;
    while let TryRecv::Event(_) = stalled.try_recv() {
        kept += 1;
    }
    let dropped = stalled.counters().dropped.load(Ordering::Relaxed);
    assert_eq!(
        kept + dropped,
        bus.published(),
        "every event is either kept or counted"
    );
    println!(
        "stalled sink: kept {kept} events, {dropped} overwritten and counted as dropped; \
         {:.0} AMI messages/s end to end",
        (parser.stats().messages + parser.stats().passed_over) as f64 / secs
    );
}
