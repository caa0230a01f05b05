//! Logging: journald (structured fields) when running under systemd, readable stderr otherwise.
//!
//! The level comes from `log.level`, and `RUST_LOG` overrides it.

use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// True when stderr is connected to the journal (systemd sets `JOURNAL_STREAM` to the
/// device and inode of the stream it gave us) — then logs go to journald natively.
pub fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
        && std::path::Path::new("/run/systemd/journal/socket").exists()
}

/// Installs the global subscriber for `pbxtap run`.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    if under_journald() {
        match tracing_journald::layer() {
            Ok(journald) => {
                let _ = tracing_subscriber::registry()
                    .with(filter)
                    .with(journald.with_syslog_identifier("pbxtap".into()))
                    .try_init();
                return;
            }
            Err(e) => eprintln!("pbxtap: journald unavailable ({e}); logging to stderr"),
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The demo logs errors only, to stderr, so stdout holds nothing but events.
pub fn init_demo() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
