//! Normalizer: AMI messages in, events out. A pure state machine with fixed-capacity tables.
//!
//! Dispatch is on the `Event:` name, parsed once into `names::AmiEvent`; the events we
//! never use (CEL, Newexten, security events: most of the traffic) are not in it, so
//! the AMI parser passes over them unsplit (`reads`). Nothing here allocates
//! per message: tables are heapless, sized by the constants in each submodule, and a full
//! table evicts its oldest entry and counts it.

mod calls;
mod local;
/// Calls the normalizer follows at once.
pub use calls::MAX_CALLS;

/// The normalizer's fixed tables, by name, with their capacities.
pub const TABLES: [(&str, usize); 6] = [
    ("calls", calls::MAX_CALLS),
    ("channels", calls::MAX_CHANNELS),
    ("contacts", endpoint::MAX_CONTACTS),
    ("queue_callers", queue::MAX_QUEUE_CALLERS),
    ("queue_members", queue::MAX_QUEUE_MEMBERS),
    ("trunks", trunk::MAX_REGISTRATIONS),
];
mod asr;
pub mod cause;
mod endpoint;
pub mod held;
mod mass;
pub mod names;
mod queue;
mod security;
mod trunk;

use core::cell::RefCell;

use heapless::String;

use crate::ami::filter::Wanted;
use crate::ami::frame::Message;
use serde::Deserialize;

use crate::event::{self, Body};
use crate::settings::ConfigError;
use names::AmiEvent;

/// Settings of the normalizer: the `[normalize]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeConfig {
    /// Seconds a queue caller may wait before `queue.sla_breached`; 0 turns it off.
    pub queue_sla_secs: u32,
    /// Endpoint names (`PJSIP/<name>-...`) of trunks: a call from one is `inbound`.
    pub trunks: std::vec::Vec<std::string::String>,
    /// The longest number that is an internal extension: a call from a phone to a longer
    /// number is `outbound`, to a shorter one `internal`.
    pub max_extension_len: usize,
    /// Failed logins (SIP or AMI) from one address within `login_window_secs` that make
    /// a `system.login_failures`; 0 turns it off.
    pub login_failures: u32,
    pub login_window_secs: u32,
    /// Unregistrations within `mass_unregister_secs` that make a
    /// `system.mass_unregistration`; 0 turns it off.
    pub mass_unregister: u32,
    pub mass_unregister_secs: u32,
    /// Calls that ended over which the answer-seizure ratio is taken (`system.asr_low`);
    /// 0 turns it off.
    pub asr_calls: u32,
    /// The share of those answered (percent) under which the ratio is low.
    pub asr_min_percent: u32,
}

/// Most trunks `normalize.trunks` may name.
pub const MAX_TRUNKS: usize = 64;

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            queue_sla_secs: 60,
            trunks: std::vec::Vec::new(),
            max_extension_len: 6,
            login_failures: 5,
            login_window_secs: 60,
            mass_unregister: 10,
            mass_unregister_secs: 30,
            asr_calls: 20,
            asr_min_percent: 30,
        }
    }
}

impl NormalizeConfig {
    /// Checks the `[normalize]` table, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.trunks.len() > MAX_TRUNKS {
            return Err(ConfigError::new(
                "normalize.trunks",
                format!("names {} trunks; at most {MAX_TRUNKS}", self.trunks.len()),
            ));
        }
        if let Some(t) = self
            .trunks
            .iter()
            .find(|t| t.is_empty() || t.len() > event::TEXT_LEN || t.contains(['/', '-', ' ']))
        {
            return Err(ConfigError::new(
                "normalize.trunks",
                format!("`{t}` is not an endpoint name (as in PJSIP/<name>-00000001)"),
            ));
        }
        if self.login_failures > 10_000 {
            return Err(ConfigError::new(
                "normalize.login_failures",
                "must be at most 10000 (0 turns the warning off)",
            ));
        }
        if !(1..=86_400).contains(&self.login_window_secs) {
            return Err(ConfigError::new(
                "normalize.login_window_secs",
                "must be between 1 and 86400 seconds",
            ));
        }
        if self.mass_unregister > 1000 {
            return Err(ConfigError::new(
                "normalize.mass_unregister",
                "must be at most 1000 (0 turns the warning off)",
            ));
        }
        if !(1..=3600).contains(&self.mass_unregister_secs) {
            return Err(ConfigError::new(
                "normalize.mass_unregister_secs",
                "must be between 1 and 3600 seconds",
            ));
        }
        if self.asr_calls > 1000 {
            return Err(ConfigError::new(
                "normalize.asr_calls",
                "must be at most 1000 calls (0 turns the warning off)",
            ));
        }
        if !(1..=100).contains(&self.asr_min_percent) {
            return Err(ConfigError::new(
                "normalize.asr_min_percent",
                "must be between 1 and 100 (percent of calls answered)",
            ));
        }
        if !(1..=32).contains(&self.max_extension_len) {
            return Err(ConfigError::new(
                "normalize.max_extension_len",
                "must be between 1 and 32 digits",
            ));
        }
        Ok(())
    }
}

/// Counters, for the status line, the watchdog and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NormalizeStats {
    /// Messages handled.
    pub messages: u64,
    /// Messages ignored: events we do not use, responses, unknown events.
    pub ignored: u64,
    /// Events about channels or calls we do not know (started before we connected).
    pub unmatched: u64,
    /// Field values cut to fit their bounds.
    pub truncated: u64,
    /// Table entries evicted because a table was full.
    pub evicted: u64,
    /// Events emitted.
    pub emitted: u64,
    /// CDR records folded into their call's one `call.cdr`.
    pub cdrs_folded: u64,
}

/// When a message came: on the timeline, which lengths are measured on (`clock`), and
/// on the wall clock, which Asterisk's times of day (a contact's expiry, a member's last
/// call) are compared with.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub now: u64,
    pub wall: u64,
}

