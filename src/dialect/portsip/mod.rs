//! The `portsip` dialect (PortSIP PBX's WSI Pub/Sub over WebSocket), in both of the
//! protocol's generations:
//!
//! - [`Version::V16`], the seed page (port 8885): the `call_*`, `target_*`,
//!   `extension_register` and `extension_presence` messages on `extension_events`, plus
//!   the flat `extension_status` / `extension_call` of the 2023-12-27 page that v16
//!   monitoring checks wait for, and the CDR of the v16 CDR page;
//! - [`Version::V22`], the current pages (port 8887, `/wsi`): `extension_status` with a
//!   `status` list, `extension_call`, `extension_presence`, `extension_agent_status`;
//!   `call_start`, `call_update_info` and `call_cdr` (the webhook event reference's
//!   shape, with `call_targets`) on `cdr_events`.
//!
//! Queue messages are the same in both (`queue`). Everything is pure: [`State`] follows
//! the events, [`encode`] writes the messages one event leads to (none, one or several),
//! each with the [`Route`] a session's subscriptions are matched against;
//! [`encode_status`] writes `extension_status` for a subscribe.
//!
//! PortSIP's ids are filled from what Asterisk has: `session_id` is the call's first
//! Uniqueid, `cdr_id` and `call_id` its Linkedid (AMI does not carry the INVITE's
//! Call-ID), `extension_id` the extension's number, `tenant_id` the configured tenant.

mod cdr;
mod current;
mod queue;
mod seed;
mod state;

use core::fmt::Write as _;

use heapless::String;

use super::{EncodeError, Encoded};
use crate::event::channel_endpoint as endpoint_of;
use crate::event::{self, Body, Event, Text};
pub use queue::{encode_queue_status, MAX_SNAPSHOT_LEN};
pub use state::{
    Agent, Call, Contact, Extension, Observed, Queue, State, Target, Waiting, MAX_CALLS,
    MAX_CONTACTS, MAX_EXTENSIONS, MAX_QUEUES, MAX_QUEUE_AGENTS, MAX_QUEUE_WAITING, MAX_TARGETS,
};

/// Which generation of PortSIP's protocol is spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// PortSIP v16: port 8885, path `/`, replies `{"status":0}`.
    V16,
    /// PortSIP v22 and later: port 8887, path `/wsi`, replies name their command and id.
    #[default]
    V22,
}

impl Version {
    /// The default port and the path clients connect to.
    pub fn port(self) -> u16 {
        match self {
            Version::V16 => 8885,
            Version::V22 => 8887,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Version::V16 => "/",
            Version::V22 => "/wsi",
        }
    }
}

/// What a message is routed on: PortSIP's three tenant topics. (The `global_*` topics
/// carry the same messages for a system administrator; the session maps them.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    ExtensionEvents,
    CdrEvents,
    QueueEvents,
}

impl Topic {
    pub const ALL: [Topic; 3] = [Topic::ExtensionEvents, Topic::CdrEvents, Topic::QueueEvents];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::ExtensionEvents => "extension_events",
            Topic::CdrEvents => "cdr_events",
            Topic::QueueEvents => "queue_events",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Where an encoded message goes: its topic, and the extensions (for extension and CDR
/// messages) or the queue (for queue messages) it concerns. Empty strings mean none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub topic: Topic,
    pub extensions: [Text; 3],
    pub queue: Text,
}

impl Route {
    fn new(topic: Topic) -> Self {
        Route {
            topic,
            extensions: Default::default(),
            queue: Text::new(),
        }
    }

    fn with(mut self, exts: &[&str]) -> Self {
        for (slot, e) in self.extensions.iter_mut().zip(exts) {
            *slot = event::text(extension_number(e));
        }
        self
    }

    fn queue(name: &str) -> Self {
        let mut r = Route::new(Topic::QueueEvents);
        r.queue = event::text(name);
        r
    }

