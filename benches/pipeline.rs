//! Throughput of the hot path, stage by stage, over the recorded Asterisk sessions:
//! frame parsing (of every message, and as the daemon does it, passing over the events the
//! normalizer does not read), normalization (of messages parsed beforehand), normalization
//! and native encoding together, encoding in each dialect, and all of it from bytes to JSON.
//! Run: `cargo bench --bench pipeline`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::bench::recordings;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pbxtap::ami::frame::{Frame, Limits, OwnedMessage, Parser};
use pbxtap::dialect::{enswitch, native, portsip, routr, Encoded};
use pbxtap::event::{text, Body, Event};
use pbxtap::normalize::{self, NormalizeConfig, Normalizer};

/// The SIP domain of the Routr payloads.
const ROUTR: routr::Context<'static> = routr::Context {
    domain: "pbx1",
    metadata: &[],
    endpoints: &[],
    prefix: "",
};
/// The machine number of the Enswitch payloads.
const ENSWITCH: enswitch::Context = enswitch::Context { machine: 1 };

/// The recordings' messages, parsed.
fn messages(stream: &[u8]) -> Vec<OwnedMessage> {
    let mut parser = Parser::new(Limits::default());
    let mut out = Vec::new();
    parser.push(stream, &mut |f| {
        if let Ok(Frame::Message(m)) = f {
            out.push(m.to_owned_message())
        }
    });
    out
}

/// Normalizes `msgs` with `normalizer`, passing each event to `each`; returns the count.
fn normalize_all(
    msgs: &[OwnedMessage],
    normalizer: &mut Normalizer,
    each: &mut dyn FnMut(Body),
) -> u64 {
    let mut n = 0;
    for m in msgs {
        normalizer.handle(&m.as_message(), 1_700_000_000_000_000, &mut |b| {
            n += 1;
            each(b)
        });
    }
    n
}

/// The normalizer's settings for these rounds: the defaults, without the
/// mass-unregistration and answer-ratio alerts, since rounds replayed at one instant look
/// like a burst of unregistrations, told once, and the ratio over the last calls crosses
/// its threshold in some rounds and not others: the rounds would no longer make the same
/// events.
fn config() -> NormalizeConfig {
    NormalizeConfig {
        mass_unregister: 0,
        asr_calls: 0,
        ..NormalizeConfig::default()
    }
}

/// The events the recordings normalize to, and how many a normalizer that has seen them
/// already makes per round (fewer: a call's CDR records arriving again under a call id it
/// sent a CDR for are folded): the throughputs below count events per round from this.
fn events(msgs: &[OwnedMessage]) -> (Vec<Event>, u64) {
    let mut normalizer = Normalizer::new(config());
    let mut out = Vec::new();
    let host = text("pbx1");
    normalize_all(msgs, &mut normalizer, &mut |b| {
        out.push(Event::new(1_700_000_000_000_000, &host, b))
    });
    let again = normalize_all(msgs, &mut normalizer, &mut |_| {});
    let third = normalize_all(msgs, &mut normalizer, &mut |_| {});
    assert_eq!(again, third, "rounds after the first make other events");
    (out, again)
}

