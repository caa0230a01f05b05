//! The NATS sink against a real nats-server started on a free port: Routr's subjects and
//! payloads for recorded calls and registrations, Routr's env vars, and outages (server
//! down at start, killed mid-stream and restarted) with nothing lost inside the ring's
//! capacity and every loss past it counted.

mod common;

use common::daemon::Daemon;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use serde_json::{json, Value};

use common::ami::{client_config, fixture};
use common::nats::{count_messages, create_stream, stored_count, NatsServer};
use pbxtap::ami::client::{self, AmiHealth};
use pbxtap::ami::config::AmiAuth;
use pbxtap::ami::replay::{self, ReplayConfig};
use pbxtap::bus::{Bus, SinkRx, TryRecv};
use pbxtap::event::{self, text, Body, CallStarted, Event};
use pbxtap::normalize::{NormalizeConfig, Normalizer};
use pbxtap::sink::nats::{NatsSink, NatsSinkConfig, PUBLISH_WINDOW};
use pbxtap::tap::Tap;

/// Longest any condition in these tests is waited for.
const DEADLINE: Duration = Duration::from_secs(30);

/// Replays `recordings` through the real AMI client, normalizer and bus into a NATS sink
/// configured by `cfg`, until the bus closes and the sink has delivered everything.
async fn replay_into(cfg: NatsSinkConfig, recordings: &[&str]) {
    let peer = replay::start(ReplayConfig::new(
        recordings.iter().map(|r| fixture(r)).collect(),
    ))
    .await
    .unwrap();
    let bus = Arc::new(Bus::new(1024, text("pbx1")));
    let sink = NatsSink::new(&cfg, bus.publisher()).await.unwrap();
    let sink = tokio::spawn(sink.run(bus.subscribe("nats#0")));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tap_bus = bus.clone();
    let address = peer.address.clone();
    let tap = tokio::spawn(async move {
        let mut tap = Tap::new(Normalizer::new(NormalizeConfig::default()), tap_bus, "pbx");
        let health = AmiHealth::default();
        let cfg = client_config(&address, AmiAuth::Md5, "tapsecret");
        client::run(cfg, &mut tap, &health, async move {
            let _ = stopped.await;
        })
        .await;
    });
    common::until("the replay to finish", DEADLINE, async || {
        peer.stats.sent.load(Ordering::Relaxed) >= peer.total
    })
    .await;
    // Let the tap read the last bytes, then close the bus: the sink drains and ends.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    tap.await.unwrap();
    drop(bus);
    tokio::time::timeout(DEADLINE, sink)
        .await
        .expect("the sink drains and ends once the bus closes")
        .unwrap();
}

/// Collects messages from `sub` until none comes for a while.
async fn collect(sub: &mut async_nats::Subscriber) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        let v: Value = serde_json::from_slice(&m.payload)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", m.subject));
        got.push((m.subject.to_string(), v));
    }
    got
}

/// Takes the ISO time out of `v[key]`, checking it was written between `from` and `to`
/// (ISO 8601 UTC strings of one format sort like the times they stand for).
fn take_time(v: &mut Value, key: &str, from: u64, to: u64) -> String {
    let t = v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .to_string();
    // Java's Instant: milliseconds, or none at an exact second; read as JavaScript does.
    assert!(t.len() == 24 || t.len() == 20, "{key}: {t}");
    let ms = common::fonoster::js_date_millis(&t).unwrap_or_else(|| panic!("{key}: {t}"));
    assert!(
        (from / 1000) as i64 <= ms && ms <= (to / 1000) as i64,
        "{key} {t} is not the time of the event"
    );
    v[key] = json!("<time>");
    t
}

