//! Outbound registrations, the trunks to carriers: their state from Asterisk's `Registry`
//! events (sent on every change, PJSIP and chan_sip alike) and from the
//! `PJSIPShowRegistrationsOutbound` list the session asks for after each login and every
//! `ami.contacts_poll_secs` (which also catches a change sent while pbxtap was away). A
//! trunk first seen, or whose state changed, is a `trunk.registered`, `trunk.failed` or
//! `trunk.unregistered`; Asterisk's repeats of a state (a failing trunk is retried every
//! `retry_interval`) are not. A PJSIP trunk's `Registry` names no section, so one from a
//! trunk not listed yet is held, and the lists asked for at once: it is told as first
//! seen when the list names it. Fixed memory: [`MAX_REGISTRATIONS`] trunks.

use super::names::TrunkEvent;
use super::{bounded, NormalizeStats};
use crate::ami::frame::Message;
use crate::event::{Body, LongText, Text, TrunkRegistration};

/// Outbound registrations followed at once. A PBX has a handful; past this the oldest is
/// forgotten (counted in `evicted`) and told again as new when it next changes.
pub const MAX_REGISTRATIONS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Registered,
    Failed,
    Unregistered,
}

impl State {
    /// A `Status:` of `Registry` or of the list. The in-between states of chan_sip
    /// (`Request Sent`, `Auth. Sent`) are none.
    fn parse(status: &str) -> Option<State> {
        match status {
            "Registered" => Some(State::Registered),
            "Unregistered" | "Stopped" => Some(State::Unregistered),
            "Rejected" | "Failed" | "Timeout" | "No Authentication" => Some(State::Failed),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            State::Registered => "registered",
            State::Failed => "failed",
            State::Unregistered => "unregistered",
        }
    }
}

#[derive(Debug, Clone)]
struct Trunk {
    name: Text,
    server: LongText,
    client: LongText,
    state: State,
    /// Seen in the list now being received.
    listed: bool,
    /// Its first state went out (a PJSIP trunk's waits for the list to name it).
    told: bool,
}

#[derive(Debug, Default)]
pub struct Trunks {
    table: heapless::Vec<Trunk, MAX_REGISTRATIONS>,
    /// A trunk waits for the list: the session should ask for it now.
    list_wanted: bool,
}

impl Trunks {
    /// Trunks followed now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether a held trunk wants the list asked for (once per wish).
    pub fn take_list_wanted(&mut self) -> bool {
        std::mem::take(&mut self.list_wanted)
    }

    pub fn handle(
        &mut self,
        e: TrunkEvent,
        msg: &Message<'_>,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        match e {
            // Username is the client URI, Domain the server URI: no section name. PJSIP
            // lists its trunks by name; chan_sip has no list.
            TrunkEvent::Registry => {
                let listable = msg.get("ChannelType") == Some("PJSIP");
                if let Some(seen) = seen(msg, "", "Username", "Domain", stats) {
                    self.update(seen, listable, stats, emit);
                }
            }
            TrunkEvent::OutboundRegistrationDetail => {
                let name = msg.get("ObjectName").unwrap_or("");
                if let Some(seen) = seen(msg, name, "ClientUri", "ServerUri", stats) {
                    self.update(seen, true, stats, emit);
                }
            }
            TrunkEvent::OutboundRegistrationDetailComplete => self.listed(emit),
        }
    }

    /// A trunk's state as Asterisk tells it (by name from the list, by its URIs from
    /// `Registry`); a new one that will be `listable` waits for the list to name it.
    fn update(
        &mut self,
        seen: Trunk,
        listable: bool,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let from_list = seen.listed;
        let found = self.table.iter().position(|t| {
            (from_list && t.name == seen.name)
                || (t.server == seen.server
                    && t.client == seen.client
                    && (!from_list || t.name.is_empty()))
        });
        let Some(i) = found else {
            if self.table.is_full() {
                self.table.remove(0);
                stats.evicted += 1;
            }
            let held = !from_list && listable;
            if !held {
                emit(seen.body(seen.state, ""));
            }
            self.list_wanted |= held;
            // Cannot fail: a full table made room above.
            let _ = self.table.push(Trunk {
                told: !held,
                ..seen
            });
            return;
        };
        let t = &mut self.table[i];
        if t.name.is_empty() {
            t.name = seen.name;
        }
        t.listed |= from_list;
        (t.server, t.client) = (seen.server, seen.client);
        let was = std::mem::replace(&mut t.state, seen.state);
        if !t.told && from_list {
            t.told = true;
            emit(t.body(t.state, ""));
        } else if t.told && was != t.state {
            emit(t.body(t.state, was.as_str()));
        }
    }

    /// The list is complete: a listed trunk that was not in it is gone from the
    /// configuration (told as unregistered, unless it was); a held one it did not name
    /// is told as it is, unnamed.
    fn listed(&mut self, emit: &mut dyn FnMut(Body)) {
        let mut i = 0;
        while i < self.table.len() {
            let t = &mut self.table[i];
            if !t.told {
                t.told = true;
                emit(t.body(t.state, ""));
            }
            if t.listed || t.name.is_empty() {
                t.listed = false;
                i += 1;
                continue;
            }
            let t = self.table.remove(i);
            if t.state != State::Unregistered {
                emit(t.body(State::Unregistered, t.state.as_str()));
            }
        }
    }
}

/// A trunk as one message tells it (`name` empty when it does not say), if it tells a
/// state.
fn seen(
    msg: &Message<'_>,
    name: &str,
    client: &str,
    server: &str,
    stats: &mut NormalizeStats,
) -> Option<Trunk> {
    let state = msg.get("Status").and_then(State::parse)?;
    Some(Trunk {
        server: bounded(stats, msg.get(server)?),
        client: bounded(stats, msg.get(client)?),
        name: bounded(stats, name),
        state,
        listed: !name.is_empty(),
        told: true,
    })
}

