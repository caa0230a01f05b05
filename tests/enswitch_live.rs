//! The Enswitch WebSocket feed watched the way Enswitch's guide says to watch it:
//! `wscat --connect 'http://ADDRESS:4875/events/websocket/?authkey=KEY'`, run as that exact
//! command line (wscat from npm, `scripts/install-test-deps.sh`), against the real
//! `pbxtap run` fed by a real Asterisk (the live suite's test PBX) while SIPp places a call.
//!
//! Needs `PBXTAP_ASTERISK_PREFIX` (scripts/test.sh sets it) and wscat.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::pbx::Pbx;
use serde_json::Value;

const KEY: &str = "enswitch-live-key-0123456789";
const WAIT: Duration = Duration::from_secs(40);

/// The real pbxtap, logged in to `pbx`, serving the Enswitch feed on `port` with `KEY`
/// (and the websocket sink's `extra` keys).
fn enswitch_feed(pbx: &Pbx, port: u16, extra: &str) -> Daemon {
    let config = format!(
        "host = \"lab\"\n{}[watchdog]\nenabled = false\n[[sinks]]\ntype = \"websocket\"\n\
         listen = \"127.0.0.1:{port}\"\nauthkey = \"{KEY}\"\n{extra}",
        pbx.ami_toml()
    );
    let daemon = Daemon::start(&config, &[], false);
    daemon.wait_stderr(WAIT, "AMI connected");
    daemon
}

#[test]
fn wscat_as_enswitchs_guide_runs_it_shows_a_real_calls_events() {
    let wscat = common::require("wscat", "wscat (npm install -g wscat)");
    let pbx = Pbx::start("enswitch_wscat");
    let port = common::free_port();
    let daemon = enswitch_feed(&pbx, port, "protocol = \"enswitch\"\nmachine = 2\n");
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
    let rx = common::lines_of(child.stdout.take().unwrap());
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
    // Enswitch's verbs for the lifecycle (docs/webhook.md's table): routed to 102 when the
    // dialplan dials it; `ringing` is pbxtap's own, which an Enswitch consumer ignores.
    let events: Vec<&str> = calls.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["start", "route", "ringing", "answer", "end"],
        "{calls:#?}"
    );
    assert_eq!(calls[1]["target"], "102", "{calls:#?}");
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

/// Reads a feed's frames on its own thread until the fence phone's unregistration with
/// contact tag `fence` arrives; gives them back (the fence's frames left out).
fn collect_feed(url: String, fence: &'static str) -> std::thread::JoinHandle<Vec<Value>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            read_feed(&mut ws, fence, |v| fence_gone(v, fence)).await
        })
    })
}

/// The fence phone's unregistration with contact tag `fence`.
fn fence_gone(v: &Value, fence: &str) -> bool {
    v["event"] == "unregistered"
        && v["contact"]
            .as_str()
            .is_some_and(|c| c.ends_with(&format!("regid={fence}")))
}

#[test]
fn each_customers_feed_gets_its_own_calls_and_phones_and_nothing_else() {
    let pbx = Pbx::start("enswitch_per_customer_feeds");
    let (a, b) = (common::free_port(), common::free_port());
    let feed = |port: u16, exts: &str| {
        format!(
            "[[sinks]]\ntype = \"websocket\"\nlisten = \"127.0.0.1:{port}\"\nauthkey = \"{KEY}\"\n\
             [sinks.filter]\nextensions = [{exts}]\n"
        )
    };
    let config = format!(
        "host = \"lab\"\n{}[watchdog]\nenabled = false\n{}{}",
        pbx.ami_toml(),
        feed(a, "\"101\", \"102\""),
        feed(b, "\"103\", \"104\""),
    );
    let daemon = Daemon::start(&config, &[], false);
    daemon.wait_stderr(WAIT, "AMI connected");
    let url = |port| format!("ws://127.0.0.1:{port}/events/websocket/?authkey={KEY}");
    let feed_a = collect_feed(url(a), "fenceA");
    let feed_b = collect_feed(url(b), "fenceB");
    common::wait_until("both clients connected", WAIT, || {
        daemon.stderr().matches("client connected").count() == 2
    });
    // Customer A's call, then customer B's.
    for (caller, callee) in [(101, 102), (103, 104)] {
        let tag = format!("c{callee}");
        pbx.register(callee, 120, &tag);
        let uas = pbx.callee(
            callee,
            "uas_answer",
            &[("ring_ms", "200"), ("talk_ms", "0")],
        );
        let uac = pbx.caller(
            caller,
            &callee.to_string(),
            "uac_call",
            &[("talk_ms", "500")],
        );
        uac.passed();
        let _ = uas.wait();
        pbx.register(callee, 0, &tag);
    }
    // Each customer's fence phone, twice (a call's CDR goes out at the first message
    // CDR_GRACE after its end): once it is out, everything before it is.
    for _ in 0..2 {
        for (ext, tag) in [(102, "fenceA"), (104, "fenceB")] {
            pbx.register(ext, 60, tag);
            pbx.register(ext, 0, tag);
        }
    }
    let (got_a, got_b) = (feed_a.join().unwrap(), feed_b.join().unwrap());
    let check = |got: &[Value], mine: &[&str], name: &str| {
        let starts: Vec<&Value> = got.iter().filter(|e| e["event"] == "start").collect();
        assert_eq!(starts.len(), 1, "{name}: {got:#?}");
        assert!(
            mine.contains(&starts[0]["from"].as_str().unwrap()),
            "{name}: {got:#?}"
        );
        let call = &starts[0]["callid"];
        assert!(
            got.iter()
                .any(|e| e["event"] == "end" && &e["callid"] == call),
            "{name}: {got:#?}"
        );
        for e in got {
            match e["class"].as_str() {
                Some("call") | Some("target") => assert_eq!(&e["callid"], call, "{name}: {e}"),
                Some("endpoint") => {
                    let who = e["aor"].as_str().or(e["extension"].as_str()).unwrap();
                    assert!(mine.contains(&who), "{name}: {e}");
                }
                // Its phones as queue members (the test PBX's queue has 102 and 103).
                Some("queue") if e["event"] == "agent_status" => {
                    let agent = e["agent"].as_str().unwrap().trim_start_matches("PJSIP/");
                    assert!(mine.contains(&agent), "{name}: {e}");
                }
                other => panic!("{name}: another class reached a customer's feed: {other:?} {e}"),
            }
        }
    };
    check(&got_a, &["101", "102"], "customer A");
    check(&got_b, &["103", "104"], "customer B");
}

