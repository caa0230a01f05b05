//! PortSIP v22's messages (the 22.x Pub/Sub pages and the webhook event reference):
//! `extension_status`, `extension_call`, `extension_presence` and
//! `extension_agent_status` on `extension_events`; `call_start`, `call_update_info` and
//! `call_cdr` on `cdr_events`.

use heapless::Vec;
use serde::Serialize;

use super::cdr::{self, Summary};
use super::{aor, secs, Context, Observed, Out, Route, State, Topic};
use super::{extension_number, num, Call, MAX_QUEUES, MAX_TARGETS};
use crate::dialect::{EncodeError, JsonStr};
use crate::event::{Body, CallEnded, Event};

/// Extensions listed in one `extension_status`; a subscribe naming more gets several
/// messages. Eight of the largest entries fit in an encoded event.
pub const STATUS_PER_MESSAGE: usize = 8;

#[derive(Serialize)]
struct StatusEntry<'a> {
    extension: &'a str,
    extension_id: &'a str,
    call_status: &'a str,
    online: bool,
    presence: &'a str,
    presence_note: JsonStr<'a>,
    push_online: bool,
    time: &'a str,
}

#[derive(Serialize)]
struct StatusMsg<'a> {
    event_type: &'a str,
    status: &'a [StatusEntry<'a>],
    tenant_id: &'a str,
}

#[derive(Serialize)]
struct CallStatusMsg<'a> {
    event_type: &'a str,
    extension: &'a str,
    call_status: &'a str,
    tenant_id: &'a str,
    extension_id: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct PresenceMsg<'a> {
    event_type: &'a str,
    extension: &'a str,
    presence: &'a str,
    presence_note: JsonStr<'a>,
    tenant_id: &'a str,
    extension_id: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct AgentQueue<'a> {
    queue_number: &'a str,
    status: &'a str,
}

#[derive(Serialize)]
struct AgentMsg<'a> {
    agent_status: &'a [AgentQueue<'a>],
    event_type: &'a str,
    extension: &'a str,
    extension_id: &'a str,
    tenant_id: &'a str,
    time: &'a str,
}

/// `call_start` and `call_update_info` (which has no `user_data`).
#[derive(Serialize)]
struct CallInfoMsg<'a> {
    event_type: &'a str,
    time: &'a str,
    session_id: &'a str,
    cdr_id: &'a str,
    direction: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_data: Option<&'a str>,
    call_id: &'a str,
    caller_display_name: JsonStr<'a>,
    caller: &'a str,
    callee_display_name: &'a str,
    callee: &'a str,
    tenant_id: &'a str,
    did: &'a str,
    outbound_caller_id: &'a str,
}

/// A call target: the event reference's table (`cdr_id`, `cost`, `direction`) and its
/// example (`id`) together.
#[derive(Serialize)]
struct TargetMsg<'a> {
    answered_time: &'a str,
    call_type: &'a str,
    callee: &'a str,
    caller: &'a str,
    cdr_id: &'a str,
    /// The call's cost with billing on; pbxtap has none: empty.
    cost: &'a str,
    destination: JsonStr<'a>,
    did: &'a str,
    /// `call_start`'s words (`internal`, `inbound`, `outbound`).
    direction: &'a str,
    end_reason: &'a str,
    ended_time: &'a str,
    id: &'a str,
    outbound_caller_id: &'a str,
    ring_duration: &'a str,
    ring_time: &'a str,
    start_time: &'a str,
    status: &'a str,
    status_code: u16,
    talk_duration: &'a str,
    trunk_name: &'a str,
}

/// The event reference's CDR: its table's fields, and its example's where they differ
/// (`ended_reason` beside the table's `end_reason`, `user_data`); the types as the example
/// has them where the table says none (`status_code` and `ring_duration` strings,
/// `talk_duration` a number).
#[derive(Serialize)]
struct CdrMsg<'a> {
    answered_time: &'a str,
    call_id: &'a str,
    call_status: &'a str,
    call_targets: &'a [TargetMsg<'a>],
    callee: &'a str,
    callee_domain: &'a str,
    caller: &'a str,
    caller_display_name: JsonStr<'a>,
    caller_domain: &'a str,
    cdr_id: &'a str,
    did: &'a str,
    direction: &'a str,
    end_reason: &'a str,
    ended_reason: &'a str,
    ended_time: &'a str,
    event_type: &'a str,
    outbound_caller_id: &'a str,
    ring_duration: &'a str,
    ring_time: &'a str,
    session_id: &'a str,
    start_time: &'a str,
    status_code: &'a str,
    talk_duration: u64,
    tenant_id: &'a str,
    tenant_name: &'a str,
    trunk_name: &'a str,
    user_data: &'a str,
}

