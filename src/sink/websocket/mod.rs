//! WebSocket sink: a feed server. `protocol = "enswitch"` serves Enswitch / ASTPP's
//! `/events/websocket/?authkey=KEY` (every event, enswitch dialect); `protocol = "portsip"`
//! serves PortSIP's Pub/Sub (auth, subscribe with topics and filters; portsip dialect).
//!
//! Flow: the sink reads its bus ring, encodes each event once, and offers it to every
//! client that wants it through the client's own fixed-capacity queue (`try_send`: the
//! sink never waits on a client). A client whose queue is full is disconnected with a
//! close reason; the others carry on.
//!
//! Layout: `config` the settings, `server` accepts (TLS, checks before the upgrade),
//! `client` runs one connection, `enswitch` / `portsip` are the protocols' pure logic,
//! `limit` the failed-login limit, `history` the Enswitch feed's recent frames for clients
//! that resume.

mod client;
mod config;
pub mod enswitch;
mod history;
mod limit;
pub mod portsip;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::bus::{Publisher, SinkRx};
use crate::dialect::{self, enswitch as enswitch_dialect, portsip as portsip_dialect, Encoded};
use crate::event::Event;
use crate::sink::filter::Filter;
pub use config::{Protocol, UserConfig, WebsocketSinkConfig};
use portsip::{Gate, Session, User, Users};

