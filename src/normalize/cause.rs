//! Hangup causes: Q.850 cause names, and the SIP final response each one stands for.

/// The Q.850 name of `cause`, as Asterisk's `ast_cause2str` family names them.
pub fn name(cause: u16) -> &'static str {
    match cause {
        0 => "UNKNOWN",
        1 => "UNALLOCATED",
        2 => "NO_ROUTE_TRANSIT_NET",
        3 => "NO_ROUTE_DESTINATION",
        6 => "CHANNEL_UNACCEPTABLE",
        16 => "NORMAL_CLEARING",
        17 => "USER_BUSY",
        18 => "NO_USER_RESPONSE",
        19 => "NO_ANSWER",
        20 => "SUBSCRIBER_ABSENT",
        21 => "CALL_REJECTED",
        22 => "NUMBER_CHANGED",
        26 => "ANSWERED_ELSEWHERE",
        27 => "DESTINATION_OUT_OF_ORDER",
        28 => "INVALID_NUMBER_FORMAT",
        29 => "FACILITY_REJECTED",
        31 => "NORMAL_UNSPECIFIED",
        34 => "NORMAL_CIRCUIT_CONGESTION",
        38 => "NETWORK_OUT_OF_ORDER",
        41 => "NORMAL_TEMPORARY_FAILURE",
        42 => "SWITCH_CONGESTION",
        44 => "REQUESTED_CHAN_UNAVAIL",
        50 => "FACILITY_NOT_SUBSCRIBED",
        58 => "BEARERCAPABILITY_NOTAVAIL",
        65 => "BEARERCAPABILITY_NOTIMPL",
        66 => "CHAN_NOT_IMPLEMENTED",
        69 => "FACILITY_NOT_IMPLEMENTED",
        81 => "INVALID_CALL_REFERENCE",
        88 => "INCOMPATIBLE_DESTINATION",
        95 => "INVALID_MSG_UNSPECIFIED",
        96 => "MANDATORY_IE_MISSING",
        97 => "MESSAGE_TYPE_NONEXIST",
        102 => "RECOVERY_ON_TIMER_EXPIRE",
        111 => "PROTOCOL_ERROR",
        127 => "INTERWORKING",
        _ => "UNKNOWN",
    }
}

/// The SIP final response a Q.850 cause maps to (RFC 3398 section 8.2.6.1, as Asterisk's
/// chan_pjsip applies it); 0 when there is none. Normal clearing of a call is 200.
pub fn sip_code(cause: u16) -> u16 {
    match cause {
        16 => 200,
        1..=3 => 404,
        17 => 486,
        18 => 408,
        19 => 480,
        20 => 480,
        21 => 403,
        22 => 410,
        26 => 487,
        27 => 502,
        28 => 484,
        29 => 501,
        31 => 480,
        34 | 38 | 41 | 42 | 44 | 58 => 503,
        65 | 66 | 69 => 501,
        88 => 488,
        102 => 504,
        127 => 487,
        _ => 0,
    }
}

/// The SIP response a far end most likely refused a call with, from Asterisk's `Cause`
/// alone (Asterisk before 20.17 / 22.7 / 23.1 tells no `TechCause`): as [`sip_code`], but
/// CALL_REJECTED (21), which Asterisk makes of 401, 403 and 603 alike, is a phone's
/// Decline, 603, the common case.
pub fn refusal_sip_code(cause: u16) -> u16 {
    match cause {
        21 => 603,
        c => sip_code(c),
    }
}

/// The SIP final response a failed `Dial()` stands for, by its DialStatus.
pub fn dial_status_sip_code(status: &str) -> u16 {
    match status {
        "ANSWER" => 200,
        "BUSY" => 486,
        "NOANSWER" => 480,
        "CONGESTION" => 503,
        "CHANUNAVAIL" => 480,
        "CANCEL" => 487,
        _ => 0,
    }
}

/// A cause that means the call did not reach anyone for a reason worth reporting as
/// `call.failed` (busy, congestion, no route...). Normal clearing, "unknown", answered
/// elsewhere and the caller's own cancel (127, interworking) are not failures.
pub fn is_failure(cause: u16) -> bool {
    !matches!(cause, 0 | 16 | 26 | 127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_seen_in_the_recordings() {
        assert_eq!((name(16), sip_code(16)), ("NORMAL_CLEARING", 200));
        assert_eq!((name(17), sip_code(17)), ("USER_BUSY", 486));
        assert_eq!((name(34), sip_code(34)), ("NORMAL_CIRCUIT_CONGESTION", 503));
        assert_eq!((name(3), sip_code(3)), ("NO_ROUTE_DESTINATION", 404));
        assert_eq!((name(26), sip_code(26)), ("ANSWERED_ELSEWHERE", 487));
        assert_eq!((name(999), sip_code(999)), ("UNKNOWN", 0));
        assert!(is_failure(17) && !is_failure(16) && !is_failure(127));
        assert_eq!(dial_status_sip_code("BUSY"), 486);
    }
}
