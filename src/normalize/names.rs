//! The AMI events pbxtap reads, parsed once from the `Event:` name into an enum grouped by
//! the part of the normalizer that reads them. Each part matches its group exhaustively,
//! so an event added here and not handled there does not compile; [`AmiEvent::parse`] is
//! the one list of names.

/// Events about channels and calls (`normalize::calls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEvent {
    Newchannel,
    Newstate,
    DialBegin,
    DialEnd,
    /// Someone asked for a channel's end: for a refused leg, why (`TechCause`: the SIP code).
    HangupRequest,
    Hangup,
    Hold,
    Unhold,
    Cdr,
    BlindTransfer,
    AttendedTransfer,
    /// A parked call was picked up from its lot.
    UnParkedCall,
    /// A queue's agent's part of a call ended: Asterisk's `TalkTime`.
    AgentComplete,
    /// One live channel of the list asked for after a (re)connect.
    CoreShowChannel,
    /// The end of that list.
    CoreShowChannelsComplete,
}

/// Events about registrations and device state (`normalize::endpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    ContactStatus,
    /// One contact of the list asked for with `PJSIPShowContacts` (expiry, user agent).
    ContactList,
    /// The end of that list.
    ContactListComplete,
    PeerStatus,
    DeviceStateChange,
    ExtensionStatus,
    PresenceStateChange,
}

/// Events about queues, their callers and members (`normalize::queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueEvent {
    QueueCallerJoin,
    QueueCallerLeave,
    QueueCallerAbandon,
    /// An agent took a queue caller: Asterisk's `HoldTime` of the wait.
    AgentConnect,
    QueueMemberStatus,
    QueueMemberAdded,
    QueueMemberRemoved,
    QueueMemberPause,
    /// One member of the list asked for with `QueueStatus` (after each login, and
    /// periodically).
    QueueMember,
    /// One waiting caller of that list.
    QueueEntry,
    /// The end of that list.
    QueueStatusComplete,
}

/// Events about outbound registrations: trunks to carriers (`normalize::trunk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkEvent {
    /// A registration's state changed (PJSIP and chan_sip alike).
    Registry,
    /// One registration of the list asked for with `PJSIPShowRegistrationsOutbound`.
    OutboundRegistrationDetail,
    /// The end of that list.
    OutboundRegistrationDetailComplete,
}

/// Asterisk's security events for a failed login, SIP or AMI (`normalize::security`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    /// A wrong password (AMI, or SIP without a challenge).
    InvalidPassword,
    /// A SIP digest answered wrongly: a wrong password.
    ChallengeResponseFailed,
    /// Refused by an ACL (`permit`/`deny`).
    FailedACL,
    /// An account that does not exist.
    InvalidAccountID,
}

/// An AMI event pbxtap reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmiEvent {
    Call(CallEvent),
    Endpoint(EndpointEvent),
    Queue(QueueEvent),
    Trunk(TrunkEvent),
    Security(SecurityEvent),
    /// A channel variable set; only `X-` variables are read (headers for calls).
    VarSet,
}

/// Every event read, by its AMI name.
const NAMES: [(&str, AmiEvent); 41] = {
    use AmiEvent::{Call, Endpoint, Queue, Security, Trunk};
    use CallEvent as C;
    use EndpointEvent as E;
    use QueueEvent as Q;
    use SecurityEvent as S;
    use TrunkEvent as T;
    [
        ("Newchannel", Call(C::Newchannel)),
        ("Newstate", Call(C::Newstate)),
        ("DialBegin", Call(C::DialBegin)),
        ("DialEnd", Call(C::DialEnd)),
        ("HangupRequest", Call(C::HangupRequest)),
        ("Hangup", Call(C::Hangup)),
        ("Hold", Call(C::Hold)),
        ("Unhold", Call(C::Unhold)),
        ("Cdr", Call(C::Cdr)),
        ("BlindTransfer", Call(C::BlindTransfer)),
        ("AttendedTransfer", Call(C::AttendedTransfer)),
        ("UnParkedCall", Call(C::UnParkedCall)),
        ("AgentComplete", Call(C::AgentComplete)),
        ("CoreShowChannel", Call(C::CoreShowChannel)),
        (
            "CoreShowChannelsComplete",
            Call(C::CoreShowChannelsComplete),
        ),
        ("ContactStatus", Endpoint(E::ContactStatus)),
        ("ContactList", Endpoint(E::ContactList)),
        ("ContactListComplete", Endpoint(E::ContactListComplete)),
        ("PeerStatus", Endpoint(E::PeerStatus)),
        ("DeviceStateChange", Endpoint(E::DeviceStateChange)),
        ("ExtensionStatus", Endpoint(E::ExtensionStatus)),
        ("PresenceStateChange", Endpoint(E::PresenceStateChange)),
        ("QueueCallerJoin", Queue(Q::QueueCallerJoin)),
        ("QueueCallerLeave", Queue(Q::QueueCallerLeave)),
        ("QueueCallerAbandon", Queue(Q::QueueCallerAbandon)),
        ("AgentConnect", Queue(Q::AgentConnect)),
        ("QueueMemberStatus", Queue(Q::QueueMemberStatus)),
        ("QueueMemberAdded", Queue(Q::QueueMemberAdded)),
        ("QueueMemberRemoved", Queue(Q::QueueMemberRemoved)),
        ("QueueMemberPause", Queue(Q::QueueMemberPause)),
        ("QueueMember", Queue(Q::QueueMember)),
        ("QueueEntry", Queue(Q::QueueEntry)),
        ("QueueStatusComplete", Queue(Q::QueueStatusComplete)),
        ("Registry", Trunk(T::Registry)),
        (
            "OutboundRegistrationDetail",
            Trunk(T::OutboundRegistrationDetail),
        ),
        (
            "OutboundRegistrationDetailComplete",
            Trunk(T::OutboundRegistrationDetailComplete),
        ),
        ("InvalidPassword", Security(S::InvalidPassword)),
        (
            "ChallengeResponseFailed",
            Security(S::ChallengeResponseFailed),
        ),
        ("FailedACL", Security(S::FailedACL)),
        ("InvalidAccountID", Security(S::InvalidAccountID)),
        ("VarSet", AmiEvent::VarSet),
    ]
};

/// The names of every event read, for Asterisk to filter on (`ami::filter`).
pub const READ: [&str; NAMES.len()] = {
    let mut out = [""; NAMES.len()];
    let mut i = 0;
    while i < NAMES.len() {
        out[i] = NAMES[i].0;
        i += 1;
    }
    out
};

impl AmiEvent {
    /// The event named `name` (as AMI spells it, case included), if pbxtap reads it.
    pub fn parse(name: &str) -> Option<AmiEvent> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
    }

    /// The AMI name of the event.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, e)| *e == self)
            .map_or("", |(n, _)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_to_its_event_and_back_and_others_do_not() {
        for (name, ev) in NAMES {
            assert_eq!(AmiEvent::parse(name), Some(ev), "{name}");
            assert_eq!(ev.name(), name);
        }
        let mut events: Vec<_> = NAMES.iter().map(|(_, e)| format!("{e:?}")).collect();
        events.sort();
        events.dedup();
        assert_eq!(events.len(), NAMES.len(), "an event listed twice");
        for other in ["VarSetX", "hangup", "Newexten", "CEL", "", "FullyBooted"] {
            assert_eq!(AmiEvent::parse(other), None, "{other}");
        }
    }
}
