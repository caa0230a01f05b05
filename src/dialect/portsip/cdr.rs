//! What both CDR shapes say about an ended call, worked out once from the call's record
//! ([`super::Call`], its targets) and its `call.ended`: PortSIP's status, SIP code, end
//! reason, direction and the per-target outcomes.

use heapless::Vec;
use serde::Serialize;

use super::{endpoint_of, num, secs, Call, Num, Out, Route, Target, Topic, MAX_TARGETS};
use crate::dialect::EncodeError;
use crate::event::CallEnded;

/// The call as a whole.
pub struct Summary<'a> {
    /// `answered`, `noanswer` or `fail`.
    pub call_status: &'static str,
    /// The final SIP code; 0 when answered (PortSIP's "no error").
    pub status_code: u16,
    /// `None`, `caller_disconnected`, `callee_disconnected`, `referred`, `cancelled`.
    pub ended_reason: &'static str,
    /// `ext`, `in` or `out`.
    pub direction: &'static str,
    pub start_time: Num,
    pub ring_time: Num,
    pub answered_time: Num,
    pub ended_time: Num,
    /// Seconds from the first ring to the answer (or the end), and from answer to end.
    pub ring_duration: u64,
    pub talk_duration: u64,
    /// For an inbound call: the number dialled (its DID), and the trunk it came in on.
    pub did: &'a str,
    pub trunk_name: &'a str,
}

/// The CDR direction (`ext`, `in`, `out`) for pbxtap's; `ext` for a call whose start the
/// dialect's table forgot (`unknown`), as `call_start`'s words have it.
pub fn direction(d: &str) -> &'static str {
    match d {
        "inbound" => "in",
        "outbound" => "out",
        _ => "ext",
    }
}

fn span(from: u64, to: u64) -> u64 {
    if from == 0 || to < from {
        0
    } else {
        (to - from) / 1_000_000
    }
}

pub fn summary<'a>(call: &'a Call, end: &CallEnded, now: u64) -> Summary<'a> {
    // PortSIP, a PBX, says `answered` for a call its IVR or voicemail picked up too: its
    // talk time is a party's only.
    let answered = end.answered || end.pbx_answered || call.answered != 0;
    let call_status = if answered {
        "answered"
    } else if end.cause == 19 || matches!(end.sip_code, 0 | 408 | 480 | 487) {
        "noanswer"
    } else {
        "fail"
    };
    let ended_reason = match end.hangup_by {
        "caller" if !answered => "cancelled",
        "caller" => "caller_disconnected",
        "callee" if call.transferred => "referred",
        "callee" => "callee_disconnected",
        _ => "None",
    };
    let inbound = call.direction == "inbound";
    let ring_end = if call.answered != 0 {
        call.answered
    } else {
        now
    };
    Summary {
        call_status,
        status_code: if answered { 0 } else { end.sip_code },
        ended_reason,
        direction: direction(call.direction),
        start_time: secs(call.started),
        ring_time: secs(call.ringing),
        answered_time: secs(call.answered),
        ended_time: secs(now),
        ring_duration: span(call.ringing, ring_end),
        talk_duration: span(call.answered, now),
        did: if inbound { &call.callee } else { "" },
        trunk_name: if inbound {
            endpoint_of(&call.channel)
        } else {
            ""
        },
    }
}

/// One target's outcome.
pub struct Leg {
    /// `answered` or `noanswer`.
    pub status: &'static str,
    pub end_reason: &'static str,
    pub call_type: &'static str,
    pub start_time: Num,
    pub ring_time: Num,
    pub answered_time: Num,
    pub ended_time: Num,
    pub ring_duration: Num,
    pub talk_duration: Num,
}

pub fn leg(call: &Call, t: &Target, whole: &Summary, now: u64) -> Leg {
    let ended = if t.ended == 0 { now } else { t.ended };
    let end_reason = if !t.end_reason.is_empty() {
        t.end_reason
    } else if t.answered != 0 {
        whole.ended_reason
    } else if whole.ended_reason == "cancelled" {
        "cancelled"
    } else {
        "None"
    };
    Leg {
        status: if t.answered != 0 {
            "answered"
        } else {
            "noanswer"
        },
        end_reason,
        call_type: if call.queued {
            "queue_call"
        } else {
            "normal_call"
        },
        start_time: secs(t.started),
        ring_time: secs(t.ringing),
        answered_time: secs(t.answered),
        ended_time: secs(ended),
        ring_duration: num(span(
            t.ringing,
            if t.answered != 0 { t.answered } else { ended },
        )),
        talk_duration: num(span(t.answered, ended)),
    }
}

/// Every target's outcome, in the call's order.
pub fn legs(call: &Call, whole: &Summary, now: u64) -> Vec<Leg, MAX_TARGETS> {
    call.targets
        .iter()
        .map(|t| leg(call, t, whole, now))
        .collect()
}

/// Sends the CDR `msg(n)` writes with the call's first `n` targets: all of them, or fewer
/// until it fits (only strings escaped at worst make it too large; then a warning says so).
pub fn send<M: Serialize>(
    out: &mut Out,
    call: &Call,
    msg: impl Fn(usize) -> M,
) -> Result<(), EncodeError> {
    let route = Route::new(Topic::CdrEvents).with(&[
        &call.caller,
        &call.callee,
        call.targets.first().map_or("", |t| &t.callee),
    ]);
    let all = call.targets.len();
    for n in (0..=all).rev() {
        match out.send(&route, &msg(n)) {
            Err(EncodeError::TooLarge) if n > 0 => continue,
            sent => {
                if n < all {
                    tracing::warn!(call = %call.call_id, targets = all, sent = n, "call_cdr too large with every target: the last ones left out");
                }
                return sent;
            }
        }
    }
    Ok(())
}
