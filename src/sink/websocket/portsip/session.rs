//! One PortSIP client's session, as pure logic: a command in, a [`Outcome`] out.
//!
//! A session starts unauthenticated; `auth` checks the configured users (passwords
//! compared in constant time); `subscribe` / `unsubscribe` change which topics it gets
//! and the `extensions` / `queues` named; [`Session::wants`] says whether a message's
//! route reaches it. Bad JSON and unknown commands get an error reply, never a
//! disconnect.
//!
//! Where PortSIP documents the behaviour it is followed: queues a user may not see are
//! left out silently; `cdr_events` is for the tenant administrator; `global_*` topics for
//! the system administrator. Where it does not, pbxtap chooses, and docs/websocket.md
//! says so: a subscribe naming a topic the user may not have is refused whole (nothing of
//! it applied); subscribing again adds to what was named before (one with no names means
//! every one); unsubscribing with names takes those names out.

use heapless::Vec;

use super::command::{self, Command, Reply, MAX_FILTER};
use super::{Role, User};
use crate::dialect::portsip::{Route, Topic, Version};
use crate::event::Text;
use crate::sink::websocket::enswitch::{ct_eq, parse_id, Since};

/// The reply PortSIP v16 sends for a wrong user, domain or password.
pub const AUTH_ERROR_V16: &str = "name or password error";
/// The reply PortSIP v22 sends for the same.
pub const AUTH_ERROR_V22: &str = "access_token , username , domain or password error";

/// Names of one topic's subscription: extensions or queues.
type Names = Vec<Text, MAX_FILTER>;

/// One topic's subscription, held in the session itself: a client's memory is fixed
/// when its slot is taken, whatever it subscribes to.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
enum Sub {
    /// Every extension (or every queue the user may see).
    All,
    /// Only these; never empty (the last one taken out ends the subscription).
    Only(Names),
}

/// A topic name as a client writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Named {
    /// `extension_events`, `cdr_events`, `queue_events`.
    Tenant(Topic),
    /// `global_extension_events`... : the same messages, for a system administrator.
    Global(Topic),
    /// `*_management_events`: accepted; an appliance's configuration changes are not
    /// events pbxtap sees, so nothing is sent on them.
    Management { global: bool },
}

fn named(s: &str, version: Version) -> Option<Named> {
    let tenant = Topic::ALL.into_iter().find(|t| t.as_str() == s);
    match (tenant, version) {
        (Some(t), _) => Some(Named::Tenant(t)),
        (None, Version::V16) => None,
        (None, Version::V22) => match s {
            "extension_management_events" | "queue_management_events" => {
                Some(Named::Management { global: false })
            }
            "global_extension_management_events" | "global_queue_management_events" => {
                Some(Named::Management { global: true })
            }
            _ => {
                let base = s.strip_prefix("global_")?;
                Topic::ALL
                    .into_iter()
                    .find(|t| t.as_str() == base)
                    .map(Named::Global)
            }
        },
    }
}

/// Whether `role` may subscribe to `topic`, or why not.
fn permitted(topic: Named, role: Role) -> Result<(), &'static str> {
    match (topic, role) {
        (Named::Tenant(Topic::CdrEvents), Role::Admin) => Ok(()),
        (Named::Tenant(Topic::CdrEvents), _) => {
            Err("permission denied: cdr_events is for the tenant administrator")
        }
        (Named::Tenant(_), Role::Extension | Role::Admin) => Ok(()),
        (Named::Tenant(_), Role::System) => {
            Err("permission denied: a system administrator subscribes to the global_* topics")
        }
        (Named::Global(_) | Named::Management { global: true }, Role::System) => Ok(()),
        (Named::Global(_) | Named::Management { global: true }, _) => {
            Err("permission denied: global topics are for the system administrator")
        }
        (Named::Management { global: false }, Role::Admin) => Ok(()),
        (Named::Management { global: false }, _) => {
            Err("permission denied: management topics are for the tenant administrator")
        }
    }
}