#[tokio::test]
async fn routr_subjects_and_payloads_for_a_recorded_call_and_registrations() {
    let server = NatsServer::start(common::free_port(), &[]);
    let consumer = async_nats::connect(server.url()).await.unwrap();
    let mut sub = consumer.subscribe("routr.>").await.unwrap();
    // Everything else the sink might send in this dialect would show up here.
    let mut all = consumer.subscribe(">").await.unwrap();
    consumer.flush().await.unwrap();

    let from = event::now_micros();
    let cfg = NatsSinkConfig {
        url: server.url(),
        ..Default::default()
    };
    replay_into(
        cfg,
        &[
            "01-register-unregister.ami",
            "derived/02-call-answered-x-headers.ami",
        ],
    )
    .await;
    let to = event::now_micros();

    let mut got = collect(&mut sub).await;
    for (subject, v) in &mut got {
        match subject.as_str() {
            "routr.call.started" => take_time(v, "startTime", from, to),
            "routr.call.ended" => take_time(v, "endTime", from, to),
            "routr.endpoint.registered" => take_time(v, "registeredAt", from, to),
            other => panic!("unexpected subject {other}"),
        };
    }
    let reg = |aor: &str| {
        (
            "routr.endpoint.registered",
            json!({"expires": 0, "aor": format!("sip:{aor}@pbx1"), "registeredAt": "<time>", "extraHeaders": {}}),
        )
    };
    // The recording registers 101-103 (before pbxtap listed contacts, so no expiry is
    // known) and unregisters them: Routr sends a de-registration as a registration with
    // expires 0. The dialplan's X-Account is set before the call dials: it is in the start.
    let expected = [
        reg("101"),
        reg("102"),
        reg("103"),
        reg("101"),
        reg("102"),
        reg("103"),
        (
            "routr.call.started",
            json!({"callId": "1795376847.2", "from": "sip:101@pbx1", "startTime": "<time>",
                   "extraHeaders": {"X-Tenant": "acme", "x-lab-trace": "t-1", "X-Account": "42",
                                    "X-Call-Direction": "agent-to-agent"},
                   "to": "sip:102@pbx1"}),
        ),
        (
            "routr.call.ended",
            // The BYE's headers, which AMI does not carry (docs/nats.md).
            json!({"callId": "1795376847.2", "extraHeaders": {},
                   "endTime": "<time>", "hangupCause": "NORMAL_CLEARING"}),
        ),
    ];
    let got_ref: Vec<(&str, &Value)> = got.iter().map(|(s, v)| (s.as_str(), v)).collect();
    let expected_ref: Vec<(&str, &Value)> = expected.iter().map(|(s, v)| (*s, v)).collect();
    assert_eq!(got_ref, expected_ref);
    // Nothing else went out: the other events have no Routr subject.
    assert_eq!(collect(&mut all).await.len(), 8);
}

#[tokio::test]
async fn routrs_environment_variables_alone_configure_the_sink() {
    let server = NatsServer::start(common::free_port(), &[]);
    let consumer = async_nats::connect(server.url()).await.unwrap();
    let mut sub = consumer.subscribe("myserver.>").await.unwrap();
    consumer.flush().await.unwrap();
    let peer = replay::start(ReplayConfig::new(vec![
        fixture("01-register-unregister.ami"),
        fixture("02-call-answered.ami"),
    ]))
    .await
    .unwrap();
    // No [[sinks]] at all: only the AMI connection is in the file.
    let config = format!(
        "[ami]\naddress = \"{}\"\nusername = \"tap\"\nsecret = \"tapsecret\"\n",
        peer.address
    );
    let url = format!("127.0.0.1:{}", server.port);
    let pbxtap = Daemon::start(
        &config,
        &[
            ("NATS_PUBLISHER_ENABLED", "true"),
            // host:port without a scheme, as in Routr's docs.
            ("NATS_PUBLISHER_URL", &url),
            ("NATS_PUBLISHER_SUBJECT", "myserver"),
        ],
        true,
    );
    let mut subjects = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while subjects.len() < 8 {
        let m = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("pbxtap sent the Routr events within the deadline")
            .unwrap();
        subjects.push(m.subject.to_string());
    }
    drop(pbxtap);
    assert_eq!(
        subjects,
        [
            "myserver.endpoint.registered",
            "myserver.endpoint.registered",
            "myserver.endpoint.registered",
            "myserver.endpoint.registered",
            "myserver.endpoint.registered",
            "myserver.endpoint.registered",
            "myserver.call.started",
            "myserver.call.ended",
        ]
    );
}

/// The bus sequence numbers of every event stored in the stream, in stream order.
async fn stored_seqs(url: &str) -> Vec<u64> {
    let c = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(c);
    let mut stream = js.get_stream("EVENTS").await.unwrap();
    let n = stream.info().await.unwrap().state.messages;
    let mut seqs = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let m = stream.get_raw_message(i).await.unwrap();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        seqs.push(v["seq"].as_u64().unwrap());
    }
    seqs
}

fn call(i: u64) -> Body {
    Body::CallStarted(CallStarted {
        call_id: text(&format!("{i}.1")),
        from: text("101"),
        to: text("102"),
        ..Default::default()
    })
}

/// Waits until the watcher sees the sink report its server gone (`up` false) or back.
async fn sink_status(watcher: &mut SinkRx, up: bool) {
    let what = if up {
        "system.sink_up"
    } else {
        "system.sink_down"
    };
    common::until(what, DEADLINE, async || loop {
        match watcher.try_recv() {
            TryRecv::Event(ev) => match ev.body {
                Body::SinkUp(_) if up => return true,
                Body::SinkDown(_) if !up => return true,
                _ => continue,
            },
            _ => return false,
        }
    })
    .await;
}

