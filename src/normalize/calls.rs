//! Live calls and channels: Newchannel / Newstate / Dial* / Hangup / Hold / Cdr → call.* and target.*.
//!
//! A call is an Asterisk Linkedid: it starts with its first channel and ends when its last
//! channel hangs up. Dialled legs (DialBegin's destination) are its targets. Both tables are
//! fixed-capacity; when one is full the entry idle longest is evicted and counted.

use core::cell::RefCell;

use heapless::Vec;

use super::cause;
use super::held::Held;
use super::local::{self, Half};
use super::names::CallEvent;
use super::{bounded, clean, id, NormalizeStats};
use crate::ami::frame::Message;
use crate::event::channel_endpoint as endpoint_of;
use crate::event::{
    self, Body, CallEnded, CallFailed, CallHold, CallStarted, CallTarget, Cdr, Headers, Id,
    LongText, TargetLeg, Text,
};

/// Calls tracked at once (an appliance PBX with 256 simultaneous calls is a big one).
pub const MAX_CALLS: usize = 256;
/// Channels tracked at once: a call has two or three (caller, callee, ring-all legs).
pub const MAX_CHANNELS: usize = 512;

/// `cause_name` of a call or leg that vanished while the AMI connection was down.
pub const VANISHED: &str = "VANISHED_DURING_AMI_OUTAGE";
/// `cause_name` of a call or leg that two periodic channel lists in a row no longer show,
/// though Asterisk never told its end (its Hangup was lost). Two, not one: a Hangup that
/// happened just before a list was made may still be queued behind it.
pub const UNLISTED: &str = "VANISHED_UNREPORTED";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Answered,
    NoAnswer,
    Failed,
}

#[derive(Debug, Clone)]
struct Call {
    id: Id,
    session_id: Id,
    from: Text,
    to: Text,
    started_at: u64,
    answered_at: u64,
    last_activity: u64,
    outcome: Outcome,
    /// A dial of this call ended unanswered: the next DialBegin is a reroute.
    dial_ended_unanswered: bool,
    /// DialStatus of the last unanswered dial, for the SIP code of the end.
    last_dial_status: &'static str,
    ringing_sent: bool,
    /// Hangup cause of the call's first channel (the caller).
    caller_cause: Option<u16>,
    /// The caller gave up before an answer (its channel was ended with SIP 487).
    caller_cancelled: bool,
    /// The caller's side asked for the end (a BYE or CANCEL: a HangupRequest on it).
    caller_hung_up: bool,
    /// When the caller's channel came up (the PBX's answer or a party's); 0: never.
    caller_up_at: u64,
    /// When the PBX picked up before any party answered: the caller's channel came up
    /// itself (Answer(), an IVR, voicemail, a queue's music, a conference, a feature code)
    /// or a Local leg the dialplan answered; 0: never. `call.ended`'s `pbx_answered`.
    pbx_answered_at: u64,
    /// A party (a phone, a trunk) was dialled (DialBegin).
    dialled: bool,
    /// The channel of the party that answered, else of the last one dialled.
    party: LongText,
    /// The caller's channel: the first channel's, or an originated call's phone's.
    caller: LongText,
    /// Asterisk's own count of the talk (a queue's `AgentComplete` `TalkTime`), while the
    /// call was not transferred: its `billsec`, in place of pbxtap's clock.
    talk_secs: Option<u32>,
    /// Placed with AMI `Originate`: its first channel is the phone that was rung first,
    /// the caller; the destination that phone's channel then dials is the call's `to`.
    originated: bool,
    /// Q.850 cause and SIP code of the last dial that ended unanswered.
    last_outcome: Option<(u16, u16)>,
    headers: Headers,
}

impl Call {
    /// The caller asked for the end (a CANCEL or a BYE).
    fn gave_up(&self) -> bool {
        self.caller_cancelled || self.caller_hung_up
    }
}

#[derive(Debug, Clone)]
struct Channel {
    uniqueid: Id,
    call_id: Id,
    name: LongText,
    /// Who this channel is: its caller-ID number, or for a dialled leg the number dialled.
    target: Text,
    /// A dialled leg (the destination of a DialBegin, or a later channel of the call).
    leg: bool,
    /// A party dialled: the destination of a DialBegin that is not a Local channel. Only
    /// these are told as `target.*`; Local channels are plumbing (`local`).
    dialled: bool,
    /// Which half of a Local channel it is; `None` for phones and trunks.
    local: Option<Half>,
    /// The channel that dialled it (DialBegin's `Uniqueid`); `None` for a call's first
    /// channel, an Originate's, or a channel whose dial was not seen.
    dialler: Option<Id>,
    /// It said Ringing before its DialBegin (Asterisk emits the two from different threads):
    /// told right after its `target.added`.
    rang_early: bool,
    /// A Local `;1` the dialplan answered itself (voicemail, an IVR, an announcement): told
    /// as a target, its extension with no contact.
    dialplan: bool,
    /// For a Local `;2`: the channel its dial reached last, and whether that one is up
    /// (answered, or picked up). What the `;1` stands for once it is up, or when its dial
    /// ends unanswered.
    behind: Option<(Id, bool)>,
    /// For a Local `;2`: the Q.850 cause and SIP code a party refused its dial with.
    behind_refused: Option<(u16, u16)>,
    ringing: bool,
    up: bool,
    dial_done: bool,
    /// The Q.850 cause and SIP code the far end refused this leg with (HangupRequest's or
    /// Hangup's `TechCause`, Asterisk 20.17 / 22.7 / 23.1 and later).
    refused: Option<(u16, u16)>,
    /// How the leg ended, once its dial did: reported by its `target.ended`.
    outcome: Option<(u16, u16)>,
    /// On hold now: an Unhold without a Hold before (a transfer's) is not told.
    held: bool,
    last_activity: u64,
    /// Listed in the current resync or periodic list (or created since it began).
    seen: bool,
    /// Periodic channel lists in a row that did not show it.
    unlisted: u8,
}

impl Channel {
    /// Told as `target.*`: a dialled party, or a Local leg the dialplan answered.
    fn told(&self) -> bool {
        self.leg && (self.dialled || self.dialplan)
    }

    /// Its channel as a target's `contact`: none for the dialplan.
    fn contact(&self) -> LongText {
        if self.dialplan {
            LongText::new()
        } else {
            self.name.clone()
        }
    }
}

#[derive(Default)]
pub struct Calls {
    calls: Vec<Call, MAX_CALLS>,
    channels: Vec<Channel, MAX_CHANNELS>,
    /// Channels that hung up lately, with their call, oldest first: a CDR written after a
    /// leg's end names only the leg.
    gone: heapless::Deque<(Id, Id), RECENT_GONE>,
    resyncing: bool,
    direction: Direction,
    cdrs: CdrFold,
}

/// How a call's `direction` is told, from `normalize.trunks` and
/// `normalize.max_extension_len`.
#[derive(Default, Clone)]
pub struct Direction {
    /// PJSIP (or SIP) endpoint names of trunks.
    pub trunks: std::vec::Vec<String>,
    /// The longest number that is an internal extension.
    pub max_extension_len: usize,
}

impl Direction {
    /// `inbound` when the call comes from a trunk; else `outbound` when it dials a number
    /// longer than an extension; else `internal`.
    fn of(&self, caller_channel: &str, to: &str) -> &'static str {
        let endpoint = endpoint_of(caller_channel);
        if self.trunks.iter().any(|t| t == endpoint) {
            "inbound"
        } else if to.len() > self.max_extension_len {
            "outbound"
        } else {
            "internal"
        }
    }
}

