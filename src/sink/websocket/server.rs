//! Accepting connections: TCP, optional TLS (rustls), and the WebSocket handshake, where
//! a request is refused with an HTTP status before any upgrade (wrong path or authkey,
//! too many failed logins, server full).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::limit::{Pending, PendingSlot};
use super::{client, enswitch, Admitted, Protocol, Shared, WebsocketSinkError};
use crate::accept::Acceptor;
use crate::dialect::portsip::Version;
use crate::logging::LogLimit;

/// Kernel send buffer of each client connection (Linux doubles it). Fixed instead of
/// auto-tuned (up to 4 MiB), so a stalled client holds little kernel memory and is
/// found out once its `client_queue` fills, not megabytes later.
pub const SOCKET_SEND_BUFFER: usize = 32 * 1024;
/// TCP keepalive of client connections: idle this long, then probed every
/// `KEEPALIVE / 6`; a vanished client (no FIN, e.g. powered off) frees its slot.
pub const KEEPALIVE: Duration = Duration::from_secs(60);
/// Time allowed for the TLS and WebSocket handshakes together.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a new connection has to send its first byte: an idle opener gives its
/// handshake slot back after this, not after `HANDSHAKE_TIMEOUT`.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most often a refused-connection warning is logged (the others are counted into it).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A TLS acceptor from PEM files: the certificate chain and its private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, WebsocketSinkError> {
    let file_err = |path: &Path, e: &dyn std::fmt::Display| WebsocketSinkError::TlsFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let read = |path: &Path| {
        crate::settings::read_limited(path, crate::settings::MAX_PEM_FILE)
            .map_err(|e| file_err(path, &e))
    };
    let certs = CertificateDer::pem_slice_iter(read(cert)?.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(cert, &e))?;
    if certs.is_empty() {
        return Err(file_err(cert, &"no PEM certificate in it"));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(read(key)?.as_bytes()).map_err(|e| file_err(key, &e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The tungstenite settings: incoming messages and frames bounded by `max_frame`; small
/// read buffers; writes go out eagerly and never pile up past one event.
fn ws_config(max_frame: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * crate::dialect::portsip::MAX_SNAPSHOT_LEN)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
}

/// Warns of refused connections, at most once per [`REFUSAL_LOG_INTERVAL`], counting
/// the ones held back.
struct RefusalLog(LogLimit);

impl RefusalLog {
    fn note(&mut self, sink: &str, client: &dyn std::fmt::Display, why: &str) {
        if let Some(suppressed) = self.0.allow(Instant::now()) {
            tracing::warn!(sink, %client, reason = why, suppressed, "connection refused");
        }
    }
}

/// Accepts clients until dropped (it never returns): each gets a task of its own for the
/// handshake and then its connection.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    sink: String,
) -> std::convert::Infallible {
    let pending = Arc::new(std::sync::Mutex::new(Pending::default()));
    let refusals = Arc::new(std::sync::Mutex::new(RefusalLog(LogLimit::new(
        REFUSAL_LOG_INTERVAL,
    ))));
    tracing::info!(sink, address = ?listener.local_addr().ok(), protocol = ?shared.protocol, tls = tls.is_some(), "websocket feed listening");
    let mut listener = Acceptor::new(listener, "websocket");
    loop {
        let (stream, addr) = listener.accept().await;
        let slot = match PendingSlot::take(&pending, addr.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                let mut log = refusals.lock().unwrap_or_else(|e| e.into_inner());
                log.note(&sink, &addr, why);
                continue;
            }
        };
        let (shared, tls, sink, refusals) =
            (shared.clone(), tls.clone(), sink.clone(), refusals.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let sock = socket2::SockRef::from(&stream);
            let _ = sock.set_send_buffer_size(SOCKET_SEND_BUFFER);
            let _ = sock.set_tcp_keepalive(
                &socket2::TcpKeepalive::new()
                    .with_time(KEEPALIVE)
                    .with_interval(KEEPALIVE / 6),
            );
            let handshake = async {
                // An opener that sends nothing gives its slot back soon.
                let mut first = [0u8; 1];
                match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(_) => return Err("closed before the handshake".to_string()),
                    Err(_) => return Err(format!("nothing sent within {FIRST_BYTE_TIMEOUT:?}")),
                }
                match tls {
                    Some(tls) => match tls.accept(stream).await {
                        Ok(s) => upgrade(s, addr, &shared).await,
                        Err(e) => Err(format!("TLS handshake failed: {e}")),
                    },
                    None => upgrade(stream, addr, &shared).await,
                }
            };
            let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await;
            // A PortSIP client is let in only by its login: until then it keeps its slot.
            let pending = (shared.protocol == Protocol::Portsip).then_some(slot);
            match result {
                Ok(Ok(run)) => run.serve(&shared, &sink, pending).await,
                Ok(Err(why)) => refusals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .note(&sink, &addr, &why),
                Err(_) => refusals.lock().unwrap_or_else(|e| e.into_inner()).note(
                    &sink,
                    &addr,
                    "handshake not finished in time",
                ),
            }
        });
    }
}

