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
use common::live::{done, ended, Tap, WAIT};
use common::pbx::Pbx;
use common::scenarios;
use common::sequence::{
    assert_channel, assert_seq, call_from, name, of_call, of_call_all, shown, split_leg, split_legs,
};
use serde_json::Value;

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
    done(pbx, tap, &[(102, "c102")])
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
    let events = done(&pbx, &tap, &[(102, "r1")]);
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
    // Seen up to contacts_poll_secs (10) after the refresh, counted down since.
    assert!((275..=300).contains(&expires(&got[1])), "{got:#?}");
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
        scenarios::ANSWERED_CALLER_HANGS_UP,
    );
    let end = ended(&events, &call);
    assert!(end["duration"].as_u64().unwrap() >= 2, "{end}");
    assert!((1..=4).contains(&end["billsec"].as_u64().unwrap()), "{end}");
    assert_eq!(end["hangup_by"], "caller", "{end}");
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
        scenarios::ANSWERED_CALLEE_HANGS_UP,
    );
    let end = ended(&events, &call);
    assert_eq!(end["hangup_by"], "callee", "{end}");
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
    let want = scenarios::rejected(code, want_cause, dial_disposition);
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    assert_seq(&of_call(&events, &call), &want);
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
    let events = done(&pbx, &tap, &[(102, "c102")]);
    let call = call_from(&events, "101");
    assert_seq(&of_call(&events, &call), scenarios::CALLER_CANCELS);
    let end = ended(&events, &call);
    assert_eq!(
        (end["hangup_by"].as_str(), end["sip_code"].as_u64()),
        (Some("caller"), Some(487)),
        "{end}"
    );
}

#[test]
fn a_call_nobody_answers_ends_at_the_dial_timeout_as_no_answer() {
    let pbx = Pbx::start("a_call_nobody_answers_ends_at_the_dial_timeout_as_no_answer");
    let tap = Tap::start(&pbx);
    let events = one_call(&pbx, &tap, "402", "0", ("uas_ring".into(), &[]));
    let call = call_from(&events, "101");
    assert_seq(&of_call(&events, &call), scenarios::NO_ANSWER);
}

#[test]
fn a_ring_group_where_one_of_two_phones_answers() {
    let pbx = Pbx::start("a_ring_group_where_one_of_two_phones_answers");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "g102");
    pbx.register(103, 120, "g103");
    let ringer = pbx.callee(102, "uas_ring", &[]);
    let answerer = pbx.callee(103, "uas_answer", &[("ring_ms", "1500"), ("talk_ms", "0")]);
    pbx.caller(101, "600", "uac_call", &[("talk_ms", "2000")])
        .passed();
    let _ = (ringer.wait(), answerer.wait());
    let events = done(&pbx, &tap, &[(102, "g102"), (103, "g103")]);
    let call = call_from(&events, "101");
    let (rest, legs) = split_legs(of_call_all(&events, &call), &["102", "103"]);
    assert_seq(&legs[0], scenarios::RING_GROUP_LOSER);
    assert_seq(&legs[1], scenarios::RING_GROUP_WINNER);
    assert_seq(&rest, scenarios::RING_GROUP);
}

#[test]
fn a_queue_call_answered_after_a_wait() {
    let pbx = Pbx::start("a_queue_call_answered_after_a_wait");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "q102");
    pbx.register(103, 120, "q103");
    let answerer = pbx.callee(102, "uas_answer", &[("ring_ms", "3000"), ("talk_ms", "0")]);
    let ringer = pbx.callee(103, "uas_ring", &[]);
    pbx.caller(101, "8001", "uac_call", &[("talk_ms", "6000")])
        .passed();
    let _ = (ringer.wait(), answerer.wait());
    let events = done(&pbx, &tap, &[(102, "q102"), (103, "q103")]);
    let call = call_from(&events, "101");
    let (rest, legs) = split_legs(of_call_all(&events, &call), &["103", "102"]);
    assert_seq(&legs[0], scenarios::QUEUE_LOSER);
    assert_seq(&legs[1], scenarios::QUEUE_WINNER);
    assert_seq(&rest, scenarios::QUEUE_ANSWERED);
}

#[test]
fn a_queue_caller_who_gives_up_and_one_past_the_sla() {
    let pbx = Pbx::start("a_queue_caller_who_gives_up_and_one_past_the_sla");
    let tap = Tap::start_with(&pbx, "[normalize]\nqueue_sla_secs = 2\n");
    pbx.register(102, 120, "a102");
    let ringer = pbx.callee(102, "uas_ring", &[]);
    pbx.caller(101, "8001", "uac_call", &[("talk_ms", "4000")])
        .passed();
    let _ = ringer.wait();
    let events = done(&pbx, &tap, &[(102, "a102")]);
    let call = call_from(&events, "101");
    // The ringing member is cancelled as the caller leaves: concurrent with the rest.
    let (rest, member) = split_leg(of_call_all(&events, &call), "102");
    assert_seq(&member, scenarios::QUEUE_ABANDON_MEMBER);
    assert_seq(&rest, scenarios::QUEUE_ABANDON);
    let left = events
        .iter()
        .find(|e| name(e) == "queue.caller_left" && e["call_id"] == call)
        .unwrap();
    // The caller hung up 4 s after the queue answered it: Asterisk's HoldTime, not 0.
    assert!(
        (3..=5).contains(&left["waited"].as_u64().unwrap()),
        "{left}"
    );
}

