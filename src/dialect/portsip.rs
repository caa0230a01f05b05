//! The `portsip` dialect (PortSIP PBX Pub/Sub over WebSocket): `event_type` messages as the
//! PortSIP seed shows them, grouped in the topics `extension_events`, `cdr_events` and
//! `queue_events`, with the extension or queue each message concerns (for filters).
//!
//! Pure: [`State`] follows calls and queues from the events it is shown (so
//! `call_established` can name caller and callee, and a `queue_status` snapshot can be
//! sent on subscribe), [`encode`] writes one event, [`encode_queue_status`] one snapshot.
//! PortSIP ids we do not have are filled from what Asterisk gives: `session_id` and
//! `cdr_id` are the call's Uniqueid/Linkedid, `extension_id` and `queue_id` the
//! extension's number and the queue's name, `tenant_id` the configured tenant.

use core::fmt::Write as _;

use heapless::{String, Vec};
use serde::Serialize;

use super::{write_json, EncodeError, Encoded};
use crate::event::{self, Body, Event, Id, Text};

/// Live calls remembered to name caller and callee in later call events; when full, the
/// oldest is forgotten (its later events carry only what they hold themselves).
pub const MAX_CALLS: usize = 256;
/// Queues whose state is kept for the `queue_status` snapshot; more are not tracked.
pub const MAX_QUEUES: usize = 16;
/// Waiting callers kept per queue; more are left out of the snapshot.
pub const MAX_QUEUE_WAITING: usize = 16;
/// Agents kept per queue; more are left out of the snapshot.
pub const MAX_QUEUE_AGENTS: usize = 16;
/// Largest `queue_status` snapshot: a full queue with every string escaped at worst.
pub const MAX_SNAPSHOT_LEN: usize = 128 * 1024;

/// A PortSIP Pub/Sub topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    ExtensionEvents,
    CdrEvents,
    QueueEvents,
}

impl Topic {
    pub const ALL: [Topic; 3] = [Topic::ExtensionEvents, Topic::CdrEvents, Topic::QueueEvents];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::ExtensionEvents => "extension_events",
            Topic::CdrEvents => "cdr_events",
            Topic::QueueEvents => "queue_events",
        }
    }

    pub fn parse(s: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Where an encoded event goes: its topic, and the extensions (for extension and CDR
/// events) or the queue (for queue events) it concerns. Empty strings mean none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub topic: Topic,
    pub extensions: [Text; 3],
    pub queue: Text,
}

impl Route {
    fn new(topic: Topic) -> Self {
        Route {
            topic,
            extensions: Default::default(),
            queue: Text::new(),
        }
    }

    fn with(mut self, exts: &[&str]) -> Self {
        for (slot, e) in self.extensions.iter_mut().zip(exts) {
            *slot = event::text(extension_number(e));
        }
        self
    }

    /// Whether the event concerns extension `ext`.
    pub fn concerns(&self, ext: &str) -> bool {
        !ext.is_empty() && self.extensions.iter().any(|e| e == ext)
    }
}

/// The extension number in an endpoint or interface name: `PJSIP/102` → `102`.
pub fn extension_number(s: &str) -> &str {
    s.rsplit_once('/').map_or(s, |(_, n)| n)
}

/// What the dialect adds that events do not carry.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// SIP domain in `sip:<ext>@<domain>` addresses.
    pub domain: &'a str,
    pub tenant_id: &'a str,
}

#[derive(Debug, Clone, Default)]
struct Call {
    call_id: Id,
    session_id: Id,
    caller: Text,
    callee: Text,
    started: u64,
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
    /// PortSIP's agent state (`READY`, `QUEUE_CALL`, ...).
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

/// What the dialect remembers between events: live calls and queue states. Fixed size.
#[derive(Debug, Default)]
pub struct State {
    calls: Vec<Call, MAX_CALLS>,
    queues: Vec<Queue, MAX_QUEUES>,
}

/// PortSIP's agent state for pbxtap's normalized one.
fn agent_state(state: &str) -> &'static str {
    match state {
        "ready" | "ringing" => "READY",
        "in_call" => "QUEUE_CALL",
        "paused" => "NOT_READY",
        "removed" => "LOGOUT",
        _ => "OFFLINE",
    }
}