    /// Whether the message concerns extension `ext`.
    pub fn concerns(&self, ext: &str) -> bool {
        !ext.is_empty() && self.extensions.iter().any(|e| e == ext)
    }
}

/// The extension number in an endpoint or interface name: `PJSIP/102` → `102`.
pub fn extension_number(s: &str) -> &str {
    s.rsplit_once('/').map_or(s, |(_, n)| n)
}

/// What the dialect adds that events do not carry.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub version: Version,
    /// SIP domain in `sip:<ext>@<domain>` addresses and `*_domain` fields.
    pub domain: &'a str,
    pub tenant_id: &'a str,
    /// `tenant_name` in CDRs.
    pub tenant_name: &'a str,
}

/// `sip:<ext>@<domain>`, or empty for an empty extension.
type Aor = String<{ event::TEXT_LEN * 2 + 8 }>;

fn aor(ext: &str, ctx: &Context) -> Aor {
    let mut s = Aor::new();
    if !ext.is_empty() {
        // Cannot fail: both parts are bounded to TEXT_LEN.
        let _ = write!(
            s,
            "sip:{}@{}",
            ext,
            &ctx.domain[..floor(ctx.domain, event::TEXT_LEN)]
        );
    }
    s
}

/// The largest char boundary of `s` at or below `max`.
fn floor(s: &str, max: usize) -> usize {
    (0..=max.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

/// A decimal number as a string, as PortSIP writes times (Unix seconds) and durations.
type Num = String<20>;

fn num(n: u64) -> Num {
    let mut s = Num::new();
    let _ = write!(s, "{n}");
    s
}

/// Unix seconds of a time in microseconds; `"0"` for never (0).
fn secs(time_micros: u64) -> Num {
    num(time_micros / 1_000_000)
}

/// Where a message is written and handed on.
pub struct Out<'a> {
    buf: &'a mut Encoded,
    emit: &'a mut dyn FnMut(&Route, &[u8]),
}

impl<'a> Out<'a> {
    pub fn new(buf: &'a mut Encoded, emit: &'a mut dyn FnMut(&Route, &[u8])) -> Self {
        Out { buf, emit }
    }

    /// Writes `msg` as JSON and hands it on with `route`.
    fn send(&mut self, route: &Route, msg: &impl serde::Serialize) -> Result<(), EncodeError> {
        super::write_json(msg, self.buf)?;
        (self.emit)(route, &self.buf[..]);
        Ok(())
    }
}

/// Writes the messages `ev` leads to in `ctx.version`, handing each to `out` with its
/// route: none for events PortSIP has no message for (`call.cdr`, `system.*`, ...).
/// `seen` is what `state.observe(ev)` returned.
pub fn encode(
    ev: &Event,
    seen: &Observed,
    state: &State,
    ctx: &Context,
    out: &mut Out,
) -> Result<(), EncodeError> {
    match ev.body {
        Body::QueueCallerJoined(_)
        | Body::QueueCallerLeft(_)
        | Body::QueueAgentStatus(_)
        | Body::QueueSlaBreached(_) => queue::encode(ev, state, ctx, out)?,
        _ => {}
    }
    match ctx.version {
        Version::V16 => seed::encode(ev, seen, state, ctx, out),
        Version::V22 => current::encode(ev, seen, state, ctx, out),
    }
}

/// Writes `extension_status` for `numbers` (each extension's registrations, call status
/// and presence; unknown extensions are offline), as sent after a subscribe, at `now`
/// (microseconds since the Unix epoch). v16 sends one message per extension; v22 lists
/// them, [`current::STATUS_PER_MESSAGE`] to a message.
pub fn encode_status(
    numbers: &[&str],
    state: &State,
    ctx: &Context,
    now: u64,
    out: &mut Out,
) -> Result<(), EncodeError> {
    match ctx.version {
        Version::V16 => numbers
            .iter()
            .try_for_each(|n| seed::status(n, state, ctx, now, out)),
        Version::V22 => current::status(numbers, state, ctx, now, out),
    }
}

#[cfg(test)]
mod tests;