#[test]
fn a_blind_transfer_by_refer() {
    let pbx = Pbx::start("a_blind_transfer_by_refer");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "b102");
    pbx.register(103, 120, "b103");
    let transferor = pbx.referrer(102, "500", "1500", "103");
    let target = pbx.callee(
        103,
        "uas_answer",
        &[("ring_ms", "1000"), ("talk_ms", "2000")],
    );
    pbx.caller(101, "102", "uac_call", &[("talk_ms", "0")])
        .passed();
    let _ = (transferor.wait(), target.wait());
    let events = done(&pbx, &tap, &[(102, "b102"), (103, "b103")]);
    let call = call_from(&events, "101");
    let (rest, transferor) = split_leg(of_call_all(&events, &call), "102");
    assert_seq(&transferor, scenarios::BLIND_TRANSFER_TRANSFEROR);
    assert_seq(&rest, scenarios::BLIND_TRANSFER);
}

#[test]
fn hold_and_unhold_by_re_invite() {
    let pbx = Pbx::start("hold_and_unhold_by_re_invite");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "h102");
    let uas = pbx.callee(102, "uas_answer", &[("ring_ms", "500"), ("talk_ms", "0")]);
    pbx.caller(
        101,
        "102",
        "uac_hold",
        &[("talk_ms", "1000"), ("hold_ms", "1500")],
    )
    .passed();
    let _ = uas.wait();
    let events = done(&pbx, &tap, &[(102, "h102")]);
    let call = call_from(&events, "101");
    assert_seq(&of_call_all(&events, &call), scenarios::HOLD_UNHOLD);
}

#[test]
fn a_confbridge_with_two_callers() {
    let pbx = Pbx::start("a_confbridge_with_two_callers");
    let tap = Tap::start(&pbx);
    let first = pbx.caller(101, "700", "uac_call", &[("talk_ms", "4000")]);
    tap.wait_for("the first caller in the conference", |e| {
        name(e) == "call.started" && e["from"] == "101"
    });
    pbx.caller(104, "700", "uac_call", &[("talk_ms", "1500")])
        .passed();
    first.passed();
    let events = tap.fence(&pbx);
    let a = call_from(&events, "101");
    let b = call_from(&events, "104");
    assert_seq(&of_call_all(&events, &a), scenarios::CONFBRIDGE_FIRST);
    assert_seq(&of_call_all(&events, &b), scenarios::CONFBRIDGE_SECOND);
}

#[test]
fn a_call_parked_and_hung_up_in_the_lot() {
    let pbx = Pbx::start("a_call_parked_and_hung_up_in_the_lot");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "p102");
    let parker = pbx.referrer(102, "500", "1000", "70");
    pbx.caller(101, "102", "uac_call", &[("talk_ms", "5000")])
        .passed();
    let _ = parker.wait();
    let events = done(&pbx, &tap, &[(102, "p102")]);
    let call = call_from(&events, "101");
    assert_seq(&of_call_all(&events, &call), scenarios::PARKED);
}

/// The `channel` of the first `call.answered` of `call_id`.
fn answered_channel(tap: &Tap, call_id: &str) -> String {
    let events = tap.wait_for("the call's answer", |e| {
        name(e) == "call.answered" && e["call_id"] == call_id
    });
    events
        .iter()
        .find(|e| name(e) == "call.answered" && e["call_id"] == call_id)
        .and_then(|e| e["channel"].as_str())
        .unwrap()
        .to_string()
}