/// A connection past its handshake, plain or TLS, ready to serve.
pub enum Upgraded {
    Plain(Box<client::Client<TcpStream>>),
    Tls(Box<client::Client<tokio_rustls::server::TlsStream<TcpStream>>>),
}

impl From<client::Client<TcpStream>> for Upgraded {
    fn from(c: client::Client<TcpStream>) -> Self {
        Upgraded::Plain(Box::new(c))
    }
}

impl From<client::Client<tokio_rustls::server::TlsStream<TcpStream>>> for Upgraded {
    fn from(c: client::Client<tokio_rustls::server::TlsStream<TcpStream>>) -> Self {
        Upgraded::Tls(Box::new(c))
    }
}

impl Upgraded {
    async fn serve(self, shared: &Arc<Shared>, sink: &str, pending: Option<PendingSlot>) {
        match self {
            Upgraded::Plain(c) => c.serve(shared, sink, pending).await,
            Upgraded::Tls(c) => c.serve(shared, sink, pending).await,
        }
    }
}

fn refuse(status: u16, message: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(message.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    r
}

/// The WebSocket handshake, with the request checked before the upgrade is answered.
// The refusal type is tungstenite's (an HTTP response), returned once per refused request.
#[allow(clippy::result_large_err)]
async fn upgrade<S>(stream: S, addr: SocketAddr, shared: &Arc<Shared>) -> Result<Upgraded, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Upgraded: From<client::Client<S>>,
{
    let mut admitted: Option<Admitted> = None;
    let mut refused: Option<&'static str> = None;
    let mut since: Option<enswitch::Since> = None;
    let callback = |req: &Request, resp: Response| {
        let now = Instant::now();
        if shared.protocol == Protocol::Portsip {
            let path = req.uri().path();
            let served = shared.version.path();
            if path != served && path.strip_suffix('/') != Some(served) {
                refused = Some("wrong path");
                return Err(refuse(
                    404,
                    match shared.version {
                        Version::V16 => "not found: PortSIP v16 Pub/Sub is served at /",
                        Version::V22 => "not found: PortSIP Pub/Sub is served at /wsi",
                    },
                ));
            }
        }
        if shared.protocol == Protocol::Enswitch {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let mut hub = shared.lock();
            if !hub.limiter.allowed(addr.ip(), now) {
                refused = Some("too many failed logins");
                return Err(refuse(
                    429,
                    "too many failed logins from this address; try again later",
                ));
            }
            if let Err(r) = enswitch::check(target, &shared.authkey) {
                if r == enswitch::Refusal::WrongKey {
                    hub.limiter.failed(addr.ip(), now);
                }
                refused = Some(r.message());
                return Err(refuse(r.status(), r.message()));
            }
            match enswitch::since(target) {
                Ok(s) => since = s,
                Err(r) => {
                    refused = Some(r.message());
                    return Err(refuse(r.status(), r.message()));
                }
            }
        }
        match shared.admit(addr, since.as_ref()) {
            Some(a) => {
                admitted = Some(a);
                Ok(resp)
            }
            None => {
                refused = Some("server full: max_clients connected");
                Err(refuse(
                    503,
                    "server full: too many clients connected; try again later",
                ))
            }
        }
    };
    let result = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(ws_config(shared.max_frame)),
    )
    .await;
    match (result, admitted) {
        (Ok(ws), Some(a)) => Ok(client::Client::new(ws, addr, a).into()),
        (Ok(_), None) => Err("handshake finished without admission".into()),
        (Err(e), a) => {
            if let Some(a) = a {
                shared.release(a.id);
            }
            Err(refused.map_or_else(|| format!("handshake failed: {e}"), str::to_string))
        }
    }
}
