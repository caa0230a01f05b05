//! The event model: one typed, bounded `Event` per thing that happened on the PBX.
//!
//! Every field has a fixed capacity (heapless strings and vectors), so an `Event` is a
//! plain value of known size: it is copied into rings, never allocated. A value longer
//! than its field is cut at a character boundary and the cut is reported to the caller
//! (see [`set`]), who counts it.

use heapless::{String, Vec};

/// Call and channel identifiers (`Uniqueid`, `Linkedid`: `1795376847.2`, or
/// `SYSTEMNAME-1795376847.2` when Asterisk has a `systemname`): room for a systemname of
/// 40 bytes, or an Originate `ChannelId` UUID. A longer id is cut, and compared as cut.
pub const ID_LEN: usize = 64;
/// Numbers, names, AORs, queue and agent names.
pub const TEXT_LEN: usize = 64;
/// Channel names, contact URIs, notes, CDR data, reasons.
pub const LONG_TEXT_LEN: usize = 128;
/// Extra (`X-`) headers carried per call; more are dropped and counted as truncation.
pub const MAX_EXTRA_HEADERS: usize = 8;
/// Length of an extra header's name.
pub const HEADER_NAME_LEN: usize = 32;
/// Length of an extra header's value.
pub const HEADER_VALUE_LEN: usize = 64;

pub type Id = String<ID_LEN>;
pub type Text = String<TEXT_LEN>;
pub type LongText = String<LONG_TEXT_LEN>;

/// Copies `src` into `dst`, cutting it at a character boundary when it does not fit.
/// Returns `true` when the value was cut, so the caller can count it.
pub fn set<const N: usize>(dst: &mut String<N>, src: &str) -> bool {
    dst.clear();
    let kept = cut(src, N);
    // Cannot fail: `cut` keeps at most N bytes.
    let _ = dst.push_str(kept);
    kept.len() < src.len()
}

/// `src`'s longest prefix of at most `n` bytes that ends at a character boundary: what a
/// field of capacity `n` keeps of it.
pub fn cut(src: &str, n: usize) -> &str {
    if src.len() <= n {
        return src;
    }
    let mut end = n;
    while !src.is_char_boundary(end) {
        end -= 1;
    }
    &src[..end]
}

/// Builds a bounded string from `src`, cutting it when it does not fit.
pub fn text<const N: usize>(src: &str) -> String<N> {
    let mut s = String::new();
    set(&mut s, src);
    s
}

/// A call's extra headers: channel variables named `X-...`, in the order first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String<HEADER_NAME_LEN>, String<HEADER_VALUE_LEN>), MAX_EXTRA_HEADERS>);

impl Headers {
    /// Sets `name` to `value` (replacing an earlier value of the same name, compared
    /// ASCII case-insensitively). Returns `true` when something was cut or dropped.
    pub fn insert(&mut self, name: &str, value: &str) -> bool {
        let mut cut = false;
        if let Some((_, v)) = self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return set(v, value);
        }
        let mut n = String::new();
        cut |= set(&mut n, name);
        let mut v = String::new();
        cut |= set(&mut v, value);
        cut | self.0.push((n, v)).is_err()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// One field's value, as the dialects see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    U64(u64),
    Bool(bool),
    Headers(&'a Headers),
}

/// Conversion of a field to a [`Value`].
pub trait AsValue {
    fn as_value(&self) -> Value<'_>;
}

impl<const N: usize> AsValue for String<N> {
    fn as_value(&self) -> Value<'_> {
        Value::Str(self.as_str())
    }
}
impl AsValue for &'static str {
    fn as_value(&self) -> Value<'_> {
        Value::Str(self)
    }
}
impl AsValue for u64 {
    fn as_value(&self) -> Value<'_> {
        Value::U64(*self)
    }
}
impl AsValue for u32 {
    fn as_value(&self) -> Value<'_> {
        Value::U64(u64::from(*self))
    }
}
impl AsValue for u16 {
    fn as_value(&self) -> Value<'_> {
        Value::U64(u64::from(*self))
    }
}
impl AsValue for bool {
    fn as_value(&self) -> Value<'_> {
        Value::Bool(*self)
    }
}
impl AsValue for Headers {
    fn as_value(&self) -> Value<'_> {
        Value::Headers(self)
    }
}

