//! The fleet bench: N real pbxtap processes (default 50), each fed by its own fake Asterisk
//! replaying the recordings, publish with JetStream into one replicated stream on a
//! three-node nats-server cluster on loopback. During the run the stream's leader node is
//! killed and restarted, and one appliance's link is cut for 30 s. Then the stream is read
//! back (tests/common/fleet.rs): every event of every appliance must be in it exactly once,
//! by id; the bench fails otherwise. It prints the fleet's events/s, the latency from an
//! event's time to its store time, each pbxtap's resident memory, and the loss.
//!
//! Run: `cargo bench --bench fleet` (needs `nats-server`). Sizes from the environment:
//! `FLEET_APPLIANCES` (50), `FLEET_FEED_SECS` (90: how long each Asterisk's feed lasts),
//! `FLEET_PASSES` (8: times each replays every recording), `FLEET_CUT_SECS` (30).
//! `cargo bench --bench fleet -- site` runs only the second part: one appliance behind a
//! site link cut for longer than its ring holds, publishing direct to the central server
//! and through a leaf node on the appliance (tests/common/site_link.rs).
//! `cargo test --all-targets` runs both small, for a few seconds each; tests/fleet.rs is the
//! short fleet with its own asserts.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::bench::Args;
use common::fleet::{run, Feed, Plan};
use common::site_link::{self, Layout};

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a whole number")),
        Err(_) => default,
    }
}

fn main() {
    let args = Args::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if args.run("fleet") {
        rt.block_on(fleet(args.bench));
    }
    if args.run("site") {
        rt.block_on(site(args.bench));
    }
}

async fn fleet(bench: bool) {
    let secs = Duration::from_secs;
    let plan = if bench {
        Plan {
            appliances: env_or("FLEET_APPLIANCES", 50) as usize,
            feed: Feed {
                passes: env_or("FLEET_PASSES", 8) as usize,
                time: secs(env_or("FLEET_FEED_SECS", 90)),
                per_sink: 1024,
            },
            node_down: (secs(15), secs(15)),
            cut: (secs(20), secs(env_or("FLEET_CUT_SECS", 30))),
        }
    } else {
        Plan {
            appliances: 2,
            feed: Feed {
                passes: 1,
                time: secs(6),
                per_sink: 1024,
            },
            node_down: (secs(1), secs(2)),
            cut: (secs(2), secs(2)),
        }
    };
    let r = run(&plan).await;
    let secs = r.span.as_secs_f64();
    println!(
        "fleet: {} appliances, {} events in {secs:.1} s = {:.0} events/s into a 3-replica stream; \
         lost {} (dropped {}), duplicates {}",
        plan.appliances,
        r.stored,
        r.stored as f64 / secs,
        r.missing,
        r.dropped,
        r.duplicates
    );
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "fleet: event to stream: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         appliances whose link stayed up: p50 {:.1} ms, p99 {:.1} ms \
         (node {} killed for {:?}, appliance 0 cut for {:?})",
        ms(r.latency_us.0),
        ms(r.latency_us.1),
        ms(r.latency_us.2),
        ms(r.latency_uncut_us.0),
        ms(r.latency_uncut_us.1),
        r.killed,
        plan.node_down.1,
        plan.cut.1
    );
    println!(
        "fleet: pbxtap resident memory: median {} KiB, max {} KiB; peak median {} KiB, max {} KiB",
        r.rss_kib.0, r.rss_kib.1, r.peak_rss_kib.0, r.peak_rss_kib.1
    );
    assert_eq!((r.missing, r.duplicates, r.dropped), (0, 0, 0), "{r:#?}");
    assert_eq!(r.stored, r.published, "{r:#?}");
    assert!(r.cut_sink_downs >= 1, "the cut did not happen: {r:#?}");
}

/// One appliance behind a site link cut for longer than its ring holds (60 s at about 40
/// events/s against 1,024 events), published direct to the central server and through a
/// leaf node on the appliance: what each loses, how soon the centre has caught up after
/// the link is back, and what the leaf node costs in memory.
async fn site(bench: bool) {
    let secs = Duration::from_secs;
    let (feed, cut) = if bench {
        let feed = Feed {
            passes: 30,
            time: secs(100),
            per_sink: 1024,
        };
        (feed, (secs(20), secs(60)))
    } else {
        let feed = Feed {
            passes: 2,
            time: secs(8),
            per_sink: 16,
        };
        (feed, (secs(2), secs(3)))
    };
    for layout in [Layout::Direct, Layout::Leaf] {
        let r = site_link::run(layout, &feed, cut).await;
        let s = &r.stream;
        println!(
            "site link, {layout:?}: link cut {:?}, ring {}: {} events published, {} stored once, \
             {} lost ({} dropped from the ring), {} duplicates; caught up {:.1} s after the link \
             came back; event to central stream p50 {:.1} ms, p99 {:.1} ms; leaf node RSS {} KiB \
             (peak {}), pbxtap RSS {} KiB (peak {})",
            cut.1,
            feed.per_sink,
            s.published,
            s.stored,
            s.missing,
            s.dropped,
            s.duplicates,
            r.catch_up.as_secs_f64(),
            s.latency_us.0 as f64 / 1000.0,
            s.latency_us.1 as f64 / 1000.0,
            r.leaf_rss_kib.0,
            r.leaf_rss_kib.1,
            r.pbxtap_rss_kib.0,
            r.pbxtap_rss_kib.1,
        );
        assert_eq!(s.duplicates, 0, "{r:#?}");
        // Nothing is lost silently: what did not arrive is what the ring dropped, counted.
        assert_eq!(s.missing, s.dropped, "{r:#?}");
        match layout {
            Layout::Direct => assert!(s.dropped > 0, "the cut outlasted the ring: {r:#?}"),
            Layout::Leaf => assert_eq!(s.missing, 0, "{r:#?}"),
        }
    }
}