/// Channels remembered after their Hangup (with their call), so the CDR Asterisk writes
/// for a leg after it ended (a Local channel's `;2`, a transferor's) is folded into its
/// call's, not told as a call of its own. A few calls' worth of FreePBX's legs.
pub const RECENT_GONE: usize = 64;

/// Calls whose `call.cdr` is held until the call ends, so one CDR goes out per call.
pub const MAX_PENDING_CDRS: usize = 16;
/// Calls remembered after their `call.cdr` went out, so later CDR records of the same
/// call are folded into it (Asterisk writes one per dialplan application that ran).
pub const RECENT_CDR_CALLS: usize = 64;

/// How long after its call ended a held CDR waits for the call's other records.
pub const CDR_GRACE: u64 = 500_000;

/// One `call.cdr` per call. Asterisk writes a record per dialled leg and per application:
/// a transferor's when it hangs up, mid-call, the rest around the call's last Hangup,
/// other events in between. The records of a call are held and folded into one (the
/// answered record of the caller's channel that started first, else the first), which goes
/// out [`CDR_GRACE`] after the call's `call.ended`; records that come after it are folded
/// (counted in `cdrs_folded`, not sent).
#[derive(Default)]
struct CdrFold {
    /// Held records, and when their call ended (µs), once it has.
    pending: Vec<(Cdr, Option<u64>), MAX_PENDING_CDRS>,
    /// Calls whose CDR went out, oldest first.
    sent: heapless::Deque<Id, RECENT_CDR_CALLS>,
    /// The caller's and the party's channel of each call that ended lately
    /// (`Call::caller`, `Call::party`), oldest first: what its record's `channel` and
    /// `destination_channel` say in place of a Local channel.
    parties: heapless::Deque<(Id, LongText, LongText), MAX_PENDING_CDRS>,
}

impl CdrFold {
    fn was_sent(&self, call_id: &str) -> bool {
        self.sent.iter().any(|c| c == call_id)
    }

    fn mark_sent(&mut self, call_id: &Id) {
        if self.sent.is_full() {
            self.sent.pop_front();
        }
        let _ = self.sent.push_back(call_id.clone());
    }

    /// A record of a call: held, folded into the held one, or folded away.
    fn add(
        &mut self,
        cdr: Cdr,
        ended: Option<u64>,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        if let Some((held, _)) = self
            .pending
            .iter_mut()
            .find(|(c, _)| c.call_id == cdr.call_id)
        {
            stats.cdrs_folded += 1;
            // The answered record; of those, the caller's (its channel is the call's first:
            // a consultation's record is another channel's); then the earliest (a
            // transfer's starts later).
            let rank = |c: &Cdr| {
                (
                    c.disposition != "ANSWERED",
                    c.unique_id != c.call_id,
                    c.start_time.clone(),
                )
            };
            if rank(&cdr) < rank(held) {
                *held = cdr;
            }
            return;
        }
        if self.was_sent(&cdr.call_id) {
            stats.cdrs_folded += 1;
            return;
        }
        if self.pending.is_full() {
            // Sent early, never lost: the oldest held record goes out now.
            let (oldest, _) = self.pending.remove(0);
            self.send(oldest, emit);
        }
        let _ = self.pending.push((cdr, ended));
    }

    /// The call ended at `now`, with `party` its party's channel: its held record goes
    /// out once the grace has passed.
    fn call_ended(&mut self, call_id: &Id, caller: &LongText, party: &LongText, now: u64) {
        for (c, ended) in self.pending.iter_mut() {
            if c.call_id == *call_id && ended.is_none() {
                *ended = Some(now);
            }
        }
        if self.parties.is_full() {
            self.parties.pop_front();
        }
        let _ = self
            .parties
            .push_back((call_id.clone(), caller.clone(), party.clone()));
    }

    /// Sends the records of calls that ended at least [`CDR_GRACE`] before `now`.
    fn flush(&mut self, now: u64, emit: &mut dyn FnMut(Body)) {
        let due = |e: &Option<u64>| e.is_some_and(|t| now.saturating_sub(t) >= CDR_GRACE);
        while let Some(i) = self.pending.iter().position(|(_, ended)| due(ended)) {
            let (cdr, _) = self.pending.remove(i);
            self.send(cdr, emit);
        }
    }

    /// Sends a call's one record. Asterisk names the Local channel it dialled as the
    /// destination where the call went through one (and an originated Local channel as
    /// the caller's): the party it reached, and the caller's phone, stand there instead
    /// (empty when unknown).
    fn send(&mut self, mut cdr: Cdr, emit: &mut dyn FnMut(Body)) {
        self.mark_sent(&cdr.call_id);
        let known = self.parties.iter().find(|(c, _, _)| *c == cdr.call_id);
        if local::half(cdr.destination_channel.as_str()).is_some() {
            cdr.destination_channel = known.map(|(_, _, p)| p.clone()).unwrap_or_default();
        }
        if local::half(cdr.channel.as_str()).is_some() {
            cdr.channel = known.map(|(_, c, _)| c.clone()).unwrap_or_default();
        }
        emit(Body::CallCdr(cdr));
    }
}

/// What a Local channel stands for when the dialplan answers it: its extension.
fn extension(local_channel: &str) -> Text {
    let mut t = Text::new();
    event::set(&mut t, local::exten(local_channel));
    t
}

/// The static name of a DialStatus value (the event model holds `&'static str`).
fn dial_status(s: &str) -> &'static str {
    match s {
        "ANSWER" => "ANSWER",
        "BUSY" => "BUSY",
        "NOANSWER" => "NOANSWER",
        "CANCEL" => "CANCEL",
        "CONGESTION" => "CONGESTION",
        "CHANUNAVAIL" => "CHANUNAVAIL",
        "DONTCALL" => "DONTCALL",
        "TORTURE" => "TORTURE",
        "INVALIDARGS" => "INVALIDARGS",
        _ => "OTHER",
    }
}

/// The DialStatus a leg's dial ended with when its Hangup (with `cause`) comes before the
/// DialEnd: `gave_up`, the caller asked for its end first.
fn hangup_dial_status(cause: u16, gave_up: bool) -> &'static str {
    match cause {
        17 => "BUSY",
        26 => "CANCEL",
        16 | 127 if gave_up => "CANCEL",
        0 | 16 | 18 | 19 | 127 => "NOANSWER",
        34 | 38 | 41 | 42 | 44 => "CONGESTION",
        _ => "CHANUNAVAIL",
    }
}

/// The Q.850 cause a failed DialStatus stands for.
fn dial_status_cause(s: &str) -> u16 {
    match s {
        "BUSY" => 17,
        "NOANSWER" => 19,
        "CONGESTION" => 34,
        "CHANUNAVAIL" => 20,
        "CANCEL" => 26,
        _ => 0,
    }
}

fn secs(from: u64, to: u64) -> u32 {
    (to.saturating_sub(from) / 1_000_000).min(u64::from(u32::MAX)) as u32
}

