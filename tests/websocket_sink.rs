//! The WebSocket feed end to end: recorded AMI streams replayed by the fake peer through the
//! real pipeline (AMI client, normalizer, bus) into the websocket sink, read by real
//! WebSocket clients (tokio-tungstenite, and Python's `websockets` as an independent one).

mod common;

use common::daemon::Daemon;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::ami::{client_config, fixture};
use futures_util::{SinkExt, StreamExt};
use pbxtap::ami::client::{self, AmiHealth};
use pbxtap::ami::config::AmiAuth;
use pbxtap::ami::frame::{Frame, Limits, Parser};
use pbxtap::ami::replay::{self, ReplayConfig};
use pbxtap::bus::Bus;
use pbxtap::event::{text, Body, Event, Presence};
use pbxtap::normalize::{NormalizeConfig, Normalizer};
use pbxtap::sink::websocket::{Protocol, UserConfig, WebsocketSink, WebsocketSinkConfig};
use pbxtap::tap::Tap;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

const KEY: &str = "abcdefghijklmnopqrstuvwxyz123456";
/// Longest wait for any one frame.
const WAIT: Duration = Duration::from_secs(10);

/// A websocket sink on a free loopback port, fed by its own bus.
struct Feed {
    addr: SocketAddr,
    bus: Arc<Bus>,
}

async fn feed(cfg: WebsocketSinkConfig) -> Feed {
    let bus = Arc::new(Bus::new(8192, text("pbx1")));
    let cfg = WebsocketSinkConfig {
        listen: Some("127.0.0.1:0".into()),
        ..cfg
    };
    let sink = WebsocketSink::new(&cfg, bus.publisher()).await.unwrap();
    let addr = sink.local_addr().unwrap();
    tokio::spawn(sink.run(bus.subscribe("websocket#0")));
    Feed { addr, bus }
}

impl Feed {
    /// Replays recordings through the fake AMI peer and the real tap; returns when the
    /// peer has sent everything and closed.
    async fn replay(&self, recordings: &[&str], times: usize, pace: Option<Duration>) {
        let mut rc = ReplayConfig::new(
            (0..times)
                .flat_map(|_| recordings.iter().map(|r| fixture(r)))
                .collect(),
        );
        rc.close_after_replay = true;
        rc.pace = pace;
        let peer = replay::start(rc).await.unwrap();
        let mut cfg = client_config(&peer.address, AmiAuth::Md5, "tapsecret");
        cfg.reconnect = false;
        let mut tap = Tap::new(
            Normalizer::new(NormalizeConfig::default()),
            self.bus.clone(),
            &peer.address,
        );
        let health = AmiHealth::default();
        tokio::time::timeout(
            Duration::from_secs(30),
            client::run(cfg, &mut tap, &health, std::future::pending()),
        )
        .await
        .expect("replay did not finish");
    }

    /// Publishes a recording's events `times` over, parsed and normalized as the tap does,
    /// straight onto the bus: the AMI socket hop paces the fake peer to about 400 messages a
    /// second, too slow to flood a client. Yields between repetitions, as the tap does
    /// between reads.
    async fn publish(&self, recording: &str, times: usize) -> usize {
        let data = fixture(recording);
        let mut parser = Parser::new(Limits::default());
        let mut norm = Normalizer::new(NormalizeConfig::default());
        let mut published = 0;
        for _ in 0..times {
            let now = pbxtap::event::now_micros();
            parser.push(&data, &mut |frame| {
                if let Ok(Frame::Message(m)) = frame {
                    norm.handle(&m, now, &mut |body| {
                        self.bus.publish(Event::new(now, self.bus.host(), body));
                        published += 1;
                    });
                }
            });
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        published
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

fn enswitch() -> WebsocketSinkConfig {
    WebsocketSinkConfig {
        authkey: Some(KEY.into()),
        ..Default::default()
    }
}

fn user(name: &str, password: &str, admin: bool, queues: &[&str]) -> UserConfig {
    UserConfig {
        username: name.into(),
        domain: "pbx.local".into(),
        extension_number: None,
        password: Some(password.into()),
        password_file: None,
        role: if admin {
            pbxtap::sink::websocket::portsip::Role::Admin
        } else {
            pbxtap::sink::websocket::portsip::Role::Extension
        },
        queues: queues.iter().map(|q| q.to_string()).collect(),
    }
}

/// PortSIP v16, served at `/` with the seed's replies and messages.
fn portsip() -> WebsocketSinkConfig {
    WebsocketSinkConfig {
        protocol: Protocol::Portsip,
        version: pbxtap::dialect::portsip::Version::V16,
        tls: Some(false),
        domain: Some("pbx.local".into()),
        tenant_id: Some("t1".into()),
        users: vec![
            user("101", "pw101", false, &["lab-queue"]),
            user("104", "pw104", false, &["sales"]),
            user("admin", "adminpw", true, &[]),
        ],
        ..Default::default()
    }
}

type Ws<S> = WebSocketStream<S>;

async fn connect(url: &str) -> Ws<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
        .0
}

/// The HTTP status a refused upgrade got.
async fn refused(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{url}: expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("{url}: upgraded, expected a refusal"),
    }
}

/// The next text frame as JSON.
async fn next<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame in time")
            .expect("connection ended")
            .expect("connection error");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("frame is JSON"),
            Message::Close(c) => panic!("closed by the server: {c:?}"),
            _ => {}
        }
    }
}