/// Whether an `auth` may be checked now; when not, it is refused unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// The client's address made too many failed logins.
    Blocked,
    /// `max_clients` sessions are logged in already.
    Full,
}

/// A client's session.
#[derive(Debug, Default)]
pub struct Session {
    /// Index of the authenticated user in the configured users.
    user: Option<usize>,
    /// Commands handled: v22's reply `id`.
    commands: u32,
    /// Per tenant topic (by `Topic::index`): subscribed, and to what.
    topics: [Option<Sub>; 3],
}

/// What a command did: the reply to send, and what the I/O side must do besides.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub reply: Reply,
    /// A password was wrong: count it against the client's address.
    pub auth_failed: bool,
    /// `extension_events` was just subscribed: send `extension_status` after the reply
    /// for these extensions (empty: every known extension).
    pub status_for: Option<Names>,
    /// `queue_events` was just subscribed: send the `queue_status` snapshot after it.
    pub queue_snapshot: bool,
    /// The subscribe said where the client stopped (`"since":"<event_id>"`, a pbxtap
    /// addition): what the feed holds after it goes first.
    pub since: Option<Since>,
}

/// The users, and the protocol generation, every session shares.
pub struct Users<'a> {
    pub users: &'a [User],
    pub version: Version,
    /// This appliance's tenant: what a `tenants` list must name.
    pub tenant_id: &'a str,
}

impl Session {
    pub fn authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// The authenticated user's index in the configured users.
    pub fn user(&self) -> Option<usize> {
        self.user
    }

    /// Handles one text frame; `gate` says whether an `auth` may be checked now.
    pub fn handle(&mut self, text: &str, with: &Users, gate: Gate) -> Outcome {
        self.commands = self.commands.saturating_add(1);
        let cmd = match command::parse(text) {
            Ok(cmd) => cmd,
            Err(e) => return self.error("", format!("invalid command: {e}")),
        };
        let name = cmd.command.as_deref().unwrap_or("");
        match name {
            "auth" => self.auth(&cmd, with, gate),
            "subscribe" | "unsubscribe" => {
                let Some(user) = self.user.map(|i| &with.users[i]) else {
                    return self.error(name, format!("not authenticated: send auth before {name}"));
                };
                let mut topics: Vec<Named, { command::MAX_TOPICS }> = Vec::new();
                for t in cmd.topics.iter().flatten() {
                    let Some(n) = named(t, with.version) else {
                        return self.error(name, format!("unknown topic `{t}`"));
                    };
                    let _ = topics.push(n);
                }
                if name == "subscribe" {
                    self.subscribe(&topics, &cmd, user, with)
                } else {
                    self.unsubscribe(&topics, &cmd)
                }
            }
            "" => self.error(
                "",
                "missing `command`: use auth, subscribe or unsubscribe".into(),
            ),
            other => {
                let other: std::string::String = other.chars().take(32).collect();
                self.error(
                    &other,
                    format!("unknown command `{other}`: use auth, subscribe or unsubscribe"),
                )
            }
        }
    }

    fn outcome(&self, command: &str, error: Option<std::string::String>) -> Outcome {
        Outcome {
            reply: Reply {
                command: command.into(),
                id: self.commands,
                error,
            },
            auth_failed: false,
            status_for: None,
            queue_snapshot: false,
            since: None,
        }
    }

    fn error(&self, command: &str, message: std::string::String) -> Outcome {
        self.outcome(command, Some(message))
    }

