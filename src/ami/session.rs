//! The AMI session as a pure state machine: login (plain or MD5 challenge), keepalive pings
//! and the resync request (the redial delay is `crate::backoff`). Methods say what to send; the client
//! task owns the socket and does the writing.

use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::config::AmiAuth;
use super::filter;
use super::frame::Message;

/// What the session needs to know, fixed per connection.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub username: String,
    pub secret: String,
    pub auth: AmiAuth,
    /// `Events:` mask sent with the login.
    pub events: String,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// How often the PJSIP contacts are listed (`PJSIPShowContacts`): how a registration
    /// refresh shows, since Asterisk sends no event for one. Also right after login and
    /// whenever the handler asks. `None`: only then.
    pub contacts_every: Option<Duration>,
    /// Time from the TCP connect to a successful login: a peer that stalls before (no
    /// banner, no answer to Challenge or Login) is dropped then, like any failed link.
    pub login_timeout: Duration,
    /// The `Filter` actions that make Asterisk send only what is read (`ami::filter`),
    /// sent after login where the version has them; `None`: Asterisk sends every event.
    pub source_filter: Option<String>,
}

/// Why a session ended (or never started).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("Asterisk refused the login of user `{username}`: {message} (check ami.username and ami.secret, and manager.conf)")]
    LoginRejected { username: String, message: String },
    #[error("no answer to Ping within {0:?}: Asterisk is stuck or the link is dead")]
    PingTimeout(Duration),
    #[error("the peer did not send an AMI banner (`Asterisk Call Manager/...`): is ami.address really Asterisk's manager port?")]
    NoBanner,
    #[error("no {waiting_for} within {after:?} of connecting (ami.login_timeout_secs): is ami.address really Asterisk's manager port, and is Asterisk responsive?")]
    LoginTimeout {
        waiting_for: &'static str,
        after: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitBanner,
    AwaitChallenge,
    AwaitLogin,
    Up,
}

/// What to do after a message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// An action to write.
    pub send: Option<String>,
    /// The login just succeeded.
    pub logged_in: bool,
    /// The message is for the handler (events, and everything that is not a reply to
    /// one of the session's own actions).
    pub deliver: bool,
    /// A contact list just ended (complete, or Asterisk had no contacts to list).
    pub contacts_listed: bool,
    /// What became of the filters at the source, once known.
    pub filtering: Option<Filtering>,
    /// Asterisk refused one of the periodic lists (no such module, or the AMI user may
    /// not): it is left out from now on, the others go on.
    pub list_refused: Option<ListRefused>,
}

/// A periodic list Asterisk refused: the action, and Asterisk's `Message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRefused {
    pub action: &'static str,
    pub message: String,
}

/// Whether Asterisk filters the events at the source for this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtering {
    /// Every filter was accepted: Asterisk sends only what is read.
    On { version: String },
    /// This version has no header filters (or did not say which it is): every event comes.
    Unsupported { version: String },
    /// Asterisk refused a filter (its `Message`): every event comes.
    Refused { message: String },
}

pub struct Session {
    cfg: SessionConfig,
    state: State,
    /// When the connection was made: the login must succeed by `login_timeout` after.
    connected_at: Instant,
    next_ping: Option<Instant>,
    /// ActionID and send time of the Ping awaiting its answer.
    ping_out: Option<(u64, Instant)>,
    seq: u64,
    /// Round trip of the last answered Ping.
    pub last_rtt: Option<Duration>,
    /// A contact list asked for and not complete yet.
    contacts_out: bool,
    next_contacts: Option<Instant>,
    /// False once Asterisk refused `PJSIPShowContacts` (no res_pjsip, or an old version).
    contacts_supported: bool,
    /// Per [`STATE_LISTS`]: false once Asterisk refused it (no such module): what it
    /// lists is then told by its live events alone.
    lists_supported: [bool; STATE_LISTS.len()],
    /// The version `CoreSettings` gave, while the filters are being answered.
    filter_version: String,
    /// A filter was refused: the rest of the answers change nothing.
    filter_refused: bool,
}

