//! What the PortSIP dialect remembers between events, in fixed-size tables: live calls
//! with their targets (for `call_established`'s parties and the one `call_cdr` per call),
//! extensions with their registrations, call status and presence (for
//! `extension_status`, and `extension_register`'s full contact list), and queues (for the
//! `queue_status` snapshot). [`State::observe`] follows one event and says what changed.

use heapless::Vec;

use super::extension_number;
use crate::event::{self, Body, CallEnded, Event, Id, LongText, Text};

/// Live calls followed; when full, the oldest is forgotten (its later events carry only
/// what they hold themselves, and its `call_cdr` has no targets).
pub const MAX_CALLS: usize = 256;
/// Targets (dialled legs) kept per call; more are left out of its `call_cdr`.
pub const MAX_TARGETS: usize = 8;
/// Extensions whose registrations, call status and presence are kept; when full, an
/// extension never seen online is not added (a status for it says offline).
pub const MAX_EXTENSIONS: usize = 512;
/// Registrations (contacts) kept per extension; a newer one replaces the oldest.
pub const MAX_CONTACTS: usize = 4;
/// Queues whose state is kept for the `queue_status` snapshot; more are not tracked.
pub const MAX_QUEUES: usize = 16;
/// Waiting callers kept per queue; more are left out of the snapshot.
pub const MAX_QUEUE_WAITING: usize = 16;
/// Agents kept per queue; more are left out of the snapshot.
pub const MAX_QUEUE_AGENTS: usize = 16;

/// One dialled leg of a call: a PortSIP call target. Times in microseconds since the
/// Unix epoch, 0 for never.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    /// The number dialled.
    pub callee: Text,
    /// The device's registered contact (`sip:102@192.0.2.7:5060`) when known, else its
    /// channel.
    pub destination: LongText,
    pub started: u64,
    pub ringing: u64,
    pub answered: u64,
    pub ended: u64,
    /// The SIP code the device refused with, 0 when it did not.
    pub status_code: u16,
    /// Set when the leg ended by a transfer (`referred`); else decided at the end.
    pub end_reason: &'static str,
}

/// A live call. Times in microseconds since the Unix epoch, 0 for never.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Call {
    pub call_id: Id,
    pub session_id: Id,
    pub caller: Text,
    pub caller_name: Text,
    /// The first number dialled.
    pub callee: Text,
    /// pbxtap's direction: `internal`, `inbound`, `outbound` or `unknown`.
    pub direction: &'static str,
    /// The caller's channel (a trunk's endpoint names the trunk).
    pub channel: LongText,
    pub started: u64,
    pub ringing: u64,
    pub answered: u64,
    /// The call went through a queue: its targets are `queue_call`s.
    pub queued: bool,
    /// An answered party transferred it (blind or attended).
    pub transferred: bool,
    pub targets: Vec<Target, MAX_TARGETS>,
}

/// One registration of an extension.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contact {
    pub uri: LongText,
    /// Unix seconds when it expires, and when it was last refreshed.
    pub expires: u64,
    pub last_update: u64,
    pub received_from: Text,
    pub user_agent: Text,
}

/// An extension as PortSIP's `extension_status` describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extension {
    pub number: Text,
    pub contacts: Vec<Contact, MAX_CONTACTS>,
    /// PortSIP's call status: `ON_CALL`, `RINGING` or empty.
    pub call_status: &'static str,
    /// PortSIP's presence (`ONLINE`, `AWAY`, `DO_NOT_DISTURB`...), and its note.
    pub presence: &'static str,
    pub presence_note: LongText,
}

