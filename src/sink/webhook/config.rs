//! The webhook sink's `[[sinks]]` keys: defaults, validation naming the bad key, secrets
//! from files, and the URL with its auth key.

use std::path::PathBuf;

use hyper::Uri;
use serde::Deserialize;

use crate::settings::{resolve_secret, ConfigError};
use crate::sink::filter::FilterConfig;

/// Most requests in flight `max_in_flight` may ask for.
pub const MAX_IN_FLIGHT: usize = 64;
/// The URL parameter `authkey` is sent in, as Enswitch's own receivers expect.
pub const AUTHKEY_PARAM: &str = "authkey";

/// How events are written in the POST body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookDialect {
    /// `application/x-www-form-urlencoded`: `class`, `event`, `timestamp` and the fields.
    Enswitch,
    /// `application/json`: the native event object.
    Native,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSinkConfig {
    /// `http://` or `https://` URL every event is POSTed to; may carry query parameters.
    pub url: String,
    pub dialect: WebhookDialect,
    /// Added to the URL as `authkey=<key>`; `authkey_file` reads it from a file instead.
    pub authkey: Option<String>,
    pub authkey_file: Option<PathBuf>,
    /// Key of the HMAC-SHA256 signature sent in `X-Pbxtap-Signature`; none: unsigned.
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// PEM file of CA certificates trusted besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Milliseconds a request may take, connecting included, before it is retried.
    pub timeout_ms: u64,
    /// Requests in flight at once (at most one per call).
    pub max_in_flight: usize,
    /// First retry delay in milliseconds; doubles per attempt up to `retry_max_secs`.
    pub retry_min_ms: u64,
    pub retry_max_secs: u64,
    /// Seconds after its first attempt an event is given up (counted and logged).
    pub max_age_secs: u64,
    /// Enswitch: `machine` in every event, which machine of the cluster this is.
    pub machine: u32,
    /// `once` (one attempt, the answer ignored, as Enswitch sends) or `at_least_once`
    /// (retried until answered 2xx or too old; receivers drop copies by event id).
    /// Default: `once` for the enswitch dialect, `at_least_once` for native.
    pub delivery: Option<Delivery>,
    /// `[sinks.filter]`: only one customer's events (`sink::filter`).
    pub filter: Option<FilterConfig>,
}

/// What the sink promises a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// One attempt per event; whatever the endpoint answers, the event is done. A
    /// failure (no answer, a broken connection) is counted and logged, never resent.
    Once,
    /// Resent on 5xx, timeouts and broken connections until answered or `max_age_secs`
    /// old, each copy with the same `Idempotency-Key` header (and `event_id` field).
    AtLeastOnce,
}

impl Default for WebhookSinkConfig {
    fn default() -> Self {
        WebhookSinkConfig {
            url: String::new(),
            dialect: WebhookDialect::Enswitch,
            authkey: None,
            authkey_file: None,
            secret: None,
            secret_file: None,
            ca_file: None,
            timeout_ms: 2_000,
            max_in_flight: 4,
            retry_min_ms: 250,
            retry_max_secs: 30,
            max_age_secs: 120,
            machine: 1,
            delivery: None,
            filter: None,
        }
    }
}

impl WebhookSinkConfig {
    /// The delivery in force: `delivery`, else the dialect's default.
    pub fn delivery(&self) -> Delivery {
        self.delivery.unwrap_or(match self.dialect {
            WebhookDialect::Enswitch => Delivery::Once,
            WebhookDialect::Native => Delivery::AtLeastOnce,
        })
    }

    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        self.uri(key)?;
        if let Some(f) = &self.filter {
            f.validate(&format!("{key}.filter"))?;
        }
        for (name, value) in [("authkey", &self.authkey), ("secret", &self.secret)] {
            if value.as_deref() == Some("") {
                return Err(ConfigError::new(format!("{key}.{name}"), "is empty"));
            }
        }
        if !(10..=600_000).contains(&self.timeout_ms) {
            return Err(ConfigError::new(
                format!("{key}.timeout_ms"),
                "must be between 10 and 600000 milliseconds",
            ));
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            return Err(ConfigError::new(
                format!("{key}.max_in_flight"),
                format!("must be between 1 and {MAX_IN_FLIGHT}"),
            ));
        }
        if self.retry_min_ms == 0 || self.retry_max_secs.saturating_mul(1000) < self.retry_min_ms {
            return Err(ConfigError::new(
                format!("{key}.retry_min_ms"),
                "must be at least 1 and not above retry_max_secs",
            ));
        }
        if self.max_age_secs > 86_400 {
            return Err(ConfigError::new(
                format!("{key}.max_age_secs"),
                "must be at most 86400 (a day); events wait in the ring, not in retries",
            ));
        }
        Ok(())
    }

    pub fn resolve_secrets(
        &mut self,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        resolve_secret(
            &format!("{key}.authkey_file"),
            &mut self.authkey,
            &mut self.authkey_file,
            env,
        )?;
        resolve_secret(
            &format!("{key}.secret_file"),
            &mut self.secret,
            &mut self.secret_file,
            env,
        )
    }

    /// The URL requests go to: `url` with `authkey` added as a parameter.
    pub(super) fn uri(&self, key: &str) -> Result<Uri, ConfigError> {
        let url_key = format!("{key}.url");
        if self.url.is_empty() {
            return Err(ConfigError::new(
                url_key,
                "missing: the URL events are POSTed to, e.g. https://crm.example/pbx?authkey=KEY",
            ));
        }
        let mut url = self.url.clone();
        if let Some(k) = &self.authkey {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(AUTHKEY_PARAM);
            url.push('=');
            url.push_str(&percent_encode(k));
        }
        // The URL is not echoed: it may hold the auth key.
        let uri: Uri = url
            .parse()
            .map_err(|e| ConfigError::new(&url_key, format!("is not a valid URL: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(ConfigError::new(
                    url_key,
                    "must start with http:// or https://",
                ))
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(ConfigError::new(url_key, "has no host"));
        }
        Ok(uri)
    }
}

