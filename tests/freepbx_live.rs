//! The live suite on a FreePBX-shaped dialplan (`tests/pbx/etc/extensions.conf`, the
//! `fpbx-*` contexts, read from FreePBX's own: from-internal, ext-local, ext-group,
//! ext-queues with from-queue, ext-findmefollow, app-pickup). Calls reach their phones
//! through Local channels, as on most appliances. A consumer sees phones, trunks and
//! numbers as parties, never a Local channel; `answered` only when the caller was
//! connected to someone.
//!
//! Each test boots its own Asterisk (`common::pbx`) and the real `pbxtap run`
//! (`common::live`). Run: `scripts/test-live.sh` (sets `PBXTAP_ASTERISK_PREFIX`).

mod common;

use common::live::{done, Tap};
use common::pbx::{Pbx, RawAmi, CARRIER};
use common::scenarios;
use common::sequence::{
    assert_channel, assert_legs, assert_no_local_party, assert_seq, call_from, legs_by_channel,
    name, of_call_all,
};
use serde_json::Value;

/// The call whose start came first.
fn first_call(events: &[Value]) -> String {
    events
        .iter()
        .find(|e| name(e) == "call.started")
        .and_then(|e| e["call_id"].as_str())
        .expect("a call.started")
        .to_string()
}

#[test]
fn an_extension_reached_through_a_local_channel() {
    let pbx = Pbx::start("an_extension_reached_through_a_local_channel");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "c102");
    let uas = pbx.callee(102, "uas_answer", &[("ring_ms", "500"), ("talk_ms", "0")]);
    pbx.caller(101, "5102", "uac_call", &[("talk_ms", "2000")])
        .passed();
    let _ = uas.wait();
    let events = done(&pbx, &tap, &[(102, "c102")]);
    assert_no_local_party(&events);
    let call = call_from(&events, "101");
    assert_seq(&of_call_all(&events, &call), scenarios::FPBX_EXTENSION);
    assert_channel(&events, "call.answered", &call, "PJSIP/102-");
}

#[test]
fn voicemail_behind_a_local_channel_is_the_pbx_picking_up() {
    let pbx = Pbx::start("voicemail_behind_a_local_channel_is_the_pbx_picking_up");
    let tap = Tap::start(&pbx);
    pbx.caller(101, "5900", "uac_call", &[("talk_ms", "1500")])
        .passed();
    let events = done(&pbx, &tap, &[]);
    assert_no_local_party(&events);
    let call = call_from(&events, "101");
    assert_seq(&of_call_all(&events, &call), scenarios::FPBX_VOICEMAIL);
    let added = events
        .iter()
        .find(|e| name(e) == "target.added" && e["call_id"] == call.as_str())
        .expect("the voicemail's target.added");
    assert_eq!(added["contact"], "", "{added}");
}

#[test]
fn a_ring_group_of_local_legs() {
    let pbx = Pbx::start("a_ring_group_of_local_legs");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "g102");
    pbx.register(103, 120, "g103");
    let ringer = pbx.callee(102, "uas_ring", &[]);
    let answerer = pbx.callee(103, "uas_answer", &[("ring_ms", "1500"), ("talk_ms", "0")]);
    pbx.caller(101, "5600", "uac_call", &[("talk_ms", "2000")])
        .passed();
    let _ = (ringer.wait(), answerer.wait());
    let events = done(&pbx, &tap, &[(102, "g102"), (103, "g103")]);
    assert_no_local_party(&events);
    let (rest, legs) = legs_by_channel(&events, &call_from(&events, "101"));
    assert_seq(&rest, scenarios::FPBX_RING_GROUP);
    assert_legs(
        &legs,
        &[scenarios::RING_GROUP_LOSER, scenarios::RING_GROUP_WINNER],
    );
}

#[test]
fn a_queue_whose_members_are_local_channels() {
    let pbx = Pbx::start("a_queue_whose_members_are_local_channels");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "q102");
    pbx.register(103, 120, "q103");
    let answerer = pbx.callee(102, "uas_answer", &[("ring_ms", "3000"), ("talk_ms", "0")]);
    let ringer = pbx.callee(103, "uas_ring", &[]);
    pbx.caller(101, "5800", "uac_call", &[("talk_ms", "6000")])
        .passed();
    let _ = (ringer.wait(), answerer.wait());
    let events = done(&pbx, &tap, &[(102, "q102"), (103, "q103")]);
    assert_no_local_party(&events);
    let (rest, legs) = legs_by_channel(&events, &call_from(&events, "101"));
    assert_seq(&rest, scenarios::FPBX_QUEUE);
    assert_legs(&legs, &[scenarios::QUEUE_LOSER, scenarios::QUEUE_WINNER]);
}

