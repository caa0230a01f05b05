//! Priority shedding through the real daemon: a storm of device-state changes with three
//! recorded calls in it, replayed by a fake Asterisk as fast as the socket takes it, while
//! the stdout sink is stalled (nobody reads its pipe). Once the whole storm is read, the
//! pipe is read to its end: every call's events and every health event are there, in
//! publishing order; what was shed is presence and ringing only, and the metrics count it
//! as `low`, with nothing lost uncounted.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::daemon::{name, Daemon, Peer};
use pbxtap::ami::replay::{self, ReplayConfig};
use pbxtap::metrics::{fetch, Scrape};

const WAIT: Duration = Duration::from_secs(30);
/// Device-state changes after each message of the calls.
const STORM: usize = 40;
const CALLS: [&str; 3] = [
    "02-call-answered.ami",
    "03-call-hold-unhold.ami",
    "04-call-busy-dialplan.ami",
];

/// The calls' messages with `STORM` device-state changes after each: a recording.
fn storm() -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut changes = 0;
    for call in CALLS {
        let recording = common::ami::fixture(call);
        for (i, msg) in replay::messages_of(&recording).into_iter().enumerate() {
            out.extend_from_slice(msg);
            for j in 0..STORM {
                let state = if (i + j) % 2 == 0 {
                    "INUSE"
                } else {
                    "NOT_INUSE"
                };
                let device = 100 + j % 50;
                out.extend_from_slice(
                    format!("Event: DeviceStateChange\r\nPrivilege: call,all\r\nDevice: PJSIP/{device}\r\nState: {state}\r\n\r\n")
                        .as_bytes(),
                );
                changes += 1;
            }
        }
    }
    (out, changes)
}

fn sample(page: &Scrape, key: &str) -> u64 {
    page.get(key)
        .unwrap_or_else(|| panic!("no {key} on the metrics page")) as u64
}

#[test]
fn a_storm_sheds_presence_and_ringing_first_and_counts_them_as_low() {
    let (recording, changes) = storm();
    let peer = Peer::start_with(ReplayConfig::new(vec![recording]));
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let config = format!(
        "host = \"storm\"\n{}[watchdog]\nenabled = false\n[buffers]\nper_sink = 64\n\
         [metrics]\nenabled = true\nlisten = \"{metrics}\"\n[[sinks]]\ntype = \"stdout\"\n",
        peer.ami_toml()
    );
    let mut daemon = Daemon::start(&config, &[], false);
    // The whole storm read off the AMI socket, while nobody reads stdout.
    let total = peer.peer.total as u64;
    common::wait_until("pbxtap to read the whole storm", WAIT, || {
        fetch(&metrics, WAIT)
            .is_ok_and(|p| p.get("pbxtap_ami_messages_total").unwrap_or(0.0) as u64 >= total)
    });
    // Now the consumer reads, to the end of what pbxtap delivers.
    let out = BufReader::new(daemon.take_stdout());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut page = Scrape::default();
    let sink = "sink=\"stdout#0\"";
    common::wait_until("every event delivered or counted as shed", WAIT, || {
        lines.extend(rx.try_iter());
        let cdrs = lines.iter().filter(|l| name(l) == "call.cdr").count();
        page = fetch(&metrics, WAIT).unwrap();
        let published = sample(&page, "pbxtap_events_published_total");
        let delivered = sample(&page, &format!("pbxtap_sink_delivered_total{{{sink}}}"));
        let dropped = sample(&page, &format!("pbxtap_sink_dropped_total{{{sink}}}"));
        cdrs == CALLS.len() && delivered + dropped == published && lines.len() as u64 == delivered
    });
    let shed = |p: &str| {
        sample(
            &page,
            &format!("pbxtap_sink_shed_total{{{sink},priority=\"{p}\"}}"),
        )
    };
    assert_eq!((shed("normal"), shed("high")), (0, 0), "only low is shed");
    let low = shed("low");
    assert!(
        low as usize > changes / 2,
        "the storm was shed: {low} of {changes}"
    );
    assert_eq!(
        sample(&page, &format!("pbxtap_sink_dropped_total{{{sink}}}")),
        low
    );

    // In publishing order, nothing but presence and ringing missing.
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| common::json_u64(l.as_bytes(), "seq").unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order");
    let names: Vec<String> = lines.iter().map(|l| name(l)).collect();
    let count = |n: &str| names.iter().filter(|m| *m == n).count();
    assert_eq!(
        (
            count("call.started"),
            count("call.ended"),
            count("call.cdr")
        ),
        (3, 3, 3)
    );
    assert_eq!(count("system.ami_connected"), 1);
    // The shed low events left gaps in seq; every gap is one of them.
    let published = sample(&page, "pbxtap_events_published_total");
    assert_eq!(published - lines.len() as u64, low);
    assert!(count("endpoint.presence") < changes, "presence was shed");
}
