//! A fleet of appliances on one NATS cluster, for tests/fleet.rs (a handful of boxes) and
//! benches/fleet.rs (fifty and more): a three-node nats-server cluster with a replicated
//! JetStream stream on loopback, N real `pbxtap run` processes each fed by its own
//! replaying fake Asterisk, one node killed (the stream's leader) and restarted during the
//! run, and one appliance's link cut for a while. Then the stream is read back: every event
//! of every appliance must be in it exactly once, by its id (`Nats-Msg-Id`).
//!
//! The cut appliance reaches the cluster through [`Link`], a TCP relay per node that can
//! refuse and break every connection. The nodes run with `--no_advertise`, so no client
//! learns addresses that would bypass it: each appliance's `url` names all three nodes,
//! which is the seed list it fails over on.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use pbxtap::ami::replay::{self, ReplayConfig, ReplayPeer};
use pbxtap::metrics::{fetch, Scrape};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::bench::{proc_rss_kib, recording_files};
use super::daemon::Daemon;
use super::nats::NatsServer;
use super::{free_port, json_u64, until_every};

/// The stream every appliance publishes into.
pub const STREAM: &str = "FLEET";
/// How long the run may take to settle after the feeds end before it fails.
const SETTLE: Duration = Duration::from_secs(120);

/// What feeds each appliance, and its ring.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Times each fake Asterisk replays every recording.
    pub passes: usize,
    /// How long each fake Asterisk takes to replay its stream (paced evenly).
    pub time: Duration,
    /// `buffers.per_sink` of every appliance.
    pub per_sink: usize,
}

/// What one run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// pbxtap processes, each with its own fake Asterisk.
    pub appliances: usize,
    pub feed: Feed,
    /// When the stream leader's node is killed, and how long it stays down.
    pub node_down: (Duration, Duration),
    /// When appliance 0's link is cut, and for how long.
    pub cut: (Duration, Duration),
}

/// What the stream held, and what the appliances said, at the end.
#[derive(Debug, Default)]
pub struct Report {
    /// Events the appliances published (their metrics' `pbxtap_events_published_total`).
    pub published: u64,
    /// Distinct event ids in the stream.
    pub stored: u64,
    /// Ids in the stream more than once (each extra copy counted).
    pub duplicates: u64,
    /// Events published that are not in the stream.
    pub missing: u64,
    /// Events the appliances' NATS sinks counted as dropped (ring overflow).
    pub dropped: u64,
    /// From the first event's time to the last one stored.
    pub span: Duration,
    /// Event time to the stream's store time, µs: p50, p99, max.
    pub latency_us: (u64, u64, u64),
    /// The same for the appliances whose link stayed up.
    pub latency_uncut_us: (u64, u64, u64),
    /// Resident memory of each pbxtap at the end and at its peak, KiB: (median, max).
    pub rss_kib: (u64, u64),
    pub peak_rss_kib: (u64, u64),
    /// `system.sink_down` events appliance 0 published (its link was cut).
    pub cut_sink_downs: u64,
    /// The node killed, and the stream's leader after the restart.
    pub killed: String,
    pub leader_after: String,
}

/// Three clustered nats-server nodes with JetStream, storing under `dir`.
pub struct Cluster {
    pub nodes: Vec<NatsServer>,
}

impl Cluster {
    pub fn start(dir: &Path) -> Cluster {
        let routes_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = routes_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..3)
            .map(|i| {
                let store = dir.join(format!("n{i}"));
                NatsServer::start(
                    free_port(),
                    &[
                        "-js",
                        "-sd",
                        store.to_str().unwrap(),
                        "-n",
                        &format!("n{i}"),
                        "--cluster_name",
                        "fleet",
                        "--cluster",
                        &format!("nats://127.0.0.1:{}", routes_ports[i]),
                        "--routes",
                        &routes,
                        "--no_advertise",
                    ],
                )
            })
            .collect();
        Cluster { nodes }
    }

    /// Every node's URL, comma-separated: the seed list.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client of the whole cluster (it fails over as the appliances do).
    pub async fn connect(&self) -> async_nats::Client {
        let seeds: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .map(|n| n.url().parse().unwrap())
            .collect();
        async_nats::connect(seeds)
            .await
            .expect("a client of the cluster")
    }

    /// The node called `name` (`n0`..`n2`).
    fn node(&mut self, name: &str) -> &mut NatsServer {
        let i: usize = name.trim_start_matches('n').parse().expect("a node name");
        &mut self.nodes[i]
    }
}

