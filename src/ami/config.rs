//! The `[ami]` settings: where Asterisk's manager interface is, how to log in, and the
//! bounds and timings of the session. Owned here, composed by `config`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::{check_one_line, validate_host_port, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmiConfig {
    /// `host:port` of Asterisk's manager interface.
    pub address: String,
    pub username: String,
    pub secret: Option<String>,
    /// File holding the secret (first line); relative paths are looked up in
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
    pub secret_file: Option<PathBuf>,
    /// `md5` (challenge/response, the secret never crosses the wire) or `plain`.
    pub auth: AmiAuth,
    /// Event classes asked for at login (`Events:` mask).
    pub events: String,
    /// Seconds without an answer to Ping before the connection is dropped and redialled.
    pub ping_timeout_secs: u64,
    /// Seconds from the TCP connect to a successful login (banner, Challenge, Login):
    /// a peer that stalls before is dropped and redialled, like any failed link.
    pub login_timeout_secs: u64,
    /// First reconnect delay in milliseconds; doubles up to `reconnect_max_secs`, with jitter.
    pub reconnect_min_ms: u64,
    pub reconnect_max_secs: u64,
    /// Largest AMI message accepted; larger ones are skipped and counted.
    pub max_message_len: usize,
    /// Most headers in one AMI message; more and the message is skipped and counted.
    pub max_headers: usize,
    /// Seconds between listings of the PJSIP contacts (`PJSIPShowContacts`), which is how
    /// a registration refresh and a registration's expiry are learnt, and with them the
    /// trunks, the queues and the live channels (`ami::session`'s state lists); 0: only
    /// after login and when a contact appears.
    pub contacts_poll_secs: u64,
    /// Ask Asterisk to send only the events pbxtap reads (`Filter` actions after login,
    /// on Asterisk 18.26, 20.11, 21.6, 22.1 and later; needs `write = system`).
    pub filter_at_source: bool,
    /// Milliseconds Asterisk's events may arrive behind their own time (manager.conf
    /// `timestampevents = yes`) before `system.ami_lagging` is published; 0: never.
    pub lag_warn_ms: u64,
    /// Asterisk's `manager.conf` on this machine: the user's `read =` classes are checked
    /// against what pbxtap uses, and each missing one is named at start-up. Empty: no check.
    pub manager_conf: PathBuf,
}

impl Default for AmiConfig {
    fn default() -> Self {
        AmiConfig {
            address: "127.0.0.1:5038".into(),
            username: "pbxtap".into(),
            secret: None,
            secret_file: None,
            auth: AmiAuth::Md5,
            events: "system,call,agent,user,cdr,security".into(),
            ping_timeout_secs: 5,
            login_timeout_secs: 10,
            reconnect_min_ms: 500,
            reconnect_max_secs: 30,
            max_message_len: 16 * 1024,
            max_headers: 128,
            contacts_poll_secs: 10,
            filter_at_source: true,
            lag_warn_ms: 2000,
            manager_conf: "/etc/asterisk/manager.conf".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmiAuth {
    Md5,
    Plain,
}

impl AmiConfig {
    /// Checks the `[ami]` table, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_host_port("ami.address", &self.address)?;
        if self.username.is_empty() {
            return Err(ConfigError::new("ami.username", "must not be empty"));
        }
        // Written into the Login action: a line break would end a header and start another.
        check_one_line("ami.username", &self.username)?;
        check_one_line("ami.events", &self.events)?;
        if let Some(secret) = &self.secret {
            check_one_line("ami.secret", secret)?;
        }
        match &self.secret {
            None => {
                return Err(ConfigError::new(
                    "ami.secret",
                    "missing: set ami.secret, or ami.secret_file to a file holding it",
                ))
            }
            Some(s) if s.is_empty() => {
                return Err(ConfigError::new("ami.secret", "is empty"));
            }
            _ => {}
        }
        if self.ping_timeout_secs == 0 {
            return Err(ConfigError::new(
                "ami.ping_timeout_secs",
                "must be at least 1",
            ));
        }
        if !(1..=300).contains(&self.login_timeout_secs) {
            return Err(ConfigError::new(
                "ami.login_timeout_secs",
                "must be between 1 and 300 seconds",
            ));
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_secs * 1000 < self.reconnect_min_ms {
            return Err(ConfigError::new(
                "ami.reconnect_min_ms",
                "must be at least 1 and not above ami.reconnect_max_secs",
            ));
        }
        if !(512..=1024 * 1024).contains(&self.max_message_len) {
            return Err(ConfigError::new(
                "ami.max_message_len",
                "must be between 512 and 1048576 bytes",
            ));
        }
        if !(8..=4096).contains(&self.max_headers) {
            return Err(ConfigError::new(
                "ami.max_headers",
                "must be between 8 and 4096",
            ));
        }
        if self.lag_warn_ms > 3_600_000 {
            return Err(ConfigError::new(
                "ami.lag_warn_ms",
                "must be at most 3600000 (an hour); 0 never warns",
            ));
        }
        if self.contacts_poll_secs > 86_400 {
            return Err(ConfigError::new(
                "ami.contacts_poll_secs",
                "must be at most 86400 (a day); 0 lists contacts only after login and when one appears",
            ));
        }
        Ok(())
    }
}
