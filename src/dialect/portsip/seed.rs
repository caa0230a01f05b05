//! PortSIP v16's messages: the seed page's `extension_events` (`call_*`, `target_*`,
//! `extension_register`, `extension_presence`), the flat `extension_status` and
//! `extension_call` of the 2023-12-27 page, and the v16 CDR page's `call_cdr`.

use heapless::Vec;
use serde::Serialize;

use super::cdr::{self, Summary};
use super::{aor, num, secs, Context, Observed, Out, Route, State, Topic, MAX_CONTACTS};
use super::{extension_number, Call, MAX_TARGETS};
use crate::dialect::{EncodeError, JsonStr};
use crate::event::{Body, CallEnded, Event};

#[derive(Serialize)]
struct CallMsg<'a> {
    call_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_target: Option<&'a str>,
    callee: &'a str,
    caller: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_display_name: Option<JsonStr<'a>>,
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
struct ContactMsg<'a> {
    contact_uri: JsonStr<'a>,
    expires: u64,
    instance: &'a str,
    last_update: u64,
    public_address: &'a str,
    received_from: &'a str,
    reg_id: u32,
    user_agent: JsonStr<'a>,
}

#[derive(Serialize)]
struct RegisterMsg<'a> {
    event_type: &'a str,
    extension: &'a str,
    extension_id: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    registration_contacts: &'a [ContactMsg<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    removed_contacts: Option<[ContactMsg<'a>; 1]>,
    tenant_id: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct PresenceMsg<'a> {
    event_type: &'a str,
    extension: &'a str,
    note: JsonStr<'a>,
    tenant_id: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct StatusMsg<'a> {
    event_type: &'a str,
    extension: &'a str,
    presence_note: JsonStr<'a>,
    on_call: bool,
    online: bool,
    push_online: bool,
    tenant_id: &'a str,
    extension_id: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct CallStatusMsg<'a> {
    event_type: &'a str,
    extension: &'a str,
    on_call: bool,
    tenant_id: &'a str,
    extension_id: &'a str,
    time: &'a str,
}

#[derive(Serialize)]
struct TargetMsg<'a> {
    answered_time: &'a str,
    call_type: &'a str,
    callee: &'a str,
    caller: &'a str,
    destination: JsonStr<'a>,
    end_reason: &'a str,
    ended_time: &'a str,
    id: &'a str,
    outbound_caller_id: &'a str,
    ring_time: &'a str,
    start_time: &'a str,
    status_code: u16,
    trunk_name: &'a str,
}

#[derive(Serialize)]
struct CdrMsg<'a> {
    answered_time: &'a str,
    call_id: &'a str,
    callee: &'a str,
    callee_domain: &'a str,
    caller: &'a str,
    caller_display_name: JsonStr<'a>,
    caller_domain: &'a str,
    did_cid: &'a str,
    direction: &'a str,
    ended_reason: &'a str,
    ended_time: &'a str,
    event_type: &'a str,
    outbound_caller_id: &'a str,
    ring_time: &'a str,
    session_id: &'a str,
    start_time: &'a str,
    status_code: &'a str,
    tenant_id: &'a str,
    tenant_name: &'a str,
    trunk_name: &'a str,
    user_data: &'a str,
    call_targets: &'a [TargetMsg<'a>],
}

/// v16 words for the two hang-up reasons (the v16 CDR page), the rest as v22 has them.
fn reason(r: &str) -> &str {
    match r {
        "caller_disconnected" => "caller_disconnect",
        "callee_disconnected" => "callee_disconnect",
        r => r,
    }
}

