//! Endpoints: registrations (PJSIP ContactStatus and contact lists, chan_sip PeerStatus)
//! and presence.
//!
//! A contact's registered/unregistered state is remembered so that a status change that
//! does not change it (NonQualified → Reachable) emits nothing, and PJSIP's PeerStatus,
//! which repeats its ContactStatus, is left out.
//!
//! Asterisk tells a new PJSIP contact (ContactStatus) without its expiry or user agent, and
//! a refresh not at all: both show in the contact list (`PJSIPShowContacts`, asked for by
//! the AMI session after login, every `ami.contacts_poll_secs` and when a contact appears).
//! Once a list has come on this connection, a new contact's `endpoint.registered` waits for
//! the list that tells its expiry (at most [`LIST_GRACE`]); a list that shows a later
//! expiry for a known contact is a refresh, told as `endpoint.registered` again. Where no
//! list ever comes (chan_sip, an AMI user without the right), a contact is told at once
//! with `expires` 0.

use heapless::Vec;

use super::names::EndpointEvent;
use super::{bounded, At, NormalizeStats};
use crate::ami::frame::Message;
use crate::event::{Body, LongText, Presence, Registration, Text};

/// Longest a new contact's `endpoint.registered` waits for the contact list to tell its
/// expiry; then it goes out with `expires` 0.
pub const LIST_GRACE: u64 = 5_000_000;

/// Contacts remembered at once; the oldest is forgotten when full (and counted).
pub const MAX_CONTACTS: usize = 256;

#[derive(Debug, Clone)]
struct Contact {
    aor: Text,
    uri: LongText,
    registered: bool,
    /// Insertion order, for eviction.
    age: u64,
    /// Unix seconds the registration expires at, as the last contact list said; 0: unknown.
    expiration: u64,
    /// Registered (ContactStatus) at this time (µs), its `endpoint.registered` waiting for
    /// the contact list.
    pending_since: Option<u64>,
    status: Text,
}

#[derive(Default)]
pub struct Endpoints {
    contacts: Vec<Contact, MAX_CONTACTS>,
    clock: u64,
    /// A contact list came on this connection: new contacts wait for the next one.
    lists_seen: bool,
    /// A contact appeared: the session should list contacts now.
    wants_list: bool,
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
    /// Contacts known now.
    pub fn contacts(&self) -> usize {
        self.contacts.len()
    }

    /// The connection was (re)established: whether lists come is learnt again.
    pub fn connected(&mut self) {
        self.lists_seen = false;
    }

    /// Lists work on this connection.
    pub fn lists_seen(&mut self) {
        self.lists_seen = true;
    }

    /// Whether a contact list is wanted now (asked once per appearance).
    pub fn take_list_wanted(&mut self) -> bool {
        std::mem::take(&mut self.wants_list)
    }

    /// About once a second: new contacts whose list did not come in time go out without
    /// their expiry.
    pub fn tick(&mut self, now: u64, stats: &mut NormalizeStats, emit: &mut dyn FnMut(Body)) {
        for i in 0..self.contacts.len() {
            let c = &mut self.contacts[i];
            if c.pending_since
                .is_some_and(|t| now.saturating_sub(t) >= LIST_GRACE)
            {
                c.pending_since = None;
                let (aor, uri, status) = (c.aor.clone(), c.uri.clone(), c.status.clone());
                emit(Body::EndpointRegistered(registration(
                    stats, &aor, &uri, &status, 0, "", "",
                )));
            }
        }
    }