impl Trunk {
    /// The event telling that this trunk is now `state`, and was `was`.
    fn body(&self, state: State, was: &'static str) -> Body {
        let r = TrunkRegistration {
            trunk: self.name.clone(),
            server_uri: self.server.clone(),
            client_uri: self.client.clone(),
            was,
        };
        match state {
            State::Registered => Body::TrunkRegistered(r),
            State::Failed => Body::TrunkFailed(r),
            State::Unregistered => Body::TrunkUnregistered(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::frame::{Frame, Limits, Parser};

    fn feed(t: &mut Trunks, text: &str) -> Vec<(String, String, &'static str)> {
        let mut parser = Parser::new(Limits::default());
        parser.push(b"Asterisk Call Manager/11.0.0\r\n", &mut |_| {});
        let mut stats = NormalizeStats::default();
        let mut out = Vec::new();
        parser.push(text.as_bytes(), &mut |f| {
            let Ok(Frame::Message(m)) = f else { return };
            let e = match m.event() {
                Some("Registry") => TrunkEvent::Registry,
                Some("OutboundRegistrationDetail") => TrunkEvent::OutboundRegistrationDetail,
                _ => TrunkEvent::OutboundRegistrationDetailComplete,
            };
            t.handle(e, &m, &mut stats, &mut |b| {
                let (Body::TrunkRegistered(r) | Body::TrunkFailed(r) | Body::TrunkUnregistered(r)) =
                    &b
                else {
                    panic!("{b:?}")
                };
                out.push((b.name().to_string(), r.trunk.to_string(), r.was));
            });
        });
        out
    }

    fn detail(name: &str, port: u16, status: &str) -> String {
        format!(
            "Event: OutboundRegistrationDetail\nObjectName: {name}\nClientUri: sip:me@10.0.0.1:{port}\n\
             ServerUri: sip:10.0.0.1:{port}\nStatus: {status}\n\n"
        )
    }

    fn registry(port: u16, status: &str) -> String {
        format!(
            "Event: Registry\nChannelType: PJSIP\nUsername: sip:me@10.0.0.1:{port}\n\
             Domain: sip:10.0.0.1:{port}\nStatus: {status}\n\n"
        )
    }

    const COMPLETE: &str = "Event: OutboundRegistrationDetailComplete\nListItems: 2\n\n";

    #[test]
    fn the_list_tells_each_trunk_once_and_registry_only_its_changes() {
        let mut t = Trunks::default();
        let list = detail("carrier", 5060, "Unregistered") + &detail("backup", 5070, "Registered");
        let out = feed(&mut t, &(list.clone() + COMPLETE));
        assert_eq!(
            out,
            [
                ("unregistered".into(), "carrier".into(), ""),
                ("registered".into(), "backup".into(), "")
            ]
        );
        // The same list again: nothing changed.
        assert!(feed(&mut t, &(list + COMPLETE)).is_empty());
        // Registry names no trunk: it is found by its URIs. Repeats of a failure are not told.
        let out = feed(
            &mut t,
            &(registry(5060, "Rejected") + &registry(5060, "Rejected")),
        );
        assert_eq!(out, [("failed".into(), "carrier".into(), "unregistered")]);
        let out = feed(&mut t, &registry(5060, "Registered"));
        assert_eq!(out, [("registered".into(), "carrier".into(), "failed")]);
        // chan_sip's in-between states are no change.
        assert!(feed(&mut t, &registry(5060, "Request Sent")).is_empty());
    }

    #[test]
    fn a_pjsip_registry_before_the_list_waits_for_its_name_and_removed_trunks_go() {
        let mut t = Trunks::default();
        // Held, and the list asked for.
        assert!(feed(&mut t, &registry(5060, "Registered")).is_empty());
        assert!(t.take_list_wanted() && !t.take_list_wanted());
        let out = feed(
            &mut t,
            &(detail("carrier", 5060, "Registered")
                + &detail("backup", 5070, "Rejected")
                + COMPLETE),
        );
        assert_eq!(
            out,
            [
                ("registered".into(), "carrier".into(), ""),
                ("failed".into(), "backup".into(), "")
            ]
        );
        assert_eq!(t.len(), 2);
        // `backup` is gone from pjsip.conf after a reload.
        let out = feed(&mut t, &(detail("carrier", 5060, "Registered") + COMPLETE));
        assert_eq!(out, [("unregistered".into(), "backup".into(), "failed")]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.table[0].name, "carrier");
        // One the list does not name is told unnamed when it completes.
        assert!(feed(&mut t, &registry(5080, "Rejected")).is_empty());
        assert_eq!(
            feed(&mut t, &(detail("carrier", 5060, "Registered") + COMPLETE)),
            [("failed".into(), "".into(), "")]
        );
    }

    #[test]
    fn chan_sip_registry_is_told_at_once() {
        let mut t = Trunks::default();
        let sip = registry(5060, "Registered").replace("PJSIP", "SIP");
        assert_eq!(feed(&mut t, &sip), [("registered".into(), "".into(), "")]);
        assert!(!t.take_list_wanted());
    }

    #[test]
    fn the_table_keeps_its_capacity() {
        let mut t = Trunks::default();
        let mut text = String::new();
        for port in 0..(MAX_REGISTRATIONS as u16 + 10) {
            text.push_str(&detail(&format!("t{port}"), port, "Registered"));
        }
        assert_eq!(feed(&mut t, &text).len(), MAX_REGISTRATIONS + 10);
        assert_eq!(t.len(), MAX_REGISTRATIONS);
    }
}
