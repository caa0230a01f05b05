//! The webhook's HTTP side: the pooled hyper client with rustls, and one POST attempt
//! with its timeout. What to do with the outcome is decided by the sink's loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::config::{WebhookDialect, WebhookSinkConfig};
use super::sign::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::WebhookSinkError;
use crate::event;

/// Most bytes of a response body read (and thrown away) so that its connection can be
/// reused; after more, the connection is closed instead.
pub const MAX_RESPONSE_DRAIN: usize = 64 * 1024;
/// Read buffer of one connection, and so the largest response head accepted (hyper's
/// default is about 400 KiB); a larger head fails the attempt, which is retried.
pub const RESPONSE_BUFFER: usize = 16 * 1024;
/// How long an idle connection is kept open for the next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What every request needs; shared by the requests in flight.
pub(super) struct Endpoint {
    client: HttpClient,
    uri: Uri,
    /// `scheme://host:port/path`: the URL without its query (which may hold the auth key),
    /// for logs.
    pub shown: String,
    content_type: HeaderValue,
    secret: Option<Box<[u8]>>,
    timeout: Duration,
}

impl Endpoint {
    /// The client for `cfg` (already validated), sending to `uri`. Does not connect.
    pub fn new(cfg: &WebhookSinkConfig, uri: Uri) -> Result<Endpoint, WebhookSinkError> {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let tls = tls_config(uri.scheme_str() == Some("https"), cfg.ca_file.as_ref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // Design: the pool keeps at most one idle connection per request in flight; the
        // client queues nothing itself: each request is one of the sink's slots.
        let client = Client::builder(TokioExecutor::new())
            .http1_max_buf_size(RESPONSE_BUFFER)
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(cfg.max_in_flight)
            .build(connector);
        let shown = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map(|a| a.as_str()).unwrap_or(""),
            uri.path()
        );
        let content_type = HeaderValue::from_static(match cfg.dialect {
            WebhookDialect::Enswitch => "application/x-www-form-urlencoded",
            WebhookDialect::Native => "application/json",
        });
        Ok(Endpoint {
            client,
            uri,
            shown,
            content_type,
            secret: cfg.secret.as_ref().map(|s| s.as_bytes().into()),
            timeout,
        })
    }
}

/// The endpoint's status, or why there was none.
pub(super) type Attempt = Result<u16, AttemptError>;

/// Why an attempt did not get an answer the sink can act on.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    #[error("HTTP {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{}", error_chain(.0))]
    Http(hyper_util::client::legacy::Error),
    #[error("the request task panicked")]
    Panicked,
}

/// An error and its causes: `client error (Connect): tcp connect error: Connection refused`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// One POST of `body`: the endpoint's status, or why there was none.
/// The header an event's id travels in (`Event::id`), the same on every copy: a receiver
/// that keeps the ids it has seen drops repeats.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// One POST of `body`, the event `id`'s.
pub(super) async fn attempt(endpoint: &Endpoint, body: Bytes, id: HeaderValue) -> Attempt {
    let mut req = hyper::Request::post(endpoint.uri.clone())
        .header(CONTENT_TYPE, endpoint.content_type.clone())
        .header(IDEMPOTENCY_HEADER, id)
        .header(
            USER_AGENT,
            HeaderValue::from_static(concat!("pbxtap/", env!("CARGO_PKG_VERSION"))),
        );
    if let Some(secret) = &endpoint.secret {
        let now = event::now_micros() / 1_000_000;
        req = req
            .header(TIMESTAMP_HEADER, now)
            .header(SIGNATURE_HEADER, sign(secret, now, &body).as_str());
    }
    // Cannot fail: the URI was checked at start and the headers are valid.
    let req = req.body(Full::new(body)).expect("request parts are valid");
    let response = tokio::time::timeout(endpoint.timeout, endpoint.client.request(req))
        .await
        .map_err(|_| AttemptError::Timeout(endpoint.timeout))?
        .map_err(AttemptError::Http)?;
    let status = response.status().as_u16();
    // The body is ignored (as Enswitch does); reading it lets the connection be reused.
    let mut body = response.into_body();
    let _ = tokio::time::timeout(endpoint.timeout, async {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > MAX_RESPONSE_DRAIN {
                break;
            }
        }
    })
    .await;
    Ok(status)
}

/// rustls with ring: the system's CA certificates (for https) and those of `ca_file`.
fn tls_config(
    https: bool,
    ca_file: Option<&PathBuf>,
) -> Result<rustls::ClientConfig, WebhookSinkError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    if https {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(sink = "webhook", error = %e, "some system CA certificates could not be read");
        }
        roots.add_parsable_certificates(native.certs);
    }
    if let Some(path) = ca_file {
        let bad = |reason: String| WebhookSinkError::CaFile {
            path: path.clone(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        }
    }
    if https && roots.is_empty() {
        return Err(WebhookSinkError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = tls_config(true, Some(&path)).unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
        let e = tls_config(false, Some(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }
}