    fn auth(&mut self, cmd: &Command, with: &Users, gate: Gate) -> Outcome {
        match gate {
            Gate::Open => {}
            Gate::Blocked => {
                return self.error(
                    "auth",
                    "too many failed logins from this address; try again later".into(),
                )
            }
            Gate::Full => {
                return self.error(
                    "auth",
                    "server full: max_clients users logged in; try again later".into(),
                )
            }
        }
        let Some(password) = &cmd.password else {
            return self.error("auth", "auth needs a password".into());
        };
        let domain = cmd.domain.as_deref();
        // Which configured users this login form can name, and by what.
        let (name, by_number) = match (with.version, &cmd.username, &cmd.extension_number, domain) {
            (Version::V16, Some(u), _, Some(_)) => (u.as_str(), false),
            (Version::V16, ..) => {
                return self.error("auth", "auth needs username, domain and password".into())
            }
            (Version::V22, Some(u), _, _) => (u.as_str(), false),
            (Version::V22, None, Some(n), Some(_)) => (n.as_str(), true),
            (Version::V22, ..) => {
                return self.error(
                    "auth",
                    "auth needs username (or extension_number and domain) and password".into(),
                )
            }
        };
        // Every user's password is compared, so the time taken says nothing about which
        // user matched or how much of a password was right.
        let mut found = None;
        for (i, u) in with.users.iter().enumerate() {
            let who = if by_number {
                u.extension_number.as_deref() == Some(name)
            } else {
                u.username == name
            };
            let place = match domain {
                Some(d) => u.role != Role::System && u.domain.eq_ignore_ascii_case(d),
                None => u.role == Role::System,
            };
            let ok = ct_eq(u.password.as_bytes(), password.as_bytes()) & who & place;
            if ok && found.is_none() {
                found = Some(i);
            }
        }
        match found {
            Some(i) => {
                self.user = Some(i);
                self.outcome("auth", None)
            }
            None => {
                let message = match with.version {
                    Version::V16 => AUTH_ERROR_V16,
                    Version::V22 => AUTH_ERROR_V22,
                };
                Outcome {
                    auth_failed: true,
                    ..self.error("auth", message.into())
                }
            }
        }
    }

    fn subscribe(&mut self, topics: &[Named], cmd: &Command, user: &User, with: &Users) -> Outcome {
        let since = match cmd.since.as_deref().map(parse_id) {
            None => None,
            Some(Some(since)) => Some(since),
            Some(None) => {
                return self.error(
                    "subscribe",
                    "since is not an event id: give the event_id of the last message received (<host>.<boot>.<seq>)".into(),
                )
            }
        };
        // All or nothing: a topic this user may not have refuses the whole command.
        for &t in topics {
            if let Err(e) = permitted(t, user.role) {
                return self.error("subscribe", e.into());
            }
        }
        let ours = |tenants: &Option<Names>| {
            tenants
                .as_ref()
                .is_none_or(|ts| ts.iter().any(|t| t == with.tenant_id))
        };
        let mut next = self.topics.clone();
        let mut out = self.outcome("subscribe", None);
        for &t in topics {
            let (topic, names) = match t {
                Named::Management { .. } => continue,
                Named::Global(_) if !ours(&cmd.tenants) => continue,
                Named::Global(topic) => (topic, None),
                Named::Tenant(topic @ Topic::QueueEvents) => {
                    // Queues the user may not see are left out, as PortSIP does.
                    let seen = cmd.queues.as_ref().map(|qs| {
                        qs.iter()
                            .filter(|q| user.may_see_queue(q))
                            .cloned()
                            .collect::<Names>()
                    });
                    if seen.as_ref().is_some_and(|s| s.is_empty()) {
                        continue;
                    }
                    (topic, seen)
                }
                Named::Tenant(topic) => (topic, cmd.extensions.clone()),
            };
            let slot = &mut next[topic.index()];
            *slot = match (slot.take(), names) {
                (Some(Sub::All), _) | (_, None) => Some(Sub::All),
                (None, Some(n)) => Some(Sub::Only(n)),
                (Some(Sub::Only(mut had)), Some(n)) => {
                    for x in n {
                        if !had.contains(&x) && had.push(x).is_err() {
                            return self.error(
                                "subscribe",
                                format!("at most {MAX_FILTER} extensions or queues per topic"),
                            );
                        }
                    }
                    Some(Sub::Only(had))
                }
            };
            match topic {
                Topic::ExtensionEvents => {
                    out.status_for = Some(cmd.extensions.clone().unwrap_or_default());
                }
                Topic::QueueEvents => out.queue_snapshot = true,
                Topic::CdrEvents => {}
            }
        }
        self.topics = next;
        Outcome { since, ..out }
    }