/// The typed fields of an event body, visited in declaration order.
pub trait Fields {
    fn for_each_field<'a>(&'a self, f: &mut dyn FnMut(&'static str, Value<'a>));
}

/// Declares a body struct whose field names are its wire names, and its `Fields` impl.
macro_rules! body {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }

        impl Fields for $name {
            fn for_each_field<'a>(&'a self, f: &mut dyn FnMut(&'static str, Value<'a>)) {
                $(f(stringify!($field), self.$field.as_value());)*
            }
        }
    };
}

body! {
    /// `call.started`: the first channel of a call (a Linkedid) appeared.
    CallStarted {
        /// The call: Asterisk's Linkedid.
        call_id: Id,
        /// The first channel's Uniqueid.
        session_id: Id,
        from: Text,
        from_name: Text,
        to: Text,
        /// `inbound`, `outbound`, `internal` or `unknown`.
        direction: &'static str,
        channel: LongText,
        /// The first channel's `AccountCode`, `Context` (the dialplan context the call
        /// came into) and `TenantID` (Asterisk 21+, where set): what tells one customer's
        /// calls from another's (`sink::filter`).
        account_code: Text,
        context: Text,
        tenant_id: Text,
        extra_headers: Headers,
    }
}

body! {
    /// `call.routed` (the dialplan first dials a destination), `call.ringing`,
    /// `call.answered`, `call.noanswer`, `call.rerouted`: a call and one target.
    CallTarget {
        call_id: Id,
        /// The number or endpoint dialled (or who answered).
        target: Text,
        channel: LongText,
    }
}

body! {
    /// `call.held` / `call.unheld`.
    CallHold {
        call_id: Id,
        /// Who put the call on hold (or took it off).
        aor: Text,
        /// The other party.
        peer_aor: Text,
        channel: LongText,
    }
}

body! {
    /// `call.failed`: the call did not reach anyone.
    CallFailed {
        call_id: Id,
        target: Text,
        /// SIP final response code, 0 when unknown.
        sip_code: u16,
        /// Q.850 cause code.
        cause: u16,
        cause_name: &'static str,
        /// Asterisk's DialStatus (`BUSY`, `CONGESTION`, `CHANUNAVAIL`, ...) or empty.
        dial_status: &'static str,
    }
}

body! {
    /// `call.ended`: the last channel of the call hung up.
    CallEnded {
        call_id: Id,
        from: Text,
        to: Text,
        /// Q.850 cause code of the hangup that ended the call.
        cause: u16,
        cause_name: &'static str,
        /// SIP final response code, 0 when unknown.
        sip_code: u16,
        /// Seconds from start to end.
        duration: u32,
        /// Seconds from the answer to the end: a party's answer, else the PBX's; 0 when
        /// neither answered.
        billsec: u32,
        /// The caller was connected to a party: a phone or a trunk answered, and its answer
        /// reached the caller's channel.
        answered: bool,
        /// The PBX itself picked up before any party answered (Answer(), an IVR, voicemail,
        /// a queue's music, a conference, a feature code).
        pbx_answered: bool,
        /// Whose side asked for the end: `caller` (a BYE or CANCEL from the caller),
        /// `callee` (an answered call the caller did not end), or empty when unknown
        /// (the PBX ended it, or the call was never answered and the caller stayed).
        hangup_by: &'static str,
        extra_headers: Headers,
    }
}

body! {
    /// `target.added`, `.ringing`, `.noanswer`, `.failed`, `.ended`: one dialled leg.
    TargetLeg {
        call_id: Id,
        target: Text,
        /// The leg's channel (its contact on the PBX side).
        contact: LongText,
        /// Q.850 cause, 0 when not applicable.
        cause: u16,
        cause_name: &'static str,
        sip_code: u16,
    }
}