/// `call_start` / `call_update_info`'s (and a target's) direction words. A call whose start
/// the dialect's table forgot (`unknown`) is told `internal`: PortSIP has no word for
/// not knowing.
fn direction(d: &'static str) -> &'static str {
    match d {
        "inbound" | "outbound" => d,
        _ => "internal",
    }
}

/// `call_start` (with `user_data`) or `call_update_info` of `call`, naming `callee` (the
/// number first dialled, or the one now dialled or answering).
fn call_info(
    call: &Call,
    event_type: &str,
    callee: &str,
    time: &str,
    ctx: &Context,
    out: &mut Out,
) -> Result<(), EncodeError> {
    out.send(
        &Route::new(Topic::CdrEvents).with(&[&call.caller, &call.callee, callee]),
        &CallInfoMsg {
            event_type,
            time,
            session_id: &call.session_id,
            cdr_id: &call.call_id,
            direction: direction(call.direction),
            user_data: (event_type == "call_start").then_some(""),
            call_id: &call.call_id,
            caller_display_name: JsonStr(&call.caller_name),
            caller: &call.caller,
            callee_display_name: "",
            callee,
            tenant_id: ctx.tenant_id,
            did: if call.direction == "inbound" {
                &call.callee
            } else {
                ""
            },
            outbound_caller_id: "",
        },
    )
}

pub fn encode(
    ev: &Event,
    seen: &Observed,
    state: &State,
    ctx: &Context,
    out: &mut Out,
) -> Result<(), EncodeError> {
    let time = secs(ev.time);
    match &ev.body {
        Body::CallStarted(c) => match state.call(&c.call_id) {
            Some(call) => call_info(call, "call_start", &call.callee, &time, ctx, out),
            None => Ok(()),
        },
        Body::CallRouted(c) | Body::CallAnswered(c) | Body::CallRerouted(c) => {
            match state.call(&c.call_id) {
                Some(call) => {
                    let callee = extension_number(&c.target);
                    call_info(call, "call_update_info", callee, &time, ctx, out)
                }
                None => Ok(()),
            }
        }
        Body::CallEnded(c) => match &seen.ended {
            Some(call) => call_cdr(call, c, ev.time, ctx, out),
            None => Ok(()),
        },
        Body::EndpointRegistered(r) | Body::EndpointUnregistered(r) if seen.online_changed => {
            status(&[extension_number(&r.aor)], state, ctx, ev.time, out)
        }
        Body::EndpointPresence(p) => {
            let ext = extension_number(&p.extension);
            let route = Route::new(Topic::ExtensionEvents).with(&[ext]);
            let known = state.extension(ext);
            if p.source == "user" {
                out.send(
                    &route,
                    &PresenceMsg {
                        event_type: "extension_presence",
                        extension: &aor(ext, ctx),
                        presence: known.map_or("ONLINE", |e| e.presence),
                        presence_note: JsonStr(known.map_or("", |e| &e.presence_note)),
                        tenant_id: ctx.tenant_id,
                        extension_id: ext,
                        time: &time,
                    },
                )
            } else if seen.call_status_changed {
                out.send(
                    &route,
                    &CallStatusMsg {
                        event_type: "extension_call",
                        extension: &aor(ext, ctx),
                        call_status: known.map_or("", |e| e.call_status),
                        tenant_id: ctx.tenant_id,
                        extension_id: ext,
                        time: &time,
                    },
                )
            } else {
                Ok(())
            }
        }
        Body::QueueAgentStatus(a) => {
            let ext = extension_number(&a.agent);
            let mut queues: Vec<AgentQueue, MAX_QUEUES> = state
                .agent_queues(ext)
                .map(|(q, a)| AgentQueue {
                    queue_number: &q.name,
                    status: a.state,
                })
                .collect();
            if a.state == "removed" {
                let _ = queues.push(AgentQueue {
                    queue_number: &a.queue,
                    status: "LOGOUT",
                });
            }
            out.send(
                &Route::new(Topic::ExtensionEvents).with(&[ext]),
                &AgentMsg {
                    agent_status: &queues,
                    event_type: "extension_agent_status",
                    extension: &aor(ext, ctx),
                    extension_id: ext,
                    tenant_id: ctx.tenant_id,
                    time: &time,
                },
            )
        }
        _ => Ok(()),
    }
}

/// v22's `extension_status`: `numbers` listed, [`STATUS_PER_MESSAGE`] to a message.
pub fn status(
    numbers: &[&str],
    state: &State,
    ctx: &Context,
    now: u64,
    out: &mut Out,
) -> Result<(), EncodeError> {
    let time = secs(now);
    for chunk in numbers.chunks(STATUS_PER_MESSAGE) {
        let mut aors: Vec<super::Aor, STATUS_PER_MESSAGE> = Vec::new();
        for n in chunk {
            let _ = aors.push(aor(n, ctx));
        }
        let mut entries: Vec<StatusEntry, STATUS_PER_MESSAGE> = Vec::new();
        for (n, a) in chunk.iter().zip(&aors) {
            let ext = state.extension(n);
            let _ = entries.push(StatusEntry {
                extension: a,
                extension_id: n,
                call_status: ext.map_or("", |e| e.call_status),
                online: ext.is_some_and(|e| e.online()),
                presence: ext.map_or("ONLINE", |e| e.presence),
                presence_note: JsonStr(ext.map_or("", |e| &e.presence_note)),
                push_online: false,
                time: &time,
            });
        }
        // Several extensions go only to the subscriber that asked; one (online changed)
        // is routed like any extension message.
        out.send(
            &Route::new(Topic::ExtensionEvents).with(chunk),
            &StatusMsg {
                event_type: "extension_status",
                status: &entries,
                tenant_id: ctx.tenant_id,
            },
        )?;
    }
    Ok(())
}

fn call_cdr(
    call: &Call,
    end: &CallEnded,
    now: u64,
    ctx: &Context,
    out: &mut Out,
) -> Result<(), EncodeError> {
    let whole: Summary = cdr::summary(call, end, now);
    let legs = cdr::legs(call, &whole, now);
    let mut targets: Vec<TargetMsg, MAX_TARGETS> = Vec::new();
    for (t, l) in call.targets.iter().zip(&legs) {
        let _ = targets.push(TargetMsg {
            answered_time: &l.answered_time,
            call_type: l.call_type,
            callee: &t.callee,
            caller: &call.caller,
            cdr_id: &call.call_id,
            cost: "",
            destination: JsonStr(&t.destination),
            did: whole.did,
            direction: direction(call.direction),
            end_reason: l.end_reason,
            ended_time: &l.ended_time,
            id: &call.call_id,
            outbound_caller_id: "",
            ring_duration: &l.ring_duration,
            ring_time: &l.ring_time,
            start_time: &l.start_time,
            status: l.status,
            status_code: t.status_code,
            talk_duration: &l.talk_duration,
            trunk_name: whole.trunk_name,
        });
    }
    let (ring_duration, status_code) = (num(whole.ring_duration), num(whole.status_code.into()));
    cdr::send(out, call, |n| CdrMsg {
        answered_time: &whole.answered_time,
        call_id: &call.call_id,
        call_status: whole.call_status,
        call_targets: &targets[..n],
        callee: &call.callee,
        callee_domain: ctx.domain,
        caller: &call.caller,
        caller_display_name: JsonStr(&call.caller_name),
        caller_domain: ctx.domain,
        cdr_id: &call.call_id,
        did: whole.did,
        direction: whole.direction,
        end_reason: whole.ended_reason,
        ended_reason: whole.ended_reason,
        ended_time: &whole.ended_time,
        event_type: "call_cdr",
        outbound_caller_id: "",
        ring_duration: &ring_duration,
        ring_time: &whole.ring_time,
        session_id: &call.session_id,
        start_time: &whole.start_time,
        status_code: &status_code,
        talk_duration: whole.talk_duration,
        tenant_id: ctx.tenant_id,
        tenant_name: ctx.tenant_name,
        trunk_name: whole.trunk_name,
        user_data: "",
    })
}
