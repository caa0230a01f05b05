//! PortSIP Pub/Sub for the websocket sink: who may log in ([`User`]), a connection's
//! session (`session`), the commands and replies as written on the wire (`command`),
//! and [`answer`], the frames a command is answered with (the reply, then the
//! `extension_status` and `queue_status` a subscribe is owed).

mod command;
mod session;

use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use command::{Reply, MAX_FILTER};
pub use session::{Gate, Outcome, Session, Users};

use super::enswitch::{Gap, Since};
use super::frame;
use crate::dialect::portsip::{self as dialect, Context, Out, State};
use crate::dialect::Encoded;

/// `bytes`, one JSON object, as a frame with `"event_id":"<id>"` as its last key
/// (`event_ids`): what a client gives as `since` to resume after it.
pub fn with_event_id(bytes: &[u8], id: &str) -> Utf8Bytes {
    let body = bytes.strip_suffix(b"}").unwrap_or(bytes);
    let mut out = Vec::with_capacity(bytes.len() + id.len() + 16);
    out.extend_from_slice(body);
    out.extend_from_slice(br#","event_id":""#);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\"}");
    frame(&out)
}

/// The message that tells a resuming client it missed events, in PortSIP's shape: an
/// `event_type`.
pub fn gap_notice(since: &Since, gap: Gap) -> String {
    format!(
        r#"{{"event_type":"resume_gap","since":"{since}",{}}}"#,
        gap.members()
    )
}

/// A user allowed to subscribe (`[[sinks.users]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    /// The SIP domain; empty for the system administrator.
    pub domain: String,
    /// An extension's number, for `extension_number` logins (v22).
    pub extension_number: Option<String>,
    pub password: String,
    pub role: Role,
    /// Queues an extension belongs to (member, agent or manager); ignored for admins.
    pub queues: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A tenant user: extension events, and the queues it belongs to.
    Extension,
    /// The tenant administrator: everything of the tenant, CDRs and every queue included.
    Admin,
    /// The system administrator (v22, logs in without a domain): the `global_*` topics.
    System,
}

impl User {
    /// Whether this user may see queue `name`'s events.
    pub fn may_see_queue(&self, name: &str) -> bool {
        self.role != Role::Extension || self.queues.iter().any(|q| q == name)
    }
}

/// The frames that answer a command: its reply, then for a subscribe the
/// `extension_status` of the extensions named (or every one known), then the
/// `queue_status` of each queue the session now follows. `now` in microseconds since the
/// Unix epoch stamps the statuses.
pub fn answer(
    out: &Outcome,
    session: &Session,
    users: &[User],
    state: &State,
    ctx: &Context,
    now: u64,
) -> Vec<Utf8Bytes> {
    let mut frames = vec![Utf8Bytes::from(out.reply.to_json(ctx.version))];
    if let Some(named) = &out.status_for {
        let numbers: Vec<&str> = if named.is_empty() {
            state.extensions().map(|e| e.number.as_str()).collect()
        } else {
            named.iter().map(|n| n.as_str()).collect()
        };
        let mut buf = Box::new(Encoded::new());
        let mut emit = |_: &dialect::Route, bytes: &[u8]| frames.push(frame(bytes));
        if let Err(e) = dialect::encode_status(
            &numbers,
            state,
            ctx,
            now,
            &mut Out::new(&mut buf, &mut emit),
        ) {
            tracing::error!(error = %e, "extension_status not encoded");
        }
    }
    if out.queue_snapshot {
        let mut names: Vec<&str> = state.queues().map(|q| q.name.as_str()).collect();
        if let Some(u) = session.user() {
            for q in &users[u].queues {
                if !names.contains(&q.as_str()) {
                    names.push(q);
                }
            }
        }
        let mut buf = Vec::new();
        for name in names {
            if !session.wants_queue(name, users) {
                continue;
            }
            let empty;
            let q = match state.queues().find(|q| q.name == name) {
                Some(q) => q,
                None => {
                    empty = dialect::Queue {
                        name: crate::event::text(name),
                        ..Default::default()
                    };
                    &empty
                }
            };
            match dialect::encode_queue_status(q, ctx, &mut buf) {
                Ok(()) => frames.push(frame(&buf)),
                Err(e) => tracing::error!(error = %e, queue = name, "queue_status not encoded"),
            }
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_id_goes_last_in_the_message() {
        let f = with_event_id(
            br#"{"event_type":"extension_status","online":true}"#,
            "pbx1.7.42",
        );
        assert_eq!(
            f.as_str(),
            r#"{"event_type":"extension_status","online":true,"event_id":"pbx1.7.42"}"#
        );
        let since = Since {
            host: "pbx1".into(),
            boot: 7,
            seq: 42,
        };
        assert_eq!(
            gap_notice(&since, Gap::Missed(3)),
            r#"{"event_type":"resume_gap","since":"pbx1.7.42","missed":3}"#
        );
    }
}