impl Extension {
    pub fn online(&self) -> bool {
        !self.contacts.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Waiting {
    pub call_id: Id,
    pub caller: Text,
    pub caller_name: Text,
    pub position: u32,
    /// Microseconds since the Unix epoch when the caller joined.
    pub since: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agent {
    pub extension: Text,
    /// PortSIP's agent state (`READY`, `QUEUE_CALL`, `WRAP_UP`...).
    pub state: &'static str,
    /// Microseconds since the Unix epoch of the last change.
    pub since: u64,
}

/// One queue's current state, for the `queue_status` snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Queue {
    pub name: Text,
    pub waiting: Vec<Waiting, MAX_QUEUE_WAITING>,
    pub agents: Vec<Agent, MAX_QUEUE_AGENTS>,
    /// Callers who waited past the SLA since they joined and are still waiting.
    pub breached: u32,
}

/// What one event changed, for the messages it leads to.
#[derive(Debug, Default)]
pub struct Observed {
    /// An extension's `online` flipped (its first registration came or its last went).
    pub online_changed: bool,
    /// An extension's call status changed.
    pub call_status_changed: bool,
    /// `call.ended`: the call's record, taken out of the table (default when unknown).
    pub ended: Option<Call>,
}

/// The dialect's memory. Tables are allocated once, at their fixed capacity.
#[derive(Debug)]
pub struct State {
    calls: std::vec::Vec<Call>,
    extensions: std::vec::Vec<Extension>,
    queues: Vec<Queue, MAX_QUEUES>,
}

impl Default for State {
    fn default() -> Self {
        State {
            calls: std::vec::Vec::with_capacity(MAX_CALLS),
            extensions: std::vec::Vec::with_capacity(MAX_EXTENSIONS),
            queues: Vec::new(),
        }
    }
}

/// PortSIP's agent state for pbxtap's normalized one.
pub fn agent_state(state: &str) -> &'static str {
    match state {
        "ready" | "ringing" => "READY",
        "in_call" => "QUEUE_CALL",
        "wrap_up" => "WRAP_UP",
        "paused" => "NOT_READY",
        "removed" => "LOGOUT",
        _ => "OFFLINE",
    }
}

/// PortSIP's call status for a device state.
fn call_status(device_state: &str) -> &'static str {
    match device_state {
        "in_use" | "busy" | "on_hold" => "ON_CALL",
        "ringing" => "RINGING",
        _ => "",
    }
}

/// PortSIP's presence for a user presence state (`available`, `busy` for dnd,
/// `unavailable` for away or extended away).
pub fn presence(state: &str) -> &'static str {
    match state {
        "busy" => "DO_NOT_DISTURB",
        "unavailable" => "AWAY",
        _ => "ONLINE",
    }
}

/// Asterisk's presence words: a note that is only one of them says nothing more.
fn is_presence_word(note: &str) -> bool {
    [
        "not_set",
        "unavailable",
        "available",
        "away",
        "xa",
        "chat",
        "dnd",
    ]
    .iter()
    .any(|w| note.eq_ignore_ascii_case(w))
}