/// Runs the outage scenario against a sink configured by `cfg` (url, subject and dialect
/// are set here), with rings of `capacity` events of normal priority, where `call.started`
/// goes (a power of two, as the bus rounds up; half of `buffers.per_sink`).
async fn outage(mut cfg: NatsSinkConfig, capacity: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = NatsServer::with_jetstream(common::free_port(), dir.path());
    let url = server.url();
    create_stream(&url, "pbx").await;
    server.kill();

    cfg.url = url.clone();
    cfg.subject = "pbx".into();
    cfg.dialect = "native".into();
    let bus = Bus::new(2 * capacity, text("pbx1"));
    let rx = bus.subscribe("nats#0");
    let counters = rx.counters().clone();
    let mut watcher = bus.subscribe("watcher");
    // The server is down: the sink starts all the same.
    let sink = NatsSink::new(&cfg, bus.publisher()).await.unwrap();
    let sink = tokio::spawn(sink.run(rx));
    let publish = |n: u64| {
        for i in 0..n {
            bus.publish(Event::new(event::now_micros(), bus.host(), call(i)));
        }
    };
    // Everything the sink took is delivered or counted as dropped, and the stream holds
    // exactly what it delivered.
    let settled = async || {
        let delivered = counters.delivered.load(Ordering::Relaxed);
        let dropped = counters.dropped.load(Ordering::Relaxed);
        delivered + dropped == bus.published() && stored_count(&url).await == Some(delivered)
    };

    // 1. Down at start: events wait in the ring, then go out once the server is up.
    sink_status(&mut watcher, false).await;
    publish(capacity as u64 / 2);
    server.restart();
    sink_status(&mut watcher, true).await;
    common::until(
        "delivery after a start with the server down",
        DEADLINE,
        settled,
    )
    .await;
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);

    // 2. Killed mid-stream, restarted: everything within the ring's capacity arrives.
    server.kill();
    sink_status(&mut watcher, false).await;
    publish(capacity as u64 - 8);
    server.restart();
    sink_status(&mut watcher, true).await;
    common::until("delivery after a restart", DEADLINE, settled).await;
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    let seqs = stored_seqs(&url).await;
    let all: Vec<u64> = (1..=bus.published()).collect();
    assert_eq!(seqs, all, "every event, in order, none twice");

    // 3. Past capacity: the oldest are dropped, and exactly those are counted.
    server.kill();
    sink_status(&mut watcher, false).await;
    publish(3 * capacity as u64);
    server.restart();
    sink_status(&mut watcher, true).await;
    common::until("delivery after an overflow", DEADLINE, settled).await;
    let seqs = stored_seqs(&url).await;
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, none twice");
    let dropped = counters.dropped.load(Ordering::Relaxed);
    let lost = bus.published() - seqs.len() as u64;
    assert!(dropped > 0);
    assert_eq!(lost, dropped, "events lost = events counted as dropped");
    // What waits through an outage: the ring plus at most one window in the client.
    assert!(
        seqs.len() as u64 - all.len() as u64 <= (capacity + PUBLISH_WINDOW) as u64 + 4,
        "more delivered than the ring and the window hold"
    );
    // The newest events are the ones kept.
    assert_eq!(seqs.last(), Some(&bus.published()));

    drop(bus);
    tokio::time::timeout(DEADLINE, sink).await.unwrap().unwrap();
}

#[tokio::test]
async fn core_nats_outages_lose_nothing_within_the_ring_and_count_the_rest() {
    outage(NatsSinkConfig::default(), 256).await;
}

#[tokio::test]
async fn jetstream_outages_lose_nothing_within_the_ring_and_count_the_rest() {
    outage(
        NatsSinkConfig {
            jetstream: true,
            ..Default::default()
        },
        256,
    )
    .await;
}