body! {
    /// `call.cdr`: Asterisk's call detail record (cdr_manager), as sent.
    Cdr {
        call_id: Id,
        unique_id: Id,
        account_code: Text,
        source: Text,
        destination: Text,
        destination_context: Text,
        caller_id: Text,
        channel: LongText,
        destination_channel: LongText,
        last_application: Text,
        last_data: LongText,
        /// `YYYY-MM-DD HH:MM:SS` in the PBX's local time, as Asterisk writes it.
        start_time: Text,
        answer_time: Text,
        end_time: Text,
        duration: u32,
        billsec: u32,
        /// `ANSWERED`, `NO ANSWER`, `BUSY`, `FAILED`, `CONGESTION`.
        disposition: Text,
        ama_flags: Text,
        user_field: LongText,
    }
}

body! {
    /// `endpoint.registered` / `endpoint.unregistered`.
    Registration {
        /// Address of record (the endpoint, e.g. `101`).
        aor: Text,
        /// Contact URI, when known.
        contact: LongText,
        /// Seconds the registration is valid for; 0 when unknown or removed.
        expires: u32,
        user_agent: Text,
        received_from: Text,
        /// Asterisk's status word (`Reachable`, `NonQualified`, `Removed`, ...).
        status: Text,
        /// `PJSIP` or `SIP`.
        technology: &'static str,
    }
}

body! {
    /// `endpoint.presence`: device, extension or presence state changed.
    Presence {
        extension: Text,
        /// Normalized state: `available`, `in_use`, `busy`, `ringing`, `on_hold`, `unavailable`, `unknown`.
        state: &'static str,
        /// Free text: the presence note or Asterisk's own state word.
        note: LongText,
        /// What changed: `device` (the phone's device or extension state: in use,
        /// ringing...) or `user` (the presence the user set: available, away, dnd).
        source: &'static str,
    }
}

body! {
    /// `queue.caller_joined` / `queue.caller_left`.
    QueueCaller {
        queue: Text,
        call_id: Id,
        caller: Text,
        caller_name: Text,
        position: u32,
        /// For `caller_left`: `answered`, `abandoned`, `timeout` or `left`; empty on join.
        reason: &'static str,
        /// Seconds the caller waited.
        waited: u32,
    }
}

body! {
    /// `queue.agent_status`: a member's state in a queue changed.
    QueueAgent {
        queue: Text,
        /// The member's interface (`PJSIP/102`).
        agent: Text,
        name: Text,
        /// `ready`, `in_call`, `wrap_up` (the queue's after-call time, `wrapuptime`),
        /// `ringing`, `paused`, `unavailable`, `removed`, `unknown`.
        state: &'static str,
        paused: bool,
        /// Why it is paused (Asterisk's `PausedReason`), when it says; empty otherwise.
        reason: Text,
    }
}

body! {
    /// `queue.sla_breached`: a caller waited longer than the queue's SLA.
    QueueSla {
        queue: Text,
        call_id: Id,
        caller: Text,
        waited: u32,
        sla_secs: u32,
    }
}

body! {
    /// `system.asterisk_up`, `.asterisk_down`, `.asterisk_degraded`, `.asterisk_restarted`.
    AsteriskHealth {
        pid: u32,
        /// Resident set size in KiB.
        rss_kib: u64,
        /// CPU use over the last check, in percent of one core.
        cpu_pct: u32,
        threads: u32,
        fds: u32,
        ami_connected: bool,
        /// Last AMI Ping round trip in milliseconds, 0 when unknown.
        ping_ms: u32,
        /// Why this state: which threshold, or what happened.
        reason: LongText,
    }
}

body! {
    /// `system.ami_connected` / `system.ami_disconnected`.
    AmiLink {
        address: Text,
        reason: LongText,
    }
}

body! {
    /// `system.ami_lagging` / `system.ami_caught_up`: Asterisk's events arrive late
    /// (`lag`), or no longer do (`lag_ms` then the worst of the spell).
    AmiLag {
        lag_ms: u64,
        threshold_ms: u64,
    }
}