impl State {
    /// Follows `ev` and says what changed. Call before encoding `ev`.
    pub fn observe(&mut self, ev: &Event) -> Observed {
        let mut seen = Observed::default();
        let now = ev.time;
        match &ev.body {
            Body::CallStarted(c) => {
                if self.calls.len() >= MAX_CALLS {
                    if let Some((i, _)) =
                        self.calls.iter().enumerate().min_by_key(|(_, c)| c.started)
                    {
                        self.calls.swap_remove(i);
                    }
                }
                self.calls.push(Call {
                    call_id: c.call_id.clone(),
                    session_id: c.session_id.clone(),
                    caller: c.from.clone(),
                    caller_name: c.from_name.clone(),
                    callee: c.to.clone(),
                    direction: c.direction,
                    channel: c.channel.clone(),
                    started: now,
                    ..Default::default()
                });
            }
            Body::TargetAdded(t) => {
                let destination = self.contact_of(&t.target, &t.contact);
                if let Some(call) = self.call_mut(&t.call_id) {
                    let _ = call.targets.push(Target {
                        callee: t.target.clone(),
                        destination,
                        started: now,
                        ..Default::default()
                    });
                }
            }
            Body::TargetRinging(t) => {
                if let Some(call) = self.call_mut(&t.call_id) {
                    if call.ringing == 0 {
                        call.ringing = now;
                    }
                    if let Some(leg) = open_target(call, &t.target) {
                        leg.ringing = now;
                    }
                }
            }
            Body::CallAnswered(c) => {
                if let Some(call) = self.call_mut(&c.call_id) {
                    if call.answered == 0 {
                        call.answered = now;
                    }
                    if let Some(leg) = open_target(call, &c.target) {
                        leg.answered = now;
                    }
                }
            }
            Body::TargetNoAnswer(t) | Body::TargetFailed(t) | Body::TargetEnded(t) => {
                if let Some(call) = self.call_mut(&t.call_id) {
                    if let Some(leg) = open_target(call, &t.target) {
                        leg.ended = now;
                        if leg.answered == 0 && t.sip_code >= 400 {
                            leg.status_code = t.sip_code;
                        }
                    }
                }
            }
            Body::CallRerouted(c) => {
                if let Some(call) = self.call_mut(&c.call_id) {
                    if call.answered != 0 {
                        call.transferred = true;
                        for leg in call.targets.iter_mut().filter(|l| l.answered != 0) {
                            if leg.end_reason.is_empty() {
                                leg.end_reason = "referred";
                            }
                        }
                    }
                }
            }
            Body::CallEnded(c) => {
                let i = self.calls.iter().position(|x| x.call_id == c.call_id);
                seen.ended = Some(
                    i.map(|i| self.calls.swap_remove(i))
                        .unwrap_or_else(|| forgotten(c, now)),
                );
            }
            Body::EndpointRegistered(r) | Body::EndpointUnregistered(r) => {
                let registered = matches!(ev.body, Body::EndpointRegistered(_));
                let Some(ext) = self.extension_mut(extension_number(&r.aor), registered) else {
                    return seen;
                };
                let was = ext.online();
                let secs = now / 1_000_000;
                let at = ext
                    .contacts
                    .iter()
                    .position(|k| k.uri == r.contact.as_str());
                if registered {
                    let contact = Contact {
                        uri: r.contact.clone(),
                        expires: secs + u64::from(r.expires),
                        last_update: secs,
                        received_from: r.received_from.clone(),
                        user_agent: r.user_agent.clone(),
                    };
                    match at {
                        Some(i) => ext.contacts[i] = contact,
                        None => {
                            if ext.contacts.is_full() {
                                if let Some((i, _)) = ext
                                    .contacts
                                    .iter()
                                    .enumerate()
                                    .min_by_key(|(_, k)| k.last_update)
                                {
                                    ext.contacts.swap_remove(i);
                                }
                            }
                            let _ = ext.contacts.push(contact);
                        }
                    }
                } else if r.contact.is_empty() {
                    ext.contacts.clear();
                } else if let Some(i) = at {
                    ext.contacts.remove(i);
                }
                seen.online_changed = was != ext.online();
            }
            Body::EndpointPresence(p) => {
                let user = p.source == "user";
                let Some(ext) = self.extension_mut(&p.extension, true) else {
                    return seen;
                };
                if user {
                    ext.presence = presence(p.state);
                    ext.presence_note = if is_presence_word(&p.note) {
                        LongText::new()
                    } else {
                        p.note.clone()
                    };
                } else {
                    let status = call_status(p.state);
                    seen.call_status_changed = ext.call_status != status;
                    ext.call_status = status;
                }
            }
            Body::QueueCallerJoined(c) => {
                if let Some(call) = self.call_mut(&c.call_id) {
                    call.queued = true;
                }
                if let Some(q) = self.queue_mut(&c.queue) {
                    q.waiting.retain(|w| w.call_id != c.call_id);
                    let _ = q.waiting.push(Waiting {
                        call_id: c.call_id.clone(),
                        caller: c.caller.clone(),
                        caller_name: c.caller_name.clone(),
                        position: c.position,
                        since: now,
                    });
                }
            }
            Body::QueueCallerLeft(c) => {
                if let Some(q) = self.queue_mut(&c.queue) {
                    q.waiting.retain(|w| w.call_id != c.call_id);
                    if q.waiting.is_empty() {
                        q.breached = 0;
                    }
                }
            }
            Body::QueueAgentStatus(a) => {
                if let Some(q) = self.queue_mut(&a.queue) {
                    let ext = extension_number(&a.agent);
                    q.agents.retain(|x| x.extension != ext);
                    if a.state != "removed" {
                        let _ = q.agents.push(Agent {
                            extension: event::text(ext),
                            state: agent_state(a.state),
                            since: now,
                        });
                    }
                }
            }
            Body::QueueSlaBreached(s) => {
                if let Some(q) = self.queue_mut(&s.queue) {
                    q.breached += 1;
                }
            }
            _ => {}
        }
        seen
    }