fn parse_u16(v: Option<&str>) -> u16 {
    v.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

impl Calls {
    pub fn set_direction(&mut self, direction: Direction) {
        self.direction = direction;
    }

    pub fn live_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn live_channels(&self) -> usize {
        self.channels.len()
    }

    pub fn is_answered(&self, call_id: &str) -> bool {
        self.calls
            .iter()
            .any(|c| c.id == call_id && c.outcome == Outcome::Answered)
    }

    fn call(&mut self, id: &str) -> Option<&mut Call> {
        self.calls.iter_mut().find(|c| c.id == id)
    }

    fn channel_index(&self, uniqueid: &str) -> Option<usize> {
        self.channels.iter().position(|c| c.uniqueid == uniqueid)
    }

    pub fn begin_resync(&mut self) {
        self.resyncing = true;
        for ch in self.channels.iter_mut() {
            ch.seen = false;
        }
    }

    pub fn connection_lost(&mut self) {
        self.resyncing = false;
    }

    pub fn handle(
        &mut self,
        event: CallEvent,
        msg: &Message<'_>,
        now: u64,
        stats: &mut NormalizeStats,
        held: &RefCell<Box<Held>>,
        emit: &mut dyn FnMut(Body),
    ) {
        use CallEvent as E;
        match event {
            // A channel listed after a reconnect is handled like a new one: known channels
            // are marked seen, unknown ones started while we were away.
            E::Newchannel | E::CoreShowChannel => self.new_channel(msg, now, stats, emit),
            E::CoreShowChannelsComplete if self.resyncing => self.end_resync(now, stats, emit),
            E::CoreShowChannelsComplete => self.end_periodic(now, stats, emit),
            E::Newstate => self.new_state(msg, now, stats, emit),
            E::DialBegin => self.dial_begin(msg, now, stats, held, emit),
            E::DialEnd => self.dial_end(msg, now, stats, emit),
            E::HangupRequest => self.hangup_request(msg, now, stats),
            E::Hangup => self.hangup(msg, now, stats, emit),
            E::Hold | E::Unhold => self.hold(event == E::Hold, msg, now, stats, emit),
            E::Cdr => self.cdr(msg, now, stats, emit),
            E::BlindTransfer | E::AttendedTransfer | E::UnParkedCall => {
                self.transfer(event, msg, stats, emit)
            }
            E::AgentComplete => self.agent_complete(msg, stats),
        }
    }

    /// A VarSet of an `X-` variable on the caller's channel: the call's extra header (the
    /// caller's INVITE's). A callee's own (`X-Account` set where its leg is dialled) is
    /// not the call's.
    pub fn var_set(
        &mut self,
        msg: &Message<'_>,
        var: &str,
        now: u64,
        stats: &mut NormalizeStats,
        held: &RefCell<Box<Held>>,
    ) {
        let Some(uid) = id(msg, "Uniqueid", stats) else {
            return;
        };
        let Some(i) = self.channel_index(uid) else {
            stats.unmatched += 1;
            return;
        };
        let ch = &self.channels[i];
        let Some(call) = self.calls.iter_mut().find(|c| c.id == ch.call_id) else {
            return;
        };
        call.last_activity = now;
        if ch.leg && call.caller != ch.name {
            return;
        }
        if call.headers.insert(var, msg.get("Value").unwrap_or("")) {
            stats.truncated += 1;
        }
        if let Some(start) = held.borrow_mut().start(&call.id) {
            start.extra_headers.clone_from(&call.headers);
        }
    }

    /// `ChanVariable(X-Name): value` or `ChanVariable: X-Name=value` headers (manager.conf
    /// `channelvars`) into `headers`.
    fn chan_variables(msg: &Message<'_>, headers: &mut Headers, stats: &mut NormalizeStats) {
        for (k, v) in msg.headers() {
            let Some(rest) = k.strip_prefix("ChanVariable") else {
                continue;
            };
            let (name, value) = match rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
                Some(name) => (name, v),
                None => match v.split_once('=') {
                    Some(nv) => nv,
                    None => continue,
                },
            };
            let bare = name.trim_start_matches('_');
            if bare.len() > 2
                && bare.as_bytes()[..2].eq_ignore_ascii_case(b"x-")
                && headers.insert(bare, value)
            {
                stats.truncated += 1;
            }
        }
    }

    /// Makes room in the call table, evicting the call idle longest (and its channels).
    fn make_room_for_call(&mut self, stats: &mut NormalizeStats) {
        if !self.calls.is_full() {
            return;
        }
        if let Some((i, _)) = self
            .calls
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.last_activity)
        {
            let gone = self.calls.swap_remove(i);
            self.channels.retain(|ch| ch.call_id != gone.id);
            stats.evicted += 1;
        }
    }

    fn make_room_for_channel(&mut self, stats: &mut NormalizeStats) {
        if !self.channels.is_full() {
            return;
        }
        if let Some((i, _)) = self
            .channels
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.last_activity)
        {
            self.channels.swap_remove(i);
            stats.evicted += 1;
        }
    }

    fn new_channel(
        &mut self,
        msg: &Message<'_>,
        now: u64,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let Some(uid) = id(msg, "Uniqueid", stats) else {
            stats.unmatched += 1;
            return;
        };
        if let Some(i) = self.channel_index(uid) {
            // Already known (announced before a reconnect): nothing new.
            self.channels[i].seen = true;
            return;
        }
        let linkedid = id(msg, "Linkedid", stats).unwrap_or(uid);
        let number = clean(msg.get("CallerIDNum"));
        let channel = msg.get("Channel").unwrap_or("");
        let is_new_call = !self.calls.iter().any(|c| c.id == linkedid);
        if is_new_call {
            self.make_room_for_call(stats);
            let mut headers = Headers::default();
            Self::chan_variables(msg, &mut headers, stats);
            let started = CallStarted {
                call_id: bounded(stats, linkedid),
                session_id: bounded(stats, uid),
                from: bounded(stats, number),
                from_name: bounded(stats, clean(msg.get("CallerIDName"))),
                to: bounded(stats, clean(msg.get("Exten"))),
                direction: self.direction.of(channel, clean(msg.get("Exten"))),
                // A call begun by a Local channel (an Originate of one) has no caller's
                // channel until the phone it rings is known; the dialplan is no party.
                channel: match local::half(channel) {
                    Some(_) => LongText::new(),
                    None => bounded(stats, channel),
                },
                account_code: bounded(stats, msg.get("AccountCode").unwrap_or("")),
                context: bounded(stats, msg.get("Context").unwrap_or("")),
                tenant_id: bounded(stats, msg.get("TenantID").unwrap_or("")),
                extra_headers: headers.clone(),
            };
            let call = Call {
                caller: started.channel.clone(),
                talk_secs: None,
                originated: false,
                party: LongText::new(),
                id: started.call_id.clone(),
                session_id: started.session_id.clone(),
                from: started.from.clone(),
                to: started.to.clone(),
                started_at: now,
                answered_at: 0,
                last_activity: now,
                outcome: Outcome::Pending,
                dial_ended_unanswered: false,
                last_dial_status: "",
                ringing_sent: false,
                caller_cause: None,
                caller_cancelled: false,
                caller_hung_up: false,
                caller_up_at: 0,
                pbx_answered_at: 0,
                dialled: false,
                last_outcome: None,
                headers,
            };
            // Cannot fail: room was made above.
            let _ = self.calls.push(call);
            emit(Body::CallStarted(started));
        } else if let Some(call) = self.call(linkedid) {
            // A later channel's variables (a callee's, or the caller's inherited ones) are
            // not the caller's INVITE's.
            call.last_activity = now;
        }
        self.make_room_for_channel(stats);
        let ch = Channel {
            uniqueid: bounded(stats, uid),
            call_id: bounded(stats, linkedid),
            name: bounded(stats, channel),
            target: bounded(
                stats,
                if number.is_empty() {
                    endpoint_of(channel)
                } else {
                    number
                },
            ),
            leg: !is_new_call,
            dialled: false,
            local: local::half(channel),
            dialler: None,
            rang_early: false,
            dialplan: false,
            behind: None,
            behind_refused: None,
            ringing: false,
            up: false,
            dial_done: false,
            refused: None,
            outcome: None,
            held: false,
            last_activity: now,
            seen: true,
            unlisted: 0,
        };
        let _ = self.channels.push(ch);
    }

    /// The `CoreShowChannels` list after a (re)connect is complete: channels not in it
    /// are gone, and calls left without channels end with `VANISHED_DURING_AMI_OUTAGE`.
    fn end_resync(&mut self, now: u64, stats: &mut NormalizeStats, emit: &mut dyn FnMut(Body)) {
        self.resyncing = false;
        self.end_gone(|c| !c.seen, VANISHED, now, stats, emit);
    }

    /// A periodic `CoreShowChannels` list (asked for with the other state lists) is
    /// complete: a channel it and the one before did not show is gone though its end was
    /// never told, and its call ends with `VANISHED_UNREPORTED` once no channel is left.
    fn end_periodic(&mut self, now: u64, stats: &mut NormalizeStats, emit: &mut dyn FnMut(Body)) {
        for ch in self.channels.iter_mut() {
            ch.unlisted = if ch.seen {
                0
            } else {
                ch.unlisted.saturating_add(1)
            };
        }
        self.end_gone(|c| c.unlisted >= 2, UNLISTED, now, stats, emit);
        for ch in self.channels.iter_mut() {
            ch.seen = false;
        }
    }

    /// Removes the channels that are `gone`, telling a leg's end and, once a call has no
    /// channel left, the call's, as `cause_name`.
    fn end_gone(
        &mut self,
        gone: impl Fn(&Channel) -> bool,
        cause_name: &'static str,
        now: u64,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        while let Some(i) = self.channels.iter().position(&gone) {
            let ch = self.channels.swap_remove(i);
            if ch.told() {
                emit(Body::TargetEnded(TargetLeg {
                    call_id: ch.call_id.clone(),
                    target: ch.target.clone(),
                    contact: ch.contact(),
                    cause: 0,
                    cause_name,
                    sip_code: 0,
                }));
            }
            if !self.channels.iter().any(|c| c.call_id == ch.call_id) {
                self.end_call(&ch.call_id, 0, cause_name, now, stats, emit);
            }
        }
    }

    fn new_state(
        &mut self,
        msg: &Message<'_>,
        now: u64,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let state = msg.get("ChannelState").unwrap_or("");
        if state != "5" && state != "6" {
            return;
        }
        let Some(i) = id(msg, "Uniqueid", stats).and_then(|u| self.channel_index(u)) else {
            stats.unmatched += 1;
            return;
        };
        let ch = &mut self.channels[i];
        ch.last_activity = now;
        if !ch.leg {
            if state == "6" {
                self.caller_up(i, now);
            }
            return;
        }
        if state == "6" {
            self.came_up(i, now, emit);
        } else if ch.local.is_none() {
            if ch.dialled {
                self.ringing(i, emit);
            } else {
                // Its DialBegin is still to come.
                ch.rang_early = true;
            }
        }
    }

    /// Channel `i`, not a leg, is up: if it is the caller's, the PBX picked up, unless a
    /// party's answer came first, or it is an originated call's phone (directly, or behind
    /// the originated Local channel) answering.
    fn caller_up(&mut self, i: usize, now: u64) {
        let ch = &self.channels[i];
        let reached_phone = match ch.local {
            None => true,
            Some(_) => self
                .partner(i)
                .is_some_and(|p| self.channels[p].behind.is_some()),
        };
        let (uid, call_id) = (ch.uniqueid.clone(), ch.call_id.clone());
        if let Some(call) = self.call(&call_id) {
            if call.session_id == uid && call.caller_up_at == 0 {
                call.caller_up_at = now;
                let phone = call.originated && reached_phone;
                if call.outcome != Outcome::Answered && !phone {
                    call.pbx_answered_at = now;
                }
            }
        }
    }

    /// Party `i` rings: `target.ringing`, and the call's first `call.ringing`.
    fn ringing(&mut self, i: usize, emit: &mut dyn FnMut(Body)) {
        let ch = &mut self.channels[i];
        if ch.ringing {
            return;
        }
        ch.ringing = true;
        let (call_id, target, name) = (ch.call_id.clone(), ch.target.clone(), ch.name.clone());
        emit(Body::TargetRinging(TargetLeg {
            call_id: call_id.clone(),
            target: target.clone(),
            contact: name.clone(),
            ..Default::default()
        }));
        if let Some(call) = self.call(&call_id) {
            if !call.ringing_sent {
                call.ringing_sent = true;
                emit(Body::CallRinging(CallTarget {
                    call_id,
                    target,
                    channel: name,
                }));
            }
        }
    }

    /// Leg `i` is up (its Newstate Up or its dial's ANSWER, whichever comes first). A party
    /// answers the call only when that reaches the caller: straight away when the caller
    /// dialled it; behind a Local channel, once that Local channel's `;1` is up too. An
    /// answer that never gets that far (dropped behind the chain, declined at an acceptance
    /// prompt) is not the call's.
    fn came_up(&mut self, i: usize, now: u64, emit: &mut dyn FnMut(Body)) {
        let ch = &mut self.channels[i];
        if ch.up {
            return;
        }
        ch.up = true;
        let party = match ch.local {
            Some(Half::Two) => return,
            // What its other half reached; nothing: the dialplan answered it itself
            // (voicemail, an IVR, an announcement), and the Local channel stands for that.
            Some(Half::One) => match self
                .partner(i)
                .and_then(|p| self.channels[p].behind.clone())
            {
                Some((party, true)) => party,
                // Its party's answer is still to be told (another thread's): it reaches
                // the caller then, through this `;1`, now up.
                Some((party, false)) if self.still_dialled(&party) => return,
                _ => self.channels[i].uniqueid.clone(),
            },
            None if ch.dialled => ch.uniqueid.clone(),
            None => return,
        };
        self.reach(i, party, now, emit);
    }

    /// `party` is connected to leg `i`: walk up the chain of diallers to the caller, at most
    /// [`MAX_CHAIN`] Local channels. Through a Local `;2` only when its `;1` is up; else the
    /// `;2` remembers it for then.
    fn reach(&mut self, mut i: usize, party: Id, now: u64, emit: &mut dyn FnMut(Body)) {
        // Bounded: a stream that makes Local channels dial each other in a ring ends here.
        for _ in 0..MAX_CHAIN {
            let Some(dialler) = self.channels[i].dialler.clone() else {
                let (uid, call_id) = (&self.channels[i].uniqueid, self.channels[i].call_id.clone());
                let originated = self
                    .calls
                    .iter()
                    .any(|c| c.id == call_id && c.originated && c.session_id == *uid);
                if !originated {
                    // A leg whose dial was not seen (it began before pbxtap connected).
                    self.answered(&call_id, &party, now, emit);
                }
                return;
            };
            let Some(d) = self.channel_index(&dialler) else {
                let call_id = self.channels[i].call_id.clone();
                self.answered(&call_id, &party, now, emit);
                return;
            };
            match self.through(d, &party, now, emit) {
                Some(one) => i = one,
                None => return,
            }
        }
    }

    /// `party` reached what channel `d` dialled. Dialled by the caller, or by another party
    /// (a transfer's consultation): the call's answer. Dialled by a Local `;2`: it
    /// remembers the party, and the `;1` to go on from is returned if it is up.
    fn through(
        &mut self,
        d: usize,
        party: &Id,
        now: u64,
        emit: &mut dyn FnMut(Body),
    ) -> Option<usize> {
        if self.channels[d].local != Some(Half::Two) {
            let call_id = self.channels[d].call_id.clone();
            self.answered(&call_id, party, now, emit);
            return None;
        }
        self.channels[d].behind = Some((party.clone(), true));
        self.partner(d).filter(|&one| self.channels[one].up)
    }

    /// Whether party `uid` is still being dialled: alive, not up, its dial not ended.
    fn still_dialled(&self, uid: &str) -> bool {
        self.channel_index(uid)
            .is_some_and(|p| !self.channels[p].up && !self.channels[p].dial_done)
    }

    /// The other half of Local channel `i`.
    fn partner(&self, i: usize) -> Option<usize> {
        let name = self.channels[i].name.as_str();
        self.channels
            .iter()
            .position(|c| c.local.is_some() && local::pair(c.name.as_str(), name))
    }

    /// Who channel `uid` is to a consumer: a party's number and channel; a Local channel
    /// that the dialplan answered itself is its extension, with no channel.
    fn party(&self, uid: &str) -> (Text, LongText) {
        match self.channel_index(uid).map(|i| &self.channels[i]) {
            Some(c) if c.local.is_some() => (extension(c.name.as_str()), LongText::new()),
            Some(c) => (c.target.clone(), c.name.clone()),
            None => (Text::new(), LongText::new()),
        }
    }

    /// The call was answered by `party` (a channel's uniqueid): `call.answered`, once per
    /// call. A Local channel is the dialplan answering, not a party.
    fn answered(&mut self, call_id: &Id, party: &str, now: u64, emit: &mut dyn FnMut(Body)) {
        if let Some(i) = self
            .channel_index(party)
            .filter(|&i| self.channels[i].local.is_some())
        {
            self.dialplan_answered(call_id, i, now, emit);
            return;
        }
        let (target, channel) = self.party(party);
        if let Some(call) = self.call(call_id) {
            if call.outcome != Outcome::Answered {
                call.outcome = Outcome::Answered;
                call.answered_at = now;
                call.party.clone_from(&channel);
                emit(Body::CallAnswered(CallTarget {
                    call_id: call_id.clone(),
                    target,
                    channel,
                }));
            }
        }
    }

    /// Local leg `i` was answered by the dialplan itself (voicemail, an IVR, an
    /// announcement): the PBX picked up, no party did. It is told as a target: its
    /// extension, with no contact.
    fn dialplan_answered(&mut self, call_id: &Id, i: usize, now: u64, emit: &mut dyn FnMut(Body)) {
        let ch = &mut self.channels[i];
        if ch.dialplan {
            return;
        }
        ch.dialplan = true;
        ch.target = extension(ch.name.as_str());
        emit(Body::TargetAdded(TargetLeg {
            call_id: call_id.clone(),
            target: ch.target.clone(),
            ..Default::default()
        }));
        if let Some(call) = self.call(call_id) {
            if call.outcome != Outcome::Answered && call.pbx_answered_at == 0 {
                call.pbx_answered_at = now;
            }
        }
    }

    /// The dialled leg of a DialBegin/DialEnd, and its call (Originate dials have no
    /// `Channel:`, only the `Dest*` headers).
    fn leg_of(&self, msg: &Message<'_>, stats: &mut NormalizeStats) -> Option<usize> {
        id(msg, "DestUniqueid", stats).and_then(|u| self.channel_index(u))
    }

    /// The caller of call `call_id`: its first channel's uniqueid.
    fn is_caller(&self, call_id: &str, uid: &str) -> bool {
        self.calls
            .iter()
            .any(|c| c.id == call_id && c.session_id == uid)
    }

    fn dial_begin(
        &mut self,
        msg: &Message<'_>,
        now: u64,
        stats: &mut NormalizeStats,
        held: &RefCell<Box<Held>>,
        emit: &mut dyn FnMut(Body),
    ) {
        let Some(i) = self.leg_of(msg, stats) else {
            stats.unmatched += 1;
            return;
        };
        let dialler = msg
            .get("Channel")
            .and_then(|_| id(msg, "Uniqueid", stats))
            .map(|u| bounded::<{ event::ID_LEN }>(stats, u));
        let call_id = self.channels[i].call_id.clone();
        self.channels[i].last_activity = now;
        let Some(dialler) = dialler else {
            if self.is_caller(&call_id, &self.channels[i].uniqueid) {
                // An Originate rings its first phone: that phone is the caller. Its start,
                // unless already out, waits for the destination that phone will dial.
                let mut held = held.borrow_mut();
                let waits = held.start(&call_id).map(|start| start.to.clear()).is_some();
                held.keep(&call_id, now + super::held::ORIGINATE_HOLD);
                if let Some(call) = self.call(&call_id) {
                    call.originated = true;
                    if waits {
                        call.to.clear();
                    }
                }
            }
            return;
        };
        self.originated_dials(&call_id, &dialler, msg, stats, held);
        let dest = clean(msg.get("DestCallerIDNum"));
        let target = if dest.is_empty() {
            msg.get("DialString").unwrap_or("")
        } else {
            dest
        };
        let target: Text = bounded(stats, target);
        let ch = &mut self.channels[i];
        ch.leg = true;
        ch.dialler = Some(dialler.clone());
        if ch.local.is_some() {
            // Plumbing: the parties its other half dials are the targets.
            return;
        }
        ch.target = target.clone();
        let (uid, name) = (ch.uniqueid.clone(), ch.name.clone());
        let d = self.channel_index(&dialler);
        if let Some(d) = d.filter(|&d| self.channels[d].local == Some(Half::Two)) {
            self.channels[d].behind = Some((uid, false));
            if self.rings_originator(d) {
                // An Originate of a Local channel rings this phone: the caller, no target.
                return;
            }
        }
        let ch = &mut self.channels[i];
        ch.dialled = true;
        let rang_early = ch.rang_early;
        if let Some(call) = self.call(&call_id) {
            call.last_activity = now;
            let first = !call.dialled;
            call.dialled = true;
            if call.outcome != Outcome::Answered {
                call.party.clone_from(&name);
            }
            if first {
                // The dialplan sends the call to its first destination (a ring group's or
                // a queue's other legs are the same destination).
                emit(Body::CallRouted(CallTarget {
                    call_id: call_id.clone(),
                    target: target.clone(),
                    channel: name.clone(),
                }));
            } else if call.dial_ended_unanswered && call.outcome != Outcome::Answered {
                call.dial_ended_unanswered = false;
                emit(Body::CallRerouted(CallTarget {
                    call_id: call_id.clone(),
                    target: target.clone(),
                    channel: name.clone(),
                }));
            }
        }
        emit(Body::TargetAdded(TargetLeg {
            call_id,
            target,
            contact: name,
            ..Default::default()
        }));
        if rang_early {
            self.ringing(i, emit);
        }
    }

    /// Whether Local `;2` `d` is the other half of an originated call's own `;1` that has
    /// not dialled its destination yet: what it dials is the phone that is the caller.
    fn rings_originator(&self, d: usize) -> bool {
        let Some(one) = self.partner(d) else {
            return false;
        };
        let (uid, call_id) = (&self.channels[one].uniqueid, &self.channels[one].call_id);
        self.calls
            .iter()
            .any(|c| &c.id == call_id && c.originated && &c.session_id == uid && c.to.is_empty())
    }

    /// The caller of an originated call dials: where it dials (its dialplan position,
    /// `Exten`) is the call's `to`, and the direction is the destination's. The phone
    /// that answered the Originate, found behind a Local channel when it was one, is
    /// its `from` and its start's `channel`.
    fn originated_dials(
        &mut self,
        call_id: &Id,
        dialler: &str,
        msg: &Message<'_>,
        stats: &mut NormalizeStats,
        held: &RefCell<Box<Held>>,
    ) {
        let Some(c) = self.calls.iter().position(|c| &c.id == call_id) else {
            return;
        };
        let call = &self.calls[c];
        if !call.originated || !call.to.is_empty() || call.session_id != dialler {
            return;
        }
        let session = self.channel_index(dialler);
        let phone = session.and_then(|s| match self.channels[s].local {
            Some(_) => self
                .partner(s)
                .and_then(|p| self.channels[p].behind.clone())
                .map(|(party, _)| self.party(&party)),
            None => Some((
                self.channels[s].target.clone(),
                self.channels[s].name.clone(),
            )),
        });
        let channel = session
            .map(|s| self.channels[s].name.clone())
            .unwrap_or_default();
        let to: Text = bounded(stats, clean(msg.get("Exten")));
        let direction = self.direction.of(channel.as_str(), to.as_str());
        let call = &mut self.calls[c];
        call.to = to.clone();
        if let Some((phone, channel)) = &phone {
            call.from = phone.clone();
            call.caller = channel.clone();
        }
        let mut held = held.borrow_mut();
        if let Some(start) = held.start(call_id) {
            start.to = to;
            start.direction = direction;
            if let Some((phone, channel)) = phone {
                start.from = phone;
                start.channel = channel;
            }
        }
    }

    fn dial_end(
        &mut self,
        msg: &Message<'_>,
        now: u64,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let Some(i) = self.leg_of(msg, stats) else {
            stats.unmatched += 1;
            return;
        };
        let ch = &mut self.channels[i];
        if ch.dial_done {
            // DialEnd can arrive twice for one leg.
            return;
        }
        ch.last_activity = now;
        let status = dial_status(msg.get("DialStatus").unwrap_or(""));
        if !ch.dialled && ch.local.is_none() {
            // Not a dialled party: an Originate's first phone (the caller), or the phone
            // that picked the ringing one up (Pickup), which reached the dialler.
            if status == "ANSWER" && ch.dialler.is_none() && msg.get("Channel").is_some() {
                let picker = ch.uniqueid.clone();
                if let Some(d) = id(msg, "Uniqueid", stats).and_then(|u| self.channel_index(u)) {
                    self.reach_from_dialler(d, picker, now, emit);
                }
            }
            return;
        }
        self.dial_ended(i, status, now, emit);
    }

    /// Leg `i`'s dial ended with `status` (a DialStatus): the leg's and, when its dialler
    /// was the caller's, the call's outcome.
    fn dial_ended(&mut self, i: usize, status: &'static str, now: u64, emit: &mut dyn FnMut(Body)) {
        let ch = &mut self.channels[i];
        ch.dial_done = true;
        if status == "ANSWER" {
            self.came_up(i, now, emit);
            return;
        }
        if ch.up {
            // Answered, then dropped before it reached the caller (an acceptance prompt
            // declined): its Hangup tells its end.
            return;
        }
        let call_id = ch.call_id.clone();
        let Some(call) = self.calls.iter().find(|c| c.id == call_id) else {
            return;
        };
        let answered = call.outcome == Outcome::Answered;
        let gave_up = call.gave_up();
        if status == "CANCEL" {
            // Another leg answered (its Hangup says ANSWERED_ELSEWHERE), or the caller
            // gave up: then the leg ended normally, with the 487 of the cancel.
            if !answered && gave_up {
                self.channels[i].outcome = Some((16, 487));
            }
            return;
        }
        let local = self.channels[i].local.is_some();
        // A Local channel's other half, while it lives.
        let behind = if local { self.partner(i) } else { None };
        // A far end that refused with a SIP code (404, 480, 603...) is a failure even
        // where Asterisk's DialStatus says NOANSWER; older Asterisks tell only the status.
        let refused = match behind {
            Some(p) => self.channels[p].behind_refused,
            None => self.channels[i].refused,
        };
        let (cause, sip_code) = match refused {
            Some((cause, sip)) if sip >= 400 => (cause, sip),
            _ => (
                dial_status_cause(status),
                cause::dial_status_sip_code(status),
            ),
        };
        let no_answer = status == "NOANSWER" && refused.is_none();
        let outcome = (cause, sip_code, no_answer);
        let (target, name) = if local {
            // The Local channel stands for the party its other half dialled last (that
            // party's leg ends this way too, unless it already said how), or, with none
            // left, for its own extension.
            let mut party = None;
            if let Some(p) = behind {
                party = self.channels[p].behind.clone();
                let two = self.channels[p].uniqueid.clone();
                while let Some(leg) = self.channels.iter().position(|c| {
                    c.dialler.as_deref() == Some(two.as_str()) && c.dialled && !c.dial_done
                }) {
                    self.channels[leg].dial_done = true;
                    self.leg_unanswered(leg, outcome, emit);
                }
            }
            match party.filter(|(u, _)| self.channel_index(u).is_some()) {
                Some((party, _)) => self.party(&party),
                None => self.party(&self.channels[i].uniqueid.clone()),
            }
        } else {
            self.leg_unanswered(i, outcome, emit);
            let ch = &self.channels[i];
            (ch.target.clone(), ch.name.clone())
        };
        // Whose dial this was: the caller's (or one not seen) decides the call's outcome; a
        // Local `;2`'s waits for its `;1`'s.
        let dialler = self.channels[i]
            .dialler
            .as_deref()
            .and_then(|d| self.channel_index(d));
        if let Some(d) = dialler.filter(|&d| self.channels[d].local == Some(Half::Two)) {
            if !no_answer {
                self.channels[d].behind_refused = Some((cause, sip_code));
            }
            return;
        }
        let Some(call) = self.call(&call_id) else {
            return;
        };
        call.dial_ended_unanswered = true;
        call.last_dial_status = status;
        call.last_outcome = Some((cause, sip_code));
        if answered {
            return;
        }
        if no_answer {
            call.outcome = Outcome::NoAnswer;
            emit(Body::CallNoAnswer(CallTarget {
                call_id,
                target,
                channel: name,
            }));
        } else {
            call.outcome = Outcome::Failed;
            emit(Body::CallFailed(CallFailed {
                call_id,
                target,
                sip_code,
                cause,
                cause_name: cause::name(cause),
                dial_status: status,
            }));
        }
    }

    /// Party leg `i`'s dial ended unanswered with `(cause, sip_code, no_answer)`:
    /// `target.noanswer` or `target.failed`, and how its `target.ended` will say it ended.
    fn leg_unanswered(&mut self, i: usize, outcome: (u16, u16, bool), emit: &mut dyn FnMut(Body)) {
        let (cause, sip_code, no_answer) = outcome;
        let ch = &mut self.channels[i];
        ch.outcome = Some((cause, sip_code));
        let leg = TargetLeg {
            call_id: ch.call_id.clone(),
            target: ch.target.clone(),
            contact: ch.name.clone(),
            cause,
            cause_name: cause::name(cause),
            sip_code,
        };
        emit(if no_answer {
            Body::TargetNoAnswer(leg)
        } else {
            Body::TargetFailed(leg)
        });
    }

    /// `party` reached whatever dialler `d` dialled (a directed or group pickup: the phone
    /// that picked up answers the dial in the ringing phone's place).
    fn reach_from_dialler(&mut self, d: usize, party: Id, now: u64, emit: &mut dyn FnMut(Body)) {
        if let Some(one) = self.through(d, &party, now, emit) {
            self.reach(one, party, now, emit);
        }
    }

    /// A `HangupRequest`: a far end refusing a leg says why here, before the DialEnd
    /// (`Cause`, and the SIP code as `TechCause`); a caller's CANCEL shows as 487.
    fn hangup_request(&mut self, msg: &Message<'_>, now: u64, stats: &mut NormalizeStats) {
        let Some(i) = id(msg, "Uniqueid", stats).and_then(|u| self.channel_index(u)) else {
            stats.unmatched += 1;
            return;
        };
        let cause = parse_u16(msg.get("Cause"));
        // Asterisk 20.17, 22.7, 23.1 and later; older ones (and chan_sip) tell only `Cause`.
        let tech = msg.get("TechCause").map(|t| parse_u16(Some(t)));
        let ch = &mut self.channels[i];
        ch.last_activity = now;
        if ch.leg {
            // The far end ended a party's leg that was not up, before its dial ended: a
            // refusal. A dial timeout, a cancel or another leg's answer are asked by
            // Asterisk itself and make no HangupRequest on the leg. (A Local channel's
            // says what its other half did: the parties behind it tell that.)
            if !ch.up && !ch.dial_done && ch.local.is_none() {
                match tech {
                    Some(sip) if sip >= 400 => ch.refused = Some((cause, sip)),
                    None if cause != 0 && cause != 16 => {
                        ch.refused = Some((cause, cause::refusal_sip_code(cause)))
                    }
                    _ => {}
                }
            }
            return;
        }
        let up = ch.up;
        let (uid, call_id) = (ch.uniqueid.clone(), ch.call_id.clone());
        if let Some(call) = self.call(&call_id) {
            if call.session_id == uid {
                call.caller_hung_up = true;
                // Before any answer a caller can only CANCEL: Asterisk 22 says 487, older
                // ones say nothing (their Cause is 127 INTERWORKING) but that the caller's
                // channel, not answered, asked for its end.
                let cancel = match tech {
                    Some(sip) => sip == 487,
                    None => !up && call.caller_up_at == 0,
                };
                if cancel && call.outcome != Outcome::Answered {
                    call.caller_cancelled = true;
                }
            }
        }
    }

    fn hangup(
        &mut self,
        msg: &Message<'_>,
        now: u64,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let Some(i) = id(msg, "Uniqueid", stats).and_then(|u| self.channel_index(u)) else {
            stats.unmatched += 1;
            return;
        };
        let cause = parse_u16(msg.get("Cause"));
        let ch = &self.channels[i];
        let dialling = ch.dialled || (ch.local == Some(Half::One) && ch.dialler.is_some());
        if dialling && !ch.dial_done && !ch.up {
            // Its Hangup came before its DialEnd (another thread's): the dial ended as the
            // hangup's cause says; the DialEnd, when it comes, finds nothing.
            let gave_up = self.calls.iter().any(|c| c.id == ch.call_id && c.gave_up());
            self.dial_ended(i, hangup_dial_status(cause, gave_up), now, emit);
        }
        let ch = self.channels.swap_remove(i);
        if self.gone.is_full() {
            self.gone.pop_front();
        }
        let _ = self
            .gone
            .push_back((ch.uniqueid.clone(), ch.call_id.clone()));
        if ch.told() {
            let (cause, sip_code) = ch.outcome.unwrap_or((cause, cause::sip_code(cause)));
            emit(Body::TargetEnded(TargetLeg {
                call_id: ch.call_id.clone(),
                target: ch.target.clone(),
                contact: ch.contact(),
                cause,
                cause_name: cause::name(cause),
                sip_code,
            }));
        }
        if let Some(call) = self.call(&ch.call_id) {
            call.last_activity = now;
            if call.session_id == ch.uniqueid {
                call.caller_cause = Some(cause);
            }
        }
        if !self.channels.iter().any(|c| c.call_id == ch.call_id) {
            self.end_call(&ch.call_id, cause, "", now, stats, emit);
        }
    }

    /// Ends a call whose last channel is gone: `call.failed` first when it never got
    /// anywhere for a reason worth reporting, then `call.ended`. `cause_name` overrides the
    /// Q.850 name when not empty.
    fn end_call(
        &mut self,
        call_id: &Id,
        last_cause: u16,
        cause_name: &'static str,
        now: u64,
        _stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let Some(i) = self.calls.iter().position(|c| &c.id == call_id) else {
            return;
        };
        let call = self.calls.swap_remove(i);
        let (id, caller, party) = (call.id.clone(), call.caller.clone(), call.party.clone());
        let hangup_cause = call.caller_cause.unwrap_or(last_cause);
        // An answered call ends as its caller's channel did; an unanswered one as its
        // last dial did (busy, no answer, refused), or normally when the caller gave up.
        // A call that dialled no one and that the PBX picked up (a conference, an IVR,
        // voicemail) ends as its caller's channel did too.
        let by_pbx = call.outcome != Outcome::Answered && !call.dialled && call.caller_up_at > 0;
        // Asterisk's cause 0 ("unknown") on a call whose caller hung up is a normal end.
        let hangup_cause = match hangup_cause {
            0 if call.caller_hung_up => 16,
            c => c,
        };
        let (cause, sip_code) = match (call.outcome, call.last_outcome) {
            (Outcome::Answered, _) => (hangup_cause, 200),
            _ if by_pbx => (hangup_cause, 200),
            _ if call.caller_cancelled => (16, 487),
            // The caller left an answered channel (a queue, an announcement): BYE.
            _ if call.caller_hung_up && call.caller_up_at > 0 => (16, 200),
            (_, Some(outcome)) => outcome,
            _ => (hangup_cause, cause::sip_code(hangup_cause)),
        };
        let name = if cause_name.is_empty() {
            cause::name(cause)
        } else {
            cause_name
        };
        if call.outcome == Outcome::Pending && cause_name.is_empty() && cause::is_failure(cause) {
            emit(Body::CallFailed(CallFailed {
                call_id: call.id.clone(),
                target: call.to.clone(),
                sip_code,
                cause,
                cause_name: name,
                dial_status: "",
            }));
        }
        let answered = call.outcome == Outcome::Answered;
        let pbx_answered = call.pbx_answered_at > 0;
        emit(Body::CallEnded(CallEnded {
            call_id: call.id,
            from: call.from,
            to: call.to,
            cause,
            cause_name: name,
            sip_code,
            duration: secs(call.started_at, now),
            // From a party's answer, else from the PBX's.
            billsec: match (answered, call.talk_secs) {
                (true, Some(talk)) => talk,
                (true, None) => secs(call.answered_at, now),
                (false, _) if pbx_answered => secs(call.pbx_answered_at, now),
                (false, _) => 0,
            },
            answered,
            pbx_answered,
            hangup_by: if call.caller_hung_up {
                "caller"
            } else if call.outcome == Outcome::Answered {
                "callee"
            } else {
                ""
            },
            extra_headers: call.headers,
        }));
        self.cdrs.call_ended(&id, &caller, &party, now);
    }

    fn hold(
        &mut self,
        held: bool,
        msg: &Message<'_>,
        now: u64,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let Some(i) = id(msg, "Uniqueid", stats).and_then(|u| self.channel_index(u)) else {
            stats.unmatched += 1;
            return;
        };
        let ch = &mut self.channels[i];
        ch.last_activity = now;
        if !held && !ch.held {
            // A transfer or a bridge change takes channels off a hold that never was.
            return;
        }
        ch.held = held;
        let body = CallHold {
            call_id: ch.call_id.clone(),
            aor: bounded(stats, endpoint_of(ch.name.as_str())),
            peer_aor: bounded(stats, clean(msg.get("ConnectedLineNum"))),
            channel: ch.name.clone(),
        };
        emit(if held {
            Body::CallHeld(body)
        } else {
            Body::CallUnheld(body)
        });
    }

    /// A CDR (cdr_manager). It names the caller's Uniqueid, not the Linkedid: the call is
    /// found through the channel while it lives, else the Uniqueid stands for it.
    fn cdr(
        &mut self,
        msg: &Message<'_>,
        now: u64,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        let uid = id(msg, "UniqueID", stats).unwrap_or("");
        let call_id = match self.channel_index(uid) {
            Some(i) => self.channels[i].call_id.clone(),
            None => match self.gone.iter().find(|(u, _)| u == uid) {
                // A leg's record, written after its end (a Local channel's, a transferor's).
                Some((_, call_id)) => call_id.clone(),
                None => bounded(stats, uid),
            },
        };
        let g = |k: &str| msg.get(k).unwrap_or("");
        let num = |k: &str| msg.get(k).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        let cdr = Cdr {
            call_id,
            unique_id: bounded(stats, uid),
            account_code: bounded(stats, g("AccountCode")),
            source: bounded(stats, g("Source")),
            destination: bounded(stats, g("Destination")),
            destination_context: bounded(stats, g("DestinationContext")),
            caller_id: bounded(stats, g("CallerID")),
            channel: bounded(stats, g("Channel")),
            destination_channel: bounded(stats, g("DestinationChannel")),
            last_application: bounded(stats, g("LastApplication")),
            last_data: bounded(stats, g("LastData")),
            start_time: bounded(stats, g("StartTime")),
            answer_time: bounded(stats, g("AnswerTime")),
            end_time: bounded(stats, g("EndTime")),
            duration: num("Duration"),
            billsec: num("BillableSeconds"),
            disposition: bounded(stats, g("Disposition")),
            ama_flags: bounded(stats, g("AMAFlags")),
            user_field: bounded(stats, g("UserField")),
        };
        let live = self.calls.iter().any(|c| c.id == cdr.call_id);
        self.cdrs.add(cdr, (!live).then_some(now), stats, emit);
    }

    /// Sends the folded CDRs of calls that ended long enough ago: after every message,
    /// and every tick.
    pub fn flush_cdrs(&mut self, now: u64, emit: &mut dyn FnMut(Body)) {
        self.cdrs.flush(now, emit);
    }

    /// Blind and attended transfers, and a parked call picked up: `call.rerouted` to the
    /// new target.
    fn transfer(
        &mut self,
        event: CallEvent,
        msg: &Message<'_>,
        stats: &mut NormalizeStats,
        emit: &mut dyn FnMut(Body),
    ) {
        if msg.get("Result").is_some_and(|r| r != "Success") {
            return;
        }
        let (call, target, channel) = if event == CallEvent::BlindTransfer {
            (
                id(msg, "TransfereeLinkedid", stats),
                msg.get("Extension"),
                msg.get("TransfereeChannel"),
            )
        } else if event == CallEvent::UnParkedCall {
            // The parked call goes on with whoever picked it up.
            (
                id(msg, "ParkeeLinkedid", stats),
                msg.get("RetrieverCallerIDNum"),
                msg.get("RetrieverChannel"),
            )
        } else {
            (
                id(msg, "OrigTransfererLinkedid", stats),
                msg.get("SecondTransfererConnectedLineNum"),
                msg.get("SecondTransfererChannel"),
            )
        };
        let Some(call) = call.filter(|c| self.calls.iter().any(|k| k.id == *c)) else {
            stats.unmatched += 1;
            return;
        };
        if let Some(c) = self.calls.iter_mut().find(|k| k.id == call) {
            // An agent's talk is no longer the whole call's.
            c.talk_secs = None;
        }
        let channel = self.through_local(channel.unwrap_or(""), stats);
        emit(Body::CallRerouted(CallTarget {
            call_id: bounded(stats, call),
            target: bounded(stats, clean(target)),
            channel,
        }));
    }

    /// A queue's agent hung up or was hung up on (`AgentComplete`): Asterisk's `TalkTime`
    /// is the call's talk, unless a transfer follows.
    fn agent_complete(&mut self, msg: &Message<'_>, stats: &mut NormalizeStats) {
        // An agent who transferred the call talked for part of it only.
        let talk = msg
            .get("TalkTime")
            .and_then(|t| t.trim().parse().ok())
            .filter(|_| msg.get("Reason") != Some("transfer"));
        let Some(call_id) = id(msg, "Linkedid", stats) else {
            stats.unmatched += 1;
            return;
        };
        match self.call(call_id) {
            Some(call) => call.talk_secs = talk,
            None => stats.unmatched += 1,
        }
    }

    /// The party a channel named in a transfer stands for: itself, or, for a Local
    /// channel, the party at the far end of its chain (a `;2`'s: whoever dialled its `;1`;
    /// a `;1`'s: what its `;2` reached), empty when none is known. Chains are followed
    /// [`MAX_CHAIN`] deep.
    fn through_local(&self, name: &str, stats: &mut NormalizeStats) -> LongText {
        let mut at = name;
        for _ in 0..MAX_CHAIN {
            let Some(i) = self.channels.iter().position(|c| c.name == at) else {
                break;
            };
            let next = match self.channels[i].local {
                None => return self.channels[i].name.clone(),
                Some(Half::Two) => self
                    .partner(i)
                    .and_then(|one| self.channels[one].dialler.as_deref()),
                Some(Half::One) => self
                    .partner(i)
                    .and_then(|two| self.channels[two].behind.as_ref())
                    .map(|(party, _)| party.as_str()),
            };
            match next.and_then(|uid| self.channel_index(uid)) {
                Some(n) => at = self.channels[n].name.as_str(),
                None => break,
            }
        }
        if local::half(name).is_some() {
            LongText::new()
        } else {
            bounded(stats, name)
        }
    }
}

/// How many Local channels deep a chain is followed, to the caller or to a transfer's
/// party (FreePBX nests two or three: a ring group's leg into an extension's); past that
/// the answer is not told, so a stream of Local channels dialling each other in a ring
/// cannot loop.
pub const MAX_CHAIN: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_from_channel_name() {
        assert_eq!(endpoint_of("PJSIP/101-00000002"), "101");
        assert_eq!(endpoint_of("SIP/alice-0000ab"), "alice");
        assert_eq!(
            endpoint_of("Local/tone@lab-originate-00000001;1"),
            "tone@lab-originate"
        );
        assert_eq!(endpoint_of("weird"), "weird");
    }
}
