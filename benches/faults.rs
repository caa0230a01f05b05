//! Fault runs: the real `pbxtap run` binary through what its peers do to it in the field,
//! all during one paced AMI stream from the fake Asterisk (`pbxtap::ami::replay`):
//!
//! - nats-server (JetStream, `Nats-Msg-Id` dedup) SIGKILLed and restarted on its port and
//!   store; mosquitto SIGKILLed and restarted with its persistence (the subscriber's
//!   session saved beforehand); the webhook endpoint (hyper, in process) closed, its
//!   connections cut, then back;
//! - the AMI peer dropping the connection every `drop_every` messages (pbxtap reconnects
//!   and resyncs; its `system.ami_*` and VANISHED `call.ended` events get seqs like any);
//! - a WebSocket client that never reads (it must be closed with 1008 "too slow") beside
//!   one that reads everything.
//!
//! The stdout sink is the reference: every seq pbxtap produced. The stream is paced so
//! that each outage fits in the rings (`buffers.per_sink`), and the check is: every seq on
//! stdout reached NATS (exactly once, in order), MQTT and the webhook (duplicates counted:
//! QoS 1 and HTTP retries are at least once), and the reading WebSocket client (in order,
//! from its connection on); a seq missing anywhere must be counted in that sink's
//! `system.events_dropped` `total` (and, within capacity, there are none). pbxtap must
//! still be the same process at the end, and stop cleanly on SIGTERM.
//!
//! Past capacity (`overflow`, rings of 256 events and a 12 s outage of all three), the
//! check becomes: for each sink, delivered + counted drops = published.
//!
//! Run: `cargo bench --bench faults` (about four minutes: `full`, three rounds of faults,
//! then `overflow`), or one part: `cargo bench --bench faults -- overflow`.
//! `cargo test --all-targets` runs a short one (one round of 3 s outages, about 16 s of
//! stream, 25 s in all) with the same checks.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::mqtt::Mosquitto;
use common::nats::{create_stream, stored_count, NatsServer};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pbxtap::ami::replay::{self, ReplayConfig};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Events held per sink in the runs where nothing may be lost: room for the longest
/// outage of a plan (plus the clients' reconnect backoff) at the paced rate, at most
/// about 180 events/s.
const PER_SINK: usize = 4096;
/// The MQTT sink's `inflight` (its default): at most this many repeats per broker outage.
const MQTT_INFLIGHT: u64 = 64;
/// The webhook sink's `max_in_flight` (its default): at most this many repeats per outage.
const HOOK_IN_FLIGHT: u64 = 4;
const WS_KEY: &str = "fault-run-key-0123";
/// Names of the sinks as pbxtap calls them (`<type>#<index in the file>`).
const SINKS: [&str; 5] = ["stdout#0", "nats#1", "mqtt#2", "webhook#3", "websocket#4"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    KillNats,
    RestartNats,
    KillMosquitto,
    RestartMosquitto,
    StopWebhook,
    RestartWebhook,
}
use Fault::*;

/// What one run does.
struct Plan {
    /// Rounds of the recordings (764 AMI messages, about 140 events each).
    rounds: usize,
    /// Pause between AMI messages.
    pace: Duration,
    /// The peer drops the AMI connection after this many messages on it.
    drop_every: usize,
    /// Seconds after the stream starts, and what happens then, in time order.
    faults: Vec<(f64, Fault)>,
    /// `buffers.per_sink`.
    per_sink: usize,
    /// Outages longer than the rings: NATS, MQTT and the webhook must drop (and count).
    overflow: bool,
}

impl Plan {
    fn short() -> Plan {
        Plan {
            rounds: 10,
            pace: Duration::from_millis(1),
            drop_every: 2000,
            per_sink: PER_SINK,
            overflow: false,
            // Overlapping outages of 3 s each.
            faults: vec![
                (2.0, KillNats),
                (2.5, KillMosquitto),
                (3.0, StopWebhook),
                (5.0, RestartNats),
                (5.5, RestartMosquitto),
                (6.0, RestartWebhook),
            ],
        }
    }