impl State {
    /// Follows `ev`: call starts and ends, queue callers and agents. Call before [`encode`].
    pub fn observe(&mut self, ev: &Event) {
        match &ev.body {
            Body::CallStarted(c) => {
                if self.calls.is_full() {
                    if let Some((i, _)) =
                        self.calls.iter().enumerate().min_by_key(|(_, c)| c.started)
                    {
                        self.calls.swap_remove(i);
                    }
                }
                let _ = self.calls.push(Call {
                    call_id: c.call_id.clone(),
                    session_id: c.session_id.clone(),
                    caller: c.from.clone(),
                    callee: c.to.clone(),
                    started: ev.time,
                });
            }
            Body::CallEnded(c) => {
                // call.cdr may follow call.ended; it carries its own source and destination.
                if let Some(i) = self.calls.iter().position(|x| x.call_id == c.call_id) {
                    self.calls.swap_remove(i);
                }
            }
            Body::QueueCallerJoined(c) => {
                if let Some(q) = self.queue_mut(&c.queue) {
                    q.waiting.retain(|w| w.call_id != c.call_id);
                    let _ = q.waiting.push(Waiting {
                        call_id: c.call_id.clone(),
                        caller: c.caller.clone(),
                        caller_name: c.caller_name.clone(),
                        position: c.position,
                        since: ev.time,
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
                            since: ev.time,
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

    fn call(&self, call_id: &str) -> Option<&Call> {
        self.calls.iter().find(|c| c.call_id == call_id)
    }

    /// The queues known so far, in the order first seen.
    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.queues.iter()
    }
}

/// `sip:<ext>@<domain>`, or empty for an empty extension.
type Aor = String<{ event::TEXT_LEN * 2 + 8 }>;

fn aor(ext: &str, ctx: &Context) -> Aor {
    let mut s = Aor::new();
    if !ext.is_empty() {
        // Cannot fail: both parts are bounded to TEXT_LEN.
        let _ = write!(
            s,
            "sip:{}@{}",
            ext,
            &ctx.domain[..ctx.domain.len().min(event::TEXT_LEN)]
        );
    }
    s
}

/// Unix seconds as a decimal string, as PortSIP writes `time` and `timestamp`.
type Secs = String<20>;

fn secs(time_micros: u64) -> Secs {
    let mut s = Secs::new();
    let _ = write!(s, "{}", time_micros / 1_000_000);
    s
}

fn direction(d: &str) -> &'static str {
    match d {
        "internal" => "ext",
        "inbound" => "inbound",
        "outbound" => "outbound",
        _ => "unknown",
    }
}

#[derive(Serialize)]
struct CallMsg<'a> {
    call_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_target: Option<&'a str>,
    callee: &'a str,
    caller: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cdr_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<&'a str>,
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fail_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    session_id: &'a str,
    tenant_id: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct HoldMsg<'a> {
    aor: &'a str,
    call_id: &'a str,
    event_type: &'a str,
    peer_aor: &'a str,
    session_id: &'a str,
    tenant_id: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct Contact<'a> {
    contact_uri: &'a str,
    expires: u64,
    instance: &'a str,
    last_update: u64,
    public_address: &'a str,
    received_from: &'a str,
    reg_id: u32,
    user_agent: &'a str,
}

#[derive(Serialize)]
struct RegisterMsg<'a> {
    event_type: &'a str,
    extension: &'a str,
    extension_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    registration_contacts: Option<[Contact<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    removed_contacts: Option<[Contact<'a>; 1]>,
    tenant_id: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct PresenceMsg<'a> {
    event_type: &'a str,
    extension: &'a str,
    note: &'a str,
    state: &'a str,
    tenant_id: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct CdrMsg<'a> {
    event_type: &'a str,
    call_id: &'a str,
    session_id: &'a str,
    caller: &'a str,
    callee: &'a str,
    caller_display_name: &'a str,
    destination_context: &'a str,
    start_time: &'a str,
    answer_time: &'a str,
    end_time: &'a str,
    duration: u32,
    billsec: u32,
    disposition: &'a str,
    account_code: &'a str,
    last_application: &'a str,
    user_field: &'a str,
    tenant_id: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct CallerEntry<'a> {
    position: &'a str,
    session_id: &'a str,
    caller_number: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    timestamp: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct CallerStatusMsg<'a> {
    event_type: &'a str,
    tenant_id: &'a str,
    queue_id: &'a str,
    updated_callers: [CallerEntry<'a>; 1],
}

#[derive(Serialize)]
struct AgentEntry<'a> {
    state: &'a str,
    agent_extension_number: &'a str,
    session_id: &'a str,
    caller_number: &'a str,
    caller_name: &'a str,
    timestamp: &'a str,
}

#[derive(Serialize)]
struct RemovedAgent<'a> {
    agent_extension_number: &'a str,
}

#[derive(Serialize)]
struct AgentStatusMsg<'a> {
    event_type: &'a str,
    queue_id: &'a str,
    tenant_id: &'a str,
    updated_agents: &'a [AgentEntry<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    removed_agents: Option<[RemovedAgent<'a>; 1]>,
}

#[derive(Serialize)]
struct SlaMsg<'a> {
    event_type: &'a str,
    queue_id: &'a str,
    tenant_id: &'a str,
    caller: &'a str,
    total_callers_breached: u32,
    sla_time_secs: u32,
    waiting_callers: u32,
    timestamp: &'a str,
}