/// Frames up to and including the first for which `last` holds.
async fn until<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut Ws<S>,
    last: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let v = next(ws).await;
        let done = last(&v);
        out.push(v);
        if done {
            return out;
        }
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>, json: &str) -> Value {
    ws.send(Message::text(json)).await.unwrap();
    next(ws).await
}

async fn login<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>, name: &str, password: &str) {
    let reply = command(
        ws,
        &format!(r#"{{"command":"auth","username":"{name}","domain":"pbx.local","password":"{password}"}}"#),
    )
    .await;
    assert_eq!(reply, serde_json::json!({"status":0}), "login {name}");
}

/// Sends an unknown command and expects its error reply as the very next frame: proof that
/// nothing else was queued for this client before it.
async fn nothing_else<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>) {
    let reply = command(ws, r#"{"command":"probe"}"#).await;
    assert_eq!(
        reply["status"], -1,
        "expected the probe's error reply, got {reply}"
    );
}

fn event_types(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f["event_type"].as_str().unwrap_or("?"))
        .collect()
}

#[tokio::test]
async fn enswitch_refuses_a_missing_or_wrong_key_before_the_upgrade() {
    let f = feed(enswitch()).await;
    assert_eq!(refused(&f.url("/events/websocket/")).await, 401);
    assert_eq!(
        refused(&f.url("/events/websocket/?authkey=wrong")).await,
        403
    );
    assert_eq!(
        refused(&f.url(&format!("/other/?authkey={KEY}"))).await,
        404
    );
    // The right key works, with or without the trailing slash.
    connect(&f.url(&format!("/events/websocket/?authkey={KEY}"))).await;
    connect(&f.url(&format!("/events/websocket?authkey={KEY}"))).await;
    // Five wrong keys from one address: the next attempts are refused unchecked.
    for _ in 0..4 {
        assert_eq!(
            refused(&f.url("/events/websocket/?authkey=guess")).await,
            403
        );
    }
    assert_eq!(
        refused(&f.url(&format!("/events/websocket/?authkey={KEY}"))).await,
        429
    );
}

fn presence() -> Body {
    Body::EndpointPresence(Presence {
        extension: text("101"),
        state: "available",
        ..Default::default()
    })
}

#[tokio::test]
async fn enswitch_a_client_resumes_after_its_last_event_and_is_told_what_is_gone() {
    let f = feed(WebsocketSinkConfig {
        resume_events: 8,
        ..enswitch()
    })
    .await;
    let base = f.url(&format!("/events/websocket/?authkey={KEY}"));
    let id = |seq: u64| format!("pbx1.{}.{seq}", pbxtap::event::boot_id());
    // Nobody is connected while 5 events go out: the feed keeps them.
    for _ in 0..5 {
        f.bus.publish_body(presence());
    }
    let mut ws = connect(&format!("{base}&since={}", id(2))).await;
    let ids: Vec<Value> = [
        next(&mut ws).await,
        next(&mut ws).await,
        next(&mut ws).await,
    ]
    .iter()
    .map(|v| v["event_id"].clone())
    .collect();
    assert_eq!(ids, [id(3), id(4), id(5)]);
    // Then the live events, each once.
    f.bus.publish_body(presence());
    assert_eq!(next(&mut ws).await["event_id"], id(6));
    drop(ws);

    // 10 more: the feed holds the last 8 (9..16); a client that stopped at 3 missed 4..8.
    // (The first client saw 6 live, and it was kept too.)
    for _ in 0..10 {
        f.bus.publish_body(presence());
    }
    let mut ws = connect(&format!("{base}&since={}", id(3))).await;
    let gap = next(&mut ws).await;
    assert_eq!(
        (
            gap["event"].as_str(),
            gap["missed"].as_u64(),
            gap["since"].as_str()
        ),
        (Some("resume_gap"), Some(5), Some(id(3).as_str())),
        "{gap}"
    );
    for seq in 9..=16 {
        assert_eq!(next(&mut ws).await["event_id"], id(seq));
    }
    f.bus.publish_body(presence());
    assert_eq!(next(&mut ws).await["event_id"], id(17));

    // An id of an earlier run of pbxtap: how much was missed is unknown; all held follows.
    let mut ws = connect(&format!("{base}&since=pbx1.1.99")).await;
    let gap = next(&mut ws).await;
    assert!(
        gap["event"] == "resume_gap"
            && gap["missed"].is_null()
            && gap["reason"]
                .as_str()
                .unwrap()
                .starts_with("pbxtap restarted"),
        "{gap}"
    );
    assert_eq!(next(&mut ws).await["event_id"], id(10));
    // An id another appliance sent: not a restart of this one, and said so.
    let other = format!("pbx2.{}.3", pbxtap::event::boot_id());
    let mut ws = connect(&format!("{base}&since={other}")).await;
    let gap = next(&mut ws).await;
    assert!(
        gap["missed"].is_null()
            && gap["reason"]
                .as_str()
                .unwrap()
                .contains("another appliance"),
        "{gap}"
    );
    assert_eq!(next(&mut ws).await["event_id"], id(10));
    // Not an event id: refused before the upgrade, saying what to give.
    assert_eq!(refused(&format!("{base}&since=yesterday")).await, 400);
}