/// The frames of one connection to the feed, read until `done` holds for one; the fence
/// phone's (contact tag `fence`) left out, the rest kept.
async fn read_feed<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    fence: &str,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("nothing within {WAIT:?}: {frames:#?}"));
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = frame else {
            panic!("the feed ended: {frame:?}");
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        let end = done(&v);
        let fenced = v["contact"]
            .as_str()
            .is_some_and(|c| c.ends_with(&format!("regid={fence}")));
        if !fenced {
            frames.push(v);
        }
        if end {
            return frames;
        }
    }
}

/// A consumer that drops off for 10 s while calls go on, then comes back with
/// `&since=<event_id of the last frame it had>`, ends with every event exactly once: the
/// same frames, in the same order, as a consumer connected throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_away_for_10_s_resumes_and_ends_with_every_event_once() {
    let pbx = Pbx::start("enswitch_resume");
    let port = common::free_port();
    let daemon = enswitch_feed(&pbx, port, "");
    let url = format!("ws://127.0.0.1:{port}/events/websocket/?authkey={KEY}");
    let reference = collect_feed(url.clone(), "fenceR");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    common::until("both clients connected", WAIT, async || {
        daemon.stderr().matches("client connected").count() == 2
    })
    .await;
    let call = |n: u32| {
        let tag = format!("r{n}");
        pbx.register(102, 120, &tag);
        let uas = pbx.callee(102, "uas_answer", &[("ring_ms", "200"), ("talk_ms", "0")]);
        let uac = pbx.caller(101, "102", "uac_call", &[("talk_ms", "300")]);
        uac.passed();
        let _ = uas.wait();
        pbx.register(102, 0, &tag);
    };
    // One call seen live, up to its end; then the consumer goes away.
    tokio::task::block_in_place(|| call(1));
    let mut seen = read_feed(&mut ws, "fenceR", |v| v["event"] == "end").await;
    drop(ws);
    let away = tokio::time::Instant::now();
    // Two calls while it is away, for 10 s in all.
    tokio::task::block_in_place(|| {
        call(2);
        call(3);
    });
    tokio::time::sleep_until(away + Duration::from_secs(10)).await;
    let last = seen.last().unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}&since={last}"))
        .await
        .unwrap();
    // One more call, then the fence (twice: a call's CDR goes out at the first message
    // after its end's grace), after which everything before it is out.
    tokio::task::block_in_place(|| {
        call(4);
        for _ in 0..2 {
            pbx.register(105, 60, "fenceR");
            pbx.register(105, 0, "fenceR");
        }
    });
    seen.extend(read_feed(&mut ws, "fenceR", |v| fence_gone(v, "fenceR")).await);
    let all = tokio::task::block_in_place(|| reference.join().unwrap());
    let ids = |frames: &[Value]| -> Vec<String> {
        frames
            .iter()
            .map(|v| v["event_id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert!(
        !seen.iter().any(|v| v["event"] == "resume_gap"),
        "nothing was missed: {seen:#?}"
    );
    let ends = all.iter().filter(|v| v["event"] == "end").count();
    assert_eq!(ends, 4, "four calls: {all:#?}");
    assert_eq!(ids(&seen), ids(&all), "every event once, in order");
}