/// The normalizer. Boxed tables: together they are a few hundred KiB, allocated once.
pub struct Normalizer {
    cfg: NormalizeConfig,
    calls: Box<calls::Calls>,
    /// `call.started` waiting for the dialplan's first steps (`held`). Shared between the
    /// emitting closure and `calls`, which amends a held start (an Originate's `to`); the
    /// two never borrow it at once.
    held: RefCell<Box<held::Held>>,
    /// Wall clock minus the timeline `now` is on, µs (`set_wall_offset`).
    wall_offset: i64,
    endpoints: Box<endpoint::Endpoints>,
    queues: Box<queue::Queues>,
    trunks: trunk::Trunks,
    logins: security::Logins,
    watch: Watch,
    stats: NormalizeStats,
}

/// Copies `src` into a bounded string, counting a cut.
pub(crate) fn bounded<const N: usize>(stats: &mut NormalizeStats, src: &str) -> String<N> {
    let mut out = String::new();
    if event::set(&mut out, src) {
        stats.truncated += 1;
    }
    out
}

/// An id header (`Uniqueid`, `Linkedid`, `TransfereeLinkedid`, ...) as the tables store
/// it: cut to `event::ID_LEN` at a character boundary (and the cut counted), so an id
/// longer than that still finds its own call and channel.
pub(crate) fn id<'m>(msg: &Message<'m>, key: &str, stats: &mut NormalizeStats) -> Option<&'m str> {
    let v = msg.get(key)?;
    let kept = event::cut(v, event::ID_LEN);
    if kept.len() < v.len() {
        stats.truncated += 1;
    }
    Some(kept)
}

/// A caller-ID value, with Asterisk's `<unknown>` placeholder read as empty.
pub(crate) fn clean(v: Option<&str>) -> &str {
    match v {
        Some("<unknown>") | None => "",
        Some(v) => v,
    }
}

/// What Asterisk may leave unsent (`ami.filter_at_source`): every event but those
/// [`reads`] names, and `VarSet`s of other than `X-` variables.
pub const WANTED: Wanted = Wanted {
    events: &names::READ,
    variables: Some("[xX]-"),
};

/// Whether the normalizer reads `message`, an event named `name`: the AMI parser's filter
/// (`ami::frame::EventFilter`), which passes over the rest unparsed. A `VarSet` is read
/// when it may set an `X-` variable: when `x-` appears in it anywhere, in either case.
pub fn reads(name: &str, message: &[u8]) -> bool {
    match AmiEvent::parse(name) {
        None => false,
        Some(AmiEvent::VarSet) => {
            memchr::memchr2_iter(b'x', b'X', message).any(|i| message.get(i + 1) == Some(&b'-'))
        }
        Some(_) => true,
    }
}

/// The health events read off what the normalizer emits: many unregistrations at once
/// (`mass`), and the answer-seizure ratio (`asr`).
struct Watch {
    unregistrations: mass::Unregistrations,
    answers: asr::Answers,
}

impl Watch {
    fn new(cfg: &NormalizeConfig) -> Watch {
        Watch {
            unregistrations: mass::Unregistrations::new(
                cfg.mass_unregister,
                cfg.mass_unregister_secs,
            ),
            answers: asr::Answers::new(cfg.asr_calls, cfg.asr_min_percent),
        }
    }

    /// Emits `b`, then the health event it makes, if any. Returns how many it emitted.
    fn pass(&mut self, b: Body, now: u64, emit: &mut dyn FnMut(Body)) -> u64 {
        let health = match &b {
            Body::EndpointUnregistered(_) => self.unregistrations.unregistered(now),
            Body::CallEnded(ended) => self.answers.ended(ended.answered || ended.pbx_answered),
            _ => None,
        };
        emit(b);
        match health {
            Some(health) => {
                emit(health);
                2
            }
            None => 1,
        }
    }
}

impl Normalizer {
    pub fn new(cfg: NormalizeConfig) -> Self {
        let mut calls: Box<calls::Calls> = Box::default();
        calls.set_direction(calls::Direction {
            trunks: cfg.trunks.clone(),
            max_extension_len: cfg.max_extension_len,
        });
        Normalizer {
            logins: security::Logins::new(cfg.login_failures, cfg.login_window_secs),
            watch: Watch::new(&cfg),
            trunks: trunk::Trunks::default(),
            cfg,
            calls,
            endpoints: Box::default(),
            queues: Box::default(),
            held: RefCell::default(),
            wall_offset: 0,
            stats: NormalizeStats::default(),
        }
    }

    pub fn stats(&self) -> &NormalizeStats {
        &self.stats
    }

    /// Calls being tracked now.
    pub fn live_calls(&self) -> usize {
        self.calls.live_calls()
    }

    /// Each fixed table's entries in use now, in the order of [`TABLES`].
    pub fn tables_in_use(&self) -> [usize; TABLES.len()] {
        [
            self.calls.live_calls(),
            self.calls.live_channels(),
            self.endpoints.contacts(),
            self.queues.waiting(),
            self.queues.members(),
            self.trunks.len(),
        ]
    }

    /// The wall clock's offset from the timeline `now` is on (`clock::Timeline::offset`),
    /// for comparing with the times of day Asterisk gives.
    pub fn set_wall_offset(&mut self, offset: i64) {
        self.wall_offset = offset;
    }