body! {
    /// `system.clock_stepped`: the wall clock stepped (NTP's first sync on a Pi without a
    /// battery-backed clock, or someone setting it). Stamps (`time`) before it were on the
    /// old clock; lengths pbxtap measures are not affected (`clock`).
    ClockStep {
        step_ms: u64,
        /// `forward` or `backward`.
        direction: &'static str,
        /// Whether the clock is now known to be synchronised (systemd-timesyncd says so).
        synchronized: bool,
    }
}

body! {
    /// `system.clock_unsynchronized` (at start, while systemd-timesyncd has not
    /// synchronised the wall clock: stamps may be far off) and `system.clock_synchronized`
    /// (once it has).
    ClockSync {
        /// What tells: `systemd-timesyncd`.
        source: &'static str,
    }
}

body! {
    /// `system.login_failures`: `failures` failed logins from one address to one service
    /// (`PJSIP`, `AMI`) within `window_secs`: a guessed password, a scan, a phone with a
    /// stale secret.
    LoginFailures {
        address: Text,
        service: Text,
        /// The last account tried.
        account: Text,
        failures: u64,
        window_secs: u64,
    }
}

body! {
    /// `system.mass_unregistration`: `unregistered` registrations lost within
    /// `window_secs` (each also an `endpoint.unregistered`).
    MassUnregistration {
        unregistered: u64,
        window_secs: u64,
    }
}

body! {
    /// `system.asr_low` / `system.asr_recovered`: of the last `calls` calls that ended,
    /// `answered` were answered: the answer-seizure ratio fell under
    /// `normalize.asr_min_percent`, or is back at it (a carrier refusing calls, a broken
    /// route, a dialplan change gone wrong).
    AnswerRatio {
        asr_percent: u64,
        answered: u64,
        calls: u64,
        threshold_percent: u64,
    }
}

body! {
    /// `trunk.registered`, `trunk.failed`, `trunk.unregistered`: an outbound registration
    /// (a trunk to a carrier) was first seen, or changed state. `failed` is the health
    /// event: the carrier refused the registration or did not answer it (Asterisk
    /// retries on its own; the next `trunk.registered` says it worked).
    TrunkRegistration {
        /// The registration's section in pjsip.conf; empty until Asterisk lists it.
        trunk: Text,
        server_uri: LongText,
        client_uri: LongText,
        /// Its state before: `registered`, `failed`, `unregistered`, or empty when first
        /// seen.
        was: &'static str,
    }
}

body! {
    /// `system.events_dropped`: a sink's ring overflowed (reported at most every few seconds).
    Dropped {
        sink: Text,
        /// Dropped since the last report.
        dropped: u64,
        /// Dropped since start.
        total: u64,
    }
}

body! {
    /// `system.sink_down` / `system.sink_up`: a sink lost or regained its destination
    /// (broker refused us, endpoint unreachable), so operators see it in every other sink.
    SinkStatus {
        sink: Text,
        reason: LongText,
    }
}

/// The event class: the first part of `class.event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Call,
    Target,
    Endpoint,
    Queue,
    Trunk,
    System,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::Call,
        Class::Target,
        Class::Endpoint,
        Class::Queue,
        Class::Trunk,
        Class::System,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Call => "call",
            Class::Target => "target",
            Class::Endpoint => "endpoint",
            Class::Queue => "queue",
            Class::Trunk => "trunk",
            Class::System => "system",
        }
    }
}

/// Declares `Body` with each variant's class and event name.
macro_rules! bodies {
    ($($variant:ident($ty:ty) = $class:ident, $name:literal;)*) => {
        /// What happened, with its typed fields.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Body { $($variant($ty)),* }

        impl Body {
            pub fn class(&self) -> Class {
                match self { $(Body::$variant(_) => Class::$class),* }
            }
            /// The event name within its class (`started` in `call.started`).
            pub fn name(&self) -> &'static str {
                match self { $(Body::$variant(_) => $name),* }
            }
            pub fn fields(&self) -> &dyn Fields {
                match self { $(Body::$variant(b) => b),* }
            }
        }
    };
}

