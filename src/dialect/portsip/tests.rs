use super::*;
use crate::event::*;

fn ctx(version: Version) -> Context<'static> {
    Context {
        version,
        domain: "portsip.io",
        tenant_id: "236047118140313600",
        tenant_name: "Acme",
    }
}

fn ev(secs: u64, body: Body) -> Event {
    Event::new(secs * 1_000_000, &text("pbx1"), body)
}

/// Observes `e` and encodes it: the messages, each with its route.
fn run(
    state: &mut State,
    e: &Event,
    version: Version,
) -> std::vec::Vec<(std::string::String, Route)> {
    let seen = state.observe(e);
    let mut got = std::vec::Vec::new();
    let mut emit = |r: &Route, b: &[u8]| {
        got.push((
            std::string::String::from_utf8(b.to_vec()).unwrap(),
            r.clone(),
        ))
    };
    let mut buf = Encoded::new();
    encode(
        e,
        &seen,
        state,
        &ctx(version),
        &mut Out::new(&mut buf, &mut emit),
    )
    .unwrap();
    got
}

fn one(state: &mut State, e: &Event, version: Version) -> (std::string::String, Route) {
    let mut got = run(state, e, version);
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}

fn started() -> Event {
    ev(
        1632670771,
        Body::CallStarted(CallStarted {
            call_id: text("rjFyDxQSbXPxXAd1IR8W-g.."),
            session_id: text("494533487177502720"),
            from: text("102"),
            to: text("103"),
            direction: "internal",
            ..Default::default()
        }),
    )
}

const ID: &str = "rjFyDxQSbXPxXAd1IR8W-g..";

fn target(call_id: &str, target: &str) -> CallTarget {
    CallTarget {
        call_id: text(call_id),
        target: text(target),
        ..Default::default()
    }
}

fn leg(target: &str, sip_code: u16) -> TargetLeg {
    TargetLeg {
        call_id: text(ID),
        target: text(target),
        contact: text(&format!("PJSIP/{target}-00000001")),
        sip_code,
        ..Default::default()
    }
}

fn registration(contact: &str) -> Registration {
    Registration {
        aor: text("102"),
        contact: text(contact),
        expires: 300,
        user_agent: text("Test SIPMaster for IOS"),
        received_from: text("113.246.194.98:10061"),
        ..Default::default()
    }
}

