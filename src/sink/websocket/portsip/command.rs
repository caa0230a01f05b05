//! A PortSIP client's commands as they arrive (`auth`, `subscribe`, `unsubscribe`), and
//! the replies in each protocol generation: v16 `{"status":0}`, v22
//! `{"command":"auth","id":"1","status":0}`.

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::dialect::portsip::Version;
use crate::event::Text;

/// Extensions, queues or tenants one command may name; more is an error reply.
pub const MAX_FILTER: usize = 64;
/// Topics one command may name (there are ten; repeats are allowed up to this).
pub const MAX_TOPICS: usize = 16;

/// Longest string value, once its JSON escapes are decoded (a password, a `since`).
const MAX_VALUE: usize = 128;

/// A client command, as PortSIP clients send it, its strings' JSON escapes decoded.
/// Unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct Command {
    pub command: Option<String<64>>,
    pub username: Option<String<64>>,
    pub extension_number: Option<String<64>>,
    pub domain: Option<String<64>>,
    pub password: Option<String<MAX_VALUE>>,
    pub topics: Option<Vec<String<48>, MAX_TOPICS>>,
    pub extensions: Option<Vec<Text, MAX_FILTER>>,
    pub queues: Option<Vec<Text, MAX_FILTER>>,
    pub tenants: Option<Vec<Text, MAX_FILTER>>,
    /// pbxtap's addition to `subscribe`: the `event_id` of the last message the client
    /// had, to resume after it (needs `event_ids` on the feed).
    pub since: Option<String<MAX_VALUE>>,
}

/// Parses one text frame, or says in words why it is not a command.
pub fn parse(text: &str) -> Result<Command, &'static str> {
    // Where a string with escapes is decoded, one at a time, before it is copied out.
    let mut unescaped = [0u8; MAX_VALUE];
    serde_json_core::from_str_escaped(text, &mut unescaped)
        .map(|(cmd, _)| cmd)
        .map_err(describe)
}

/// Longest reply written.
const REPLY_LEN: usize = 512;

/// A reply to one command.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// The command replied to (`auth`, `subscribe`...; empty when there was none).
    pub command: std::string::String,
    /// The session's count of commands, this one included: v22's `id`.
    pub id: u32,
    /// `None`: done (`status` 0); else the error (`status` -1).
    pub error: Option<std::string::String>,
}

#[derive(Serialize)]
struct Seed<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    status: i8,
}

#[derive(Serialize)]
struct Current<'a> {
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    id: &'a str,
    status: i8,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// The reply as `version` writes it.
    pub fn to_json(&self, version: Version) -> std::string::String {
        let error = self.error.as_deref();
        let status = if error.is_some() { -1 } else { 0 };
        let id = self.id.to_string();
        let json = match version {
            Version::V16 => serde_json_core::to_string::<_, REPLY_LEN>(&Seed { error, status }),
            Version::V22 => serde_json_core::to_string::<_, REPLY_LEN>(&Current {
                command: &self.command,
                error,
                id: &id,
                status,
            }),
        };
        // Error texts are ours, with at most a short quote of the client's input.
        json.map_or_else(|_| r#"{"status":-1}"#.into(), |j| j.as_str().into())
    }
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
        | E::InvalidUnicodeCodePoint => "not valid JSON",
        E::InvalidType => {
            "a field has the wrong type (topics, extensions, queues and tenants are lists of strings)"
        }
        _ => "too many or too long values (at most 64 extensions, queues or tenants of 64 bytes)",
    }
}