bodies! {
    CallStarted(CallStarted) = Call, "started";
    CallRouted(CallTarget) = Call, "routed";
    CallRinging(CallTarget) = Call, "ringing";
    CallAnswered(CallTarget) = Call, "answered";
    CallHeld(CallHold) = Call, "held";
    CallUnheld(CallHold) = Call, "unheld";
    CallRerouted(CallTarget) = Call, "rerouted";
    CallNoAnswer(CallTarget) = Call, "noanswer";
    CallFailed(CallFailed) = Call, "failed";
    CallEnded(CallEnded) = Call, "ended";
    CallCdr(Cdr) = Call, "cdr";
    TargetAdded(TargetLeg) = Target, "added";
    TargetRinging(TargetLeg) = Target, "ringing";
    TargetNoAnswer(TargetLeg) = Target, "noanswer";
    TargetFailed(TargetLeg) = Target, "failed";
    TargetEnded(TargetLeg) = Target, "ended";
    EndpointRegistered(Registration) = Endpoint, "registered";
    EndpointUnregistered(Registration) = Endpoint, "unregistered";
    EndpointPresence(Presence) = Endpoint, "presence";
    QueueCallerJoined(QueueCaller) = Queue, "caller_joined";
    QueueCallerLeft(QueueCaller) = Queue, "caller_left";
    QueueAgentStatus(QueueAgent) = Queue, "agent_status";
    QueueSlaBreached(QueueSla) = Queue, "sla_breached";
    TrunkRegistered(TrunkRegistration) = Trunk, "registered";
    TrunkFailed(TrunkRegistration) = Trunk, "failed";
    TrunkUnregistered(TrunkRegistration) = Trunk, "unregistered";
    AsteriskUp(AsteriskHealth) = System, "asterisk_up";
    AsteriskDown(AsteriskHealth) = System, "asterisk_down";
    AsteriskDegraded(AsteriskHealth) = System, "asterisk_degraded";
    AsteriskRestarted(AsteriskHealth) = System, "asterisk_restarted";
    AmiConnected(AmiLink) = System, "ami_connected";
    AmiDisconnected(AmiLink) = System, "ami_disconnected";
    AmiLagging(AmiLag) = System, "ami_lagging";
    AmiCaughtUp(AmiLag) = System, "ami_caught_up";
    ClockStepped(ClockStep) = System, "clock_stepped";
    ClockUnsynchronized(ClockSync) = System, "clock_unsynchronized";
    ClockSynchronized(ClockSync) = System, "clock_synchronized";
    LoginFailures(LoginFailures) = System, "login_failures";
    MassUnregistration(MassUnregistration) = System, "mass_unregistration";
    AsrLow(AnswerRatio) = System, "asr_low";
    AsrRecovered(AnswerRatio) = System, "asr_recovered";
    EventsDropped(Dropped) = System, "events_dropped";
    SinkDown(SinkStatus) = System, "sink_down";
    SinkUp(SinkStatus) = System, "sink_up";
}

impl Body {
    /// The call the body is about: call, target and queue-caller events.
    pub fn call_id(&self) -> Option<&str> {
        match self {
            Body::CallStarted(b) => Some(&b.call_id),
            Body::CallRouted(b)
            | Body::CallRinging(b)
            | Body::CallAnswered(b)
            | Body::CallRerouted(b)
            | Body::CallNoAnswer(b) => Some(&b.call_id),
            Body::CallHeld(b) | Body::CallUnheld(b) => Some(&b.call_id),
            Body::CallFailed(b) => Some(&b.call_id),
            Body::CallEnded(b) => Some(&b.call_id),
            Body::CallCdr(b) => Some(&b.call_id),
            Body::TargetAdded(b)
            | Body::TargetRinging(b)
            | Body::TargetNoAnswer(b)
            | Body::TargetFailed(b)
            | Body::TargetEnded(b) => Some(&b.call_id),
            Body::QueueCallerJoined(b) | Body::QueueCallerLeft(b) => Some(&b.call_id),
            Body::QueueSlaBreached(b) => Some(&b.call_id),
            _ => None,
        }
    }
}