#[test]
fn an_attended_transfer_by_ami_atxfer() {
    let pbx = Pbx::start("an_attended_transfer_by_ami_atxfer");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "t102");
    pbx.register(103, 120, "t103");
    // 102 hangs up 6 s after answering, which completes the transfer (the consultation
    // with 103 is up by then: Atxfer goes a second after the bridge, 103 rings 0.5 s);
    // 103 waits for the end, which 101 makes 10 s after its answer.
    let transferor = pbx.callee(
        102,
        "uas_answer",
        &[("ring_ms", "500"), ("talk_ms", "6000")],
    );
    let target = pbx.callee(103, "uas_answer", &[("ring_ms", "500"), ("talk_ms", "0")]);
    let caller = pbx.caller(101, "102", "uac_call", &[("talk_ms", "10000")]);
    let started = tap.wait_for("the call", |e| {
        name(e) == "call.started" && e["from"] == "101"
    });
    let call = call_from(&started, "101");
    let channel = answered_channel(&tap, &call);
    pbx.wait_bridged();
    // 102 consults 103 (Atxfer, as its phone's transfer key would), then hangs up: 101
    // and 103 are connected.
    let mut ami = common::pbx::RawAmi::login(pbx.ami_port, "tap", "tapsecret").unwrap();
    ami.send(&[
        ("Action", "Atxfer"),
        ("Channel", &channel),
        ("Exten", "103"),
        ("Context", "lab"),
    ])
    .unwrap();
    caller.passed();
    let _ = (transferor.wait(), target.wait());
    let events = done(&pbx, &tap, &[(102, "t102"), (103, "t103")]);
    let (rest, transferor) = split_leg(of_call_all(&events, &call), "102");
    assert_seq(&transferor, scenarios::ATTENDED_TRANSFER_TRANSFEROR);
    assert_seq(&rest, scenarios::ATTENDED_TRANSFER);
}

#[test]
fn a_call_made_with_ami_originate() {
    let pbx = Pbx::start("a_call_made_with_ami_originate");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "o102");
    pbx.register(103, 120, "o103");
    let first = pbx.callee(
        102,
        "uas_answer",
        &[("ring_ms", "300"), ("talk_ms", "3000")],
    );
    let second = pbx.callee(103, "uas_answer", &[("ring_ms", "300"), ("talk_ms", "0")]);
    pbx.originate("PJSIP/102", "lab", "103");
    let _ = (first.wait(), second.wait());
    let events = done(&pbx, &tap, &[(102, "o102"), (103, "o103")]);
    let call = events
        .iter()
        .find(|e| name(e) == "call.started")
        .and_then(|e| e["call_id"].as_str())
        .unwrap()
        .to_string();
    // 102 hangs up, Asterisk hangs 103 up: the two legs end together.
    let (rest, second) = split_leg(of_call_all(&events, &call), "103");
    assert_seq(&second, scenarios::ORIGINATE_SECOND);
    assert_seq(&rest, scenarios::ORIGINATE);
}

#[test]
fn asterisk_restarted_in_the_middle_of_a_call_ends_it_once_and_pbxtap_reconnects() {
    let mut pbx = Pbx::start("asterisk_restarted_in_the_middle_of_a_call");
    let mut tap = Tap::start(&pbx);
    pbx.register(102, 120, "x102");
    let callee = pbx.callee(102, "uas_answer", &[("ring_ms", "300"), ("talk_ms", "0")]);
    let caller = pbx.caller(101, "102", "uac_call", &[("talk_ms", "20000")]);
    let started = tap.wait_for("the call", |e| {
        name(e) == "call.started" && e["from"] == "101"
    });
    let call = call_from(&started, "101");
    answered_channel(&tap, &call);
    pbx.cli("core restart now");
    tap.wait_for("the call's end after the restart", |e| {
        name(e) == "call.ended" && e["call_id"] == call
    });
    let events = tap.wait_for("the reconnect", |e| {
        name(e) == "system.ami_connected" && e["seq"].as_u64() > Some(2)
    });
    drop((caller, callee));
    assert!(tap.daemon_running(), "pbxtap exited");
    let ended: Vec<&Value> = events
        .iter()
        .filter(|e| name(e) == "call.ended" && e["call_id"] == call)
        .collect();
    assert_eq!(ended.len(), 1, "{ended:#?}");
    assert_eq!(ended[0]["cause_name"], "NORMAL_CLEARING", "{}", ended[0]);
    let system: Vec<String> = events
        .iter()
        .filter(|e| e["class"] == "system")
        .map(name)
        .collect();
    assert_eq!(
        system,
        [
            "system.ami_connected",
            "system.ami_disconnected",
            "system.ami_connected"
        ]
    );
    // And it goes on: a new registration after the restart is seen.
    pbx.wait_booted_again();
    pbx.register(103, 60, "after");
    tap.wait_for("a registration after the restart", |e| {
        name(e) == "endpoint.registered" && e["aor"] == "103"
    });
}

#[test]
fn a_manager_reload_keeps_pbxtap_connected_and_loses_nothing() {
    let pbx = Pbx::start("a_manager_reload_keeps_pbxtap_connected_and_loses_nothing");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "m102");
    let callee = pbx.callee(102, "uas_answer", &[("ring_ms", "300"), ("talk_ms", "0")]);
    let caller = pbx.caller(101, "102", "uac_call", &[("talk_ms", "3000")]);
    let started = tap.wait_for("the call", |e| {
        name(e) == "call.started" && e["from"] == "101"
    });
    let call = call_from(&started, "101");
    answered_channel(&tap, &call);
    pbx.cli("manager reload");
    caller.passed();
    let _ = callee.wait();
    let events = done(&pbx, &tap, &[(102, "m102")]);
    assert_seq(&of_call_all(&events, &call), scenarios::MANAGER_RELOAD);
    let system: Vec<String> = events
        .iter()
        .filter(|e| e["class"] == "system")
        .map(name)
        .collect();
    assert_eq!(
        system,
        ["system.ami_connected"],
        "a reload dropped the AMI session"
    );
}