#[derive(Debug, thiserror::Error)]
pub enum WebsocketSinkError {
    #[error("cannot listen on {address}: {source} (is another program using the port?)")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("TLS: cannot read {path}: {message}")]
    TlsFile { path: PathBuf, message: String },
    #[error("TLS: certificate and key do not work together: {0}")]
    Tls(#[from] rustls::Error),
}

/// What every connection shares: settings, and the hub behind one lock.
struct Shared {
    protocol: Protocol,
    version: portsip_dialect::Version,
    enswitch: enswitch_dialect::Context,
    authkey: String,
    users: Vec<User>,
    domain: String,
    tenant_id: String,
    tenant_name: String,
    client_queue: usize,
    max_frame: usize,
    /// Clients served at once: Enswitch connections, PortSIP sessions logged in.
    max_clients: usize,
    /// This appliance's identity: a resume's `since` must name it.
    host: String,
    /// PortSIP: `event_id` in every event message (`event_ids`).
    event_ids: bool,
    hub: Mutex<Hub>,
    /// Woken whenever a client's slot is released.
    released: tokio::sync::Notify,
}

/// Connected clients and the PortSIP state, locked together so a `queue_status` snapshot
/// and the events after it reach a client in order.
struct Hub {
    /// `max_clients` slots, fixed at start; PortSIP: `limit::MAX_PENDING` more for
    /// connections still logging in (each holds a pending slot until it does).
    slots: Vec<Option<Slot>>,
    next_id: u64,
    portsip: Box<portsip_dialect::State>,
    limiter: limit::AuthLimiter,
    /// The bus has closed: no new clients.
    closing: bool,
    /// `[sinks.filter]`: only one customer's events reach this feed.
    filter: Option<Filter>,
    /// The last `resume_events` frames (PortSIP: with `event_ids`), for clients that
    /// resume.
    history: history::History,
}

struct Slot {
    id: u64,
    addr: SocketAddr,
    tx: mpsc::Sender<Utf8Bytes>,
    /// Tells the client's task to close with this frame (its queue is full, or the sink
    /// is gone). Taken when used: the slot then gets no more events, and stays taken
    /// until the task ends.
    kick: Option<oneshot::Sender<CloseFrame>>,
    session: Session,
}

/// A client's ends, handed to its task when its slot is taken.
struct Admitted {
    id: u64,
    rx: mpsc::Receiver<Utf8Bytes>,
    kick: oneshot::Receiver<CloseFrame>,
    /// Frames owed before the live ones (a resume): a gap notice, then the held frames.
    backlog: Vec<Utf8Bytes>,
}

/// A close frame with a fixed reason.
fn close_frame(reason: &'static str, code: CloseCode) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }
}

/// Why the clients of a sink that ended without closing them (stopped by a config reload,
/// or by a drain deadline) are closed: 1012, come back.
const SINK_GONE: &str = "feed restarted (pbxtap reloaded its config or is stopping); reconnect";

impl Shared {
    fn new(cfg: &WebsocketSinkConfig, host: &str) -> Self {
        let users = cfg
            .users
            .iter()
            .map(|u| User {
                username: u.username.clone(),
                domain: u.domain.clone(),
                extension_number: u.extension_number.clone(),
                password: u.password.clone().unwrap_or_default(),
                role: u.role,
                queues: u.queues.clone(),
            })
            .collect();
        let tenant_id = cfg.tenant_id.clone().unwrap_or_else(|| host.to_string());
        let logging_in = match cfg.protocol {
            Protocol::Portsip => limit::MAX_PENDING,
            Protocol::Enswitch => 0,
        };
        Shared {
            protocol: cfg.protocol,
            version: cfg.version,
            enswitch: enswitch_dialect::Context {
                machine: cfg.machine,
            },
            authkey: cfg.authkey.clone().unwrap_or_default(),
            users,
            domain: cfg.domain.clone().unwrap_or_else(|| host.to_string()),
            tenant_name: cfg.tenant_name.clone().unwrap_or_else(|| tenant_id.clone()),
            tenant_id,
            client_queue: cfg.client_queue,
            max_frame: cfg.max_frame,
            max_clients: cfg.max_clients,
            host: host.to_string(),
            event_ids: cfg.event_ids,
            hub: Mutex::new(Hub {
                slots: (0..cfg.max_clients + logging_in).map(|_| None).collect(),
                next_id: 0,
                portsip: Box::default(),
                limiter: limit::AuthLimiter::new(std::time::Instant::now()),
                closing: false,
                filter: cfg.filter.clone().map(Filter::new),
                history: history::History::new(match cfg.protocol {
                    Protocol::Portsip if !cfg.event_ids => 0,
                    _ => cfg.resume_events,
                }),
            }),
            released: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hub> {
        // A panic while holding the lock cannot leave the hub half-updated in a way that
        // matters more than stopping the feed; keep serving.
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn context(&self) -> portsip_dialect::Context<'_> {
        portsip_dialect::Context {
            version: self.version,
            domain: &self.domain,
            tenant_id: &self.tenant_id,
            tenant_name: &self.tenant_name,
        }
    }

    fn users(&self) -> Users<'_> {
        Users {
            users: &self.users,
            version: self.version,
            tenant_id: &self.tenant_id,
        }
    }

    /// Takes a free slot for a client at `addr`, or `None` when `max_clients` are served
    /// (PortSIP: logged in; one still logging in holds a slot of its own). A client
    /// that resumes `since` an event is owed, before the live events (which cannot come
    /// in between: both are decided under the hub lock), a notice of what it missed and
    /// the held frames after that event.
    fn admit(&self, addr: SocketAddr, since: Option<&enswitch::Since>) -> Option<Admitted> {
        let mut hub = self.lock();
        if hub.closing {
            return None;
        }
        if self.served(&hub) >= self.max_clients {
            return None;
        }
        let backlog = since.map_or_else(Vec::new, |since| self.owed(&hub.history, since, |_| true));
        let free = hub.slots.iter().position(Option::is_none)?;
        hub.next_id += 1;
        let id = hub.next_id;
        let (tx, rx) = mpsc::channel(self.client_queue);
        let (kick_tx, kick) = oneshot::channel();
        hub.slots[free] = Some(Slot {
            id,
            addr,
            tx,
            kick: Some(kick_tx),
            session: Session::default(),
        });
        Some(Admitted {
            id,
            rx,
            kick,
            backlog,
        })
    }

    /// What a client resuming `since` is owed before the live events: a notice when it
    /// missed something, then the held frames after that event whose route it `wants`.
    /// PortSIP: the messages of that event itself too, since one event may make several
    /// and the client names only the event (it drops the ones it had by `event_id` and
    /// `event_type`).
    fn owed(
        &self,
        history: &history::History,
        since: &enswitch::Since,
        wants: impl Fn(Option<&portsip_dialect::Route>) -> bool,
    ) -> Vec<Utf8Bytes> {
        let unknown = enswitch::Gap::unknown(since, &self.host, crate::event::boot_id());
        let after = match self.protocol {
            Protocol::Enswitch => since.seq,
            Protocol::Portsip => since.seq.saturating_sub(1),
        };
        let resume = history.after(if unknown.is_none() { after } else { 0 }, wants);
        let gap = unknown.unwrap_or(enswitch::Gap::Missed(resume.missed));
        let mut owed = Vec::new();
        if gap != enswitch::Gap::Missed(0) {
            owed.push(Utf8Bytes::from(match self.protocol {
                Protocol::Enswitch => enswitch::gap_notice(since, &self.host, gap),
                Protocol::Portsip => portsip::gap_notice(since, gap),
            }));
        }
        owed.extend(resume.frames);
        owed
    }

    fn release(&self, id: u64) {
        let mut hub = self.lock();
        if let Some(s) = hub
            .slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|s| s.id == id))
        {
            *s = None;
        }
    }