    /// Past capacity: rings of 256 events, and NATS, mosquitto and the webhook all away
    /// for 12 s (about 1000 events at the paced rate).
    fn overflow() -> Plan {
        Plan {
            rounds: 20,
            pace: Duration::from_millis(1),
            drop_every: 4000,
            per_sink: 256,
            overflow: true,
            faults: vec![
                (3.0, KillNats),
                (3.0, KillMosquitto),
                (3.0, StopWebhook),
                (15.0, RestartNats),
                (15.0, RestartMosquitto),
                (15.0, RestartWebhook),
            ],
        }
    }

    fn full() -> Plan {
        Plan {
            rounds: 80,
            pace: Duration::from_millis(1),
            drop_every: 4000,
            per_sink: PER_SINK,
            overflow: false,
            faults: vec![
                // Overlapping, 5 s each.
                (5.0, KillNats),
                (6.0, KillMosquitto),
                (7.0, StopWebhook),
                (10.0, RestartNats),
                (11.0, RestartMosquitto),
                (12.0, RestartWebhook),
                // One after the other, 6 s each.
                (20.0, KillNats),
                (26.0, RestartNats),
                (28.0, KillMosquitto),
                (34.0, RestartMosquitto),
                (36.0, StopWebhook),
                (42.0, RestartWebhook),
                // All at the same moment, 8 s.
                (48.0, KillNats),
                (48.0, KillMosquitto),
                (48.0, StopWebhook),
                (56.0, RestartNats),
                (56.0, RestartMosquitto),
                (56.0, RestartWebhook),
            ],
        }
    }
}

/// One event as the stdout sink printed it.
struct Ev {
    seq: u64,
    class: String,
    name: String,
    time: u64,
    json: Value,
}

fn parse_line(line: &str) -> Ev {
    let json: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout line {line:?}: {e}"));
    Ev {
        seq: json["seq"].as_u64().expect("seq"),
        class: json["class"].as_str().expect("class").to_string(),
        name: json["event"].as_str().expect("event").to_string(),
        time: json["time"].as_u64().expect("time"),
        json,
    }
}

// ---- the webhook endpoint ----

/// Serves the webhook endpoint on 127.0.0.1:`port`, recording the seq of every POST
/// (0 for a body without one), answering 200. Aborting the task closes the listener and
/// cuts every connection (their tasks live in its JoinSet).
fn start_hook(rt: &Runtime, port: u16, seqs: Arc<Mutex<Vec<u64>>>) -> JoinHandle<()> {
    let listener = rt.block_on(async {
        let start = Instant::now();
        loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => return l,
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    eprintln!("webhook endpoint: bind {port}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("webhook endpoint: cannot bind 127.0.0.1:{port}: {e}"),
            }
        }
    });
    rt.spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let seqs = seqs.clone();
            conns.spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let seqs = seqs.clone();
                    async move {
                        let body = req.into_body().collect().await;
                        let seq = body
                            .ok()
                            .and_then(|b| common::json_u64(&b.to_bytes(), "seq"))
                            .unwrap_or(0);
                        seqs.lock().unwrap().push(seq);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), service)
                    .await;
            });
            while conns.try_join_next().is_some() {}
        }
    })
}

// ---- the MQTT subscriber ----

