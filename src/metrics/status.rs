//! `pbxtap status`: a running daemon's metrics page, fetched and told in a few lines for
//! an admin on an SSH session.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest page read.
pub const MAX_PAGE: usize = 1024 * 1024;

/// The samples of one metrics page: `name{labels}` → value.
#[derive(Debug, Default)]
pub struct Scrape {
    samples: BTreeMap<String, f64>,
}

/// Fetches `http://<address>/metrics` within `timeout`.
pub fn fetch(address: &str, timeout: Duration) -> Result<Scrape, String> {
    let addr = std::net::ToSocketAddrs::to_socket_addrs(address)
        .map_err(|e| format!("{address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address}: no address"))?;
    let mut conn = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        format!("cannot reach the metrics endpoint at {address}: {e} (is pbxtap running, with [metrics] enabled = true?)")
    })?;
    conn.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{address}: {e}"))?;
    let mut page = Vec::new();
    conn.take(MAX_PAGE as u64)
        .read_to_end(&mut page)
        .map_err(|e| format!("{address}: {e}"))?;
    let text = String::from_utf8_lossy(&page);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{address}: not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "{address}: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(Scrape::parse(body))
}

impl Scrape {
    /// Reads the text format's sample lines (comments skipped).
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                Some((key.to_string(), value.parse().ok()?))
            })
            .collect();
        Scrape { samples }
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.samples.get(key).copied()
    }

    /// Each sink's name, from `pbxtap_sink_up{sink="..."}`.
    fn sinks(&self) -> impl Iterator<Item = &str> {
        self.samples.keys().filter_map(|k| {
            k.strip_prefix("pbxtap_sink_up{sink=\"")?
                .strip_suffix("\"}")
        })
    }

    /// The summary `pbxtap status` prints.
    pub fn summary(&self) -> String {
        let n = |key: &str| self.get(key).unwrap_or(0.0) as u64;
        let mut out = format!(
            "AMI: {} ({} reconnects, {} messages)\n",
            if n("pbxtap_ami_connected") == 1 {
                "connected"
            } else {
                "NOT CONNECTED"
            },
            n("pbxtap_ami_reconnects_total"),
            n("pbxtap_ami_messages_total"),
        );
        out += &format!(
            "events: {} published; live calls {} of {}\n",
            n("pbxtap_events_published_total"),
            n("pbxtap_normalizer_table_entries{table=\"calls\"}"),
            n("pbxtap_normalizer_table_capacity{table=\"calls\"}"),
        );
        for sink in self.sinks() {
            let of = |metric: &str| n(&format!("{metric}{{sink=\"{sink}\"}}"));
            out += &format!(
                "sink {sink}: {}, {} delivered, backlog {} of {}, {} dropped\n",
                if of("pbxtap_sink_up") == 1 {
                    "up"
                } else {
                    "DOWN"
                },
                of("pbxtap_sink_delivered_total"),
                of("pbxtap_sink_backlog"),
                of("pbxtap_sink_capacity"),
                of("pbxtap_sink_dropped_total"),
            );
        }
        out += &format!(
            "memory: {} KiB resident\n",
            n("process_resident_memory_bytes") / 1024
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_told_in_a_few_lines() {
        let page = "# HELP x y\npbxtap_ami_connected 1\npbxtap_ami_reconnects_total 2\n\
                    pbxtap_events_published_total 40\npbxtap_sink_up{sink=\"nats#0\"} 0\n\
                    pbxtap_sink_backlog{sink=\"nats#0\"} 7\npbxtap_sink_capacity{sink=\"nats#0\"} 1024\n\
                    process_resident_memory_bytes 8388608\n";
        let s = Scrape::parse(page).summary();
        assert!(
            s.starts_with("AMI: connected (2 reconnects, 0 messages)\n"),
            "{s}"
        );
        assert!(s.contains("events: 40 published"), "{s}");
        assert!(
            s.contains("sink nats#0: DOWN, 0 delivered, backlog 7 of 1024, 0 dropped"),
            "{s}"
        );
        assert!(s.ends_with("memory: 8192 KiB resident\n"), "{s}");
    }
}