#[test]
fn a_contact_that_stops_answering_qualify_is_unregistered_as_unreachable() {
    // Qualify every 2 s (the test PBX's is 30 s); SIPp's phone answers only the first.
    let pbx = Pbx::start_replacing(
        "a_contact_that_stops_answering_qualify",
        "pjsip.conf",
        "qualify_frequency = 30",
        "qualify_frequency = 2",
    );
    let tap = Tap::start(&pbx);
    pbx.register(103, 120, "q1");
    let events = tap.wait_for("the contact unreachable", |e| {
        name(e) == "endpoint.unregistered" && e["aor"] == "103"
    });
    let got = registrations(&events, "103");
    let contact = format!("sip:103@127.0.0.1:{};regid=q1", pbx.phone_port(103));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with(&format!("endpoint.registered aor=103 contact={contact} ")),
        "{got:#?}"
    );
    assert_eq!(
        got[1],
        format!("endpoint.unregistered aor=103 contact={contact} expires=0 user_agent=")
    );
    let gone = events
        .iter()
        .find(|e| name(e) == "endpoint.unregistered" && e["aor"] == "103")
        .unwrap();
    assert_eq!(gone["status"], "Unreachable", "{gone}");
}

#[test]
fn an_ami_user_without_the_cdr_agent_and_security_classes_is_told_at_start_up() {
    let pbx = Pbx::start_with("an_ami_user_without_the_cdr_and_agent_classes", |etc| {
        let path = etc.join("manager.conf");
        let mut conf = std::fs::read_to_string(&path).unwrap();
        conf.push_str(
            "\n[limited]\nsecret = limitedsecret\npermit = 127.0.0.1/255.255.255.255\n\
             read = system,call,user\nwrite = system,call\n",
        );
        std::fs::write(&path, conf).unwrap();
    });
    let config = format!(
        "host = \"lab\"\n[ami]\naddress = \"127.0.0.1:{}\"\nusername = \"limited\"\n\
         secret = \"limitedsecret\"\nmanager_conf = \"{}\"\n[watchdog]\nenabled = false\n\
         [[sinks]]\ntype = \"stdout\"\n",
        pbx.ami_port,
        pbx.run.path().join("etc/manager.conf").display()
    );
    let daemon = Daemon::start(&config, &[], true);
    daemon.wait_line(WAIT, |l| l.contains("\"event\":\"ami_connected\""));
    daemon.wait_stderr(WAIT, "does not get the `cdr` class");
    let stderr = daemon.stderr();
    let told: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ami_read_class_missing"))
        .collect();
    assert_eq!(told.len(), 3, "{stderr}");
    assert!(
        told.iter()
            .any(|l| l.contains("`agent`") && l.contains("queue.agent_status")),
        "{stderr}"
    );
    assert!(
        told.iter()
            .any(|l| l.contains("`security`") && l.contains("system.login_failures")),
        "{stderr}"
    );
    assert!(
        told.iter()
            .any(|l| l.contains("`cdr`") && l.contains("call.cdr")),
        "{stderr}"
    );
    // And it is so: a call's events come, its CDR does not.
    pbx.register(102, 120, "l102");
    let uas = pbx.callee(102, "uas_answer", &[("ring_ms", "300"), ("talk_ms", "0")]);
    pbx.caller(101, "102", "uac_call", &[("talk_ms", "1000")])
        .passed();
    let _ = uas.wait();
    let line = daemon.wait_line(WAIT, |l| {
        l.contains("\"class\":\"call\",\"event\":\"ended\"")
    });
    assert!(line.contains("\"from\":\"101\""), "{line}");
    pbx.register(102, 0, "l102");
    daemon.wait_line(WAIT, |l| l.contains("\"event\":\"unregistered\""));
    assert!(
        !daemon
            .stdout_lines()
            .iter()
            .any(|l| l.contains("\"event\":\"cdr\"")),
        "a CDR arrived without the cdr class"
    );
}

#[test]
fn a_queue_caller_who_waits_past_the_sla_and_is_answered() {
    let pbx = Pbx::start("a_queue_caller_who_waits_past_the_sla_and_is_answered");
    let tap = Tap::start_with(&pbx, "[normalize]\nqueue_sla_secs = 2\n");
    pbx.register(102, 120, "s102");
    let agent = pbx.callee(102, "uas_answer", &[("ring_ms", "4000"), ("talk_ms", "0")]);
    pbx.caller(101, "8001", "uac_call", &[("talk_ms", "7000")])
        .passed();
    let _ = agent.wait();
    let events = done(&pbx, &tap, &[(102, "s102")]);
    let call = call_from(&events, "101");
    assert_seq(
        &of_call_all(&events, &call),
        scenarios::QUEUE_PAST_SLA_ANSWERED,
    );
}

