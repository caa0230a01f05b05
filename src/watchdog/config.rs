//! The `[watchdog]` settings: how Asterisk is found and judged, when it is restarted,
//! and when a stuck sink stops systemd's watchdog pings. Owned here, composed by `config`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogConfig {
    /// Asterisk's pidfile; when missing, the process is looked up in /proc by name.
    pub pidfile: PathBuf,
    /// Seconds between AMI Pings (also the keepalive of the AMI connection).
    pub ping_interval_secs: u64,
    /// Command run to restart Asterisk after repeated down checks; empty: never.
    pub restart_command: String,
    /// Watch the Asterisk process and AMI health at all.
    pub enabled: bool,
    /// Process name looked up in /proc when the pidfile is missing; empty: never look.
    /// With neither a pidfile nor a name, AMI health alone decides up/down.
    pub process_name: String,
    /// Seconds between health checks.
    pub check_interval_secs: u64,
    /// AMI Ping round trip above which Asterisk is degraded, in milliseconds.
    pub max_ping_ms: u32,
    /// Resident memory above which Asterisk is degraded, in MiB; 0: no limit.
    pub max_rss_mib: u64,
    /// Open file descriptors above which Asterisk is degraded; 0: 90% of Asterisk's own
    /// open-files limit.
    pub max_fds: u32,
    /// Consecutive down checks before `restart_command` runs; 0: never restart.
    pub restart_after: u32,
    /// Least time between two runs of `restart_command`, in seconds.
    pub min_restart_interval_secs: u64,
    /// Seconds a sink may leave waiting events untouched before it counts as stuck and
    /// systemd's WATCHDOG=1 pings stop; 0: sinks are not watched.
    pub stall_secs: u64,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            pidfile: "/var/run/asterisk/asterisk.pid".into(),
            ping_interval_secs: 5,
            restart_command: String::new(),
            enabled: true,
            process_name: "asterisk".into(),
            check_interval_secs: 5,
            max_ping_ms: 1000,
            max_rss_mib: 0,
            max_fds: 0,
            restart_after: 3,
            min_restart_interval_secs: 300,
            stall_secs: 300,
        }
    }
}

impl WatchdogConfig {
    /// Checks the `[watchdog]` table, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ping_interval_secs == 0 {
            return Err(ConfigError::new(
                "watchdog.ping_interval_secs",
                "must be at least 1",
            ));
        }
        if !(1..=3600).contains(&self.check_interval_secs) {
            return Err(ConfigError::new(
                "watchdog.check_interval_secs",
                "must be between 1 and 3600",
            ));
        }
        if self.max_ping_ms == 0 {
            return Err(ConfigError::new(
                "watchdog.max_ping_ms",
                "must be at least 1",
            ));
        }
        if !self.restart_command.trim().is_empty() {
            if self.restart_after == 0 {
                return Err(ConfigError::new(
                    "watchdog.restart_after",
                    "is 0, so restart_command would never run: set it to at least 1, or empty restart_command",
                ));
            }
            if self.min_restart_interval_secs == 0 {
                return Err(ConfigError::new(
                    "watchdog.min_restart_interval_secs",
                    "must be at least 1 (restarting Asterisk in a tight loop helps nobody)",
                ));
            }
        }
        Ok(())
    }
}
