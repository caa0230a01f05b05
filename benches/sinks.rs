//! Delivery rate of each sink, the real sink code against a real peer the bench starts on
//! a free 127.0.0.1 port: NATS core and JetStream (nats-server), MQTT at QoS 1
//! (mosquitto), webhook enswitch form POSTs (a hyper server in this process), and the
//! WebSocket feed fanned out to many tokio-tungstenite clients (in this process too). Each
//! measurement checks on the way that every event arrived, once, in order, none dropped,
//! and prints one line with its figure; the process's resident memory (VmRSS, and VmHWM its
//! peak) is printed around the WebSocket clients connecting and the fan-out.
//!
//! Run: `cargo bench --bench sinks` (needs `nats-server` and `mosquitto`; a missing one
//! fails the bench, it does not skip it). `cargo test --all-targets` runs it with tiny
//! counts; `cargo test --bench sinks -- --bench` runs a debug build with counts sized
//! for it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message;

use common::ami::fixture;
use common::mqtt::{seq_of, Mosquitto, Subscriber};
use common::nats::{count_messages, create_stream, stored_count, NatsServer};
use pbxtap::ami::frame::{Frame, Limits, Parser};
use pbxtap::bus::{Bus, Priority, SinkCounters};
use pbxtap::event::{text, Body, CallStarted, Event, Presence};
use pbxtap::normalize::{NormalizeConfig, Normalizer};
use pbxtap::sink::mqtt::{MqttSink, MqttSinkConfig};
use pbxtap::sink::nats::{NatsSink, NatsSinkConfig};
use pbxtap::sink::webhook::{WebhookDialect, WebhookSink, WebhookSinkConfig};
use pbxtap::sink::websocket::{WebsocketSink, WebsocketSinkConfig};

/// Ring of each sink's bus; events are published in bursts of half of it, so none drops.
const RING: u64 = 4096;
/// Longest the bench waits for any progress before it fails.
const STUCK: Duration = Duration::from_secs(60);
const KEY: &str = "abcdefghijklmnopqrstuvwxyz123456";

/// How many events each measurement sends.
struct Counts {
    nats_core: u64,
    nats_js: u64,
    mqtt: u64,
    webhook: u64,
    ws_clients: usize,
    /// Times the recorded call is fanned out.
    ws_calls: usize,
}

fn counts() -> Counts {
    let bench = std::env::args().any(|a| a == "--bench");
    match (bench, cfg!(debug_assertions)) {
        // `cargo test --all-targets`: a few seconds, only to keep the bench working.
        (false, _) => Counts {
            nats_core: 200,
            nats_js: 50,
            mqtt: 100,
            webhook: 100,
            ws_clients: 4,
            ws_calls: 2,
        },
        // `cargo test --bench sinks -- --bench`: a debug build, several times slower.
        (true, true) => Counts {
            nats_core: 20_000,
            nats_js: 2_000,
            mqtt: 5_000,
            webhook: 3_000,
            ws_clients: 64,
            ws_calls: 20,
        },
        (true, false) => Counts {
            nats_core: 400_000,
            nats_js: 20_000,
            mqtt: 30_000,
            webhook: 50_000,
            ws_clients: 64,
            // 16 events a call: 3,200 in all, within each client's queue (4,096).
            ws_calls: 200,
        },
    }
}

/// Publishes `n` events made by `body` in bursts of half a ring, each after the sink has
/// caught up with the one before, until the sink delivered everything on its bus. Returns
/// the time taken; asserts nothing was dropped.
async fn feed(bus: &Bus, counters: &SinkCounters, n: u64, body: impl Fn(u64) -> Body) -> Duration {
    let start = Instant::now();
    // The ring the events go to: its share of `RING` (`Priority::capacity`).
    let ring = Priority::of(&body(0)).capacity(RING as usize) as u64;
    let mut sent = 0;
    while sent < n {
        let burst = (ring / 2).min(n - sent);
        for i in sent..sent + burst {
            bus.publish_body(body(i));
        }
        sent += burst;
        common::until_every(
            "the sink to catch up",
            STUCK,
            Duration::from_millis(1),
            async || counters.delivered.load(Ordering::Relaxed) + ring / 2 >= sent,
        )
        .await;
    }
    common::until_every(
        "the last events",
        STUCK,
        Duration::from_millis(1),
        async || counters.delivered.load(Ordering::Relaxed) >= bus.published(),
    )
    .await;
    let took = start.elapsed();
    assert_eq!(
        counters.dropped.load(Ordering::Relaxed),
        0,
        "events dropped"
    );
    took
}

