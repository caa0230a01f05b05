//! The MQTT sink against a real mosquitto (started here on a free port) and a real
//! subscriber: topics and payloads of a recorded call, retained status and last will (with
//! the real binary, killed), retained health, per-extension topics, QoS 0, a broker restart
//! mid-stream (nothing lost or repeated, order kept), a stop with publishes in flight
//! (repeats bounded), overflow past capacity (lost == counted), refused credentials, TLS
//! with a custom CA, and a burst.

mod common;

use common::daemon::Daemon;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::ami::{client_config, fixture};
use common::mqtt::{seq_of, Mosquitto, Msg, Subscriber};
use pbxtap::ami::client::{self, AmiHealth};
use pbxtap::ami::config::AmiAuth;
use pbxtap::ami::replay::{self, ReplayConfig};
use pbxtap::bus::{Bus, TryRecv};
use pbxtap::dialect::{native, Encoded};
use pbxtap::event::{text, AsteriskHealth, Body, Presence};
use pbxtap::normalize::{NormalizeConfig, Normalizer};
use pbxtap::sink::mqtt::{MqttSink, MqttSinkConfig};
use pbxtap::tap::Tap;

const WAIT: Duration = Duration::from_secs(15);

/// The sink publishing under `topic`, without the retained state (these tests count the
/// event messages; `the_present_is_kept_retained_...` tests the state).
fn sink_config(port: u16, topic: &str) -> MqttSinkConfig {
    MqttSinkConfig {
        url: format!("mqtt://127.0.0.1:{port}"),
        topic: topic.into(),
        state: false,
        ..Default::default()
    }
}

/// Starts the sink on `bus` as `mqtt#0`; returns its task and counters.
async fn start_sink(
    cfg: &MqttSinkConfig,
    bus: &Bus,
) -> (tokio::task::JoinHandle<()>, Arc<pbxtap::bus::SinkCounters>) {
    let sink = MqttSink::new(cfg, bus.publisher()).await.unwrap();
    let rx = bus.subscribe("mqtt#0");
    let counters = rx.counters().clone();
    (tokio::spawn(sink.run(rx)), counters)
}

/// The stream the tests publish: registrations, of normal priority, in the ring that holds
/// half of `per_sink` (`Priority::capacity`).
fn stream(i: u64) -> Body {
    Body::EndpointRegistered(pbxtap::event::Registration {
        aor: text(&i.to_string()),
        contact: text("sip:stream@127.0.0.1"),
        ..Default::default()
    })
}

fn presence(i: u64) -> Body {
    Body::EndpointPresence(Presence {
        extension: text(&i.to_string()),
        state: "available",
        note: text("stream"),
        source: "device",
    })
}

