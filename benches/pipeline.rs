//! Throughput of the hot path, stage by stage, over the recorded Asterisk sessions:
//! frame parsing, normalization, encoding in each dialect, and the three together.
//! Run: `cargo bench --bench pipeline`.

mod common;

use common::recordings;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pbxtap::ami::frame::{Frame, Limits, Parser};
use pbxtap::dialect::{enswitch, native, Encoded};
use pbxtap::event::{text, Body, Event};
use pbxtap::normalize::{NormalizeConfig, Normalizer};

/// The events the recordings normalize to.
fn events(stream: &[u8]) -> Vec<Event> {
    let mut parser = Parser::new(Limits::default());
    let mut normalizer = Normalizer::new(NormalizeConfig::default());
    let mut out = Vec::new();
    let host = text("pbx1");
    parser.push(stream, &mut |f| {
        if let Ok(Frame::Message(m)) = f {
            normalizer.handle(&m, 1_700_000_000_000_000, &mut |b: Body| {
                out.push(Event::new(1_700_000_000_000_000, &host, b))
            });
        }
    });
    out
}

fn bench(c: &mut Criterion) {
    let stream = recordings();
    let messages = {
        let mut parser = Parser::new(Limits::default());
        parser.push(&stream, &mut |_| {});
        parser.stats().messages
    };

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
    g.finish();

    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Elements(messages));
    g.bench_function("parse_and_normalize_recordings", |b| {
        let mut parser = Parser::new(Limits::default());
        let mut normalizer = Normalizer::new(NormalizeConfig::default());
        b.iter(|| {
            let mut n = 0u64;
            parser.push(&stream, &mut |f| {
                if let Ok(Frame::Message(m)) = f {
                    normalizer.handle(&m, 1_700_000_000_000_000, &mut |_| n += 1);
                }
            });
            n
        })
    });
    g.finish();

    let evs = events(&stream);
    // The whole hot path per event: framing, normalizing and native JSON, in events/s.
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.bench_function("parse_normalize_encode_native", |b| {
        let mut parser = Parser::new(Limits::default());
        let mut normalizer = Normalizer::new(NormalizeConfig::default());
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
    g.bench_function("enswitch_form", |b| {
        b.iter(|| {
            evs.iter()
                .map(|e| {
                    enswitch::encode_form(e, &mut buf)
                        .map(|_| buf.len())
                        .unwrap_or(0)
                })
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
