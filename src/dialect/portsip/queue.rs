//! `queue_events`, the same in both protocol generations: `queue_caller_status`,
//! `queue_agent_status`, `queue_sla_breached`, and the `queue_status` snapshot sent on
//! subscribe.

use heapless::Vec;
use serde::Serialize;

use super::{num, secs, Context, Num, Out, Queue, Route, State, MAX_QUEUE_AGENTS};
use super::{state::agent_state, MAX_QUEUE_WAITING};
use crate::dialect::EncodeError;
use crate::event::{Body, Event};

/// Largest `queue_status` snapshot: a full queue with every string escaped at worst.
pub const MAX_SNAPSHOT_LEN: usize = 128 * 1024;

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

/// The queue message of a queue event. `state` has observed `ev`.
pub fn encode(ev: &Event, state: &State, ctx: &Context, out: &mut Out) -> Result<(), EncodeError> {
    let time = secs(ev.time);
    match &ev.body {
        Body::QueueCallerJoined(c) | Body::QueueCallerLeft(c) => {
            let reason = match (&ev.body, c.reason) {
                (Body::QueueCallerJoined(_), _) => "enqueue",
                (_, "answered") => "agent_answered",
                (_, "timeout") => "overflow",
                _ => "hangup",
            };
            out.send(
                &Route::queue(&c.queue),
                &CallerStatusMsg {
                    event_type: "queue_caller_status",
                    tenant_id: ctx.tenant_id,
                    queue_id: &c.queue,
                    updated_callers: [CallerEntry {
                        position: &num(c.position.into()),
                        session_id: &c.call_id,
                        caller_number: &c.caller,
                        caller_name: None,
                        reason: Some(reason),
                        timestamp: &time,
                        kind: "normal",
                    }],
                },
            )
        }
        Body::QueueAgentStatus(a) => {
            let ext = super::extension_number(&a.agent);
            let removed = a.state == "removed";
            let updated = [AgentEntry {
                state: agent_state(a.state),
                agent_extension_number: ext,
                session_id: "",
                caller_number: "",
                caller_name: "",
                timestamp: &time,
            }];
            out.send(
                &Route::queue(&a.queue),
                &AgentStatusMsg {
                    event_type: "queue_agent_status",
                    queue_id: &a.queue,
                    tenant_id: ctx.tenant_id,
                    updated_agents: if removed { &[] } else { &updated },
                    removed_agents: removed.then_some([RemovedAgent {
                        agent_extension_number: ext,
                    }]),
                },
            )
        }
        Body::QueueSlaBreached(s) => {
            let q = state.queues().find(|q| q.name == s.queue);
            out.send(
                &Route::queue(&s.queue),
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
            )
        }
        _ => Ok(()),
    }
}

/// Writes the `queue_status` snapshot of `q` into `out`, which is resized to what it
/// holds (at most [`MAX_SNAPSHOT_LEN`]).
pub fn encode_queue_status(
    q: &Queue,
    ctx: &Context,
    out: &mut std::vec::Vec<u8>,
) -> Result<(), EncodeError> {
    let mut positions: Vec<Num, MAX_QUEUE_WAITING> = Vec::new();
    let mut stamps: Vec<Num, { MAX_QUEUE_WAITING + MAX_QUEUE_AGENTS }> = Vec::new();
    for w in &q.waiting {
        let _ = positions.push(num(w.position.into()));
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