/// A QoS 1 subscriber to `pbx/#` with a persistent session (clean_session = false):
/// the broker queues for it while it is away. It subscribes again whenever the broker has
/// no session for it. Records the seq of every event message (not the retained copies);
/// returns once subscribed.
fn start_mqtt_subscriber(rt: &Runtime, port: u16, seqs: Arc<Mutex<Vec<u64>>>) -> JoinHandle<()> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = rt.spawn(async move {
        let mut opts = MqttOptions::new(format!("faults-{port}"), "127.0.0.1", port);
        opts.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(64 * 1024, 64 * 1024);
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let mut ready_tx = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) if !ack.session_present => {
                    client.subscribe("pbx/#", QoS::AtLeastOnce).await.unwrap();
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    // Events only: not the status, health and state copies.
                    let copy = p.topic == "pbx/status"
                        || p.topic == "pbx/health"
                        || p.topic.starts_with("pbx/state/");
                    if !copy {
                        seqs.lock()
                            .unwrap()
                            .push(common::json_u64(&p.payload, "seq").unwrap_or(0));
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("MQTT subscriber not subscribed within 10 s")
            .unwrap()
    });
    task
}

// ---- the WebSocket clients ----

/// What a WebSocket client saw: (class, time in µs) of each frame, and how it ended.
#[derive(Default)]
struct WsLog {
    frames: Vec<(String, u64)>,
    /// Close code and reason, or the error.
    end: Option<(u16, String)>,
    ended_at: Option<Instant>,
}

/// (class, µs) of an enswitch frame: `timestamp` is "<unix>.<microseconds>".
fn ws_key(text: &str) -> (String, u64) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("frame {text}: {e}"));
    let ts = v["timestamp"].as_str().expect("timestamp");
    let (s, us) = ts.split_once('.').expect("<unix>.<micros>");
    let time = s.parse::<u64>().unwrap() * 1_000_000 + us.parse::<u64>().unwrap();
    (v["class"].as_str().expect("class").to_string(), time)
}

/// Reads `ws` to its end into `log`.
async fn read_ws<S>(mut ws: tokio_tungstenite::WebSocketStream<S>, log: Arc<Mutex<WsLog>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let end = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => log.lock().unwrap().frames.push(ws_key(t.as_str())),
            Some(Ok(Message::Close(c))) => {
                break c.map_or((1005, String::new()), |c| {
                    (u16::from(c.code), c.reason.to_string())
                })
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break (0, format!("error: {e}")),
            None => break (0, "closed without a close frame".into()),
        }
    };
    let mut log = log.lock().unwrap();
    log.end = Some(end);
    log.ended_at = Some(Instant::now());
}

/// A client that reads every frame as it comes.
fn start_reader(rt: &Runtime, url: &str, log: Arc<Mutex<WsLog>>) {
    let (ws, _) = rt
        .block_on(tokio_tungstenite::connect_async(url))
        .expect("WebSocket client connects");
    rt.spawn(read_ws(ws, log));
}

/// A client that reads nothing (with a small receive buffer, so its stall shows soon)
/// until `drain` fires; then it reads to the end, to see how pbxtap closed it.
fn start_staller(
    rt: &Runtime,
    port: u16,
    url: &str,
    log: Arc<Mutex<WsLog>>,
) -> tokio::sync::oneshot::Sender<()> {
    let ws = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let stream = sock
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect");
        tokio_tungstenite::client_async(url, stream)
            .await
            .expect("WebSocket handshake")
            .0
    });
    let (drain, go) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(async move {
        let _ = go.await;
        read_ws(ws, log).await;
    });
    drain
}

// ---- the AMI gate ----

