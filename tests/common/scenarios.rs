//! What a consumer receives for each scenario of the live suite, shown as in
//! `common::sequence`: asserted against the real Asterisk (`tests/live_asterisk.rs`) and
//! against its recordings (`tests/live_replay.rs`). A `*` stands for text that Asterisk
//! varies from run to run.

/// `a_call_answered_and_hung_up_by_the_caller`.
pub const ANSWERED_CALLER_HANGS_UP: &[&str] = &[
    "call.started from=101 to=102 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=102 disposition=ANSWERED",
];

/// `a_call_answered_and_hung_up_by_the_callee`.
pub const ANSWERED_CALLEE_HANGS_UP: &[&str] = &[
    "call.started from=101 to=102 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=102 disposition=ANSWERED",
];

/// `a_caller_who_cancels_while_it_rings_ends_the_call_normally`.
pub const CALLER_CANCELS: &[&str] = &[
    "call.started from=101 to=102 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=487",
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=487 answered=false",
    "call.cdr source=101 destination=102 disposition=NO ANSWER",
];

/// `a_call_nobody_answers_ends_at_the_dial_timeout_as_no_answer`.
pub const NO_ANSWER: &[&str] = &[
    "call.started from=101 to=402 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    // sip_code: what the caller is told for a no-answer (480, RFC 3398).
    "target.noanswer target=102 cause=19 cause_name=NO_ANSWER sip_code=480",
    "call.noanswer target=102",
    "target.ended target=102 cause=19 cause_name=NO_ANSWER sip_code=480",
    "call.ended from=101 to=402 cause=19 cause_name=NO_ANSWER sip_code=480 answered=false",
    "call.cdr source=101 destination=402 disposition=NO ANSWER",
];

/// `a_ring_group_where_one_of_two_phones_answers`.
pub const RING_GROUP_LOSER: &[&str] = &[
    "target.added target=102",
    "target.ringing target=102",
    "target.ended target=102 cause=26 cause_name=ANSWERED_ELSEWHERE sip_code=487",
];

/// `a_ring_group_where_one_of_two_phones_answers`.
pub const RING_GROUP: &[&str] = &[
    "call.started from=101 to=600 direction=internal",
    "call.routed target=*",
    "call.ringing target=*",
    "call.answered target=103",
    "call.ended from=101 to=600 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=600 disposition=ANSWERED",
];

/// `a_queue_call_answered_after_a_wait`.
pub const QUEUE_LOSER: &[&str] = &[
    "target.added target=103",
    "target.ringing target=103",
    "target.ended target=103 cause=26 cause_name=ANSWERED_ELSEWHERE sip_code=487",
];

/// `a_queue_call_answered_after_a_wait`.
pub const QUEUE_ANSWERED: &[&str] = &[
    "call.started from=101 to=8001 direction=internal",
    "queue.caller_joined queue=lab-queue caller=101",
    "call.routed target=*",
    "call.ringing target=*",
    "call.answered target=102",
    "queue.caller_left queue=lab-queue caller=101 reason=answered",
    "call.ended from=101 to=8001 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=8001 disposition=ANSWERED",
];

/// `a_queue_caller_who_gives_up_and_one_past_the_sla`.
pub const QUEUE_ABANDON_MEMBER: &[&str] =
    &["target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=487"];

/// `a_queue_caller_who_gives_up_and_one_past_the_sla`.
pub const QUEUE_ABANDON: &[&str] = &[
    "call.started from=101 to=8001 direction=internal",
    "queue.caller_joined queue=lab-queue caller=101",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "queue.sla_breached queue=lab-queue caller=101 waited=2",
    "queue.caller_left queue=lab-queue caller=101 reason=abandoned",
    "call.ended from=101 to=8001 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=false",
    "call.cdr source=101 destination=8001 disposition=NO ANSWER",
];

/// `a_blind_transfer_by_refer`: the transferor's leg, which ends (its phone sends BYE
/// once the transfer is under way) concurrently with the dial to the new target.
pub const BLIND_TRANSFER_TRANSFEROR: &[&str] =
    &["target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200"];

/// `a_blind_transfer_by_refer`: the rest.
pub const BLIND_TRANSFER: &[&str] = &[
    "call.started from=101 to=102 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "call.rerouted target=103",
    "target.added target=103",
    "target.ringing target=103",
    "target.ended target=103 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=* disposition=ANSWERED",
];

/// `hold_and_unhold_by_re_invite`.
pub const HOLD_UNHOLD: &[&str] = &[
    "call.started from=101 to=102 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "call.held aor=101 peer_aor=102",
    "call.unheld aor=101 peer_aor=102",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=102 disposition=ANSWERED",
];