    pub fn handle(
        &mut self,
        event: EndpointEvent,
        msg: &Message<'_>,
        at: At,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let At { now, wall } = at;
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
                let new = registered && !self.contacts.iter().any(|c| c.uri == uri && c.aor == aor);
                if new && self.lists_seen {
                    // Told once the list says when it expires.
                    self.remember(aor, uri, status, stats).pending_since = Some(now);
                    self.wants_list = true;
                    return;
                }
                let forget = status == "Removed";
                self.change(aor, uri, registered, forget, status, "PJSIP", stats, emit);
            }
            E::ContactList => self.listed(msg, wall, stats, emit),
            // The session tells the end of its own lists (`Normalizer::contacts_listed`).
            E::ContactListComplete => {}
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
                    source: "device",
                }));
            }
            E::ExtensionStatus => {
                let text = msg.get("StatusText").unwrap_or("");
                emit(Body::EndpointPresence(Presence {
                    extension: bounded(stats, msg.get("Exten").unwrap_or("")),
                    state: device_state(text),
                    note: bounded(stats, text),
                    source: "device",
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
                    source: "user",
                }));
            }
        }
    }

    /// A contact of the list: its expiry (and user agent) tells a waiting registration,
    /// and a later expiry than known tells a refresh. `wall` is now on the wall clock,
    /// which Asterisk's expiry is a time of.
    fn listed(
        &mut self,
        msg: &Message<'_>,
        wall: u64,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let uri = msg.get("Uri").unwrap_or("");
        let name = msg.get("ObjectName").unwrap_or("");
        let aor = msg
            .get("Endpoint")
            .filter(|e| !e.is_empty())
            .unwrap_or(name.split_once(";@").map_or(name, |(a, _)| a));
        let expiration: u64 = msg
            .get("ExpirationTime")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let status = msg.get("Status").unwrap_or("");
        let from = match (msg.get("ViaAddr"), msg.get("ViaPort")) {
            (Some(a), Some(p)) if !a.is_empty() => format!("{a}:{p}"),
            _ => String::new(),
        };
        let known = self
            .contacts
            .iter()
            .position(|c| c.uri == uri && c.aor == aor);
        let c = match known {
            Some(i) => &mut self.contacts[i],
            None => {
                let c = self.remember(aor, uri, status, stats);
                c.registered = true;
                c
            }
        };
        let tell = known.is_none()
            || c.pending_since.is_some()
            || (c.registered && expiration > c.expiration);
        c.pending_since = None;
        c.registered = true;
        c.expiration = expiration;
        if !tell {
            return;
        }
        let left = expiration.saturating_sub(wall / 1_000_000);
        let ua = msg.get("UserAgent").unwrap_or("");
        emit(Body::EndpointRegistered(registration(
            stats,
            aor,
            uri,
            status,
            u32::try_from(left).unwrap_or(u32::MAX),
            ua,
            &from,
        )));
    }

    /// The contact `aor`/`uri` in the table, added (not yet registered) when new.
    fn remember(
        &mut self,
        aor: &str,
        uri: &str,
        status: &str,
        stats: &mut NormalizeStats,
    ) -> &mut Contact {
        self.clock += 1;
        if let Some(i) = self
            .contacts
            .iter()
            .position(|c| c.aor == aor && c.uri == uri)
        {
            return &mut self.contacts[i];
        }
        if self.contacts.is_full() {
            if let Some((i, _)) = self.contacts.iter().enumerate().min_by_key(|(_, c)| c.age) {
                self.contacts.swap_remove(i);
                stats.evicted += 1;
            }
        }
        let _ = self.contacts.push(Contact {
            aor: bounded(stats, aor),
            uri: bounded(stats, uri),
            registered: false,
            age: self.clock,
            expiration: 0,
            pending_since: None,
            status: bounded(stats, status),
        });
        let last = self.contacts.len() - 1;
        &mut self.contacts[last]
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
        // A registration still waiting for its list counts as told: removing it tells.
        let was =
            known.map(|i| self.contacts[i].registered || self.contacts[i].pending_since.is_some());
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
                    expiration: 0,
                    pending_since: None,
                    status: bounded(stats, status),
                });
            }
        }
        if was == Some(registered) {
            return;
        }
        let mut body = registration(stats, aor, uri, status, 0, "", "");
        body.technology = technology;
        emit(if registered {
            Body::EndpointRegistered(body)
        } else {
            Body::EndpointUnregistered(body)
        });
    }
}

/// An `endpoint.registered` / `.unregistered` body (PJSIP unless changed).
fn registration(
    stats: &mut NormalizeStats,
    aor: &str,
    uri: &str,
    status: &str,
    expires: u32,
    user_agent: &str,
    received_from: &str,
) -> Registration {
    Registration {
        aor: bounded(stats, aor),
        contact: bounded(stats, uri),
        expires,
        user_agent: bounded(stats, user_agent),
        received_from: bounded(stats, received_from),
        status: bounded(stats, status),
        technology: "PJSIP",
    }
}