#[test]
fn v16_call_messages_have_the_seed_shape() {
    let mut st = State::default();
    let (json, route) = one(&mut st, &started(), Version::V16);
    assert_eq!(
        json,
        r#"{"call_id":"rjFyDxQSbXPxXAd1IR8W-g..","callee":"sip:103@portsip.io","caller":"sip:102@portsip.io","caller_display_name":"","cdr_id":"rjFyDxQSbXPxXAd1IR8W-g..","direction":"ext","event_type":"call_start","request_id":"0","session_id":"494533487177502720","tenant_id":"236047118140313600","time":"1632670771"}"#
    );
    assert_eq!(route.topic, Topic::ExtensionEvents);
    assert!(route.concerns("102") && route.concerns("103") && !route.concerns("104"));
    let (json, _) = one(
        &mut st,
        &ev(1632671262, Body::CallAnswered(target(ID, "103"))),
        Version::V16,
    );
    assert_eq!(
        json,
        r#"{"call_id":"rjFyDxQSbXPxXAd1IR8W-g..","call_target":"sip:103@portsip.io","callee":"sip:103@portsip.io","caller":"sip:102@portsip.io","event_type":"call_established","session_id":"494533487177502720","tenant_id":"236047118140313600","time":"1632671262"}"#
    );
    let failed = Body::CallFailed(CallFailed {
        call_id: text(ID),
        target: text("104"),
        sip_code: 480,
        ..Default::default()
    });
    let (json, route) = one(&mut st, &ev(1632671788, failed), Version::V16);
    assert!(json.contains(r#""call_target":"","callee":"sip:103@portsip.io","caller":"sip:102@portsip.io","event_type":"call_fail","fail_code":480"#), "{json}");
    assert!(route.concerns("104"));
    let (json, _) = one(
        &mut st,
        &ev(
            1632669389,
            Body::CallHeld(CallHold {
                call_id: text(ID),
                aor: text("102"),
                peer_aor: text("103"),
                ..Default::default()
            }),
        ),
        Version::V16,
    );
    assert_eq!(
        json,
        r#"{"aor":"sip:102@portsip.io","call_id":"rjFyDxQSbXPxXAd1IR8W-g..","event_type":"call_hold","peer_aor":"sip:103@portsip.io","session_id":"494533487177502720","tenant_id":"236047118140313600","time":"1632669389"}"#
    );
}

/// A call 102 → 103: two devices ring, one answers, the caller hangs up.
fn answered_call(st: &mut State, version: Version) -> std::vec::Vec<(std::string::String, Route)> {
    for (t, body) in [
        (100, started().body),
        (100, Body::TargetAdded(leg("103", 0))),
        (101, Body::TargetRinging(leg("103", 0))),
        (101, Body::TargetAdded(leg("104", 0))),
        (102, Body::TargetFailed(leg("104", 486))),
        (105, Body::CallAnswered(target(ID, "103"))),
    ] {
        run(st, &ev(t, body), version);
    }
    let ended = Body::CallEnded(CallEnded {
        call_id: text(ID),
        from: text("102"),
        to: text("103"),
        cause: 16,
        sip_code: 200,
        duration: 20,
        billsec: 15,
        answered: true,
        hangup_by: "caller",
        ..Default::default()
    });
    run(st, &ev(120, ended), version)
}

/// A call that ends after the table forgot it still has one of the reference's
/// directions: PortSIP has no word for not knowing.
#[test]
fn a_forgotten_calls_cdr_has_a_documented_direction() {
    let mut st = State::default();
    let ended = Body::CallEnded(CallEnded {
        call_id: text(ID),
        from: text("102"),
        to: text("103"),
        ..Default::default()
    });
    let got = run(&mut st, &ev(120, ended), Version::V22);
    assert_eq!(got.len(), 1, "{got:?}");
    let v: serde_json::Value = serde_json::from_str(&got[0].0).unwrap();
    assert_eq!(v["direction"], "ext", "{v}");
}

#[test]
fn v22_call_cdr_follows_the_event_reference() {
    let mut st = State::default();
    let got = answered_call(&mut st, Version::V22);
    assert_eq!(got.len(), 1, "{got:?}");
    let (json, route) = &got[0];
    assert_eq!(route.topic, Topic::CdrEvents);
    assert_eq!(
        json,
        r#"{"answered_time":"105","call_id":"rjFyDxQSbXPxXAd1IR8W-g..","call_status":"answered","call_targets":[{"answered_time":"105","call_type":"normal_call","callee":"103","caller":"102","cdr_id":"rjFyDxQSbXPxXAd1IR8W-g..","cost":"","destination":"PJSIP/103-00000001","did":"","direction":"internal","end_reason":"caller_disconnected","ended_time":"120","id":"rjFyDxQSbXPxXAd1IR8W-g..","outbound_caller_id":"","ring_duration":"4","ring_time":"101","start_time":"100","status":"answered","status_code":0,"talk_duration":"15","trunk_name":""},{"answered_time":"0","call_type":"normal_call","callee":"104","caller":"102","cdr_id":"rjFyDxQSbXPxXAd1IR8W-g..","cost":"","destination":"PJSIP/104-00000001","did":"","direction":"internal","end_reason":"None","ended_time":"102","id":"rjFyDxQSbXPxXAd1IR8W-g..","outbound_caller_id":"","ring_duration":"0","ring_time":"0","start_time":"101","status":"noanswer","status_code":486,"talk_duration":"0","trunk_name":""}],"callee":"103","callee_domain":"portsip.io","caller":"102","caller_display_name":"","caller_domain":"portsip.io","cdr_id":"rjFyDxQSbXPxXAd1IR8W-g..","did":"","direction":"ext","end_reason":"caller_disconnected","ended_reason":"caller_disconnected","ended_time":"120","event_type":"call_cdr","outbound_caller_id":"","ring_duration":"4","ring_time":"101","session_id":"494533487177502720","start_time":"100","status_code":"0","talk_duration":15,"tenant_id":"236047118140313600","tenant_name":"Acme","trunk_name":"","user_data":""}"#
    );
    assert!(st.call(ID).is_none(), "forgotten once ended");
}

#[test]
fn v16_ends_with_call_ended_and_the_v16_cdr() {
    let mut st = State::default();
    let got = answered_call(&mut st, Version::V16);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].0.contains(r#""event_type":"call_ended""#),
        "{}",
        got[0].0
    );
    let cdr = &got[1].0;
    assert_eq!(got[1].1.topic, Topic::CdrEvents);
    assert!(cdr.starts_with(r#"{"answered_time":"105","call_id":"rjFyDxQSbXPxXAd1IR8W-g..","callee":"103","callee_domain":"portsip.io","caller":"102","caller_display_name":"","caller_domain":"portsip.io","did_cid":"","direction":"ext","ended_reason":"caller_disconnect","ended_time":"120","event_type":"call_cdr""#), "{cdr}");
    assert!(cdr.contains(r#""status_code":"0","tenant_id":"236047118140313600","tenant_name":"Acme","trunk_name":"","user_data":"","call_targets":[{"answered_time":"105","call_type":"normal_call""#), "{cdr}");
    assert!(
        !cdr.contains("call_status") && !cdr.contains("talk_duration"),
        "{cdr}"
    );
}

#[test]
fn unanswered_calls_say_why() {
    let mut st = State::default();
    run(&mut st, &started(), Version::V22);
    let ended = |hangup_by, sip_code, cause| {
        Body::CallEnded(CallEnded {
            call_id: text(ID),
            from: text("102"),
            to: text("103"),
            sip_code,
            cause,
            hangup_by,
            ..Default::default()
        })
    };
    let (json, _) = one(&mut st, &ev(110, ended("caller", 487, 16)), Version::V22);
    assert!(
        json.contains(r#""call_status":"noanswer""#)
            && json.contains(r#""ended_reason":"cancelled""#)
            && json.contains(r#""status_code":"487""#),
        "{json}"
    );
    run(&mut st, &started(), Version::V22);
    let (json, _) = one(&mut st, &ev(110, ended("", 486, 17)), Version::V22);
    assert!(
        json.contains(r#""call_status":"fail""#)
            && json.contains(r#""ended_reason":"None""#)
            && json.contains(r#""status_code":"486""#),
        "{json}"
    );
    // Voicemail or an IVR took it: PortSIP says answered; no party talked.
    run(&mut st, &started(), Version::V22);
    let voicemail = Body::CallEnded(CallEnded {
        call_id: text(ID),
        from: text("102"),
        to: text("103"),
        sip_code: 200,
        cause: 16,
        hangup_by: "caller",
        pbx_answered: true,
        ..Default::default()
    });
    let (json, _) = one(&mut st, &ev(110, voicemail), Version::V22);
    assert!(
        json.contains(r#""call_status":"answered""#)
            && json.contains(r#""ended_reason":"caller_disconnected""#)
            && json.contains(r#""status_code":"0""#)
            && json.contains(r#""talk_duration":0"#),
        "{json}"
    );
    // Ended after the table forgot it: the end event's own parties, no targets.
    let (json, _) = one(&mut st, &ev(110, ended("", 480, 19)), Version::V22);
    assert!(
        json.contains(r#""call_status":"noanswer""#) && json.contains(r#""call_targets":[]"#),
        "{json}"
    );
}

#[test]
fn register_lists_every_contact_and_status_follows_online() {
    let mut st = State::default();
    let a = registration("sip:102@113.246.194.98:10061");
    let b = registration("sip:102@113.246.194.98:10243");
    let got = run(
        &mut st,
        &ev(1632668122, Body::EndpointRegistered(a.clone())),
        Version::V16,
    );
    assert_eq!(got.len(), 2, "register, then status (came online): {got:?}");
    assert_eq!(
        got[0].0,
        r#"{"event_type":"extension_register","extension":"sip:102@portsip.io","extension_id":"102","registration_contacts":[{"contact_uri":"sip:102@113.246.194.98:10061","expires":1632668422,"instance":"","last_update":1632668122,"public_address":"113.246.194.98:10061","received_from":"113.246.194.98:10061","reg_id":0,"user_agent":"Test SIPMaster for IOS"}],"tenant_id":"236047118140313600","time":"1632668122"}"#
    );
    assert_eq!(
        got[1].0,
        r#"{"event_type":"extension_status","extension":"sip:102@portsip.io","presence_note":"","on_call":false,"online":true,"push_online":false,"tenant_id":"236047118140313600","extension_id":"102","time":"1632668122"}"#
    );
    assert!(got[1].1.concerns("102"));
    // A second phone: both listed, no status (still online).
    let got = run(
        &mut st,
        &ev(1632668176, Body::EndpointRegistered(b.clone())),
        Version::V16,
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.matches("contact_uri").count(), 2, "{}", got[0].0);
    // One unplugged: the other still listed, the gone one removed; still online.
    let got = run(
        &mut st,
        &ev(1632668724, Body::EndpointUnregistered(b)),
        Version::V16,
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0]
            .0
            .contains(r#""registration_contacts":[{"contact_uri":"sip:102@113.246.194.98:10061""#),
        "{}",
        got[0].0
    );
    assert!(got[0].0.contains(r#""removed_contacts":[{"contact_uri":"sip:102@113.246.194.98:10243","expires":1632668724"#), "{}", got[0].0);
    // The last one gone: no registration_contacts, and offline.
    let got = run(
        &mut st,
        &ev(1632668800, Body::EndpointUnregistered(a.clone())),
        Version::V16,
    );
    assert!(!got[0].0.contains("registration_contacts"), "{}", got[0].0);
    assert!(got[1].0.contains(r#""online":false"#), "{}", got[1].0);
    // v22 sends only the status, as a list.
    let got = run(
        &mut st,
        &ev(1632668900, Body::EndpointRegistered(a)),
        Version::V22,
    );
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0,
        r#"{"event_type":"extension_status","status":[{"extension":"sip:102@portsip.io","extension_id":"102","call_status":"","online":true,"presence":"ONLINE","presence_note":"","push_online":false,"time":"1632668900"}],"tenant_id":"236047118140313600"}"#
    );
}

#[test]
fn device_state_is_call_status_and_user_presence_is_presence() {
    let mut st = State::default();
    let device = |state| {
        Body::EndpointPresence(Presence {
            extension: text("101"),
            state,
            note: text("INUSE"),
            source: "device",
        })
    };
    let (json, _) = one(&mut st, &ev(1703690276, device("in_use")), Version::V22);
    assert_eq!(
        json,
        r#"{"event_type":"extension_call","extension":"sip:101@portsip.io","call_status":"ON_CALL","tenant_id":"236047118140313600","extension_id":"101","time":"1703690276"}"#
    );
    assert!(
        run(&mut st, &ev(1703690277, device("busy")), Version::V22).is_empty(),
        "no change"
    );
    let (json, _) = one(&mut st, &ev(1703690278, device("available")), Version::V16);
    assert_eq!(
        json,
        r#"{"event_type":"extension_call","extension":"sip:101@portsip.io","on_call":false,"tenant_id":"236047118140313600","extension_id":"101","time":"1703690278"}"#
    );
    let user = |state, note| {
        Body::EndpointPresence(Presence {
            extension: text("101"),
            state,
            note: text(note),
            source: "user",
        })
    };
    let (json, _) = one(
        &mut st,
        &ev(1703690547, user("unavailable", "Driving")),
        Version::V22,
    );
    assert_eq!(
        json,
        r#"{"event_type":"extension_presence","extension":"sip:101@portsip.io","presence":"AWAY","presence_note":"Driving","tenant_id":"236047118140313600","extension_id":"101","time":"1703690547"}"#
    );
    let (json, _) = one(&mut st, &ev(1675136792, user("busy", "dnd")), Version::V16);
    assert_eq!(
        json,
        r#"{"event_type":"extension_presence","extension":"sip:101@portsip.io","note":"dnd","tenant_id":"236047118140313600","time":"1675136792"}"#
    );
    let e = st.extension("101").unwrap();
    assert_eq!(
        (e.presence, e.presence_note.as_str()),
        ("DO_NOT_DISTURB", "")
    );
}

#[test]
fn status_for_a_subscribe_lists_known_and_unknown_extensions() {
    let mut st = State::default();
    st.observe(&ev(5, Body::EndpointRegistered(registration("sip:102@h"))));
    let numbers: std::vec::Vec<std::string::String> = (100..112).map(|n| n.to_string()).collect();
    let numbers: std::vec::Vec<&str> = numbers.iter().map(|s| s.as_str()).collect();
    let mut got = std::vec::Vec::new();
    let mut emit =
        |_: &Route, b: &[u8]| got.push(std::string::String::from_utf8(b.to_vec()).unwrap());
    let mut buf = Encoded::new();
    encode_status(
        &numbers,
        &st,
        &ctx(Version::V22),
        9_000_000,
        &mut Out::new(&mut buf, &mut emit),
    )
    .unwrap();
    assert_eq!(got.len(), 2, "12 extensions, 8 to a message");
    assert_eq!(got[0].matches(r#""online":true"#).count(), 1, "{}", got[0]);
    assert_eq!(got[0].matches(r#""online":false"#).count(), 7);
    let mut got = 0;
    let mut emit = |_: &Route, _: &[u8]| got += 1;
    encode_status(
        &numbers,
        &st,
        &ctx(Version::V16),
        9_000_000,
        &mut Out::new(&mut buf, &mut emit),
    )
    .unwrap();
    assert_eq!(got, 12, "v16: one message per extension");
}

#[test]
fn v22_cdr_events_carry_call_start_and_updates_and_nothing_for_ringing_or_system() {
    let mut st = State::default();
    let (json, route) = one(&mut st, &started(), Version::V22);
    assert_eq!(route.topic, Topic::CdrEvents);
    assert_eq!(
        json,
        r#"{"event_type":"call_start","time":"1632670771","session_id":"494533487177502720","cdr_id":"rjFyDxQSbXPxXAd1IR8W-g..","direction":"internal","user_data":"","call_id":"rjFyDxQSbXPxXAd1IR8W-g..","caller_display_name":"","caller":"102","callee_display_name":"","callee":"103","tenant_id":"236047118140313600","did":"","outbound_caller_id":""}"#
    );
    let (json, _) = one(
        &mut st,
        &ev(1632670775, Body::CallAnswered(target(ID, "PJSIP/104"))),
        Version::V22,
    );
    assert!(
        json.starts_with(r#"{"event_type":"call_update_info","time":"1632670775""#),
        "{json}"
    );
    assert!(
        json.contains(r#""callee":"104""#) && !json.contains("user_data"),
        "{json}"
    );
    for body in [
        Body::CallRinging(CallTarget::default()),
        Body::CallCdr(Cdr::default()),
        Body::AmiConnected(AmiLink::default()),
    ] {
        assert!(run(&mut st, &ev(1, body.clone()), Version::V22).is_empty());
        assert!(run(&mut st, &ev(1, body), Version::V16).is_empty());
    }
}

#[test]
fn queue_events_the_agent_status_and_the_snapshot() {
    let mut st = State::default();
    let joined = QueueCaller {
        queue: text("8001"),
        call_id: text("6763987198342"),
        caller: text("123456"),
        caller_name: text("Thomas Young"),
        position: 2,
        ..Default::default()
    };
    let (json, route) = one(
        &mut st,
        &ev(1676206249, Body::QueueCallerJoined(joined.clone())),
        Version::V16,
    );
    assert_eq!(
        json,
        r#"{"event_type":"queue_caller_status","tenant_id":"236047118140313600","queue_id":"8001","updated_callers":[{"position":"2","session_id":"6763987198342","caller_number":"123456","reason":"enqueue","timestamp":"1676206249","type":"normal"}]}"#
    );
    assert_eq!(route.queue, "8001");
    let agent = |queue, state| {
        Body::QueueAgentStatus(QueueAgent {
            queue: text(queue),
            agent: text("PJSIP/101"),
            state,
            ..Default::default()
        })
    };
    run(
        &mut st,
        &ev(1676206200, agent("8002", "ready")),
        Version::V22,
    );
    let got = run(
        &mut st,
        &ev(1676206249, agent("8001", "in_call")),
        Version::V22,
    );
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0].0,
        r#"{"event_type":"queue_agent_status","queue_id":"8001","tenant_id":"236047118140313600","updated_agents":[{"state":"QUEUE_CALL","agent_extension_number":"101","session_id":"","caller_number":"","caller_name":"","timestamp":"1676206249"}]}"#
    );
    assert_eq!(
        got[1].0,
        r#"{"agent_status":[{"queue_number":"8001","status":"QUEUE_CALL"},{"queue_number":"8002","status":"READY"}],"event_type":"extension_agent_status","extension":"sip:101@portsip.io","extension_id":"101","tenant_id":"236047118140313600","time":"1676206249"}"#
    );
    assert!(got[1].1.concerns("101") && got[1].1.topic == Topic::ExtensionEvents);
    let got = run(
        &mut st,
        &ev(1676206250, agent("8001", "wrap_up")),
        Version::V16,
    );
    assert_eq!(got.len(), 1, "v16 has no extension_agent_status");
    assert!(got[0].0.contains(r#""state":"WRAP_UP""#));
    let (json, _) = one(
        &mut st,
        &ev(
            1676206300,
            Body::QueueSlaBreached(QueueSla {
                queue: text("8001"),
                caller: text("00431334081002"),
                sla_secs: 90,
                ..Default::default()
            }),
        ),
        Version::V22,
    );
    assert_eq!(
        json,
        r#"{"event_type":"queue_sla_breached","queue_id":"8001","tenant_id":"236047118140313600","caller":"00431334081002","total_callers_breached":1,"sla_time_secs":90,"waiting_callers":1,"timestamp":"1676206300"}"#
    );
    let q = st.queues().next().unwrap();
    let mut snap = std::vec::Vec::new();
    encode_queue_status(q, &ctx(Version::V22), &mut snap).unwrap();
    assert_eq!(
        std::str::from_utf8(&snap).unwrap(),
        r#"{"event_type":"queue_status","tenant_id":"236047118140313600","queue_id":"8001","queue_number":"8001","queue_name":"8001","waiting_list":[{"position":"2","session_id":"6763987198342","caller_number":"123456","caller_name":"Thomas Young","timestamp":"1676206249","type":"normal"}],"agents":[{"state":"WRAP_UP","agent_extension_number":"101","session_id":"","caller_number":"","caller_name":"","timestamp":"1676206250"}]}"#
    );
    let left = QueueCaller {
        reason: "answered",
        ..joined
    };
    let (json, _) = one(
        &mut st,
        &ev(1676206260, Body::QueueCallerLeft(left)),
        Version::V22,
    );
    assert!(json.contains(r#""reason":"agent_answered""#), "{json}");
    assert!(st.queues().next().unwrap().waiting.is_empty());
}

#[test]
fn tables_stay_bounded_and_the_largest_messages_fit() {
    let mut st = State::default();
    let long = "\u{1}".repeat(200);
    for i in 0..(MAX_QUEUES + 4) {
        for j in 0..(MAX_QUEUE_WAITING + 4) {
            st.observe(&ev(
                1,
                Body::QueueCallerJoined(QueueCaller {
                    queue: text(&format!("{i}{long}")),
                    call_id: text(&format!("{j}{long}")),
                    caller: text(&long),
                    caller_name: text(&long),
                    position: u32::MAX,
                    ..Default::default()
                }),
            ));
            st.observe(&ev(
                1,
                Body::QueueAgentStatus(QueueAgent {
                    queue: text(&format!("{i}{long}")),
                    agent: text(&format!("{j}{long}")),
                    state: "ready",
                    ..Default::default()
                }),
            ));
        }
    }
    for i in 0..(MAX_EXTENSIONS + 10) {
        for c in 0..(MAX_CONTACTS + 2) {
            st.observe(&ev(
                c as u64,
                Body::EndpointRegistered(Registration {
                    aor: text(&format!("{i}{long}")),
                    contact: text(&format!("{c}{long}")),
                    user_agent: text(&long),
                    received_from: text(&long),
                    ..Default::default()
                }),
            ));
        }
    }
    assert_eq!(st.extensions().count(), MAX_EXTENSIONS);
    assert!(st.extensions().all(|e| e.contacts.len() == MAX_CONTACTS));
    for i in 0..(MAX_CALLS + 10) {
        let id = format!("{i}{long}");
        st.observe(&ev(
            i as u64,
            Body::CallStarted(CallStarted {
                call_id: text(&id),
                from: text(&long),
                from_name: text(&long),
                to: text(&long),
                channel: text(&long),
                direction: "inbound",
                ..Default::default()
            }),
        ));
        for t in 0..(MAX_TARGETS + 2) {
            st.observe(&ev(
                i as u64,
                Body::TargetAdded(TargetLeg {
                    call_id: text(&id),
                    target: text(&format!("{t}{long}")),
                    contact: text(&long),
                    ..Default::default()
                }),
            ));
        }
    }
    let first: Id = text(&format!("0{long}"));
    assert!(st.call(&first).is_none(), "the oldest forgotten");
    let last: Id = text(&format!("{}{long}", MAX_CALLS + 9));
    assert_eq!(st.call(&last).unwrap().targets.len(), MAX_TARGETS);
    let ctx = Context {
        version: Version::V22,
        domain: &long,
        tenant_id: &long,
        tenant_name: &long,
    };
    // The largest CDR in both versions, the largest register, and statuses, all fit.
    for version in [Version::V16, Version::V22] {
        let ctx = Context { version, ..ctx };
        let mut st2 = State::default();
        let ended = Body::CallEnded(CallEnded {
            call_id: text(&last),
            ..Default::default()
        });
        let call = st.call(&last).unwrap().clone();
        let seen = Observed {
            ended: Some(call),
            ..Default::default()
        };
        let mut n = 0;
        let mut emit = |_: &Route, _: &[u8]| n += 1;
        let mut buf = Encoded::new();
        encode(
            &ev(1, ended),
            &seen,
            &st2,
            &ctx,
            &mut Out::new(&mut buf, &mut emit),
        )
        .unwrap();
        let e = st.extensions().next().unwrap().number.clone();
        let reg = ev(
            1,
            Body::EndpointRegistered(Registration {
                aor: e.clone(),
                ..Default::default()
            }),
        );
        let seen = st2.observe(&reg);
        encode(&reg, &seen, &st, &ctx, &mut Out::new(&mut buf, &mut emit)).unwrap();
        let all: std::vec::Vec<&str> = st.extensions().map(|e| e.number.as_str()).collect();
        encode_status(&all, &st, &ctx, 1, &mut Out::new(&mut buf, &mut emit)).unwrap();
    }
    let mut snap = std::vec::Vec::new();
    for q in st.queues() {
        assert_eq!(q.waiting.len(), MAX_QUEUE_WAITING);
        assert_eq!(q.agents.len(), MAX_QUEUE_AGENTS);
        encode_queue_status(q, &ctx, &mut snap).unwrap();
    }
}