/// Position as PortSIP writes it: a decimal string.
type Num = String<10>;

fn num(n: u32) -> Num {
    let mut s = Num::new();
    let _ = write!(s, "{n}");
    s
}

/// Writes `ev` as a PortSIP message into `out` and says where it goes; `None` (and `out`
/// empty) for events PortSIP has no message for (`call.ringing`, `system.*`).
/// `state` should have observed `ev` already.
pub fn encode(
    ev: &Event,
    state: &State,
    ctx: &Context,
    out: &mut Encoded,
) -> Result<Option<Route>, EncodeError> {
    out.clear();
    let time = secs(ev.time);
    // A call event after call_start: caller and callee come from the remembered call.
    // `shown` is the `call_target` written (empty for endings), `target` the extension
    // the event concerns besides caller and callee.
    let call_msg = |event_type: &'static str,
                    call_id: &str,
                    shown: &str,
                    target: &str,
                    fail_code: Option<u16>,
                    out: &mut Encoded|
     -> Result<Option<Route>, EncodeError> {
        let (caller, callee, session) = match state.call(call_id) {
            Some(c) => (c.caller.as_str(), c.callee.as_str(), c.session_id.as_str()),
            None => ("", "", call_id),
        };
        let target = extension_number(target);
        write_json(
            &CallMsg {
                call_id,
                call_target: Some(&aor(extension_number(shown), ctx)),
                callee: &aor(callee, ctx),
                caller: &aor(caller, ctx),
                caller_display_name: None,
                cdr_id: None,
                direction: None,
                event_type,
                fail_code,
                request_id: None,
                session_id: session,
                tenant_id: ctx.tenant_id,
                time: &time,
            },
            out,
        )?;
        Ok(Some(
            Route::new(Topic::ExtensionEvents).with(&[caller, callee, target]),
        ))
    };
    match &ev.body {
        Body::CallStarted(c) => {
            write_json(
                &CallMsg {
                    call_id: &c.call_id,
                    call_target: None,
                    callee: &aor(&c.to, ctx),
                    caller: &aor(&c.from, ctx),
                    caller_display_name: Some(&c.from_name),
                    cdr_id: Some(&c.call_id),
                    direction: Some(direction(c.direction)),
                    event_type: "call_start",
                    fail_code: None,
                    request_id: Some("0"),
                    session_id: &c.session_id,
                    tenant_id: ctx.tenant_id,
                    time: &time,
                },
                out,
            )?;
            Ok(Some(
                Route::new(Topic::ExtensionEvents).with(&[&c.from, &c.to]),
            ))
        }
        Body::CallAnswered(c) => call_msg(
            "call_established",
            &c.call_id,
            &c.target,
            &c.target,
            None,
            out,
        ),
        Body::CallRerouted(c) => {
            call_msg("call_reroute", &c.call_id, &c.target, &c.target, None, out)
        }
        Body::CallNoAnswer(c) => call_msg("call_noanswer", &c.call_id, "", &c.target, None, out),
        Body::CallFailed(c) => {
            // PortSIP always gives a SIP code; Asterisk's unknown is "temporarily unavailable".
            let code = if c.sip_code == 0 { 480 } else { c.sip_code };
            call_msg("call_fail", &c.call_id, "", &c.target, Some(code), out)
        }
        Body::CallEnded(c) => {
            // The call is forgotten by now: its own from/to name the parties.
            write_json(
                &CallMsg {
                    call_id: &c.call_id,
                    call_target: Some(""),
                    callee: &aor(&c.to, ctx),
                    caller: &aor(&c.from, ctx),
                    caller_display_name: None,
                    cdr_id: None,
                    direction: None,
                    event_type: "call_ended",
                    fail_code: None,
                    request_id: None,
                    session_id: state.call(&c.call_id).map_or(&c.call_id, |k| &k.session_id),
                    tenant_id: ctx.tenant_id,
                    time: &time,
                },
                out,
            )?;
            Ok(Some(
                Route::new(Topic::ExtensionEvents).with(&[&c.from, &c.to]),
            ))
        }
        Body::CallHeld(h) | Body::CallUnheld(h) => {
            let event_type = if matches!(ev.body, Body::CallHeld(_)) {
                "call_hold"
            } else {
                "call_unhold"
            };
            write_json(
                &HoldMsg {
                    aor: &aor(&h.aor, ctx),
                    call_id: &h.call_id,
                    event_type,
                    peer_aor: &aor(&h.peer_aor, ctx),
                    session_id: state.call(&h.call_id).map_or(&h.call_id, |k| &k.session_id),
                    tenant_id: ctx.tenant_id,
                    time: &time,
                },
                out,
            )?;
            Ok(Some(
                Route::new(Topic::ExtensionEvents).with(&[&h.aor, &h.peer_aor]),
            ))
        }
        Body::TargetAdded(t)
        | Body::TargetRinging(t)
        | Body::TargetNoAnswer(t)
        | Body::TargetFailed(t)
        | Body::TargetEnded(t) => {
            let event_type = match ev.body {
                Body::TargetAdded(_) => "target_add",
                Body::TargetRinging(_) => "target_ringing",
                Body::TargetNoAnswer(_) => "target_noanswer",
                Body::TargetFailed(_) => "target_fail",
                _ => "target_ended",
            };
            let code =
                (matches!(ev.body, Body::TargetFailed(_)) && t.sip_code != 0).then_some(t.sip_code);
            call_msg(event_type, &t.call_id, &t.target, &t.target, code, out)
        }
        Body::EndpointRegistered(r) | Body::EndpointUnregistered(r) => {
            let ext = extension_number(&r.aor);
            let now = ev.time / 1_000_000;
            let contact = [Contact {
                contact_uri: &r.contact,
                expires: now + u64::from(r.expires),
                instance: "",
                last_update: now,
                public_address: &r.received_from,
                received_from: &r.received_from,
                reg_id: 0,
                user_agent: &r.user_agent,
            }];
            let registered = matches!(ev.body, Body::EndpointRegistered(_));
            let (registration_contacts, removed_contacts) = if registered {
                (Some(contact), None)
            } else {
                (None, Some(contact))
            };
            write_json(
                &RegisterMsg {
                    event_type: "extension_register",
                    extension: &aor(ext, ctx),
                    extension_id: ext,
                    registration_contacts,
                    removed_contacts,
                    tenant_id: ctx.tenant_id,
                    time: &time,
                },
                out,
            )?;
            Ok(Some(Route::new(Topic::ExtensionEvents).with(&[ext])))
        }
        Body::EndpointPresence(p) => {
            write_json(
                &PresenceMsg {
                    event_type: "extension_presence",
                    extension: &aor(&p.extension, ctx),
                    note: if p.note.is_empty() { p.state } else { &p.note },
                    state: p.state,
                    tenant_id: ctx.tenant_id,
                    time: &time,
                },
                out,
            )?;
            Ok(Some(
                Route::new(Topic::ExtensionEvents).with(&[&p.extension]),
            ))
        }
        Body::CallCdr(c) => {
            write_json(
                &CdrMsg {
                    event_type: "call_cdr",
                    call_id: &c.call_id,
                    session_id: &c.unique_id,
                    caller: &aor(&c.source, ctx),
                    callee: &aor(&c.destination, ctx),
                    caller_display_name: &c.caller_id,
                    destination_context: &c.destination_context,
                    start_time: &c.start_time,
                    answer_time: &c.answer_time,
                    end_time: &c.end_time,
                    duration: c.duration,
                    billsec: c.billsec,
                    disposition: &c.disposition,
                    account_code: &c.account_code,
                    last_application: &c.last_application,
                    user_field: &c.user_field,
                    tenant_id: ctx.tenant_id,
                    time: &time,
                },
                out,
            )?;
            Ok(Some(Route::new(Topic::CdrEvents).with(&[
                &c.source,
                &c.destination,
                extension_number(channel_endpoint(&c.destination_channel)),
            ])))
        }
        Body::QueueCallerJoined(c) | Body::QueueCallerLeft(c) => {
            let reason = match (&ev.body, c.reason) {
                (Body::QueueCallerJoined(_), _) => "enqueue",
                (_, "answered") => "agent_answered",
                (_, "timeout") => "overflow",
                _ => "hangup",
            };
            write_json(
                &CallerStatusMsg {
                    event_type: "queue_caller_status",
                    tenant_id: ctx.tenant_id,
                    queue_id: &c.queue,
                    updated_callers: [CallerEntry {
                        position: &num(c.position),
                        session_id: &c.call_id,
                        caller_number: &c.caller,
                        caller_name: None,
                        reason: Some(reason),
                        timestamp: &time,
                        kind: "normal",
                    }],
                },
                out,
            )?;
            Ok(Some(queue_route(&c.queue)))
        }
        Body::QueueAgentStatus(a) => {
            let ext = extension_number(&a.agent);
            let removed = a.state == "removed";
            let updated = [AgentEntry {
                state: agent_state(a.state),
                agent_extension_number: ext,
                session_id: "",
                caller_number: "",
                caller_name: "",
                timestamp: &time,
            }];
            write_json(
                &AgentStatusMsg {
                    event_type: "queue_agent_status",
                    queue_id: &a.queue,
                    tenant_id: ctx.tenant_id,
                    updated_agents: if removed { &[] } else { &updated },
                    removed_agents: removed.then_some([RemovedAgent {
                        agent_extension_number: ext,
                    }]),
                },
                out,
            )?;
            Ok(Some(queue_route(&a.queue)))
        }
        Body::QueueSlaBreached(s) => {
            let q = state.queues().find(|q| q.name == s.queue);
            write_json(
                &SlaMsg {
                    event_type: "queue_sla_breached",
                    queue_id: &s.queue,
                    tenant_id: ctx.tenant_id,
                    caller: &s.caller,
                    total_callers_breached: q.map_or(1, |q| q.breached),
                    sla_time_secs: s.sla_secs,
                    waiting_callers: q.map_or(0, |q| q.waiting.len() as u32),
                    timestamp: &time,
                },
                out,
            )?;
            Ok(Some(queue_route(&s.queue)))
        }
        Body::CallRouted(_)
        | Body::CallRinging(_)
        | Body::AsteriskUp(_)
        | Body::AsteriskDown(_)
        | Body::AsteriskDegraded(_)
        | Body::AsteriskRestarted(_)
        | Body::AmiConnected(_)
        | Body::AmiDisconnected(_)
        | Body::EventsDropped(_)
        | Body::SinkDown(_)
        | Body::SinkUp(_) => Ok(None),
    }
}

