//! One appliance behind a flaky site link, two ways, for benches/fleet.rs: publishing with
//! JetStream straight to the central server (`Layout::Direct`: an outage waits in pbxtap's
//! ring), or to a leaf node on the appliance with its own JetStream domain and a local
//! stream that the central stream sources from (`Layout::Leaf`: an outage waits on the
//! leaf's disk). The link is cut for longer than the ring holds; the central stream is read
//! back by id, and what the leaf node costs the appliance is measured.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};

use super::bench::{proc_rss_kib, recording_files};
use super::fleet::{read_back, Appliance, Feed, Link, Report};
use super::nats::NatsServer;
use super::{free_port, until_every};

/// Where the appliance's pbxtap publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// To the central server, through the site link.
    Direct,
    /// To a leaf node on the appliance, whose leaf connection is the site link.
    Leaf,
}

/// What a run found.
#[derive(Debug)]
pub struct SiteReport {
    /// The central stream read back (`missing` is what never arrived).
    pub stream: Report,
    /// From the link's mending to the central stream holding every event that will come.
    pub catch_up: Duration,
    /// The leaf node's resident memory, now and at its peak, KiB (0 without one).
    pub leaf_rss_kib: (u64, u64),
    /// pbxtap's, for comparison.
    pub pbxtap_rss_kib: (u64, u64),
}

/// The central stream; with a leaf, it sources the leaf's `SITE`.
const CENTRAL: &str = "FLEET";

/// A nats-server on `port` from a config file (JetStream with `domain`, plus `extra`).
fn server(dir: &Path, port: u16, name: &str, extra: &str) -> NatsServer {
    let conf = dir.join(format!("{name}.conf"));
    let store = dir.join(name);
    std::fs::write(
        &conf,
        format!(
            "server_name: {name}\njetstream {{ store_dir: \"{}\", domain: {name} }}\n{extra}\n",
            store.display()
        ),
    )
    .unwrap();
    NatsServer::start(port, &["-c", conf.to_str().unwrap()])
}

async fn create(client: &async_nats::Client, cfg: stream::Config) {
    let js = jetstream::new(client.clone());
    super::until(
        "JetStream to create a stream",
        Duration::from_secs(30),
        async || js.get_or_create_stream(cfg.clone()).await.is_ok(),
    )
    .await;
}

async fn stored(client: &async_nats::Client) -> Option<u64> {
    let js = jetstream::new(client.clone());
    let mut s = js.get_stream(CENTRAL).await.ok()?;
    Some(s.info().await.ok()?.state.messages)
}

/// Feeds one appliance for `feed`, cuts its site link at `cut.0` for `cut.1`, and reads
/// the central stream back once everything that will arrive has.
pub async fn run(layout: Layout, feed: &Feed, cut: (Duration, Duration)) -> SiteReport {
    let dir = tempfile::tempdir().unwrap();
    let (client_port, leaf_port) = (free_port(), free_port());
    // The site link: to the central server's client port (direct) or its leaf node port.
    let link = Link::start(match layout {
        Layout::Direct => client_port,
        Layout::Leaf => leaf_port,
    })
    .await;
    // The central server tells leaf nodes to come back through the link, not around it.
    let central = server(
        dir.path(),
        client_port,
        "hub",
        &format!(
            "leafnodes {{ listen: \"127.0.0.1:{leaf_port}\", advertise: \"127.0.0.1:{}\" }}",
            link.port
        ),
    );
    let hub = super::nats::connect(&central.url()).await;
    let fleet_subjects = || vec!["fleet.>".to_string()];
    let (leaf, url) = match layout {
        Layout::Direct => {
            create(
                &hub,
                stream::Config {
                    name: CENTRAL.into(),
                    subjects: fleet_subjects(),
                    storage: stream::StorageType::File,
                    ..Default::default()
                },
            )
            .await;
            (None, format!("nats://127.0.0.1:{}", link.port))
        }
        Layout::Leaf => {
            let leaf = server(
                dir.path(),
                free_port(),
                "site",
                &format!(
                    "leafnodes {{ remotes: [ {{ url: \"nats://127.0.0.1:{}\" }} ] }}",
                    link.port
                ),
            );
            let local = super::nats::connect(&leaf.url()).await;
            create(
                &local,
                stream::Config {
                    name: "SITE".into(),
                    subjects: fleet_subjects(),
                    storage: stream::StorageType::File,
                    ..Default::default()
                },
            )
            .await;
            create(
                &hub,
                stream::Config {
                    name: CENTRAL.into(),
                    storage: stream::StorageType::File,
                    sources: Some(vec![stream::Source {
                        name: "SITE".into(),
                        domain: Some("site".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
            )
            .await;
            let url = leaf.url();
            (Some(leaf), url)
        }
    };
    let appliance = Appliance::start(0, feed, &url, &recording_files()).await;
    let start = Instant::now();
    tokio::time::sleep_until((start + cut.0).into()).await;
    link.set_cut(true);
    tokio::time::sleep_until((start + cut.0 + cut.1).into()).await;
    link.set_cut(false);
    let mended = Instant::now();
    eprintln!("site link ({layout:?}): cut at {:?} for {:?}", cut.0, cut.1);
    // Caught up: the central stream holds every event published by the mending that was
    // not dropped.
    let (published, _, dropped, _) =
        tokio::task::block_in_place(|| appliance.counts()).expect("the appliance's metrics");
    super::until(
        "the central stream to catch up",
        Duration::from_secs(120),
        async || stored(&hub).await >= Some(published - dropped),
    )
    .await;
    let catch_up = mended.elapsed();

    // Settled: fed, the ring drained (delivered or dropped), and the central stream holds
    // what was delivered (into it, or into the leaf's stream it sources from).
    let mut settled = None;
    until_every(
        "the appliance settled and the central stream caught up",
        feed.time + Duration::from_secs(120),
        Duration::from_millis(100),
        async || {
            let Some((published, dropped)) = tokio::task::block_in_place(|| appliance.settled())
            else {
                return false;
            };
            settled = Some((published, dropped));
            stored(&hub).await == Some(published - dropped)
        },
    )
    .await;
    let (published, dropped) = settled.unwrap();
    let mut stream = Report {
        published,
        dropped,
        ..Default::default()
    };
    let expected = HashMap::from([(appliance.host.clone(), published)]);
    read_back(&hub, CENTRAL, &appliance.host, &expected, &mut stream).await;
    SiteReport {
        stream,
        catch_up,
        leaf_rss_kib: leaf
            .as_ref()
            .map_or((0, 0), |l| proc_rss_kib(&l.pid().to_string())),
        pbxtap_rss_kib: proc_rss_kib(&appliance.daemon.child.id().to_string()),
    }
}
