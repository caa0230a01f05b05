//! Fuzz target: the AMI frame parser, fed arbitrary bytes in fuzzer-chosen chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxtap::ami::frame::{Frame, Limits, Parser};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so splits are explored too, and (its top bit)
    // whether the normalizer's filter passes over the events it does not read.
    let Some((&split, rest)) = data.split_first() else { return };
    let limits = Limits { max_message_len: 512, max_headers: 16 };
    let mut parser = Parser::new(limits);
    if split & 0x80 != 0 {
        parser.set_filter(pbxtap::normalize::reads);
    }
    let (mut messages, mut errors) = (0u64, 0u64);
    for chunk in rest.chunks(usize::from(split & 0x7f).max(1)) {
        parser.push(chunk, &mut |f| match f {
            Ok(Frame::Message(m)) => {
                messages += 1;
                assert!(m.len() <= limits.max_headers);
                for (k, v) in m.headers() {
                    let _ = (k.len(), v.len());
                }
            }
            Ok(Frame::Banner(_)) => {}
            Err(_) => errors += 1,
        });
    }
    let s = parser.stats();
    assert_eq!(s.messages, messages);
    assert_eq!(s.oversized + s.too_many_headers, errors);
});