fn bench(c: &mut Criterion) {
    let stream = recordings();
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("parse_recordings_4k_chunks", |b| {
        let mut parser = Parser::new(Limits::default());
        b.iter(|| {
            let mut n = 0u64;
            for chunk in stream.chunks(4096) {
                parser.push(chunk, &mut |f| n += u64::from(f.is_ok()));
            }
            n
        })
    });
    // As the daemon parses: events the normalizer does not read are passed over unsplit.
    g.bench_function("parse_recordings_4k_chunks_passing_over_unread", |b| {
        let mut parser = Parser::new(Limits::default());
        parser.set_filter(normalize::reads);
        b.iter(|| {
            let mut n = 0u64;
            for chunk in stream.chunks(4096) {
                parser.push(chunk, &mut |f| n += u64::from(f.is_ok()));
            }
            n
        })
    });
    g.finish();

    let msgs = messages(&stream);
    let (evs, per_round) = events(&msgs);

    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("normalize_parsed_recordings", |b| {
        let mut normalizer = Normalizer::new(config());
        b.iter(|| normalize_all(&msgs, &mut normalizer, &mut |_| {}))
    });
    g.finish();

    // Normalizing and native JSON, in events/s: the hot path after framing.
    let mut g = c.benchmark_group("normalize_encode");
    g.throughput(Throughput::Elements(per_round));
    g.bench_function("normalize_encode_native", |b| {
        let mut normalizer = Normalizer::new(config());
        let host = text("pbx1");
        let mut buf = Encoded::new();
        b.iter(|| {
            let mut n = 0usize;
            normalize_all(&msgs, &mut normalizer, &mut |body| {
                let ev = Event::new(1_700_000_000_000_000, &host, body);
                n += native::encode(&ev, &mut buf).map_or(0, |_| buf.len());
            });
            n
        })
    });
    g.finish();

    // The whole hot path per event: framing, normalizing and native JSON, in events/s.
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(per_round));
    g.bench_function("parse_normalize_encode_native", |b| {
        let mut parser = Parser::new(Limits::default());
        // As the daemon does: events the normalizer does not read are passed over.
        parser.set_filter(normalize::reads);
        let mut normalizer = Normalizer::new(config());
        let host = text("pbx1");
        let mut buf = Encoded::new();
        b.iter(|| {
            let mut n = 0usize;
            parser.push(&stream, &mut |f| {
                if let Ok(Frame::Message(m)) = f {
                    normalizer.handle(&m, 1_700_000_000_000_000, &mut |body| {
                        let ev = Event::new(1_700_000_000_000_000, &host, body);
                        n += native::encode(&ev, &mut buf).map_or(0, |_| buf.len());
                    });
                }
            });
            n
        })
    });
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(evs.len() as u64));
    let mut buf = Encoded::new();
    g.bench_function("native_json", |b| {
        b.iter(|| {
            evs.iter()
                .map(|e| native::encode(e, &mut buf).map(|_| buf.len()).unwrap_or(0))
                .sum::<usize>()
        })
    });
    g.bench_function("enswitch_json", |b| {
        b.iter(|| {
            evs.iter()
                .map(|e| enswitch::encode_json(e, &ENSWITCH, &mut buf).map_or(0, |_| buf.len()))
                .sum::<usize>()
        })
    });
    for (name, version) in [
        ("portsip_v22_json", portsip::Version::V22),
        ("portsip_v16_json", portsip::Version::V16),
    ] {
        g.bench_function(name, |b| {
            let mut state = portsip::State::default();
            let ctx = portsip::Context {
                version,
                domain: "pbx.example.com",
                tenant_id: "1",
                tenant_name: "one",
            };
            b.iter(|| {
                let mut bytes = 0;
                for e in &evs {
                    let seen = state.observe(e);
                    let mut emit = |_: &portsip::Route, m: &[u8]| bytes += m.len();
                    let mut out = portsip::Out::new(&mut buf, &mut emit);
                    let _ = portsip::encode(e, &seen, &state, &ctx, &mut out);
                }
                bytes
            })
        });
    }
    g.bench_function("enswitch_form", |b| {
        b.iter(|| {
            evs.iter()
                .map(|e| {
                    enswitch::encode_form(e, &ENSWITCH, &mut buf)
                        .map(|_| buf.len())
                        .unwrap_or(0)
                })
                .sum::<usize>()
        })
    });
    // Routr has subjects for three kinds of event only: measured over those.
    let routed: Vec<&Event> = evs
        .iter()
        .filter(|e| routr::subject_suffix(e).is_some())
        .collect();
    g.throughput(Throughput::Elements(routed.len() as u64));
    g.bench_function("routr_json", |b| {
        b.iter(|| {
            routed
                .iter()
                .map(|e| routr::encode(e, &ROUTR, &mut buf).map_or(0, |_| buf.len()))
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
