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
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
    "call.cdr source=101 destination=102 disposition=ANSWERED",
];

/// `ANSWERED_CALLER_HANGS_UP` from another phone, `caller` (chan_sip's 107).
pub fn answered_from(caller: &str) -> Vec<String> {
    ANSWERED_CALLER_HANGS_UP
        .iter()
        .map(|l| {
            l.replace("from=101", &format!("from={caller}"))
                .replace("source=101", &format!("source={caller}"))
        })
        .collect()
}

/// `a_call_answered_and_hung_up_by_the_callee`.
pub const ANSWERED_CALLEE_HANGS_UP: &[&str] = &[
    "call.started from=101 to=102 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
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
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=487 answered=false pbx_answered=false",
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
    "call.ended from=101 to=402 cause=19 cause_name=NO_ANSWER sip_code=480 answered=false pbx_answered=false",
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
    "call.ended from=101 to=600 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
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
    "call.ended from=101 to=8001 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=true",
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
    "call.ended from=101 to=8001 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=false pbx_answered=true",
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
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
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
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
    "call.cdr source=101 destination=102 disposition=ANSWERED",
];

/// `a_confbridge_with_two_callers`: a conference is the PBX's, no party answers.
pub const CONFBRIDGE_FIRST: &[&str] = &[
    "call.started from=101 to=700 direction=internal",
    "call.ended from=101 to=700 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=false pbx_answered=true",
    "call.cdr source=101 destination=700 disposition=ANSWERED",
];

/// `a_confbridge_with_two_callers`.
pub const CONFBRIDGE_SECOND: &[&str] = &[
    "call.started from=104 to=700 direction=internal",
    "call.ended from=104 to=700 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=false pbx_answered=true",
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
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
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
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
    "call.cdr source=101 destination=102 disposition=ANSWERED",
];

/// `a_call_made_with_ami_originate`.
pub const ORIGINATE_SECOND: &[&str] =
    &["target.ended target=103 cause=16 cause_name=NORMAL_CLEARING sip_code=200"];

/// `a_call_made_with_ami_originate`: click-to-dial. The phone rung first (102) is the
/// caller, not a target; the call goes to where it then dials, and is answered when that
/// answers.
pub const ORIGINATE: &[&str] = &[
    "call.started from=102 to=103 direction=internal",
    "call.routed target=103",
    "target.added target=103",
    "target.ringing target=103",
    "call.ringing target=103",
    "call.answered target=103",
    "call.ended from=102 to=103 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
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
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
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
    "call.ended from=101 to=8001 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=true",
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
    "call.ended from=101 to=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
    "call.cdr source=101 destination=102 disposition=ANSWERED",
];

/// `a_parked_call_retrieved_from_the_lot`: the retriever's own call to the slot, which
/// the PBX picks up (the parked call is the other call's).
pub const RETRIEVER: &[&str] = &[
    "call.started from=103 to=71 direction=internal",
    "call.ended from=103 to=71 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=false pbx_answered=true",
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

/// The refusals the live suite places, each as `(code, cause, disposition)` for
/// [`rejected`]: Asterisk maps every code but 486 to NO ANSWER in its CDR.
pub const REFUSALS: [(&str, &str, &str); 4] = [
    ("486", "cause=17 cause_name=USER_BUSY", "BUSY"),
    ("404", "cause=1 cause_name=UNALLOCATED", "NO ANSWER"),
    ("603", "cause=21 cause_name=CALL_REJECTED", "NO ANSWER"),
    ("480", "cause=19 cause_name=NO_ANSWER", "NO ANSWER"),
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
        format!(
            "call.ended from=101 to=102 {cause} sip_code={code} answered=false pbx_answered=false"
        ),
        format!("call.cdr source=101 destination=102 disposition={disposition}"),
    ]
}

// The FreePBX-shaped dialplan (`tests/freepbx_live.rs`): every phone is reached through a
// Local channel, which is never a party.

/// `an_extension_reached_through_a_local_channel` (5102: Gosub, then Local/102@fpbx-ext).
pub const FPBX_EXTENSION: &[&str] = &[
    "call.started from=101 to=5102 direction=internal",
    "call.routed target=102",
    "target.added target=102",
    "target.ringing target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=101 to=5102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
    "call.cdr source=101 destination=5102 disposition=ANSWERED",
];

