//! `pbxtap demo`: the real pipeline (AMI client, normalizer, bus, sinks) fed by a fake
//! Asterisk on loopback that replays the embedded recordings, printing every event on
//! stdout and serving them as an Enswitch WebSocket feed (and, with `--portsip`, a
//! PortSIP v22 one), each announced on stderr with the command that watches it.
//!
//! By default the recordings play at their recorded pace (`ami::pace`), again and again
//! until Ctrl-C; `--fast` plays them once, as fast as they go, and ends (for scripts).

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::replay::{serve, tap_until_done, Pace};
use super::start_sinks;
use crate::bus::Bus;
use crate::config::Config;
use crate::dialect::portsip::Version;
use crate::event;
use crate::sink::websocket::{Protocol, UserConfig, WebsocketSink, WebsocketSinkConfig};
use crate::sink::{websocket::portsip::Role, SinkConfig};

/// The recorded Asterisk session the demo replays: registrations, an answered call,
/// hold/unhold, a busy call, a call nobody answers, and a queue call.
const RECORDINGS: &[&[u8]] = &[
    include_bytes!("../../tests/fixtures/ami/01-register-unregister.ami"),
    include_bytes!("../../tests/fixtures/ami/02-call-answered.ami"),
    include_bytes!("../../tests/fixtures/ami/03-call-hold-unhold.ami"),
    include_bytes!("../../tests/fixtures/ami/04-call-busy-dialplan.ami"),
    include_bytes!("../../tests/fixtures/ami/07-call-noanswer-timeout.ami"),
    include_bytes!("../../tests/fixtures/ami/11-queue-answered.ami"),
];

/// Where the feeds are served (any free loopback port when one is taken), and how a
/// client gets in.
const ENSWITCH_AT: &str = "127.0.0.1:4875";
const AUTHKEY: &str = "demo";
const PORTSIP_AT: &str = "127.0.0.1:8887";
const PORTSIP_LOGIN: &str =
    r#"{"command":"auth","username":"demo","password":"demo-password","domain":"demo.local"}"#;
const PORTSIP_SUBSCRIBE: &str =
    r#"{"command":"subscribe","topics":["extension_events","cdr_events","queue_events"]}"#;

/// How the demo runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Once, as fast as it goes, then end.
    pub fast: bool,
    /// Serve the PortSIP feed too.
    pub portsip: bool,
}

/// A feed, announced on stderr; the demo goes on without it if it cannot listen.
async fn feed(
    bus: &Bus,
    name: &str,
    preferred: &str,
    cfg: WebsocketSinkConfig,
    announce: impl Fn(std::net::SocketAddr) -> String,
) -> Option<(String, JoinHandle<()>)> {
    for listen in [preferred, "127.0.0.1:0"] {
        let cfg = WebsocketSinkConfig {
            listen: Some(listen.into()),
            ..cfg.clone()
        };
        match WebsocketSink::new(&cfg, bus.publisher()).await {
            Ok(sink) => {
                if let Ok(addr) = sink.local_addr() {
                    eprintln!("{}", announce(addr));
                }
                let rx = bus.subscribe(name);
                return Some((name.to_string(), tokio::spawn(sink.run(rx))));
            }
            Err(e) => tracing::debug!(listen, error = %e, "demo feed not served here"),
        }
    }
    None
}

fn enswitch() -> WebsocketSinkConfig {
    WebsocketSinkConfig {
        authkey: Some(AUTHKEY.into()),
        ..Default::default()
    }
}

fn portsip() -> WebsocketSinkConfig {
    WebsocketSinkConfig {
        protocol: Protocol::Portsip,
        version: Version::V22,
        // Loopback only: plain WS, so wscat needs no certificate.
        tls: Some(false),
        domain: Some("demo.local".into()),
        tenant_id: Some("1".into()),
        users: vec![UserConfig {
            username: "demo".into(),
            domain: "demo.local".into(),
            extension_number: None,
            password: Some("demo-password".into()),
            password_file: None,
            role: Role::Admin,
            queues: Vec::new(),
        }],
        ..Default::default()
    }
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let mut cfg = Config {
        host: "demo".into(),
        sinks: vec![SinkConfig::Stdout(Default::default())],
        ..Config::default()
    };
    cfg.buffers.per_sink = 4096;
    let recordings = RECORDINGS.iter().map(|r| r.to_vec()).collect();
    let pace = if opts.fast {
        Pace::Fast
    } else {
        Pace::RecordedForever
    };
    let _peer = serve(recordings, pace, &mut cfg).await?;
    let bus = Arc::new(Bus::new(cfg.buffers.per_sink, event::text(&cfg.host)));
    let mut sinks = start_sinks(&cfg, &bus).await?;
    sinks.extend(
        feed(&bus, "websocket#enswitch", ENSWITCH_AT, enswitch(), |a| {
            format!("demo: Enswitch feed; watch it with\n  wscat --connect 'ws://{a}/events/websocket/?authkey={AUTHKEY}'")
        })
        .await,
    );
    if opts.portsip {
        sinks.extend(
            feed(&bus, "websocket#portsip", PORTSIP_AT, portsip(), |a| {
                format!("demo: PortSIP v22 feed; log in, subscribe and watch it with\n  wscat --connect ws://{a}/wsi --wait -1 --execute '{PORTSIP_LOGIN}' --execute '{PORTSIP_SUBSCRIBE}'")
            })
            .await,
        );
    }
    if !opts.fast {
        eprintln!(
            "demo: playing the recorded calls at their recorded pace, over and over; Ctrl-C stops"
        );
    }
    tap_until_done(&cfg, bus, sinks).await;
    Ok(())
}