#[test]
fn a_parked_call_retrieved_from_the_lot() {
    let pbx = Pbx::start("a_parked_call_retrieved_from_the_lot");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "r102");
    let parker = pbx.referrer(102, "500", "1000", "70");
    let parked = pbx.caller(101, "102", "uac_call", &[("talk_ms", "0")]);
    tap.wait_for("the call parked", |e| {
        name(e) == "call.rerouted" && e["target"] == "70"
    });
    let _ = parker.wait();
    // 103 picks the call up from the first slot, talks, and hangs up.
    pbx.caller(103, "71", "uac_call", &[("talk_ms", "1500")])
        .passed();
    parked.passed();
    let events = done(&pbx, &tap, &[(102, "r102")]);
    let a = call_from(&events, "101");
    let b = call_from(&events, "103");
    assert_seq(&of_call_all(&events, &a), scenarios::PARKED_RETRIEVED);
    assert_seq(&of_call_all(&events, &b), scenarios::RETRIEVER);
}

#[test]
fn a_call_on_an_asterisk_with_a_long_systemname_is_one_call() {
    // The systemname prefixes every Uniqueid and Linkedid: these are over 32 bytes, which
    // an id field once held.
    let pbx = Pbx::start_replacing(
        "a_call_on_an_asterisk_with_a_long_systemname",
        "asterisk.conf",
        "systemname = lab",
        "systemname = pbx-customer-site0042-rack07",
    );
    let tap = Tap::start(&pbx);
    let events = one_call(
        &pbx,
        &tap,
        "102",
        "1000",
        ("uas_answer".into(), &[("ring_ms", "500"), ("talk_ms", "0")]),
    );
    let call = call_from(&events, "101");
    assert!(
        call.starts_with("pbx-customer-site") && call.len() > 32,
        "the call id {call} does not carry the long systemname"
    );
    let started = events.iter().filter(|e| name(e) == "call.started").count();
    assert_eq!(started, 1, "one call, one call.started: {events:#?}");
    assert_seq(
        &of_call(&events, &call),
        scenarios::ANSWERED_CALLER_HANGS_UP,
    );
}

/// `ami.filter_at_source`: the same answered calls with Asterisk filtering at the source
/// and without. pbxtap publishes the same events; the AMI socket carries far fewer bytes
/// (about half: the registrations, device states, queue members and contact lists pbxtap
/// reads are much of what a call makes Asterisk send).
/// Prints each run's bytes and Asterisk's CPU time (the README's figures).
#[test]
fn filters_at_the_source_give_the_same_events_for_fewer_bytes() {
    const CALLS: usize = 5;
    let pbx = Pbx::start("filters_at_the_source_give_the_same_events_for_fewer_bytes");
    let mut runs = Vec::new();
    for filter in [true, false] {
        let metrics = format!("127.0.0.1:{}", common::free_port());
        let tap = Tap::start_with_ami(
            &pbx,
            &format!("filter_at_source = {filter}\n"),
            &format!("[metrics]\nenabled = true\nlisten = \"{metrics}\"\n"),
        );
        let scrape = |key: &str| {
            pbxtap::metrics::fetch(&metrics, Duration::from_secs(2))
                .ok()
                .and_then(|s| s.get(key))
                .map(|v| v as u64)
        };
        if filter {
            common::wait_until("Asterisk to accept the filters", WAIT, || {
                scrape("pbxtap_ami_filtered_at_source") == Some(1)
            });
            assert!(
                tap.daemon.stderr().contains("ami_filtered_at_source"),
                "{}",
                tap.daemon.stderr()
            );
        }
        let start = tap.events().len();
        let (bytes0, messages0, cpu0) = (
            scrape("pbxtap_ami_bytes_total").unwrap(),
            scrape("pbxtap_ami_messages_total").unwrap(),
            pbx.cpu_time(),
        );
        let mut events = Vec::new();
        for _ in 0..CALLS {
            events = one_call(
                &pbx,
                &tap,
                "102",
                "200",
                ("uas_answer".into(), &[("ring_ms", "200"), ("talk_ms", "0")]),
            );
        }
        let (bytes, messages, cpu) = (
            scrape("pbxtap_ami_bytes_total").unwrap() - bytes0,
            scrape("pbxtap_ami_messages_total").unwrap() - messages0,
            pbx.cpu_time() - cpu0,
        );
        assert_eq!(
            scrape("pbxtap_ami_filtered_at_source"),
            Some(u64::from(filter))
        );
        // What a consumer reads of the calls: every call and target event, in order.
        let calls: Vec<String> = events[start..]
            .iter()
            .filter(|e| e["class"] == "call" || e["class"] == "target")
            .map(name)
            .collect();
        eprintln!(
            "filter_at_source = {filter}: {CALLS} answered calls, {} call and target events, {messages} AMI messages, {bytes} bytes on the AMI socket, Asterisk CPU {} ms",
            calls.len(),
            cpu.as_millis()
        );
        runs.push((calls, bytes));
        drop(tap);
    }
    let (filtered, all) = (&runs[0], &runs[1]);
    assert!(filtered.0.len() >= CALLS * 4, "{:?}", filtered.0);
    assert_eq!(
        filtered.0, all.0,
        "the same events with and without filters"
    );
    assert!(
        filtered.1 * 3 < all.1 * 2,
        "filtered {} bytes, not under two thirds of {}",
        filtered.1,
        all.1
    );
}

