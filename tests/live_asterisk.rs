//! The live suite: a real Asterisk (`tests/common/pbx.rs`, configs in `tests/pbx/`), the
//! real `pbxtap run` against its AMI, real SIP calls placed with SIPp, and the exact
//! sequence of normalized events a consumer reads, with the fields it reads.
//!
//! Each test boots its own Asterisk on its own ports, so tests run in parallel. Every wait
//! is for an event, with a deadline. After a scenario a fence (phone 105 registers and
//! unregisters) proves every event of the scenario arrived: Asterisk sends its events in
//! order, so once the fence's `endpoint.unregistered` is out, nothing of the call is left.
//!
//! Run: `scripts/test-live.sh` (sets `PBXTAP_ASTERISK_PREFIX` to the lab's Asterisk).

mod common;

use std::time::Duration;

use common::daemon::Daemon;
use common::pbx::Pbx;
use serde_json::Value;

/// Longest any event is waited for.
const WAIT: Duration = Duration::from_secs(40);
/// The phone used as the end-of-scenario fence.
const FENCE: u16 = 105;

/// The real pbxtap, its stdout sink collected, logged in to `pbx`.
struct Tap {
    daemon: Daemon,
}

impl Tap {
    fn start(pbx: &Pbx) -> Tap {
        Tap::start_with(pbx, "")
    }

    /// With `extra` TOML appended to the config.
    fn start_with(pbx: &Pbx, extra: &str) -> Tap {
        let config = format!(
            "host = \"lab\"\n{}[watchdog]\nenabled = false\n[[sinks]]\ntype = \"stdout\"\n{extra}",
            pbx.ami_toml()
        );
        let daemon = Daemon::start(&config, &[], true);
        daemon.wait_line(WAIT, |l| l.contains("\"event\":\"ami_connected\""));
        Tap { daemon }
    }

    fn events(&self) -> Vec<Value> {
        self.daemon
            .stdout_lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Waits until an event satisfies `pred`; returns every event so far.
    fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        common::wait_until(what, WAIT, || {
            out = self.events();
            out.iter().any(&pred)
        });
        out
    }

    /// Registers and unregisters the fence phone, and waits for its removal: every event
    /// Asterisk sent before it has then reached the stdout sink.
    fn fence(&self, pbx: &Pbx) -> Vec<Value> {
        let tag = format!("fence{}", self.events().len());
        pbx.register(FENCE, 60, &tag);
        pbx.register(FENCE, 0, &tag);
        self.wait_for("the fence phone's unregistration", |e| {
            name(e) == "endpoint.unregistered" && e["aor"] == FENCE.to_string()
        })
    }
}

fn name(e: &Value) -> String {
    format!(
        "{}.{}",
        e["class"].as_str().unwrap_or("?"),
        e["event"].as_str().unwrap_or("?")
    )
}

/// The fields a consumer reads of each event, as `key=value` after its name.
fn shown(e: &Value) -> String {
    let n = name(e);
    let fields: &[&str] = match n.as_str() {
        "call.started" => &["from", "to", "direction"],
        "call.ringing" | "call.answered" | "call.noanswer" | "call.rerouted" => &["target"],
        "call.failed" => &["target", "cause", "cause_name", "sip_code"],
        "call.ended" => &["from", "to", "cause", "cause_name", "sip_code", "answered"],
        "call.held" | "call.unheld" => &["aor", "peer_aor"],
        "call.cdr" => &["source", "destination", "disposition"],
        "target.added" | "target.ringing" => &["target"],
        "target.noanswer" | "target.failed" | "target.ended" => {
            &["target", "cause", "cause_name", "sip_code"]
        }
        "endpoint.registered" | "endpoint.unregistered" => {
            &["aor", "contact", "expires", "user_agent"]
        }
        "queue.caller_joined" => &["queue", "caller"],
        "queue.caller_left" => &["queue", "caller", "reason", "waited"],
        "queue.sla_breached" => &["queue", "caller", "waited"],
        _ => &[],
    };
    let mut out = n;
    for f in fields {
        let v = &e[*f];
        let v = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        out.push_str(&format!(" {f}={v}"));
    }
    out
}

/// The call and target events of the call `call_id`, shown.
fn of_call(events: &[Value], call_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| matches!(e["class"].as_str(), Some("call" | "target")))
        .filter(|e| e["call_id"] == call_id)
        .map(shown)
        .collect()
}

/// The `call_id` of the first call started from `from`.
fn call_from(events: &[Value], from: &str) -> String {
    events
        .iter()
        .find(|e| name(e) == "call.started" && e["from"] == from)
        .and_then(|e| e["call_id"].as_str())
        .unwrap_or_else(|| panic!("no call.started from {from} in {events:#?}"))
        .to_string()
}

