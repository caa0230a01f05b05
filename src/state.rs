//! The present, for a consumer that starts late: which events set or clear a piece of
//! state (a registered contact, a live call, a queue member, a waiting caller, a trunk)
//! and the key that names the piece. The MQTT sink keeps each piece retained under
//! `<topic>/state/<host>/<kind>/<key>` with it. Pure; nothing is stored here.

use crate::event::Body;

/// What a piece of state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One registered contact of an AOR: set by `endpoint.registered`, cleared by
    /// `endpoint.unregistered`.
    Contact,
    /// One live call: set by its `call.started` and each later step (routed, ringing,
    /// answered, held, unheld, rerouted), cleared by `call.ended`.
    Call,
    /// One member of one queue: set by `queue.agent_status`, cleared when removed.
    QueueMember,
    /// One caller waiting in one queue: set by `queue.caller_joined`, cleared by
    /// `queue.caller_left`.
    QueueCaller,
    /// One outbound registration: its latest `trunk.*`.
    Trunk,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Contact => "contact",
            Kind::Call => "call",
            Kind::QueueMember => "queue_member",
            Kind::QueueCaller => "queue_caller",
            Kind::Trunk => "trunk",
        }
    }
}

/// The piece of state an event sets or clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'e> {
    pub kind: Kind,
    /// What names the piece within its kind, the wider part first: (AOR, contact URI),
    /// (call id), (queue, member interface), (queue, call id), (trunk, or its server URI
    /// while unnamed). An empty second part is none.
    pub key: [&'e str; 2],
    /// The event is the piece's present; `false`: the piece is gone.
    pub set: bool,
}

/// The piece of state `body` sets or clears, if any.
pub fn entry(body: &Body) -> Option<Entry<'_>> {
    let (kind, key, set) = match body {
        Body::EndpointRegistered(r) => (Kind::Contact, [&*r.aor, &*r.contact], true),
        Body::EndpointUnregistered(r) => (Kind::Contact, [&*r.aor, &*r.contact], false),
        Body::CallStarted(c) => (Kind::Call, [&*c.call_id, ""], true),
        Body::CallRouted(c)
        | Body::CallRinging(c)
        | Body::CallAnswered(c)
        | Body::CallRerouted(c) => (Kind::Call, [&*c.call_id, ""], true),
        Body::CallHeld(c) | Body::CallUnheld(c) => (Kind::Call, [&*c.call_id, ""], true),
        Body::CallEnded(c) => (Kind::Call, [&*c.call_id, ""], false),
        Body::QueueAgentStatus(a) => (
            Kind::QueueMember,
            [&*a.queue, &*a.agent],
            a.state != "removed",
        ),
        Body::QueueCallerJoined(c) => (Kind::QueueCaller, [&*c.queue, &*c.call_id], true),
        Body::QueueCallerLeft(c) => (Kind::QueueCaller, [&*c.queue, &*c.call_id], false),
        Body::TrunkRegistered(t) | Body::TrunkFailed(t) | Body::TrunkUnregistered(t) => {
            let name = if t.trunk.is_empty() {
                &*t.server_uri
            } else {
                &*t.trunk
            };
            (Kind::Trunk, [name, ""], true)
        }
        _ => return None,
    };
    (!key[0].is_empty()).then_some(Entry { kind, key, set })
}

impl Entry<'_> {
    /// Where this piece is kept under `prefix`: `<prefix><sep><kind><sep><key>` and, when
    /// there is one, `<sep><second key>`. A key's characters that cannot stand in one
    /// level (`bad`: the separator, a wildcard...) are written as `_`.
    pub fn path(&self, prefix: &str, sep: char, bad: impl Fn(char) -> bool) -> String {
        let mut path = format!("{prefix}{sep}{}", self.kind.as_str());
        for part in self.key.iter().filter(|p| !p.is_empty()) {
            path.push(sep);
            path.extend(part.chars().map(|c| if bad(c) { '_' } else { c }));
        }
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{text, CallEnded, CallStarted, QueueAgent, Registration};

    #[test]
    fn state_events_name_their_piece_and_others_none() {
        let reg = Registration {
            aor: text("101"),
            contact: text("sip:101@10.0.0.5:5060"),
            ..Default::default()
        };
        let registered = Body::EndpointRegistered(reg.clone());
        let e = entry(&registered).unwrap();
        assert_eq!(
            (e.kind, e.key, e.set),
            (Kind::Contact, ["101", "sip:101@10.0.0.5:5060"], true)
        );
        assert!(!entry(&Body::EndpointUnregistered(reg)).unwrap().set);
        let started = Body::CallStarted(CallStarted {
            call_id: text("1.1"),
            ..Default::default()
        });
        assert_eq!(entry(&started).unwrap().key, ["1.1", ""]);
        let ended = Body::CallEnded(CallEnded {
            call_id: text("1.1"),
            ..Default::default()
        });
        assert!(!entry(&ended).unwrap().set);
        let removed = Body::QueueAgentStatus(QueueAgent {
            queue: text("sales"),
            agent: text("PJSIP/102"),
            state: "removed",
            ..Default::default()
        });
        assert_eq!(
            entry(&removed).map(|e| (e.key, e.set)),
            Some((["sales", "PJSIP/102"], false))
        );
        assert_eq!(entry(&Body::CallCdr(Default::default())), None);
        // No key: no piece.
        assert_eq!(entry(&Body::CallStarted(Default::default())), None);
    }
}