/// Appliance name carried in every event.
pub type Host = Text;

/// One event, as it travels from the normalizer through the bus to the sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the bus since start: consecutive, so gaps show drops and repeats show duplicates.
    pub seq: u64,
    /// Microseconds since the Unix epoch.
    pub time: u64,
    pub host: Host,
    pub body: Body,
}

impl Event {
    /// An event stamped with `time`; `seq` is assigned when published on the bus.
    pub fn new(time: u64, host: &Host, body: Body) -> Self {
        Event {
            seq: 0,
            time,
            host: host.clone(),
            body,
        }
    }

    pub fn class(&self) -> Class {
        self.body.class()
    }

    pub fn name(&self) -> &'static str {
        self.body.name()
    }

    /// Looks up one field by its wire name.
    pub fn field(&self, key: &str) -> Option<Value<'_>> {
        let mut found = None;
        self.body.fields().for_each_field(&mut |k, v| {
            if found.is_none() && k == key {
                found = Some(v);
            }
        });
        found
    }

    /// A field as a string, or `""` when absent or not a string.
    pub fn str_field(&self, key: &str) -> &str {
        match self.field(key) {
            Some(Value::Str(s)) => s,
            _ => "",
        }
    }
}

/// The endpoint part of a channel name (a `channel` field): `PJSIP/101-00000002` → `101`,
/// `PJSIP/trunk-00000003` → `trunk`.
pub fn channel_endpoint(channel: &str) -> &str {
    let rest = channel.split_once('/').map_or(channel, |(_, r)| r);
    rest.rsplit_once('-').map_or(rest, |(e, _)| e)
}

/// An event's id: `<host>.<boot>.<seq>`.
pub type EventId = String<{ TEXT_LEN + 42 }>;

/// This run's `<boot>` in event ids ([`boot_number`] of when this process first needed
/// one). `seq` starts at 1 on every start; with this, ids never repeat across restarts,
/// even when the clock is set back to an earlier boot's time.
pub fn boot_id() -> u64 {
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| boot_number(now_micros(), &kernel_boot_id(), std::process::id()))
}

/// A run's `<boot>`: the wall second it started at, times a million, plus six digits
/// mixed from the kernel's boot id, the process id and the wall microseconds. Roughly
/// time-ordered, and distinct across two boots that start at the same wall time (a Pi
/// restored to fake-hwclock's saved time after a power cut): their kernel boot ids
/// differ. Nothing is written to disk.
pub fn boot_number(wall: u64, kernel_boot_id: &str, pid: u32) -> u64 {
    // FNV-1a, 64 bits.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    mix(kernel_boot_id.trim().as_bytes());
    mix(&pid.to_le_bytes());
    mix(&wall.to_le_bytes());
    (wall / 1_000_000) * 1_000_000 + hash % 1_000_000
}

/// The kernel's id of this boot (`/proc/sys/kernel/random/boot_id`, 37 bytes), or empty
/// where there is none.
fn kernel_boot_id() -> std::string::String {
    use std::io::Read;
    let mut id = std::string::String::new();
    if let Ok(f) = std::fs::File::open("/proc/sys/kernel/random/boot_id") {
        let _ = f.take(64).read_to_string(&mut id);
    }
    id
}