    /// Whether a client counts against `max_clients`: every Enswitch connection, a
    /// PortSIP session once logged in.
    fn counts(&self, slot: &Slot) -> bool {
        self.protocol == Protocol::Enswitch || slot.session.authenticated()
    }

    /// Clients that count against `max_clients`.
    fn served(&self, hub: &Hub) -> usize {
        hub.slots
            .iter()
            .flatten()
            .filter(|s| self.counts(s))
            .count()
    }

    fn is_logged_in(&self, id: u64) -> bool {
        self.is_in(&self.lock(), id)
    }

    /// Whether client `id` counts against `max_clients` (PortSIP: is logged in).
    fn is_in(&self, hub: &Hub, id: u64) -> bool {
        hub.slots
            .iter()
            .flatten()
            .any(|s| s.id == id && self.counts(s))
    }

    fn clients(&self) -> usize {
        self.lock().slots.iter().flatten().count()
    }

    /// Offers one event to every client that wants it: the Enswitch event, or each
    /// PortSIP message it leads to. Returns how many frames clients took.
    fn fan_out(&self, ev: &Event, buf: &mut Encoded, sink: &str) -> usize {
        let mut hub = self.lock();
        let hub = &mut *hub;
        if hub.filter.as_mut().is_some_and(|f| !f.admits(ev)) {
            return 0;
        }
        let mut sent = 0;
        match self.protocol {
            Protocol::Enswitch => {
                if hub.slots.iter().all(Option::is_none) && !hub.history.enabled() {
                    return 0;
                }
                if let Err(e) = enswitch_dialect::encode_json(ev, &self.enswitch, buf) {
                    tracing::error!(sink, error = %e, seq = ev.seq, "event not encoded");
                    return 0;
                }
                let frame = frame(buf);
                sent += self.offer(&mut hub.slots, &frame, None, sink);
                hub.history.push(ev.seq, None, frame);
            }
            Protocol::Portsip => {
                let seen = hub.portsip.observe(ev);
                if hub.slots.iter().all(Option::is_none) && !hub.history.enabled() {
                    return 0;
                }
                let (slots, history) = (&mut hub.slots, &mut hub.history);
                let id = self.event_ids.then(|| ev.id());
                let mut emit = |route: &portsip_dialect::Route, bytes: &[u8]| {
                    let frame = match &id {
                        Some(id) => portsip::with_event_id(bytes, id),
                        None => frame(bytes),
                    };
                    sent += self.offer(slots, &frame, Some(route), sink);
                    history.push(ev.seq, Some(route), frame);
                };
                let mut out = portsip_dialect::Out::new(buf, &mut emit);
                let ctx = self.context();
                if let Err(e) = portsip_dialect::encode(ev, &seen, &hub.portsip, &ctx, &mut out) {
                    tracing::error!(sink, error = %e, seq = ev.seq, "event not encoded");
                }
            }
        }
        sent
    }

    /// Offers `frame` to each client (that wants `route`, for PortSIP). Returns how many
    /// took it; a client whose queue is full is kicked.
    fn offer(
        &self,
        slots: &mut [Option<Slot>],
        frame: &Utf8Bytes,
        route: Option<&portsip_dialect::Route>,
        sink: &str,
    ) -> usize {
        let mut sent = 0;
        for s in slots.iter_mut().flatten() {
            if s.kick.is_none() || route.is_some_and(|r| !s.session.wants(r, &self.users)) {
                continue;
            }
            match s.tx.try_send(frame.clone()) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(
                        sink,
                        client = %s.addr,
                        queue = self.client_queue,
                        "client too slow: its queue is full; disconnecting it"
                    );
                    if let Some(kick) = s.kick.take() {
                        let _ =
                            kick.send(close_frame("too slow: event queue full", CloseCode::Policy));
                    }
                }
                // Its task has ended and will release the slot.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        sent
    }

