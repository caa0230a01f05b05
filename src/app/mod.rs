//! The daemon's top level: wires config, AMI tap, bus and sinks; `run` here, `demo`,
//! `capture` and `replay` in their own files.

pub mod capture;
pub mod demo;
pub mod replay;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::ami::client::{self, AmiHealth, ClientConfig};
use crate::bus::Bus;
use crate::config::Config;
use crate::event;
use crate::metrics::{self, MetricsConfig, MetricsServer, Sources};
use crate::normalize::Normalizer;
use crate::sink::{self, SinkConfig};
use crate::tap::Tap;
use crate::watchdog::Watchdog;

/// Starts every configured sink, subscribed to the bus.
pub(crate) async fn start_sinks(
    cfg: &Config,
    bus: &Bus,
) -> anyhow::Result<Vec<(String, JoinHandle<()>)>> {
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
/// still busy then are stopped, and what they leave undelivered is logged. Returns how
/// many were stopped.
pub(crate) async fn drain(
    bus: Arc<Bus>,
    sinks: Vec<(String, JoinHandle<()>)>,
    deadline: Duration,
) -> usize {
    let counters = bus.sinks();
    let delivered = |name: &str| {
        counters
            .iter()
            .find(|c| c.name.as_str() == name)
            .map(|c| c.delivered.load(Ordering::Relaxed))
            .unwrap_or(0)
    };
    let before: Vec<u64> = sinks.iter().map(|(name, _)| delivered(name)).collect();
    drop(bus);
    let until = tokio::time::Instant::now() + deadline;
    let mut stopped = 0;
    for ((name, mut handle), before) in sinks.into_iter().zip(before) {
        let finished = tokio::time::timeout_at(until, &mut handle).await.is_ok();
        let during = delivered(&name).saturating_sub(before);
        if finished {
            tracing::info!(code = "sink_drained", sink = %name, delivered = during, "sink drained");
            continue;
        }
        let (left, dropped) = counters
            .iter()
            .find(|c| c.name.as_str() == name)
            .map_or((0, 0), |c| (c.backlog(), c.lost()));
        tracing::warn!(code = "sink_drain_timeout", sink = %name, delivered = during, left, dropped, "sink did not drain within {deadline:?}: {left} events undelivered left in its ring ({dropped} dropped before, when its ring overflowed); stopping it");
        handle.abort();
        stopped += 1;
    }
    stopped
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination() {
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

/// Says once which events the AMI user cannot see (`ami::permissions`).
fn tell_read_classes(ami: &crate::ami::config::AmiConfig) {
    if ami.manager_conf.as_os_str().is_empty() {
        return;
    }
    match crate::ami::permissions::check(ami) {
        Ok(missing) if missing.is_empty() => {
            tracing::info!(user = %ami.username, "the AMI user may read every class pbxtap uses");
        }
        Ok(missing) => {
            for (class, events) in missing {
                tracing::warn!(
                    code = "ami_read_class_missing",
                    user = %ami.username,
                    class,
                    "the AMI user `{}` does not get the `{class}` class (read = in {}, or ami.events): pbxtap will not see {events}",
                    ami.username,
                    ami.manager_conf.display()
                );
            }
        }
        Err(why) => {
            tracing::info!(user = %ami.username, "cannot tell which AMI classes the user may read: {why}");
        }
    }
}

/// `pbxtap run`: taps AMI and forwards to the configured sinks until SIGTERM/SIGINT;
/// SIGHUP reloads the config (see `supervise`).
pub async fn run(cfg: Config, path: PathBuf) -> anyhow::Result<()> {
    tracing::info!(config = %path.display(), ami = %cfg.ami.address, sinks = cfg.sinks.len(), "pbxtap starting");
    tell_read_classes(&cfg.ami);
    let bus = Arc::new(Bus::new(cfg.buffers.per_sink, event::text(&cfg.host)));
    let mut sinks = start_sinks(&cfg, &bus).await?;
    let health = Arc::new(AmiHealth::default());
    let watchdog = Watchdog::start(&cfg.watchdog, &bus, health.clone());
    let mut tap = Tap::new(
        Normalizer::new(cfg.normalize.clone()),
        bus.clone(),
        &cfg.ami.address,
    )
    .with_lag_warning(cfg.ami.lag_warn_ms);
    let metrics = start_metrics(&cfg.metrics, &bus, &health, &tap).await?;
    let deadline = Duration::from_secs(cfg.buffers.drain_secs);
    let mut running = cfg.clone();
    client::run(
        ClientConfig::from_config(
            &cfg.ami,
            Duration::from_secs(cfg.watchdog.ping_interval_secs),
        ),
        &mut tap,
        &health,
        supervise(&path, &mut running, &mut sinks, &bus),
    )
    .await;
    watchdog.stopping();
    if let Some(m) = metrics {
        m.abort();
    }
    exit_after(deadline + EXIT_GRACE);
    tap.stop();
    let stopped = drain(bus, sinks, deadline).await;
    tracing::info!(stopped, "pbxtap stopped");
    Ok(())
}

/// Serves the metrics page when `[metrics]` is enabled, until its task is aborted.
async fn start_metrics(
    cfg: &MetricsConfig,
    bus: &Arc<Bus>,
    ami: &Arc<AmiHealth>,
    tap: &Tap,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let server = MetricsServer::bind(cfg)
        .await
        .with_context(|| format!("metrics.listen: cannot listen on {}", cfg.listen))?;
    let at = server.local_addr()?;
    tracing::info!(code = "metrics_serving", address = %at, "metrics served at http://{at}/metrics");
    let src = Sources {
        bus: bus.clone(),
        ami: ami.clone(),
        tap: tap.gauges(),
    };
    Ok(Some(tokio::spawn(metrics::serve(server, src))))
}

/// Time allowed beyond `buffers.drain_secs` before the process exits regardless.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Ends the process with status 0 after `after`, from a thread of its own: a sink blocked
/// in a write that never returns cannot hold up the shutdown past its deadline.
fn exit_after(after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        tracing::error!("sinks still busy {after:?} after the stop signal; exiting anyway");
        std::process::exit(0);
    });
}

/// Resolves on SIGTERM or SIGINT; on SIGHUP reloads the config from `path`: sinks whose
/// settings changed are restarted, the AMI tap keeps running, and an invalid file is
/// logged with the key at fault while the running config stays.
async fn supervise(
    path: &std::path::Path,
    running: &mut Config,
    sinks: &mut Vec<(String, JoinHandle<()>)>,
    bus: &Bus,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; config reloads need a restart");
        return termination().await;
    };
    let term = termination();
    tokio::pin!(term);
    loop {
        tokio::select! {
            _ = &mut term => return,
            _ = hup.recv() => {
                tracing::info!(code = "config_reload", config = %path.display(), "SIGHUP: reloading the config");
                // Files are read on a blocking thread: events keep flowing meanwhile.
                let file = path.to_path_buf();
                let loaded = tokio::task::spawn_blocking(move || {
                    Config::load(&file, &|k| std::env::var(k).ok())
                })
                .await;
                match loaded {
                    Ok(Ok(new)) => reload(running, new, sinks, bus).await,
                    Ok(Err(e)) => tracing::error!(code = "config_reload_rejected", key = %e.key, "SIGHUP: new config rejected, keeping the running one: {e}"),
                    Err(e) => tracing::error!(code = "config_reload_rejected", "SIGHUP: reading the config failed, keeping the running one: {e}"),
                }
            }
        }
    }
}

