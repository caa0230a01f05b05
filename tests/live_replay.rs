//! The live suite's scenarios replayed: the AMI streams the live suite recorded from the
//! real Asterisk (`tests/fixtures/ami/live/`, one per scenario) through the parser and the
//! normalizer, fast and without Asterisk, so the ordinary suite covers what the live suite
//! found. The expected sequences are the live suite's, shown the same way
//! (`common::sequence`); a replay has no contact lists, so registrations are not compared.

mod common;

use common::scenarios;
use common::sequence::{
    assert_legs, assert_no_local_party, assert_one_cdr_per_call, assert_seq, call_from,
    legs_by_channel, of_call, of_call_all, split_leg, split_legs,
};
use pbxtap::ami::frame::{Frame, Limits, Parser};
use pbxtap::dialect::{native, Encoded};
use pbxtap::event::{text, Body, Event};
use pbxtap::normalize::{self, NormalizeConfig, Normalizer};
use serde_json::Value;

/// Every event the recording `live/<name>.ami` normalizes to, one message per simulated
/// 100 ms with a tick after each second.
fn replay_events(name: &str) -> Vec<Event> {
    let path = format!(
        "{}/tests/fixtures/ami/live/{name}.ami",
        env!("CARGO_MANIFEST_DIR")
    );
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut parser = Parser::new(Limits::default());
    parser.set_filter(normalize::reads);
    let mut norm = Normalizer::new(NormalizeConfig::default());
    let host = text("lab");
    let mut out = Vec::new();
    let mut now = 1_800_000_000_000_000u64;
    parser.push(&data, &mut |f| {
        if let Ok(Frame::Message(m)) = f {
            now += 100_000;
            norm.handle(&m, now, &mut |b| out.push(Event::new(now, &host, b)));
            if now.is_multiple_of(1_000_000) {
                norm.tick(now, &mut |b| out.push(Event::new(now, &host, b)));
            }
        }
    });
    norm.tick(now + 1_000_000, &mut |b| {
        out.push(Event::new(now, &host, b))
    });
    out
}

/// The same, as native JSON.
fn replay(name: &str) -> Vec<Value> {
    let mut buf = Encoded::new();
    replay_events(name)
        .iter()
        .map(|ev| {
            native::encode(ev, &mut buf).unwrap();
            serde_json::from_slice(&buf).unwrap()
        })
        .collect()
}

/// The call from `from` in the recording `name`: every event with its call id.
fn call_of(name: &str, from: &str) -> Vec<String> {
    let events = replay(name);
    of_call_all(&events, &call_from(&events, from))
}

/// The call from 101 in the recording `name`: its call and target events.
fn call_101(name: &str) -> Vec<String> {
    let events = replay(name);
    of_call(&events, &call_from(&events, "101"))
}

#[test]
fn replayed_answered_calls_hung_up_by_either_side() {
    assert_seq(
        &call_101("a_call_answered_and_hung_up_by_the_callee"),
        scenarios::ANSWERED_CALLEE_HANGS_UP,
    );
}

#[test]
fn replayed_refusals_486_404_603_480() {
    for (code, cause, disposition) in scenarios::REFUSALS {
        let want = scenarios::rejected(code, cause, disposition);
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_seq(&call_101(&format!("rejected_{code}")), &want);
    }
}

#[test]
fn replayed_cancel_and_no_answer() {
    assert_seq(
        &call_101("a_caller_who_cancels_while_it_rings_ends_the_call_normally"),
        scenarios::CALLER_CANCELS,
    );
    assert_seq(
        &call_101("a_call_nobody_answers_ends_at_the_dial_timeout_as_no_answer"),
        scenarios::NO_ANSWER,
    );
}

#[test]
fn replayed_ring_group_and_queues() {
    let (rest, legs) = split_legs(
        call_of("a_ring_group_where_one_of_two_phones_answers", "101"),
        &["102", "103"],
    );
    assert_seq(&legs[0], scenarios::RING_GROUP_LOSER);
    assert_seq(&legs[1], scenarios::RING_GROUP_WINNER);
    assert_seq(&rest, scenarios::RING_GROUP);
    let (rest, legs) = split_legs(
        call_of("a_queue_call_answered_after_a_wait", "101"),
        &["103", "102"],
    );
    assert_seq(&legs[0], scenarios::QUEUE_LOSER);
    assert_seq(&legs[1], scenarios::QUEUE_WINNER);
    assert_seq(&rest, scenarios::QUEUE_ANSWERED);
    // Replayed with the default SLA (60 s): no breach.
    let (rest, member) = split_leg(
        call_of("a_queue_caller_who_gives_up_and_one_past_the_sla", "101"),
        "102",
    );
    assert_seq(&member, scenarios::QUEUE_ABANDON_MEMBER);
    let want: Vec<&str> = scenarios::QUEUE_ABANDON
        .iter()
        .copied()
        .filter(|l| !l.starts_with("queue.sla_breached"))
        .collect();
    assert_seq(&rest, &want);
}

