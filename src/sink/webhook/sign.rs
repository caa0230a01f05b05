//! Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, so a receiver holding the
//! same secret can reject bogus or replayed events. Pure: no I/O, no clock.

use core::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the signature, `sha256=<64 lowercase hex digits>`.
pub const SIGNATURE_HEADER: &str = "x-pbxtap-signature";
/// Header carrying the Unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "x-pbxtap-timestamp";

/// `sha256=` and 64 hex digits.
pub type Signature = heapless::String<71>;

/// The signature of `body` sent at `unix_secs`: HMAC-SHA256 keyed with `secret` over the
/// timestamp's decimal digits, a `.`, and the body bytes.
pub fn sign(secret: &[u8], unix_secs: u64, body: &[u8]) -> Signature {
    // Cannot fail: HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    let mut ts = heapless::String::<20>::new();
    let _ = write!(ts, "{unix_secs}");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let mut out = Signature::new();
    let _ = out.push_str("sha256=");
    for b in mac.finalize().into_bytes() {
        // Cannot fail: 7 + 2 * 32 = 71 bytes.
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_implementation() {
        // python3: hmac.new(b'topsecret', b'1700000000.class=call&event=start', 'sha256').hexdigest()
        assert_eq!(
            sign(b"topsecret", 1_700_000_000, b"class=call&event=start"),
            "sha256=9d2bc1c8d792205567766e08c3b3285206f3bd19fffe7f81ad7af9231ca624a9"
        );
    }

    #[test]
    fn body_timestamp_and_secret_all_count() {
        let s = sign(b"k", 1, b"body");
        assert_ne!(s, sign(b"k", 2, b"body"));
        assert_ne!(s, sign(b"k", 1, b"bodY"));
        assert_ne!(s, sign(b"K", 1, b"body"));
        assert_eq!(s.len(), 71);
    }
}
