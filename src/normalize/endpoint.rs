//! Endpoints: registrations (PJSIP ContactStatus, chan_sip PeerStatus) and presence.
//!
//! A contact's registered/unregistered state is remembered so that a status change that
//! does not change it (NonQualified → Reachable) emits nothing, and PJSIP's PeerStatus,
//! which repeats its ContactStatus, is left out.

use heapless::Vec;

use super::names::EndpointEvent;
use super::{bounded, NormalizeStats};
use crate::ami::frame::Message;
use crate::event::{Body, LongText, Presence, Registration, Text};

/// Contacts remembered at once; the oldest is forgotten when full (and counted).
pub const MAX_CONTACTS: usize = 256;

#[derive(Debug, Clone)]
struct Contact {
    aor: Text,
    uri: LongText,
    registered: bool,
    /// Insertion order, for eviction.
    age: u64,
}

#[derive(Default)]
pub struct Endpoints {
    contacts: Vec<Contact, MAX_CONTACTS>,
    clock: u64,
}

/// Normalized state of a device state word (`NOT_INUSE`, `INUSE`, ...).
fn device_state(s: &str) -> &'static str {
    match s {
        "NOT_INUSE" | "Idle" => "available",
        "INUSE" | "InUse" => "in_use",
        "BUSY" | "Busy" => "busy",
        "RINGING" | "RINGINUSE" | "Ringing" => "ringing",
        "ONHOLD" | "OnHold" => "on_hold",
        "UNAVAILABLE" | "Unavailable" => "unavailable",
        _ => "unknown",
    }
}

/// Normalized state of a presence state (`available`, `away`, `dnd`, ...).
fn presence_state(s: &str) -> &'static str {
    let is = |w: &str| s.eq_ignore_ascii_case(w);
    if is("available") || is("chat") {
        "available"
    } else if is("dnd") {
        "busy"
    } else if is("away") || is("xa") || is("unavailable") {
        "unavailable"
    } else {
        "unknown"
    }
}

impl Endpoints {
    pub fn handle(
        &mut self,
        event: EndpointEvent,
        msg: &Message<'_>,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        use EndpointEvent as E;
        match event {
            E::ContactStatus => {
                let status = msg.get("ContactStatus").unwrap_or("");
                let registered = match status {
                    "Created" | "NonQualified" | "Reachable" => true,
                    "Removed" | "Unreachable" => false,
                    _ => return,
                };
                let aor = msg.get("AOR").or(msg.get("EndpointName")).unwrap_or("");
                let uri = msg.get("URI").unwrap_or("");
                let forget = status == "Removed";
                self.change(aor, uri, registered, forget, status, "PJSIP", stats, emit);
            }
            E::PeerStatus => {
                // PJSIP's PeerStatus repeats its ContactStatus: only chan_sip's is used.
                if msg.get("ChannelType") != Some("SIP") {
                    return;
                }
                let status = msg.get("PeerStatus").unwrap_or("");
                let registered = match status {
                    "Registered" | "Reachable" => true,
                    "Unregistered" | "Unreachable" | "Rejected" => false,
                    _ => return,
                };
                let peer = msg.get("Peer").unwrap_or("");
                let aor = peer.split_once('/').map_or(peer, |(_, a)| a);
                let forget = status == "Unregistered";
                let contact = msg.get("Address").unwrap_or("");
                self.change(aor, contact, registered, forget, status, "SIP", stats, emit);
            }
            E::DeviceStateChange => {
                let device = msg.get("Device").unwrap_or("");
                // Pseudo-devices (`Queue:lab-queue`, `Custom:...`) and Local channels are
                // not endpoints.
                let Some((tech, ext)) = device.split_once('/') else {
                    return;
                };
                if tech == "Local" {
                    return;
                }
                let state = msg.get("State").unwrap_or("");
                emit(Body::EndpointPresence(Presence {
                    extension: bounded(stats, ext),
                    state: device_state(state),
                    note: bounded(stats, state),
                }));
            }
            E::ExtensionStatus => {
                let text = msg.get("StatusText").unwrap_or("");
                emit(Body::EndpointPresence(Presence {
                    extension: bounded(stats, msg.get("Exten").unwrap_or("")),
                    state: device_state(text),
                    note: bounded(stats, text),
                }));
            }
            E::PresenceStateChange => {
                let who = msg.get("Presentity").unwrap_or("");
                let ext = who.split_once(':').map_or(who, |(_, e)| e);
                let status = msg.get("Status").unwrap_or("");
                let message = msg.get("Message").unwrap_or("");
                emit(Body::EndpointPresence(Presence {
                    extension: bounded(stats, ext),
                    state: presence_state(status),
                    note: bounded(stats, if message.is_empty() { status } else { message }),
                }));
            }
        }
    }

    /// Records a contact's state and emits registered/unregistered when it changed.
    /// `forget` drops the contact from the table (it is gone for good).
    #[allow(clippy::too_many_arguments)]
    fn change(
        &mut self,
        aor: &str,
        uri: &str,
        registered: bool,
        forget: bool,
        status: &str,
        technology: &'static str,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        self.clock += 1;
        let known = self
            .contacts
            .iter()
            .position(|c| c.aor == aor && c.uri == uri);
        let was = known.map(|i| self.contacts[i].registered);
        match (known, forget) {
            (Some(i), true) => {
                self.contacts.swap_remove(i);
            }
            (Some(i), false) => self.contacts[i].registered = registered,
            (None, true) => {}
            (None, false) => {
                if self.contacts.is_full() {
                    if let Some((i, _)) =
                        self.contacts.iter().enumerate().min_by_key(|(_, c)| c.age)
                    {
                        self.contacts.swap_remove(i);
                        stats.evicted += 1;
                    }
                }
                let _ = self.contacts.push(Contact {
                    aor: bounded(stats, aor),
                    uri: bounded(stats, uri),
                    registered,
                    age: self.clock,
                });
            }
        }
        if was == Some(registered) {
            return;
        }
        let body = Registration {
            aor: bounded(stats, aor),
            contact: bounded(stats, uri),
            expires: 0,
            user_agent: Text::new(),
            received_from: Text::new(),
            status: bounded(stats, status),
            technology,
        };
        emit(if registered {
            Body::EndpointRegistered(body)
        } else {
            Body::EndpointUnregistered(body)
        });
    }
}