    /// Handles a PortSIP client's text frame: the reply, then the statuses and snapshots
    /// a subscribe is owed (`portsip::answer`).
    fn command(&self, id: u64, addr: SocketAddr, text: &str, sink: &str) -> Vec<Utf8Bytes> {
        let now = std::time::Instant::now();
        let mut hub = self.lock();
        let hub = &mut *hub;
        let gate = if !hub.limiter.allowed(addr.ip(), now) {
            Gate::Blocked
        } else if self.served(hub) >= self.max_clients && !self.is_in(hub, id) {
            Gate::Full
        } else {
            Gate::Open
        };
        let Some(slot) = hub.slots.iter_mut().flatten().find(|s| s.id == id) else {
            return Vec::new();
        };
        let out = slot.session.handle(text, &self.users(), gate);
        if out.auth_failed {
            let left = hub.limiter.failed(addr.ip(), now);
            if left == limit::ADDRESS_BURST - 1 || left == 0 {
                tracing::warn!(sink, client = %addr, tries_left = left, "PortSIP login failed");
            }
        } else if let (true, Some(u)) = (out.reply.ok(), slot.session.user()) {
            // Never the command text: an auth command holds a password.
            tracing::debug!(sink, client = %addr, user = %self.users[u].username, command = %out.reply.command, "PortSIP command accepted");
        }
        let mut frames = portsip::answer(
            &out,
            &slot.session,
            &self.users,
            &hub.portsip,
            &self.context(),
            crate::event::now_micros(),
        );
        // A resume: what it missed right after the reply, before the statuses and the
        // live events (decided under the hub lock, so none falls between).
        if let (Some(since), true) = (&out.since, out.reply.ok()) {
            let session = &slot.session;
            let wants = |r: Option<&portsip_dialect::Route>| {
                r.is_some_and(|r| session.wants(r, &self.users))
            };
            let owed = self.owed(&hub.history, since, wants);
            frames.splice(1..1, owed);
        }
        frames
    }

    /// Closes every client at once with `frame` and takes no new ones, unless the sink
    /// is closing them already.
    fn kick_all(&self, frame: &CloseFrame) {
        let mut hub = self.lock();
        if hub.closing {
            return;
        }
        hub.closing = true;
        for kick in hub.slots.iter_mut().flatten().filter_map(|s| s.kick.take()) {
            let _ = kick.send(frame.clone());
        }
    }

    /// Ends every client: each drains its queue, then closes (`pbxtap is stopping`).
    fn close_all(&self) {
        let mut hub = self.lock();
        hub.closing = true;
        for slot in hub.slots.iter_mut().flatten() {
            // Dropping the sender ends the queue once drained; the client's task then
            // closes and releases the slot.
            slot.tx = mpsc::channel(1).0;
        }
    }
}

/// Encoded JSON as a text frame, shared by every client's queue (one copy, reference
/// counted).
fn frame(bytes: &[u8]) -> Utf8Bytes {
    // Encoders write UTF-8 JSON; the fallback cannot happen.
    Utf8Bytes::try_from(bytes.to_vec()).unwrap_or_else(|_| Utf8Bytes::from_static("{}"))
}

pub struct WebsocketSink {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl WebsocketSink {
    /// Validates, loads the TLS certificate and binds the listening socket.
    pub async fn new(
        cfg: &WebsocketSinkConfig,
        publisher: Publisher,
    ) -> Result<Self, WebsocketSinkError> {
        let tls = if cfg.tls() {
            Some(server::tls_acceptor(
                cfg.tls_cert.as_deref().unwrap_or("".as_ref()),
                cfg.tls_key.as_deref().unwrap_or("".as_ref()),
            )?)
        } else {
            None
        };
        let address = cfg.listen().to_string();
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|source| WebsocketSinkError::Listen { address, source })?;
        let shared = Arc::new(Shared::new(cfg, publisher.host()));
        Ok(WebsocketSink {
            shared,
            listener,
            tls,
        })
    }