impl Event {
    /// The event's stable id, `<host>.<boot>.<seq>`: the same in every sink and on every
    /// retry, so a receiver can drop a copy it already has (JetStream's `Nats-Msg-Id`, the
    /// webhook's `Idempotency-Key`, Enswitch's `event_id`).
    pub fn id(&self) -> EventId {
        let mut id = EventId::new();
        // Cannot fail: a host of TEXT_LEN and two u64 of 20 digits fit.
        let _ = core::fmt::write(
            &mut id,
            format_args!("{}.{}.{}", self.host, boot_id(), self.seq),
        );
        id
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The largest events there can be: every string field full of characters that JSON
/// escapes to six bytes (`\u0001`) and forms to three, every header slot taken. Dialect
/// tests encode them to show that `dialect::MAX_ENCODED_LEN` is enough.
#[cfg(test)]
pub fn largest_events() -> [Event; 2] {
    let long = "\u{1}".repeat(200);
    let mut h = Headers::default();
    for i in 0..MAX_EXTRA_HEADERS {
        h.insert(&format!("X-{i}{long}"), &long);
    }
    let started = Event::new(
        u64::MAX,
        &text(&long),
        Body::CallStarted(CallStarted {
            call_id: text(&long),
            session_id: text(&long),
            from: text(&long),
            from_name: text(&long),
            to: text(&long),
            direction: "internal",
            channel: text(&long),
            account_code: text(&long),
            context: text(&long),
            tenant_id: text(&long),
            extra_headers: h,
        }),
    );
    // Cdr has the most string fields, but no headers.
    let cdr = Event::new(
        u64::MAX,
        &text(&long),
        Body::CallCdr(Cdr {
            call_id: text(&long),
            unique_id: text(&long),
            account_code: text(&long),
            source: text(&long),
            destination: text(&long),
            destination_context: text(&long),
            caller_id: text(&long),
            channel: text(&long),
            destination_channel: text(&long),
            last_application: text(&long),
            last_data: text(&long),
            start_time: text(&long),
            answer_time: text(&long),
            end_time: text(&long),
            duration: u32::MAX,
            billsec: u32::MAX,
            disposition: text(&long),
            ama_flags: text(&long),
            user_field: text(&long),
        }),
    );
    [started, cdr]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_boots_at_the_same_wall_time_get_different_boot_numbers() {
        const S: u64 = 1_000_000;
        let at = 1_700_000_000 * S + 123;
        let a = boot_number(at, "4a7d6f0e-0b1c-4a3e-9d1f-1f2e3d4c5b6a\n", 612);
        let b = boot_number(at, "9c1e2f3a-7b6d-4e5f-8a9b-0c1d2e3f4a5b\n", 612);
        assert_ne!(a, b);
        assert_eq!(a / S, at / S, "the second it started at leads");
        // The same boot, restarted by systemd in the same second: another pid.
        assert_ne!(
            a,
            boot_number(at, "4a7d6f0e-0b1c-4a3e-9d1f-1f2e3d4c5b6a", 613)
        );
        assert_eq!(
            a,
            boot_number(at, "4a7d6f0e-0b1c-4a3e-9d1f-1f2e3d4c5b6a", 612)
        );
    }

    #[test]
    fn set_cuts_at_char_boundary_and_reports_it() {
        let mut s: String<4> = String::new();
        assert!(!set(&mut s, "abcd"));
        assert_eq!(s, "abcd");
        assert!(set(&mut s, "abcé"));
        assert_eq!(s, "abc");
    }

    #[test]
    fn headers_replace_case_insensitively_and_count_overflow() {
        let mut h = Headers::default();
        assert!(!h.insert("X-Trace", "1"));
        assert!(!h.insert("x-trace", "2"));
        assert_eq!(h.iter().collect::<std::vec::Vec<_>>(), [("X-Trace", "2")]);
        for i in 1..MAX_EXTRA_HEADERS {
            assert!(!h.insert(&format!("X-{i}"), "v"));
        }
        assert!(h.insert("X-one-too-many", "v"));
        assert_eq!(h.len(), MAX_EXTRA_HEADERS);
    }

    #[test]
    fn class_name_and_field_lookup() {
        let host: Host = text("pbx1");
        let ev = Event::new(
            1,
            &host,
            Body::CallStarted(CallStarted {
                call_id: text("1.2"),
                from: text("101"),
                ..Default::default()
            }),
        );
        assert_eq!((ev.class().as_str(), ev.name()), ("call", "started"));
        assert_eq!(ev.str_field("from"), "101");
        assert_eq!(ev.field("nope"), None);
    }
}
