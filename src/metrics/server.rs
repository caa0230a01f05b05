//! Answers scrapes: a minimal HTTP/1.1 server for `GET /metrics`, one request per
//! connection. Bounded like every listener here: at most `slots::MAX_SCRAPES` connections
//! at once, `slots::MAX_PER_ADDRESS` from one address, idle ones making way for new ones
//! (`slots`); a request head of at most [`MAX_REQUEST`] bytes read within
//! [`HEAD_TIMEOUT`]; the answer written within [`WRITE_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::slots::Slots;
use super::{render, MetricsConfig, Sources};
use crate::accept::Acceptor;

/// Largest request head read.
pub const MAX_REQUEST: usize = 4096;
/// Time for a scraper to send its whole request head, from its connect. Scrapers send it
/// at once; this only bounds what a socket that never finishes can hold.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Time for the answer to be written.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Listens on `cfg.listen`.
    pub async fn bind(cfg: &MetricsConfig) -> std::io::Result<MetricsServer> {
        Ok(MetricsServer {
            listener: TcpListener::bind(&cfg.listen).await?,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// The slot table, and a connection's place in it, given back when dropped.
type Table = Arc<Mutex<Slots<oneshot::Sender<()>>>>;

struct Place {
    table: Table,
    id: u64,
}

impl Place {
    fn answering(&self) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .answering(self.id);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .end(self.id);
    }
}

/// Serves scrapes until the task is dropped.
pub async fn serve(server: MetricsServer, src: Sources) {
    let table: Table = Arc::default();
    let mut listener = Acceptor::new(server.listener, "metrics");
    loop {
        let (stream, peer) = listener.accept().await;
        let (keep, pushed_out) = oneshot::channel();
        let admitted = table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(peer.ip(), keep);
        let id = match admitted {
            Ok(id) => id,
            Err(why) => {
                tracing::debug!(%peer, reason = why, "metrics: connection closed unanswered");
                continue;
            }
        };
        let place = Place {
            table: table.clone(),
            id,
        };
        let src = src.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = pushed_out => {
                    tracing::debug!(%peer, "metrics: closed unanswered: a newer connection took its place");
                }
                () = answer(stream, &src, &place) => {}
            }
        });
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, src: &Sources, place: &Place) {
    let mut head = [0u8; MAX_REQUEST];
    let mut len = 0;
    let read = tokio::time::timeout(HEAD_TIMEOUT, async {
        while !head_ended(&head[..len]) && len < MAX_REQUEST {
            match stream.read(&mut head[len..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => len += n,
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    place.answering();
    let line = head[..len]
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, kind, body) = match (method, path) {
        (b"GET", b"/metrics") => {
            let mut page = String::with_capacity(8192);
            render(src, &mut page);
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", page)
        }
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: GET /metrics\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics\n".into(),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Whether `head` holds a whole request head: it ends with an empty line, CRLF or a bare
/// LF as HTTP allows a server to accept.
fn head_ended(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_with_an_empty_line_of_crlf_or_bare_lf() {
        assert!(head_ended(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(head_ended(b"GET /metrics HTTP/1.0\n\n"));
        assert!(head_ended(b"GET /metrics HTTP/1.0\nHost: x\n\n"));
        assert!(!head_ended(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"));
        assert!(!head_ended(b"GET /metrics HTTP/1.1\r\n\r"));
    }
}