/// A manager user without `write = system` may not add filters: pbxtap says so once, and
/// Asterisk sends every event, which pbxtap passes over as before.
#[test]
fn a_refused_filter_is_told_and_every_event_still_comes() {
    let pbx = Pbx::start_replacing(
        "a_refused_filter_is_told_and_every_event_still_comes",
        "manager.conf",
        "write = all",
        "write = call",
    );
    let tap = Tap::start(&pbx);
    let events = one_call(
        &pbx,
        &tap,
        "102",
        "200",
        ("uas_answer".into(), &[("ring_ms", "200"), ("talk_ms", "0")]),
    );
    let call = call_from(&events, "101");
    assert_seq(
        &of_call(&events, &call),
        scenarios::ANSWERED_CALLER_HANGS_UP,
    );
    let log = tap.daemon.stderr();
    assert!(
        log.contains("ami_filter_refused") && log.contains("write = system"),
        "{log}"
    );
    assert!(!log.contains("ami_filtered_at_source"), "{log}");
}

/// `ami.lag_warn_ms`: pbxtap stalled (SIGSTOP) while Asterisk sends events reads them late
/// by Asterisk's own stamps (`timestampevents = yes`): one `system.ami_lagging`, then one
/// `system.ami_caught_up` once fresh events come in time.
#[test]
fn events_read_late_are_told_as_ami_lag_and_its_end() {
    use nix::sys::signal::Signal;
    let pbx = Pbx::start("events_read_late_are_told_as_ami_lag_and_its_end");
    let tap = Tap::start_with_ami(&pbx, "lag_warn_ms = 1000\n", "");
    // Stalled for 2.5 s, while a phone registers: its events wait in the socket.
    tap.daemon.signal(Signal::SIGSTOP);
    let stalled = std::time::Instant::now();
    pbx.register(102, 60, "lag");
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(stalled.elapsed()));
    tap.daemon.signal(Signal::SIGCONT);
    let events = tap.wait_for("system.ami_lagging", |e| name(e) == "system.ami_lagging");
    let lagging = events
        .iter()
        .find(|e| name(e) == "system.ami_lagging")
        .unwrap();
    assert!(lagging["lag_ms"].as_u64().unwrap() >= 1000, "{lagging}");
    assert_eq!(lagging["threshold_ms"], 1000, "{lagging}");
    // Fresh events, read in time: the spell is over, told once with its worst lag.
    pbx.register(102, 0, "lag");
    let events = tap.wait_for("system.ami_caught_up", |e| {
        name(e) == "system.ami_caught_up"
    });
    let up = events
        .iter()
        .find(|e| name(e) == "system.ami_caught_up")
        .unwrap();
    assert!(up["lag_ms"].as_u64().unwrap() >= 1000, "{up}");
    let spells = |n: &str| events.iter().filter(|e| name(e) == n).count();
    assert_eq!(
        (spells("system.ami_lagging"), spells("system.ami_caught_up")),
        (1, 1)
    );
}

/// Five wrong SIP passwords and five wrong AMI secrets from one address: one
/// `system.login_failures` for each service, with the address, the account and the count.
#[test]
fn failed_sip_and_ami_logins_from_one_address_are_told_once_each() {
    let pbx = Pbx::start("failed_sip_and_ami_logins_from_one_address_are_told_once_each");
    let tap = Tap::start(&pbx);
    for i in 0..5 {
        pbx.register_wrong(103, &format!("bad{i}"));
        common::pbx::RawAmi::login_refused(pbx.ami_port, "tap", "guess");
    }
    let bursts = |events: &[Value]| -> Vec<Value> {
        events
            .iter()
            .filter(|e| name(e) == "system.login_failures")
            .cloned()
            .collect()
    };
    common::wait_until("two login_failures", WAIT, || {
        bursts(&tap.events()).len() >= 2
    });
    // A fence: everything of the attempts is out, and no third burst came.
    let events = tap.fence(&pbx);
    let mut told: Vec<(String, String, String, u64, u64)> = bursts(&events)
        .iter()
        .map(|e| {
            (
                e["service"].as_str().unwrap().to_string(),
                e["address"].as_str().unwrap().to_string(),
                e["account"].as_str().unwrap().to_string(),
                e["failures"].as_u64().unwrap(),
                e["window_secs"].as_u64().unwrap(),
            )
        })
        .collect();
    told.sort();
    assert_eq!(
        told,
        [
            ("AMI".into(), "127.0.0.1".into(), "tap".into(), 5, 60),
            ("PJSIP".into(), "127.0.0.1".into(), "103".into(), 5, 60),
        ]
    );
}