/// `a_confbridge_with_two_callers`.
pub const CONFBRIDGE_FIRST: &[&str] = &[
    "call.started from=101 to=700 direction=internal",
    "call.ended from=101 to=700 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=700 disposition=ANSWERED",
];

/// `a_confbridge_with_two_callers`.
pub const CONFBRIDGE_SECOND: &[&str] = &[
    "call.started from=104 to=700 direction=internal",
    "call.ended from=104 to=700 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=104 destination=700 disposition=ANSWERED",
];

/// `a_call_parked_and_hung_up_in_the_lot`.
pub const PARKED: &[&str] = &[
    "call.started from=101 to=102 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "call.rerouted target=70",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=102 disposition=ANSWERED",
];

/// `an_attended_transfer_by_ami_atxfer`: the transferor's leg, whose hang-up completes the
/// transfer, concurrently with the transfer's own events.
pub const ATTENDED_TRANSFER_TRANSFEROR: &[&str] =
    &["target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200"];

/// `an_attended_transfer_by_ami_atxfer`: the rest.
pub const ATTENDED_TRANSFER: &[&str] = &[
    "call.started from=101 to=102 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "call.held aor=102 peer_aor=101",
    "target.added target=103",
    "target.ringing target=103",
    "call.rerouted target=103",
    "target.ended target=103 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=102 disposition=ANSWERED",
];

/// `a_call_made_with_ami_originate`.
pub const ORIGINATE_SECOND: &[&str] =
    &["target.ended target=103 cause=16 cause_name=NORMAL_CLEARING sip_code=200"];

/// `a_call_made_with_ami_originate`.
pub const ORIGINATE: &[&str] = &[
    "call.started from=102 to=s direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "target.added target=103",
    "target.ringing target=103",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=102 to=s cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=102 destination=103 disposition=ANSWERED",
];

/// `a_manager_reload_keeps_pbxtap_connected_and_loses_nothing`.
pub const MANAGER_RELOAD: &[&str] = &[
    "call.started from=101 to=102 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=102 disposition=ANSWERED",
];

/// `a_queue_caller_who_waits_past_the_sla_and_is_answered`.
pub const QUEUE_PAST_SLA_ANSWERED: &[&str] = &[
    "call.started from=101 to=8001 direction=internal",
    "queue.caller_joined queue=lab-queue caller=101",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "queue.sla_breached queue=lab-queue caller=101 waited=2",
    "call.answered target=102",
    "queue.caller_left queue=lab-queue caller=101 reason=answered",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=101 to=8001 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=8001 disposition=ANSWERED",
];

/// `a_parked_call_retrieved_from_the_lot`.
pub const PARKED_RETRIEVED: &[&str] = &[
    "call.started from=101 to=102 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "call.rerouted target=70",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    // 103 picked it up from slot 71 (UnParkedCall).
    "call.rerouted target=103",
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=101 destination=102 disposition=ANSWERED",
];

/// `a_parked_call_retrieved_from_the_lot`.
pub const RETRIEVER: &[&str] = &[
    "call.started from=103 to=71 direction=internal",
    "call.ended from=103 to=71 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true",
    "call.cdr source=103 destination=71 disposition=ANSWERED",
];

/// `a_ring_group_where_one_of_two_phones_answers`: the leg that answered.
pub const RING_GROUP_WINNER: &[&str] = &[
    "target.added target=103",
    "target.ringing target=103",
    "target.ended target=103 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
];

/// `a_queue_call_answered_after_a_wait`: the member who answered.
pub const QUEUE_WINNER: &[&str] = &[
    "target.added target=102",
    "target.ringing target=102",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
];

/// A callee that refuses with SIP `code`: `cause` as `cause=N cause_name=NAME`, and the
/// CDR's disposition (Asterisk's, which says NO ANSWER for every refusal but 486).
pub fn rejected(code: &str, cause: &str, disposition: &str) -> Vec<String> {
    vec![
        "call.started from=101 to=102 direction=internal".into(),
        "call.routed target=102".into(),
        "target.added target=102".into(),
        "target.ringing target=102".into(),
        "call.ringing target=102".into(),
        format!("target.failed target=102 {cause} sip_code={code}"),
        format!("call.failed target=102 {cause} sip_code={code}"),
        format!("target.ended target=102 {cause} sip_code={code}"),
        format!("call.ended from=101 to=102 {cause} sip_code={code} answered=false"),
        format!("call.cdr source=101 destination=102 disposition={disposition}"),
    ]
}