const LOGIN_ID: &str = "pbxtap-login";
const CHALLENGE_ID: &str = "pbxtap-challenge";
const RESYNC_ID: &str = "pbxtap-resync";
const PING_PREFIX: &str = "pbxtap-ping-";
const CONTACTS_ID: &str = "pbxtap-contacts";
const CONTACTS_ACTION: &str = "Action: PJSIPShowContacts\r\nActionID: pbxtap-contacts\r\n\r\n";
const VERSION_ID: &str = "pbxtap-version";
/// The state listed with the contacts, after login and every `contacts_every`, so that
/// what changed while pbxtap was away, or was never told, is known: the outbound
/// registrations (trunks), the queues' members and waiting callers, and the live channels
/// (besides the resync list after login: a channel two lists in a row do not show ended
/// untold). ActionID and action.
/// ActionID, action name and the action as sent.
const STATE_LISTS: [(&str, &str, &str); 3] = [
    (
        "pbxtap-trunks",
        "PJSIPShowRegistrationsOutbound",
        "Action: PJSIPShowRegistrationsOutbound\r\nActionID: pbxtap-trunks\r\n\r\n",
    ),
    (
        "pbxtap-queues",
        "QueueStatus",
        "Action: QueueStatus\r\nActionID: pbxtap-queues\r\n\r\n",
    ),
    (
        "pbxtap-channels",
        "CoreShowChannels",
        "Action: CoreShowChannels\r\nActionID: pbxtap-channels\r\n\r\n",
    ),
];

/// What Asterisk said when refusing list `action`.
fn refused(action: &'static str, msg: &Message<'_>) -> ListRefused {
    ListRefused {
        action,
        message: msg.get("Message").unwrap_or("no reason given").to_string(),
    }
}

