//! The metrics endpoint of a real `pbxtap run`, scraped after a known run (recordings
//! replayed by a fake Asterisk, every event printed by the stdout sink) and parsed by
//! `prometheus_client`'s text parser (`tests/metrics/scrape.py`); and `pbxtap status`
//! reading the same page.
//!
//! Needs python3 with prometheus-client (`scripts/install-test-deps.sh`).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, Peer};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const RECORDINGS: [&str; 3] = [
    "02-call-answered.ami",
    "01-register-unregister.ami",
    "11-queue-answered.ami",
];

fn scrape(address: &str) -> Value {
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metrics/scrape.py"))
        .arg(address)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the page did not parse (python3 with prometheus-client? scripts/install-test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn value(page: &Value, key: &str) -> u64 {
    page["samples"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("no sample {key} in {}", page["samples"])) as u64
}

#[test]
fn a_known_run_reads_back_from_the_metrics_page_and_pbxtap_status() {
    let peer = Peer::start(&RECORDINGS, 1, None);
    let port = common::free_port();
    let address = format!("127.0.0.1:{port}");
    let config = format!(
        "host = \"m1\"\n{}[watchdog]\nenabled = false\n[metrics]\nenabled = true\nlisten = \"{address}\"\n\
         [[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n",
        peer.ami_toml(),
        common::free_port(),
    );
    let daemon = Daemon::start(&config, &[], true);
    daemon.wait_stderr(WAIT, "metrics served at");
    // The run is over once the last recording's CDR is printed and the webhook has given
    // up reaching its (closed) port; then the page must account for every printed line.
    daemon.wait_line(WAIT, |l| l.contains("\"event\":\"sink_down\""));
    let mut page = scrape(&address);
    common::wait_until(
        "the page to count every printed event, and no call left",
        WAIT,
        || {
            page = scrape(&address);
            let printed = daemon.stdout_lines().len() as u64;
            // The normalizer's tables are stored once a second: the last call's end is on the
            // page within one.
            printed > 0
                && value(&page, "pbxtap_events_published_total{}") == printed
                && value(&page, "pbxtap_sink_delivered_total{sink=stdout#0}") == printed
                && value(&page, "pbxtap_normalizer_table_entries{table=calls}") == 0
        },
    );
    let lines = daemon.stdout_lines();
    let mut by_class: HashMap<String, u64> = HashMap::new();
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        *by_class
            .entry(v["class"].as_str().unwrap().into())
            .or_default() += 1;
    }
    for class in ["call", "target", "endpoint", "queue", "trunk", "system"] {
        assert_eq!(
            value(&page, &format!("pbxtap_events_total{{class={class}}}")),
            by_class.get(class).copied().unwrap_or(0),
            "class {class}"
        );
    }
    assert_eq!(
        page["types"]["pbxtap_events"], "counter",
        "{}",
        page["types"]
    );
    assert_eq!(page["types"]["pbxtap_sink_backlog"], "gauge");
    assert_eq!(value(&page, "pbxtap_ami_connected{}"), 1);
    assert!(value(&page, "pbxtap_ami_messages_total{}") > 100);
    assert_eq!(value(&page, "pbxtap_sink_up{sink=stdout#0}"), 1);
    assert_eq!(
        value(&page, "pbxtap_sink_up{sink=webhook#1}"),
        0,
        "its port is closed"
    );
    assert_eq!(value(&page, "pbxtap_sink_backlog{sink=stdout#0}"), 0);
    // 256 low, 512 normal, 256 high.
    assert_eq!(value(&page, "pbxtap_sink_capacity{sink=stdout#0}"), 1024);
    for priority in ["low", "normal", "high"] {
        let key = format!("pbxtap_sink_shed_total{{priority={priority},sink=stdout#0}}");
        assert_eq!(value(&page, &key), 0);
    }
    assert_eq!(value(&page, "pbxtap_sink_dropped_total{sink=stdout#0}"), 0);
    for (table, capacity) in [
        ("calls", 256),
        ("channels", 512),
        ("contacts", 256),
        ("queue_callers", 128),
        ("queue_members", 256),
        ("trunks", 32),
    ] {
        let key = |m: &str| format!("{m}{{table={table}}}");
        assert_eq!(
            value(&page, &key("pbxtap_normalizer_table_capacity")),
            capacity
        );
        assert!(value(&page, &key("pbxtap_normalizer_table_entries")) <= capacity);
    }
    let rss = value(&page, "process_resident_memory_bytes{}");
    assert!((1 << 20..256 << 20).contains(&rss), "{rss}");

    let out = Command::new(common::pbxtap_bin())
        .args(["status", "--address", &address])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("AMI: connected"), "{said}");
    assert!(
        said.contains(&format!("events: {} published", lines.len())),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "sink stdout#0: up, {} delivered, backlog 0 of 1024, 0 dropped",
            lines.len()
        )),
        "{said}"
    );
    assert!(said.contains("sink webhook#1: DOWN"), "{said}");
    // And from the config file, as an admin would ask.
    let out = Command::new(common::pbxtap_bin())
        .arg("status")
        .arg(&daemon.config)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("AMI: connected")
    );
}

#[test]
fn status_says_why_it_cannot_tell() {
    let dir = tempfile::tempdir().unwrap();
    let off = dir.path().join("off.toml");
    std::fs::write(&off, "[ami]\nsecret_file = \"/root-only/secret\"\n").unwrap();
    let out = Command::new(common::pbxtap_bin())
        .arg("status")
        .arg(&off)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("metrics.enabled is false"), "{err}");
    let port = common::free_port();
    let out = Command::new(common::pbxtap_bin())
        .args(["status", "--address", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("cannot reach the metrics endpoint"), "{err}");
}