fn rate(n: u64, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

/// Call `i` of ten interleaved calls; `session_id` is `i`, so a receiver can check order.
fn call(i: u64) -> Body {
    Body::CallStarted(CallStarted {
        call_id: text(&format!("1.{}", i % 10)),
        session_id: text(&i.to_string()),
        from: text("101"),
        to: text("102"),
        ..Default::default()
    })
}

async fn nats(c: &Counts) {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::with_jetstream(common::free_port(), dir.path());
    create_stream(&server.url(), "js").await;
    let counted = count_messages(&server.url(), "core.>").await;
    for (subject, jetstream, n) in [("core", false, c.nats_core), ("js", true, c.nats_js)] {
        let cfg = NatsSinkConfig {
            url: server.url(),
            subject: subject.into(),
            dialect: "native".into(),
            jetstream,
            ..Default::default()
        };
        let bus = Bus::new(RING as usize, text("pbx1"));
        let rx = bus.subscribe("nats#0");
        let counters = rx.counters().clone();
        let sink = NatsSink::new(&cfg, bus.publisher()).await.unwrap();
        let sink = tokio::spawn(sink.run(rx));
        let took = feed(&bus, &counters, n, call).await;
        assert_eq!(bus.published(), n, "no system events expected");
        drop(bus);
        sink.await.unwrap();
        let what = if jetstream {
            "JetStream (each publish acknowledged)"
        } else {
            "core"
        };
        println!(
            "nats {what}: {n} events in {took:.2?}: {:.0} events/s",
            rate(n, took)
        );
    }
    assert_eq!(counted.await.unwrap(), c.nats_core, "core consumer got all");
    assert_eq!(stored_count(&server.url()).await, Some(c.nats_js));
}

async fn mqtt(c: &Counts) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut sub = Subscriber::start(broker.port, "bench-watcher", "bench/#", false).await;
    let cfg = MqttSinkConfig {
        url: format!("mqtt://127.0.0.1:{}", broker.port),
        topic: "bench".into(),
        qos: 1,
        ..Default::default()
    };
    let bus = Bus::new(RING as usize, text("pbx1"));
    let rx = bus.subscribe("mqtt#0");
    let counters = rx.counters().clone();
    let sink = MqttSink::new(&cfg, bus.publisher()).await.unwrap();
    let _sink = tokio::spawn(sink.run(rx));
    sub.until(STUCK, |m| m.topic == "bench/status").await;
    let n = c.mqtt;
    let took = feed(&bus, &counters, n, |i| {
        Body::EndpointPresence(Presence {
            extension: text(&i.to_string()),
            state: "available",
            note: text("bench"),
            source: "device",
        })
    })
    .await;
    let published = bus.published();
    let mut seqs = Vec::new();
    let deadline = Instant::now() + STUCK;
    while seqs.last() != Some(&published) {
        assert!(
            Instant::now() < deadline,
            "subscriber got {} events",
            seqs.len()
        );
        let m = sub.next(STUCK).await;
        if m.topic != "bench/status" && m.topic != "bench/health" {
            seqs.push(seq_of(&m.payload));
        }
    }
    assert_eq!(seqs, (1..=published).collect::<Vec<_>>(), "once, in order");
    println!(
        "mqtt QoS 1 (inflight {}): {n} events acknowledged by mosquitto in {took:.2?}: {:.0} events/s",
        cfg.inflight,
        rate(n, took)
    );
}

/// `(callid, asteriskid)` of each form the server got, in arrival order (a call start's
/// `asteriskid` is its `session_id`).
type Forms = Arc<Mutex<Vec<(String, u64)>>>;

