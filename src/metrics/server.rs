//! Answers scrapes: a minimal HTTP/1.1 server for `GET /metrics`, one request per
//! connection. Bounded like every listener here: at most [`MAX_SCRAPES`] at once (more
//! are closed unanswered), a request head of at most [`MAX_REQUEST`] bytes read within
//! [`REQUEST_TIMEOUT`], the answer written within the same time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{render, MetricsConfig, Sources};

/// Scrapes answered at once.
pub const MAX_SCRAPES: usize = 4;
/// Largest request head read.
pub const MAX_REQUEST: usize = 4096;
/// Time for a scraper to send its request, and for the answer to be written.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Serves scrapes until the task is dropped.
pub async fn serve(server: MetricsServer, src: Sources) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok((stream, peer)) = server.listener.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics: too many scrapes at once; closing this one");
            continue;
        };
        let src = src.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT * 2, answer(stream, &src)).await {
                tracing::debug!(%peer, error = %e, "metrics: scrape timed out");
            }
        });
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, src: &Sources) {
    let mut head = [0u8; MAX_REQUEST];
    let mut len = 0;
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while !head[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < MAX_REQUEST {
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
    let line = head[..len]
        .split(|&b| b == b'\r')
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
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
