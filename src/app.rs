//! The daemon's top level: wires config, AMI tap, bus and sinks; `run` and `demo`.

use std::path::PathBuf;

use crate::config::Config;

/// `pbxtap run`: taps AMI and forwards to the configured sinks until SIGTERM/SIGINT.
pub async fn run(_cfg: Config, _path: PathBuf) -> anyhow::Result<()> {
    anyhow::bail!("not wired yet")
}

/// `pbxtap demo`: replays the embedded recording through the pipeline to stdout.
pub async fn demo() -> anyhow::Result<()> {
    anyhow::bail!("not wired yet")
}
