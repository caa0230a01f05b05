//! Enswitch / ASTPP WebSocket feed: `/events/websocket/?authkey=KEY`, checked before the
//! upgrade (pure), with the key compared in constant time; `&since=<event_id>` resumes
//! after the last event a client had (`history`), and [`gap_notice`] tells it what it
//! missed.

use sha2::{Digest, Sha256};

use crate::settings::is_identity;

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
    /// 400: `since` is not an event id.
    BadSince,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::NotFound => 404,
            Refusal::MissingKey => 401,
            Refusal::WrongKey => 403,
            Refusal::BadSince => 400,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::NotFound => "not found: the event feed is at /events/websocket/?authkey=KEY",
            Refusal::MissingKey => "missing authkey: connect to /events/websocket/?authkey=KEY",
            Refusal::WrongKey => "wrong authkey",
            Refusal::BadSince => "since is not an event id: give the event_id of the last event received (<host>.<boot>.<seq>)",
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

/// Where a returning client stopped: the parts of the `event_id` it gave as `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub host: String,
    pub boot: u64,
    pub seq: u64,
}

impl std::fmt::Display for Since {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.host, self.boot, self.seq)
    }
}

/// The `since` parameter of the request target, if any: an event id `<host>.<boot>.<seq>`
/// (percent-encoded or not), else [`Refusal::BadSince`].
pub fn since(target: &str) -> Result<Option<Since>, Refusal> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let Some(value) = query.split('&').find_map(|kv| kv.strip_prefix("since=")) else {
        return Ok(None);
    };
    let mut decoded = [0u8; 128];
    let id = percent_decode(value, &mut decoded)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or(Refusal::BadSince)?;
    parse_id(id).map(Some).ok_or(Refusal::BadSince)
}

/// An event id, `<host>.<boot>.<seq>`, as a resume point; `None` when it is not one. Also
/// what a PortSIP client gives as `since` in its subscribe.
pub fn parse_id(id: &str) -> Option<Since> {
    let mut parts = id.rsplitn(3, '.');
    let (Some(seq), Some(boot), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let digits = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (digits(seq), digits(boot)) {
        (Some(seq), Some(boot)) if is_identity(host, crate::event::TEXT_LEN) => Some(Since {
            host: host.to_string(),
            boot,
            seq,
        }),
        _ => None,
    }
}

/// What a client resuming `since` an event missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// This many events of this run after it (events of the bus, some perhaps not for
    /// this feed).
    Missed(u64),
    /// The event is of an earlier run of pbxtap on this host: how many is not known.
    Restarted,
    /// The event was sent by another appliance (another host): how many is not known.
    Elsewhere,
}

impl Gap {
    /// Why nothing after `since` can be counted, when it is not an event of this run
    /// (`boot`) of `host`; `None` when it is (then the history counts what was missed).
    pub fn unknown(since: &Since, host: &str, boot: u64) -> Option<Gap> {
        if since.host != host {
            Some(Gap::Elsewhere)
        } else if since.boot != boot {
            Some(Gap::Restarted)
        } else {
            None
        }
    }

    /// `"missed":N`, or `"missed":null` and why, as JSON members.
    pub fn members(self) -> String {
        match self {
            Gap::Missed(n) => format!(r#""missed":{n}"#),
            Gap::Restarted => r#""missed":null,"reason":"pbxtap restarted since that event: what came before the restart is gone""#.into(),
            Gap::Elsewhere => r#""missed":null,"reason":"that event was sent by another appliance (another host), not this one: what you missed is not known here""#.into(),
        }
    }
}

/// The frame that tells a returning client it missed events.
pub fn gap_notice(since: &Since, host: &str, gap: Gap) -> String {
    format!(
        r#"{{"class":"system","event":"resume_gap","host":"{host}","since":"{since}",{}}}"#,
        gap.members()
    )
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
    fn since_is_an_event_id_or_refused() {
        let t = |q: &str| since(&format!("/events/websocket/?authkey={KEY}{q}"));
        assert_eq!(t(""), Ok(None));
        let at = Since {
            host: "pbx-1".into(),
            boot: 1796531234567890,
            seq: 18,
        };
        assert_eq!(t("&since=pbx-1.1796531234567890.18"), Ok(Some(at.clone())));
        assert_eq!(
            t("&since=pbx-1%2E1796531234567890%2E18"),
            Ok(Some(at.clone()))
        );
        assert_eq!(at.to_string(), "pbx-1.1796531234567890.18");
        for bad in [
            "&since=",
            "&since=18",
            "&since=pbx.18",
            "&since=pbx.x.18",
            "&since=pbx.1.-1",
            "&since=pbx.1.99999999999999999999",
            "&since=a.b.1.2",
            "&since=%22.1.2",
            "&since=%zz",
        ] {
            assert_eq!(t(bad), Err(Refusal::BadSince), "{bad}");
        }
        assert_eq!(Refusal::BadSince.status(), 400);
        let gap = |host: &str, boot: u64| Gap::unknown(&at, host, boot).unwrap_or(Gap::Missed(3));
        let n: serde_json::Value =
            serde_json::from_str(&gap_notice(&at, "pbx-1", gap("pbx-1", at.boot))).unwrap();
        assert_eq!(
            (n["event"].as_str(), n["missed"].as_u64()),
            (Some("resume_gap"), Some(3))
        );
        let n: serde_json::Value =
            serde_json::from_str(&gap_notice(&at, "pbx-1", gap("pbx-1", at.boot + 1))).unwrap();
        assert!(n["missed"].is_null() && n["since"] == "pbx-1.1796531234567890.18");
        assert!(n["reason"]
            .as_str()
            .unwrap()
            .starts_with("pbxtap restarted"));
        // An id from another appliance is not a restart of this one.
        let n: serde_json::Value =
            serde_json::from_str(&gap_notice(&at, "pbx-2", gap("pbx-2", at.boot))).unwrap();
        assert!(n["missed"].is_null());
        let reason = n["reason"].as_str().unwrap();
        assert!(reason.contains("another appliance"), "{reason}");
    }

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"key", b"key"));
        assert!(!ct_eq(b"key", b"kez"));
        assert!(!ct_eq(b"key", b"key2"));
    }
}
