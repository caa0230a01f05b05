//! Queues: callers joining and leaving, member (agent) states, and SLA breaches. The
//! `QueueStatus` list the session asks for after each login and periodically is compared
//! with what is known: a member or a waiting caller it shows that pbxtap did not know (or
//! knew otherwise) is told, and one it no longer shows is told as removed or left.

use heapless::Vec;

use super::names::QueueEvent;
use super::{bounded, clean, id, At, NormalizeStats};
use crate::ami::frame::Message;
use crate::event::{Body, Id, QueueAgent, QueueCaller, QueueSla, Text};

/// Callers waiting in queues, tracked at once; the oldest is forgotten when full (counted).
pub const MAX_QUEUE_CALLERS: usize = 128;
/// Queue memberships (a member of two queues is two) followed at once; past that the
/// oldest is forgotten (counted) and told again as new when next listed.
pub const MAX_QUEUE_MEMBERS: usize = 256;

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
    /// Seen in the `QueueStatus` list now being received, or joined meanwhile.
    listed: bool,
    /// Asterisk's own count of the wait, once an agent took the call (`AgentConnect`'s
    /// `HoldTime`): it wins over pbxtap's clock.
    held_secs: Option<u32>,
    /// Left answered at this time (µs), its `caller_left` waiting for the `AgentConnect`
    /// that follows, with Asterisk's count of the wait ([`CONNECT_WAIT`]).
    left_at: Option<u64>,
}

/// How long (µs) an answered caller's `queue.caller_left` waits for the `AgentConnect`
/// Asterisk sends after its QueueCallerLeave, whose `HoldTime` is the wait; then it goes
/// out with pbxtap's own count.
pub const CONNECT_WAIT: u64 = 1_000_000;

impl Waiting {
    /// The caller as an event tells it, with `reason` and `waited`.
    fn told(&self, reason: &'static str, waited: u32) -> QueueCaller {
        QueueCaller {
            queue: self.queue.clone(),
            call_id: self.call_id.clone(),
            caller: self.caller.clone(),
            caller_name: self.caller_name.clone(),
            position: self.position,
            reason,
            waited,
        }
    }
}

/// One member of one queue, as last told.
#[derive(Debug, Clone)]
struct Member {
    agent: QueueAgent,
    /// As [`Waiting::listed`].
    listed: bool,
}