#[tokio::test]
async fn jetstream_delivers_every_event_exactly_once_across_a_kill_while_publishing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = NatsServer::with_jetstream(common::free_port(), dir.path());
    let url = server.url();
    create_stream(&url, "pbx").await;
    let bus = Arc::new(Bus::new(1024, text("pbx1")));
    let rx = bus.subscribe("nats#0");
    let counters = rx.counters().clone();
    let cfg = NatsSinkConfig {
        url: url.clone(),
        subject: "pbx".into(),
        dialect: "native".into(),
        jetstream: true,
        ..Default::default()
    };
    let sink = NatsSink::new(&cfg, bus.publisher()).await.unwrap();
    let sink = tokio::spawn(sink.run(rx));
    // The tap publishes on its own pace, whatever happens to the server.
    let tap_bus = bus.clone();
    let tap = tokio::spawn(async move {
        for i in 0..600 {
            tap_bus.publish(Event::new(event::now_micros(), tap_bus.host(), call(i)));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    common::until("the first events stored", DEADLINE, async || {
        stored_count(&url).await.is_some_and(|n| n >= 100)
    })
    .await;
    server.kill(); // with acknowledgements in flight
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    tap.await.unwrap();
    let settled = async || {
        let delivered = counters.delivered.load(Ordering::Relaxed);
        delivered == bus.published() && stored_count(&url).await == Some(delivered)
    };
    common::until("every event acknowledged", DEADLINE, settled).await;
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    let all: Vec<u64> = (1..=bus.published()).collect();
    assert_eq!(stored_seqs(&url).await, all, "every event, in order, once");
    drop(bus);
    tokio::time::timeout(DEADLINE, sink).await.unwrap().unwrap();
}

/// A sink publishing native events to `<base>.>` with `cfg`, and a watcher on its bus.
struct Running {
    bus: Bus,
    watcher: SinkRx,
    sink: tokio::task::JoinHandle<()>,
}

async fn start_sink(cfg: NatsSinkConfig) -> Running {
    let bus = Bus::new(256, text("pbx1"));
    let rx = bus.subscribe("nats#0");
    let watcher = bus.subscribe("watcher");
    let sink = NatsSink::new(&cfg, bus.publisher()).await.unwrap();
    Running {
        sink: tokio::spawn(sink.run(rx)),
        bus,
        watcher,
    }
}

/// The reason of the next `system.sink_down` the watcher sees.
async fn down_reason(watcher: &mut SinkRx) -> String {
    let ev = tokio::time::timeout(DEADLINE, async {
        loop {
            let ev = watcher.recv().await.unwrap();
            if matches!(ev.body, Body::SinkDown(_)) {
                return ev;
            }
        }
    })
    .await
    .expect("system.sink_down within the deadline");
    ev.str_field("reason").to_string()
}

#[tokio::test]
async fn user_and_password_log_in_and_a_refused_login_is_retried_until_accepted() {
    let port = common::free_port();
    let mut server = NatsServer::start(port, &["--user", "pbx", "--pass", "right"]);
    let consumer = async_nats::ConnectOptions::with_user_and_password("pbx".into(), "right".into())
        .connect(server.url())
        .await
        .unwrap();
    let mut sub = consumer.subscribe("pbx.>").await.unwrap();
    consumer.flush().await.unwrap();
    let cfg = |password: &str| NatsSinkConfig {
        url: server.url(),
        subject: "pbx".into(),
        dialect: "native".into(),
        user: Some("pbx".into()),
        password: Some(password.into()),
        ..Default::default()
    };

    let good = start_sink(cfg("right")).await;
    good.bus.publish(Event::new(1, good.bus.host(), call(1)));
    let m = tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("the event within the deadline")
        .unwrap();
    assert_eq!(m.subject.as_str(), "pbx.call.started");

    let mut bad = start_sink(cfg("wrong")).await;
    let reason = down_reason(&mut bad.watcher).await;
    assert!(reason.to_lowercase().contains("authorization"), "{reason}");
    // The sink keeps trying: once the server accepts that password, it is up.
    drop(consumer);
    server.kill();
    server.args = ["--user", "pbx", "--pass", "wrong"]
        .map(String::from)
        .to_vec();
    server.restart();
    sink_status(&mut bad.watcher, true).await;
    assert!(!bad.sink.is_finished());
}

#[tokio::test]
async fn tls_with_a_custom_ca_and_an_untrusted_server_refused() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = common::tls::private_ca(dir.path());
    let server = NatsServer::start(
        common::free_port(),
        &[
            "--tls",
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key.to_str().unwrap(),
        ],
    );
    let consumer = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(ca.clone())
        .connect(server.url())
        .await
        .unwrap();
    let mut sub = consumer.subscribe("pbx.>").await.unwrap();
    consumer.flush().await.unwrap();
    let cfg = |ca: Option<std::path::PathBuf>| NatsSinkConfig {
        url: format!("tls://127.0.0.1:{}", server.port),
        subject: "pbx".into(),
        dialect: "native".into(),
        tls_ca_file: ca,
        ..Default::default()
    };

    let trusted = start_sink(cfg(Some(ca))).await;
    trusted
        .bus
        .publish(Event::new(1, trusted.bus.host(), call(1)));
    let m = tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("the event over TLS within the deadline")
        .unwrap();
    assert_eq!(m.subject.as_str(), "pbx.call.started");

    // Without the CA the server's certificate is not trusted: down, never up, still running.
    let mut untrusted = start_sink(cfg(None)).await;
    let reason = down_reason(&mut untrusted.watcher).await;
    assert!(reason.starts_with("cannot connect"), "{reason}");
    assert!(!untrusted.sink.is_finished());
}

/// Delivers `n` events through a sink configured by `cfg`, feeding the bus in bursts of
/// half a ring so nothing is dropped, and checks the sink counted every one delivered.
/// (The rate is measured by `cargo bench --bench sinks`.)
async fn deliver_in_bursts(cfg: NatsSinkConfig, n: u64) {
    const RING: u64 = 4096;
    let bus = Bus::new(RING as usize, text("pbx1"));
    let rx = bus.subscribe("nats#0");
    let counters = rx.counters().clone();
    let sink = NatsSink::new(&cfg, bus.publisher()).await.unwrap();
    let sink = tokio::spawn(sink.run(rx));
    let mut sent = 0;
    while sent < n {
        let burst = (RING / 2).min(n - sent);
        for i in 0..burst {
            bus.publish(Event::new(event::now_micros(), bus.host(), call(sent + i)));
        }
        sent += burst;
        common::until("the sink to catch up", DEADLINE, async || {
            counters.delivered.load(Ordering::Relaxed) + RING / 2 >= sent
        })
        .await;
    }
    common::until("the last events", DEADLINE, async || {
        counters.delivered.load(Ordering::Relaxed) == n
    })
    .await;
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    drop(bus);
    sink.await.unwrap();
}

/// Events sent in bursts, core NATS and JetStream.
const CORE_EVENTS: u64 = 2_000;
const JS_EVENTS: u64 = 500;

#[tokio::test]
async fn core_and_jetstream_get_every_event_of_bursts_with_none_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::with_jetstream(common::free_port(), dir.path());
    create_stream(&server.url(), "js").await;
    let counted = count_messages(&server.url(), "core.>").await;
    let cfg = |subject: &str, jetstream| NatsSinkConfig {
        url: server.url(),
        subject: subject.into(),
        dialect: "native".into(),
        jetstream,
        ..Default::default()
    };
    deliver_in_bursts(cfg("core", false), CORE_EVENTS).await;
    deliver_in_bursts(cfg("js", true), JS_EVENTS).await;
    assert_eq!(
        counted.await.unwrap(),
        CORE_EVENTS,
        "the consumer got every core event"
    );
    assert_eq!(stored_count(&server.url()).await, Some(JS_EVENTS));
}

