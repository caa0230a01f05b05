//! Fuzz target: arbitrary bytes through the frame parser, the event time and the normalizer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxtap::ami::frame::{Frame, Limits, Parser};
use pbxtap::normalize::{NormalizeConfig, Normalizer};

fuzz_target!(|data: &[u8]| {
    let mut parser = Parser::new(Limits::default());
    // As the daemon does: events the normalizer does not read are passed over.
    parser.set_filter(pbxtap::normalize::reads);
    let mut norm = Normalizer::new(NormalizeConfig {
        queue_sla_secs: 1,
        ..Default::default()
    });
    let mut now = 1_000_000u64;
    parser.push(data, &mut |f| {
        if let Ok(Frame::Message(m)) = f {
            now += 700_000;
            // As the tap does: Asterisk's Timestamp, when sane, is the event time.
            let now = pbxtap::tap::event_time(&m, now);
            norm.handle(&m, now, &mut |b| {
                let _ = (b.class(), b.name());
            });
            norm.tick(now, &mut |_| {});
        }
    });
    assert!(norm.live_calls() <= 256);
});
