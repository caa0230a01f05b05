//! The whole daemon, measured from outside: the real `pbxtap run` binary against a fake
//! Asterisk on loopback that floods it with the recorded sessions (`ReplayConfig::repeat`,
//! unpaced), and a real nats-server with a real subscriber.
//!
//! - `idle`: resident memory once connected to AMI and NATS with nothing to do.
//! - `nats`: the flood delivered to NATS: events/s, latency (subscriber's clock minus the
//!   event's `time`, which pbxtap stamps when it normalizes), CPU seconds of pbxtap per
//!   million events, peak RSS. Checks that every seq arrived once, in order, or was counted
//!   as dropped in a `system.events_dropped` event.
//! - `metrics`: what the metrics endpoint costs: resident memory of two idle daemons
//!   (one NATS sink), without and with `[metrics]`, the second after 1,000 scrapes; and the
//!   time a scrape takes (connect, request, whole page read), p50 / p99 / max.
//! - `soak`: every sink down (NATS, MQTT and webhook at closed ports) under a continuous
//!   flood for `PBXTAP_SOAK_SECS` (600 in a `--bench` run): RSS sampled every 10 s must stay
//!   within 1 MiB of its value at the first minute.
//!
//! Run: `cargo bench --bench daemon` (all), `cargo bench --bench daemon -- nats` (one part).
//! `cargo test --all-targets` runs every part small, to keep it working.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::nats::{connect, NatsServer};
use futures_util::StreamExt;
use pbxtap::ami::replay::{self, ReplayConfig};

/// VmRSS and VmHWM of process `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    common::bench::proc_rss_kib(&pid.to_string())
}