/// The key of an MD5 login: lowercase hex of MD5(challenge + secret).
pub fn md5_key(challenge: &str, secret: &str) -> String {
    let digest = Md5::new()
        .chain_update(challenge.as_bytes())
        .chain_update(secret.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The action asking Asterisk for an MD5 challenge, with ActionID `id`.
pub fn challenge_action(id: &str) -> String {
    format!("Action: Challenge\r\nAuthType: MD5\r\nActionID: {id}\r\n\r\n")
}

/// The Login action (ActionID `id`) asking for the `events` mask: answering `challenge`
/// with the MD5 key, or, without one, with the secret in the clear.
pub fn login_action(
    username: &str,
    secret: &str,
    events: &str,
    challenge: Option<&str>,
    id: &str,
) -> String {
    match challenge {
        Some(challenge) => format!(
            "Action: Login\r\nAuthType: MD5\r\nUsername: {username}\r\nKey: {}\r\nEvents: {events}\r\nActionID: {id}\r\n\r\n",
            md5_key(challenge, secret)
        ),
        None => format!(
            "Action: Login\r\nUsername: {username}\r\nSecret: {secret}\r\nEvents: {events}\r\nActionID: {id}\r\n\r\n"
        ),
    }
}

impl Session {
    /// The Login action for this session's user.
    fn login(&self, challenge: Option<&str>) -> String {
        let c = &self.cfg;
        login_action(&c.username, &c.secret, &c.events, challenge, LOGIN_ID)
    }

    /// A session on a connection made at `now`.
    pub fn new(cfg: SessionConfig, now: Instant) -> Self {
        Session {
            cfg,
            state: State::AwaitBanner,
            connected_at: now,
            next_ping: None,
            ping_out: None,
            seq: 0,
            last_rtt: None,
            contacts_out: false,
            next_contacts: None,
            contacts_supported: true,
            lists_supported: [true; STATE_LISTS.len()],
            filter_version: String::new(),
            filter_refused: false,
        }
    }

    fn list_ended(&mut self, now: Instant) {
        self.contacts_out = false;
        self.next_contacts = self.cfg.contacts_every.map(|every| now + every);
    }

    /// The actions listing the contacts and the rest of [`STATE_LISTS`], those Asterisk
    /// has.
    fn lists(&self) -> String {
        let mut lists = String::new();
        if self.contacts_supported {
            lists.push_str(CONTACTS_ACTION);
        }
        for ((_, _, action), _) in STATE_LISTS
            .iter()
            .zip(self.lists_supported)
            .filter(|(_, s)| *s)
        {
            lists.push_str(action);
        }
        lists
    }

    /// The contact list and the other state lists, to send now, when the handler wants a
    /// fresh one: `None` while the contact list is on its way, before login, or where
    /// Asterisk has none of them.
    pub fn request_contacts(&mut self) -> Option<String> {
        if self.state != State::Up || self.contacts_out {
            return None;
        }
        self.contacts_out = self.contacts_supported;
        let lists = self.lists();
        (!lists.is_empty()).then_some(lists)
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// The banner arrived: start the login.
    pub fn on_banner(&mut self) -> String {
        match self.cfg.auth {
            AmiAuth::Md5 => {
                self.state = State::AwaitChallenge;
                challenge_action(CHALLENGE_ID)
            }
            AmiAuth::Plain => {
                self.state = State::AwaitLogin;
                self.login(None)
            }
        }
    }

    /// A message arrived at `now`.
    pub fn on_message(&mut self, msg: &Message<'_>, now: Instant) -> Result<Step, SessionError> {
        if self.state == State::AwaitBanner {
            return Err(SessionError::NoBanner);
        }
        let Some(response) = msg.response() else {
            let listed =
                msg.action_id() == Some(CONTACTS_ID) && msg.is_event("ContactListComplete");
            if listed {
                self.list_ended(now);
            }
            return Ok(Step {
                deliver: true,
                contacts_listed: listed,
                ..Step::default()
            });
        };
        let id = msg.action_id().unwrap_or("");
        let success = response.eq_ignore_ascii_case("Success");
        // A state list's own Success framing: the list follows, ended by its `...Complete`
        // event; an error means Asterisk has no such list.
        let state_list = STATE_LISTS.iter().position(|(list, ..)| *list == id);
        if let (State::Up, Some(i)) = (self.state, state_list) {
            if success || !self.lists_supported[i] {
                return Ok(Step::default());
            }
            self.lists_supported[i] = false;
            return Ok(Step {
                list_refused: Some(refused(STATE_LISTS[i].1, msg)),
                ..Step::default()
            });
        }
        match (self.state, id) {
            (State::AwaitChallenge, CHALLENGE_ID) => {
                let challenge = msg.get("Challenge").filter(|_| success);
                let Some(challenge) = challenge else {
                    return Err(self.rejected(msg));
                };
                self.state = State::AwaitLogin;
                Ok(Step {
                    send: Some(self.login(Some(challenge))),
                    ..Step::default()
                })
            }
            (State::AwaitLogin, LOGIN_ID) => {
                if !success {
                    return Err(self.rejected(msg));
                }
                self.state = State::Up;
                self.next_ping = Some(now + self.cfg.ping_interval);
                self.contacts_out = true;
                let mut send = format!(
                    "Action: CoreShowChannels\r\nActionID: {RESYNC_ID}\r\n\r\n{}",
                    self.lists()
                );
                if self.cfg.source_filter.is_some() {
                    send.push_str(&format!(
                        "Action: CoreSettings\r\nActionID: {VERSION_ID}\r\n\r\n"
                    ));
                }
                Ok(Step {
                    send: Some(send),
                    logged_in: true,
                    ..Step::default()
                })
            }
            (State::Up, VERSION_ID) => {
                let version = msg.get("AsteriskVersion");
                let filtering = match (success, version, &self.cfg.source_filter) {
                    (true, Some(v), Some(actions)) if filter::advanced(v) => {
                        self.filter_version = v.to_string();
                        return Ok(Step {
                            send: Some(actions.clone()),
                            ..Step::default()
                        });
                    }
                    // The same permission as the filters: `write = system`.
                    (false, ..) => Filtering::Refused {
                        message: format!(
                            "CoreSettings: {}",
                            msg.get("Message").unwrap_or("no reason given")
                        ),
                    },
                    (true, version, _) => Filtering::Unsupported {
                        version: version.unwrap_or("unknown").to_string(),
                    },
                };
                Ok(Step {
                    filtering: Some(filtering),
                    ..Step::default()
                })
            }
            (State::Up, id) if id.starts_with(filter::ACTION_ID) => {
                let filtering = if self.filter_refused {
                    None
                } else if !success {
                    self.filter_refused = true;
                    Some(Filtering::Refused {
                        message: msg.get("Message").unwrap_or("no reason given").to_string(),
                    })
                } else if id[filter::ACTION_ID.len()..] == *filter::LAST {
                    Some(Filtering::On {
                        version: self.filter_version.clone(),
                    })
                } else {
                    None
                };
                Ok(Step {
                    filtering,
                    ..Step::default()
                })
            }
            (State::Up, id) if id.starts_with(PING_PREFIX) => {
                if let Some((seq, sent)) = self.ping_out {
                    if id[PING_PREFIX.len()..].parse() == Ok(seq) {
                        self.ping_out = None;
                        self.last_rtt = Some(now.saturating_duration_since(sent));
                    }
                }
                Ok(Step::default())
            }
            // The resync list's own Success/Complete framing: the events in it are delivered.
            (State::Up, RESYNC_ID) => Ok(Step::default()),
            (State::Up, CONTACTS_ID) => {
                if success {
                    // The list follows, ended by ContactListComplete.
                    return Ok(Step::default());
                }
                // Asterisk answers an empty list with an error.
                let empty = msg
                    .get("Message")
                    .is_some_and(|m| m.eq_ignore_ascii_case("No Contacts found"));
                if empty {
                    self.list_ended(now);
                    return Ok(Step {
                        contacts_listed: true,
                        ..Step::default()
                    });
                }
                // No PJSIP here, or the user may not list it: registrations are told from
                // ContactStatus alone. The other lists keep their schedule.
                self.contacts_supported = false;
                self.list_ended(now);
                Ok(Step {
                    list_refused: Some(refused("PJSIPShowContacts", msg)),
                    ..Step::default()
                })
            }
            _ => Ok(Step {
                deliver: true,
                ..Step::default()
            }),
        }
    }

    fn rejected(&self, msg: &Message<'_>) -> SessionError {
        SessionError::LoginRejected {
            username: self.cfg.username.clone(),
            message: msg.get("Message").unwrap_or("no reason given").to_string(),
        }
    }

    /// Called now and then: what to send (a Ping, the periodic contact list), or the error
    /// of a Ping that was not answered or of a login not done in time.
    pub fn poll(&mut self, now: Instant) -> Result<Option<String>, SessionError> {
        if self.state != State::Up {
            let after = self.cfg.login_timeout;
            if now.saturating_duration_since(self.connected_at) < after {
                return Ok(None);
            }
            let waiting_for = match self.state {
                State::AwaitBanner => "AMI banner",
                State::AwaitChallenge => "answer to the MD5 Challenge",
                _ => "answer to the Login",
            };
            return Err(SessionError::LoginTimeout { waiting_for, after });
        }
        let mut out = String::new();
        if let Some((_, sent)) = self.ping_out {
            if now.saturating_duration_since(sent) > self.cfg.ping_timeout {
                return Err(SessionError::PingTimeout(self.cfg.ping_timeout));
            }
        } else if self.next_ping.is_some_and(|at| now >= at) {
            self.seq += 1;
            self.ping_out = Some((self.seq, now));
            self.next_ping = Some(now + self.cfg.ping_interval);
            out.push_str(&format!(
                "Action: Ping\r\nActionID: {PING_PREFIX}{}\r\n\r\n",
                self.seq
            ));
        }
        if self.next_contacts.is_some_and(|at| now >= at) {
            self.next_contacts = None;
            if let Some(lists) = self.request_contacts() {
                out.push_str(&lists);
            }
            if !self.contacts_supported {
                // No ContactListComplete will set the next time: the lists keep time alone.
                self.next_contacts = self.cfg.contacts_every.map(|every| now + every);
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::frame::{Frame, Limits, Parser};

    fn cfg(auth: AmiAuth) -> SessionConfig {
        SessionConfig {
            username: "tap".into(),
            secret: "tapsecret".into(),
            auth,
            events: "system,call".into(),
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(3),
            contacts_every: Some(Duration::from_secs(10)),
            login_timeout: Duration::from_secs(10),
            source_filter: None,
        }
    }

    fn with_msg<R>(text: &str, f: impl FnOnce(&Message<'_>) -> R) -> R {
        let mut p = Parser::new(Limits::default());
        p.push(b"Asterisk Call Manager/11.0.0\r\n", &mut |_| {});
        let mut f = Some(f);
        let mut out = None;
        p.push(text.as_bytes(), &mut |fr| {
            if let (Ok(Frame::Message(m)), Some(f)) = (fr, f.take()) {
                out = Some(f(&m));
            }
        });
        out.expect("one message")
    }

    #[test]
    fn md5_key_matches_a_known_vector() {
        // md5("1234" + "secret")
        assert_eq!(
            md5_key("1234", "secret"),
            "10b168cd4f742410888c3c110f7a7e71"
        );
    }

    #[test]
    fn plain_login_then_resync_then_pings() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(AmiAuth::Plain), t0);
        let login = s.on_banner();
        assert!(
            login.contains("Secret: tapsecret\r\nEvents: system,call\r\n"),
            "{login}"
        );
        let step = with_msg("Response: Success\r\nActionID: pbxtap-login\r\n\r\n", |m| {
            s.on_message(m, t0)
        })
        .unwrap();
        assert!(step.logged_in && !step.deliver);
        assert!(step.send.unwrap().starts_with("Action: CoreShowChannels"));
        assert_eq!(s.poll(t0 + Duration::from_secs(1)).unwrap(), None);
        let ping = s.poll(t0 + Duration::from_secs(5)).unwrap().unwrap();
        assert!(ping.contains("ActionID: pbxtap-ping-1"));
        with_msg(
            "Response: Success\r\nPing: Pong\r\nActionID: pbxtap-ping-1\r\n\r\n",
            |m| s.on_message(m, t0 + Duration::from_millis(5020)),
        )
        .unwrap();
        assert_eq!(s.last_rtt, Some(Duration::from_millis(20)));
        // The next ping goes unanswered: past the timeout it is an error.
        assert!(s.poll(t0 + Duration::from_secs(10)).unwrap().is_some());
        assert_eq!(s.poll(t0 + Duration::from_secs(12)).unwrap(), None);
        assert_eq!(
            s.poll(t0 + Duration::from_secs(14)),
            Err(SessionError::PingTimeout(Duration::from_secs(3)))
        );
    }

    /// A session with filters, logged in; what it sent after login.
    fn filtered_session(t0: Instant) -> (Session, String) {
        let mut c = cfg(AmiAuth::Plain);
        c.source_filter = Some(filter::actions(&filter::Wanted {
            events: &["Newchannel", "VarSet"],
            variables: Some("[xX]-"),
        }));
        let mut s = Session::new(c, t0);
        s.on_banner();
        let step = with_msg("Response: Success\r\nActionID: pbxtap-login\r\n\r\n", |m| {
            s.on_message(m, t0)
        })
        .unwrap();
        (s, step.send.unwrap())
    }

    fn answer(s: &mut Session, text: &str) -> Step {
        with_msg(text, |m| s.on_message(m, Instant::now())).unwrap()
    }

    #[test]
    fn filters_go_to_versions_that_have_them_and_their_outcome_is_told_once() {
        let t0 = Instant::now();
        let (mut s, sent) = filtered_session(t0);
        assert!(sent.ends_with("Action: CoreSettings\r\nActionID: pbxtap-version\r\n\r\n"));
        let step = answer(
            &mut s,
            "Response: Success\r\nActionID: pbxtap-version\r\nAsteriskVersion: 22.10.1\r\n\r\n",
        );
        let filters = step.send.unwrap();
        assert!(
            filters.contains("MatchCriteria: action(include),name(Newchannel)\r\nFilter: \r\n"),
            "{filters}"
        );
        assert!(!step.deliver && step.filtering.is_none());
        let step = answer(
            &mut s,
            "Response: Success\r\nActionID: pbxtap-filter-0\r\n\r\n",
        );
        assert_eq!((step.filtering, step.deliver), (None, false));
        let step = answer(
            &mut s,
            "Response: Success\r\nActionID: pbxtap-filter-last\r\n\r\n",
        );
        assert_eq!(
            step.filtering,
            Some(Filtering::On {
                version: "22.10.1".into()
            })
        );

        // An older Asterisk gets none; nor does one that does not say its version.
        for (answer_text, version) in [
            (
                "Response: Success\r\nActionID: pbxtap-version\r\nAsteriskVersion: 20.10.0\r\n\r\n",
                "20.10.0",
            ),
            (
                "Response: Success\r\nActionID: pbxtap-version\r\n\r\n",
                "unknown",
            ),
        ] {
            let (mut s, _) = filtered_session(t0);
            let step = answer(&mut s, answer_text);
            assert_eq!(step.send, None);
            assert_eq!(
                step.filtering,
                Some(Filtering::Unsupported {
                    version: version.into()
                })
            );
        }

        // CoreSettings refused: the user lacks `write = system`, which filters need too.
        let (mut s, _) = filtered_session(t0);
        let step = answer(
            &mut s,
            "Response: Error\r\nActionID: pbxtap-version\r\nMessage: Permission denied\r\n\r\n",
        );
        assert_eq!(step.send, None);
        assert_eq!(
            step.filtering,
            Some(Filtering::Refused {
                message: "CoreSettings: Permission denied".into()
            })
        );

        // Refused (no `write = system`): told once, and never called on.
        let (mut s, _) = filtered_session(t0);
        answer(
            &mut s,
            "Response: Success\r\nActionID: pbxtap-version\r\nAsteriskVersion: 22.1.0\r\n\r\n",
        );
        let refused =
            "Response: Error\r\nActionID: pbxtap-filter-0\r\nMessage: Permission denied\r\n\r\n";
        assert_eq!(
            answer(&mut s, refused).filtering,
            Some(Filtering::Refused {
                message: "Permission denied".into()
            })
        );
        let last =
            "Response: Error\r\nActionID: pbxtap-filter-last\r\nMessage: Permission denied\r\n\r\n";
        assert_eq!(answer(&mut s, last).filtering, None);
    }

    #[test]
    fn without_filters_no_version_is_asked() {
        let mut s = Session::new(cfg(AmiAuth::Plain), Instant::now());
        s.on_banner();
        let step = answer(
            &mut s,
            "Response: Success\r\nActionID: pbxtap-login\r\n\r\n",
        );
        assert!(!step.send.unwrap().contains("CoreSettings"));
    }

    #[test]
    fn trunks_and_queues_are_listed_with_the_contacts_until_asterisk_refuses_a_list() {
        let t0 = Instant::now();
        let mut c = cfg(AmiAuth::Plain);
        c.ping_interval = Duration::from_secs(600);
        let mut s = Session::new(c, t0);
        s.on_banner();
        let step = answer(
            &mut s,
            "Response: Success\r\nActionID: pbxtap-login\r\n\r\n",
        );
        let lists: String = STATE_LISTS.iter().map(|(_, _, a)| *a).collect();
        assert!(step.send.unwrap().ends_with(&lists));
        // The list's items are the handler's; the framing is not.
        let ack = "Response: Success\r\nEventList: start\r\nActionID: pbxtap-trunks\r\n\r\n";
        assert!(!answer(&mut s, ack).deliver);
        let item = "Event: OutboundRegistrationDetail\r\nActionID: pbxtap-trunks\r\n\r\n";
        assert!(answer(&mut s, item).deliver);
        let listed = "Event: ContactListComplete\r\nActionID: pbxtap-contacts\r\n\r\n";
        with_msg(listed, |m| s.on_message(m, t0)).unwrap();
        // With the periodic contact list.
        let poll = s.poll(t0 + Duration::from_secs(10)).unwrap().unwrap();
        assert!(poll.contains("PJSIPShowContacts") && poll.ends_with(&lists));
        // No outbound registration module: never asked again.
        let refused = "Response: Error\r\nActionID: pbxtap-trunks\r\nMessage: Invalid/unknown command\r\n\r\n";
        answer(&mut s, refused);
        with_msg(listed, |m| s.on_message(m, t0 + Duration::from_secs(10))).unwrap();
        let poll = s.poll(t0 + Duration::from_secs(20)).unwrap().unwrap();
        assert!(poll.contains("PJSIPShowContacts") && !poll.contains("Outbound"));
        assert!(poll.ends_with(&lists[STATE_LISTS[0].2.len()..]));
    }

    /// A chan_sip-only Asterisk, or a user without the right, refuses the contact list:
    /// told once, and the channels and queues are still listed every period.
    #[test]
    fn a_refused_contact_list_leaves_the_other_lists_on_their_schedule() {
        let t0 = Instant::now();
        let mut c = cfg(AmiAuth::Plain);
        c.ping_interval = Duration::from_secs(600);
        let mut s = Session::new(c, t0);
        s.on_banner();
        answer(
            &mut s,
            "Response: Success\r\nActionID: pbxtap-login\r\n\r\n",
        );
        let refused =
            "Response: Error\r\nActionID: pbxtap-contacts\r\nMessage: Permission denied\r\n\r\n";
        let step = with_msg(refused, |m| s.on_message(m, t0)).unwrap();
        assert_eq!(
            step.list_refused,
            Some(ListRefused {
                action: "PJSIPShowContacts",
                message: "Permission denied".into()
            })
        );
        let lists: String = STATE_LISTS.iter().map(|(_, _, a)| *a).collect();
        for period in 1..=3 {
            let at = t0 + Duration::from_secs(10 * period);
            assert_eq!(s.poll(at - Duration::from_secs(1)).unwrap(), None);
            assert_eq!(s.poll(at).unwrap(), Some(lists.clone()), "period {period}");
        }
        // A list refused once is told once.
        let queues =
            "Response: Error\r\nActionID: pbxtap-queues\r\nMessage: Permission denied\r\n\r\n";
        assert_eq!(
            answer(&mut s, queues).list_refused.map(|r| r.action),
            Some("QueueStatus")
        );
        assert_eq!(answer(&mut s, queues).list_refused, None);
        let poll = s.poll(t0 + Duration::from_secs(40)).unwrap().unwrap();
        assert!(
            poll.contains("CoreShowChannels") && !poll.contains("QueueStatus"),
            "{poll}"
        );
    }

    #[test]
    fn md5_login_uses_the_challenge() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(AmiAuth::Md5), t0);
        assert!(s
            .on_banner()
            .starts_with("Action: Challenge\r\nAuthType: MD5"));
        let step = with_msg(
            "Response: Success\r\nChallenge: 1234\r\nActionID: pbxtap-challenge\r\n\r\n",
            |m| s.on_message(m, t0),
        )
        .unwrap();
        let login = step.send.unwrap();
        assert!(
            login.contains(&format!("Key: {}\r\n", md5_key("1234", "tapsecret"))),
            "{login}"
        );
        assert!(!login.contains("tapsecret"));
    }

    #[test]
    fn rejected_login_names_the_user() {
        let mut s = Session::new(cfg(AmiAuth::Plain), Instant::now());
        s.on_banner();
        let err = with_msg(
            "Response: Error\r\nActionID: pbxtap-login\r\nMessage: Authentication failed\r\n\r\n",
            |m| s.on_message(m, Instant::now()),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("`tap`: Authentication failed"),
            "{err}"
        );
    }

    #[test]
    fn events_are_delivered_and_replies_to_us_are_not() {
        let now = Instant::now();
        let mut s = Session::new(cfg(AmiAuth::Plain), now);
        s.on_banner();
        with_msg("Response: Success\r\nActionID: pbxtap-login\r\n\r\n", |m| {
            s.on_message(m, now)
        })
        .unwrap();
        assert!(
            with_msg("Event: Newchannel\r\n\r\n", |m| s.on_message(m, now))
                .unwrap()
                .deliver
        );
        assert!(
            !with_msg(
                "Response: Success\r\nEventList: start\r\nActionID: pbxtap-resync\r\n\r\n",
                |m| s.on_message(m, now)
            )
            .unwrap()
            .deliver
        );
    }

    #[test]
    fn a_login_stalled_at_any_step_fails_at_its_deadline() {
        let t0 = Instant::now();
        let late = t0 + Duration::from_secs(10);
        let just_before = late - Duration::from_millis(1);
        let timeout = |waiting_for| SessionError::LoginTimeout {
            waiting_for,
            after: Duration::from_secs(10),
        };
        // No banner.
        let mut s = Session::new(cfg(AmiAuth::Md5), t0);
        assert_eq!(s.poll(just_before), Ok(None));
        assert_eq!(s.poll(late), Err(timeout("AMI banner")));
        // A banner, then no answer to the Challenge.
        let mut s = Session::new(cfg(AmiAuth::Md5), t0);
        s.on_banner();
        assert_eq!(s.poll(late), Err(timeout("answer to the MD5 Challenge")));
        // A banner, then no answer to the Login (or only garbage, which is no answer).
        let mut s = Session::new(cfg(AmiAuth::Plain), t0);
        s.on_banner();
        with_msg("Response: Success\r\nActionID: someone-else\r\n\r\n", |m| {
            s.on_message(m, t0)
        })
        .unwrap();
        assert_eq!(s.poll(late), Err(timeout("answer to the Login")));
        // Logged in in time: the deadline no longer applies.
        let mut s = Session::new(cfg(AmiAuth::Plain), t0);
        s.on_banner();
        with_msg("Response: Success\r\nActionID: pbxtap-login\r\n\r\n", |m| {
            s.on_message(m, just_before)
        })
        .unwrap();
        assert!(s.poll(late + Duration::from_secs(60)).is_ok());
    }
}
