//! Fuzz target: arbitrary files through `replay`'s check (`ami::recording::check`) and
//! `--redact`'s replacement: nothing panics; an accepted file starts at its banner and
//! ends each line CRLF; a redacted message is the message with every occurrence of the
//! value, left to right, replaced by its placeholder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxtap::ami::recording::{check, Redactor, BANNER_PREFIX};

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = check(data) {
        assert!(body.starts_with(BANNER_PREFIX));
        for (i, &b) in body.iter().enumerate() {
            assert!(b != b'\n' || (i > 0 && body[i - 1] == b'\r'));
        }
    }
    if let Some((value, message)) = std::str::from_utf8(data)
        .ok()
        .and_then(|t| t.split_once('\0'))
    {
        if let Ok(r) = Redactor::new(&[value.to_string()]) {
            let placeholder = String::from_utf8(r.apply(value.as_bytes()).into_owned()).unwrap();
            assert_ne!(placeholder, value);
            let out = r.apply(message.as_bytes());
            assert_eq!(out.as_ref(), message.replace(value, &placeholder).as_bytes());
        }
    }
});