async fn webhook(c: &Counts) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let forms: Forms = Arc::default();
    let got = forms.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let got = got.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let got = got.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut call = String::new();
                        let mut unique = u64::MAX;
                        for (k, v) in form_urlencoded::parse(&body) {
                            match &*k {
                                "callid" => call = v.into_owned(),
                                "asteriskid" => unique = v.parse().unwrap(),
                                _ => {}
                            }
                        }
                        got.lock().unwrap().push((call, unique));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let cfg = WebhookSinkConfig {
        url: format!("http://127.0.0.1:{port}/events"),
        dialect: WebhookDialect::Enswitch,
        ..Default::default()
    };
    let bus = Bus::new(RING as usize, text("pbx1"));
    let rx = bus.subscribe("webhook#0");
    let counters = rx.counters().clone();
    let sink = WebhookSink::new(&cfg, bus.publisher()).await.unwrap();
    let sink = tokio::spawn(sink.run(rx));
    let n = c.webhook;
    let took = feed(&bus, &counters, n, call).await;
    assert_eq!(bus.published(), n, "no system events expected");
    drop(bus);
    sink.await.unwrap();
    let forms = forms.lock().unwrap();
    let mut seen: Vec<u64> = forms.iter().map(|f| f.1).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "each event once");
    for id in 0..10 {
        let id = format!("1.{id}");
        let order: Vec<u64> = forms.iter().filter(|f| f.0 == id).map(|f| f.1).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "call {id} in order");
    }
    println!(
        "webhook enswitch form, max_in_flight {}, 10 calls interleaved: {n} POSTs in {took:.2?}: {:.0} events/s",
        cfg.max_in_flight,
        rate(n, took)
    );
}

async fn websocket(c: &Counts) {
    let (rss, peak) = common::bench::rss_kib();
    println!("RSS before the websocket sink: {rss} KiB (peak {peak} KiB)");
    let bus = Arc::new(Bus::new(8192, text("pbx1")));
    let cfg = WebsocketSinkConfig {
        listen: Some("127.0.0.1:0".into()),
        authkey: Some(KEY.into()),
        max_clients: c.ws_clients,
        client_queue: 4096,
        ..Default::default()
    };
    let sink = WebsocketSink::new(&cfg, bus.publisher()).await.unwrap();
    let addr = sink.local_addr().unwrap();
    let rx = bus.subscribe("websocket#0");
    let counters = rx.counters().clone();
    tokio::spawn(sink.run(rx));
    let url = format!("ws://{addr}/events/websocket/?authkey={KEY}");
    let calls = c.ws_calls;
    let connected = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..c.ws_clients {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let connected = connected.clone();
        readers.push(tokio::spawn(async move {
            connected.fetch_add(1, Ordering::Relaxed);
            let (mut ends, mut frames) = (0, 0u64);
            while ends < calls {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        frames += 1;
                        if t.contains(r#""class":"call","event":"end""#) {
                            ends += 1;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("a client was cut off: {other:?}"),
                }
            }
            frames
        }));
    }
    common::until_every("the clients", STUCK, Duration::from_millis(1), async || {
        connected.load(Ordering::Relaxed) == c.ws_clients
    })
    .await;
    let (rss, peak) = common::bench::rss_kib();
    println!(
        "RSS with the websocket sink and {} clients connected: {rss} KiB (peak {peak} KiB)",
        c.ws_clients
    );
    // The recorded call parsed and normalized once per round, as the tap does, onto the bus.
    let data = fixture("derived/02-call-answered-x-headers.ami");
    let mut parser = Parser::new(Limits::default());
    let mut norm = Normalizer::new(NormalizeConfig::default());
    let start = Instant::now();
    let mut published = 0u64;
    for _ in 0..calls {
        let now = pbxtap::event::now_micros();
        parser.push(&data, &mut |frame| {
            if let Ok(Frame::Message(m)) = frame {
                norm.handle(&m, now, &mut |body| {
                    bus.publish(Event::new(now, bus.host(), body));
                    published += 1;
                });
            }
        });
        // Yields between calls, as the tap does between reads.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut per_client = Vec::new();
    for r in readers {
        per_client.push(
            tokio::time::timeout(STUCK, r)
                .await
                .expect("a client got every call")
                .unwrap(),
        );
    }
    let took = start.elapsed();
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0, "ring dropped");
    assert!(
        per_client.iter().all(|&f| f == per_client[0]),
        "every client got the same frames: {per_client:?}"
    );
    let frames: u64 = per_client.iter().sum();
    let (rss, peak) = common::bench::rss_kib();
    println!(
        "websocket enswitch fan-out: {published} events to {} clients, {frames} frames in {took:.2?}: {:.0} frames/s",
        c.ws_clients,
        rate(frames, took)
    );
    println!("RSS after the fan-out: {rss} KiB (peak {peak} KiB)");
}

fn main() {
    let c = counts();
    println!(
        "build: {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        websocket(&c).await;
        nats(&c).await;
        mqtt(&c).await;
        webhook(&c).await;
    });
}