/// Three phones de-registering within the window (`normalize.mass_unregister = 3`): one
/// `system.mass_unregistration` after the third `endpoint.unregistered`, and no second one
/// for the fourth and the fence within the same window.
#[test]
fn many_phones_unregistering_at_once_are_told_as_one_mass_unregistration() {
    let pbx = Pbx::start("many_phones_unregistering_at_once_are_told_as_one_mass_unregistration");
    let tap = Tap::start_with(
        &pbx,
        "[normalize]\nmass_unregister = 3\nmass_unregister_secs = 60\n",
    );
    for ext in [101, 102, 103, 104] {
        pbx.register(ext, 120, &format!("m{ext}"));
    }
    for ext in [101, 102, 103, 104] {
        pbx.register(ext, 0, &format!("m{ext}"));
    }
    let events = tap.fence(&pbx);
    let told: Vec<&Value> = events
        .iter()
        .filter(|e| name(e) == "system.mass_unregistration")
        .collect();
    assert_eq!(told.len(), 1, "{told:#?}");
    assert_eq!(
        (
            told[0]["unregistered"].as_u64(),
            told[0]["window_secs"].as_u64()
        ),
        (Some(3), Some(60))
    );
    // It comes right after the third unregistration.
    let at = events
        .iter()
        .position(|e| name(e) == "system.mass_unregistration")
        .unwrap();
    let before: Vec<&str> = events[..at]
        .iter()
        .filter(|e| name(e) == "endpoint.unregistered")
        .map(|e| e["aor"].as_str().unwrap())
        .collect();
    assert_eq!(before, ["101", "102", "103"]);
}

/// The test PBX with two trunks: `carrier-ok` registers to the PBX itself (as 105), and
/// `carrier-dead` to `dead`, a UDP port that never answers. Timer B is cut to 6.4 s so
/// the dead one fails within the wait.
fn pbx_with_trunks(name: &str, dead: u16) -> Pbx {
    Pbx::start_with(name, |etc| {
        let path = etc.join("pjsip.conf");
        let conf = std::fs::read_to_string(&path).unwrap();
        let sip = conf
            .lines()
            .find_map(|l| l.strip_prefix("bind = 127.0.0.1:"))
            .unwrap()
            .to_string();
        let trunks = format!(
            "\n[system]\ntype = system\ntimer_t1 = 100\ntimer_b = 6400\n\n\
             [carrier-ok-auth]\ntype = auth\nauth_type = userpass\nusername = 105\npassword = 105pw\n\n\
             [carrier-ok]\ntype = registration\ntransport = transport-udp\noutbound_auth = carrier-ok-auth\n\
             server_uri = sip:127.0.0.1:{sip}\nclient_uri = sip:105@127.0.0.1:{sip}\nretry_interval = 5\n\n\
             [carrier-dead]\ntype = registration\ntransport = transport-udp\n\
             server_uri = sip:127.0.0.1:{dead}\nclient_uri = sip:pbx@127.0.0.1:{dead}\nretry_interval = 5\n"
        );
        std::fs::write(&path, conf + &trunks).unwrap();
    })
}

/// A trunk to an address that does not answer is one `trunk.failed`, though Asterisk
/// fails it again every 5 s; a trunk that registers is one `trunk.registered`. Both named as
/// in pjsip.conf, though Asterisk's `Registry` events name no section.
#[test]
fn a_trunk_to_an_address_that_does_not_answer_fails_once_and_one_that_registers_is_told() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = silent.local_addr().unwrap().port();
    let pbx = pbx_with_trunks("trunks", dead);
    let tap = Tap::start(&pbx);
    let failed = |e: &Value| name(e) == "trunk.failed" && e["trunk"] == "carrier-dead";
    tap.wait_for("the dead trunk's trunk.failed", failed);
    let registered = |e: &Value| name(e) == "trunk.registered" && e["trunk"] == "carrier-ok";
    tap.wait_for("the good trunk's trunk.registered", registered);
    // Asterisk retries the dead one 5 s after each failure: wait for the next failure,
    // which must not be told again.
    let mut ami = common::pbx::RawAmi::login(pbx.ami_port, "tap", "tapsecret").unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let dead_uri = format!("Domain: sip:127.0.0.1:{dead}\r\nStatus: Rejected");
    ami.read_until(&dead_uri, deadline)
        .expect("Asterisk fails the dead trunk again");
    let events = tap.fence(&pbx);
    let trunks: Vec<String> = events
        .iter()
        .filter(|e| e["class"] == "trunk")
        .map(|e| {
            format!(
                "{} {} was={}",
                name(e),
                e["trunk"].as_str().unwrap(),
                e["was"].as_str().unwrap()
            )
        })
        .collect();
    // Each is first told as it is when pbxtap lists it: not registered yet (Asterisk
    // waits up to 10 s before its first attempt), or already done.
    for (trunk, state) in [("carrier-dead", "failed"), ("carrier-ok", "registered")] {
        let told: Vec<&String> = trunks.iter().filter(|s| s.contains(trunk)).collect();
        let at_once = [format!("trunk.{state} {trunk} was=")];
        let after = [
            format!("trunk.unregistered {trunk} was="),
            format!("trunk.{state} {trunk} was=unregistered"),
        ];
        assert!(
            told == at_once.iter().collect::<Vec<_>>() || told == after.iter().collect::<Vec<_>>(),
            "{trunks:#?}"
        );
    }
    let dead_failed = events.iter().find(|e| failed(e)).unwrap();
    assert_eq!(dead_failed["server_uri"], format!("sip:127.0.0.1:{dead}"));
    drop(silent);
}

