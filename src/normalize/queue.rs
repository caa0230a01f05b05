//! Queues: callers joining and leaving, member (agent) states, and SLA breaches.

use heapless::Vec;

use super::names::QueueEvent;
use super::{bounded, clean, id, NormalizeStats};
use crate::ami::frame::Message;
use crate::event::{Body, Id, QueueAgent, QueueCaller, QueueSla, Text};

/// Callers waiting in queues, tracked at once; the oldest is forgotten when full (counted).
pub const MAX_QUEUE_CALLERS: usize = 128;

#[derive(Debug, Clone)]
struct Waiting {
    queue: Text,
    uniqueid: Id,
    call_id: Id,
    caller: Text,
    caller_name: Text,
    position: u32,
    joined_at: u64,
    /// `caller_left` already sent (QueueCallerAbandon comes before QueueCallerLeave).
    left: bool,
    sla_reported: bool,
}

#[derive(Default)]
pub struct Queues {
    waiting: Vec<Waiting, MAX_QUEUE_CALLERS>,
}

/// Normalized agent state from a QueueMember event: `Status` (Asterisk's device state)
/// and `LastCall` + `Wrapuptime` (the queue's after-call work, in Unix seconds;
/// `now_secs` likewise). A busy member is `in_call` whichever call it is on: Asterisk's
/// `InCall` stays 0 through a queue call's events, so it cannot tell the two apart.
fn member_state(msg: &Message<'_>, paused: bool, now_secs: u64) -> &'static str {
    if paused {
        return "paused";
    }
    let secs = |k| msg.get(k).and_then(|v| v.trim().parse::<u64>().ok());
    let wrapping_up = match (secs("LastCall"), secs("Wrapuptime")) {
        (Some(last), Some(wrap)) => last > 0 && wrap > 0 && now_secs < last + wrap,
        _ => false,
    };
    match msg.get("Status").unwrap_or("") {
        "1" if wrapping_up => "wrap_up",
        "1" => "ready",
        "2" | "3" | "7" | "8" => "in_call",
        "6" => "ringing",
        "5" => "unavailable",
        _ => "unknown",
    }
}

fn waited_secs(from: u64, now: u64) -> u32 {
    (now.saturating_sub(from) / 1_000_000) as u32
}

impl Queues {
    /// Queue callers waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn handle(
        &mut self,
        event: QueueEvent,
        msg: &Message<'_>,
        now: u64,
        answered: &dyn Fn(&str) -> bool,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let uid = id(msg, "Uniqueid", stats).unwrap_or("");
        use QueueEvent as E;
        match event {
            E::QueueCallerJoin => {
                if self.waiting.is_full() {
                    if let Some((i, _)) = self
                        .waiting
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, w)| w.joined_at)
                    {
                        self.waiting.swap_remove(i);
                        stats.evicted += 1;
                    }
                }
                let w = Waiting {
                    queue: bounded(stats, msg.get("Queue").unwrap_or("")),
                    uniqueid: bounded(stats, uid),
                    call_id: bounded(stats, msg.get("Linkedid").unwrap_or(uid)),
                    caller: bounded(stats, clean(msg.get("CallerIDNum"))),
                    caller_name: bounded(stats, clean(msg.get("CallerIDName"))),
                    position: msg
                        .get("Position")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0),
                    joined_at: now,
                    left: false,
                    sla_reported: false,
                };
                emit(Body::QueueCallerJoined(QueueCaller {
                    queue: w.queue.clone(),
                    call_id: w.call_id.clone(),
                    caller: w.caller.clone(),
                    caller_name: w.caller_name.clone(),
                    position: w.position,
                    reason: "",
                    waited: 0,
                }));
                let _ = self.waiting.push(w);
            }
            E::QueueCallerAbandon | E::QueueCallerLeave => {
                let Some(i) = self.waiting.iter().position(|w| w.uniqueid == uid) else {
                    stats.unmatched += 1;
                    return;
                };
                let abandon = event == E::QueueCallerAbandon;
                let w = &mut self.waiting[i];
                if !w.left {
                    w.left = true;
                    // DialEnd ANSWER comes before QueueCallerLeave: an answered call left
                    // because an agent took it.
                    let reason = if abandon {
                        "abandoned"
                    } else if answered(&w.call_id) {
                        "answered"
                    } else {
                        "left"
                    };
                    emit(Body::QueueCallerLeft(QueueCaller {
                        queue: w.queue.clone(),
                        call_id: w.call_id.clone(),
                        caller: w.caller.clone(),
                        caller_name: w.caller_name.clone(),
                        position: w.position,
                        reason,
                        // Asterisk's own count when it gives one (QueueCallerAbandon).
                        waited: msg
                            .get("HoldTime")
                            .and_then(|h| h.trim().parse().ok())
                            .unwrap_or_else(|| waited_secs(w.joined_at, now)),
                    }));
                }
                if !abandon {
                    self.waiting.swap_remove(i);
                }
            }
            E::QueueMemberStatus
            | E::QueueMemberAdded
            | E::QueueMemberRemoved
            | E::QueueMemberPause => {
                let paused = msg.get("Paused") == Some("1");
                let state = if event == E::QueueMemberRemoved {
                    "removed"
                } else {
                    member_state(msg, paused, now / 1_000_000)
                };
                emit(Body::QueueAgentStatus(QueueAgent {
                    queue: bounded(stats, msg.get("Queue").unwrap_or("")),
                    agent: bounded(stats, msg.get("Interface").unwrap_or("")),
                    name: bounded(stats, msg.get("MemberName").unwrap_or("")),
                    state,
                    paused,
                }));
            }
        }
    }

    /// Reports each caller still waiting after `sla_secs`, once.
    pub fn tick(&mut self, now: u64, sla_secs: u32, emit: &mut dyn FnMut(Body)) {
        for w in self
            .waiting
            .iter_mut()
            .filter(|w| !w.left && !w.sla_reported)
        {
            let waited = waited_secs(w.joined_at, now);
            if waited >= sla_secs {
                w.sla_reported = true;
                emit(Body::QueueSlaBreached(QueueSla {
                    queue: w.queue.clone(),
                    call_id: w.call_id.clone(),
                    caller: w.caller.clone(),
                    waited,
                    sla_secs,
                }));
            }
        }
    }
}