fn events_only(msgs: Vec<Msg>, topic: &str) -> Vec<Msg> {
    let status = format!("{topic}/status");
    let health = format!("{topic}/health");
    msgs.into_iter()
        .filter(|m| m.topic != status && m.topic != health)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_arrives_on_its_topics_with_native_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut sub = Subscriber::start(broker.port, "watcher-call", "pbxtap/#", false).await;
    let bus = Arc::new(Bus::new(1024, text("pbx1")));
    let mut reference = bus.subscribe("reference");
    let (sink, counters) = start_sink(&sink_config(broker.port, "pbxtap"), &bus).await;
    let online = sub.until(WAIT, |m| m.topic == "pbxtap/status").await;
    assert_eq!(online.last().unwrap().payload, "online");

    // The recorded call, through the real AMI client and normalizer.
    let peer = replay::start(ReplayConfig::new(vec![fixture("02-call-answered.ami")]))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client_cfg = client_config(&peer.address, AmiAuth::Md5, "tapsecret");
    let tap_bus = bus.clone();
    let tap = tokio::spawn(async move {
        let mut tap = Tap::new(Normalizer::new(NormalizeConfig::default()), tap_bus, "pbx");
        client::run(client_cfg, &mut tap, &AmiHealth::default(), async move {
            let _ = stopped.await;
        })
        .await;
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    while peer.stats.sent.load(Ordering::Relaxed) < peer.total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replay did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    tap.await.unwrap();

    // What the bus carried, as the native dialect writes it.
    let mut expected = Vec::new();
    let mut buf = Encoded::new();
    while let TryRecv::Event(ev) = reference.try_recv() {
        native::encode(&ev, &mut buf).unwrap();
        expected.push((
            format!("pbxtap/{}/{}", ev.class().as_str(), ev.name()),
            String::from_utf8(buf.to_vec()).unwrap(),
        ));
    }
    let topics: Vec<&str> = expected.iter().map(|(t, _)| t.as_str()).collect();
    for needed in [
        "pbxtap/call/started",
        "pbxtap/call/answered",
        "pbxtap/call/ended",
    ] {
        assert!(
            topics.contains(&needed),
            "the recording gave no {needed}: {topics:?}"
        );
    }
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let m = sub.next(WAIT).await;
        if m.topic != "pbxtap/status" {
            got.push((m.topic, m.payload));
        }
    }
    assert_eq!(got, expected, "topics and payloads, in order");
    assert!(got
        .iter()
        .any(|(t, p)| t == "pbxtap/call/started" && p.contains("\"call_id\":\"1795376847.2\"")));
    assert_eq!(
        counters.delivered.load(Ordering::Relaxed),
        expected.len() as u64
    );

    // Closing the bus: the sink drains, sets the status offline and disconnects.
    drop(bus);
    tokio::time::timeout(WAIT, sink).await.unwrap().unwrap();
    let last = sub.until(WAIT, |m| m.topic == "pbxtap/status").await;
    assert_eq!(last.last().unwrap().payload, "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_health_is_also_retained_on_the_health_topic_under_the_appliances_name() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut sub = Subscriber::start(broker.port, "watcher-health", "site/#", false).await;
    let bus = Bus::new(64, text("pbx1"));
    let (_sink, _) = start_sink(&sink_config(broker.port, "site/{host}"), &bus).await;
    sub.until(WAIT, |m| m.topic == "site/pbx1/status").await;
    let publisher = bus.publisher();
    publisher.publish_body(Body::AsteriskDown(AsteriskHealth {
        pid: 4242,
        reason: text("process gone"),
        ..Default::default()
    }));
    let got = sub.until(WAIT, |m| m.topic == "site/pbx1/health").await;
    let down = got
        .iter()
        .find(|m| m.topic == "site/pbx1/system/asterisk_down")
        .expect("asterisk_down on its own topic first");
    assert_eq!(got.last().unwrap().payload, down.payload);
    assert!(down.payload.contains("\"pid\":4242"), "{}", down.payload);
    // The event's id names the appliance too, for consumers of a whole fleet's topics.
    assert!(
        down.payload.contains("\"host\":\"pbx1\",\"id\":\"pbx1."),
        "{}",
        down.payload
    );
    publisher.publish_body(Body::AsteriskUp(AsteriskHealth {
        pid: 4343,
        ..Default::default()
    }));
    sub.until(WAIT, |m| m.topic == "site/pbx1/health").await;
    // A consumer arriving later gets the latest state at once, retained.
    let mut late = Subscriber::start(broker.port, "late-health", "site/pbx1/health", false).await;
    let m = late.next(WAIT).await;
    assert!(m.retain, "health must be retained");
    assert!(
        m.payload.contains("\"event\":\"asterisk_up\"") && m.payload.contains("\"pid\":4343"),
        "{}",
        m.payload
    );
}

/// Collects what the subscriber gets until the last event published on `bus` arrived.
async fn collect_all(sub: &mut Subscriber, bus: &Bus, mut msgs: Vec<Msg>) -> Vec<Msg> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        msgs.extend(sub.drain());
        let last = events_only(msgs.clone(), "pbxtap")
            .last()
            .map(|m| seq_of(&m.payload));
        if last == Some(bus.published()) {
            return events_only(msgs, "pbxtap");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream not complete: last seq {last:?} of {}",
            bus.published()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sequence numbers as the sink delivered them, leaving out what the broker itself
/// re-delivered (flagged dup) to its subscriber after the restart: that is the
/// subscriber's session, not the sink. Returns them and how many were left out.
fn sink_seqs(events: &[Msg]) -> (Vec<u64>, usize) {
    let mut seqs: Vec<u64> = Vec::new();
    let mut redelivered = 0;
    for m in events {
        let seq = seq_of(&m.payload);
        if m.dup && seqs.contains(&seq) {
            redelivered += 1;
        } else {
            seqs.push(seq);
        }
    }
    (seqs, redelivered)
}

async fn wait_delivered(counters: &pbxtap::bus::SinkCounters, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while counters.delivered.load(Ordering::Relaxed) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} acknowledged",
            counters.delivered.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_and_repeats_nothing_within_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), "");
    // Persistent: the subscriber's session and queued messages survive the restart.
    let mut sub = Subscriber::start(broker.port, "watcher-restart", "pbxtap/#", true).await;
    let bus = Arc::new(Bus::new(2048, text("pbx1")));
    let mut cfg = sink_config(broker.port, "pbxtap");
    cfg.inflight = 16;
    let (sink, counters) = start_sink(&cfg, &bus).await;
    let mut msgs = sub.until(WAIT, |m| m.topic == "pbxtap/status").await;

    // A stream of events: the broker goes away after the first 300 were acknowledged,
    // the next 600 come while it is away, the last 300 after it is back.
    let mut i = 0u64;
    for _ in 0..300 {
        bus.publish_body(stream(i));
        i += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    wait_delivered(&counters, bus.published()).await;
    broker.stop();
    for _ in 0..600 {
        bus.publish_body(stream(i));
        i += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    broker.restart();
    for _ in 0..300 {
        bus.publish_body(stream(i));
        i += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    msgs.extend(
        sub.until(WAIT, |m| m.topic == "pbxtap/system/sink_up")
            .await,
    );
    let events = collect_all(&mut sub, &bus, msgs).await;
    let (seqs, redelivered) = sink_seqs(&events);
    let first = seqs[0];
    let repeats: Vec<_> = seqs.windows(2).filter(|w| w[1] <= w[0]).collect();
    assert!(
        repeats.is_empty(),
        "published twice by the sink: {repeats:?}"
    );
    assert_eq!(
        seqs,
        (first..=bus.published()).collect::<Vec<_>>(),
        "lost or out of order"
    );
    eprintln!(
        "restart: {} events, each delivered once, in order; {redelivered} re-delivered by the broker to its own subscriber",
        seqs.len()
    );
    assert!(events.iter().any(|m| m.topic == "pbxtap/system/sink_down"));
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    wait_delivered(&counters, bus.published()).await;
    drop(sink);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_with_publishes_in_flight_loses_nothing_and_repeats_at_most_those() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), "");
    let mut sub = Subscriber::start(broker.port, "watcher-inflight", "pbxtap/#", true).await;
    let bus = Arc::new(Bus::new(4096, text("pbx1")));
    const INFLIGHT: usize = 16;
    let mut cfg = sink_config(broker.port, "pbxtap");
    cfg.inflight = INFLIGHT;
    let (_sink, counters) = start_sink(&cfg, &bus).await;
    let mut msgs = sub.until(WAIT, |m| m.topic == "pbxtap/status").await;
    let stream_bus = bus.clone();
    let stream = tokio::spawn(async move {
        for i in 0..1500 {
            stream_bus.publish_body(stream(i));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    // Mid-stream, with publishes in flight: the broker is stopped (its acknowledgements
    // of the last publishes may never leave it) and comes back a moment later.
    msgs.extend(
        sub.until(WAIT, |m| {
            m.topic == "pbxtap/endpoint/registered" && seq_of(&m.payload) >= 300
        })
        .await,
    );
    broker.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.restart();
    stream.await.unwrap();
    let events = collect_all(&mut sub, &bus, msgs).await;
    let (seqs, _) = sink_seqs(&events);
    // At least once: nothing lost, first deliveries in order, and the only repeats are
    // publishes that were in flight (unacknowledged) when the broker went.
    let mut firsts = seqs.clone();
    firsts.dedup_by(|b, a| b <= a);
    let first = firsts[0];
    assert_eq!(firsts, (first..=bus.published()).collect::<Vec<_>>());
    let repeated = seqs.len() - firsts.len();
    eprintln!("in flight at the stop: {repeated} publishes repeated (bound {INFLIGHT})");
    assert!(
        repeated <= INFLIGHT,
        "{repeated} repeats > inflight {INFLIGHT}"
    );
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_capacity_the_oldest_are_dropped_and_exactly_those_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), "");
    let mut sub = Subscriber::start(broker.port, "watcher-overflow", "pbxtap/#", true).await;
    // The ring of normal priority, where the stream goes: half of `buffers.per_sink`.
    const PER_SINK: usize = 64;
    const INFLIGHT: usize = 4;
    let bus = Bus::new(2 * PER_SINK, text("pbx1"));
    let mut cfg = sink_config(broker.port, "pbxtap");
    cfg.inflight = INFLIGHT;
    let (_sink, counters) = start_sink(&cfg, &bus).await;
    sub.until(WAIT, |m| m.topic == "pbxtap/status").await;
    broker.stop();
    // Well past what the sink holds while the broker is away: ring + outbox.
    let extra = 100;
    for i in 0..(PER_SINK + INFLIGHT + extra) as u64 {
        bus.publish_body(stream(i));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    broker.restart();
    let events = collect_all(&mut sub, &bus, Vec::new()).await;
    let (seqs, _) = sink_seqs(&events);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "order kept, no duplicates: {seqs:?}"
    );
    let lost = bus.published() - seqs.len() as u64;
    let dropped = counters.dropped.load(Ordering::Relaxed);
    assert_eq!(lost, dropped, "every lost event is counted as dropped");
    assert!(dropped >= extra as u64 - 2, "dropped {dropped}");
    // The oldest went: what survives is what the outbox took while the broker was away
    // (each take after the ring wrapped leaves a gap; it takes at most INFLIGHT events and
    // the status) and then the ring's newest, whole.
    let gaps = seqs.windows(2).filter(|w| w[1] != w[0] + 1).count();
    assert!(gaps <= INFLIGHT + 2, "runs of dropped events: {seqs:?}");
    let newest = &seqs[seqs.len() - PER_SINK..];
    assert!(
        newest.windows(2).all(|w| w[1] == w[0] + 1),
        "the ring's newest {PER_SINK} arrive whole: {seqs:?}"
    );
}

/// A pbxtap config with no Asterisk to reach (it keeps redialling) and `sinks`.
fn daemon_config(sinks: &str) -> String {
    format!(
        "host = \"pbx-test\"\n[ami]\naddress = \"127.0.0.1:{}\"\nsecret = \"s\"\n{sinks}",
        common::free_port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_retained_online_and_offline_after_pbxtap_is_killed_or_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut sub = Subscriber::start(broker.port, "watcher-status", "killtest/status", false).await;
    let config = daemon_config(&format!(
        "[[sinks]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\ntopic = \"killtest\"\n",
        broker.port
    ));
    let mut pbxtap = Daemon::start(&config, &[], true);
    let got = sub.until(WAIT, |m| m.payload == "online").await;
    assert!(got.iter().all(|m| m.payload == "online"), "{got:?}");
    // Killed: no goodbye, so the broker publishes the last will.
    pbxtap.signal(nix::sys::signal::Signal::SIGKILL);
    pbxtap.wait_exit(WAIT);
    let m = sub.next(WAIT).await;
    assert_eq!(m.payload, "offline");
    let mut late = Subscriber::start(broker.port, "late-status", "killtest/status", false).await;
    let m = late.next(WAIT).await;
    assert!(m.retain && m.payload == "offline", "{m:?}");

    // Stopped: it says offline itself before disconnecting (which cancels the will).
    let pbxtap = Daemon::start(&config, &[], true);
    sub.until(WAIT, |m| m.payload == "online").await;
    pbxtap.stop(WAIT).await;
    let m = sub.next(WAIT).await;
    assert_eq!(m.payload, "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_a_clear_error_and_a_sink_down_event_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let status = std::process::Command::new(common::require("mosquitto_passwd", "mosquitto"))
        .args(["-b", "-c", passwd.to_str().unwrap(), "pbxtap", "right"])
        .status()
        .unwrap();
    assert!(status.success());
    let broker = Mosquitto::start(
        dir.path(),
        &format!(
            "allow_anonymous false\npassword_file {}\n",
            passwd.display()
        ),
    );
    let config = daemon_config(&format!(
        "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\nusername = \"pbxtap\"\npassword = \"wrong\"\n",
        broker.port
    ));
    let mut pbxtap = Daemon::start(&config, &[], true);
    let mut down = None;
    common::until("system.sink_down on stdout", WAIT, async || {
        down = pbxtap
            .stdout_lines()
            .into_iter()
            .find(|l| l.contains("\"event\":\"sink_down\""));
        down.is_some()
    })
    .await;
    let down = down.unwrap();
    assert!(
        down.contains("\"sink\":\"mqtt#1\"") && down.contains("refused our credentials"),
        "{down}"
    );
    // It keeps running and retrying, with backoff, and says so once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(pbxtap.is_running(), "pbxtap exited");
    let stderr = pbxtap.stderr();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("refused our credentials"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one clear error line, not one per retry: {stderr}"
    );
    assert!(
        errors[0].contains("ERROR") && errors[0].contains("username and password"),
        "{}",
        errors[0]
    );
    let attempts = broker.log().matches("New connection from").count();
    assert!(
        (2..=10).contains(&attempts),
        "{attempts} connection attempts in about 3.5 s: expected a few, backing off"
    );
    pbxtap.signal(nix::sys::signal::Signal::SIGKILL);
    pbxtap.wait_exit(WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_custom_ca_delivers_and_a_wrong_ca_is_a_sink_down() {
    let dir = tempfile::tempdir().unwrap();
    let [good, other] = ["good", "other"].map(|d| {
        let d = dir.path().join(d);
        std::fs::create_dir(&d).unwrap();
        common::tls::private_ca(&d)
    });
    let [ca, cert, key] = good;
    let [other_ca, _, _] = other;
    let tls_port = common::free_port();
    let broker = Mosquitto::start(
        dir.path(),
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    );
    common::wait_for_port(tls_port, WAIT);
    let mut sub = Subscriber::start(broker.port, "watcher-tls", "secure/#", false).await;
    let bus = Bus::new(64, text("pbx1"));
    let mut watcher = bus.subscribe("watcher");
    let good = MqttSinkConfig {
        url: format!("mqtts://127.0.0.1:{tls_port}"),
        topic: "secure".into(),
        ca_file: Some(ca),
        client_id: "tls-good".into(),
        ..Default::default()
    };
    let (_good, _) = start_sink(&good, &bus).await;
    sub.until(WAIT, |m| {
        m.topic == "secure/status" && m.payload == "online"
    })
    .await;
    bus.publish_body(stream(7));
    let got = sub
        .until(WAIT, |m| m.topic == "secure/endpoint/registered")
        .await;
    assert!(got.last().unwrap().payload.contains("\"aor\":\"7\""));

    let wrong = MqttSinkConfig {
        ca_file: Some(other_ca),
        client_id: "tls-wrong".into(),
        ..good
    };
    let sink = MqttSink::new(&wrong, bus.publisher()).await.unwrap();
    let _wrong = tokio::spawn(sink.run(bus.subscribe("mqtt#1")));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, watcher.recv())
            .await
            .expect("no sink_down for the wrong CA")
            .unwrap();
        if let Body::SinkDown(s) = &ev.body {
            assert_eq!(s.sink.as_str(), "mqtt#1");
            assert!(s.reason.contains("TLS"), "{}", s.reason);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_topics_carry_events_that_name_an_extension() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut sub = Subscriber::start(broker.port, "watcher-ext", "pbxtap/#", false).await;
    let bus = Bus::new(64, text("pbx1"));
    let mut cfg = sink_config(broker.port, "pbxtap");
    cfg.extension_topics = true;
    let (_sink, _) = start_sink(&cfg, &bus).await;
    sub.until(WAIT, |m| m.topic == "pbxtap/status").await;
    bus.publish_body(Body::EndpointRegistered(pbxtap::event::Registration {
        aor: text("101"),
        ..Default::default()
    }));
    bus.publish_body(Body::EndpointRegistered(pbxtap::event::Registration {
        aor: text("bad/aor"),
        ..Default::default()
    }));
    bus.publish_body(presence(102));
    bus.publish_body(Body::QueueSlaBreached(pbxtap::event::QueueSla {
        queue: text("sales"),
        ..Default::default()
    }));
    let got = sub
        .until(WAIT, |m| m.topic == "pbxtap/queue/sla_breached")
        .await;
    let topics: Vec<&str> = got.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "pbxtap/endpoint/registered",
            "pbxtap/ext/101/endpoint/registered",
            "pbxtap/endpoint/registered",
            "pbxtap/endpoint/presence",
            "pbxtap/ext/102/endpoint/presence",
            "pbxtap/queue/sla_breached",
        ]
    );
    assert_eq!(got[0].payload, got[1].payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_events_are_published_at_qos_0_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut sub = Subscriber::start(broker.port, "watcher-qos0", "pbxtap/#", false).await;
    let bus = Bus::new(256, text("pbx1"));
    let mut cfg = sink_config(broker.port, "pbxtap");
    cfg.qos = 0;
    let (_sink, counters) = start_sink(&cfg, &bus).await;
    let status = sub.until(WAIT, |m| m.topic == "pbxtap/status").await;
    assert_eq!(status.last().unwrap().qos, rumqttc::QoS::AtLeastOnce);
    for i in 0..100 {
        bus.publish_body(stream(i));
    }
    let got = sub
        .until(WAIT, |m| m.payload.contains("\"aor\":\"99\""))
        .await;
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|m| m.qos == rumqttc::QoS::AtMostOnce));
    wait_delivered(&counters, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_within_capacity_arrives_whole_and_in_order_at_qos_1() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut sub = Subscriber::start(broker.port, "watcher-burst", "pbxtap/#", false).await;
    // Debug builds encode slowly (the native dialect fills a 16 KiB buffer per event):
    // keep the burst small enough for a loaded 2-core CI machine.
    const N: u64 = 1000;
    let bus = Bus::new(2 * N as usize, text("pbx1")); // N of normal priority
    let (_sink, counters) = start_sink(&sink_config(broker.port, "pbxtap"), &bus).await;
    sub.until(WAIT, |m| m.topic == "pbxtap/status").await;
    for i in 0..N {
        bus.publish_body(stream(i));
    }
    wait_delivered(&counters, N).await;
    let events = collect_all(&mut sub, &bus, Vec::new()).await;
    let seqs: Vec<u64> = events.iter().map(|m| seq_of(&m.payload)).collect();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>());
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn check_config_accepts_the_sink_and_names_a_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let check = |sink: &str| {
        let path = dir.path().join("pbxtap.toml");
        std::fs::write(&path, daemon_config(sink)).unwrap();
        let out = std::process::Command::new(common::pbxtap_bin())
            .args(["check-config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = check("[[sinks]]\ntype = \"mqtt\"\nurl = \"mqtts://broker.lan\"\nqos = 0\n");
    assert!(ok && text.contains("1 sink: mqtt"), "{text}");
    let (ok, text) = check("[[sinks]]\ntype = \"mqtt\"\nurl = \"mqtt://broker.lan\"\nqos = 2\n");
    assert!(
        !ok && text.contains("sinks[0].qos") && text.contains("use 1"),
        "{text}"
    );
    let (ok, text) = check("[[sinks]]\ntype = \"mqtt\"\nurl = \"broker.lan:1883\"\n");
    assert!(
        !ok && text.contains("sinks[0].url") && text.contains("mqtt://"),
        "{text}"
    );
}

/// With `state`: a registration and a call are kept retained under
/// `<topic>/state/<host>/`, the call's cleared when it ends; and what an earlier run left
/// there is cleared at start, while other retained topics are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_present_is_kept_retained_and_an_earlier_runs_is_swept_at_start() {
    use common::mqtt::retained;
    use pbxtap::event::{CallEnded, CallStarted, Registration};
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    // Left by an earlier run: a call long over. And another host's, and a stranger's.
    let mut opts = rumqttc::MqttOptions::new("earlier", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 16);
    for topic in [
        "pbxtap/state/pbx1/call/1.1",
        "pbxtap/state/pbx2/call/2.1",
        "other/x",
    ] {
        client
            .publish(topic, rumqttc::QoS::AtLeastOnce, true, "old")
            .await
            .unwrap();
    }
    let mut acked = 0;
    while acked < 3 {
        if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
            eventloop.poll().await.unwrap()
        {
            acked += 1;
        }
    }
    let bus = Bus::new(64, text("pbx1"));
    let cfg = MqttSinkConfig {
        state: true,
        ..sink_config(broker.port, "pbxtap")
    };
    let (_sink, counters) = start_sink(&cfg, &bus).await;
    bus.publish_body(Body::EndpointRegistered(Registration {
        aor: text("101"),
        contact: text("sip:101@10.0.0.5:5060"),
        ..Default::default()
    }));
    for id in ["7.1", "8.1"] {
        bus.publish_body(Body::CallStarted(CallStarted {
            call_id: text(id),
            ..Default::default()
        }));
    }
    bus.publish_body(Body::CallEnded(CallEnded {
        call_id: text("7.1"),
        ..Default::default()
    }));
    wait_delivered(&counters, 4).await;
    let want = [
        "other/x",
        "pbxtap/state/pbx1/call/8.1",
        "pbxtap/state/pbx1/contact/101/sip:101@10.0.0.5:5060",
        "pbxtap/state/pbx2/call/2.1",
        "pbxtap/status",
    ];
    // The retained copies are acknowledged after their events: wait for them.
    let all = std::sync::Mutex::new(Default::default());
    let port = broker.port;
    common::until("the retained state", WAIT, async || {
        let got: std::collections::BTreeMap<String, String> = retained(port, "#").await;
        let same = got.keys().map(String::as_str).eq(want);
        *all.lock().unwrap() = got;
        same
    })
    .await;
    let all = all.into_inner().unwrap();
    assert!(all["pbxtap/state/pbx1/call/8.1"].contains("\"event\":\"started\""));
}
