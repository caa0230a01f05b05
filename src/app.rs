//! The daemon's top level: wires config, AMI tap, bus and sinks; `run` and `demo`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::ami::client::{self, AmiHealth, ClientConfig};
use crate::ami::replay::{self, ReplayConfig};
use crate::bus::Bus;
use crate::config::{AmiAuth, Config};
use crate::event;
use crate::normalize::{NormalizeConfig, Normalizer};
use crate::sink::websocket::{WebsocketSink, WebsocketSinkConfig};
use crate::sink::{self, SinkConfig};
use crate::tap::Tap;

/// The recorded Asterisk session `pbxtap demo` replays: registrations, an answered call,
/// hold/unhold, a busy call, a call nobody answers, and a queue call.
const DEMO_RECORDINGS: &[&[u8]] = &[
    include_bytes!("../tests/fixtures/ami/01-register-unregister.ami"),
    include_bytes!("../tests/fixtures/ami/02-call-answered.ami"),
    include_bytes!("../tests/fixtures/ami/03-call-hold-unhold.ami"),
    include_bytes!("../tests/fixtures/ami/04-call-busy-dialplan.ami"),
    include_bytes!("../tests/fixtures/ami/07-call-noanswer-timeout.ami"),
    include_bytes!("../tests/fixtures/ami/11-queue-answered.ami"),
];

/// Where `pbxtap demo` serves its events as an Enswitch-style WebSocket feed (any free
/// loopback port when this one is taken), and the key it asks for.
const DEMO_WEBSOCKET: &str = "127.0.0.1:4875";
const DEMO_AUTHKEY: &str = "demo";

/// The demo's WebSocket feed, announced on stderr; the demo goes on without it if it
/// cannot listen.
async fn demo_websocket(bus: &Bus) -> Option<(String, JoinHandle<()>)> {
    for listen in [DEMO_WEBSOCKET, "127.0.0.1:0"] {
        let cfg = WebsocketSinkConfig {
            listen: Some(listen.into()),
            authkey: Some(DEMO_AUTHKEY.into()),
            ..Default::default()
        };
        match WebsocketSink::new(&cfg, bus.publisher()).await {
            Ok(sink) => {
                if let Ok(addr) = sink.local_addr() {
                    eprintln!("demo: WebSocket feed at ws://{addr}/events/websocket/?authkey={DEMO_AUTHKEY}");
                }
                let name = "websocket#demo".to_string();
                let rx = bus.subscribe(&name);
                return Some((name, tokio::spawn(sink.run(rx))));
            }
            Err(e) => tracing::debug!(listen, error = %e, "demo WebSocket feed not served here"),
        }
    }
    None
}

/// Starts every configured sink, subscribed to the bus.
async fn start_sinks(cfg: &Config, bus: &Bus) -> anyhow::Result<Vec<(String, JoinHandle<()>)>> {
    let mut handles = Vec::with_capacity(cfg.sinks.len());
    for (i, s) in cfg.sinks.iter().enumerate() {
        let handle = sink::start(s, i, bus)
            .await
            .with_context(|| format!("sinks[{i}] ({})", s.kind()))?;
        handles.push((format!("{}#{i}", s.kind()), handle));
    }
    Ok(handles)
}

/// Closes the bus and gives the sinks `deadline` to deliver what their rings hold; sinks
/// still busy then are stopped. Returns how many were stopped.
async fn drain(bus: Arc<Bus>, sinks: Vec<(String, JoinHandle<()>)>, deadline: Duration) -> usize {
    drop(bus);
    let until = tokio::time::Instant::now() + deadline;
    let mut stopped = 0;
    for (name, mut handle) in sinks {
        if tokio::time::timeout_at(until, &mut handle).await.is_err() {
            tracing::warn!(sink = %name, "sink did not drain within {deadline:?}; stopping it");
            handle.abort();
            stopped += 1;
        }
    }
    stopped
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining and stopping"),
        _ = int.recv() => tracing::info!("SIGINT: draining and stopping"),
    }
}

/// `pbxtap run`: taps AMI and forwards to the configured sinks until SIGTERM/SIGINT.
pub async fn run(cfg: Config, path: PathBuf) -> anyhow::Result<()> {
    tracing::info!(config = %path.display(), ami = %cfg.ami.address, sinks = cfg.sinks.len(), "pbxtap starting");
    let bus = Arc::new(Bus::new(cfg.buffers.per_sink, event::text(&cfg.host)));
    let sinks = start_sinks(&cfg, &bus).await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let health = AmiHealth::default();
    let mut tap = Tap::new(
        Normalizer::new(NormalizeConfig::default()),
        bus.clone(),
        &cfg.ami.address,
    );
    client::run(
        ClientConfig::from_config(&cfg),
        &mut tap,
        &health,
        termination(),
    )
    .await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    drop(tap);
    let stopped = drain(bus, sinks, Duration::from_secs(cfg.buffers.drain_secs)).await;
    tracing::info!(stopped, "pbxtap stopped");
    Ok(())
}

/// `pbxtap demo`: replays the embedded recordings through a fake Asterisk on loopback and
/// the real pipeline (AMI client, normalizer, bus) to the stdout sink, and serves them as
/// an Enswitch WebSocket feed on loopback.
pub async fn demo() -> anyhow::Result<()> {
    let mut rc = ReplayConfig::new(DEMO_RECORDINGS.iter().map(|r| r.to_vec()).collect());
    rc.close_after_replay = true;
    let peer = replay::start(rc.clone())
        .await
        .context("starting the replaying AMI peer")?;
    let mut cfg = Config {
        host: "demo".into(),
        sinks: vec![SinkConfig::Stdout(Default::default())],
        ..Config::default()
    };
    cfg.ami.address = peer.address.clone();
    cfg.ami.username = rc.username;
    cfg.ami.secret = Some(rc.secret);
    cfg.ami.auth = AmiAuth::Md5;
    cfg.buffers.per_sink = 4096;
    let bus = Arc::new(Bus::new(cfg.buffers.per_sink, event::text(&cfg.host)));
    let mut sinks = start_sinks(&cfg, &bus).await?;
    sinks.extend(demo_websocket(&bus).await);
    let health = AmiHealth::default();
    let mut tap = Tap::new(
        Normalizer::new(NormalizeConfig::default()),
        bus.clone(),
        &peer.address,
    );
    let mut client_cfg = ClientConfig::from_config(&cfg);
    client_cfg.reconnect = false;
    client::run(client_cfg, &mut tap, &health, termination()).await;
    drop(tap);
    drain(bus, sinks, Duration::from_secs(5)).await;
    Ok(())
}