fn queue_route(queue: &str) -> Route {
    let mut r = Route::new(Topic::QueueEvents);
    r.queue = event::text(queue);
    r
}

/// The endpoint of a channel name: `PJSIP/102-00000003` → `PJSIP/102`.
fn channel_endpoint(channel: &str) -> &str {
    channel.rsplit_once('-').map_or(channel, |(e, _)| e)
}

#[derive(Serialize)]
struct QueueStatusMsg<'a> {
    event_type: &'a str,
    tenant_id: &'a str,
    queue_id: &'a str,
    queue_number: &'a str,
    queue_name: &'a str,
    waiting_list: &'a [CallerEntry<'a>],
    agents: &'a [AgentEntry<'a>],
}

/// Writes the `queue_status` snapshot of `q`, stamped `now` (microseconds), into `out`,
/// which is resized to what it holds (at most [`MAX_SNAPSHOT_LEN`]).
pub fn encode_queue_status(
    q: &Queue,
    ctx: &Context,
    out: &mut std::vec::Vec<u8>,
) -> Result<(), EncodeError> {
    let mut positions: Vec<Num, MAX_QUEUE_WAITING> = Vec::new();
    let mut stamps: Vec<Secs, { MAX_QUEUE_WAITING + MAX_QUEUE_AGENTS }> = Vec::new();
    for w in &q.waiting {
        let _ = positions.push(num(w.position));
        let _ = stamps.push(secs(w.since));
    }
    for a in &q.agents {
        let _ = stamps.push(secs(a.since));
    }
    let mut waiting: Vec<CallerEntry, MAX_QUEUE_WAITING> = Vec::new();
    for (i, w) in q.waiting.iter().enumerate() {
        let _ = waiting.push(CallerEntry {
            position: &positions[i],
            session_id: &w.call_id,
            caller_number: &w.caller,
            caller_name: Some(&w.caller_name),
            reason: None,
            timestamp: &stamps[i],
            kind: "normal",
        });
    }
    let mut agents: Vec<AgentEntry, MAX_QUEUE_AGENTS> = Vec::new();
    for (i, a) in q.agents.iter().enumerate() {
        let _ = agents.push(AgentEntry {
            state: a.state,
            agent_extension_number: &a.extension,
            session_id: "",
            caller_number: "",
            caller_name: "",
            timestamp: &stamps[q.waiting.len() + i],
        });
    }
    out.clear();
    out.resize(MAX_SNAPSHOT_LEN, 0);
    let msg = QueueStatusMsg {
        event_type: "queue_status",
        tenant_id: ctx.tenant_id,
        queue_id: &q.name,
        queue_number: &q.name,
        queue_name: &q.name,
        waiting_list: &waiting,
        agents: &agents,
    };
    match serde_json_core::to_slice(&msg, out) {
        Ok(n) => {
            out.truncate(n);
            Ok(())
        }
        Err(_) => {
            out.clear();
            Err(EncodeError::TooLarge)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;

    const CTX: Context = Context {
        domain: "portsip.io",
        tenant_id: "236047118140313600",
    };

    fn ev(secs: u64, body: Body) -> Event {
        Event::new(secs * 1_000_000, &text("pbx1"), body)
    }

    fn run(state: &mut State, e: &Event) -> (std::string::String, Option<Route>) {
        state.observe(e);
        let mut out = Encoded::new();
        let route = encode(e, state, &CTX, &mut out).unwrap();
        (std::string::String::from_utf8(out.to_vec()).unwrap(), route)
    }

    fn started() -> Event {
        ev(
            1632670771,
            Body::CallStarted(CallStarted {
                call_id: text("rjFyDxQSbXPxXAd1IR8W-g.."),
                session_id: text("494533487177502720"),
                from: text("102"),
                to: text("103"),
                direction: "internal",
                ..Default::default()
            }),
        )
    }

    #[test]
    fn call_start_has_the_seed_shape() {
        let (json, route) = run(&mut State::default(), &started());
        assert_eq!(
            json,
            r#"{"call_id":"rjFyDxQSbXPxXAd1IR8W-g..","callee":"sip:103@portsip.io","caller":"sip:102@portsip.io","caller_display_name":"","cdr_id":"rjFyDxQSbXPxXAd1IR8W-g..","direction":"ext","event_type":"call_start","request_id":"0","session_id":"494533487177502720","tenant_id":"236047118140313600","time":"1632670771"}"#
        );
        let route = route.unwrap();
        assert_eq!(route.topic, Topic::ExtensionEvents);
        assert!(route.concerns("102") && route.concerns("103") && !route.concerns("104"));
    }

    #[test]
    fn established_fail_and_ended_name_caller_and_callee() {
        let mut st = State::default();
        run(&mut st, &started());
        let id = "rjFyDxQSbXPxXAd1IR8W-g..";
        let (json, _) = run(
            &mut st,
            &ev(
                1632671262,
                Body::CallAnswered(CallTarget {
                    call_id: text(id),
                    target: text("103"),
                    ..Default::default()
                }),
            ),
        );
        assert_eq!(
            json,
            r#"{"call_id":"rjFyDxQSbXPxXAd1IR8W-g..","call_target":"sip:103@portsip.io","callee":"sip:103@portsip.io","caller":"sip:102@portsip.io","event_type":"call_established","session_id":"494533487177502720","tenant_id":"236047118140313600","time":"1632671262"}"#
        );
        let (json, route) = run(
            &mut st,
            &ev(
                1632671788,
                Body::CallFailed(CallFailed {
                    call_id: text(id),
                    target: text("104"),
                    sip_code: 480,
                    ..Default::default()
                }),
            ),
        );
        assert_eq!(
            json,
            r#"{"call_id":"rjFyDxQSbXPxXAd1IR8W-g..","call_target":"","callee":"sip:103@portsip.io","caller":"sip:102@portsip.io","event_type":"call_fail","fail_code":480,"session_id":"494533487177502720","tenant_id":"236047118140313600","time":"1632671788"}"#
        );
        assert!(route.unwrap().concerns("104"));
        let (json, _) = run(
            &mut st,
            &ev(
                1632671510,
                Body::CallNoAnswer(CallTarget {
                    call_id: text(id),
                    target: text("103"),
                    ..Default::default()
                }),
            ),
        );
        assert!(json.contains(r#""call_target":"","callee":"sip:103@portsip.io","caller":"sip:102@portsip.io","event_type":"call_noanswer""#), "{json}");
        let (json, _) = run(
            &mut st,
            &ev(
                1632671272,
                Body::CallEnded(CallEnded {
                    call_id: text(id),
                    from: text("102"),
                    to: text("103"),
                    ..Default::default()
                }),
            ),
        );
        assert_eq!(
            json,
            r#"{"call_id":"rjFyDxQSbXPxXAd1IR8W-g..","call_target":"","callee":"sip:103@portsip.io","caller":"sip:102@portsip.io","event_type":"call_ended","session_id":"rjFyDxQSbXPxXAd1IR8W-g..","tenant_id":"236047118140313600","time":"1632671272"}"#
        );
    }

    #[test]
    fn hold_has_aor_and_peer_aor() {
        let (json, route) = run(
            &mut State::default(),
            &ev(
                1632669389,
                Body::CallHeld(CallHold {
                    call_id: text("09jV-7QM2B-3E0Q-m20exw.."),
                    aor: text("102"),
                    peer_aor: text("103"),
                    ..Default::default()
                }),
            ),
        );
        assert_eq!(
            json,
            r#"{"aor":"sip:102@portsip.io","call_id":"09jV-7QM2B-3E0Q-m20exw..","event_type":"call_hold","peer_aor":"sip:103@portsip.io","session_id":"09jV-7QM2B-3E0Q-m20exw..","tenant_id":"236047118140313600","time":"1632669389"}"#
        );
        assert!(route.unwrap().concerns("103"));
    }

    #[test]
    fn register_and_unregister_carry_contacts() {
        let reg = Registration {
            aor: text("102"),
            contact: text("<sip:102@113.246.194.98:10061>"),
            expires: 300,
            user_agent: text("Test SIPMaster for IOS"),
            received_from: text("113.246.194.98:10061"),
            ..Default::default()
        };
        let (json, route) = run(
            &mut State::default(),
            &ev(1632668122, Body::EndpointRegistered(reg.clone())),
        );
        assert_eq!(
            json,
            r#"{"event_type":"extension_register","extension":"sip:102@portsip.io","extension_id":"102","registration_contacts":[{"contact_uri":"<sip:102@113.246.194.98:10061>","expires":1632668422,"instance":"","last_update":1632668122,"public_address":"113.246.194.98:10061","received_from":"113.246.194.98:10061","reg_id":0,"user_agent":"Test SIPMaster for IOS"}],"tenant_id":"236047118140313600","time":"1632668122"}"#
        );
        assert!(route.unwrap().concerns("102"));
        let (json, _) = run(
            &mut State::default(),
            &ev(1632668724, Body::EndpointUnregistered(reg)),
        );
        assert!(json.contains(r#""removed_contacts":[{"#), "{json}");
        assert!(!json.contains("registration_contacts"), "{json}");
    }

    #[test]
    fn presence_cdr_and_nothing_for_ringing_or_system() {
        let (json, _) = run(
            &mut State::default(),
            &ev(
                1675136792,
                Body::EndpointPresence(Presence {
                    extension: text("102"),
                    state: "unavailable",
                    note: text("Away"),
                }),
            ),
        );
        assert_eq!(
            json,
            r#"{"event_type":"extension_presence","extension":"sip:102@portsip.io","note":"Away","state":"unavailable","tenant_id":"236047118140313600","time":"1675136792"}"#
        );
        let (json, route) = run(
            &mut State::default(),
            &ev(
                5,
                Body::CallCdr(Cdr {
                    call_id: text("1.2"),
                    source: text("101"),
                    destination: text("8001"),
                    destination_channel: text("PJSIP/102-00000010"),
                    disposition: text("ANSWERED"),
                    billsec: 5,
                    ..Default::default()
                }),
            ),
        );
        assert!(
            json.starts_with(r#"{"event_type":"call_cdr","call_id":"1.2""#),
            "{json}"
        );
        let route = route.unwrap();
        assert_eq!(route.topic, Topic::CdrEvents);
        assert!(route.concerns("101") && route.concerns("102") && route.concerns("8001"));
        let mut out = Encoded::new();
        let ringing = ev(1, Body::CallRinging(CallTarget::default()));
        assert_eq!(
            encode(&ringing, &State::default(), &CTX, &mut out),
            Ok(None)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn queue_events_and_the_snapshot() {
        let mut st = State::default();
        let joined = QueueCaller {
            queue: text("8001"),
            call_id: text("6763987198342"),
            caller: text("123456"),
            caller_name: text("Thomas Young"),
            position: 2,
            ..Default::default()
        };
        let (json, route) = run(
            &mut st,
            &ev(1676206249, Body::QueueCallerJoined(joined.clone())),
        );
        assert_eq!(
            json,
            r#"{"event_type":"queue_caller_status","tenant_id":"236047118140313600","queue_id":"8001","updated_callers":[{"position":"2","session_id":"6763987198342","caller_number":"123456","reason":"enqueue","timestamp":"1676206249","type":"normal"}]}"#
        );
        assert_eq!(route.unwrap().queue, "8001");
        let (json, _) = run(
            &mut st,
            &ev(
                1676206249,
                Body::QueueAgentStatus(QueueAgent {
                    queue: text("8001"),
                    agent: text("PJSIP/101"),
                    state: "in_call",
                    ..Default::default()
                }),
            ),
        );
        assert_eq!(
            json,
            r#"{"event_type":"queue_agent_status","queue_id":"8001","tenant_id":"236047118140313600","updated_agents":[{"state":"QUEUE_CALL","agent_extension_number":"101","session_id":"","caller_number":"","caller_name":"","timestamp":"1676206249"}]}"#
        );
        let (json, _) = run(
            &mut st,
            &ev(
                1676206250,
                Body::QueueAgentStatus(QueueAgent {
                    queue: text("8001"),
                    agent: text("PJSIP/102"),
                    state: "removed",
                    ..Default::default()
                }),
            ),
        );
        assert!(
            json.ends_with(
                r#""updated_agents":[],"removed_agents":[{"agent_extension_number":"102"}]}"#
            ),
            "{json}"
        );
        let (json, _) = run(
            &mut st,
            &ev(
                1676206300,
                Body::QueueSlaBreached(QueueSla {
                    queue: text("8001"),
                    caller: text("00431334081002"),
                    sla_secs: 90,
                    ..Default::default()
                }),
            ),
        );
        assert_eq!(
            json,
            r#"{"event_type":"queue_sla_breached","queue_id":"8001","tenant_id":"236047118140313600","caller":"00431334081002","total_callers_breached":1,"sla_time_secs":90,"waiting_callers":1,"timestamp":"1676206300"}"#
        );
        let q = st.queues().next().unwrap();
        let mut snap = std::vec::Vec::new();
        encode_queue_status(q, &CTX, &mut snap).unwrap();
        assert_eq!(
            std::str::from_utf8(&snap).unwrap(),
            r#"{"event_type":"queue_status","tenant_id":"236047118140313600","queue_id":"8001","queue_number":"8001","queue_name":"8001","waiting_list":[{"position":"2","session_id":"6763987198342","caller_number":"123456","caller_name":"Thomas Young","timestamp":"1676206249","type":"normal"}],"agents":[{"state":"QUEUE_CALL","agent_extension_number":"101","session_id":"","caller_number":"","caller_name":"","timestamp":"1676206249"}]}"#
        );
        let left = QueueCaller {
            reason: "answered",
            ..joined
        };
        let (json, _) = run(&mut st, &ev(1676206260, Body::QueueCallerLeft(left)));
        assert!(json.contains(r#""reason":"agent_answered""#), "{json}");
        assert!(st.queues().next().unwrap().waiting.is_empty());
    }

    #[test]
    fn tables_stay_bounded_and_the_fullest_snapshot_fits() {
        let mut st = State::default();
        let long = "\u{1}".repeat(200);
        for i in 0..(MAX_QUEUES + 4) {
            for j in 0..(MAX_QUEUE_WAITING + 4) {
                st.observe(&ev(
                    1,
                    Body::QueueCallerJoined(QueueCaller {
                        queue: text(&format!("{i}{long}")),
                        call_id: text(&format!("{j}{long}")),
                        caller: text(&long),
                        caller_name: text(&long),
                        position: u32::MAX,
                        ..Default::default()
                    }),
                ));
                st.observe(&ev(
                    1,
                    Body::QueueAgentStatus(QueueAgent {
                        queue: text(&format!("{i}{long}")),
                        agent: text(&format!("{j}{long}")),
                        state: "ready",
                        ..Default::default()
                    }),
                ));
            }
        }
        for i in 0..(MAX_CALLS + 10) {
            st.observe(&ev(
                i as u64,
                Body::CallStarted(CallStarted {
                    call_id: text(&i.to_string()),
                    ..Default::default()
                }),
            ));
        }
        assert_eq!(st.calls.len(), MAX_CALLS);
        assert!(st.call("0").is_none() && st.call(&(MAX_CALLS + 9).to_string()).is_some());
        assert_eq!(st.queues().count(), MAX_QUEUES);
        let mut snap = std::vec::Vec::new();
        for q in st.queues() {
            assert_eq!(q.waiting.len(), MAX_QUEUE_WAITING);
            assert_eq!(q.agents.len(), MAX_QUEUE_AGENTS);
            let ctx = Context {
                domain: &long,
                tenant_id: &long,
            };
            encode_queue_status(q, &ctx, &mut snap).unwrap();
        }
    }
}