#[tokio::test]
async fn enswitch_a_recorded_call_arrives_field_by_field() {
    let f = feed(enswitch()).await;
    let mut ws = connect(&f.url(&format!("/events/websocket/?authkey={KEY}"))).await;
    f.replay(&["02-call-answered.ami"], 1, None).await;
    // The call's one CDR comes after its end.
    let frames = until(&mut ws, |v| v["class"] == "call" && v["event"] == "cdr").await;
    let calls: Vec<&str> = frames
        .iter()
        .filter(|v| v["class"] == "call")
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(calls, ["start", "route", "ringing", "answer", "end", "cdr"]);
    for v in &frames {
        let ts = v["timestamp"].as_str().expect("timestamp is a string");
        let (secs, micros) = ts.split_once('.').expect("timestamp has a point");
        assert!(
            secs.parse::<u64>().unwrap() > 1_600_000_000 && micros.len() == 6,
            "{ts}"
        );
        assert_eq!(v["host"], "pbx1");
    }
    let start = frames.iter().find(|v| v["event"] == "start").unwrap();
    for (k, want) in [
        ("class", "call"),
        ("callid", "1795376847.2"),
        ("uniqueid", "1795376847.2"),
        ("call_id", "1795376847.2"),
        ("from", "101"),
        ("to", "102"),
        // The recording's dialplan gives no direction hint.
        ("direction", "internal"),
        ("channel", "PJSIP/101-00000002"),
    ] {
        assert_eq!(start[k], want, "start.{k}: {start}");
    }
    let end = frames.iter().find(|v| v["event"] == "end").unwrap();
    assert_eq!(end["callid"], "1795376847.2");
    assert_eq!(end["cause"], 16);
    assert_eq!(end["cause_name"], "NORMAL_CLEARING");
    assert_eq!(end["sip_code"], 200);
    assert_eq!(end["answered"], true);
    let answer = frames.iter().find(|v| v["event"] == "answer").unwrap();
    assert_eq!(answer["target"], "102");
}

