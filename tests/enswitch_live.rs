//! The Enswitch WebSocket feed watched the way Enswitch's guide says to watch it:
//! `wscat --connect 'http://ADDRESS:4875/events/websocket/?authkey=KEY'`, run as that exact
//! command line (wscat from npm, `scripts/install-test-deps.sh`), against the real
//! `pbxtap run` fed by a real Asterisk (the live suite's test PBX) while SIPp places a call.
//!
//! Needs `PBXTAP_ASTERISK_PREFIX` (scripts/test.sh sets it) and wscat.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::pbx::Pbx;
use serde_json::Value;

const KEY: &str = "enswitch-live-key-0123456789";
const WAIT: Duration = Duration::from_secs(40);

#[test]
fn wscat_as_enswitchs_guide_runs_it_shows_a_real_calls_events() {
    let wscat = common::require("wscat", "wscat (npm install -g wscat)");
    let pbx = Pbx::start("enswitch_wscat");
    let port = common::free_port();
    let config = format!(
        "host = \"lab\"\n{}[watchdog]\nenabled = false\n[[sinks]]\ntype = \"websocket\"\n\
         protocol = \"enswitch\"\nlisten = \"127.0.0.1:{port}\"\nauthkey = \"{KEY}\"\nmachine = 2\n",
        pbx.ami_toml()
    );
    let daemon = Daemon::start(&config, &[], false);
    daemon.wait_stderr(WAIT, "AMI connected");
    // The guide's command line, word for word but the address and key. Its stdin stays
    // open, as a terminal's would.
    let mut child = Command::new(&wscat)
        .args([
            "--connect",
            &format!("http://127.0.0.1:{port}/events/websocket/?authkey={KEY}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wscat");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    let next = |what: &str| -> String {
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("wscat printed no {what} within {WAIT:?}"))
    };
    // Off a terminal wscat prints only the frames, one a line (in a terminal, `< ` first).
    daemon.wait_stderr(WAIT, "client connected");
    pbx.register(102, 120, "w102");
    let uas = pbx.callee(102, "uas_answer", &[("ring_ms", "300"), ("talk_ms", "0")]);
    let uac = pbx.caller(101, "102", "uac_call", &[("talk_ms", "1000")]);
    uac.passed();
    let _ = uas.wait();
    let mut calls = Vec::new();
    while !calls.iter().any(|e: &Value| e["event"] == "end") {
        let line = next("call end");
        let frame = line.trim().trim_start_matches("< ");
        let v: Value = serde_json::from_str(frame).unwrap_or_else(|e| panic!("{e}: {frame}"));
        if v["class"] == "call" {
            calls.push(v);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let events: Vec<&str> = calls.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events.first(), Some(&"start"), "{events:?}");
    assert!(events.contains(&"answer"), "{events:?}");
    let start = &calls[0];
    for key in ["timestamp", "event_id", "callid", "uniqueid", "asteriskid"] {
        assert!(
            start[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key}: {start}"
        );
    }
    assert_eq!(start["machine"], 2, "{start}");
    assert_eq!(start["from"], "101", "{start}");
    assert_eq!(start["to"], "102", "{start}");
    assert!(start["extra_headers"].is_object(), "{start}");
    assert!(
        calls.iter().all(|e| e["callid"] == start["callid"]),
        "{calls:?}"
    );
}