/// User plus system CPU seconds of process `pid`.
fn cpu_secs(pid: u32) -> f64 {
    common::bench::proc_cpu(pid).as_secs_f64()
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn config(ami: &str, sinks: &str) -> String {
    format!(
        "host = \"bench\"\n[ami]\naddress = \"{ami}\"\nusername = \"tap\"\nsecret = \"tapsecret\"\n\
         [watchdog]\nenabled = false\n{sinks}"
    )
}

fn nats_sink(port: u16) -> String {
    format!("[[sinks]]\ntype = \"nats\"\nurl = \"nats://127.0.0.1:{port}\"\ndialect = \"native\"\nsubject = \"pbx\"\n")
}

/// What the NATS subscriber saw of one run.
#[derive(Default)]
struct Seen {
    events: u64,
    counted_drops: u64,
    latencies: Vec<u64>,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// Floods pbxtap with `repeat` rounds of the recordings (paced or not) and reads them back.
fn nats_run(rt: &tokio::runtime::Runtime, repeat: usize, pace: Option<Duration>, label: &str) {
    let nats = NatsServer::start(common::free_port(), &[]);
    let url = nats.url();
    let mut sub = rt.block_on(async {
        let client = connect(&url).await;
        let sub = client.subscribe("pbx.>").await.unwrap();
        client.flush().await.unwrap();
        (client, sub)
    });
    let mut cfg = ReplayConfig::new(common::bench::recording_files());
    cfg.repeat = repeat;
    cfg.pace = pace;
    let peer = rt.block_on(replay::start(cfg)).unwrap();
    let mut daemon = Daemon::start(&config(&peer.address, &nats_sink(nats.port)), &[], false);
    let pid = daemon.child.id();
    let cpu_before = cpu_secs(pid);

    let mut seen = Seen::default();
    let mut expect = 1u64;
    rt.block_on(async {
        // Done once the peer has sent everything and nothing came for 3 s.
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(3), sub.1.next()).await {
            let now = Instant::now();
            let payload = std::str::from_utf8(&msg.payload).unwrap();
            let seq = common::json_u64(payload.as_bytes(), "seq").expect("a seq in every event");
            assert!(
                seq >= expect,
                "{label}: seq {seq} after {} (repeat or reorder)",
                expect - 1
            );
            expect = seq + 1;
            if msg.subject.as_str() == "pbx.system.events_dropped" && payload.contains("nats") {
                // `total` (dropped since start), not a sum of `dropped`: a report can itself
                // be overwritten in the ring, and the next total still covers it.
                seen.counted_drops = seen
                    .counted_drops
                    .max(common::json_u64(payload.as_bytes(), "total").unwrap_or(0));
            }
            seen.latencies.push(
                now_micros().saturating_sub(common::json_u64(payload.as_bytes(), "time").unwrap()),
            );
            seen.events += 1;
            seen.first.get_or_insert(now);
            seen.last = Some(now);
        }
    });
    assert!(
        peer.stats.sent.load(std::sync::atomic::Ordering::Relaxed) >= peer.total,
        "{label}: the peer had not sent everything when deliveries stopped"
    );
    let cpu = cpu_secs(pid) - cpu_before;
    let (_, peak) = rss_kib(pid);
    assert!(
        daemon.is_running(),
        "{label}: pbxtap exited:\n{}",
        daemon.stderr()
    );
    let highest = expect - 1;
    // Drops reported after the last delivery are not seen: allow for none uncounted.
    assert_eq!(
        seen.events + seen.counted_drops,
        highest,
        "{label}: {} delivered + {} counted drops != {highest} published",
        seen.events,
        seen.counted_drops
    );
    let secs = seen
        .last
        .unwrap()
        .duration_since(seen.first.unwrap())
        .as_secs_f64();
    seen.latencies.sort_unstable();
    println!(
        "figure: nats {label}: {} events in {secs:.2} s = {:.0} events/s delivered, {} dropped \
         and counted; latency p50 {} us p99 {} us; pbxtap CPU {:.2} s per million events; \
         peak RSS {peak} KiB",
        seen.events,
        seen.events as f64 / secs,
        seen.counted_drops,
        pct(&seen.latencies, 0.5),
        pct(&seen.latencies, 0.99),
        cpu * 1e6 / seen.events as f64,
    );
}

fn idle(rt: &tokio::runtime::Runtime) {
    let nats = NatsServer::start(common::free_port(), &[]);
    let mut cfg = ReplayConfig::new(common::bench::recording_files());
    cfg.repeat = 0;
    let peer = rt.block_on(replay::start(cfg)).unwrap();
    let daemon = Daemon::start(&config(&peer.address, &nats_sink(nats.port)), &[], false);
    daemon.wait_stderr(Duration::from_secs(10), "AMI connected");
    std::thread::sleep(Duration::from_secs(3));
    let (rss, peak) = rss_kib(daemon.child.id());
    println!("figure: idle, one NATS sink, AMI connected: RSS {rss} KiB, peak {peak} KiB");
}

fn metrics(rt: &tokio::runtime::Runtime, bench: bool) {
    let nats = NatsServer::start(common::free_port(), &[]);
    // A fake Asterisk each: one serves one connection at a time.
    let peer = || {
        let mut cfg = ReplayConfig::new(common::bench::recording_files());
        cfg.repeat = 0;
        rt.block_on(replay::start(cfg)).unwrap()
    };
    let (peer, peer2) = (peer(), peer());
    let address = format!("127.0.0.1:{}", common::free_port());
    let with = format!("[metrics]\nenabled = true\nlisten = \"{address}\"\n");
    let plain = Daemon::start(&config(&peer.address, &nats_sink(nats.port)), &[], false);
    let served = Daemon::start(
        &config(&peer2.address, &format!("{with}{}", nats_sink(nats.port))),
        &[],
        false,
    );
    plain.wait_stderr(Duration::from_secs(10), "AMI connected");
    served.wait_stderr(Duration::from_secs(10), "AMI connected");
    let scrapes = if bench { 1000 } else { 20 };
    let mut took = Vec::with_capacity(scrapes);
    for _ in 0..scrapes {
        let t = Instant::now();
        let page = pbxtap::metrics::fetch(&address, Duration::from_secs(5)).expect("scrape");
        took.push(t.elapsed().as_micros() as u64);
        assert!(page.get("pbxtap_ami_connected").is_some());
    }
    took.sort_unstable();
    // Both settle as idle does before their memory is read.
    std::thread::sleep(Duration::from_secs(3));
    let (rss_plain, _) = rss_kib(plain.child.id());
    let (rss_served, peak_served) = rss_kib(served.child.id());
    println!(
        "figure: metrics: idle RSS {rss_plain} KiB without, {rss_served} KiB with the endpoint after {scrapes} scrapes (peak {peak_served} KiB); a scrape p50 {} µs, p99 {} µs, max {} µs",
        pct(&took, 0.50),
        pct(&took, 0.99),
        took.last().unwrap()
    );
}

fn soak(rt: &tokio::runtime::Runtime, bench: bool) {
    let secs: u64 = std::env::var("PBXTAP_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if bench { 600 } else { 6 });
    let (step, reference) = if bench { (10, 60) } else { (1, 2) };
    let mut cfg = ReplayConfig::new(common::bench::recording_files());
    cfg.repeat = usize::MAX / 1024;
    let peer = rt.block_on(replay::start(cfg)).unwrap();
    let dead = |_| common::free_port();
    let ports: Vec<u16> = (0..3).map(dead).collect();
    let sinks = format!(
        "{}[[sinks]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\ntopic = \"pbx\"\n\
         [[sinks]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\ndialect = \"native\"\n",
        nats_sink(ports[0]),
        ports[1],
        ports[2]
    );
    let mut daemon = Daemon::start(&config(&peer.address, &sinks), &[], false);
    let pid = daemon.child.id();
    println!(
        "{:>6} {:>9} {:>9} {:>14}",
        "secs", "RSS KiB", "peak KiB", "AMI msgs sent"
    );
    let start = Instant::now();
    let (mut at_ref, mut worst) = (None, 0u64);
    for t in (step..=secs).step_by(step as usize) {
        std::thread::sleep(
            (start + Duration::from_secs(t)).saturating_duration_since(Instant::now()),
        );
        let (rss, peak) = rss_kib(pid);
        let sent = peer.stats.sent.load(std::sync::atomic::Ordering::Relaxed);
        println!("{t:>6} {rss:>9} {peak:>9} {sent:>14}");
        if t == reference {
            at_ref = Some(rss);
        }
        if let Some(r) = at_ref {
            worst = worst.max(rss.abs_diff(r));
        }
    }
    assert!(
        daemon.is_running(),
        "pbxtap exited under the flood:\n{}",
        daemon.stderr()
    );
    let (rss, peak) = rss_kib(pid);
    let at_ref = at_ref.expect("a sample at the reference point");
    println!(
        "figure: soak {secs} s, every sink down: RSS {at_ref} KiB at {reference} s, {rss} KiB at \
         the end, at most {worst} KiB from the reference; peak {peak} KiB"
    );
    assert!(worst <= 1024, "RSS moved {worst} KiB after {reference} s");
}

fn main() {
    let args = common::bench::Args::from_env();
    let (bench, run) = (args.bench, |part: &str| args.run(part));
    let rt = tokio::runtime::Runtime::new().unwrap();
    if run("idle") {
        idle(&rt);
    }
    if run("nats") {
        // Rounds of the recordings: about 140 events and 764 AMI messages each.
        let rounds = if bench { 10_000 } else { 20 };
        nats_run(&rt, rounds, None, "flood");
        nats_run(
            &rt,
            if bench { 20 } else { 2 },
            Some(Duration::from_micros(200)),
            "paced",
        );
    }
    if run("metrics") {
        metrics(&rt, bench);
    }
    if run("soak") {
        soak(&rt, bench);
    }
}