/// The `call.ended` of `call_id`.
fn ended<'a>(events: &'a [Value], call_id: &str) -> &'a Value {
    events
        .iter()
        .find(|e| name(e) == "call.ended" && e["call_id"] == call_id)
        .unwrap_or_else(|| panic!("no call.ended for {call_id}"))
}

fn assert_seq(got: &[String], want: &[&str]) {
    assert_eq!(
        got,
        want,
        "\ngot:\n  {}\nwant:\n  {}",
        got.join("\n  "),
        want.join("\n  ")
    );
}

/// 101 calls `dial` with `uac_call` (hanging up after `talk_ms`, or waiting for BYE at 0),
/// while 102 answers by `callee`; returns every event once the fence is out.
fn one_call(
    pbx: &Pbx,
    tap: &Tap,
    dial: &str,
    talk_ms: &str,
    callee: (String, &[(&str, &str)]),
) -> Vec<Value> {
    pbx.register(102, 120, "c102");
    let uas = pbx.callee(102, &callee.0, callee.1);
    let uac = pbx.caller(101, dial, "uac_call", &[("talk_ms", talk_ms)]);
    let _ = uac.wait();
    let _ = uas.wait();
    pbx.register(102, 0, "c102");
    tap.fence(pbx)
}

/// The registration events of `aor`, shown.
fn registrations(events: &[Value], aor: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["class"] == "endpoint" && e["aor"] == aor && name(e) != "endpoint.presence")
        .map(shown)
        .collect()
}

#[test]
fn a_registration_its_refresh_and_its_removal_each_say_so_with_the_real_expiry() {
    let pbx =
        Pbx::start("a_registration_its_refresh_and_its_removal_each_say_so_with_the_real_expiry");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "r1");
    tap.wait_for("the registration", |e| {
        name(e) == "endpoint.registered" && e["aor"] == "102"
    });
    // The same contact again, as a phone refreshing its registration (with a longer
    // expiry: Asterisk's expiration time has one-second steps). Asterisk sends no event for
    // a refresh; pbxtap sees it in the contact list it asks for every contacts_poll_secs.
    pbx.register(102, 300, "r1");
    tap.wait_for("the refresh", |e| {
        name(e) == "endpoint.registered" && e["aor"] == "102" && e["expires"].as_u64() > Some(200)
    });
    pbx.register(102, 0, "r1");
    let events = tap.fence(&pbx);
    let got = registrations(&events, "102");
    let contact = format!("sip:102@127.0.0.1:{};regid=r1", pbx.phone_port(102));
    let expires = |line: &str| -> u64 {
        let v = line
            .split(" expires=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        v.parse().unwrap()
    };
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].starts_with(&format!("endpoint.registered aor=102 contact={contact} ")),
        "{got:#?}"
    );
    assert!((110..=120).contains(&expires(&got[0])), "{got:#?}");
    assert!(got[0].ends_with(" user_agent=SIPp-lab"), "{got:#?}");
    assert!(
        got[1].starts_with(&format!("endpoint.registered aor=102 contact={contact} ")),
        "{got:#?}"
    );
    assert!((290..=300).contains(&expires(&got[1])), "{got:#?}");
    assert_eq!(
        got[2],
        format!("endpoint.unregistered aor=102 contact={contact} expires=0 user_agent=")
    );
}

#[test]
fn a_call_answered_and_hung_up_by_the_caller() {
    let pbx = Pbx::start("a_call_answered_and_hung_up_by_the_caller");
    let tap = Tap::start(&pbx);
    let events = one_call(
        &pbx,
        &tap,
        "102",
        "2000",
        ("uas_answer".into(), &[("ring_ms", "500"), ("talk_ms", "0")]),
    );
    let call = call_from(&events, "101");
    assert_seq(
        &of_call(&events, &call),
        &[
            "call.started from=101 to=102 direction=internal",
            "target.added target=102",
            "target.ringing target=102",
            "call.ringing target=102",
            "call.answered target=102",
            "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
            "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
            "call.cdr source=101 destination=102 disposition=ANSWERED",
        ],
    );
    let end = ended(&events, &call);
    assert!(end["duration"].as_u64().unwrap() >= 2, "{end}");
    assert!((1..=4).contains(&end["billsec"].as_u64().unwrap()), "{end}");
}