/// The Python interpreter with the `websockets` package (Debian: python3-websockets).
fn python_with_websockets() -> std::path::PathBuf {
    let mut candidates = vec![std::path::PathBuf::from("/usr/bin/python3")];
    candidates.push(common::require("python3", "python3"));
    for py in candidates {
        let ok = std::process::Command::new(&py)
            .args(["-c", "import websockets"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return py;
        }
    }
    panic!(
        "this test needs Python's `websockets` package: `apt-get install -y python3-websockets` \
         (scripts/install-test-deps.sh installs everything the tests need)"
    );
}

#[tokio::test]
async fn an_independent_client_python_websockets_gets_the_enswitch_feed() {
    let py = python_with_websockets();
    let f = feed(enswitch()).await;
    // The seed's URL, read by another implementation of the protocol.
    let script = r#"
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        print("connected", flush=True)
        while True:
            msg = await asyncio.wait_for(ws.recv(), 10)
            print(msg, flush=True)
            if '"event":"end"' in msg:
                return
asyncio.run(main())
"#;
    let mut child = tokio::process::Command::new(py)
        .args([
            "-c",
            script,
            &f.url(&format!("/events/websocket/?authkey={KEY}")),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("python client did not connect in time")
        .unwrap();
    assert_eq!(first.as_deref(), Some("connected"));
    f.replay(&["04-call-busy-dialplan.ami"], 1, None).await;
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("python client did not finish");
    let out = out.unwrap();
    assert!(out.status.success(), "python client failed");
    let mut frames = vec![];
    while let Ok(Some(l)) = lines.next_line().await {
        frames.push(serde_json::from_str::<Value>(&l).unwrap());
    }
    let failed = frames
        .iter()
        .find(|v| v["class"] == "call" && v["event"] == "failed")
        .expect("call failed event");
    assert_eq!(failed["callid"], "1795376876.6");
    assert_eq!(failed["sip_code"], 486);
    assert_eq!(failed["cause"], 17);
    assert_eq!(frames.last().unwrap()["event"], "end");
}

#[tokio::test]
async fn portsip_a_recorded_call_arrives_field_by_field() {
    let f = feed(portsip()).await;
    let mut ws = connect(&f.url("/")).await;
    // cdr_events: the tenant administrator's.
    login(&mut ws, "admin", "adminpw").await;
    let reply = command(
        &mut ws,
        r#"{"command":"subscribe","topics":["extension_events","cdr_events"]}"#,
    )
    .await;
    assert_eq!(reply, serde_json::json!({"status":0}));
    f.replay(&["02-call-answered.ami"], 1, None).await;
    let frames = until(&mut ws, |v| v["event_type"] == "call_cdr").await;
    assert_eq!(
        event_types(&frames),
        [
            "call_start",
            "target_add",
            "target_ringing",
            // Device states are call status (extension_call); extension_presence is
            // only what a user sets.
            "extension_call",
            "extension_call",
            "call_established",
            "extension_call",
            "extension_call",
            "target_ended",
            "call_ended",
            // One CDR per call, built from the call's own events at its end.
            "call_cdr",
        ]
    );
    let start = &frames[0];
    assert_eq!(start["call_id"], "1795376847.2");
    assert_eq!(start["caller"], "sip:101@pbx.local");
    assert_eq!(start["callee"], "sip:102@pbx.local");
    assert_eq!(start["direction"], "ext"); // PortSIP's word for internal
    assert_eq!(start["session_id"], "1795376847.2");
    assert_eq!(start["tenant_id"], "t1");
    assert!(start["time"].as_str().unwrap().parse::<u64>().unwrap() > 1_600_000_000);
    let est = &frames[5];
    assert_eq!(est["call_target"], "sip:102@pbx.local");
    assert_eq!(est["caller"], "sip:101@pbx.local");
    assert_eq!(est["callee"], "sip:102@pbx.local");
    let ringing = &frames[3];
    assert_eq!(ringing["extension"], "sip:102@pbx.local");
    assert_eq!(ringing["on_call"], true);
    let cdr = frames.last().unwrap();
    assert_eq!(cdr["caller"], "101");
    assert_eq!(cdr["callee"], "102");
    assert_eq!(cdr["direction"], "ext");
    assert_eq!(cdr["status_code"], "0");
    assert_eq!(cdr["call_targets"][0]["callee"], "102");
    assert_ne!(cdr["answered_time"], "0");
    let ended = &frames[9];
    assert_eq!(ended["call_target"], "");
    assert_eq!(ended["caller"], "sip:101@pbx.local");
    assert_eq!(ended["callee"], "sip:102@pbx.local");
}

#[tokio::test]
async fn portsip_failed_calls_carry_fail_code() {
    let f = feed(portsip()).await;
    let mut ws = connect(&f.url("/")).await;
    login(&mut ws, "admin", "adminpw").await;
    command(
        &mut ws,
        r#"{"command":"subscribe","topics":["extension_events"],"extensions":["101"]}"#,
    )
    .await;
    f.replay(&["04-call-busy-dialplan.ami"], 1, None).await;
    let frames = until(&mut ws, |v| v["event_type"] == "call_ended").await;
    let fail = frames
        .iter()
        .find(|v| v["event_type"] == "call_fail")
        .unwrap();
    assert_eq!(fail["fail_code"], 486);
    assert_eq!(fail["caller"], "sip:101@pbx.local");
    assert_eq!(fail["callee"], "sip:486@pbx.local");
}

#[tokio::test]
async fn portsip_extension_filter_then_unsubscribe() {
    let f = feed(portsip()).await;
    // `only103` connects first, so each event is queued for it before the witness.
    let mut only103 = connect(&f.url("/")).await;
    let mut witness = connect(&f.url("/")).await;
    login(&mut only103, "101", "pw101").await;
    login(&mut witness, "admin", "adminpw").await;
    command(
        &mut only103,
        r#"{"command":"subscribe","topics":["extension_events"],"extensions":["103"]}"#,
    )
    .await;
    command(
        &mut witness,
        r#"{"command":"subscribe","topics":["extension_events","cdr_events"]}"#,
    )
    .await;
    let last = |v: &Value| {
        v["event_type"] == "extension_register"
            && v.get("removed_contacts").is_some()
            && v["extension"] == "sip:103@pbx.local"
    };

    f.replay(&["01-register-unregister.ami"], 1, None).await;
    let all = until(&mut witness, last).await;
    assert!(all.iter().any(|v| v["extension"] == "sip:101@pbx.local"));
    let mine = until(&mut only103, last).await;
    assert_eq!(
        event_types(&mine),
        [
            // After the subscribe: 103 is offline.
            "extension_status",
            "extension_register",
            // Its first registration: online.
            "extension_status",
            "extension_register"
        ]
    );
    assert_eq!(
        (mine[0]["online"].as_bool(), mine[2]["online"].as_bool()),
        (Some(false), Some(true))
    );
    assert!(
        mine.iter().all(|v| v["extension"] == "sip:103@pbx.local"),
        "{mine:?}"
    );
    let contact = &mine[1]["registration_contacts"][0];
    assert!(
        contact["contact_uri"]
            .as_str()
            .unwrap()
            .contains("sip:103@"),
        "{contact}"
    );
    assert!(
        contact["expires"].as_u64().unwrap() >= contact["last_update"].as_u64().unwrap(),
        "{contact}"
    );
    assert_eq!(
        next(&mut only103).await["online"],
        false,
        "its last registration went"
    );
    nothing_else(&mut only103).await;

    // Unsubscribed: the same traffic again reaches the witness only.
    let reply = command(
        &mut only103,
        r#"{"command":"unsubscribe","topics":["extension_events"]}"#,
    )
    .await;
    assert_eq!(reply["status"], 0);
    f.replay(&["01-register-unregister.ami"], 1, None).await;
    until(&mut witness, last).await;
    nothing_else(&mut only103).await;
}

#[tokio::test]
async fn portsip_unsubscribing_one_topic_keeps_the_other() {
    let f = feed(portsip()).await;
    let mut ws = connect(&f.url("/")).await;
    login(&mut ws, "admin", "adminpw").await;
    command(&mut ws, r#"{"command":"subscribe","topics":["extension_events","cdr_events"],"extensions":["101"]}"#).await;
    assert_eq!(next(&mut ws).await["event_type"], "extension_status");
    let reply = command(
        &mut ws,
        r#"{"command":"unsubscribe","topics":[ "cdr_events" ] }"#,
    )
    .await;
    assert_eq!(reply["status"], 0);
    f.replay(&["02-call-answered.ami"], 1, None).await;
    let frames = until(&mut ws, |v| v["event_type"] == "call_ended").await;
    assert!(frames.iter().any(|v| v["event_type"] == "call_start"));
    assert!(
        !frames.iter().any(|v| v["event_type"] == "call_cdr"),
        "{frames:?}"
    );
}

#[tokio::test]
async fn portsip_queue_status_snapshot_on_subscribe_and_queue_permissions() {
    let f = feed(portsip()).await;
    let mut member = connect(&f.url("/")).await;
    let mut outsider = connect(&f.url("/")).await;
    let mut admin = connect(&f.url("/")).await;
    login(&mut member, "101", "pw101").await;
    login(&mut outsider, "104", "pw104").await;
    login(&mut admin, "admin", "adminpw").await;
    // Before anything happened: the member's own queue, empty.
    assert_eq!(
        command(
            &mut member,
            r#"{"command":"subscribe","topics":["queue_events"]}"#
        )
        .await["status"],
        0
    );
    let snap = next(&mut member).await;
    assert_eq!(snap["event_type"], "queue_status");
    assert_eq!(snap["queue_name"], "lab-queue");
    assert_eq!(snap["waiting_list"], serde_json::json!([]));
    // A queue the user does not belong to is left out silently, as PortSIP does: the
    // reply says done, and no snapshot follows.
    let reply = command(
        &mut outsider,
        r#"{"command":"subscribe","topics":["queue_events"],"queues":["lab-queue"]}"#,
    )
    .await;
    assert_eq!(reply, serde_json::json!({"status":0}));
    nothing_else(&mut outsider).await;
    command(
        &mut outsider,
        r#"{"command":"subscribe","topics":["queue_events"]}"#,
    )
    .await;
    assert_eq!(next(&mut outsider).await["queue_name"], "sales");
    command(
        &mut admin,
        r#"{"command":"subscribe","topics":["queue_events"]}"#,
    )
    .await;

    f.replay(&["11-queue-answered.ami"], 1, None).await;
    // The last queue event of the recording: agent 102 ready again after the call.
    let answered = |v: &Value| v["updated_callers"][0]["reason"] == "agent_answered";
    let last = |v: &Value| {
        v["event_type"] == "queue_agent_status"
            && v["updated_agents"][0]["agent_extension_number"] == "102"
            && v["updated_agents"][0]["state"] == "READY"
    };
    let mut seen = until(&mut member, answered).await;
    seen.extend(until(&mut member, last).await);
    let callers: Vec<&Value> = seen
        .iter()
        .filter(|v| v["event_type"] == "queue_caller_status")
        .collect();
    assert_eq!(callers.len(), 2, "{seen:?}");
    assert_eq!(callers[0]["queue_id"], "lab-queue");
    assert_eq!(callers[0]["updated_callers"][0]["reason"], "enqueue");
    assert_eq!(callers[0]["updated_callers"][0]["caller_number"], "101");
    assert_eq!(callers[1]["updated_callers"][0]["reason"], "agent_answered");
    until(&mut admin, answered).await;
    until(&mut admin, last).await;
    nothing_else(&mut outsider).await;

    // A new subscriber gets the current state first: both agents back to ready, nobody waiting.
    let mut late = connect(&f.url("/")).await;
    login(&mut late, "admin", "adminpw").await;
    command(
        &mut late,
        r#"{"command":"subscribe","topics":["queue_events"],"queues":["lab-queue"]}"#,
    )
    .await;
    let snap = next(&mut late).await;
    assert_eq!(snap["event_type"], "queue_status");
    assert_eq!(snap["queue_id"], "lab-queue");
    assert_eq!(snap["waiting_list"], serde_json::json!([]));
    let mut agents: Vec<(String, String)> = snap["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent_extension_number"].as_str().unwrap().to_string(),
                a["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    agents.sort();
    assert_eq!(
        agents,
        [
            ("102".into(), "READY".into()),
            ("103".into(), "READY".into())
        ]
    );
    nothing_else(&mut late).await;
}

#[tokio::test]
async fn portsip_bad_input_gets_error_replies_and_the_connection_stays() {
    let f = feed(portsip()).await;
    let mut ws = connect(&f.url("/")).await;
    for (cmd, needle) in [
        ("{oops", "invalid command"),
        (
            r#"{"command":"subscribe","topics":["cdr_events"]}"#,
            "not authenticated",
        ),
        (r#"{"command":"dance"}"#, "unknown command"),
    ] {
        let reply = command(&mut ws, cmd).await;
        assert_eq!(reply["status"], -1, "{cmd}");
        assert!(
            reply["error"].as_str().unwrap().contains(needle),
            "{cmd}: {reply}"
        );
    }
    let wrong = command(
        &mut ws,
        r#"{"command":"auth","username":"101","domain":"pbx.local","password":"nope"}"#,
    )
    .await;
    assert_eq!(
        wrong,
        serde_json::json!({"error":"name or password error","status":-1})
    );
    login(&mut ws, "101", "pw101").await;
    let reply = command(
        &mut ws,
        r#"{"command":"subscribe","topics":["sms_events"]}"#,
    )
    .await;
    assert!(reply["error"].as_str().unwrap().contains("sms_events"));
    // Failed logins are limited per address: after five, even the right password waits.
    for _ in 0..4 {
        command(
            &mut ws,
            r#"{"command":"auth","username":"101","domain":"pbx.local","password":"nope"}"#,
        )
        .await;
    }
    let reply = command(
        &mut ws,
        r#"{"command":"auth","username":"101","domain":"pbx.local","password":"pw101"}"#,
    )
    .await;
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("too many failed logins"),
        "{reply}"
    );
}

#[tokio::test]
async fn oversized_frames_close_the_connection_and_max_clients_is_enforced() {
    let f = feed(WebsocketSinkConfig {
        max_clients: 1,
        max_frame: 256,
        ..portsip()
    })
    .await;
    // max_clients counts logged-in PortSIP sessions.
    let mut ws = connect(&f.url("/")).await;
    login(&mut ws, "101", "pw101").await;
    assert_eq!(refused(&f.url("/")).await, 503);
    ws.send(Message::text("x".repeat(1000))).await.unwrap();
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("oversized frame did not end the connection");
    assert!(matches!(closed, Some(1009) | None), "{closed:?}");
    // Its slot is free again.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio_tungstenite::connect_async(f.url("/")).await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("slot not released: {e}"),
        }
    }
}

#[tokio::test]
async fn a_stalled_client_is_disconnected_while_another_gets_every_event() {
    let f = feed(WebsocketSinkConfig {
        client_queue: 32,
        ..enswitch()
    })
    .await;
    let url = f.url(&format!("/events/websocket/?authkey={KEY}"));
    // The stalled client: a tiny receive window, and it never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(f.addr).await.unwrap();
    let (mut stalled, _) = tokio_tungstenite::client_async(&url, stream).await.unwrap();
    let mut reader = connect(&url).await;

    // About 480 events of 500 bytes: far more than the stalled client's queue (32) and the
    // socket buffers (the server's is fixed at 64 KiB) hold.
    const TIMES: usize = 30;
    let publish = f.publish("derived/02-call-answered-x-headers.ami", TIMES);
    let read = async {
        let (mut ends, mut frames) = (Vec::new(), 0);
        while ends.len() < TIMES {
            let v = next(&mut reader).await;
            frames += 1;
            if v["class"] == "call" && v["event"] == "end" {
                ends.push(v["extra_headers"]["X-Account"].clone());
            }
        }
        (ends, frames)
    };
    let (published, (ends, frames)) = tokio::join!(publish, read);
    assert!(published > 400, "{published}");
    // Every call reached the reader in full: each ending, and all events up to the last.
    assert!(ends.iter().all(|x| x == "42"), "{ends:?}");
    let per_call = published / TIMES;
    assert!(frames > published - per_call, "{frames} of {published}");
    // The stalled one was told why it was dropped, once it reads again.
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match stalled.next().await {
                Some(Ok(Message::Close(c))) => return c,
                Some(Ok(_)) => {}
                other => panic!("stalled client: no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("stalled client was not closed");
    let c = closed.expect("close frame with a reason");
    assert_eq!(u16::from(c.code), 1008);
    assert!(c.reason.contains("too slow"), "{}", c.reason);
}

#[tokio::test]
async fn wss_with_a_self_signed_certificate() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let f = feed(WebsocketSinkConfig {
        tls: None, // portsip: WSS by default
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..portsip()
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let tcp = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake with the self-signed certificate");
    let url = format!("wss://localhost:{}/", f.addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    login(&mut ws, "101", "pw101").await;
    command(
        &mut ws,
        r#"{"command":"subscribe","topics":["extension_events"],"extensions":["102"]}"#,
    )
    .await;
    assert_eq!(next(&mut ws).await["event_type"], "extension_status");
    f.replay(&["02-call-answered.ami"], 1, None).await;
    let frames = until(&mut ws, |v| v["event_type"] == "call_ended").await;
    assert_eq!(frames[0]["event_type"], "call_start");
    assert_eq!(frames[0]["callee"], "sip:102@pbx.local");

    // Plain WS on a WSS port does not get through.
    assert!(tokio_tungstenite::connect_async(f.url("/")).await.is_err());
}

/// `pbxtap run` with a websocket sink on a free port, once it listens: the real binary
/// against the AMI peer at `ami`.
fn daemon(ami: &str, extra: &str) -> (Daemon, u16) {
    let port = common::free_port();
    let config = format!(
        "host = \"pbx1\"\n[ami]\naddress = \"{ami}\"\nusername = \"tap\"\nsecret = \"tapsecret\"\n\
         reconnect_min_ms = 100\nreconnect_max_secs = 1\n\
         [[sinks]]\ntype = \"websocket\"\nlisten = \"127.0.0.1:{port}\"\nauthkey = \"{KEY}\"\n{extra}"
    );
    let d = Daemon::start(&config, &[("RUST_LOG", "warn")], true);
    common::wait_for_port(port, WAIT);
    (d, port)
}

#[tokio::test]
async fn pbxtap_run_serves_the_feed_with_asterisk_down_and_then_up() {
    // Nothing listens on the AMI port: pbxtap still starts and serves the feed.
    let (d, port) = daemon(&format!("127.0.0.1:{}", common::free_port()), "");
    let url = |key: &str| format!("ws://127.0.0.1:{port}/events/websocket/?authkey={key}");
    assert_eq!(refused(&url("wrong")).await, 403);
    connect(&url(KEY)).await;
    drop(d);

    // With Asterisk up (the replaying peer, paced so the client is connected first).
    let mut rc = ReplayConfig::new(vec![fixture("02-call-answered.ami")]);
    rc.pace = Some(Duration::from_millis(20));
    let peer = replay::start(rc).await.unwrap();
    let (d, port) = daemon(&peer.address, "");
    let mut ws = connect(&format!(
        "ws://127.0.0.1:{port}/events/websocket/?authkey={KEY}"
    ))
    .await;
    let frames = until(&mut ws, |v| v["class"] == "call" && v["event"] == "end").await;
    let end = frames.last().unwrap();
    assert_eq!(end["callid"], "1795376847.2");
    assert_eq!(end["host"], "pbx1");
    // SIGTERM: the bus closes and the client is told why.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let reason = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => return c.map(|c| c.reason.to_string()),
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("no close after SIGTERM");
    assert_eq!(reason.as_deref(), Some("pbxtap is stopping"));
}

#[tokio::test]
async fn portsip_hold_unhold_and_noanswer_from_recordings() {
    let f = feed(portsip()).await;
    let mut ws = connect(&f.url("/")).await;
    login(&mut ws, "101", "pw101").await;
    command(
        &mut ws,
        r#"{"command":"subscribe","topics":["extension_events"],"extensions":["101"]}"#,
    )
    .await;
    f.replay(
        &["03-call-hold-unhold.ami", "07-call-noanswer-timeout.ami"],
        1,
        None,
    )
    .await;
    let first = until(&mut ws, |v| v["event_type"] == "call_ended").await;
    let held = first
        .iter()
        .find(|v| v["event_type"] == "call_hold")
        .unwrap();
    assert_eq!(held["aor"], "sip:101@pbx.local");
    assert_eq!(held["peer_aor"], "sip:102@pbx.local");
    assert_eq!(held["call_id"], "1795376859.4");
    let unheld = first
        .iter()
        .find(|v| v["event_type"] == "call_unhold")
        .unwrap();
    assert_eq!(unheld["peer_aor"], "sip:102@pbx.local");
    let second = until(&mut ws, |v| v["event_type"] == "call_ended").await;
    let noanswer = second
        .iter()
        .find(|v| v["event_type"] == "call_noanswer")
        .unwrap();
    assert_eq!(noanswer["call_id"], "1795376899.10");
    assert_eq!(noanswer["call_target"], "");
    assert_eq!(noanswer["caller"], "sip:101@pbx.local");
    assert_eq!(noanswer["callee"], "sip:102@pbx.local");
}

/// A TCP connection to `to` from the loopback address `from` (all of 127/8 is this host).
async fn tcp_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// The HTTP status of an Enswitch upgrade with `key` from `from`; 101 when upgraded.
async fn upgrade_from(from: [u8; 4], f: &Feed, key: &str) -> u16 {
    let stream = tcp_from(from, f.addr).await.unwrap();
    let url = f.url(&format!("/events/websocket/?authkey={key}"));
    match tokio_tungstenite::client_async(url, stream).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{from:?}: {e}"),
    }
}

#[tokio::test]
async fn guesses_from_many_addresses_stop_at_the_global_budget() {
    let f = feed(enswitch()).await;
    let start = tokio::time::Instant::now();
    // 300 addresses, more than the limiter tracks, three guesses each.
    let (mut checked, mut refused) = (0u32, 0u32);
    for i in 0..300u32 {
        let from = [127, 1, (i / 250) as u8, (i % 250 + 1) as u8];
        for _ in 0..3 {
            match upgrade_from(from, &f, "guess-guess-guess").await {
                403 => checked += 1,
                429 => refused += 1,
                other => panic!("{from:?}: {other}"),
            }
        }
    }
    let took = start.elapsed();
    // The global burst, and one more per refill while the test ran.
    let refills = (took.as_secs_f64() / 2.0).ceil() as u32;
    assert!(
        checked <= 30 + refills,
        "{checked} guesses checked in {took:?} ({refused} refused)"
    );
    assert_eq!(checked + refused, 900);
    // The right key gets in once the budget has a token again (one refill at most).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match upgrade_from([127, 0, 0, 1], &f, KEY).await {
            101 => break,
            429 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => panic!("the right key: {other}"),
        }
    }
}

#[tokio::test]
async fn idle_sockets_from_one_address_do_not_lock_others_out() {
    let f = feed(enswitch()).await;
    // 40 connections from 127.0.0.2 that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(tcp_from([127, 0, 0, 2], f.addr).await.unwrap());
    }
    // Another address gets in at once, and gets events.
    let stream = tcp_from([127, 0, 0, 1], f.addr).await.unwrap();
    let url = f.url(&format!("/events/websocket/?authkey={KEY}"));
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(1),
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    .expect("locked out by another address's idle sockets")
    .unwrap();
    f.publish("02-call-answered.ami", 1).await;
    until(&mut ws, |v| v["class"] == "call").await;
    // The idle ones are closed within the first-byte deadline (2 s), not held 10 s.
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(4), idle[0].read(&mut byte))
        .await
        .expect("an idle socket still open after 4 s");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
}

/// With `event_ids`, every PortSIP event message carries `event_id`; a client that comes
/// back and subscribes with `"since"` gets, right after the reply, the messages for its
/// subscription from that event on (the same frames, ids included: that event's own again,
/// since one event may make several), then its statuses. An id from another boot gets a
/// `resume_gap` notice with `missed` null; a bad one an error.
#[tokio::test]
async fn portsip_a_client_resumes_after_its_last_event_id_with_what_it_subscribed_to() {
    let f = feed(WebsocketSinkConfig {
        event_ids: true,
        ..portsip()
    })
    .await;
    let subscribe = r#"{"command":"subscribe","topics":["extension_events"],"extensions":["103"]}"#;
    let mut first = connect(&f.url("/")).await;
    login(&mut first, "101", "pw101").await;
    command(&mut first, subscribe).await;
    let removed = |v: &Value| {
        v["event_type"] == "extension_register"
            && v.get("removed_contacts").is_some()
            && v["extension"] == "sip:103@pbx.local"
    };
    f.replay(&["01-register-unregister.ami"], 1, None).await;
    let mut had = until(&mut first, removed).await;
    had.push(next(&mut first).await);
    assert_eq!(
        event_types(&had),
        [
            "extension_status",
            "extension_register",
            "extension_status",
            "extension_register",
            "extension_status"
        ]
    );
    // The subscribe's own status is no event; every event message has its id, last.
    assert!(had[0].get("event_id").is_none());
    assert!(
        had[1..].iter().all(|v| v["event_id"].is_string()),
        "{had:?}"
    );
    drop(first);

    // It had only up to its first extension_register, whose event also made the status
    // after it (one id for both).
    let stop = had[1]["event_id"].as_str().unwrap().to_string();
    assert_eq!(had[2]["event_id"], had[1]["event_id"]);
    let mut again = connect(&f.url("/")).await;
    login(&mut again, "101", "pw101").await;
    let resume = subscribe.replace('}', &format!(r#","since":"{stop}"}}"#));
    assert_eq!(command(&mut again, &resume).await["status"], 0);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut again).await);
    }
    assert_eq!(
        got,
        had[1..],
        "that event's messages and the missed ones, as first sent"
    );
    let status = next(&mut again).await;
    assert_eq!(
        (status["event_type"].as_str(), status["online"].as_bool()),
        (Some("extension_status"), Some(false))
    );
    nothing_else(&mut again).await;

    // From another boot of this box: told, with no count, before all the feed holds.
    let (host_boot, _) = stop.rsplit_once('.').unwrap();
    let (host, _) = host_boot.rsplit_once('.').unwrap();
    let other = format!("{host}.1.5");
    let mut late = connect(&f.url("/")).await;
    login(&mut late, "101", "pw101").await;
    let resume = subscribe.replace('}', &format!(r#","since":"{other}"}}"#));
    assert_eq!(command(&mut late, &resume).await["status"], 0);
    let gap = next(&mut late).await;
    assert_eq!(
        (
            gap["event_type"].as_str(),
            gap["missed"].is_null(),
            gap["since"].as_str()
        ),
        (Some("resume_gap"), true, Some(other.as_str()))
    );
    // Then all the feed holds for it (its point is unknown), then its status.
    let rest = until(&mut late, |v| v.get("event_id").is_none()).await;
    assert_eq!(rest[..rest.len() - 1], had[1..]);
    let bad = subscribe.replace('}', r#","since":"yesterday"}"#);
    let reply = command(&mut late, &bad).await;
    assert_eq!(reply["status"], -1, "{reply}");
}

/// Connections that never log in cannot keep PortSIP users out: one address gets at most
/// 4 past the handshake (the rest are closed at once), none of them holds a client slot,
/// and each is closed 10 s after its handshake. Users from elsewhere fill `max_clients`.
#[tokio::test]
async fn portsip_connections_that_never_log_in_hold_no_client_slot() {
    let f = feed(WebsocketSinkConfig {
        max_clients: 4,
        ..portsip()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..64 {
        let Ok(stream) = tcp_from([127, 0, 0, 2], f.addr).await else {
            continue;
        };
        let upgrade = tokio_tungstenite::client_async(f.url("/"), stream);
        if let Ok(Ok((ws, _))) = tokio::time::timeout(WAIT, upgrade).await {
            idle.push(ws);
        }
    }
    assert_eq!(
        idle.len(),
        4,
        "connections past the handshake from one address"
    );
    let mut users = Vec::new();
    for _ in 0..4 {
        let stream = tcp_from([127, 0, 0, 1], f.addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(f.url("/"), stream)
            .await
            .expect("a user refused while others only hold connections open");
        login(&mut ws, "101", "pw101").await;
        users.push(ws);
    }
    // A fifth user: the server is full of logged-in users, and says so.
    assert_eq!(refused(&f.url("/")).await, 503);
    let started = tokio::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(15), idle[0].next())
        .await
        .expect("a connection that never logged in still open after 15 s");
    match closed {
        Some(Ok(Message::Close(Some(c)))) => {
            assert_eq!(c.reason.as_str(), "no auth within 10 seconds");
            assert_eq!(u16::from(c.code), 1008);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(11));
}