    /// One AMI message received at `now` (µs on pbxtap's timeline, `clock`: the wall time
    /// until the wall clock steps, and monotonic after); emits 0..n bodies in order.
    pub fn handle(&mut self, msg: &Message<'_>, now: u64, emit: &mut dyn FnMut(Body)) {
        self.stats.messages += 1;
        let Some(name) = msg.event() else {
            self.stats.ignored += 1;
            return;
        };
        let Some(event) = AmiEvent::parse(name) else {
            self.stats.ignored += 1;
            return;
        };
        // X- channel variables set in the dialplan arrive as VarSet: the only VarSet we
        // read. Any other is passed over here as the parser's filter would, before any
        // timer runs, so what the normalizer emits never depends on it.
        let x_var = match event {
            AmiEvent::VarSet => msg
                .get("Variable")
                .map(|v| v.trim_start_matches('_'))
                .filter(|b| b.len() > 2 && b.as_bytes()[..2].eq_ignore_ascii_case(b"x-")),
            _ => None,
        };
        if event == AmiEvent::VarSet && x_var.is_none() {
            self.stats.ignored += 1;
            return;
        }
        let mut emitted = 0u64;
        let watch = &mut self.watch;
        let mut counted = |b: Body| {
            emitted += watch.pass(b, now, emit);
        };
        // A new channel's call.started is held for the dialplan's X- variables; anything
        // else about a call lets its held start out first.
        let holding = event == AmiEvent::Call(names::CallEvent::Newchannel);
        let held = &self.held;
        let mut out = |b: Body| match b {
            Body::CallStarted(start) if holding => held.borrow_mut().hold(start, now, &mut counted),
            b => held.borrow_mut().before(b, &mut counted),
        };
        let stats = &mut self.stats;
        // Asterisk's own times of day (a contact's expiry, a member's last call) are on the
        // wall clock.
        let at = At {
            now,
            wall: now.saturating_add_signed(self.wall_offset),
        };
        match event {
            AmiEvent::Call(e) => self.calls.handle(e, msg, now, stats, held, &mut out),
            AmiEvent::Endpoint(e) => self.endpoints.handle(e, msg, at, stats, &mut out),
            AmiEvent::Queue(e) => {
                let calls = &self.calls;
                let answered = |call_id: &str| calls.is_answered(call_id);
                self.queues.handle(e, msg, at, &answered, stats, &mut out)
            }
            AmiEvent::Trunk(e) => self.trunks.handle(e, msg, stats, &mut out),
            AmiEvent::Security(_) => self.logins.handle(msg, now, stats, &mut out),
            AmiEvent::VarSet => {
                if let Some(var) = x_var {
                    self.calls.var_set(msg, var, now, stats, held)
                }
            }
        }
        held.borrow_mut().due(now, &mut counted);
        // A call's folded CDR, once the call's other records had their time to come.
        self.calls.flush_cdrs(now, &mut counted);
        self.stats.emitted += emitted;
    }

    /// The AMI connection was (re)established; the `CoreShowChannel` list that follows,
    /// ended by `CoreShowChannelsComplete`, is the truth about live channels.
    pub fn begin_resync(&mut self) {
        self.calls.begin_resync();
        self.endpoints.connected();
    }

    /// Whether the AMI session should list the PJSIP contacts and trunks now (a contact
    /// appeared and waits for its expiry, or a trunk for its name).
    pub fn take_contacts_wanted(&mut self) -> bool {
        self.endpoints.take_list_wanted() | self.trunks.take_list_wanted()
    }

    /// A contact list asked for by the session is complete: from now on a new contact
    /// waits for the list that tells its expiry.
    pub fn contacts_listed(&mut self) {
        self.endpoints.lists_seen();
    }

    /// The connection ended: held starts, answered queue callers waiting for their
    /// AgentConnect, and the CDRs of calls that ended, go out now,
    /// since nothing more about them can come on it.
    pub fn flush_cdrs(&mut self, emit: &mut dyn FnMut(Body)) {
        self.held.get_mut().due(u64::MAX, emit);
        self.queues.connect_waited(u64::MAX, emit);
        self.calls.flush_cdrs(u64::MAX, emit);
    }

    /// The connection was lost. Calls stay live until the resync tells.
    pub fn connection_lost(&mut self) {
        self.calls.connection_lost();
    }

    /// About once a second: reports queue callers waiting past the SLA, and registrations
    /// whose contact list did not come in time.
    pub fn tick(&mut self, now: u64, emit: &mut dyn FnMut(Body)) {
        let stats = &mut self.stats;
        let mut emitted = 0;
        let watch = &mut self.watch;
        let mut out = |b| {
            emitted += watch.pass(b, now, emit);
        };
        self.held.get_mut().due(now, &mut out);
        self.calls.flush_cdrs(now, &mut out);
        self.endpoints.tick(now, stats, &mut out);
        self.queues.tick(now, self.cfg.queue_sla_secs, &mut out);
        self.stats.emitted += emitted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::frame::{Frame, Limits, Parser};

    /// Feeds AMI text (messages separated by blank lines, `\n` line ends) at `now` seconds.
    fn feed(n: &mut Normalizer, text: &str, now: u64) -> std::vec::Vec<Body> {
        let mut parser = Parser::new(Limits::default());
        parser.push(b"Asterisk Call Manager/11.0.0\r\n", &mut |_| {});
        let mut out = std::vec::Vec::new();
        parser.push(text.as_bytes(), &mut |f| {
            if let Ok(Frame::Message(m)) = f {
                n.handle(&m, now * 1_000_000, &mut |b| out.push(b));
            }
        });
        out
    }

    fn names(bodies: &[Body]) -> std::vec::Vec<std::string::String> {
        bodies
            .iter()
            .map(|b| format!("{}.{}", b.class().as_str(), b.name()))
            .collect()
    }

    fn newchannel(uid: &str, linked: &str, num: &str) -> std::string::String {
        format!("Event: Newchannel\nChannel: PJSIP/{num}-1\nCallerIDNum: {num}\nExten: 200\nUniqueid: {uid}\nLinkedid: {linked}\n\n")
    }

    fn listed(uid: &str, linked: &str, num: &str) -> std::string::String {
        format!("Event: CoreShowChannel\nChannel: PJSIP/{num}-1\nCallerIDNum: {num}\nExten: 200\nUniqueid: {uid}\nLinkedid: {linked}\nChannelState: 6\n\n")
    }

    const COMPLETE: &str = "Event: CoreShowChannelsComplete\nEventList: Complete\nListItems: 1\n\n";

    #[test]
    fn resync_keeps_announced_calls_without_duplicates() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        // Held for the dialplan's variables; the lost connection lets it out.
        assert!(feed(&mut n, &newchannel("1.1", "1.1", "101"), 1).is_empty());
        let mut out = std::vec::Vec::new();
        n.flush_cdrs(&mut |b| out.push(b));
        assert_eq!(names(&out), ["call.started"]);
        n.connection_lost();
        n.begin_resync();
        let resync = format!(
            "{}{}{COMPLETE}",
            listed("1.1", "1.1", "101"),
            listed("2.1", "2.1", "105")
        );
        // The known call is not started again; the one that began while we were away is.
        let out = feed(&mut n, &resync, 5);
        assert_eq!(names(&out), ["call.started"]);
        let Body::CallStarted(started) = &out[0] else {
            panic!()
        };
        assert_eq!(started.call_id, "2.1");
        let out = feed(&mut n, "Event: Hangup\nUniqueid: 1.1\nCause: 16\n\n", 9);
        assert_eq!(names(&out), ["call.ended"]);
    }

