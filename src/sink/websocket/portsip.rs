//! PortSIP Pub/Sub sessions, as pure logic: a client's text frame in, the reply out.
//!
//! A session starts unauthenticated; `auth` checks the configured users (password
//! compared in constant time); `subscribe` / `unsubscribe` change which topics it gets and
//! the `extensions` / `queues` filters; [`Session::wants`] says whether an event's route
//! reaches it. Bad JSON and unknown commands get an error reply, never a disconnect.

use heapless::{String, Vec};
use serde::Deserialize;

use super::enswitch::ct_eq;
use crate::dialect::portsip::{Route, Topic};
use crate::event::Text;

/// Extensions (or queues) one subscription may name; more is an error reply.
pub const MAX_FILTER: usize = 64;
/// Topics one command may name (there are three; repeats are allowed up to this).
const MAX_TOPICS: usize = 8;

/// A user allowed to subscribe (`[[sinks.users]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: std::string::String,
    pub domain: std::string::String,
    pub password: std::string::String,
    pub role: Role,
    /// Queues an extension belongs to (member, agent or manager); ignored for admins.
    pub queues: std::vec::Vec<std::string::String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees every extension's events, and the queues it belongs to.
    Extension,
    /// Sees everything, every queue included.
    Admin,
}

impl User {
    /// Whether this user may see queue `name`'s events.
    pub fn may_see_queue(&self, name: &str) -> bool {
        self.role == Role::Admin || self.queues.iter().any(|q| q == name)
    }
}

/// One topic's filter: the extensions or queues named; empty means all of them.
type Filter = Vec<Text, MAX_FILTER>;

/// A client's session.
#[derive(Debug, Default)]
pub struct Session {
    /// Index of the authenticated user in the configured users.
    user: Option<usize>,
    /// Per topic (by `Topic::index`): subscribed, with its filter.
    topics: [Option<Filter>; 3],
}

/// What a command did: the reply to send, and what the I/O side must do besides.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub reply: Reply,
    /// A password was wrong: count it against the client's address.
    pub auth_failed: bool,
    /// `queue_events` was just subscribed: send the `queue_status` snapshot after the reply.
    pub queue_snapshot: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `{"status":0}`
    Ok,
    /// `{"error":"...","status":-1}`
    Error(std::string::String),
}

/// The reply PortSIP sends for a wrong user, domain or password.
pub const AUTH_ERROR: &str = "name or password error";

impl Reply {
    pub fn to_json(&self) -> std::string::String {
        match self {
            Reply::Ok => r#"{"status":0}"#.to_string(),
            Reply::Error(e) => {
                // A JSON string with only the escapes our messages can need.
                let mut s = std::string::String::with_capacity(e.len() + 24);
                s.push_str(r#"{"error":""#);
                for c in e.chars() {
                    match c {
                        '"' => s.push_str("\\\""),
                        '\\' => s.push_str("\\\\"),
                        c if (c as u32) < 0x20 => s.push(' '),
                        c => s.push(c),
                    }
                }
                s.push_str(r#"","status":-1}"#);
                s
            }
        }
    }
}

impl Outcome {
    fn reply(reply: Reply) -> Self {
        Outcome {
            reply,
            auth_failed: false,
            queue_snapshot: false,
        }
    }

    fn error(message: impl Into<std::string::String>) -> Self {
        Outcome::reply(Reply::Error(message.into()))
    }
}

/// A client command, as PortSIP clients send it. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct Command<'a> {
    #[serde(borrow)]
    command: Option<&'a str>,
    username: Option<String<64>>,
    domain: Option<String<64>>,
    password: Option<String<128>>,
    topics: Option<Vec<String<32>, MAX_TOPICS>>,
    extensions: Option<Vec<Text, MAX_FILTER>>,
    queues: Option<Vec<Text, MAX_FILTER>>,
}

impl Session {
    pub fn authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// The authenticated user's index in the configured users.
    pub fn user(&self) -> Option<usize> {
        self.user
    }

    /// Handles one text frame. `auth_allowed` is false while the client's address is
    /// blocked for too many failed logins: `auth` is then refused without checking.
    pub fn handle(&mut self, text: &str, users: &[User], auth_allowed: bool) -> Outcome {
        let cmd: Command = match serde_json_core::from_str(text) {
            Ok((cmd, _)) => cmd,
            Err(e) => return Outcome::error(format!("invalid command: {}", describe(e))),
        };
        match cmd.command {
            Some("auth") => self.auth(&cmd, users, auth_allowed),
            Some(c @ ("subscribe" | "unsubscribe")) => {
                let Some(user) = self.user.map(|i| &users[i]) else {
                    return Outcome::error(format!("not authenticated: send auth before {c}"));
                };
                let topics = match topics(&cmd) {
                    Ok(t) => t,
                    Err(e) => return Outcome::error(e),
                };
                if c == "subscribe" {
                    self.subscribe(&topics, &cmd, user)
                } else {
                    self.unsubscribe(&topics, &cmd)
                }
            }
            Some(other) => Outcome::error(format!(
                "unknown command `{}`: use auth, subscribe or unsubscribe",
                other.chars().take(32).collect::<std::string::String>()
            )),
            None => Outcome::error("missing `command`: use auth, subscribe or unsubscribe"),
        }
    }