#[test]
fn replayed_transfers_hold_conference_parking_originate_and_reload() {
    let (rest, transferor) = split_leg(call_of("a_blind_transfer_by_refer", "101"), "102");
    assert_seq(&transferor, scenarios::BLIND_TRANSFER_TRANSFEROR);
    assert_seq(&rest, scenarios::BLIND_TRANSFER);
    let (rest, transferor) = split_leg(call_of("an_attended_transfer_by_ami_atxfer", "101"), "102");
    assert_seq(&transferor, scenarios::ATTENDED_TRANSFER_TRANSFEROR);
    assert_seq(&rest, scenarios::ATTENDED_TRANSFER);
    assert_seq(
        &call_of("hold_and_unhold_by_re_invite", "101"),
        scenarios::HOLD_UNHOLD,
    );
    assert_seq(
        &call_of("a_confbridge_with_two_callers", "101"),
        scenarios::CONFBRIDGE_FIRST,
    );
    assert_seq(
        &call_of("a_confbridge_with_two_callers", "104"),
        scenarios::CONFBRIDGE_SECOND,
    );
    assert_seq(
        &call_of("a_call_parked_and_hung_up_in_the_lot", "101"),
        scenarios::PARKED,
    );
    let (rest, second) = split_leg(call_of("a_call_made_with_ami_originate", "102"), "103");
    assert_seq(&second, scenarios::ORIGINATE_SECOND);
    assert_seq(&rest, scenarios::ORIGINATE);
    assert_seq(
        &call_of(
            "a_manager_reload_keeps_pbxtap_connected_and_loses_nothing",
            "101",
        ),
        scenarios::MANAGER_RELOAD,
    );
}

#[test]
fn replayed_restart_ends_the_call_once() {
    let events = replay("asterisk_restarted_in_the_middle_of_a_call");
    let call = call_from(&events, "101");
    let ended = events
        .iter()
        .filter(|e| e["event"] == "ended" && e["class"] == "call" && e["call_id"] == call)
        .count();
    assert_eq!(ended, 1);
}

#[test]
fn replayed_queue_wait_past_the_sla_and_parking_retrieval() {
    // Replayed with the default SLA (60 s): no breach.
    let want: Vec<&str> = scenarios::QUEUE_PAST_SLA_ANSWERED
        .iter()
        .copied()
        .filter(|l| !l.starts_with("queue.sla_breached"))
        .collect();
    assert_seq(
        &call_of(
            "a_queue_caller_who_waits_past_the_sla_and_is_answered",
            "101",
        ),
        &want,
    );
    assert_seq(
        &call_of("a_parked_call_retrieved_from_the_lot", "101"),
        scenarios::PARKED_RETRIEVED,
    );
    assert_seq(
        &call_of("a_parked_call_retrieved_from_the_lot", "103"),
        scenarios::RETRIEVER,
    );
}

/// The FreePBX-shaped scenarios (`tests/freepbx_live.rs`) replayed: no Local channel as a
/// party, the same calls as live.
/// A live scenario's lines but its legs' (`target.*`), which are compared apart.
fn without_targets<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("target."))
        .collect()
}