    #[test]
    fn a_call_two_periodic_lists_do_not_show_ends_untold_and_one_is_not_enough() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        let calls = newchannel("1.1", "1.1", "101") + &newchannel("2.1", "2.1", "102");
        feed(&mut n, &calls, 1);
        n.flush_cdrs(&mut |_| {});
        // Connected all along: these lists are the periodic ones. 1.1's Hangup comes
        // right after the first list that no longer shows it: an ordinary end.
        let first = listed("2.1", "2.1", "102") + COMPLETE;
        assert!(feed(&mut n, &first, 10).is_empty());
        let out = feed(&mut n, "Event: Hangup\nUniqueid: 1.1\nCause: 16\n\n", 10);
        assert_eq!(names(&out), ["call.ended"]);
        // 2.1's Hangup never comes: two lists without it end it.
        assert!(feed(&mut n, COMPLETE, 20).is_empty());
        let out = feed(&mut n, COMPLETE, 30);
        assert_eq!(names(&out), ["call.ended"]);
        let Body::CallEnded(ended) = &out[0] else {
            panic!()
        };
        assert_eq!(
            (ended.call_id.as_str(), ended.cause_name),
            ("2.1", calls::UNLISTED)
        );
        assert_eq!(n.live_calls(), 0);
    }

    #[test]
    fn ids_longer_than_their_field_still_make_one_call() {
        // The same call with short ids and with ids longer than any systemname makes
        // them: every long id is cut, and compared cut.
        let run = |sys: &str| {
            let (a, b) = (format!("{sys}1796415325.1"), format!("{sys}1796415325.2"));
            let mut n = Normalizer::new(NormalizeConfig::default());
            let mut out = names(&feed(
                &mut n,
                &(newchannel(&a, &a, "101") + &newchannel(&b, &a, "102")),
                1,
            ));
            let hangups = format!(
                "Event: Hangup\nUniqueid: {b}\nLinkedid: {a}\nCause: 16\n\n\
                 Event: Hangup\nUniqueid: {a}\nLinkedid: {a}\nCause: 16\n\n"
            );
            out.extend(names(&feed(&mut n, &hangups, 3)));
            (out, n.stats().truncated)
        };
        let (short, cut) = run("");
        assert_eq!(cut, 0);
        assert_eq!(short, ["call.started", "call.ended"]);
        let (long, cut) = run(&format!("{}-", "x".repeat(event::ID_LEN)));
        assert_eq!(long, short);
        assert!(cut > 0, "the cuts are counted");
    }

    #[test]
    fn a_start_waits_for_the_dialplans_x_variables_and_goes_out_before_its_call_moves_on() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        let var = |name: &str, value: &str| {
            format!("Event: VarSet\nChannel: PJSIP/101-1\nUniqueid: 1.1\nLinkedid: 1.1\nVariable: {name}\nValue: {value}\n\n")
        };
        let text = newchannel("1.1", "1.1", "101")
            + &var("X-Access-Key-Id", "AK1")
            + &var("__X-Call-Ref", "ref-7")
            + "Event: Hangup\nUniqueid: 1.1\nLinkedid: 1.1\nCause: 16\n\n";
        let out = feed(&mut n, &text, 1);
        assert_eq!(names(&out), ["call.started", "call.ended"]);
        let Body::CallStarted(started) = &out[0] else {
            panic!("{:?}", names(&out))
        };
        let headers: std::vec::Vec<_> = started.extra_headers.iter().collect();
        assert_eq!(
            headers,
            [("X-Access-Key-Id", "AK1"), ("X-Call-Ref", "ref-7")]
        );
        // A call whose dialplan says nothing for a second is announced then.
        assert!(feed(&mut n, &newchannel("2.1", "2.1", "103"), 10).is_empty());
        let mut out = std::vec::Vec::new();
        n.tick(10_999_999, &mut |b| out.push(b));
        assert!(out.is_empty());
        n.tick(11_000_000, &mut |b| out.push(b));
        assert_eq!(names(&out), ["call.started"]);
    }

    #[test]
    fn a_callees_x_variables_are_not_the_calls() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        let var = |ch: &str, uid: &str, value: &str| {
            format!("Event: VarSet\nChannel: {ch}\nUniqueid: {uid}\nLinkedid: 1.1\nVariable: X-Account\nValue: {value}\n\n")
        };
        // 102's leg announces its own X-Account (channelvars) and its dialplan sets one
        // (a predial hook); the call is 101's, with 101's.
        let text = newchannel("1.1", "1.1", "101")
            + &var("PJSIP/101-1", "1.1", "acct-101")
            + "Event: DialBegin\nChannel: PJSIP/101-1\nUniqueid: 1.1\nLinkedid: 1.1\nDestChannel: PJSIP/102-1\nDestUniqueid: 1.2\nDestCallerIDNum: 102\n\n"
            + "Event: Newchannel\nChannel: PJSIP/102-1\nCallerIDNum: 102\nExten: 102\nUniqueid: 1.2\nLinkedid: 1.1\nChanVariable(X-Account): acct-102\n\n"
            + &var("PJSIP/102-1", "1.2", "acct-102")
            + "Event: Hangup\nUniqueid: 1.2\nLinkedid: 1.1\nCause: 16\n\n"
            + "Event: Hangup\nUniqueid: 1.1\nLinkedid: 1.1\nCause: 16\n\n";
        let out = feed(&mut n, &text, 1);
        let headers = |b: &Body| -> std::vec::Vec<(std::string::String, std::string::String)> {
            let h = match b {
                Body::CallStarted(c) => &c.extra_headers,
                Body::CallEnded(c) => &c.extra_headers,
                _ => unreachable!(),
            };
            h.iter().map(|(k, v)| (k.into(), v.into())).collect()
        };
        let calls: std::vec::Vec<_> = out
            .iter()
            .filter(|b| matches!(b, Body::CallStarted(_) | Body::CallEnded(_)))
            .collect();
        assert_eq!(calls.len(), 2, "{:?}", names(&out));
        for b in calls {
            assert_eq!(headers(b), [("X-Account".into(), "acct-101".into())]);
        }
    }

    #[test]
    fn calls_that_vanished_while_disconnected_end_with_a_clear_cause() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        let dial = "Event: DialBegin\nChannel: PJSIP/101-1\nUniqueid: 1.1\nDestChannel: PJSIP/102-1\nDestUniqueid: 1.2\nDestCallerIDNum: 102\n\n";
        // A Local channel of the call is plumbing: it ends with it, untold.
        let local = "Event: Newchannel\nChannel: Local/5@ctx-1;2\nCallerIDNum: 5\nExten: 5\nUniqueid: 1.3\nLinkedid: 1.1\n\n";
        feed(
            &mut n,
            &(newchannel("1.1", "1.1", "101") + &newchannel("1.2", "1.1", "102") + dial + local),
            1,
        );
        // As the tap does when the connection ends.
        n.flush_cdrs(&mut |_| {});
        n.connection_lost();
        n.begin_resync();
        let out = feed(&mut n, COMPLETE, 30);
        assert_eq!(names(&out), ["target.ended", "call.ended"]);
        let Body::CallEnded(ended) = &out[1] else {
            panic!()
        };
        assert_eq!((ended.cause_name, ended.duration), (calls::VANISHED, 29));
        assert_eq!(n.live_calls(), 0);
        // Its hangup, should it still come, matches nothing and emits nothing.
        assert!(feed(&mut n, "Event: Hangup\nUniqueid: 1.1\nCause: 16\n\n", 31).is_empty());
        assert_eq!(n.stats().unmatched, 1);
    }

    #[test]
    fn tables_stay_at_capacity_under_a_flood_of_calls() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        let mut started = 0;
        for i in 0..100_000u64 {
            let uid = format!("{i}.0");
            started += feed(&mut n, &newchannel(&uid, &uid, "101"), i).len();
        }
        // A second apart: each start goes out, held a second, with the next call's.
        n.flush_cdrs(&mut |_| started += 1);
        assert_eq!(started, 100_000);
        assert_eq!(n.live_calls(), calls::MAX_CALLS);
        assert_eq!(n.stats().evicted as usize, 100_000 - calls::MAX_CALLS);
    }

    #[test]
    fn queue_sla_is_reported_once_and_abandon_once() {
        let mut n = Normalizer::new(NormalizeConfig {
            queue_sla_secs: 30,
            ..Default::default()
        });
        let join = "Event: QueueCallerJoin\nQueue: sales\nUniqueid: 7.1\nLinkedid: 7.1\nCallerIDNum: 555\nPosition: 1\n\n";
        assert_eq!(names(&feed(&mut n, join, 100)), ["queue.caller_joined"]);
        let mut out = std::vec::Vec::new();
        n.tick(110 * 1_000_000, &mut |b| out.push(b));
        assert!(out.is_empty());
        n.tick(131 * 1_000_000, &mut |b| out.push(b));
        n.tick(140 * 1_000_000, &mut |b| out.push(b));
        assert_eq!(names(&out), ["queue.sla_breached"]);
        let leave = "Event: QueueCallerAbandon\nQueue: sales\nUniqueid: 7.1\n\nEvent: QueueCallerLeave\nQueue: sales\nUniqueid: 7.1\n\n";
        let out = feed(&mut n, leave, 150);
        assert_eq!(names(&out), ["queue.caller_left"]);
        let Body::QueueCallerLeft(left) = &out[0] else {
            panic!()
        };
        assert_eq!((left.reason, left.waited), ("abandoned", 50));
    }

    #[test]
    fn the_queue_list_tells_what_changed_while_away_and_nothing_else() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        let member = |iface: &str, paused: &str, reason: &str| {
            format!("Event: QueueMember\nActionID: pbxtap-queues\nQueue: sales\nName: Agent\nLocation: {iface}\nStatus: 1\nPaused: {paused}\nPausedReason: {reason}\n\n")
        };
        let entry = "Event: QueueEntry\nQueue: sales\nPosition: 1\nUniqueid: 9.1\nCallerIDNum: 555\nWait: 12\n\n";
        let done = "Event: QueueStatusComplete\nEventList: Complete\n\n";
        let list = member("PJSIP/102", "1", "lunch") + &member("PJSIP/103", "0", "") + entry + done;
        let out = feed(&mut n, &list, 100);
        assert_eq!(
            names(&out),
            [
                "queue.agent_status",
                "queue.agent_status",
                "queue.caller_joined"
            ]
        );
        let Body::QueueAgentStatus(a) = &out[0] else {
            panic!()
        };
        assert_eq!(
            (a.state, a.paused, a.reason.as_str()),
            ("paused", true, "lunch")
        );
        // The same list again: nothing changed.
        assert!(feed(&mut n, &list, 110).is_empty());
        // 102 back from lunch; 103 and the caller gone.
        let out = feed(&mut n, &(member("PJSIP/102", "0", "") + done), 120);
        assert_eq!(
            names(&out),
            [
                "queue.agent_status",
                "queue.agent_status",
                "queue.caller_left"
            ]
        );
        let states: std::vec::Vec<_> = out
            .iter()
            .filter_map(|b| match b {
                Body::QueueAgentStatus(a) => Some((a.agent.as_str(), a.state)),
                _ => None,
            })
            .collect();
        assert_eq!(states, [("PJSIP/102", "ready"), ("PJSIP/103", "removed")]);
        let Body::QueueCallerLeft(left) = &out[2] else {
            panic!()
        };
        // It joined 12 s before the first list.
        assert_eq!(
            (left.reason, left.waited, left.call_id.as_str()),
            ("left", 32, "9.1")
        );
    }

    #[test]
    fn a_queue_callers_wait_is_asterisks_hold_time_once_an_agent_took_it() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        // A replay: every message at the same instant, so pbxtap's own clock says 0.
        let text = "Event: QueueCallerJoin\nQueue: sales\nUniqueid: 7.1\nLinkedid: 7.1\nCallerIDNum: 555\nPosition: 1\n\n\
                    Event: AgentConnect\nQueue: sales\nUniqueid: 7.1\nLinkedid: 7.1\nHoldTime: 8\nRingTime: 2\n\n\
                    Event: QueueCallerLeave\nQueue: sales\nUniqueid: 7.1\nLinkedid: 7.1\n\n";
        let out = feed(&mut n, text, 100);
        let Some(Body::QueueCallerLeft(left)) = out.last() else {
            panic!("{:?}", names(&out))
        };
        assert_eq!(left.waited, 8);
    }

    #[test]
    fn an_answered_queue_caller_waits_a_second_for_the_agentconnect_then_goes_by_our_clock() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        let text = "Event: Newchannel\nChannel: PJSIP/101-1\nCallerIDNum: 101\nExten: 8001\nUniqueid: 7.1\nLinkedid: 7.1\n\n\
            Event: QueueCallerJoin\nQueue: sales\nUniqueid: 7.1\nLinkedid: 7.1\nCallerIDNum: 101\nPosition: 1\n\n";
        feed(&mut n, text, 100);
        let answer = "Event: Newchannel\nChannel: PJSIP/102-2\nCallerIDNum: 102\nUniqueid: 7.2\nLinkedid: 7.1\n\n\
            Event: DialBegin\nChannel: PJSIP/101-1\nUniqueid: 7.1\nDestChannel: PJSIP/102-2\nDestUniqueid: 7.2\nDestCallerIDNum: 102\n\n\
            Event: DialEnd\nChannel: PJSIP/101-1\nUniqueid: 7.1\nDestChannel: PJSIP/102-2\nDestUniqueid: 7.2\nDialStatus: ANSWER\n\n\
            Event: QueueCallerLeave\nQueue: sales\nUniqueid: 7.1\nLinkedid: 7.1\n\n";
        let out = feed(&mut n, answer, 107);
        assert!(
            !names(&out).contains(&"queue.caller_left".into()),
            "{:?}",
            names(&out)
        );
        let mut out = std::vec::Vec::new();
        n.tick(107_999_999, &mut |b| out.push(b));
        assert!(out.is_empty());
        // No AgentConnect (the agent class not read): pbxtap's own count, join to leave.
        n.tick(108_000_000, &mut |b| out.push(b));
        let [Body::QueueCallerLeft(left)] = &out[..] else {
            panic!("{:?}", names(&out))
        };
        assert_eq!((left.reason, left.waited), ("answered", 7));
    }

    /// A call from 101 through `Local/102@ext` to PJSIP/102, its messages in `order`.
    fn local_call(order: &[usize]) -> std::vec::Vec<std::string::String> {
        let msgs = [
            "Event: Newchannel\nChannel: PJSIP/101-1\nCallerIDNum: 101\nExten: 5102\nUniqueid: 1.0\nLinkedid: 1.0\n\n",
            "Event: Newchannel\nChannel: Local/102@ext-1;1\nExten: 102\nUniqueid: 1.1\nLinkedid: 1.0\n\n",
            "Event: Newchannel\nChannel: Local/102@ext-1;2\nExten: 102\nUniqueid: 1.2\nLinkedid: 1.0\n\n",
            "Event: DialBegin\nChannel: PJSIP/101-1\nUniqueid: 1.0\nDestChannel: Local/102@ext-1;1\nDestUniqueid: 1.1\nDestCallerIDNum: 5102\nDialString: 102@ext\n\n",
            "Event: Newchannel\nChannel: PJSIP/102-2\nCallerIDNum: 102\nExten: s\nUniqueid: 1.3\nLinkedid: 1.0\n\n",
            "Event: DialBegin\nChannel: Local/102@ext-1;2\nUniqueid: 1.2\nDestChannel: PJSIP/102-2\nDestUniqueid: 1.3\nDestCallerIDNum: 102\nDialString: 102\n\n",
            "Event: Newstate\nChannel: PJSIP/102-2\nChannelState: 5\nUniqueid: 1.3\n\n",
            "Event: Newstate\nChannel: PJSIP/102-2\nChannelState: 6\nUniqueid: 1.3\n\n",
            "Event: DialEnd\nChannel: Local/102@ext-1;2\nUniqueid: 1.2\nDestChannel: PJSIP/102-2\nDestUniqueid: 1.3\nDialStatus: ANSWER\n\n",
            "Event: Newstate\nChannel: Local/102@ext-1;1\nChannelState: 6\nUniqueid: 1.1\n\n",
            "Event: DialEnd\nChannel: PJSIP/101-1\nUniqueid: 1.0\nDestChannel: Local/102@ext-1;1\nDestUniqueid: 1.1\nDialStatus: ANSWER\n\n",
            "Event: Newstate\nChannel: PJSIP/101-1\nChannelState: 6\nUniqueid: 1.0\n\n",
            "Event: Hangup\nChannel: Local/102@ext-1;2\nUniqueid: 1.2\nCause: 16\n\n",
            "Event: Hangup\nChannel: Local/102@ext-1;1\nUniqueid: 1.1\nCause: 16\n\n",
            "Event: Hangup\nChannel: PJSIP/101-1\nUniqueid: 1.0\nCause: 16\n\n",
            "Event: Hangup\nChannel: PJSIP/102-2\nUniqueid: 1.3\nCause: 16\n\n",
        ];
        let mut n = Normalizer::new(NormalizeConfig::default());
        let text: std::string::String = order.iter().map(|&i| msgs[i]).collect();
        let out = feed(&mut n, &text, 1);
        out.iter()
            .map(|b| match b {
                Body::CallAnswered(a) | Body::CallRinging(a) | Body::CallRouted(a) => {
                    format!(
                        "{}.{} {} {}",
                        b.class().as_str(),
                        b.name(),
                        a.target,
                        a.channel
                    )
                }
                Body::TargetAdded(t) | Body::TargetRinging(t) | Body::TargetEnded(t) => {
                    format!(
                        "{}.{} {} {}",
                        b.class().as_str(),
                        b.name(),
                        t.target,
                        t.contact
                    )
                }
                Body::CallEnded(e) => format!(
                    "call.ended answered={} pbx_answered={}",
                    e.answered, e.pbx_answered
                ),
                b => format!("{}.{}", b.class().as_str(), b.name()),
            })
            .collect()
    }

    #[test]
    fn a_local_channel_is_plumbing_whatever_order_its_threads_report_in() {
        let want = [
            "call.started",
            "call.routed 102 PJSIP/102-2",
            "target.added 102 PJSIP/102-2",
            "target.ringing 102 PJSIP/102-2",
            "call.ringing 102 PJSIP/102-2",
            "call.answered 102 PJSIP/102-2",
        ];
        assert_eq!(local_call(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), want);
        // Ringing before its DialBegin (another thread), the phone's Up after its DialEnd,
        // the `;1` up before the `;2`'s dial is told.
        assert_eq!(local_call(&[0, 1, 2, 3, 4, 6, 5, 8, 7, 9, 10]), want);
        assert_eq!(local_call(&[0, 1, 2, 3, 4, 6, 5, 9, 8, 7, 10]), want);
    }

    #[test]
    fn a_local_channel_the_dialplan_answers_itself_is_the_pbx_picking_up_told_as_its_extension() {
        // Its `;2` dials no one (voicemail, an IVR, an announcement) and answers: no party
        // answered; a target with its extension and no contact.
        assert_eq!(
            local_call(&[0, 1, 2, 3, 9, 10, 11, 12, 13, 14]),
            [
                "call.started",
                "target.added 102 ",
                "target.ended 102 ",
                "call.ended answered=false pbx_answered=true"
            ]
        );
        // Answered by a party behind it, the same call is not the PBX's.
        assert_eq!(
            local_call(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 14])[5..],
            [
                "call.answered 102 PJSIP/102-2",
                "target.ended 102 PJSIP/102-2",
                "call.ended answered=true pbx_answered=false"
            ]
        );
    }

    #[test]
    fn an_answer_behind_a_local_channel_that_never_reaches_the_caller_is_not_the_calls() {
        // The party answers, but the `;1` never comes up (declined at a prompt), and the
        // caller's dial of it ends NOANSWER: no call.answered, and the call ends unanswered.
        let out = local_call(&[0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(
            !out.iter().any(|e| e.starts_with("call.answered")),
            "{out:?}"
        );
        let mut n = Normalizer::new(NormalizeConfig::default());
        let text = "Event: Newchannel\nChannel: PJSIP/101-1\nCallerIDNum: 101\nExten: 5102\nUniqueid: 1.0\nLinkedid: 1.0\n\n\
            Event: Newchannel\nChannel: Local/0155@fm-1;1\nExten: 0155\nUniqueid: 1.1\nLinkedid: 1.0\n\n\
            Event: Newchannel\nChannel: Local/0155@fm-1;2\nExten: 0155\nUniqueid: 1.2\nLinkedid: 1.0\n\n\
            Event: DialBegin\nChannel: PJSIP/101-1\nUniqueid: 1.0\nDestChannel: Local/0155@fm-1;1\nDestUniqueid: 1.1\n\n\
            Event: Newchannel\nChannel: PJSIP/carrier-2\nExten: s\nUniqueid: 1.3\nLinkedid: 1.0\n\n\
            Event: DialBegin\nChannel: Local/0155@fm-1;2\nUniqueid: 1.2\nDestChannel: PJSIP/carrier-2\nDestUniqueid: 1.3\nDestCallerIDNum: 0155\n\n\
            Event: Newstate\nChannel: PJSIP/carrier-2\nChannelState: 6\nUniqueid: 1.3\n\n\
            Event: DialEnd\nChannel: Local/0155@fm-1;2\nUniqueid: 1.2\nDestChannel: PJSIP/carrier-2\nDestUniqueid: 1.3\nDialStatus: ABORT\n\n\
            Event: Hangup\nChannel: PJSIP/carrier-2\nUniqueid: 1.3\nCause: 16\n\n\
            Event: DialEnd\nChannel: PJSIP/101-1\nUniqueid: 1.0\nDestChannel: Local/0155@fm-1;1\nDestUniqueid: 1.1\nDialStatus: NOANSWER\n\n\
            Event: Hangup\nChannel: Local/0155@fm-1;1\nUniqueid: 1.1\nCause: 16\n\n\
            Event: Hangup\nChannel: Local/0155@fm-1;2\nUniqueid: 1.2\nCause: 16\n\n\
            Event: Hangup\nChannel: PJSIP/101-1\nUniqueid: 1.0\nCause: 16\n\n";
        let bodies = feed(&mut n, text, 1);
        assert_eq!(
            names(&bodies),
            [
                "call.started",
                "call.routed",
                "target.added",
                "target.ended",
                "call.noanswer",
                "call.ended"
            ]
        );
        let Some(Body::CallEnded(end)) = bodies.last() else {
            panic!()
        };
        assert_eq!((end.answered, end.cause, end.sip_code), (false, 19, 480));
    }

    #[test]
    fn an_originate_whose_phone_never_answers_is_held_then_told_with_no_destination() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        let text = "Event: Newchannel\nChannel: PJSIP/102-1\nCallerIDNum: 102\nExten: s\nUniqueid: 1.0\nLinkedid: 1.0\n\n\
            Event: DialBegin\nDestChannel: PJSIP/102-1\nDestUniqueid: 1.0\nDestCallerIDNum: 102\nDialString: 102\n\n\
            Event: Newstate\nChannel: PJSIP/102-1\nChannelState: 5\nUniqueid: 1.0\n\n";
        // The phone rings: the start waits for where the call goes, past the usual second.
        assert!(feed(&mut n, text, 1).is_empty());
        let mut out = std::vec::Vec::new();
        n.tick(20_000_000, &mut |b| out.push(b));
        assert!(out.is_empty(), "{:?}", names(&out));
        // Originate's timeout: the phone's channel hangs up unanswered.
        let end =
            "Event: DialEnd\nDestChannel: PJSIP/102-1\nDestUniqueid: 1.0\nDialStatus: NOANSWER\n\n\
            Event: Hangup\nChannel: PJSIP/102-1\nUniqueid: 1.0\nCause: 19\n\n";
        let out = feed(&mut n, end, 31);
        assert_eq!(names(&out), ["call.started", "call.failed", "call.ended"]);
        let (Body::CallStarted(start), Some(Body::CallEnded(ended))) = (&out[0], out.last()) else {
            panic!()
        };
        assert_eq!((start.from.as_str(), start.to.as_str()), ("102", ""));
        assert_eq!((ended.answered, ended.cause), (false, 19));
    }

    #[test]
    fn local_channels_that_dial_each_other_in_a_ring_do_not_loop() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        let ch = |name: &str, uid: &str| {
            format!(
                "Event: Newchannel\nChannel: {name}\nExten: 1\nUniqueid: {uid}\nLinkedid: 1.0\n\n"
            )
        };
        let dial = |from: &str, to: &str| {
            format!("Event: DialBegin\nChannel: x\nUniqueid: {from}\nDestChannel: y\nDestUniqueid: {to}\n\n")
        };
        let up = |uid: &str| {
            format!("Event: Newstate\nChannel: z\nChannelState: 6\nUniqueid: {uid}\n\n")
        };
        let text = ch("PJSIP/101-1", "1.0")
            + &ch("Local/a@x-1;1", "1.1")
            + &ch("Local/a@x-1;2", "1.2")
            + &ch("Local/b@x-2;1", "1.3")
            + &ch("Local/b@x-2;2", "1.4")
            + &ch("PJSIP/102-2", "1.5")
            + &dial("1.2", "1.3")
            + &dial("1.4", "1.1")
            + &dial("1.4", "1.5")
            + &up("1.1")
            + &up("1.3")
            + &up("1.5");
        let out = names(&feed(&mut n, &text, 1));
        assert!(!out.iter().any(|e| e == "call.answered"), "{out:?}");
    }

    #[test]
    fn unknown_and_uninteresting_events_are_counted_not_errors() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        let out = feed(&mut n, "Event: VarSet\nVariable: RTPAUDIOQOS\nValue: x\n\nEvent: BrandNewEvent\nFoo: bar\n\nResponse: Success\n\n", 1);
        assert!(out.is_empty());
        assert_eq!((n.stats().messages, n.stats().ignored), (3, 3));
    }

    #[test]
    fn chan_sip_peer_status_registers_and_pjsip_peer_status_is_left_out() {
        let mut n = Normalizer::new(NormalizeConfig::default());
        let text = "Event: PeerStatus\nChannelType: SIP\nPeer: SIP/alice\nPeerStatus: Registered\nAddress: 10.0.0.5:5060\n\n\
                    Event: PeerStatus\nChannelType: PJSIP\nPeer: PJSIP/101\nPeerStatus: Reachable\n\n\
                    Event: PeerStatus\nChannelType: SIP\nPeer: SIP/alice\nPeerStatus: Unregistered\n\n";
        let out = feed(&mut n, text, 1);
        assert_eq!(
            names(&out),
            ["endpoint.registered", "endpoint.unregistered"]
        );
        let Body::EndpointRegistered(r) = &out[0] else {
            panic!()
        };
        assert_eq!((r.aor.as_str(), r.technology), ("alice", "SIP"));
    }
}
