//! The metrics endpoint: `GET /metrics` in Prometheus' text format (version 0.0.4, which
//! every Prometheus, VictoriaMetrics, Vector and Fluent Bit scrapes), off by default
//! (`[metrics] enabled = true`, on loopback unless `listen` says otherwise).
//!
//! [`render`] writes what [`Sources`] hold into a page, in memory fixed by the config:
//! one line per sink and per event class, no label that grows with input. `server`
//! answers the scrapes, `slots` bounds who it answers. `pbxtap status` reads the same page ([`Scrape`]).

mod config;
mod server;
mod slots;
mod status;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use config::{MetricsConfig, DEFAULT_LISTEN};
pub use server::{serve, MetricsServer};
pub use status::{fetch, Scrape};

use crate::ami::client::AmiHealth;
use crate::bus::{Bus, Priority, SinkCounters};
use crate::event::Class;
use crate::normalize::TABLES;
use crate::tap::TapGauges;

/// What the page is made from: shared with the parts that count.
#[derive(Clone)]
pub struct Sources {
    pub bus: Arc<Bus>,
    pub ami: Arc<AmiHealth>,
    pub tap: Arc<TapGauges>,
}

/// One metric's header lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped as the format asks (`\\`, `\"`, `\n`).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// This process's resident memory in bytes, read as the watchdog reads Asterisk's (0
/// where there is no /proc).
fn resident_bytes() -> u64 {
    crate::watchdog::asterisk::sample(std::path::Path::new("/proc"), std::process::id())
        .map_or(0, |s| s.rss_kib * 1024)
}

/// One per-sink metric's value, from the sink's counters.
type SinkValue = fn(&SinkCounters) -> u64;

/// Writes the page into `out` (cleared first).
pub fn render(src: &Sources, out: &mut String) {
    out.clear();
    let bus = &src.bus;
    let published = bus.published();
    header(
        out,
        "pbxtap_events_published_total",
        "counter",
        "Events published on the bus since start.",
    );
    let _ = writeln!(out, "pbxtap_events_published_total {published}");
    header(
        out,
        "pbxtap_events_total",
        "counter",
        "Events published since start, by class.",
    );
    for class in Class::ALL {
        let _ = writeln!(
            out,
            "pbxtap_events_total{{class=\"{}\"}} {}",
            class.as_str(),
            bus.published_in(class)
        );
    }
    let sinks = bus.sinks();
    let per_sink: [(&str, &str, &str, SinkValue); 5] = [
        (
            "pbxtap_sink_delivered_total",
            "counter",
            "Events the sink delivered (published, acknowledged or written).",
            |c| c.delivered.load(Ordering::Relaxed),
        ),
        (
            "pbxtap_sink_dropped_total",
            "counter",
            "Events the sink lost: overwritten in its ring before it read them.",
            |c| c.lost(),
        ),
        (
            "pbxtap_sink_backlog",
            "gauge",
            "Events waiting in the sink's ring.",
            |c| c.backlog(),
        ),
        (
            "pbxtap_sink_capacity",
            "gauge",
            "Events the sink's rings hold (buffers.per_sink: a quarter low, half normal, a quarter high priority).",
            |c| c.capacity(),
        ),
        (
            "pbxtap_sink_up",
            "gauge",
            "1 when the sink reaches its destination, 0 when it cannot.",
            |c| u64::from(!c.down.load(Ordering::Relaxed)),
        ),
    ];
    for (name, kind, help, value) in per_sink {
        header(out, name, kind, help);
        for c in &sinks {
            let _ = writeln!(out, "{name}{{sink=\"{}\"}} {}", label(&c.name), value(c));
        }
    }
    header(
        out,
        "pbxtap_sink_shed_total",
        "counter",
        "Events overwritten in the sink's ring of one priority before it read them: low (presence, ringing) goes first in a storm.",
    );
    for c in &sinks {
        for p in Priority::ALL {
            let _ = writeln!(
                out,
                "pbxtap_sink_shed_total{{sink=\"{}\",priority=\"{}\"}} {}",
                label(&c.name),
                p.as_str(),
                c.rings[p.index()].shed.load(Ordering::Relaxed)
            );
        }
    }
    let ami = &src.ami;
    let tap = &src.tap;
    header(
        out,
        "pbxtap_normalizer_table_entries",
        "gauge",
        "Entries in use in each of the normalizer's fixed tables.",
    );
    for ((table, _), n) in TABLES.iter().zip(&tap.tables) {
        let _ = writeln!(
            out,
            "pbxtap_normalizer_table_entries{{table=\"{table}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    header(
        out,
        "pbxtap_normalizer_table_capacity",
        "gauge",
        "Entries each of the normalizer's fixed tables holds.",
    );
    for (table, capacity) in TABLES {
        let _ = writeln!(
            out,
            "pbxtap_normalizer_table_capacity{{table=\"{table}\"}} {capacity}"
        );
    }
    let gauges: [(&str, &str, &str, u64); 10] = [
        (
            "pbxtap_ami_connected",
            "gauge",
            "1 while logged in to Asterisk's AMI.",
            u64::from(ami.connected.load(Ordering::Relaxed)),
        ),
        (
            "pbxtap_ami_reconnects_total",
            "counter",
            "AMI connections made again after one was lost.",
            ami.reconnects.load(Ordering::Relaxed),
        ),
        (
            "pbxtap_ami_messages_total",
            "counter",
            "AMI messages received, those passed over unread included.",
            ami.messages.load(Ordering::Relaxed),
        ),
        (
            "pbxtap_ami_bytes_total",
            "counter",
            "Bytes read from the AMI socket.",
            ami.bytes.load(Ordering::Relaxed),
        ),
        (
            "pbxtap_ami_filtered_at_source",
            "gauge",
            "1 while Asterisk sends only the events pbxtap reads (ami.filter_at_source).",
            u64::from(ami.filtered_at_source.load(Ordering::Relaxed)),
        ),
        (
            "pbxtap_ami_lag_ms",
            "gauge",
            "How far behind Asterisk's own Timestamp the last stamped AMI message was read, in ms.",
            tap.lag_ms.load(Ordering::Relaxed),
        ),
        (
            "pbxtap_ami_frame_errors_total",
            "counter",
            "AMI messages skipped as too large or with too many headers.",
            ami.frame_errors.load(Ordering::Relaxed),
        ),
        (
            "pbxtap_normalizer_truncated_total",
            "counter",
            "Field values cut to fit their bounds.",
            tap.truncated.load(Ordering::Relaxed),
        ),
        (
            "pbxtap_normalizer_evicted_total",
            "counter",
            "Table entries forgotten because a table was full.",
            tap.evicted.load(Ordering::Relaxed),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            resident_bytes(),
        ),
    ];
    for (name, kind, help, value) in gauges {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}
