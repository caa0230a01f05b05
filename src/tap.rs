//! The tap: what the AMI connection reports, normalized and published on the bus.

use std::sync::Arc;

use crate::ami::client::{AmiError, Handler};
use crate::ami::frame::Message;
use crate::bus::Bus;
use crate::event::{self, AmiLink, Body, Event};
use crate::normalize::{self, Normalizer};

pub struct Tap {
    normalizer: Normalizer,
    bus: Arc<Bus>,
    address: event::Text,
    /// Whether the last attempt logged in: `None` before the first. An outage is one
    /// `system.ami_disconnected`, not one per failed redial.
    connected: Option<bool>,
}

impl Tap {
    pub fn new(normalizer: Normalizer, bus: Arc<Bus>, address: &str) -> Self {
        Tap {
            normalizer,
            bus,
            address: event::text(address),
            connected: None,
        }
    }

    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    fn link(&self, reason: &str) -> AmiLink {
        AmiLink {
            address: self.address.clone(),
            reason: event::text(reason),
        }
    }
}

impl Handler for Tap {
    fn connected(&mut self, version: &str) {
        self.connected = Some(true);
        self.normalizer.begin_resync();
        let reason = format!("logged in (AMI {version})");
        self.bus
            .publish_body(Body::AmiConnected(self.link(&reason)));
    }

    fn message(&mut self, msg: &Message<'_>) {
        let now = event::now_micros();
        let bus = &self.bus;
        self.normalizer.handle(msg, now, &mut |body| {
            bus.publish(Event::new(now, bus.host(), body))
        });
    }

    fn reads(name: &str, message: &[u8]) -> bool {
        normalize::reads(name, message)
    }

    fn disconnected(&mut self, reason: &AmiError) {
        self.normalizer.connection_lost();
        if self.connected.replace(false) == Some(false) {
            // Still down: the client logs each failed redial.
            return;
        }
        let link = self.link(&reason.to_string());
        self.bus.publish_body(Body::AmiDisconnected(link));
    }

    fn wants_contacts(&mut self) -> bool {
        self.normalizer.take_contacts_wanted()
    }

    fn contacts_listed(&mut self) {
        self.normalizer.contacts_listed();
    }

    fn tick(&mut self) {
        let now = event::now_micros();
        let bus = &self.bus;
        self.normalizer.tick(now, &mut |body| {
            bus.publish(Event::new(now, bus.host(), body))
        });
        bus.report_drops(std::time::Instant::now());
    }
}
