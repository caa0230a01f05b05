//! The fleet, short: a handful of real pbxtap processes publish into a replicated
//! JetStream stream on a three-node nats-server cluster while the stream's leader is killed
//! and restarted and one appliance's link is cut; every event of every appliance must be
//! in the stream exactly once, by id (tests/common/fleet.rs). `cargo bench --bench fleet`
//! runs the same with fifty and more appliances and prints the figures.

mod common;

use std::time::Duration;

use common::fleet::{run, Feed, Plan};

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
