//! The fleet, short: a handful of real pbxtap processes publish into a replicated
//! JetStream stream on a three-node nats-server cluster while the stream's leader is killed
//! and restarted and one appliance's link is cut; every event of every appliance must be
//! in the stream exactly once, by id (tests/common/fleet.rs). `cargo bench --bench fleet`
//! runs the same with fifty and more appliances and prints the figures. And a restarted
//! appliance's events are new ids, not taken by JetStream for copies of the last boot's.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::bench::recording_files;
use common::fleet::{create_stream, run, stored, Appliance, Feed, Plan, STREAM};
use common::nats::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_every_appliance_is_stored_once_through_a_node_failure_and_a_link_cut() {
    let plan = Plan {
        appliances: 5,
        feed: Feed {
            passes: 2,
            time: Duration::from_secs(14),
            per_sink: 1024,
        },
        node_down: (Duration::from_secs(3), Duration::from_secs(5)),
        cut: (Duration::from_secs(4), Duration::from_secs(6)),
    };
    let r = run(&plan).await;
    eprintln!("{r:#?}");
    assert!(r.published > 0);
    assert_eq!(r.missing, 0, "events lost");
    assert_eq!(r.duplicates, 0, "events stored twice");
    assert_eq!(r.dropped, 0, "events dropped from a ring");
    assert_eq!(r.stored, r.published);
    assert!(
        r.cut_sink_downs >= 1,
        "the cut appliance never saw its link go down: the cut did not happen"
    );
    assert!(!r.killed.is_empty() && !r.leader_after.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_appliances_events_are_not_taken_for_copies_of_the_last_boots() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::with_jetstream(common::free_port(), dir.path());
    let client = common::nats::connect(&server.url()).await;
    // Within the stream's 2-minute duplicate window, both boots' seqs start at 1.
    create_stream(&client, 1).await;
    let feed = Feed {
        passes: 1,
        time: Duration::from_secs(2),
        per_sink: 1024,
    };
    let recordings = recording_files();
    let mut published = Vec::new();
    for _boot in 0..2 {
        let box0 = Appliance::start(0, &feed, &server.url(), &recordings).await;
        let mut settled = None;
        common::until(
            "the appliance to settle",
            Duration::from_secs(60),
            async || {
                settled = tokio::task::block_in_place(|| box0.settled());
                settled.is_some()
            },
        )
        .await;
        let settled = settled.unwrap().0;
        published.push(settled + box0.stop().await);
    }
    // boot → seq → copies
    let mut boots: BTreeMap<String, BTreeMap<u64, u32>> = BTreeMap::new();
    for m in stored(&client, STREAM).await {
        assert_eq!(m.host, "pbx-000");
        *boots.entry(m.boot).or_default().entry(m.seq).or_default() += 1;
    }
    assert_eq!(
        boots.len(),
        2,
        "two boots, two boot ids: {:?}",
        boots.keys()
    );
    for (seqs, published) in boots.values().zip(&published) {
        let expected: BTreeMap<u64, u32> = (1..=*published).map(|s| (s, 1)).collect();
        assert_eq!(seqs, &expected, "each boot's events, each once");
    }
}