/// Three calls refused (480), then two answered, over a window of three calls with 50 %
/// to keep: one `system.asr_low` right after the third `call.ended` (0 of 3), and one
/// `system.asr_recovered` after the fifth (2 of 3).
#[test]
fn calls_refused_one_after_another_are_told_as_a_low_answer_seizure_ratio() {
    let pbx = Pbx::start("calls_refused_one_after_another_are_told_as_a_low_answer_seizure_ratio");
    let tap = Tap::start_with(&pbx, "[normalize]\nasr_calls = 3\nasr_min_percent = 50\n");
    pbx.register(102, 120, "c102");
    for scenario in [
        "uas_reject_480",
        "uas_reject_480",
        "uas_reject_480",
        "uas_answer",
        "uas_answer",
    ] {
        let uas = pbx.callee(102, scenario, &[("ring_ms", "200"), ("talk_ms", "0")]);
        let uac = pbx.caller(101, "102", "uac_call", &[("talk_ms", "300")]);
        let _ = uac.wait();
        let _ = uas.wait();
    }
    let events = done(&pbx, &tap, &[(102, "c102")]);
    let seq: Vec<String> = events
        .iter()
        .filter(|e| name(e) == "call.ended" || name(e).starts_with("system.asr"))
        .map(|e| match name(e).as_str() {
            "call.ended" => format!("ended answered={}", e["answered"]),
            n => format!(
                "{n} {} of {} = {}%",
                e["answered"], e["calls"], e["asr_percent"]
            ),
        })
        .collect();
    assert_eq!(
        seq,
        [
            "ended answered=false",
            "ended answered=false",
            "ended answered=false",
            "system.asr_low 0 of 3 = 0%",
            "ended answered=true",
            "ended answered=true",
            "system.asr_recovered 2 of 3 = 66%",
        ]
    );
}

/// chan_sip (`tests/pbx/etc/sip.conf`), which Asterisk 20 and 18 load and 22 no longer has:
/// a chan_sip phone's registration is told from `PeerStatus` (technology `SIP`), and its
/// call to a PJSIP phone is a call like any other, its caller's channel `SIP/107-...`.
#[test]
#[ignore = "needs chan_sip, which Asterisk 22 has not: scripts/test-versions.sh runs it on 20 and 18"]
fn a_chan_sip_phone_registers_and_calls_a_pjsip_phone() {
    let pbx = Pbx::start("a_chan_sip_phone_registers_and_calls_a_pjsip_phone");
    let tap = Tap::start(&pbx);
    pbx.register_at(pbx.chan_sip_port(), 107, 120, "s107");
    tap.wait_for("107's registration", |e| {
        name(e) == "endpoint.registered" && e["aor"] == "107"
    });
    pbx.register(102, 120, "c102");
    let uas = pbx.callee(102, "uas_answer", &[("ring_ms", "500"), ("talk_ms", "0")]);
    pbx.caller_at(
        pbx.chan_sip_port(),
        107,
        "102",
        "uac_call",
        &[("talk_ms", "2000")],
    )
    .passed();
    let _ = uas.wait();
    pbx.register_at(pbx.chan_sip_port(), 107, 0, "s107");
    let events = done(&pbx, &tap, &[(102, "c102")]);
    let regs: Vec<&Value> = events
        .iter()
        .filter(|e| e["aor"] == "107" && name(e) != "endpoint.presence")
        .collect();
    let told: Vec<(String, &str)> = regs
        .iter()
        .map(|e| (name(e), e["technology"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        told,
        [
            ("endpoint.registered".to_string(), "SIP"),
            ("endpoint.unregistered".to_string(), "SIP")
        ],
        "{regs:#?}"
    );
    let call = call_from(&events, "107");
    let want = scenarios::answered_from("107");
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    assert_seq(&of_call(&events, &call), &want);
    assert_channel(&events, "call.started", &call, "SIP/107-");
}