/// `voicemail_behind_a_local_channel_is_the_pbx_picking_up` (5900): the dialplan answers
/// the Local leg itself; its extension is the target, with no contact; no party answered.
pub const FPBX_VOICEMAIL: &[&str] = &[
    "call.started from=101 to=5900 direction=internal",
    "target.added target=102",
    "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    "call.ended from=101 to=5900 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=false pbx_answered=true",
    "call.cdr source=101 destination=5900 disposition=ANSWERED",
];

/// `a_ring_group_of_local_legs` (5600): 103 answers, 102 loses. The legs' own events are
/// checked apart (`RING_GROUP_LOSER`, `RING_GROUP_WINNER`): they race each other.
pub const FPBX_RING_GROUP: &[&str] = &[
    "call.started from=101 to=5600 direction=internal",
    "call.routed target=*",
    "call.ringing target=*",
    "call.answered target=103",
    "call.ended from=101 to=5600 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
    "call.cdr source=101 destination=5600 disposition=ANSWERED",
];

/// `a_queue_whose_members_are_local_channels` (5800): 102 answers, 103 loses (the legs as
/// in `QUEUE_WINNER`, `QUEUE_LOSER`).
pub const FPBX_QUEUE: &[&str] = &[
    "call.started from=101 to=5800 direction=internal",
    "queue.caller_joined queue=fpbx-queue caller=101",
    "call.routed target=*",
    "call.ringing target=*",
    "call.answered target=102",
    "queue.caller_left queue=fpbx-queue caller=101 reason=answered",
    "call.ended from=101 to=5800 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=true",
    "call.cdr source=101 destination=5800 disposition=ANSWERED",
];

/// `follow_me_rings_the_desk_then_the_mobile_which_accepts` (570201): the desk phone alone
/// for 3 s, then the desk phone and the mobile through the trunk; the mobile's owner
/// accepts at the prompt. The call's own events; each leg's are checked apart
/// (`FPBX_FOLLOW_ME_LEGS`): the second round's legs race each other.
pub const FPBX_FOLLOW_ME_ACCEPTED: &[&str] = &[
    "call.started from=101 to=570201 direction=internal",
    "call.routed target=102",
    "call.ringing target=102",
    "call.noanswer target=102",
    "call.rerouted target=*",
    "call.answered target=0155501",
    "call.ended from=101 to=570201 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
    "call.cdr source=101 destination=570201 disposition=ANSWERED",
];