#[test]
fn replayed_freepbx_shapes_name_no_local_channel() {
    for (name, want, want_legs) in [
        (
            "an_extension_reached_through_a_local_channel",
            without_targets(scenarios::FPBX_EXTENSION),
            vec![
                &[
                    "target.added target=102",
                    "target.ringing target=102",
                    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
                ][..],
            ],
        ),
        (
            "a_ring_group_of_local_legs",
            scenarios::FPBX_RING_GROUP.to_vec(),
            vec![scenarios::RING_GROUP_LOSER, scenarios::RING_GROUP_WINNER],
        ),
        (
            "a_queue_whose_members_are_local_channels",
            scenarios::FPBX_QUEUE.to_vec(),
            vec![scenarios::QUEUE_LOSER, scenarios::QUEUE_WINNER],
        ),
        (
            "voicemail_behind_a_local_channel_is_the_pbx_picking_up",
            without_targets(scenarios::FPBX_VOICEMAIL),
            vec![&scenarios::FPBX_VOICEMAIL[1..3]],
        ),
        (
            "a_directed_pickup_names_the_phone_that_picked_up",
            scenarios::FPBX_PICKUP.to_vec(),
            vec![scenarios::RING_GROUP_LOSER],
        ),
        (
            "a_blind_transfer_between_phones_behind_local_channels",
            scenarios::FPBX_BLIND_TRANSFER.to_vec(),
            scenarios::FPBX_TRANSFER_LEGS.to_vec(),
        ),
        (
            "an_attended_transfer_between_phones_behind_local_channels",
            scenarios::FPBX_ATTENDED_TRANSFER.to_vec(),
            scenarios::FPBX_TRANSFER_LEGS.to_vec(),
        ),
    ] {
        let events = replay(name);
        assert_no_local_party(&events);
        assert_one_cdr_per_call(&events);
        let (rest, legs) = legs_by_channel(&events, &call_from(&events, "101"));
        assert_seq(&rest, &want);
        assert_legs(&legs, &want_legs);
    }
}

#[test]
fn replayed_follow_me_answered_only_when_the_mobile_accepts() {
    let events = replay("follow_me_rings_the_desk_then_the_mobile_which_accepts");
    assert_no_local_party(&events);
    let (rest, _) = legs_by_channel(&events, &call_from(&events, "101"));
    assert_seq(&rest, scenarios::FPBX_FOLLOW_ME_ACCEPTED);
    let events = replay("follow_me_to_a_mobile_that_declines_at_the_prompt_is_not_answered");
    assert_no_local_party(&events);
    let (rest, legs) = legs_by_channel(&events, &call_from(&events, "101"));
    let rest: Vec<String> = rest
        .into_iter()
        .filter(|l| !l.starts_with("call.failed"))
        .collect();
    assert_seq(&rest, scenarios::FPBX_FOLLOW_ME_DECLINED);
    assert_legs(&legs, &[scenarios::FPBX_FOLLOW_ME_MOBILE_DECLINED]);
}

#[test]
fn replayed_click_to_dial_is_one_call_from_the_phone_to_the_destination() {
    let events = replay("click_to_dial_by_originate_of_a_local_channel");
    assert_no_local_party(&events);
    let call = call_from(&events, "102");
    let (rest, legs) = legs_by_channel(&events, &call);
    assert_seq(&rest, scenarios::FPBX_ORIGINATE);
    assert_legs(&legs, &[scenarios::FPBX_ORIGINATE_LEG]);
    assert_seq(
        &call_of(
            "click_to_dial_to_a_busy_phone_fails_though_the_first_phone_answered",
            "102",
        ),
        scenarios::ORIGINATE_BUSY,
    );
}

/// Asterisk 18.26.4 (no `TechCause`) recorded by the live suite (`LAB_ASTERISK=18`): a
/// refusal's cause comes from the leg's own HangupRequest, a caller's CANCEL from the
/// caller's, and each ends as on Asterisk 22; a chan_sip phone's call is a call like any
/// other.
#[test]
fn replayed_asterisk_18_refusals_and_cancel_end_as_on_22() {
    for (code, cause, disposition) in scenarios::REFUSALS {
        let want = scenarios::rejected(code, cause, disposition);
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_seq(&call_101(&format!("asterisk18/rejected_{code}")), &want);
    }
    assert_seq(
        &call_101("asterisk18/a_caller_who_cancels_while_it_rings_ends_the_call_normally"),
        scenarios::CALLER_CANCELS,
    );
    // A chan_sip phone's call.
    let events = replay("asterisk18/a_chan_sip_phone_registers_and_calls_a_pjsip_phone");
    let want = scenarios::answered_from("107");
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    assert_seq(&of_call(&events, &call_from(&events, "107")), &want);
}

