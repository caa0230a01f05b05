//! Fuzz target: arbitrary request targets through the Enswitch feed's checks before the
//! upgrade (`authkey`, and `since` for a resume): nothing panics, and a `since` that is
//! accepted prints back as the id it was read from, decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxtap::sink::websocket::enswitch::{check, since};

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let _ = check(target, "abcdefghijklmnopqrstuvwxyz123456");
    if let Ok(Some(s)) = since(target) {
        let shown = s.to_string();
        assert!(shown.ends_with(&format!(".{}.{}", s.boot, s.seq)), "{shown}");
        assert!(!s.host.is_empty() && !s.host.contains('.'), "{shown}");
    }
});