    fn auth(&mut self, cmd: &Command, users: &[User], auth_allowed: bool) -> Outcome {
        if !auth_allowed {
            return Outcome::error("too many failed logins from this address; try again later");
        }
        let (Some(name), Some(domain), Some(password)) =
            (&cmd.username, &cmd.domain, &cmd.password)
        else {
            return Outcome::error("auth needs username, domain and password");
        };
        // Every user's password is compared, so the time taken says nothing about which
        // user matched or how much of a password was right.
        let mut found = None;
        for (i, u) in users.iter().enumerate() {
            let ok = ct_eq(u.password.as_bytes(), password.as_bytes())
                & (u.username == name.as_str())
                & u.domain.eq_ignore_ascii_case(domain);
            if ok && found.is_none() {
                found = Some(i);
            }
        }
        match found {
            Some(i) => {
                self.user = Some(i);
                Outcome::reply(Reply::Ok)
            }
            None => Outcome {
                auth_failed: true,
                ..Outcome::error(AUTH_ERROR)
            },
        }
    }

    fn subscribe(&mut self, topics: &[Topic], cmd: &Command, user: &User) -> Outcome {
        let mut queue_snapshot = false;
        for &t in topics {
            let filter = match t {
                Topic::QueueEvents => {
                    if let Some(q) = cmd.queues.iter().flatten().find(|q| !user.may_see_queue(q)) {
                        return Outcome::error(format!(
                            "queue `{q}`: not allowed for this user (not a member or manager)"
                        ));
                    }
                    cmd.queues.clone()
                }
                _ => cmd.extensions.clone(),
            };
            queue_snapshot |= t == Topic::QueueEvents;
            self.topics[t.index()] = Some(filter.unwrap_or_default());
        }
        Outcome {
            queue_snapshot,
            ..Outcome::reply(Reply::Ok)
        }
    }

    fn unsubscribe(&mut self, topics: &[Topic], cmd: &Command) -> Outcome {
        if !topics.is_empty() {
            for &t in topics {
                self.topics[t.index()] = None;
            }
            return Outcome::reply(Reply::Ok);
        }
        // No topics: take the named extensions / queues out of the filters.
        let (exts, queues) = (cmd.extensions.as_ref(), cmd.queues.as_ref());
        if exts.is_none() && queues.is_none() {
            return Outcome::error("unsubscribe needs topics, extensions or queues");
        }
        for t in Topic::ALL {
            let names = if t == Topic::QueueEvents {
                queues
            } else {
                exts
            };
            if let (Some(Some(filter)), Some(names)) = (self.topics.get_mut(t.index()), names) {
                let had = !filter.is_empty();
                filter.retain(|f| !names.contains(f));
                if had && filter.is_empty() {
                    // Removing the last named one must not widen the filter to everything.
                    self.topics[t.index()] = None;
                }
            }
        }
        Outcome::reply(Reply::Ok)
    }

    /// Whether an event with `route` goes to this session.
    pub fn wants(&self, route: &Route, users: &[User]) -> bool {
        let Some(user) = self.user.map(|i| &users[i]) else {
            return false;
        };
        let Some(filter) = &self.topics[route.topic.index()] else {
            return false;
        };
        match route.topic {
            Topic::QueueEvents => {
                user.may_see_queue(&route.queue)
                    && (filter.is_empty() || filter.contains(&route.queue))
            }
            _ => filter.is_empty() || filter.iter().any(|e| route.concerns(e)),
        }
    }

