//! `pbxtap demo` as a new user runs it: in one terminal `pbxtap demo --portsip`, in
//! another the `wscat` command lines it prints on stderr, run as printed (wscat from npm,
//! `scripts/install-test-deps.sh`). The recorded calls play at their recorded pace until
//! Ctrl-C (SIGINT here), which ends the demo cleanly.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn next(rx: &Receiver<String>, until: Instant, what: &str) -> String {
    rx.recv_timeout(until.saturating_duration_since(Instant::now()))
        .unwrap_or_else(|_| panic!("no {what} in time"))
}

/// The words of a command line as a shell splits it (spaces, and '...' quoting, which is
/// all the demo prints).
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.trim().chars() {
        match c {
            '\'' => (quoted, any) = (!quoted, true),
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => (word.push(c), any = true).0,
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// Runs a printed `wscat ...` command line, as printed.
fn wscat(wscat: &std::path::Path, line: &str) -> Child {
    let args = words(line);
    assert_eq!(args[0], "wscat", "{line}");
    Command::new(wscat)
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run wscat")
}

/// A frame printed by wscat (off a terminal: one frame a line).
fn frame(line: &str) -> Value {
    let text = line.trim().trim_start_matches("< ");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn the_live_demo_serves_feeds_wscat_watches_until_ctrl_c() {
    let wscat_bin = common::require("wscat", "wscat (npm install -g wscat)");
    let started = Instant::now();
    let mut demo = Command::new(common::pbxtap_bin())
        .args(["demo", "--portsip"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let printed = common::lines_of(demo.stdout.take().unwrap());
    let told = common::lines_of(demo.stderr.take().unwrap());
    let until = started + WAIT;
    // The first event comes at once (the recorded pace starts with no wait).
    let first: Value = serde_json::from_str(&next(&printed, until, "first event")).unwrap();
    assert_eq!(first["v"], 1);
    let first_after = started.elapsed();

    // What stderr says to run: the Enswitch command line, then PortSIP's URL and lines.
    let mut said = Vec::new();
    while !said.iter().any(|l: &String| l.contains("Ctrl-C stops")) {
        said.push(next(&told, until, "the demo's instructions"));
    }
    let commands: Vec<&String> = said
        .iter()
        .filter(|l| l.trim().starts_with("wscat "))
        .collect();
    assert_eq!(commands.len(), 2, "{said:?}");
    let (enswitch, portsip) = (commands[0], commands[1]);
    assert!(
        enswitch.contains("/events/websocket/?authkey=demo"),
        "{enswitch}"
    );
    assert!(
        portsip.contains("/wsi") && portsip.contains("\"command\":\"auth\""),
        "{portsip}"
    );

    let mut ens = wscat(&wscat_bin, enswitch);
    let ens_lines = common::lines_of(ens.stdout.take().unwrap());
    loop {
        let v = frame(&next(&ens_lines, until, "an Enswitch call event"));
        if v["class"] == "call" {
            assert!(v["event_id"].as_str().unwrap().starts_with("demo."), "{v}");
            break;
        }
    }

    let mut ps = wscat(&wscat_bin, portsip);
    let ps_lines = common::lines_of(ps.stdout.take().unwrap());
    let auth = frame(&next(&ps_lines, until, "the auth reply"));
    assert_eq!(
        auth,
        serde_json::json!({"command":"auth","id":"1","status":0})
    );
    let sub = frame(&next(&ps_lines, until, "the subscribe reply"));
    assert_eq!(
        sub,
        serde_json::json!({"command":"subscribe","id":"2","status":0})
    );
    loop {
        let v = frame(&next(&ps_lines, until, "a PortSIP call message"));
        if v["event_type"] == "call_start" || v["event_type"] == "call_cdr" {
            break;
        }
    }
    for c in [&mut ens, &mut ps] {
        let _ = c.kill();
        let _ = c.wait();
    }

    // Still playing (a loop, not one pass), until Ctrl-C.
    assert!(
        demo.try_wait().unwrap().is_none(),
        "the demo ended by itself"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(demo.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut status = None;
    common::wait_until(
        "the demo to stop on Ctrl-C",
        Duration::from_secs(10),
        || {
            status = demo.try_wait().unwrap();
            status.is_some()
        },
    );
    let status = status.unwrap();
    assert!(status.success(), "{status}");
    eprintln!("first event {first_after:?} after start");
}