    /// The address it listens on (the real port when configured with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients and fans events out until the bus closes; then tells every client
    /// to finish its queue and close.
    pub async fn run(self, mut rx: SinkRx) {
        let sink = rx.counters().name.to_string();
        // Stopped before the bus closed (a reload replaced it, or a drain deadline passed):
        // the clients, served by tasks of their own, are closed with a reason, not left
        // connected to a feed that sends nothing.
        let _abandoned = Abandoned(self.shared.clone());
        // Accepting runs in this task, not one of its own: when the task ends, however it
        // ends, the listening socket is closed with it and a restarted sink can bind.
        let accept =
            server::accept_loop(self.listener, self.tls, self.shared.clone(), sink.clone());
        let mut buf = Encoded::new();
        let fan_out = async {
            while let Some(ev) = rx.recv().await {
                self.shared.fan_out(&ev, &mut buf, &sink);
                rx.delivered(1);
            }
        };
        tokio::select! {
            () = fan_out => {}
            never = accept => match never {},
        }
        tracing::info!(
            sink,
            clients = self.shared.clients(),
            "bus closed: closing clients"
        );
        self.shared.close_all();
        // Give them the time a close takes; the daemon's drain deadline bounds this too.
        let deadline = tokio::time::Instant::now() + client::CLOSE_TIMEOUT;
        loop {
            let released = self.shared.released.notified();
            if self.shared.clients() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                tracing::warn!(
                    sink,
                    clients = self.shared.clients(),
                    "clients not closed in time"
                );
                break;
            }
        }
    }
}

/// Kicks every client when the sink's task ends, with [`SINK_GONE`], unless the sink
/// closed them itself (`close_all`).
struct Abandoned(Arc<Shared>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.kick_all(&close_frame(SINK_GONE, CloseCode::Restart));
    }
}

