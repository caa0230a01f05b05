//! AMI test helpers: a client config for a replaying peer, and a recording handler.

use std::time::Duration;

use pbxtap::ami::client::{AmiError, ClientConfig, Handler};
use pbxtap::ami::config::AmiAuth;
use pbxtap::ami::frame::{Limits, Message};
use pbxtap::ami::session::SessionConfig;
use pbxtap::backoff::Backoff;

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/ami/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A client for a replaying peer at `address`, with short timers so tests are quick.
pub fn client_config(address: &str, auth: AmiAuth, secret: &str) -> ClientConfig {
    ClientConfig {
        address: address.to_string(),
        session: SessionConfig {
            username: "tap".into(),
            secret: secret.into(),
            auth,
            events: "system,call,agent,user,cdr".into(),
            ping_interval: Duration::from_secs(1),
            ping_timeout: Duration::from_secs(1),
            contacts_every: None,
            login_timeout: Duration::from_secs(2),
            source_filter: None,
        },
        backoff: Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_millis(400),
            low: 0.5,
            high: 1.0,
        },
        limits: Limits::default(),
        reconnect: true,
        filter_at_source: false,
    }
}

/// What a handler saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Connected,
    Message(String),
    Disconnected(&'static str),
}

#[derive(Default)]
pub struct Recorder {
    pub seen: Vec<Seen>,
}

impl Recorder {
    pub fn messages(&self) -> usize {
        self.seen
            .iter()
            .filter(|s| matches!(s, Seen::Message(_)))
            .count()
    }
    pub fn count(&self, s: &Seen) -> usize {
        self.seen.iter().filter(|x| *x == s).count()
    }
}

impl Handler for Recorder {
    fn connected(&mut self, _version: &str) {
        self.seen.push(Seen::Connected);
    }
    fn message(&mut self, msg: &Message<'_>) {
        let name = msg.event().or(msg.response()).unwrap_or("?");
        self.seen.push(Seen::Message(name.to_string()));
    }
    fn disconnected(&mut self, reason: &AmiError) {
        self.seen.push(Seen::Disconnected(reason.code()));
    }
}