/// `follow_me_rings_the_desk_then_the_mobile_which_accepts`: each leg, by its channel.
pub const FPBX_FOLLOW_ME_LEGS: &[&[&str]] = &[
    // The pre-ring: the follow-me's first Dial timed out.
    &[
        "target.added target=102",
        "target.ringing target=102",
        "target.noanswer target=102 cause=19 cause_name=NO_ANSWER sip_code=480",
        "target.ended target=102 cause=19 cause_name=NO_ANSWER sip_code=480",
    ],
    &[
        "target.added target=102",
        "target.ringing target=102",
        "target.ended target=102 cause=26 cause_name=ANSWERED_ELSEWHERE sip_code=487",
    ],
    &[
        "target.added target=0155501",
        "target.ringing target=0155501",
        "target.ended target=0155501 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    ],
];

/// `follow_me_to_a_mobile_that_declines_at_the_prompt_is_not_answered` (570200, the desk
/// phone not registered): the mobile's leg answered and was dropped at the acceptance
/// prompt; the caller was never connected.
pub const FPBX_FOLLOW_ME_MOBILE_DECLINED: &[&str] = &[
    "target.added target=0155500",
    "target.ringing target=0155500",
    "target.ended target=0155500 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
];

/// `follow_me_to_a_mobile_that_declines_at_the_prompt_is_not_answered`: the call's own
/// events, but for the desk phone's two refusals (`call.failed target=102 cause=20`), the
/// second of which races the mobile's dial.
pub const FPBX_FOLLOW_ME_DECLINED: &[&str] = &[
    "call.started from=101 to=570200 direction=internal",
    "call.routed target=0155500",
    "call.ringing target=0155500",
    "call.noanswer target=0155500",
    "call.ended from=101 to=570200 cause=19 cause_name=NO_ANSWER sip_code=480 answered=false pbx_answered=false",
    "call.cdr source=101 destination=570200 disposition=FAILED",
];

/// `click_to_dial_by_originate_of_a_local_channel`: Originate rings 102 through
/// Local/102@fpbx-ext, then sends it to 5103. One call from 102 to 5103, answered by 103.
/// The call's own events; its leg's are `FPBX_ORIGINATE_LEG` (102 hangs up, Asterisk hangs
/// 103 up: the leg's end races the call's).
pub const FPBX_ORIGINATE: &[&str] = &[
    "call.started from=102 to=5103 direction=internal",
    "call.routed target=103",
    "call.ringing target=103",
    "call.answered target=103",
    "call.ended from=102 to=5103 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
    "call.cdr source=102 destination=5103 disposition=ANSWERED",
];

/// `click_to_dial_by_originate_of_a_local_channel`: the destination's leg.
pub const FPBX_ORIGINATE_LEG: &[&str] = &[
    "target.added target=103",
    "target.ringing target=103",
    "target.ended target=103 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
];

/// `click_to_dial_to_a_busy_phone_fails_though_the_first_phone_answered`.
pub const ORIGINATE_BUSY: &[&str] = &[
    "call.started from=102 to=103 direction=internal",
    "call.routed target=103",
    "target.added target=103",
    "target.ringing target=103",
    "call.ringing target=103",
    "target.failed target=103 cause=17 cause_name=USER_BUSY sip_code=486",
    "call.failed target=103 cause=17 cause_name=USER_BUSY sip_code=486",
    "target.ended target=103 cause=17 cause_name=USER_BUSY sip_code=486",
    "call.ended from=102 to=103 cause=17 cause_name=USER_BUSY sip_code=486 answered=false pbx_answered=false",
    // Asterisk's own record, as it sent it: the Originate's leg was answered.
    "call.cdr source=102 destination=103 disposition=ANSWERED",
];

/// `a_directed_pickup_names_the_phone_that_picked_up`: 103 dials **102 while 102 rings
/// for 101's call. The call's own events; 102's leg (`RING_GROUP_LOSER`: answered
/// elsewhere) ends as the answer is told, in either order.
pub const FPBX_PICKUP: &[&str] = &[
    "call.started from=101 to=5102 direction=internal",
    "call.routed target=102",
    "call.ringing target=102",
    "call.answered target=103",
    "call.ended from=101 to=5102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
    "call.cdr source=101 destination=5102 disposition=ANSWERED",
];

/// `a_directed_pickup_names_the_phone_that_picked_up`: the picking phone's own call (to
/// the pickup code), answered by the PBX.
pub const FPBX_PICKER: &[&str] = &[
    "call.started from=103 to=**102 direction=internal",
    "call.ended from=103 to=**102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=false pbx_answered=true",
];

/// `a_blind_transfer_between_phones_behind_local_channels`: 102 (behind a Local channel)
/// REFERs 101 to 5103; the call's own events (the legs: `FPBX_TRANSFER_LEGS`).
pub const FPBX_BLIND_TRANSFER: &[&str] = &[
    "call.started from=101 to=5102 direction=internal",
    "call.routed target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "call.rerouted target=5103",
    "call.ended from=101 to=5102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
    "call.cdr source=101 destination=5102 disposition=ANSWERED",
];

/// `an_attended_transfer_between_phones_behind_local_channels`: 102 consults 5103 (Atxfer)
/// and hangs up.
pub const FPBX_ATTENDED_TRANSFER: &[&str] = &[
    "call.started from=101 to=5102 direction=internal",
    "call.routed target=102",
    "call.ringing target=102",
    "call.answered target=102",
    "call.held aor=102 peer_aor=101",
    "call.rerouted target=103",
    "call.ended from=101 to=5102 cause=16 cause_name=NORMAL_CLEARING sip_code=200 answered=true pbx_answered=false",
    "call.cdr source=101 destination=5102 disposition=ANSWERED",
];

/// The two transfers' legs: the transferor's and the new target's, each a phone.
pub const FPBX_TRANSFER_LEGS: &[&[&str]] = &[
    &[
        "target.added target=102",
        "target.ringing target=102",
        "target.ended target=102 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    ],
    &[
        "target.added target=103",
        "target.ringing target=103",
        "target.ended target=103 cause=16 cause_name=NORMAL_CLEARING sip_code=200",
    ],
];