#[test]
fn a_call_answered_and_hung_up_by_the_callee() {
    let pbx = Pbx::start("a_call_answered_and_hung_up_by_the_callee");
    let tap = Tap::start(&pbx);
    let events = one_call(
        &pbx,
        &tap,
        "102",
        "0",
        (
            "uas_answer".into(),
            &[("ring_ms", "500"), ("talk_ms", "2000")],
        ),
    );
    let call = call_from(&events, "101");
    assert_seq(
        &of_call(&events, &call),
        &[
            "call.started from=101 to=102 direction=internal",
            "target.added target=102",
            "target.ringing target=102",
            "call.ringing target=102",
            "call.answered target=102",
            "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
            "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
            "call.cdr source=101 destination=102 disposition=ANSWERED",
        ],
    );
}

/// A callee that answers `code`: the call fails with the cause Asterisk maps the SIP code
/// to (its `Cause`, with the code itself as `TechCause`), though Asterisk's DialStatus and
/// CDR say NOANSWER for every refusal but 486. `call.cdr` is Asterisk's record as sent.
fn rejected(code: &str, want_cause: &str, dial_disposition: &str) {
    let pbx = Pbx::start(&format!("rejected_{code}"));
    let tap = Tap::start(&pbx);
    let events = one_call(
        &pbx,
        &tap,
        "102",
        "0",
        (
            match code {
                "486" => "uas_busy".into(),
                _ => format!("uas_reject_{code}"),
            },
            &[("ring_ms", "300")],
        ),
    );
    let call = call_from(&events, "101");
    assert_seq(
        &of_call(&events, &call),
        &[
            "call.started from=101 to=102 direction=internal",
            "target.added target=102",
            "target.ringing target=102",
            "call.ringing target=102",
            &format!("target.failed target=102 {want_cause} sip_code={code}"),
            &format!("call.failed target=102 {want_cause} sip_code={code}"),
            &format!("target.ended target=102 {want_cause} sip_code={code}"),
            &format!("call.ended from=101 to=102 {want_cause} sip_code={code} answered=false"),
            &format!("call.cdr source=101 destination=102 disposition={dial_disposition}"),
        ],
    );
}

#[test]
fn a_busy_callee_486_fails_the_call_as_user_busy() {
    rejected("486", "cause=17 cause_name=USER_BUSY", "BUSY");
}

#[test]
fn a_callee_not_found_404_fails_the_call_as_unallocated() {
    rejected("404", "cause=1 cause_name=UNALLOCATED", "NO ANSWER");
}

#[test]
fn a_declined_call_603_fails_as_call_rejected() {
    rejected("603", "cause=21 cause_name=CALL_REJECTED", "NO ANSWER");
}

#[test]
fn an_unavailable_callee_480_fails_as_no_answer_as_asterisk_maps_it() {
    rejected("480", "cause=19 cause_name=NO_ANSWER", "NO ANSWER");
}

#[test]
fn a_caller_who_cancels_while_it_rings_ends_the_call_normally() {
    let pbx = Pbx::start("a_caller_who_cancels_while_it_rings_ends_the_call_normally");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "c102");
    let uas = pbx.callee(102, "uas_ring", &[]);
    let uac = pbx.caller(101, "102", "uac_cancel", &[("cancel_ms", "1500")]);
    uac.passed();
    let _ = uas.wait();
    pbx.register(102, 0, "c102");
    let events = tap.fence(&pbx);
    let call = call_from(&events, "101");
    assert_seq(
        &of_call(&events, &call),
        &[
            "call.started from=101 to=102 direction=internal",
            "target.added target=102",
            "target.ringing target=102",
            "call.ringing target=102",
            "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=487",
            "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=487 answered=false",
            "call.cdr source=101 destination=102 disposition=NO ANSWER",
        ],
    );
}

#[test]
fn a_call_nobody_answers_ends_at_the_dial_timeout_as_no_answer() {
    let pbx = Pbx::start("a_call_nobody_answers_ends_at_the_dial_timeout_as_no_answer");
    let tap = Tap::start(&pbx);
    let events = one_call(&pbx, &tap, "402", "0", ("uas_ring".into(), &[]));
    let call = call_from(&events, "101");
    assert_seq(
        &of_call(&events, &call),
        &[
            "call.started from=101 to=402 direction=internal",
            "target.added target=102",
            "target.ringing target=102",
            "call.ringing target=102",
            // sip_code: what the caller is told for a no-answer (480, RFC 3398).
            "target.noanswer target=102 cause=19 cause_name=NO_ANSWER sip_code=480",
            "call.noanswer target=102",
            "target.ended target=102 cause=19 cause_name=NO_ANSWER sip_code=480",
            "call.ended from=101 to=402 cause=19 cause_name=NO_ANSWER sip_code=480 answered=false",
            "call.cdr source=101 destination=402 disposition=NO ANSWER",
        ],
    );
}