// The largest frame a client can be sent: an event, or a queue snapshot.
const _: () = assert!(dialect::MAX_ENCODED_LEN <= portsip_dialect::MAX_SNAPSHOT_LEN);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{text, AmiLink, Body, QueueCaller, Registration};

    fn ev(body: Body) -> Event {
        Event::new(1_000_000, &text("h"), body)
    }

    fn link() -> Body {
        Body::AmiConnected(AmiLink::default())
    }

    #[test]
    fn a_full_queue_kicks_only_that_client_and_keeps_its_slot_until_released() {
        let cfg = WebsocketSinkConfig {
            client_queue: 2,
            max_clients: 2,
            authkey: Some("k".into()),
            ..Default::default()
        };
        let shared = Shared::new(&cfg, "h");
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut slow = shared.admit(addr, None).unwrap();
        let mut fast = shared.admit(addr, None).unwrap();
        assert!(shared.admit(addr, None).is_none(), "max_clients");
        let mut buf = Encoded::new();
        for _ in 0..5 {
            shared.fan_out(&ev(link()), &mut buf, "t");
            let frame = fast.rx.try_recv().unwrap();
            assert!(frame.starts_with(r#"{"class":"system","event":"ami_connected""#));
        }
        assert_eq!(
            slow.kick.try_recv().map(|f| f.reason),
            Ok(Utf8Bytes::from_static("too slow: event queue full"))
        );
        let mut queued = 0;
        while slow.rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 2, "nothing more after the kick");
        assert_eq!(shared.clients(), 2);
        shared.release(slow.id);
        assert_eq!(shared.clients(), 1);
        shared.close_all();
        assert!(shared.admit(addr, None).is_none(), "closing");
        assert!(matches!(
            fast.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    /// Connections that never log in hold no client slot: with every pending slot taken
    /// (`limit::MAX_PENDING`, which the accept loop enforces), a user still logs in. Once
    /// `max_clients` users are in, another's `auth` is refused unchecked until one leaves.
    /// A PortSIP feed with one user, `101`@`d`, password `pw`, in `queues`.
    fn portsip_feed(queues: &[&str]) -> WebsocketSinkConfig {
        WebsocketSinkConfig {
            protocol: Protocol::Portsip,
            users: vec![UserConfig {
                username: "101".into(),
                domain: "d".into(),
                extension_number: None,
                password: Some("pw".into()),
                password_file: None,
                role: portsip::Role::Extension,
                queues: queues.iter().map(|q| q.to_string()).collect(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn portsip_client_slots_are_for_logged_in_sessions_only() {
        let cfg = WebsocketSinkConfig {
            max_clients: 1,
            ..portsip_feed(&[])
        };
        let shared = Shared::new(&cfg, "h");
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let idle: Vec<_> = (0..limit::MAX_PENDING)
            .map(|_| shared.admit(addr, None).unwrap())
            .collect();
        let first = shared
            .admit(addr, None)
            .expect("a slot beside the idle ones");
        let auth = r#"{"command":"auth","username":"101","domain":"d","password":"pw"}"#;
        assert_eq!(
            shared.command(first.id, addr, auth, "t"),
            [r#"{"command":"auth","id":"1","status":0}"#]
        );
        assert!(
            shared.admit(addr, None).is_none(),
            "max_clients logged in: 503"
        );
        let second = idle[0].id;
        let full = shared.command(second, addr, auth, "t");
        assert!(full[0].contains("server full"), "{full:?}");
        assert!(!shared.is_logged_in(second));
        // The one logged in may send auth again.
        let again = shared.command(first.id, addr, auth, "t");
        assert!(again[0].contains(r#""status":0"#), "{again:?}");
        shared.release(first.id);
        let now_in = shared.command(second, addr, auth, "t");
        assert!(now_in[0].contains(r#""status":0"#), "{now_in:?}");
        assert!(shared.is_logged_in(second));
    }

    #[test]
    fn portsip_fan_out_follows_each_session_and_snapshots_come_with_the_reply() {
        let cfg = portsip_feed(&["q1"]);
        let shared = Shared::new(&cfg, "h");
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut a = shared.admit(addr, None).unwrap();
        let mut buf = Encoded::new();
        let registered = |ext: &str| {
            ev(Body::EndpointRegistered(Registration {
                aor: text(ext),
                contact: text("sip:x@192.0.2.1"),
                ..Default::default()
            }))
        };
        // Not logged in: nothing.
        shared.fan_out(&registered("102"), &mut buf, "t");
        assert!(a.rx.try_recv().is_err());
        let auth = r#"{"command":"auth","username":"101","domain":"d","password":"pw"}"#;
        assert_eq!(
            shared.command(a.id, addr, auth, "t"),
            [r#"{"command":"auth","id":"1","status":0}"#]
        );
        // The subscribe's reply, then the extension's status (online since before).
        let sub = r#"{"command":"subscribe","topics":["extension_events"],"extensions":["102"]}"#;
        let frames = shared.command(a.id, addr, sub, "t");
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(
            frames[1].contains(r#""extension":"sip:102@h""#)
                && frames[1].contains(r#""online":true"#)
        );
        shared.fan_out(&registered("103"), &mut buf, "t");
        shared.fan_out(&registered("104"), &mut buf, "t");
        assert!(a.rx.try_recv().is_err(), "not subscribed to 103 or 104");
        shared.fan_out(
            &ev(Body::EndpointUnregistered(Registration {
                aor: text("102"),
                ..Default::default()
            })),
            &mut buf,
            "t",
        );
        let frame = a.rx.try_recv().unwrap();
        assert!(
            frame.contains(r#""extension_status""#) && frame.contains(r#""online":false"#),
            "{frame}"
        );
        assert!(a.rx.try_recv().is_err());
        // Queue state is kept while nobody listens, and sent as a snapshot on subscribe.
        shared.fan_out(
            &ev(Body::QueueCallerJoined(QueueCaller {
                queue: text("q1"),
                call_id: text("1.1"),
                caller: text("555"),
                position: 1,
                ..Default::default()
            })),
            &mut buf,
            "t",
        );
        let frames = shared.command(
            a.id,
            addr,
            r#"{"command":"subscribe","topics":["queue_events"]}"#,
            "t",
        );
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(frames[1].starts_with(r#"{"event_type":"queue_status""#));
        assert!(frames[1].contains(r#""caller_number":"555""#));
        assert!(a.rx.try_recv().is_err());
    }
}