/// Applies a valid new config: restarts the sinks whose settings changed, starts added
/// ones, stops removed ones. A sink that cannot start with its new settings goes back to
/// its old ones; one not running at all is tried again at the next reload. Other
/// sections need a restart, which is logged.
async fn reload(
    running: &mut Config,
    new: Config,
    sinks: &mut Vec<(String, JoinHandle<()>)>,
    bus: &Bus,
) {
    // Design: sink configs are compared by their Debug form, so every sink type takes
    // part without each having to implement PartialEq.
    let fingerprint = |s: &SinkConfig| format!("{s:?}");
    let n = running.sinks.len().max(new.sinks.len());
    // The running handles by position: a sink's name ends in `#<index>`.
    let mut by_index: Vec<Option<(String, JoinHandle<()>)>> = (0..n).map(|_| None).collect();
    for (name, handle) in std::mem::take(sinks) {
        match name
            .rsplit_once('#')
            .and_then(|(_, i)| i.parse::<usize>().ok())
        {
            Some(i) if i < n => by_index[i] = Some((name, handle)),
            _ => handle.abort(),
        }
    }
    let mut applied = new.sinks.clone();
    for (i, current) in by_index.into_iter().enumerate() {
        let old_cfg = running.sinks.get(i);
        let new_cfg = new.sinks.get(i);
        let same =
            matches!((old_cfg, new_cfg), (Some(a), Some(b)) if fingerprint(a) == fingerprint(b));
        let was_running = current.is_some();
        if same && was_running {
            sinks.extend(current);
            continue;
        }
        if let Some((name, handle)) = current {
            handle.abort();
            let _ = handle.await;
            tracing::info!(code = "sink_stopped", sink = %name, "sink stopped by reload");
        }
        let Some(cfg) = new_cfg else { continue };
        let name = format!("{}#{i}", cfg.kind());
        match sink::start(cfg, i, bus).await {
            Ok(handle) => {
                tracing::info!(code = "sink_started", sink = %name, "sink (re)started by reload");
                sinks.push((name, handle));
            }
            Err(e) => {
                tracing::error!(code = "sink_start_failed", sink = %name, "sinks[{i}]: cannot start with the new settings: {e}");
                let Some(old) = old_cfg.filter(|_| was_running) else {
                    continue;
                };
                match sink::start(old, i, bus).await {
                    Ok(handle) => {
                        tracing::warn!(code = "sink_kept_old", sink = %format!("{}#{i}", old.kind()), "sinks[{i}] runs on its previous settings");
                        sinks.push((format!("{}#{i}", old.kind()), handle));
                        applied[i] = old.clone();
                    }
                    Err(e) => {
                        tracing::error!(code = "sink_start_failed", sink = %name, "sinks[{i}]: cannot start with its previous settings either: {e}")
                    }
                }
            }
        }
    }
    let needs_restart: Vec<&str> = [
        ("host", running.host != new.host),
        (
            "ami",
            format!("{:?}", running.ami) != format!("{:?}", new.ami),
        ),
        (
            "buffers",
            format!("{:?}", running.buffers) != format!("{:?}", new.buffers),
        ),
        (
            "watchdog",
            format!("{:?}", running.watchdog) != format!("{:?}", new.watchdog),
        ),
        ("log", running.log.level != new.log.level),
        ("metrics", running.metrics != new.metrics),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect();
    if !needs_restart.is_empty() {
        tracing::warn!(code = "config_reload_partial", sections = %needs_restart.join(","), "changes to [{}] take effect at the next restart", needs_restart.join("], ["));
    }
    running.sinks = new.sinks;
    tracing::info!(
        code = "config_reloaded",
        sinks = sinks.len(),
        "config reloaded"
    );
}