#[test]
fn follow_me_rings_the_desk_then_the_mobile_which_accepts() {
    let pbx = Pbx::start("follow_me_rings_the_desk_then_the_mobile_which_accepts");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "f102");
    let desk = pbx.callee(102, "uas_ring", &[]);
    let mobile = pbx.callee(
        CARRIER,
        "uas_answer",
        &[("ring_ms", "500"), ("talk_ms", "0")],
    );
    pbx.caller(101, "570201", "uac_call", &[("talk_ms", "3000")])
        .passed();
    let _ = (desk.wait(), mobile.wait());
    let events = done(&pbx, &tap, &[(102, "f102")]);
    assert_no_local_party(&events);
    let (rest, mut legs) = legs_by_channel(&events, &call_from(&events, "101"));
    assert_seq(&rest, scenarios::FPBX_FOLLOW_ME_ACCEPTED);
    // The desk's SIPp phone is one UAS that stops after its first call: whether it still
    // rings for the second round's INVITE is its own timing, not Asterisk's or ours.
    for leg in legs
        .iter_mut()
        .filter(|l| l.iter().any(|e| e.contains("ANSWERED_ELSEWHERE")))
    {
        leg.retain(|e| e != "target.ringing target=102");
    }
    legs.sort();
    let mut want: Vec<Vec<&str>> = scenarios::FPBX_FOLLOW_ME_LEGS
        .iter()
        .map(|l| l.to_vec())
        .collect();
    want[1].retain(|e| *e != "target.ringing target=102");
    let want: Vec<&[&str]> = want.iter().map(Vec::as_slice).collect();
    assert_legs(&legs, &want);
}

/// The mobile answers, its owner declines at the "accept this call?" prompt, and the leg
/// is dropped: the caller was never connected, so the call is not answered, in any
/// dialect. The desk phone is not registered (it refuses at once), so the caller's INVITE
/// is refused in the end.
#[test]
fn follow_me_to_a_mobile_that_declines_at_the_prompt_is_not_answered() {
    let pbx = Pbx::start("follow_me_to_a_mobile_that_declines_at_the_prompt_is_not_answered");
    let tap = Tap::start(&pbx);
    let mobile = pbx.callee(
        CARRIER,
        "uas_answer",
        &[("ring_ms", "500"), ("talk_ms", "0")],
    );
    pbx.caller(101, "570200", "uac_refused", &[]).passed();
    let _ = mobile.wait();
    let events = done(&pbx, &tap, &[]);
    assert_no_local_party(&events);
    let (rest, legs) = legs_by_channel(&events, &call_from(&events, "101"));
    let (refusals, rest): (Vec<String>, Vec<String>) =
        rest.into_iter().partition(|l| l.starts_with("call.failed"));
    assert_eq!(
        refusals,
        [
            "call.failed target=102 cause=20 cause_name=SUBSCRIBER_ABSENT sip_code=480",
            "call.failed target=102 cause=20 cause_name=SUBSCRIBER_ABSENT sip_code=480"
        ]
    );
    assert_seq(&rest, scenarios::FPBX_FOLLOW_ME_DECLINED);
    assert_legs(&legs, &[scenarios::FPBX_FOLLOW_ME_MOBILE_DECLINED]);
}

/// FreePBX's click-to-dial: Originate a Local channel into the extension's context, then
/// the dialplan to the destination.
#[test]
fn click_to_dial_by_originate_of_a_local_channel() {
    let pbx = Pbx::start("click_to_dial_by_originate_of_a_local_channel");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "o102");
    pbx.register(103, 120, "o103");
    let first = pbx.callee(
        102,
        "uas_answer",
        &[("ring_ms", "300"), ("talk_ms", "3000")],
    );
    let second = pbx.callee(103, "uas_answer", &[("ring_ms", "300"), ("talk_ms", "0")]);
    pbx.originate("Local/102@fpbx-ext", "fpbx-internal", "5103");
    let _ = (first.wait(), second.wait());
    let events = done(&pbx, &tap, &[(102, "o102"), (103, "o103")]);
    assert_no_local_party(&events);
    let call = first_call(&events);
    let (rest, legs) = legs_by_channel(&events, &call);
    assert_seq(&rest, scenarios::FPBX_ORIGINATE);
    assert_legs(&legs, &[scenarios::FPBX_ORIGINATE_LEG]);
    // The caller's channel is the phone's.
    assert_channel(&events, "call.started", &call, "PJSIP/102-");
}

/// Click-to-dial to a busy phone: the first phone answered the Originate, but nobody
/// answered the caller: a failed call, busy.
#[test]
fn click_to_dial_to_a_busy_phone_fails_though_the_first_phone_answered() {
    let pbx = Pbx::start("click_to_dial_to_a_busy_phone_fails_though_the_first_phone_answered");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "o102");
    pbx.register(103, 120, "o103");
    let first = pbx.callee(102, "uas_answer", &[("ring_ms", "300"), ("talk_ms", "0")]);
    let second = pbx.callee(103, "uas_busy", &[("ring_ms", "300")]);
    pbx.originate("PJSIP/102", "lab", "103");
    let _ = (first.wait(), second.wait());
    let events = done(&pbx, &tap, &[(102, "o102"), (103, "o103")]);
    let call = first_call(&events);
    assert_seq(&of_call_all(&events, &call), scenarios::ORIGINATE_BUSY);
}

