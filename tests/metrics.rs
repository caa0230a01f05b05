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

/// The metric names an expression or a template query reads.
fn metric_names(expr: &str) -> Vec<&str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("pbxtap_") || w.starts_with("process_"))
        .collect()
}

/// The labels an expression groups by (`by (a, b)`) or matches (`{a=~"..."}`), and those
/// its legend shows (`{{a}}`).
fn labels_used(expr: &str, legend: &str) -> Vec<String> {
    let mut out = Vec::new();
    for group in expr.split("by (").skip(1) {
        let inside = group.split(')').next().unwrap_or("");
        out.extend(inside.split(',').map(|l| l.trim().to_string()));
    }
    for matcher in expr.split('{').skip(1) {
        let inside = matcher.split('}').next().unwrap_or("");
        for m in inside.split(',').filter(|m| !m.trim().is_empty()) {
            out.push(m.split(['=', '!']).next().unwrap().trim().to_string());
        }
    }
    for shown in legend.split("{{").skip(1) {
        out.push(shown.split("}}").next().unwrap_or("").trim().to_string());
    }
    out
}

/// Every metric and label the Grafana dashboard (`docs/grafana/pbxtap.json`) queries is
/// on a live page. `instance` and `job` are Prometheus' own, added at the scrape.
fn assert_dashboard_queries(page: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/pbxtap.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .expect("the dashboard is JSON");
    let samples = page["samples"].as_object().unwrap();
    let of = |metric: &str| -> Vec<&String> {
        samples
            .keys()
            .filter(|k| k.starts_with(&format!("{metric}{{")))
            .collect()
    };
    let mut queries: Vec<(String, String)> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| (v["query"].as_str().unwrap().to_string(), String::new()))
        .collect();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                target["expr"].as_str().unwrap().to_string(),
                target["legendFormat"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    assert!(queries.len() > 15, "{queries:?}");
    let mut metrics_read = std::collections::BTreeSet::new();
    for (expr, legend) in &queries {
        let metrics = metric_names(expr);
        assert!(!metrics.is_empty(), "a query of no pbxtap metric: {expr}");
        for metric in &metrics {
            assert!(!of(metric).is_empty(), "{expr}: no {metric} on the page");
            metrics_read.insert(metric.to_string());
        }
        for label in labels_used(expr, legend) {
            if label == "instance" || label == "job" {
                continue;
            }
            for metric in &metrics {
                assert!(
                    of(metric)
                        .iter()
                        .any(|k| k.contains(&format!("{{{label}="))
                            || k.contains(&format!(",{label}="))),
                    "{expr}: {metric} has no label {label} on the page"
                );
            }
        }
    }
    // And the dashboard shows every family the page has.
    for family in page["types"].as_object().unwrap().keys() {
        assert!(
            metrics_read.iter().any(|m| m.starts_with(family.as_str())),
            "the dashboard shows no {family}"
        );
    }
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
    // The recordings carry no Timestamp: nothing is late.
    assert_eq!(value(&page, "pbxtap_ami_lag_ms{}"), 0);
    assert_dashboard_queries(&page);

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

/// A daemon serving metrics (AMI unreachable: the page is served regardless), with
/// `extra` TOML appended, started through `wrapper` (none: directly). Returns it and the
/// page's address.
fn metrics_daemon(extra: &str, wrapper: &[&std::ffi::OsStr]) -> (Daemon, String) {
    let address = format!("127.0.0.1:{}", common::free_port());
    let config = format!(
        "host = \"m1\"\n[ami]\naddress = \"127.0.0.1:{}\"\nusername = \"tap\"\nsecret = \"s\"\n\
         [watchdog]\nenabled = false\n[metrics]\nenabled = true\nlisten = \"{address}\"\n{extra}",
        common::free_port()
    );
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_wrapped(dir, &config, &[], true, wrapper);
    daemon.wait_stderr(WAIT, "metrics served at");
    (daemon, address)
}

/// Sockets on the metrics port that hold on without finishing a request, from the
/// loopback addresses `from` in turn: `idle` send nothing, the others one byte of a request
/// every 300 ms; each is reopened as soon as it is closed. They run until `stop`; `opened`
/// counts connections made.
fn hold_sockets(
    address: &str,
    from: &[[u8; 4]],
    idle: usize,
    dribbling: usize,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    opened: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<std::thread::JoinHandle<()>> {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    (0..idle + dribbling)
        .map(|n| {
            let (stop, opened) = (stop.clone(), opened.clone());
            let to: std::net::SocketAddr = address.parse().unwrap();
            let from = std::net::SocketAddr::from((from[n % from.len()], 0));
            std::thread::spawn(move || {
                let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
                while !stop.load(Ordering::Relaxed) {
                    let socket =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .unwrap();
                    socket.bind(&from.into()).unwrap();
                    if socket.connect(&to.into()).is_err() {
                        continue;
                    }
                    let mut conn = std::net::TcpStream::from(socket);
                    opened.fetch_add(1, Ordering::Relaxed);
                    conn.set_read_timeout(Some(Duration::from_millis(300)))
                        .unwrap();
                    let mut sent = 0;
                    let mut byte = [0u8; 1];
                    while !stop.load(Ordering::Relaxed) {
                        // Closed by the server: reopen. A read timing out is the pacing.
                        match conn.read(&mut byte) {
                            Ok(_) => break,
                            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                            Err(_) => {}
                        }
                        if n >= idle && sent + 1 < request.len() {
                            if conn.write_all(&request[sent..=sent]).is_err() {
                                break;
                            }
                            sent += 1;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Sockets that idle or dribble from other addresses cannot silence the page, however fast
/// they reconnect: a scraper and `pbxtap status` always get through. A request ending in
/// bare LFs is answered at once.
#[test]
fn idle_and_dribbling_sockets_do_not_keep_scrapes_out() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let (daemon, address) = metrics_daemon("", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    // As many idle as the old server's slots, as many again dribbling, from two addresses:
    // together they hold every slot.
    let holders = hold_sockets(
        &address,
        &[[127, 0, 0, 2], [127, 0, 0, 3]],
        4,
        4,
        &stop,
        &opened,
    );
    common::wait_until("the holding sockets to connect", WAIT, || {
        opened.load(Ordering::Relaxed) >= 8
    });
    let mut failed = Vec::new();
    for _ in 0..40 {
        if let Err(e) = pbxtap::metrics::fetch(&address, Duration::from_secs(3)) {
            failed.push(e);
        }
        // Scrapes spread over 4 s, so the holders reopen in between.
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new(common::pbxtap_bin())
        .args(["status", "--address", &address])
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for h in holders {
        h.join().unwrap();
    }
    assert!(
        failed.is_empty(),
        "{} of 40 scrapes failed: {failed:?}",
        failed.len()
    );
    assert!(
        status.status.success(),
        "pbxtap status: {}",
        common::output_text(&status)
    );
    // Bare LF line ends: answered, not left waiting for a CRLF that never comes.
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(&address).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\nHost: x\n\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .expect("a request with bare LF line ends answered within 2 s");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    drop(daemon);
}

/// CPU time pbxtap has used, in clock ticks (`utime + stime`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Out of file descriptors, an `accept` fails at once for as long as the connection
/// waits: each listener then waits between tries instead of spinning, says so, and
/// answers once descriptors are free again.
#[test]
fn out_of_descriptors_the_accept_loops_wait_instead_of_spinning() {
    use tokio_tungstenite::tungstenite;
    let feed = common::free_port();
    let extra = format!(
        "[[sinks]]\ntype = \"websocket\"\nlisten = \"127.0.0.1:{feed}\"\n\
         authkey = \"abcdefghijklmnopqrstuvwxyz123456\"\nmax_clients = 1024\n"
    );
    let prlimit = common::require("prlimit", "util-linux");
    let wrapper = [prlimit.as_os_str(), "--nofile=64:64".as_ref()];
    let (daemon, address) = metrics_daemon(&extra, &wrapper);
    let pid = daemon.child.id();
    // Feed clients until pbxtap has no descriptor left to accept another.
    let url =
        format!("ws://127.0.0.1:{feed}/events/websocket/?authkey=abcdefghijklmnopqrstuvwxyz123456");
    let mut clients = Vec::new();
    loop {
        let stream = std::net::TcpStream::connect(("127.0.0.1", feed)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        match tungstenite::client(url.as_str(), stream) {
            Ok((ws, _)) => clients.push(ws),
            Err(_) => break,
        }
        assert!(
            clients.len() < 64,
            "64 clients accepted under a limit of 64 descriptors"
        );
    }
    // A scrape now waits in the listen queue, and pbxtap cannot accept it.
    let (connected, is_connected) = std::sync::mpsc::channel();
    let waiting = std::thread::spawn({
        let address = address.clone();
        move || {
            use std::io::{Read, Write};
            let mut conn = std::net::TcpStream::connect(&address).unwrap();
            connected.send(()).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).map(|_| answer)
        }
    });
    is_connected.recv_timeout(WAIT).unwrap();
    let before = cpu_ticks(pid);
    // A measuring window: how much CPU two seconds of failing accepts cost.
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(pid) - before;
    assert!(
        spent < 40,
        "{spent} ticks of CPU in 2 s while accept kept failing: spinning"
    );
    daemon.wait_stderr(WAIT, "cannot accept a connection");
    drop(clients);
    let page = waiting.join().unwrap();
    assert!(
        page.is_ok(),
        "the waiting scrape, once descriptors are free: {page:?}"
    );
}

/// A stdout that cannot be written (a full device, a reader that closed the pipe) is a
/// sink down: told once, the events of each failed write counted as dropped, none as
/// delivered, the rest waiting in its ring: every published event is one or the other.
#[test]
fn a_stdout_that_cannot_be_written_is_a_sink_down_with_its_events_dropped() {
    let peer = Peer::start(&RECORDINGS, 1, None);
    let config = |address: &str| {
        format!(
            "host = \"m1\"\n{}[watchdog]\nenabled = false\n[metrics]\nenabled = true\n\
             listen = \"{address}\"\n[[sinks]]\ntype = \"stdout\"\n",
            peer.ami_toml()
        )
    };
    let full: [&std::ffi::OsStr; 4] = [
        "sh".as_ref(),
        "-c".as_ref(),
        "exec \"$@\" > /dev/full".as_ref(),
        "sh".as_ref(),
    ];
    // A socket whose reader is gone (journald's stream, stopped).
    let socket: [&std::ffi::OsStr; 3] = [
        "python3".as_ref(),
        "-c".as_ref(),
        "import os, socket, sys\na, b = socket.socketpair()\nb.close()\nos.dup2(a.fileno(), 1)\n\
         os.execv(sys.argv[1], sys.argv[1:])"
            .as_ref(),
    ];
    for case in ["/dev/full", "a closed socket", "a closed pipe"] {
        let address = format!("127.0.0.1:{}", common::free_port());
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = if case == "/dev/full" {
            Daemon::start_wrapped(dir, &config(&address), &[], false, &full)
        } else if case == "a closed socket" {
            Daemon::start_wrapped(dir, &config(&address), &[], false, &socket)
        } else {
            let mut d = Daemon::start_in(dir, &config(&address), &[], false);
            drop(d.take_stdout());
            d
        };
        daemon.wait_stderr(WAIT, "metrics served at");
        let mut page = None;
        common::wait_until(
            &format!("{case}: events dropped, and the rest waiting"),
            WAIT,
            || {
                page = pbxtap::metrics::fetch(&address, Duration::from_secs(2)).ok();
                page.as_ref().is_some_and(|p| {
                    let n = |key: &str| p.get(key).unwrap_or(0.0);
                    let dropped = n("pbxtap_sink_dropped_total{sink=\"stdout#0\"}");
                    let backlog = n("pbxtap_sink_backlog{sink=\"stdout#0\"}");
                    dropped > 0.0 && dropped + backlog == n("pbxtap_events_published_total")
                })
            },
        );
        let page = page.unwrap();
        assert_eq!(
            page.get("pbxtap_sink_delivered_total{sink=\"stdout#0\"}"),
            Some(0.0),
            "{case}"
        );
        assert_eq!(
            page.get("pbxtap_sink_up{sink=\"stdout#0\"}"),
            Some(0.0),
            "{case}"
        );
        let stderr = daemon.stderr();
        assert_eq!(
            stderr.matches("cannot write to stdout").count(),
            1,
            "{case}: told once\n{stderr}"
        );
        assert!(daemon.is_running(), "{case}");
    }
}