/// Forwards connections on 127.0.0.1:`port` to `upstream`: pbxtap's AMI address, opened
/// once the WebSocket clients are connected, so they see the stream from its start.
fn open_ami_gate(rt: &Runtime, port: u16, upstream: String) -> JoinHandle<()> {
    let listener = rt
        .block_on(TcpListener::bind(("127.0.0.1", port)))
        .expect("bind the AMI gate");
    rt.spawn(async move {
        loop {
            let Ok((mut down, _)) = listener.accept().await else {
                continue;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut up) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    })
}

fn config(
    per_sink: usize,
    ami_port: u16,
    nats: &str,
    mqtt_port: u16,
    hook_port: u16,
    ws_port: u16,
) -> String {
    format!(
        "host = \"faults\"\n\
         [ami]\naddress = \"127.0.0.1:{ami_port}\"\nusername = \"tap\"\nsecret = \"tapsecret\"\n\
         reconnect_min_ms = 100\nreconnect_max_secs = 1\n\
         [buffers]\nper_sink = {per_sink}\n\
         [watchdog]\nenabled = false\n\
         [[sinks]]\ntype = \"stdout\"\n\
         [[sinks]]\ntype = \"nats\"\nurl = \"{nats}\"\ndialect = \"native\"\nsubject = \"pbx\"\njetstream = true\n\
         [[sinks]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{mqtt_port}\"\ntopic = \"pbx\"\n\
         [[sinks]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n\
         dialect = \"native\"\nretry_max_secs = 1\n\
         [[sinks]]\ntype = \"websocket\"\nlisten = \"127.0.0.1:{ws_port}\"\n\
         protocol = \"enswitch\"\nauthkey = \"{WS_KEY}\"\n"
    )
}

/// The bus seqs of every event stored in the JetStream stream, in stream order.
async fn stored_seqs(url: &str) -> Vec<u64> {
    let c = common::nats::connect(url).await;
    let js = async_nats::jetstream::new(c);
    let mut stream = js.get_stream("EVENTS").await.unwrap();
    let n = stream.info().await.unwrap().state.messages;
    let mut seqs = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let m = stream.get_raw_message(i).await.unwrap();
        seqs.push(common::json_u64(&m.payload, "seq").unwrap_or(0));
    }
    seqs
}

/// How one sink did against the reference.
struct Tally {
    delivered: u64,
    duplicates: u64,
    missing: Vec<u64>,
    /// Seqs whose first delivery came after a later seq's.
    out_of_order: u64,
}

fn tally(reference: &[Ev], got: &[u64]) -> Tally {
    let wanted: HashSet<u64> = reference.iter().map(|e| e.seq).collect();
    let mut seen = HashSet::new();
    let (mut delivered, mut duplicates, mut out_of_order, mut highest) = (0, 0, 0, 0);
    for &s in got.iter().filter(|s| wanted.contains(s)) {
        if seen.insert(s) {
            delivered += 1;
            if s < highest {
                out_of_order += 1;
            }
            highest = highest.max(s);
        } else {
            duplicates += 1;
        }
    }
    let missing = reference
        .iter()
        .map(|e| e.seq)
        .filter(|s| !seen.contains(s))
        .collect();
    Tally {
        delivered,
        duplicates,
        missing,
        out_of_order,
    }
}

/// `total` of the latest `system.events_dropped` per sink (a later report's total covers
/// an earlier one that may itself have been overwritten in a ring).
fn counted_drops(events: &[Ev]) -> BTreeMap<String, u64> {
    let mut drops = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.class == "system" && e.name == "events_dropped")
    {
        let sink = e.json["sink"].as_str().unwrap_or("?").to_string();
        let total = e.json["total"].as_u64().unwrap_or(0);
        let d = drops.entry(sink).or_insert(0);
        *d = total.max(*d);
    }
    drops
}

/// How long each sink said it was down (`system.sink_down` to `sink_up`, pbxtap's clock).
fn downtimes(events: &[Ev]) -> BTreeMap<String, Vec<u64>> {
    let mut down: BTreeMap<String, u64> = BTreeMap::new();
    let mut spans: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.class == "system") {
        let sink = e.json["sink"].as_str().unwrap_or("?").to_string();
        match e.name.as_str() {
            "sink_down" => {
                down.entry(sink).or_insert(e.time);
            }
            "sink_up" => {
                if let Some(t) = down.remove(&sink) {
                    spans.entry(sink).or_default().push((e.time - t) / 1000);
                }
            }
            _ => {}
        }
    }
    spans
}

/// Notes the end of `k`'s outage.
fn ended(
    since: &mut BTreeMap<&'static str, Instant>,
    outages: &mut BTreeMap<&'static str, Vec<u64>>,
    k: &'static str,
) {
    let t = since.remove(k).expect("restart after a stop");
    outages
        .entry(k)
        .or_default()
        .push(t.elapsed().as_millis() as u64);
}

