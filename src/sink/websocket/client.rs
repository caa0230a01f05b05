//! One connected client: writes what its bounded queue holds, reads its commands
//! (PortSIP), and closes with a reason when it is kicked for being too slow, takes too
//! long to log in, or pbxtap stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::limit::PendingSlot;
use super::{Admitted, Protocol, Shared};

/// Time a PortSIP client has to log in after its handshake. Until then it holds one of
/// the few pending slots (`limit::MAX_PENDING`), not a client slot: kept short so
/// connections that never log in cannot keep real users waiting long.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to send a close frame to a client that may not be reading; its slot
/// stays taken meanwhile, so `max_clients` holds.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client<S> {
    ws: WebSocketStream<S>,
    addr: SocketAddr,
    id: u64,
    rx: mpsc::Receiver<Utf8Bytes>,
    kick: oneshot::Receiver<CloseFrame>,
    /// A resume's frames, sent before the live ones.
    backlog: Vec<Utf8Bytes>,
}

/// Releases the client's slot however its task ends.
struct Release<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.shared.release(self.id);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub(super) fn new(ws: WebSocketStream<S>, addr: SocketAddr, a: Admitted) -> Self {
        Client {
            ws,
            addr,
            id: a.id,
            rx: a.rx,
            kick: a.kick,
            backlog: a.backlog,
        }
    }

    /// Sends one frame, unless the client is kicked meanwhile. `Err` ends the connection,
    /// with the close frame to try to send.
    async fn send(&mut self, msg: Message, sink: &str) -> Result<(), Option<CloseFrame>> {
        tokio::select! {
            biased;
            r = &mut self.kick => Err(r.ok()),
            sent = self.ws.send(msg) => sent.map_err(|e| {
                tracing::debug!(sink, client = %self.addr, error = %e, "send failed");
                None
            }),
        }
    }

    /// Sends a command's reply: like [`send`](Self::send), and a client that does not
    /// take its replies within `CLOSE_TIMEOUT` is closed (replies bypass the queue).
    async fn reply(&mut self, msg: Message, sink: &str) -> Result<(), Option<CloseFrame>> {
        match tokio::time::timeout(CLOSE_TIMEOUT, self.send(msg, sink)).await {
            Ok(r) => r,
            Err(_) => Err(close("not reading replies", CloseCode::Policy)),
        }
    }

    /// Serves the client until it leaves or is closed. `pending` is a PortSIP client's
    /// pending slot, given back when it logs in.
    pub async fn serve(mut self, shared: &Arc<Shared>, sink: &str, pending: Option<PendingSlot>) {
        let mut pending = pending;
        let _release = Release {
            shared,
            id: self.id,
        };
        tracing::info!(sink, client = %self.addr, resumed = self.backlog.len(), "client connected");
        let login_by = tokio::time::Instant::now() + AUTH_TIMEOUT;
        let mut logged_in = shared.protocol == Protocol::Enswitch;
        // A resume's frames first; live ones wait in the queue meanwhile (a client too slow
        // for both is kicked when it fills, as any).
        let mut resumed = None;
        for frame in std::mem::take(&mut self.backlog) {
            if let Err(reason) = self.send(Message::Text(frame), sink).await {
                resumed = Some(reason);
                break;
            }
        }
        let reason = if let Some(reason) = resumed {
            reason
        } else {
            loop {
                tokio::select! {
                    biased;
                    r = &mut self.kick => break r.ok(),
                    _ = tokio::time::sleep_until(login_by), if !logged_in => {
                        break close("no auth within 10 seconds", CloseCode::Policy);
                    }
                    msg = self.rx.recv() => match msg {
                        Some(frame) => {
                            if let Err(reason) = self.send(Message::Text(frame), sink).await {
                                break reason;
                            }
                        }
                        None => break close("pbxtap is stopping", CloseCode::Away),
                    },
                    incoming = self.ws.next() => match incoming {
                        Some(Ok(Message::Text(text))) if shared.protocol == Protocol::Portsip => {
                            let mut ended = None;
                            for reply in shared.command(self.id, self.addr, &text, sink) {
                                if let Err(reason) = self.reply(Message::Text(reply), sink).await {
                                    ended = Some(reason);
                                    break;
                                }
                            }
                            if let Some(reason) = ended {
                                break reason;
                            }
                            if !logged_in && shared.is_logged_in(self.id) {
                                logged_in = true;
                                drop(pending.take());
                            }
                        }
                        Some(Ok(Message::Binary(_))) if shared.protocol == Protocol::Portsip => {
                            let reply = super::portsip::Reply {
                                command: String::new(),
                                id: 0,
                                error: Some("send commands as text frames".into()),
                            };
                            let json = reply.to_json(shared.version);
                            if let Err(reason) = self.reply(Message::text(json), sink).await {
                                break reason;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => break None,
                        // Pings are answered by tungstenite; Enswitch clients only listen.
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::info!(sink, client = %self.addr, error = %e, "client connection error");
                            break None;
                        }
                    },
                }
            }
        };
        if let Some(frame) = reason {
            tracing::info!(sink, client = %self.addr, reason = %frame.reason, "closing client");
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close(Some(frame))).await;
        } else {
            tracing::info!(sink, client = %self.addr, "client disconnected");
        }
    }
}

fn close(reason: &'static str, code: CloseCode) -> Option<CloseFrame> {
    Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    })
}