/// How each dialect tells the end of `call_id`: native `answered`, Routr's `hangupCause`,
/// whether Enswitch's feed has an `answer` for it, and PortSIP v22's `call_cdr`
/// `call_status` with its `talk_duration`.
fn outcome_in_each_dialect(events: &[Event], call_id: &str) -> (bool, String, bool, String, u64) {
    use pbxtap::dialect::{enswitch, portsip, routr};
    let mut buf = Encoded::new();
    let mine = |ev: &&Event| ev.body.call_id() == Some(call_id);
    let ended = events
        .iter()
        .filter(mine)
        .find_map(|ev| match &ev.body {
            Body::CallEnded(e) => Some((ev, e.answered)),
            _ => None,
        })
        .expect("a call.ended");
    routr::encode(
        ended.0,
        &routr::Context {
            domain: "pbx",
            metadata: &[],
            endpoints: &[],
            prefix: "",
        },
        &mut buf,
    )
    .unwrap();
    let routr: Value = serde_json::from_slice(&buf).unwrap();
    let enswitch_answer = events
        .iter()
        .filter(mine)
        .any(|ev| enswitch::event_name(&ev.body) == "answer");
    let ctx = portsip::Context {
        version: portsip::Version::V22,
        domain: "pbx",
        tenant_id: "1",
        tenant_name: "lab",
    };
    let mut state = portsip::State::default();
    let mut cdr = None;
    for ev in events {
        let seen = state.observe(ev);
        let mut emit = |_: &portsip::Route, b: &[u8]| {
            let v: Value = serde_json::from_slice(b).unwrap();
            if v["event_type"] == "call_cdr" && v["call_id"] == call_id {
                cdr = Some(v);
            }
        };
        portsip::encode(
            ev,
            &seen,
            &state,
            &ctx,
            &mut portsip::Out::new(&mut buf, &mut emit),
        )
        .unwrap();
    }
    let cdr = cdr.expect("a PortSIP call_cdr");
    let talk = cdr["talk_duration"]
        .as_u64()
        .or_else(|| cdr["talk_duration"].as_str().and_then(|t| t.parse().ok()))
        .unwrap_or(0);
    (
        ended.1,
        routr["hangupCause"].as_str().unwrap_or("").to_string(),
        enswitch_answer,
        cdr["call_status"].as_str().unwrap_or("").to_string(),
        talk,
    )
}

/// `answered`, a caller's cancel and a busy destination mean the same in every dialect,
/// on the shapes where they used to differ (a leg answered behind a Local channel but
/// never connected, a click-to-dial whose first phone answered).
#[test]
fn replayed_answered_cancel_and_busy_agree_across_dialects() {
    for (name, from, answered, hangup_cause, status) in [
        (
            "follow_me_rings_the_desk_then_the_mobile_which_accepts",
            "101",
            true,
            "NORMAL_CLEARING",
            "answered",
        ),
        (
            "follow_me_to_a_mobile_that_declines_at_the_prompt_is_not_answered",
            "101",
            false,
            "NO_ANSWER",
            "noanswer",
        ),
        (
            "click_to_dial_to_a_busy_phone_fails_though_the_first_phone_answered",
            "102",
            false,
            "USER_BUSY",
            "fail",
        ),
        (
            "a_caller_who_cancels_while_it_rings_ends_the_call_normally",
            "101",
            false,
            // Routr's own name for a CANCEL (it counts as 200).
            "NORMAL_CLEARING",
            "noanswer",
        ),
        (
            "asterisk18/a_caller_who_cancels_while_it_rings_ends_the_call_normally",
            "101",
            false,
            // Routr's own name for a CANCEL (it counts as 200).
            "NORMAL_CLEARING",
            "noanswer",
        ),
        (
            // No party answered, the PBX did: no `answer` for Enswitch, a call that got
            // through (200) for Routr, `answered` with no talk for PortSIP, as PortSIP says
            // of its own voicemail.
            "voicemail_behind_a_local_channel_is_the_pbx_picking_up",
            "101",
            false,
            "NORMAL_CLEARING",
            "answered",
        ),
    ] {
        let events = replay_events(name);
        let json = replay(name);
        let call = call_from(&json, from);
        let (native, routr, enswitch, portsip, talk) = outcome_in_each_dialect(&events, &call);
        assert_eq!(
            (native, routr.as_str(), enswitch, portsip.as_str()),
            (answered, hangup_cause, answered, status),
            "{name}"
        );
        assert_eq!(talk > 0, answered, "{name}: PortSIP talk_duration {talk}");
    }
}

/// A queue call's `billsec` is Asterisk's `TalkTime` (`AgentComplete`), not the replay's
/// clock (a message every 100 ms here), and its wait Asterisk's `HoldTime`.
#[test]
fn replayed_queue_call_bills_asterisks_talk_time() {
    let events = replay("a_queue_call_answered_after_a_wait");
    let call = call_from(&events, "101");
    let of = |n: &str| {
        events
            .iter()
            .find(|e| common::sequence::name(e) == n && e["call_id"] == call)
            .unwrap()
    };
    // The recording's AgentComplete says TalkTime 2, HoldTime 3.
    assert_eq!(of("call.ended")["billsec"], 2, "{}", of("call.ended"));
    assert_eq!(
        of("queue.caller_left")["waited"],
        3,
        "{}",
        of("queue.caller_left")
    );
}