pub fn encode(
    ev: &Event,
    seen: &Observed,
    state: &State,
    ctx: &Context,
    out: &mut Out,
) -> Result<(), EncodeError> {
    let time = secs(ev.time);
    // A call event after call_start: caller and callee come from the remembered call.
    // `shown` is the `call_target` written (empty for endings), `target` the extension
    // the event concerns besides caller and callee.
    let call_msg = |event_type: &'static str,
                    call_id: &str,
                    shown: &str,
                    target: &str,
                    fail_code: Option<u16>,
                    out: &mut Out|
     -> Result<(), EncodeError> {
        let (caller, callee, session) = match state.call(call_id) {
            Some(c) => (c.caller.as_str(), c.callee.as_str(), c.session_id.as_str()),
            None => ("", "", call_id),
        };
        out.send(
            &Route::new(Topic::ExtensionEvents).with(&[caller, callee, target]),
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
        )
    };
    match &ev.body {
        Body::CallStarted(c) => out.send(
            &Route::new(Topic::ExtensionEvents).with(&[&c.from, &c.to]),
            &CallMsg {
                call_id: &c.call_id,
                call_target: None,
                callee: &aor(&c.to, ctx),
                caller: &aor(&c.from, ctx),
                caller_display_name: Some(JsonStr(&c.from_name)),
                cdr_id: Some(&c.call_id),
                direction: Some(cdr::direction(c.direction)),
                event_type: "call_start",
                fail_code: None,
                request_id: Some("0"),
                session_id: &c.session_id,
                tenant_id: ctx.tenant_id,
                time: &time,
            },
        ),
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
        Body::CallHeld(h) | Body::CallUnheld(h) => {
            let event_type = if matches!(ev.body, Body::CallHeld(_)) {
                "call_hold"
            } else {
                "call_unhold"
            };
            out.send(
                &Route::new(Topic::ExtensionEvents).with(&[&h.aor, &h.peer_aor]),
                &HoldMsg {
                    aor: &aor(&h.aor, ctx),
                    call_id: &h.call_id,
                    event_type,
                    peer_aor: &aor(&h.peer_aor, ctx),
                    session_id: state.call(&h.call_id).map_or(&h.call_id, |k| &k.session_id),
                    tenant_id: ctx.tenant_id,
                    time: &time,
                },
            )
        }
        Body::CallEnded(c) => {
            let Some(call) = &seen.ended else {
                return Ok(());
            };
            out.send(
                &Route::new(Topic::ExtensionEvents).with(&[&call.caller, &call.callee]),
                &CallMsg {
                    call_id: &c.call_id,
                    call_target: Some(""),
                    callee: &aor(&call.callee, ctx),
                    caller: &aor(&call.caller, ctx),
                    caller_display_name: None,
                    cdr_id: None,
                    direction: None,
                    event_type: "call_ended",
                    fail_code: None,
                    request_id: None,
                    session_id: &call.session_id,
                    tenant_id: ctx.tenant_id,
                    time: &time,
                },
            )?;
            call_cdr(call, c, ev.time, ctx, out)
        }
        Body::EndpointRegistered(r) | Body::EndpointUnregistered(r) => {
            let ext = extension_number(&r.aor);
            let now = ev.time / 1_000_000;
            let current = state.extension(ext);
            let mut listed: Vec<ContactMsg, MAX_CONTACTS> = Vec::new();
            for k in current.iter().flat_map(|e| e.contacts.iter()) {
                let _ = listed.push(ContactMsg {
                    contact_uri: JsonStr(&k.uri),
                    expires: k.expires,
                    instance: "",
                    last_update: k.last_update,
                    public_address: &k.received_from,
                    received_from: &k.received_from,
                    reg_id: 0,
                    user_agent: JsonStr(&k.user_agent),
                });
            }
            let removed = matches!(ev.body, Body::EndpointUnregistered(_)).then(|| {
                [ContactMsg {
                    contact_uri: JsonStr(&r.contact),
                    expires: now,
                    instance: "",
                    last_update: now,
                    public_address: &r.received_from,
                    received_from: &r.received_from,
                    reg_id: 0,
                    user_agent: JsonStr(&r.user_agent),
                }]
            });
            let route = Route::new(Topic::ExtensionEvents).with(&[ext]);
            out.send(
                &route,
                &RegisterMsg {
                    event_type: "extension_register",
                    extension: &aor(ext, ctx),
                    extension_id: ext,
                    registration_contacts: &listed,
                    removed_contacts: removed,
                    tenant_id: ctx.tenant_id,
                    time: &time,
                },
            )?;
            if seen.online_changed {
                status(ext, state, ctx, ev.time, out)?;
            }
            Ok(())
        }
        Body::EndpointPresence(p) => {
            let ext = extension_number(&p.extension);
            let route = Route::new(Topic::ExtensionEvents).with(&[ext]);
            if p.source == "user" {
                out.send(
                    &route,
                    &PresenceMsg {
                        event_type: "extension_presence",
                        extension: &aor(ext, ctx),
                        note: JsonStr(&p.note),
                        tenant_id: ctx.tenant_id,
                        time: &time,
                    },
                )
            } else if seen.call_status_changed {
                let on_call = state
                    .extension(ext)
                    .is_some_and(|e| !e.call_status.is_empty());
                out.send(
                    &route,
                    &CallStatusMsg {
                        event_type: "extension_call",
                        extension: &aor(ext, ctx),
                        on_call,
                        tenant_id: ctx.tenant_id,
                        extension_id: ext,
                        time: &time,
                    },
                )
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// v16's `extension_status` for extension `number`.
pub fn status(
    number: &str,
    state: &State,
    ctx: &Context,
    now: u64,
    out: &mut Out,
) -> Result<(), EncodeError> {
    let ext = state.extension(number);
    out.send(
        &Route::new(Topic::ExtensionEvents).with(&[number]),
        &StatusMsg {
            event_type: "extension_status",
            extension: &aor(number, ctx),
            presence_note: JsonStr(ext.map_or("", |e| &e.presence_note)),
            on_call: ext.is_some_and(|e| !e.call_status.is_empty()),
            online: ext.is_some_and(|e| e.online()),
            push_online: false,
            tenant_id: ctx.tenant_id,
            extension_id: number,
            time: &secs(now),
        },
    )
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
            destination: JsonStr(&t.destination),
            end_reason: reason(l.end_reason),
            ended_time: &l.ended_time,
            id: &call.call_id,
            outbound_caller_id: "",
            ring_time: &l.ring_time,
            start_time: &l.start_time,
            status_code: t.status_code,
            trunk_name: whole.trunk_name,
        });
    }
    let status_code = num(whole.status_code.into());
    cdr::send(out, call, |n| CdrMsg {
        answered_time: &whole.answered_time,
        call_id: &call.call_id,
        callee: &call.callee,
        callee_domain: ctx.domain,
        caller: &call.caller,
        caller_display_name: JsonStr(&call.caller_name),
        caller_domain: ctx.domain,
        did_cid: whole.did,
        direction: whole.direction,
        ended_reason: reason(whole.ended_reason),
        ended_time: &whole.ended_time,
        event_type: "call_cdr",
        outbound_caller_id: "",
        ring_time: &whole.ring_time,
        session_id: &call.session_id,
        start_time: &whole.start_time,
        status_code: &status_code,
        tenant_id: ctx.tenant_id,
        tenant_name: ctx.tenant_name,
        trunk_name: whole.trunk_name,
        user_data: "",
        call_targets: &targets[..n],
    })
}