    fn unsubscribe(&mut self, topics: &[Named], cmd: &Command) -> Outcome {
        let (exts, queues) = (cmd.extensions.as_ref(), cmd.queues.as_ref());
        if topics.is_empty() && exts.is_none() && queues.is_none() {
            return self.error(
                "unsubscribe",
                "unsubscribe needs topics, extensions or queues".into(),
            );
        }
        for t in Topic::ALL {
            let listed = topics
                .iter()
                .any(|n| matches!(n, Named::Tenant(x) | Named::Global(x) if *x == t));
            if !topics.is_empty() && !listed {
                continue;
            }
            let names = if t == Topic::QueueEvents {
                queues
            } else {
                exts
            };
            let slot = &mut self.topics[t.index()];
            match (names, slot.as_mut()) {
                // Named ones out; the last one out ends the topic. A topic subscribed
                // for every extension stays so (PortSIP has no "all but").
                (Some(names), Some(Sub::Only(had))) => {
                    had.retain(|x| !names.contains(x));
                    if had.is_empty() {
                        *slot = None;
                    }
                }
                (Some(_), _) => {}
                (None, _) => *slot = None,
            }
        }
        self.outcome("unsubscribe", None)
    }

    /// Whether a message with `route` goes to this session.
    pub fn wants(&self, route: &Route, users: &[User]) -> bool {
        let Some(user) = self.user.map(|i| &users[i]) else {
            return false;
        };
        let Some(sub) = &self.topics[route.topic.index()] else {
            return false;
        };
        match (route.topic, sub) {
            (Topic::QueueEvents, Sub::All) => user.may_see_queue(&route.queue),
            (Topic::QueueEvents, Sub::Only(qs)) => {
                user.may_see_queue(&route.queue) && qs.contains(&route.queue)
            }
            (_, Sub::All) => true,
            (_, Sub::Only(exts)) => exts.iter().any(|e| route.concerns(e)),
        }
    }

