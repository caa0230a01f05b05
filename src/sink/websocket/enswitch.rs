//! Enswitch / ASTPP WebSocket feed: `/events/websocket/?authkey=KEY`, checked before the
//! upgrade (pure), with the key compared in constant time.

use sha2::{Digest, Sha256};

/// The path Enswitch's messaged serves its event feed on (the trailing slash optional).
pub const PATH: &str = "/events/websocket/";

/// Why an upgrade request is refused, with the HTTP status it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 404: not the events path.
    NotFound,
    /// 401: no `authkey` parameter.
    MissingKey,
    /// 403: the `authkey` is wrong.
    WrongKey,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::NotFound => 404,
            Refusal::MissingKey => 401,
            Refusal::WrongKey => 403,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::NotFound => "not found: the event feed is at /events/websocket/?authkey=KEY",
            Refusal::MissingKey => "missing authkey: connect to /events/websocket/?authkey=KEY",
            Refusal::WrongKey => "wrong authkey",
        }
    }
}

/// Checks the request target (`/events/websocket/?authkey=...`) against `authkey`.
pub fn check(target: &str, authkey: &str) -> Result<(), Refusal> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != PATH && path != PATH.trim_end_matches('/') {
        return Err(Refusal::NotFound);
    }
    let given = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("authkey="))
        .ok_or(Refusal::MissingKey)?;
    let mut decoded = [0u8; 256];
    let Some(given) = percent_decode(given, &mut decoded) else {
        return Err(Refusal::WrongKey);
    };
    if ct_eq(given, authkey.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::WrongKey)
    }
}

/// Decodes `%XX` and `+` of a query value into `buf`; `None` when it does not fit or is
/// malformed.
fn percent_decode<'a>(s: &str, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    let bytes = s.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                i += 2;
                u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?
            }
            b'+' => b' ',
            b => b,
        };
        *buf.get_mut(n)? = b;
        n += 1;
        i += 1;
    }
    Some(&buf[..n])
}

/// Constant-time equality: compares SHA-256 digests with a fold of XORs, so neither the
/// position of the first difference nor the lengths show in the time taken.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz123456";

    #[test]
    fn the_seed_url_is_accepted_and_others_refused_with_their_status() {
        assert_eq!(
            check(&format!("/events/websocket/?authkey={KEY}"), KEY),
            Ok(())
        );
        assert_eq!(
            check(&format!("/events/websocket?x=1&authkey={KEY}"), KEY),
            Ok(())
        );
        let refused = |t: &str| check(t, KEY).unwrap_err().status();
        assert_eq!(refused("/events/websocket/"), 401);
        assert_eq!(refused("/events/websocket/?auth=x"), 401);
        assert_eq!(
            refused("/events/websocket/?authkey=abcdefghijklmnopqrstuvwxyz12345"),
            403
        );
        assert_eq!(refused("/events/websocket/?authkey="), 403);
        assert_eq!(refused(&format!("/events/websocket/?authkey={KEY}7")), 403);
        assert_eq!(refused(&format!("/?authkey={KEY}")), 404);
        assert_eq!(refused("/events/websocket/?authkey=%zz"), 403);
    }

    #[test]
    fn keys_are_percent_decoded() {
        assert_eq!(check("/events/websocket/?authkey=a%2Bb+c", "a+b c"), Ok(()));
        let long = "a".repeat(300);
        assert_eq!(
            check(&format!("/events/websocket/?authkey={long}"), &long),
            Err(Refusal::WrongKey)
        );
    }

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"key", b"key"));
        assert!(!ct_eq(b"key", b"kez"));
        assert!(!ct_eq(b"key", b"key2"));
    }
}