/// Creates the stream `FLEET` on `fleet.>` with `replicas` copies, once the server or
/// cluster has a JetStream leader (it refuses until then).
pub async fn create_stream(client: &async_nats::Client, replicas: usize) {
    let js = jetstream::new(client.clone());
    let mut last = String::new();
    super::until(
        "the cluster to accept the FLEET stream",
        Duration::from_secs(60),
        async || match js
            .get_or_create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec!["fleet.>".into()],
                storage: stream::StorageType::File,
                num_replicas: replicas,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
        {
            Ok(_) => true,
            Err(e) => {
                if e.to_string() != last {
                    eprintln!("creating the stream: {e}; retrying");
                    last = e.to_string();
                }
                false
            }
        },
    )
    .await;
}

/// The stream's leader node, when it has one.
async fn leader(client: &async_nats::Client) -> Option<String> {
    let js = jetstream::new(client.clone());
    let mut s = js.get_stream(STREAM).await.ok()?;
    s.info().await.ok()?.cluster.as_ref()?.leader.clone()
}

/// A TCP relay to one node, standing for an appliance's site link: cut, it breaks every
/// connection through it and refuses new ones until mended.
pub struct Link {
    pub port: u16,
    cut: watch::Sender<bool>,
}

impl Link {
    pub async fn start(target: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, is_cut) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *is_cut.borrow() {
                    continue; // dropped: the connection is refused
                }
                let mut is_cut = is_cut.clone();
                tokio::spawn(async move {
                    let Ok(mut out) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = is_cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Link { port, cut }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// One appliance: its fake Asterisk and its pbxtap, publishing with JetStream to
/// `fleet.<host>.<class>.<event>` on the servers `urls`.
pub struct Appliance {
    pub host: String,
    peer: ReplayPeer,
    pub daemon: Daemon,
    metrics: String,
}

impl Appliance {
    pub async fn start(i: usize, feed: &Feed, urls: &str, recordings: &[Vec<u8>]) -> Appliance {
        let mut all = Vec::new();
        for _ in 0..feed.passes {
            all.extend(recordings.iter().cloned());
        }
        let mut cfg = ReplayConfig::new(all);
        let messages: usize = recordings
            .iter()
            .map(|r| replay::messages_of(r).len())
            .sum::<usize>()
            * feed.passes;
        cfg.pace = Some(feed.time / messages.max(1) as u32);
        let peer = replay::start(cfg).await.unwrap();
        let host = format!("pbx-{i:03}");
        let metrics = format!("127.0.0.1:{}", free_port());
        let config = format!(
            "host = \"{host}\"\n\
             [ami]\naddress = \"{}\"\nusername = \"tap\"\nsecret = \"tapsecret\"\n\
             [buffers]\nper_sink = {}\n\
             [watchdog]\nenabled = false\n\
             [metrics]\nenabled = true\nlisten = \"{metrics}\"\n\
             [[sinks]]\ntype = \"nats\"\nurl = \"{urls}\"\ndialect = \"native\"\n\
             subject = \"fleet.{{host}}\"\njetstream = true\nname = \"{host}\"\n",
            peer.address, feed.per_sink
        );
        let daemon = Daemon::start(&config, &[], true);
        Appliance {
            host,
            peer,
            daemon,
            metrics,
        }
    }

    /// Stops its pbxtap (SIGTERM, which sends what its ring holds) and waits for it.
    /// Stops it (SIGTERM): the events its NATS sink delivered while draining, which
    /// include what the normalizer still held (a CDR in its grace) and published then.
    pub async fn stop(self) -> u64 {
        let (_, stderr) = self.daemon.stop(Duration::from_secs(10)).await;
        let drained = stderr
            .lines()
            .find(|l| l.contains("code=\"sink_drained\"") && l.contains("nats#0"))
            .unwrap_or_else(|| panic!("no drain of nats#0 logged:\n{stderr}"));
        let at = drained.find(" delivered=").expect("delivered=") + " delivered=".len();
        drained[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a count after delivered=")
    }

    fn scrape(&self) -> Option<Scrape> {
        fetch(&self.metrics, Duration::from_secs(2)).ok()
    }

    /// Its NATS sink's figures now: (published, delivered, dropped, backlog).
    pub fn counts(&self) -> Option<(u64, u64, u64, u64)> {
        let s = self.scrape()?;
        let get = |k: &str| s.get(k).map(|v| v as u64);
        Some((
            get("pbxtap_events_published_total")?,
            get("pbxtap_sink_delivered_total{sink=\"nats#0\"}")?,
            get("pbxtap_sink_dropped_total{sink=\"nats#0\"}")?,
            get("pbxtap_sink_backlog{sink=\"nats#0\"}")?,
        ))
    }

    /// Fed, and every event it published delivered or dropped, nothing waiting:
    /// (published, dropped).
    pub fn settled(&self) -> Option<(u64, u64)> {
        use std::sync::atomic::Ordering;
        if self.peer.stats.sent.load(Ordering::Relaxed) < self.peer.total {
            return None;
        }
        let (published, delivered, dropped, backlog) = self.counts()?;
        (backlog == 0 && delivered + dropped == published).then_some((published, dropped))
    }
}

/// Runs `plan` and reads the stream back.
pub async fn run(plan: &Plan) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path());
    let admin = cluster.connect().await;
    create_stream(&admin, 3).await;
    // Appliance 0 reaches each node through its own link.
    let mut links = Vec::new();
    for n in &cluster.nodes {
        links.push(Link::start(n.port).await);
    }
    let link_urls = links
        .iter()
        .map(|l| format!("nats://127.0.0.1:{}", l.port))
        .collect::<Vec<_>>()
        .join(",");
    let recordings = recording_files();
    let mut fleet = Vec::new();
    for i in 0..plan.appliances {
        let urls = if i == 0 {
            link_urls.clone()
        } else {
            cluster.urls()
        };
        fleet.push(Appliance::start(i, &plan.feed, &urls, &recordings).await);
    }
    let start = Instant::now();
    eprintln!(
        "fleet: {} appliances on {}, feeding for {:?}",
        plan.appliances,
        cluster.urls(),
        plan.feed.time
    );

    // The disruptions, in the order they are due.
    let mut steps: Vec<(Duration, Step)> = vec![
        (plan.node_down.0, Step::Kill),
        (plan.node_down.0 + plan.node_down.1, Step::Restart),
        (plan.cut.0, Step::Cut),
        (plan.cut.0 + plan.cut.1, Step::Mend),
    ];
    steps.sort_by_key(|s| s.0);
    let mut killed = String::new();
    for (at, step) in steps {
        tokio::time::sleep_until((start + at).into()).await;
        eprintln!("fleet: {:?} at {:?}", step, start.elapsed());
        match step {
            Step::Kill => {
                killed = leader(&admin).await.expect("the stream has a leader");
                tokio::task::block_in_place(|| cluster.node(&killed).kill());
            }
            Step::Restart => tokio::task::block_in_place(|| cluster.node(&killed).restart()),
            Step::Cut => links.iter().for_each(|l| l.set_cut(true)),
            Step::Mend => links.iter().for_each(|l| l.set_cut(false)),
        }
    }

    // Settled: every appliance fed and drained, twice in a row with the same counts (an
    // event published after one look, a late `sink_up`, shows as a change).
    let mut last: Vec<Option<(u64, u64)>> = vec![None; fleet.len()];
    let mut settled = Vec::new();
    until_every(
        "every appliance fed, and its events delivered or dropped",
        plan.feed.time + SETTLE,
        Duration::from_millis(500),
        async || {
            let now: Vec<_> =
                tokio::task::block_in_place(|| fleet.iter().map(Appliance::settled).collect());
            let done = now.iter().all(Option::is_some) && now == last;
            settled = now.iter().flatten().copied().collect();
            last = now;
            done
        },
    )
    .await;
    eprintln!("fleet: settled at {:?}", start.elapsed());

    let mut report = Report {
        killed,
        leader_after: leader(&admin).await.unwrap_or_default(),
        ..Default::default()
    };
    let mut rss = Vec::new();
    let mut peak = Vec::new();
    for (a, &(published, dropped)) in fleet.iter().zip(&settled) {
        report.published += published;
        report.dropped += dropped;
        let (now, high) = proc_rss_kib(&a.daemon.child.id().to_string());
        rss.push(now);
        peak.push(high);
    }
    report.rss_kib = median_max(&mut rss);
    report.peak_rss_kib = median_max(&mut peak);
    let expected: HashMap<String, u64> = fleet
        .iter()
        .zip(&settled)
        .map(|(a, s)| (a.host.clone(), s.0))
        .collect();
    read_back(&admin, STREAM, &fleet[0].host, &expected, &mut report).await;
    report
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Kill,
    Restart,
    Cut,
    Mend,
}

/// One message of the stream: its id's parts, its subject, the event's time and when the
/// stream stored it (µs since the epoch).
#[derive(Debug)]
pub struct Stored {
    pub host: String,
    pub boot: String,
    pub seq: u64,
    pub subject: String,
    pub time: u64,
    pub stored: u64,
}

/// Every message of `stream`, in the stream's order.
pub async fn stored(client: &async_nats::Client, stream: &str) -> Vec<Stored> {
    let js = jetstream::new(client.clone());
    let mut s = js.get_stream(stream).await.unwrap();
    let total = s.info().await.unwrap().state.messages;
    let consumer = s
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    for _ in 0..total {
        let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .expect("the stream's messages within 30 s")
            .expect("a message")
            .expect("a readable message");
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string())
            .expect("every message has a Nats-Msg-Id");
        let mut parts = id.rsplitn(3, '.');
        let (Some(seq), Some(boot), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("an id that is not <host>.<boot>.<seq>: {id}");
        };
        assert!(
            m.subject.starts_with(&format!("fleet.{host}.")),
            "{id} on {}: the subject names another appliance",
            m.subject
        );
        let published = m.info().expect("JetStream metadata").published;
        out.push(Stored {
            host: host.to_string(),
            boot: boot.to_string(),
            seq: seq.parse().expect("a numeric seq"),
            subject: m.subject.to_string(),
            time: json_u64(&m.payload, "time").expect("an event time"),
            stored: (published.unix_timestamp_nanos() / 1000) as u64,
        });
    }
    out
}

/// Reads every message of `stream`: ids counted per appliance against what each
/// published (`expected`, one boot each), latencies, and the `sink_down` events of
/// `cut_host`.
pub async fn read_back(
    client: &async_nats::Client,
    stream: &str,
    cut_host: &str,
    expected: &HashMap<String, u64>,
    report: &mut Report,
) {
    // host → boot → (seq → copies)
    let mut seen: HashMap<String, HashMap<String, HashMap<u64, u32>>> = HashMap::new();
    let mut all = Vec::new();
    let mut uncut = Vec::new();
    let (mut first, mut last) = (u64::MAX, 0u64);
    for m in stored(client, stream).await {
        *seen
            .entry(m.host.clone())
            .or_default()
            .entry(m.boot)
            .or_default()
            .entry(m.seq)
            .or_default() += 1;
        if m.host == cut_host && m.subject.ends_with(".system.sink_down") {
            report.cut_sink_downs += 1;
        }
        let latency = m.stored.saturating_sub(m.time);
        all.push(latency);
        if m.host != cut_host {
            uncut.push(latency);
        }
        first = first.min(m.time);
        last = last.max(m.stored);
    }
    report.span = Duration::from_micros(last.saturating_sub(first));
    report.latency_us = percentiles(&mut all);
    report.latency_uncut_us = percentiles(&mut uncut);
    for (host, published) in expected {
        let boots = seen.remove(host).unwrap_or_default();
        assert!(boots.len() <= 1, "{host} stored under several boot ids");
        let seqs = boots.into_values().next().unwrap_or_default();
        for (_, copies) in seqs.iter() {
            report.stored += 1;
            report.duplicates += u64::from(copies - 1);
        }
        report.missing += (1..=*published).filter(|s| !seqs.contains_key(s)).count() as u64;
    }
    assert!(
        seen.is_empty(),
        "events from unknown appliances: {:?}",
        seen.keys()
    );
}

fn percentiles(v: &mut [u64]) -> (u64, u64, u64) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

fn median_max(v: &mut [u64]) -> (u64, u64) {
    v.sort_unstable();
    (v[v.len() / 2], v[v.len() - 1])
}
