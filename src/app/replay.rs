//! `pbxtap replay FILE`: a capture (`pbxtap capture`) or one of the project's recordings,
//! through the real pipeline: a fake Asterisk on loopback (`ami::replay`) serves it to the
//! real AMI client, normalizer, bus and sinks, as the demo does. Events go to stdout, or
//! to the sinks `--config` names, so a user sees what their consumer would have got. At
//! full speed, or with `--paced` at the pace Asterisk's `Timestamp`s recorded.
//!
//! Bounds: the file is read whole, at most [`MAX_FILE`] bytes; it must be AMI
//! (`ami::recording::check`, which names the first line that is not).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::task::JoinHandle;

use super::{drain, start_sinks, termination};
use crate::ami::client::{self, AmiHealth, ClientConfig};
use crate::ami::config::AmiAuth;
use crate::ami::recording;
use crate::ami::replay::{self, ReplayConfig, ReplayPeer};
use crate::bus::Bus;
use crate::config::Config;
use crate::event;
use crate::normalize::Normalizer;
use crate::tap::Tap;

/// The largest file `replay` reads: a capture's default `--max-bytes`.
pub const MAX_FILE: u64 = super::capture::DEFAULT_MAX_BYTES;

/// How fast a fake Asterisk plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Once, as fast as it goes, then it closes.
    Fast,
    /// Once, at the recorded pace, then it closes.
    Recorded,
    /// At the recorded pace, over and over (the demo).
    RecordedForever,
}

/// How a replay runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub file: PathBuf,
    pub paced: bool,
}

/// Starts a fake Asterisk on loopback serving `recordings`, and points `cfg.ami` at it.
pub(crate) async fn serve(
    recordings: Vec<Vec<u8>>,
    pace: Pace,
    cfg: &mut Config,
) -> anyhow::Result<ReplayPeer> {
    let mut rc = ReplayConfig::new(recordings);
    rc.close_after_replay = pace != Pace::RecordedForever;
    rc.recorded_pace = pace != Pace::Fast;
    if pace == Pace::RecordedForever {
        rc.repeat = usize::MAX;
    }
    let peer = replay::start(rc.clone())
        .await
        .context("starting the replaying AMI peer")?;
    cfg.ami.address = peer.address.clone();
    cfg.ami.username = rc.username;
    cfg.ami.secret = Some(rc.secret);
    cfg.ami.auth = AmiAuth::Md5;
    cfg.ami.filter_at_source = false;
    Ok(peer)
}

/// Taps the fake Asterisk `cfg.ami` points at into `bus` until it closes (or SIGTERM /
/// SIGINT), then gives `sinks` five seconds to deliver.
pub(crate) async fn tap_until_done(
    cfg: &Config,
    bus: Arc<Bus>,
    sinks: Vec<(String, JoinHandle<()>)>,
) {
    let health = AmiHealth::default();
    let mut tap = Tap::new(
        Normalizer::new(cfg.normalize.clone()),
        bus.clone(),
        &cfg.ami.address,
    );
    let mut client_cfg = ClientConfig::from_config(
        &cfg.ami,
        Duration::from_secs(cfg.watchdog.ping_interval_secs),
    );
    client_cfg.reconnect = false;
    client::run(client_cfg, &mut tap, &health, termination()).await;
    drop(tap);
    drain(bus, sinks, Duration::from_secs(5)).await;
}

/// The file, at most [`MAX_FILE`] bytes, checked to be AMI: the stream from its banner on.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut data = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if data.len() as u64 > MAX_FILE {
        return Err(anyhow!(
            "{} is larger than replay reads ({MAX_FILE} bytes)",
            path.display()
        ));
    }
    let body = recording::check(&data).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(body.into_owned())
}

/// Replays `recording` (what [`read`] returned) into `cfg`'s sinks.
pub async fn run(mut cfg: Config, recording: Vec<u8>, paced: bool) -> anyhow::Result<()> {
    let pace = if paced { Pace::Recorded } else { Pace::Fast };
    let _peer = serve(vec![recording], pace, &mut cfg).await?;
    let bus = Arc::new(Bus::new(cfg.buffers.per_sink, event::text(&cfg.host)));
    let sinks = start_sinks(&cfg, &bus).await?;
    tap_until_done(&cfg, bus, sinks).await;
    Ok(())
}