    /// Whether a `queue_status` snapshot of queue `name` goes to this session.
    pub fn wants_queue(&self, name: &str, users: &[User]) -> bool {
        let Some(user) = self.user.map(|i| &users[i]) else {
            return false;
        };
        match &self.topics[Topic::QueueEvents.index()] {
            Some(Sub::All) => user.may_see_queue(name),
            Some(Sub::Only(qs)) => user.may_see_queue(name) && qs.iter().any(|q| q == name),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::text;

    fn users() -> std::vec::Vec<User> {
        let user = |username: &str, domain: &str, password: &str, role, queues: &[&str]| User {
            username: username.into(),
            domain: domain.into(),
            extension_number: None,
            password: password.into(),
            role,
            queues: queues.iter().map(|q| q.to_string()).collect(),
        };
        vec![
            User {
                extension_number: Some("101".into()),
                ..user(
                    "alice",
                    "pbx.local",
                    "secret101",
                    Role::Extension,
                    &["8001"],
                )
            },
            user("boss", "pbx.local", "bosspw", Role::Admin, &[]),
            user("root", "", "rootpw", Role::System, &[]),
        ]
    }

    fn with(users: &[User], version: Version) -> Users<'_> {
        Users {
            users,
            version,
            tenant_id: "t1",
        }
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

    fn cdr_route() -> Route {
        Route {
            topic: Topic::CdrEvents,
            ..ext_route(&["101"])
        }
    }

    const AUTH_ALICE: &str =
        r#"{"command":"auth","username":"alice","domain":"pbx.local","password":"secret101"}"#;
    const AUTH_BOSS: &str =
        r#"{"command":"auth","username":"boss","domain":"PBX.local","password":"bosspw"}"#;

    #[test]
    fn auth_replies_as_each_version_does() {
        let u = users();
        for (version, wrong, ok) in [
            (
                Version::V16,
                r#"{"error":"name or password error","status":-1}"#,
                r#"{"status":0}"#,
            ),
            (
                Version::V22,
                r#"{"command":"auth","error":"access_token , username , domain or password error","id":"1","status":-1}"#,
                r#"{"command":"auth","id":"4","status":0}"#,
            ),
        ] {
            let w = with(&u, version);
            let mut s = Session::default();
            let out = s.handle(
                r#"{"command":"auth","username":"alice","domain":"pbx.local","password":"nope"}"#,
                &w,
                Gate::Open,
            );
            assert!(out.auth_failed);
            assert_eq!(out.reply.to_json(version), wrong);
            let out = s.handle(AUTH_ALICE, &w, Gate::Blocked);
            assert!(!s.authenticated() && !out.auth_failed, "blocked: {out:?}");
            let out = s.handle(AUTH_ALICE, &w, Gate::Full);
            assert!(!s.authenticated() && !out.auth_failed, "full: {out:?}");
            assert!(out.reply.to_json(version).contains("server full"));
            let out = s.handle(AUTH_ALICE, &w, Gate::Open);
            assert_eq!(out.reply.to_json(version), ok);
            assert_eq!(s.user(), Some(0));
        }
    }

    /// JSON escapes are decoded before anything is compared: the command's name, the user,
    /// the password (a `"` or `\` in it is written escaped), the topics.
    #[test]
    fn json_escapes_in_a_command_are_decoded() {
        let u = [User {
            username: "al/ice".into(),
            password: r#"pa"ss\word"#.into(),
            ..users()[0].clone()
        }];
        let w = with(&u, Version::V22);
        let mut s = Session::default();
        let auth = r#"{"command":"\u0061uth","username":"al\/ice","domain":"pbx.local","password":"pa\"ss\\word"}"#;
        let out = s.handle(auth, &w, Gate::Open);
        assert!(out.reply.ok() && s.authenticated(), "{out:?}");
        let sub = r#"{"command":"sub\u0073cribe","topics":["extension\u005fevents"]}"#;
        let out = s.handle(sub, &w, Gate::Open);
        assert!(out.reply.ok(), "{out:?}");
        assert_eq!(out.reply.command, "subscribe");
        let bad = s.handle(r#"{"command":"\q"}"#, &w, Gate::Open);
        assert_eq!(
            bad.reply.error.as_deref(),
            Some("invalid command: not valid JSON")
        );
    }

    #[test]
    fn v22_logins_by_extension_number_and_as_system_administrator() {
        let u = users();
        let w = with(&u, Version::V22);
        let mut s = Session::default();
        let by_number = r#"{"command":"auth","extension_number":"101","password":"secret101","domain":"pbx.local"}"#;
        assert!(s.handle(by_number, &w, Gate::Open).reply.ok());
        assert_eq!(s.user(), Some(0));
        let mut root = Session::default();
        let system = r#"{"command":"auth","username":"root","password":"rootpw"}"#;
        assert!(root.handle(system, &w, Gate::Open).reply.ok());
        assert_eq!(root.user(), Some(2));
        // A tenant user without its domain, and the system administrator with one, fail.
        let mut s = Session::default();
        let no_domain = r#"{"command":"auth","username":"boss","password":"bosspw"}"#;
        assert!(s.handle(no_domain, &w, Gate::Open).auth_failed);
        let with_domain =
            r#"{"command":"auth","username":"root","password":"rootpw","domain":"pbx.local"}"#;
        assert!(s.handle(with_domain, &w, Gate::Open).auth_failed);
        // v16 knows only username, domain and password.
        let v16 = with(&u, Version::V16);
        for cmd in [by_number, system] {
            let out = Session::default().handle(cmd, &v16, Gate::Open);
            assert_eq!(
                out.reply.error.as_deref(),
                Some("auth needs username, domain and password")
            );
        }
    }

    #[test]
    fn bad_commands_are_error_replies() {
        let u = users();
        let w = with(&u, Version::V22);
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
                r#"{"command":"auth","username":"alice"}"#,
                "needs a password",
            ),
        ] {
            let out = s.handle(text, &w, Gate::Open);
            let e = out
                .reply
                .error
                .as_deref()
                .unwrap_or_else(|| panic!("{text}: accepted"));
            assert!(e.contains(needle), "{text}: {e}");
            assert!(out
                .reply
                .to_json(Version::V22)
                .ends_with(r#","status":-1}"#));
        }
        s.handle(AUTH_ALICE, &w, Gate::Open);
        let out = s.handle(
            r#"{"command":"subscribe","topics":["sms_events"]}"#,
            &w,
            Gate::Open,
        );
        assert_eq!(
            out.reply.error.as_deref(),
            Some("unknown topic `sms_events`")
        );
        // The v22 topics are unknown to v16.
        let mut s = Session::default();
        let v16 = with(&u, Version::V16);
        s.handle(AUTH_ALICE, &v16, Gate::Open);
        let out = s.handle(
            r#"{"command":"subscribe","topics":["global_cdr_events"]}"#,
            &v16,
            Gate::Open,
        );
        assert!(!out.reply.ok());
        // The seed's own unsubscribe example is not JSON ("topic" : inside a list).
        let out = s.handle(
            r#"{"command" : "unsubscribe","topics":["extension_events", "topic" : "cdr_events"]}"#,
            &v16,
            Gate::Open,
        );
        assert!(!out.reply.ok());
        let too_many = format!(
            r#"{{"command":"subscribe","topics":["extension_events"],"extensions":[{}]}}"#,
            (0..=MAX_FILTER)
                .map(|i| format!("\"{i}\""))
                .collect::<std::vec::Vec<_>>()
                .join(",")
        );
        let out = s.handle(&too_many, &v16, Gate::Open);
        assert!(out.reply.error.unwrap().contains("at most 64"));
    }

    #[test]
    fn subscribing_adds_names_and_unsubscribing_takes_them_out() {
        let u = users();
        let w = with(&u, Version::V22);
        let mut s = Session::default();
        s.handle(AUTH_BOSS, &w, Gate::Open);
        assert!(!s.wants(&ext_route(&["102"]), &u));
        let out = s.handle(
            r#"{"command":"subscribe","topics":["extension_events","cdr_events"],"extensions":["102"]}"#,
            &w,
            Gate::Open,
        );
        assert_eq!(
            out.reply.to_json(Version::V22),
            r#"{"command":"subscribe","id":"2","status":0}"#
        );
        assert_eq!(out.status_for.as_deref(), Some(&[text("102")][..]));
        assert!(!out.queue_snapshot);
        s.handle(
            r#"{"command":"subscribe","topics":["extension_events"],"extensions":["103"]}"#,
            &w,
            Gate::Open,
        );
        assert!(
            s.wants(&ext_route(&["101", "102"]), &u),
            "kept from the first subscribe"
        );
        assert!(s.wants(&ext_route(&["103"]), &u));
        assert!(!s.wants(&ext_route(&["104"]), &u));
        assert!(!s.wants(&cdr_route(), &u), "cdr_events named only 102");
        s.handle(
            r#"{"command":"unsubscribe","topics":["extension_events"],"extensions":["103"]}"#,
            &w,
            Gate::Open,
        );
        assert!(!s.wants(&ext_route(&["103"]), &u) && s.wants(&ext_route(&["102"]), &u));
        s.handle(
            r#"{"command":"unsubscribe","extensions":["102"]}"#,
            &w,
            Gate::Open,
        );
        assert!(
            !s.wants(&ext_route(&["102"]), &u),
            "the last name out ends the topic"
        );
        let out = s.handle(
            r#"{"command":"subscribe","topics":["extension_events"]}"#,
            &w,
            Gate::Open,
        );
        assert_eq!(
            out.status_for.as_deref(),
            Some(&[][..]),
            "no names: every extension"
        );
        assert!(s.wants(&ext_route(&["999"]), &u));
        s.handle(
            r#"{"command":"unsubscribe","topics":[ "extension_events" ] }"#,
            &w,
            Gate::Open,
        );
        assert!(!s.wants(&ext_route(&["999"]), &u));
    }

    #[test]
    fn permissions_as_portsip_has_them() {
        let u = users();
        let w = with(&u, Version::V22);
        let mut alice = Session::default();
        alice.handle(AUTH_ALICE, &w, Gate::Open);
        // A queue alice may not see is left out silently; the rest flows.
        let out = alice.handle(
            r#"{"command":"subscribe","topics":["queue_events"],"queues":["8001","8002"]}"#,
            &w,
            Gate::Open,
        );
        assert!(out.reply.ok() && out.queue_snapshot, "{out:?}");
        assert!(alice.wants(&queue_route("8001"), &u) && !alice.wants(&queue_route("8002"), &u));
        assert!(alice.wants_queue("8001", &u) && !alice.wants_queue("8002", &u));
        // CDRs are the tenant administrator's: the whole command is refused.
        let out = alice.handle(
            r#"{"command":"subscribe","topics":["extension_events","cdr_events"]}"#,
            &w,
            Gate::Open,
        );
        assert!(out.reply.error.unwrap().contains("tenant administrator"));
        assert!(
            !alice.wants(&ext_route(&["102"]), &u),
            "nothing of it applied"
        );
        let mut boss = Session::default();
        boss.handle(AUTH_BOSS, &w, Gate::Open);
        boss.handle(
            r#"{"command":"subscribe","topics":["cdr_events","queue_events"]}"#,
            &w,
            Gate::Open,
        );
        assert!(boss.wants(&cdr_route(), &u) && boss.wants(&queue_route("8002"), &u));
        assert!(!boss
            .handle(
                r#"{"command":"subscribe","topics":["global_cdr_events"]}"#,
                &w,
                Gate::Open
            )
            .reply
            .ok());
        // The system administrator: global topics, for this tenant or none named.
        let mut root = Session::default();
        root.handle(
            r#"{"command":"auth","username":"root","password":"rootpw"}"#,
            &w,
            Gate::Open,
        );
        assert!(!root
            .handle(
                r#"{"command":"subscribe","topics":["cdr_events"]}"#,
                &w,
                Gate::Open
            )
            .reply
            .ok());
        let other = r#"{"command":"subscribe","topics":["global_cdr_events"],"tenants":["t9"]}"#;
        assert!(root.handle(other, &w, Gate::Open).reply.ok());
        assert!(!root.wants(&cdr_route(), &u), "another tenant's");
        let ours = r#"{"command":"subscribe","topics":["global_cdr_events","global_queue_management_events"],"tenants":["t9","t1"]}"#;
        assert!(root.handle(ours, &w, Gate::Open).reply.ok());
        assert!(root.wants(&cdr_route(), &u));
    }

    #[test]
    fn the_seed_commands_as_written_multi_line() {
        let u = vec![User {
            username: "testuser".into(),
            domain: "portsip.io".into(),
            extension_number: None,
            password: "111111".into(),
            role: Role::Extension,
            queues: vec!["8001".into(), "8002".into()],
        }];
        let w = with(&u, Version::V16);
        let mut s = Session::default();
        let auth = "{\n\"command\":\"auth\",\n\"username\":\"testuser\",\n\"domain\":\"portsip.io\",\n\"password\":\"111111\"\n}";
        assert!(s.handle(auth, &w, Gate::Open).reply.ok());
        let sub = "\n{\n\"command\":\"subscribe\",\n\"topics\":[\n \"extension_events\"\n],\n\"extensions\":[\n\"102\",\n\"103\"] \n}";
        assert!(s.handle(sub, &w, Gate::Open).reply.ok());
        assert!(s.wants(&ext_route(&["103"]), &u));
        let queues = "{\n\"command\":\"subscribe\",\n\"topics\":[ \"queue_events\" ],\n\"queues\":\n[\n\"8001\",\n\"8002\"\n]  \n}";
        let out = s.handle(queues, &w, Gate::Open);
        assert!(out.reply.ok() && out.queue_snapshot);
        let unsub = "{\n\"command\":\"unsubscribe\",\n\"topics\":[ \"cdr_events\" ] \n}";
        assert_eq!(
            s.handle(unsub, &w, Gate::Open).reply.to_json(Version::V16),
            r#"{"status":0}"#
        );
    }
}