/// Percent-encodes a URL parameter value: unreserved characters as they are.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn config(sink: &str) -> Result<Config, ConfigError> {
        Config::from_text(
            &format!("[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"webhook\"\n{sink}"),
            &no_env,
        )
    }

    fn webhook(cfg: &Config) -> &WebhookSinkConfig {
        match &cfg.sinks[0] {
            crate::sink::SinkConfig::Webhook(w) => w,
            other => panic!("not a webhook: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_the_authkey_parameter() {
        let cfg = config("url = \"https://crm.example/pbx?x=1\"\nauthkey = \"a b&c\"\n").unwrap();
        let w = webhook(&cfg);
        assert_eq!(w.dialect, WebhookDialect::Enswitch);
        assert_eq!((w.timeout_ms, w.max_in_flight), (2_000, 4));
        assert_eq!(
            w.uri("k").unwrap().to_string(),
            "https://crm.example/pbx?x=1&authkey=a%20b%26c"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("", "sinks[0].url"),
            ("url = \"ftp://x/\"", "sinks[0].url"),
            ("url = \"http://\"", "sinks[0].url"),
            ("url = \"http://a b/\"", "sinks[0].url"),
            ("url = \"http://x/\"\ntimeout_ms = 0", "sinks[0].timeout_ms"),
            (
                "url = \"http://x/\"\nmax_in_flight = 0",
                "sinks[0].max_in_flight",
            ),
            (
                "url = \"http://x/\"\nmax_in_flight = 65",
                "sinks[0].max_in_flight",
            ),
            (
                "url = \"http://x/\"\nretry_min_ms = 5000\nretry_max_secs = 1",
                "sinks[0].retry_min_ms",
            ),
            (
                "url = \"http://x/\"\nmax_age_secs = 100000",
                "sinks[0].max_age_secs",
            ),
            ("url = \"http://x/\"\nsecret = \"\"", "sinks[0].secret"),
            ("url = \"http://x/\"\nauthkey = \"\"", "sinks[0].authkey"),
            (
                "url = \"http://x/\"\nsecret_file = \"/nonexistent/s\"",
                "sinks[0].secret_file",
            ),
            (
                "url = \"http://x/\"\nauthkey_file = \"/nonexistent/k\"",
                "sinks[0].authkey_file",
            ),
        ] {
            let e = config(text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
        // A bad value inside a `[[sinks]]` table names its key.
        let e = config("url = \"http://x/\"\ndialect = \"xml\"").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "sinks[0].dialect: unknown variant `xml`, expected `enswitch` or `native`"
            ),
            "{e}"
        );
        let e = config("url = \"http://x/\"\nretries = 3").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("sinks[0].retries: unknown field `retries`"),
            "{e}"
        );
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook.key"), "k3y\n").unwrap();
        std::fs::write(dir.path().join("hook.secret"), "s3cret\n").unwrap();
        let d = dir.path().display().to_string();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
        let cfg = Config::from_text(
            "[ami]\nsecret = \"s\"\n[[sinks]]\ntype = \"webhook\"\nurl = \"http://x/\"\n\
             authkey_file = \"hook.key\"\nsecret_file = \"hook.secret\"\n",
            &env,
        )
        .unwrap();
        let w = webhook(&cfg);
        assert_eq!(w.authkey.as_deref(), Some("k3y"));
        assert_eq!(w.secret.as_deref(), Some("s3cret"));
    }
}