    /// Whether a `queue_status` snapshot of queue `name` goes to this session.
    pub fn wants_queue(&self, name: &str, users: &[User]) -> bool {
        let Some(user) = self.user.map(|i| &users[i]) else {
            return false;
        };
        match &self.topics[Topic::QueueEvents.index()] {
            Some(filter) => {
                user.may_see_queue(name) && (filter.is_empty() || filter.iter().any(|q| q == name))
            }
            None => false,
        }
    }
}

fn topics(cmd: &Command) -> Result<Vec<Topic, MAX_TOPICS>, std::string::String> {
    let mut out = Vec::new();
    for t in cmd.topics.iter().flatten() {
        let topic = Topic::parse(t).ok_or_else(|| {
            format!("unknown topic `{t}`: use extension_events, cdr_events or queue_events")
        })?;
        let _ = out.push(topic);
    }
    Ok(out)
}

fn describe(e: serde_json_core::de::Error) -> &'static str {
    use serde_json_core::de::Error as E;
    match e {
        E::EofWhileParsingList
        | E::EofWhileParsingObject
        | E::EofWhileParsingString
        | E::EofWhileParsingNumber
        | E::EofWhileParsingValue => "the JSON ends too early",
        E::ExpectedListCommaOrEnd
        | E::ExpectedObjectCommaOrEnd
        | E::ExpectedColon
        | E::ExpectedSomeIdent
        | E::ExpectedSomeValue
        | E::KeyMustBeAString
        | E::TrailingCharacters
        | E::TrailingComma
        | E::InvalidNumber
        | E::InvalidEscapeSequence
        | E::EscapedStringIsTooLong => "not valid JSON",
        E::InvalidType => {
            "a field has the wrong type (topics, extensions and queues are lists of strings)"
        }
        _ => "too many or too long values (at most 64 extensions or queues of 64 bytes)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::text;

    fn users() -> std::vec::Vec<User> {
        vec![
            User {
                username: "101".into(),
                domain: "pbx.local".into(),
                password: "secret101".into(),
                role: Role::Extension,
                queues: vec!["8001".into()],
            },
            User {
                username: "boss".into(),
                domain: "pbx.local".into(),
                password: "bosspw".into(),
                role: Role::Admin,
                queues: vec![],
            },
        ]
    }

    fn ext_route(exts: &[&str]) -> Route {
        let mut r = Route {
            topic: Topic::ExtensionEvents,
            extensions: Default::default(),
            queue: Text::new(),
        };
        for (s, e) in r.extensions.iter_mut().zip(exts) {
            *s = text(e);
        }
        r
    }

    fn queue_route(q: &str) -> Route {
        Route {
            topic: Topic::QueueEvents,
            extensions: Default::default(),
            queue: text(q),
        }
    }

    const AUTH_101: &str =
        r#"{"command":"auth","username":"101","domain":"pbx.local","password":"secret101"}"#;

    #[test]
    fn auth_replies_as_portsip_does() {
        let u = users();
        let mut s = Session::default();
        let out = s.handle(
            r#"{"command":"auth","username":"101","domain":"pbx.local","password":"nope"}"#,
            &u,
            true,
        );
        assert!(out.auth_failed);
        assert_eq!(
            out.reply.to_json(),
            r#"{"error":"name or password error","status":-1}"#
        );
        assert!(!s.authenticated());
        let out = s.handle(AUTH_101, &u, false);
        assert!(!s.authenticated() && !out.auth_failed, "{out:?}");
        let out = s.handle(AUTH_101, &u, true);
        assert_eq!(out.reply.to_json(), r#"{"status":0}"#);
        assert_eq!(s.user(), Some(0));
    }

    #[test]
    fn subscribe_before_auth_bad_json_and_unknown_commands_are_error_replies() {
        let u = users();
        let mut s = Session::default();
        for (text, needle) in [
            (
                r#"{"command":"subscribe","topics":["cdr_events"]}"#,
                "not authenticated",
            ),
            ("{not json", "invalid command"),
            (r#"{"command":"dance"}"#, "unknown command `dance`"),
            (r#"{"topics":[]}"#, "missing `command`"),
            (
                r#"{"command":"auth","username":"101"}"#,
                "needs username, domain and password",
            ),
        ] {
            let out = s.handle(text, &u, true);
            match &out.reply {
                Reply::Error(e) => assert!(e.contains(needle), "{text}: {e}"),
                Reply::Ok => panic!("{text}: accepted"),
            }
            assert!(out.reply.to_json().ends_with(r#","status":-1}"#));
        }
        s.handle(AUTH_101, &u, true);
        let out = s.handle(
            r#"{"command":"subscribe","topics":["sms_events"]}"#,
            &u,
            true,
        );
        assert!(matches!(out.reply, Reply::Error(e) if e.contains("unknown topic `sms_events`")));
        // The seed's own unsubscribe example is not JSON ("topic" : inside a list).
        let out = s.handle(
            r#"{"command" : "unsubscribe","topics":["extension_events", "topic" : "cdr_events"]}"#,
            &u,
            true,
        );
        assert!(matches!(out.reply, Reply::Error(_)));
        let too_many = format!(
            r#"{{"command":"subscribe","topics":["extension_events"],"extensions":[{}]}}"#,
            (0..=MAX_FILTER)
                .map(|i| format!("\"{i}\""))
                .collect::<std::vec::Vec<_>>()
                .join(",")
        );
        let out = s.handle(&too_many, &u, true);
        assert!(matches!(out.reply, Reply::Error(e) if e.contains("at most 64")));
    }

    #[test]
    fn extension_filter_subscribe_and_unsubscribe_one_topic() {
        let u = users();
        let mut s = Session::default();
        s.handle(AUTH_101, &u, true);
        assert!(!s.wants(&ext_route(&["102"]), &u));
        let out = s.handle(
            r#"{"command":"subscribe","topics":["extension_events","cdr_events"],"extensions":["102","103"]}"#,
            &u,
            true,
        );
        assert_eq!(out.reply, Reply::Ok);
        assert!(!out.queue_snapshot);
        assert!(s.wants(&ext_route(&["101", "102"]), &u));
        assert!(s.wants(&ext_route(&["103"]), &u));
        assert!(!s.wants(&ext_route(&["101", "104"]), &u));
        let mut cdr = ext_route(&["103"]);
        cdr.topic = Topic::CdrEvents;
        assert!(s.wants(&cdr, &u));
        s.handle(
            r#"{"command":"unsubscribe","topics":[ "cdr_events" ] }"#,
            &u,
            true,
        );
        assert!(!s.wants(&cdr, &u));
        assert!(s.wants(&ext_route(&["103"]), &u));
        // Dropping extensions from the filter; the last one gone ends the topic.
        s.handle(
            r#"{"command":"unsubscribe","extensions":["103"]}"#,
            &u,
            true,
        );
        assert!(!s.wants(&ext_route(&["103"]), &u));
        assert!(s.wants(&ext_route(&["102"]), &u));
        s.handle(
            r#"{"command":"unsubscribe","extensions":["102"]}"#,
            &u,
            true,
        );
        assert!(!s.wants(&ext_route(&["102"]), &u));
        // No extensions: every extension.
        s.handle(
            r#"{"command":"subscribe","topics":["extension_events"]}"#,
            &u,
            true,
        );
        assert!(s.wants(&ext_route(&["999"]), &u));
    }

    #[test]
    fn the_seed_commands_as_written_multi_line() {
        let u = vec![User {
            username: "testuser".into(),
            domain: "portsip.io".into(),
            password: "111111".into(),
            role: Role::Extension,
            queues: vec!["8001".into(), "8002".into()],
        }];
        let mut s = Session::default();
        let auth = "{\n\"command\":\"auth\",\n\"username\":\"testuser\",\n\"domain\":\"portsip.io\",\n\"password\":\"111111\"\n}";
        assert_eq!(s.handle(auth, &u, true).reply, Reply::Ok);
        let sub = "\n{\n\"command\":\"subscribe\",\n\"topics\":[\n \"extension_events\"\n],\n\"extensions\":[\n\"102\",\n\"103\"] \n}";
        assert_eq!(s.handle(sub, &u, true).reply, Reply::Ok);
        assert!(s.wants(&ext_route(&["103"]), &u));
        let queues = "{\n\"command\":\"subscribe\",\n\"topics\":[ \"queue_events\" ],\n\"queues\":\n[\n\"8001\",\n\"8002\"\n]  \n}";
        let out = s.handle(queues, &u, true);
        assert_eq!(out.reply, Reply::Ok);
        assert!(out.queue_snapshot);
        let unsub = "{\n\"command\":\"unsubscribe\",\n\"topics\":[ \"cdr_events\" ] \n}";
        assert_eq!(s.handle(unsub, &u, true).reply, Reply::Ok);
    }

    #[test]
    fn queues_only_for_members_and_admins() {
        let u = users();
        let mut s = Session::default();
        s.handle(AUTH_101, &u, true);
        let out = s.handle(
            r#"{"command":"subscribe","topics":["queue_events"],"queues":["8001","8002"]}"#,
            &u,
            true,
        );
        assert!(
            matches!(&out.reply, Reply::Error(e) if e.contains("`8002`")),
            "{out:?}"
        );
        let out = s.handle(
            r#"{"command":"subscribe","topics":["queue_events"]}"#,
            &u,
            true,
        );
        assert!(out.queue_snapshot);
        assert!(s.wants(&queue_route("8001"), &u));
        assert!(!s.wants(&queue_route("8002"), &u));
        assert!(s.wants_queue("8001", &u) && !s.wants_queue("8002", &u));
        let mut admin = Session::default();
        admin.handle(
            r#"{"command":"auth","username":"boss","domain":"PBX.local","password":"bosspw"}"#,
            &u,
            true,
        );
        admin.handle(
            r#"{"command":"subscribe","topics":["queue_events"],"queues":["8002"]}"#,
            &u,
            true,
        );
        assert!(admin.wants(&queue_route("8002"), &u));
        assert!(!admin.wants(&queue_route("8001"), &u));
    }
}