/// Once pbxtap logs that it kicked the stalled client: when, and let the client read its
/// close frame (pbxtap gives a kicked client 10 s to take it).
fn watch_kick(
    daemon: &Daemon,
    started: Instant,
    kicked_at: &mut Option<Duration>,
    drain: &mut Option<tokio::sync::oneshot::Sender<()>>,
) {
    if kicked_at.is_none() && daemon.stderr().contains("client too slow") {
        *kicked_at = Some(started.elapsed());
        let _ = drain.take().unwrap().send(());
    }
}

/// Where the reading WebSocket client's first frame is in `reference` (what came before
/// it connected), and how many events from there on it has not got yet.
fn ws_progress(reference: &[Ev], frames: &[(String, u64)]) -> Option<(usize, usize)> {
    let first = frames.first()?;
    let k = reference
        .iter()
        .position(|e| e.class == first.0 && e.time == first.1)?;
    Some((k, (reference.len() - k).saturating_sub(frames.len())))
}

fn fault_run(rt: &Runtime, plan: &Plan, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let js_dir = dir.path().join("jetstream");
    let mq_dir = dir.path().join("mosquitto");
    std::fs::create_dir_all(&js_dir).unwrap();
    std::fs::create_dir_all(&mq_dir).unwrap();

    let mut nats = NatsServer::with_jetstream(common::free_port(), &js_dir);
    let nats_url = nats.url();
    rt.block_on(create_stream(&nats_url, "pbx"));

    // No limit on messages in flight to a subscriber: what the broker takes from pbxtap
    // goes straight on to the subscriber's socket, instead of waiting in the broker's
    // memory, where a SIGKILL would lose it (the broker's loss, not pbxtap's).
    let mut mosquitto = Mosquitto::start(&mq_dir, "max_inflight_messages 0\n");
    let mqtt_seqs = Arc::new(Mutex::new(Vec::new()));
    let _mqtt_sub = start_mqtt_subscriber(rt, mosquitto.port, mqtt_seqs.clone());
    // The subscriber's session on disk, so the broker knows it after a SIGKILL.
    mosquitto.save();

    let hook_port = common::free_port();
    let hook_seqs = Arc::new(Mutex::new(Vec::new()));
    let mut hook = Some(start_hook(rt, hook_port, hook_seqs.clone()));

    let mut cfg = ReplayConfig::new(common::bench::recording_files());
    cfg.repeat = plan.rounds;
    cfg.pace = Some(plan.pace);
    cfg.drop_every = Some(plan.drop_every);
    let peer = rt.block_on(replay::start(cfg)).unwrap();

    let (ami_port, ws_port) = (common::free_port(), common::free_port());
    let mut daemon = Daemon::start(
        &config(
            plan.per_sink,
            ami_port,
            &nats_url,
            mosquitto.port,
            hook_port,
            ws_port,
        ),
        &[],
        true,
    );
    let pid = daemon.child.id();
    common::wait_for_port(ws_port, Duration::from_secs(20));
    let url = format!("ws://127.0.0.1:{ws_port}/events/websocket/?authkey={WS_KEY}");
    let reader = Arc::new(Mutex::new(WsLog::default()));
    let staller = Arc::new(Mutex::new(WsLog::default()));
    start_reader(rt, &url, reader.clone());
    let mut drain_staller = Some(start_staller(rt, ws_port, &url, staller.clone()));

    // Now the stream.
    let _gate = open_ami_gate(rt, ami_port, peer.address.clone());
    let started = Instant::now();
    let stream_secs = (peer.total as f64 * plan.pace.as_secs_f64()).max(1.0);
    let limit = Duration::from_secs_f64(stream_secs * 4.0 + 60.0);
    let mut lines = Vec::new();
    let mut faults = plan.faults.iter().peekable();
    let mut since: BTreeMap<&'static str, Instant> = BTreeMap::new();
    let mut outages: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    let mut kicked_at = None;
    loop {
        lines.extend(daemon.lines_for(Duration::from_millis(50)));
        let t = started.elapsed().as_secs_f64();
        while let Some(&&(at, fault)) = faults.peek() {
            if at > t {
                break;
            }
            faults.next();
            eprintln!("{label}: {t:.2} s: {fault:?}");
            match fault {
                KillNats => {
                    nats.kill();
                    since.insert("nats", Instant::now());
                }
                RestartNats => {
                    nats.restart();
                    ended(&mut since, &mut outages, "nats");
                }
                KillMosquitto => {
                    mosquitto.kill();
                    since.insert("mqtt", Instant::now());
                }
                RestartMosquitto => {
                    mosquitto.restart();
                    ended(&mut since, &mut outages, "mqtt");
                }
                StopWebhook => {
                    hook.take().expect("webhook running").abort();
                    since.insert("webhook", Instant::now());
                }
                RestartWebhook => {
                    hook = Some(start_hook(rt, hook_port, hook_seqs.clone()));
                    ended(&mut since, &mut outages, "webhook");
                }
            }
        }
        watch_kick(&daemon, started, &mut kicked_at, &mut drain_staller);
        let sent = peer.stats.sent.load(Ordering::Relaxed);
        if faults.peek().is_none() && sent >= peer.total {
            break;
        }
        assert!(
            daemon.is_running(),
            "{label}: pbxtap exited during the run:\n{}",
            daemon.stderr()
        );
        assert!(
            started.elapsed() < limit,
            "{label}: the peer sent {sent} of {} AMI messages in {limit:?}",
            peer.total
        );
    }
    let stream_took = started.elapsed();

    // The reference: stdout once quiet for 2 s (before SIGTERM, whose events are not part).
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(2) {
        watch_kick(&daemon, started, &mut kicked_at, &mut drain_staller);
        let more = daemon.lines_for(Duration::from_millis(200));
        if !more.is_empty() {
            quiet = Instant::now();
            lines.extend(more);
        }
    }
    let reference: Vec<Ev> = lines.iter().map(|l| parse_line(l)).collect();

    // Wait for every sink to catch up with it: until each has every event, or, past
    // capacity, until no sink has made progress for 10 s (longer than any reconnect
    // backoff that matters here: NATS's 5 s cap).
    let progress = || {
        let missing =
            |seqs: &Mutex<Vec<u64>>| tally(&reference, &seqs.lock().unwrap()).missing.len();
        let reader = ws_progress(&reference, &reader.lock().unwrap().frames).map(|p| p.1);
        let nats = rt.block_on(stored_count(&nats_url)).unwrap_or(0);
        (nats, missing(&mqtt_seqs), missing(&hook_seqs), reader)
    };
    let until = Instant::now() + Duration::from_secs(60);
    let stall = Duration::from_secs(if plan.overflow { 10 } else { 60 });
    let (mut last, mut moved) = (progress(), Instant::now());
    let complete = loop {
        let (nats, mqtt, hook, reader) = last;
        let done = nats >= reference.len() as u64 && mqtt == 0 && hook == 0 && reader == Some(0);
        if done || Instant::now() > until || moved.elapsed() > stall {
            break done;
        }
        watch_kick(&daemon, started, &mut kicked_at, &mut drain_staller);
        std::thread::sleep(Duration::from_millis(200));
        let now = progress();
        if now != last {
            (last, moved) = (now, Instant::now());
        }
    };
    watch_kick(&daemon, started, &mut kicked_at, &mut drain_staller);
    // Drops are reported at most every 10 s: if anything is missing, give the report time.
    if !complete {
        eprintln!("{label}: seqs missing; waiting 12 s for the drop reports");
        lines.extend(daemon.lines_for(Duration::from_secs(12)));
    }
    let nats_seqs = rt.block_on(stored_seqs(&nats_url));
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    tallies.insert("nats#1", tally(&reference, &nats_seqs));
    tallies.insert("mqtt#2", tally(&reference, &mqtt_seqs.lock().unwrap()));
    tallies.insert("webhook#3", tally(&reference, &hook_seqs.lock().unwrap()));
    // Everything stdout printed (the reference and what came after it: sink_up, drop
    // reports), for the counted drops and the checks of stdout itself.
    let events: Vec<Ev> = lines.iter().map(|l| parse_line(l)).collect();
    let drops = counted_drops(&events);

    // The same process all along, and it stops cleanly.
    assert!(
        daemon.is_running() && daemon.child.id() == pid,
        "{label}: pbxtap is not the process it was:\n{}",
        daemon.stderr()
    );
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{label}: pbxtap exited with {status}");

    // ---- checks and figures ----
    let n = reference.len() as u64;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.seq,
            i as u64 + 1,
            "{label}: stdout seqs not consecutive from 1 (a restart, or stdout dropped)"
        );
    }
    let count = |class: &str, name: &str| {
        reference
            .iter()
            .filter(|e| e.class == class && e.name == name)
            .count()
    };
    let ami_drops = count("system", "ami_disconnected");
    let vanished = reference
        .iter()
        .filter(|e| {
            e.class == "call"
                && e.name == "ended"
                && e.json["cause_name"].as_str() == Some("VANISHED_DURING_AMI_OUTAGE")
        })
        .count();
    // The peer's drops (`drop_every`) happened, and pbxtap reconnected after each.
    let reconnects = peer.stats.connections.load(Ordering::Relaxed) - 1;
    let planned = (peer.total - 1) / plan.drop_every;
    assert!(
        reconnects >= planned && ami_drops >= planned,
        "{label}: the AMI peer was to drop pbxtap {planned} times: {reconnects} reconnections, \
         {ami_drops} ami_disconnected events"
    );
    let down = downtimes(&events);
    println!(
        "figure: faults {label}: pbxtap (pid {pid}, never restarted) made {n} events from {} AMI \
         messages in {:.1} s; the AMI peer dropped it {} times ({planned} planned, {ami_drops} ami_disconnected \
         events, {vanished} VANISHED call ends); stdout seqs 1..{} consecutive",
        peer.total,
        stream_took.as_secs_f64(),
        reconnects,
        events.len(),
    );
    let kills = |k: &str| outages.get(k).map_or(0, |v| v.len() as u64);
    let bounds = [
        ("nats#1", "nats", 0),
        ("mqtt#2", "mqtt", MQTT_INFLIGHT * kills("mqtt")),
        ("webhook#3", "webhook", HOOK_IN_FLIGHT * kills("webhook")),
    ];
    for (sink, key, max_dups) in bounds {
        let t = &tallies[sink];
        let counted = drops.get(sink).copied().unwrap_or(0);
        println!(
            "figure: faults {label}: {sink}: {} delivered + {counted} counted drops of {n} \
             published; {} duplicates, {} missing; peer down {:?} ms (bench's clock), sink \
             down {:?} ms (pbxtap's sink_down..sink_up)",
            t.delivered,
            t.duplicates,
            t.missing.len(),
            outages.get(key).cloned().unwrap_or_default(),
            down.get(sink).cloned().unwrap_or_default(),
        );
        let spans = down.get(sink).map_or(0, |v| v.len() as u64);
        assert!(
            spans >= kills(key),
            "{label}: {sink}: {} outages of its peer, but pbxtap saw it down {spans} times",
            kills(key)
        );
        assert_eq!(
            t.missing.len() as u64,
            counted,
            "{label}: {sink}: {} seqs missing (first: {:?}) but {counted} counted as dropped",
            t.missing.len(),
            &t.missing[..t.missing.len().min(10)]
        );
        if plan.overflow {
            assert!(
                counted > 0,
                "{label}: {sink}: nothing dropped, though its outages outlast {} events",
                plan.per_sink
            );
        } else {
            assert_eq!(
                counted, 0,
                "{label}: {sink}: {counted} dropped though every outage fits in {} events",
                plan.per_sink
            );
        }
        assert!(
            t.duplicates <= max_dups,
            "{label}: {sink}: {} duplicates, more than {max_dups}",
            t.duplicates
        );
    }
    for (sink, t) in [
        ("nats#1", &tallies["nats#1"]),
        ("mqtt#2", &tallies["mqtt#2"]),
    ] {
        assert_eq!(
            t.out_of_order, 0,
            "{label}: {sink}: {} events arrived after a later one",
            t.out_of_order
        );
    }
    for sink in ["stdout#0", "websocket#4"] {
        let counted = drops.get(sink).copied().unwrap_or(0);
        assert_eq!(counted, 0, "{label}: {sink}: {counted} counted drops");
    }
    assert!(
        drops.keys().all(|k| SINKS.contains(&k.as_str())),
        "{label}: drops of an unknown sink: {drops:?}"
    );
    assert!(
        !nats_seqs.contains(&0) && !mqtt_seqs.lock().unwrap().contains(&0),
        "{label}: a message without a seq"
    );
    assert!(
        !hook_seqs.lock().unwrap().contains(&0),
        "{label}: a POST without a seq"
    );

    // The reading WebSocket client: every event from its connection on, in order.
    let reader = reader.lock().unwrap();
    let (k, _) = ws_progress(&reference, &reader.frames).unwrap_or_else(|| {
        panic!(
            "{label}: websocket#4: the reading client got {} frames, the first not on stdout",
            reader.frames.len()
        )
    });
    let key = |e: &Ev| (e.class.clone(), e.time);
    let expect: Vec<(String, u64)> = reference[k..].iter().map(key).collect();
    let got = &reader.frames[..reader.frames.len().min(expect.len())];
    let differ = got.iter().zip(&expect).position(|(g, e)| g != e);
    assert!(
        got.len() == expect.len() && differ.is_none(),
        "{label}: websocket#4: the reading client got {} of the {} events from its first on \
         (first difference at {differ:?})",
        got.len(),
        expect.len()
    );
    assert!(
        reference[..k].iter().all(|e| e.class == "system"),
        "{label}: websocket#4: the reading client missed AMI events before its first frame"
    );
    assert!(
        reader.end.is_none() || reader.end.as_ref().is_some_and(|(c, _)| *c == 1001),
        "{label}: websocket#4: the reading client was closed: {:?}",
        reader.end
    );
    let until = Instant::now() + Duration::from_secs(15);
    while staller.lock().unwrap().end.is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let staller = staller.lock().unwrap();
    let kicked = kicked_at
        .unwrap_or_else(|| panic!("{label}: websocket#4: the stalled client was never kicked"));
    let (code, reason) = staller.end.clone().expect("the stalled client ended");
    assert!(
        code == 1008 && reason.contains("too slow"),
        "{label}: websocket#4: the stalled client ended with {code} {reason:?}, not 1008 too slow"
    );
    println!(
        "figure: faults {label}: websocket#4: reading client got all {} events from seq {} on \
         (the {k} before were system events before it connected), in order; the stalled client \
         was closed 1008 {reason:?} {} ms after the stream began, after {} frames",
        expect.len(),
        k + 1,
        kicked.as_millis(),
        staller.frames.len(),
    );
}

fn main() {
    let args = common::bench::Args::from_env();
    let (bench, run) = (args.bench, |part: &str| args.run(part));
    let rt = tokio::runtime::Runtime::new().unwrap();
    if !bench {
        fault_run(&rt, &Plan::short(), "short");
        return;
    }
    if run("full") {
        fault_run(&rt, &Plan::full(), "full");
    }
    if run("overflow") {
        fault_run(&rt, &Plan::overflow(), "overflow");
    }
}