#[derive(Default)]
pub struct Queues {
    waiting: Vec<Waiting, MAX_QUEUE_CALLERS>,
    members: Vec<Member, MAX_QUEUE_MEMBERS>,
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

/// A member as a member event tells it: its interface and name under the keys that
/// event uses (`Interface`/`MemberName` live, `Location`/`Name` in the list). `wall` is
/// now on the wall clock, which Asterisk's `LastCall` is a time of.
fn agent(
    msg: &Message<'_>,
    interface: &str,
    name: &str,
    wall: u64,
    stats: &mut NormalizeStats,
) -> QueueAgent {
    let paused = msg.get("Paused") == Some("1");
    // A member that is a Local channel (FreePBX: Local/102@from-queue/n) is plumbing: the
    // agent is the phone whose state it follows.
    let agent = match (msg.get(interface), msg.get("StateInterface")) {
        (Some(local), Some(phone)) if local.starts_with("Local/") && !phone.is_empty() => phone,
        (iface, _) => iface.unwrap_or(""),
    };
    QueueAgent {
        queue: bounded(stats, msg.get("Queue").unwrap_or("")),
        agent: bounded(stats, agent),
        name: bounded(stats, msg.get(name).unwrap_or("")),
        state: member_state(msg, paused, wall / 1_000_000),
        paused,
        reason: bounded(
            stats,
            msg.get("PausedReason").filter(|_| paused).unwrap_or(""),
        ),
    }
}

/// Whether two tellings of one member say the same.
fn same(a: &QueueAgent, b: &QueueAgent) -> bool {
    (a.state, a.paused, &a.reason, &a.name) == (b.state, b.paused, &b.reason, &b.name)
}

fn waited_secs(from: u64, now: u64) -> u32 {
    (now.saturating_sub(from) / 1_000_000) as u32
}

impl Queues {
    /// Queue callers waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Queue memberships followed now.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    pub fn handle(
        &mut self,
        event: QueueEvent,
        msg: &Message<'_>,
        at: At,
        answered: &dyn Fn(&str) -> bool,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let At { now, wall } = at;
        let uid = id(msg, "Uniqueid", stats).unwrap_or("");
        use QueueEvent as E;
        match event {
            E::AgentConnect => {
                let Some(i) = self.waiting.iter().position(|w| w.uniqueid == uid) else {
                    return;
                };
                let w = &mut self.waiting[i];
                w.held_secs = msg.get("HoldTime").and_then(|h| h.trim().parse().ok());
                if let Some(left_at) = w.left_at {
                    let waited = w
                        .held_secs
                        .unwrap_or_else(|| waited_secs(w.joined_at, left_at));
                    emit(Body::QueueCallerLeft(w.told("answered", waited)));
                    self.waiting.swap_remove(i);
                }
            }
            E::QueueCallerJoin => {
                let call_id = msg.get("Linkedid").unwrap_or(uid);
                self.join(msg, uid, call_id, now, stats, emit);
            }
            E::QueueEntry => {
                if let Some(w) = self.waiting.iter_mut().find(|w| w.uniqueid == uid) {
                    w.listed = true;
                    return;
                }
                // A caller who joined while pbxtap was away; it waits since `Wait` ago.
                let wait = msg.get("Wait").and_then(|w| w.trim().parse::<u64>().ok());
                let since = now.saturating_sub(wait.unwrap_or(0) * 1_000_000);
                self.join(msg, uid, uid, since, stats, emit);
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
                    // Asterisk's own count when it gives one (QueueCallerAbandon, or the
                    // AgentConnect before), else pbxtap's clock; an answered caller's
                    // AgentConnect usually comes right after: it is waited for.
                    let waited = msg
                        .get("HoldTime")
                        .and_then(|h| h.trim().parse().ok())
                        .or(w.held_secs);
                    if reason == "answered" && waited.is_none() {
                        w.left_at = Some(now);
                        return;
                    }
                    let waited = waited.unwrap_or_else(|| waited_secs(w.joined_at, now));
                    emit(Body::QueueCallerLeft(w.told(reason, waited)));
                }
                if !abandon {
                    self.waiting.swap_remove(i);
                }
            }
            E::QueueMemberStatus
            | E::QueueMemberAdded
            | E::QueueMemberRemoved
            | E::QueueMemberPause => {
                let agent = agent(msg, "Interface", "MemberName", wall, stats);
                let removed = event == E::QueueMemberRemoved;
                let agent = QueueAgent {
                    state: if removed { "removed" } else { agent.state },
                    ..agent
                };
                self.member(agent.clone(), !removed, stats);
                emit(Body::QueueAgentStatus(agent));
            }
            E::QueueMember => {
                let agent = agent(msg, "Location", "Name", wall, stats);
                if self.member(agent.clone(), true, stats) {
                    emit(Body::QueueAgentStatus(agent));
                }
            }
            E::QueueStatusComplete => self.listed(now, emit),
        }
    }

    /// A caller joined a queue at `since` (or is first seen in the list then).
    fn join(
        &mut self,
        msg: &Message<'_>,
        uid: &str,
        call_id: &str,
        since: u64,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
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
            call_id: bounded(stats, call_id),
            caller: bounded(stats, clean(msg.get("CallerIDNum"))),
            caller_name: bounded(stats, clean(msg.get("CallerIDName"))),
            position: msg
                .get("Position")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
            joined_at: since,
            left: false,
            sla_reported: false,
            listed: true,
            held_secs: None,
            left_at: None,
        };
        emit(Body::QueueCallerJoined(w.told("", 0)));
        let _ = self.waiting.push(w);
    }

    /// Records a member's state as told (`present`), or forgets it (removed). Returns
    /// whether that says otherwise than was known.
    fn member(&mut self, agent: QueueAgent, present: bool, stats: &mut NormalizeStats) -> bool {
        let at = self
            .members
            .iter()
            .position(|m| (&m.agent.queue, &m.agent.agent) == (&agent.queue, &agent.agent));
        if let Some(i) = at {
            if present && same(&self.members[i].agent, &agent) {
                self.members[i].listed = true;
                return false;
            }
            self.members.remove(i);
        }
        if present {
            if self.members.is_full() {
                self.members.remove(0);
                stats.evicted += 1;
            }
            let _ = self.members.push(Member {
                agent,
                listed: true,
            });
        }
        true
    }

    /// The `QueueStatus` list is complete: a member it did not show was removed, and a
    /// caller it did not show left, while pbxtap was away.
    fn listed(&mut self, now: u64, emit: &mut dyn FnMut(Body)) {
        self.members.retain(|m| {
            if !m.listed {
                emit(Body::QueueAgentStatus(QueueAgent {
                    state: "removed",
                    ..m.agent.clone()
                }));
            }
            m.listed
        });
        self.waiting.retain(|w| {
            if !w.listed && !w.left {
                emit(Body::QueueCallerLeft(
                    w.told("left", waited_secs(w.joined_at, now)),
                ));
            }
            w.listed
        });
        for m in &mut self.members {
            m.listed = false;
        }
        for w in &mut self.waiting {
            w.listed = false;
        }
    }

    /// Reports each caller still waiting after `sla_secs`, once.
    /// Answered callers whose AgentConnect did not come within [`CONNECT_WAIT`] of their
    /// leaving by `now` (`u64::MAX`: all of them): told with pbxtap's count of the wait.
    pub fn connect_waited(&mut self, now: u64, emit: &mut dyn FnMut(Body)) {
        let due = |w: &Waiting| {
            w.left_at
                .is_some_and(|t| now.saturating_sub(t) >= CONNECT_WAIT)
        };
        while let Some(i) = self.waiting.iter().position(due) {
            let w = self.waiting.swap_remove(i);
            let left_at = w.left_at.unwrap_or(now);
            emit(Body::QueueCallerLeft(
                w.told("answered", waited_secs(w.joined_at, left_at)),
            ));
        }
    }

    pub fn tick(&mut self, now: u64, sla_secs: u32, emit: &mut dyn FnMut(Body)) {
        self.connect_waited(now, emit);
        if sla_secs == 0 {
            return;
        }
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