#[test]
fn a_directed_pickup_names_the_phone_that_picked_up() {
    let pbx = Pbx::start("a_directed_pickup_names_the_phone_that_picked_up");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "p102");
    pbx.register(103, 120, "p103");
    let ringer = pbx.callee(102, "uas_ring", &[]);
    let caller = pbx.caller(101, "5102", "uac_call", &[("talk_ms", "3000")]);
    tap.wait_for("102 ringing", |e| {
        name(e) == "target.ringing" && e["target"] == "102"
    });
    pbx.caller(103, "**102", "uac_call", &[("talk_ms", "0")])
        .passed();
    caller.passed();
    let _ = ringer.wait();
    let events = done(&pbx, &tap, &[(102, "p102"), (103, "p103")]);
    assert_no_local_party(&events);
    let call = call_from(&events, "101");
    let (rest, legs) = legs_by_channel(&events, &call);
    assert_seq(&rest, scenarios::FPBX_PICKUP);
    assert_legs(&legs, &[scenarios::RING_GROUP_LOSER]);
    assert_channel(&events, "call.answered", &call, "PJSIP/103-");
    let picker = call_from(&events, "103");
    assert_seq(&of_call_all(&events, &picker), scenarios::FPBX_PICKER);
}

/// 101 calls 5102 (102 behind a Local channel); 102 transfers it blind (REFER) to 5103,
/// which reaches 103 behind another Local channel.
#[test]
fn a_blind_transfer_between_phones_behind_local_channels() {
    let pbx = Pbx::start("a_blind_transfer_between_phones_behind_local_channels");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "b102");
    pbx.register(103, 120, "b103");
    let transferor = pbx.referrer(102, "500", "1500", "5103");
    let target = pbx.callee(
        103,
        "uas_answer",
        &[("ring_ms", "1000"), ("talk_ms", "2000")],
    );
    pbx.caller(101, "5102", "uac_call", &[("talk_ms", "0")])
        .passed();
    let _ = (transferor.wait(), target.wait());
    let events = done(&pbx, &tap, &[(102, "b102"), (103, "b103")]);
    assert_no_local_party(&events);
    let call = call_from(&events, "101");
    let (rest, legs) = legs_by_channel(&events, &call);
    assert_seq(&rest, scenarios::FPBX_BLIND_TRANSFER);
    assert_legs(&legs, scenarios::FPBX_TRANSFER_LEGS);
    // The transferee is the caller, not the Local channel between it and 102.
    assert_channel(&events, "call.rerouted", &call, "PJSIP/101-");
}

/// 101 calls 5102; 102 consults 5103 (Atxfer, as its phone's transfer key would), then
/// hangs up: 101 and 103 are connected, each phone behind a Local channel.
#[test]
fn an_attended_transfer_between_phones_behind_local_channels() {
    let pbx = Pbx::start("an_attended_transfer_between_phones_behind_local_channels");
    let tap = Tap::start(&pbx);
    pbx.register(102, 120, "t102");
    pbx.register(103, 120, "t103");
    let transferor = pbx.callee(
        102,
        "uas_answer",
        &[("ring_ms", "500"), ("talk_ms", "6000")],
    );
    let target = pbx.callee(103, "uas_answer", &[("ring_ms", "500"), ("talk_ms", "0")]);
    let caller = pbx.caller(101, "5102", "uac_call", &[("talk_ms", "10000")]);
    let answered = tap.wait_for("the call's answer", |e| name(e) == "call.answered");
    let channel = answered
        .iter()
        .find(|e| name(e) == "call.answered")
        .and_then(|e| e["channel"].as_str())
        .unwrap()
        .to_string();
    pbx.wait_bridged();
    let mut ami = RawAmi::login(pbx.ami_port, "tap", "tapsecret").unwrap();
    ami.send(&[
        ("Action", "Atxfer"),
        ("Channel", &channel),
        ("Exten", "5103"),
        ("Context", "lab"),
    ])
    .unwrap();
    caller.passed();
    let _ = (transferor.wait(), target.wait());
    let events = done(&pbx, &tap, &[(102, "t102"), (103, "t103")]);
    assert_no_local_party(&events);
    let (rest, legs) = legs_by_channel(&events, &call_from(&events, "101"));
    assert_seq(&rest, scenarios::FPBX_ATTENDED_TRANSFER);
    assert_legs(&legs, scenarios::FPBX_TRANSFER_LEGS);
}