    fn call_mut(&mut self, call_id: &str) -> Option<&mut Call> {
        self.calls.iter_mut().find(|c| c.call_id == call_id)
    }

    pub fn call(&self, call_id: &str) -> Option<&Call> {
        self.calls.iter().find(|c| c.call_id == call_id)
    }

    /// The extension `number`, added when `add` and there is room.
    fn extension_mut(&mut self, number: &str, add: bool) -> Option<&mut Extension> {
        if number.is_empty() {
            return None;
        }
        match self.extensions.iter().position(|e| e.number == number) {
            Some(i) => Some(&mut self.extensions[i]),
            None if add && self.extensions.len() < MAX_EXTENSIONS => {
                self.extensions.push(Extension {
                    number: event::text(number),
                    presence: "ONLINE",
                    ..Default::default()
                });
                self.extensions.last_mut()
            }
            None => None,
        }
    }

    pub fn extension(&self, number: &str) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.number == number)
    }

    /// Extensions known so far, in the order first seen.
    pub fn extensions(&self) -> impl Iterator<Item = &Extension> {
        self.extensions.iter()
    }

    /// Where a leg to `target` rings: its extension's newest registration, else `channel`.
    fn contact_of(&self, target: &str, channel: &str) -> LongText {
        self.extension(extension_number(target))
            .and_then(|e| e.contacts.iter().max_by_key(|k| k.last_update))
            .map_or_else(|| event::text(channel), |k| k.uri.clone())
    }

    fn queue_mut(&mut self, name: &str) -> Option<&mut Queue> {
        match self.queues.iter().position(|q| q.name == name) {
            Some(i) => Some(&mut self.queues[i]),
            None => {
                self.queues
                    .push(Queue {
                        name: event::text(name),
                        ..Default::default()
                    })
                    .ok()?;
                self.queues.last_mut()
            }
        }
    }

    /// The queues known so far, in the order first seen.
    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.queues.iter()
    }

    /// The queues agent `extension` is in, with its state in each.
    pub fn agent_queues<'a>(
        &'a self,
        extension: &'a str,
    ) -> impl Iterator<Item = (&'a Queue, &'a Agent)> + 'a {
        self.queues.iter().filter_map(move |q| {
            q.agents
                .iter()
                .find(|a| a.extension == extension)
                .map(|a| (q, a))
        })
    }
}

/// The leg to `target` still going (the newest, when a target was dialled twice).
fn open_target<'a>(call: &'a mut Call, target: &str) -> Option<&'a mut Target> {
    let target = extension_number(target);
    call.targets
        .iter_mut()
        .rev()
        .find(|l| l.ended == 0 && extension_number(&l.callee) == target)
}

/// A call that ended after the table forgot it: what its own end event tells.
fn forgotten(c: &CallEnded, now: u64) -> Call {
    let started = now.saturating_sub(u64::from(c.duration) * 1_000_000);
    Call {
        call_id: c.call_id.clone(),
        session_id: c.call_id.clone(),
        caller: c.from.clone(),
        callee: c.to.clone(),
        direction: "unknown",
        started,
        answered: if c.answered {
            now.saturating_sub(u64::from(c.billsec) * 1_000_000)
        } else {
            0
        },
        ..Default::default()
    }
}