#[tokio::test]
async fn routrs_url_forms_a_server_list_websocket_and_credentials_in_the_url() {
    // A server that wants a user and password, reached over WebSocket; the first server
    // of the list is down, as one node of a cluster may be.
    let (port, ws) = (common::free_port(), common::free_port());
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ user: routr, password: \"p@ss\" }}\n\
             websocket {{ listen: \"127.0.0.1:{ws}\", no_tls: true }}\n"
        ),
    )
    .unwrap();
    let server = NatsServer::start(port, &["-c", conf.to_str().unwrap()]);
    let consumer =
        async_nats::ConnectOptions::with_user_and_password("routr".into(), "p@ss".into())
            .connect(server.url())
            .await
            .unwrap();
    let mut sub = consumer.subscribe("routr.>").await.unwrap();
    consumer.flush().await.unwrap();
    let peer = replay::start(ReplayConfig::new(vec![fixture("02-call-answered.ami")]))
        .await
        .unwrap();
    let config = format!(
        "[ami]\naddress = \"{}\"\nusername = \"tap\"\nsecret = \"tapsecret\"\n",
        peer.address
    );
    let down = common::free_port();
    let url = format!("ws://routr:p%40ss@127.0.0.1:{down},ws://routr:p%40ss@127.0.0.1:{ws}");
    let pbxtap = Daemon::start(
        &config,
        &[
            ("NATS_PUBLISHER_ENABLED", "true"),
            ("NATS_PUBLISHER_URL", &url),
        ],
        false,
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut subjects = Vec::new();
    while subjects.len() < 2 {
        let m = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("nothing from pbxtap:\n{}", pbxtap.stderr()))
            .unwrap();
        subjects.push(m.subject.to_string());
    }
    assert_eq!(subjects, ["routr.call.started", "routr.call.ended"]);
    // The password is in no log line.
    assert!(!pbxtap.stderr().contains("p%40ss") && !pbxtap.stderr().contains("p@ss"));
}
