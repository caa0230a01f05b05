//! The pace a recording was made at, for `pbxtap demo`: when each message came, as near
//! as the recording tells. Recordings made with `timestampevents=no` stamp only some
//! events: security events carry `EventTV` (microseconds), a CDR its `EndTime` (the
//! second it was written). Those are the anchors; the messages between two anchors are
//! spread evenly over the time between them. Pure: bytes in, waits out.

use std::time::Duration;

/// Longest wait between two messages: a recording's quiet stretches are shortened to
/// this, so the demo keeps moving.
pub const MAX_GAP: Duration = Duration::from_secs(3);

/// Seconds (with a fraction) since midnight of a `YYYY-MM-DDTHH:MM:SS[.fff]` or
/// `YYYY-MM-DD HH:MM:SS` time, plus the day of the month times a day: enough to order and
/// space the events of one recording (minutes long), which is all it is used for.
fn secs_of(value: &str) -> Option<f64> {
    let v = value.trim();
    let day: f64 = v.get(8..10)?.parse().ok()?;
    let clock = v.get(11..)?;
    let clock = clock.split(['+', 'Z']).next()?;
    let mut parts = clock.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(day * 86_400.0 + h * 3600.0 + m * 60.0 + s)
}

/// When `message` says it happened, if it says.
fn anchor(message: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(message).ok()?;
    let header = |name: &str| {
        text.split("\r\n")
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
    };
    match header("Event") {
        Some("Cdr") => header("EndTime").and_then(secs_of),
        Some(_) => header("EventTV").and_then(secs_of),
        None => None,
    }
}

/// The wait before each of `messages` (one recording's), as recorded: none before the
/// first, each gap at most [`MAX_GAP`].
pub fn delays(messages: &[&[u8]]) -> Vec<Duration> {
    let anchors: Vec<Option<f64>> = messages.iter().map(|m| anchor(m)).collect();
    let mut at = vec![0.0f64; messages.len()];
    // Messages before the first anchor start at once; each run up to the next anchor is
    // spread evenly; those after the last anchor follow it at once.
    let mut last: Option<(usize, f64)> = None;
    for (i, a) in anchors.iter().enumerate() {
        let Some(t) = *a else { continue };
        match last {
            Some((j, tj)) if t > tj => {
                let step = (t - tj) / (i - j) as f64;
                for (k, slot) in at.iter_mut().enumerate().take(i + 1).skip(j + 1) {
                    *slot = tj + step * (k - j) as f64;
                }
            }
            Some((j, tj)) => at[j + 1..=i].iter_mut().for_each(|s| *s = tj),
            None => at[..=i].iter_mut().for_each(|s| *s = t),
        }
        last = Some((i, at[i].max(t)));
    }
    if let Some((j, tj)) = last {
        at[j..].iter_mut().for_each(|s| *s = tj);
    }
    let mut out = Vec::with_capacity(at.len());
    for i in 0..at.len() {
        let gap = if i == 0 {
            0.0
        } else {
            (at[i] - at[i - 1]).max(0.0)
        };
        // To the microsecond: the anchors have no finer grain.
        out.push(Duration::from_micros((gap * 1e6).round() as u64).min(MAX_GAP));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, extra: &str) -> Vec<u8> {
        format!("Event: {name}\r\n{extra}\r\n").into_bytes()
    }

    #[test]
    fn anchors_space_the_messages_between_them() {
        let msgs = [
            ev("FullyBooted", ""),
            ev(
                "SuccessfulAuth",
                "EventTV: 2026-11-22T19:47:25.870+0000\r\n",
            ),
            ev("Newchannel", ""),
            ev("Newstate", ""),
            ev("ChallengeSent", "EventTV: 2026-11-22T19:47:26.470+0000\r\n"),
            ev("Hangup", ""),
            ev(
                "Cdr",
                "StartTime: 2026-11-22 19:47:27\r\nEndTime: 2026-11-22 19:47:36\r\n",
            ),
            ev("DeviceStateChange", ""),
        ];
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        let d = delays(&refs);
        let ms: Vec<u128> = d.iter().map(|d| d.as_millis()).collect();
        // 0.6 s over three steps; then 9.53 s over two, each cut to 3 s; the last at once.
        assert_eq!(ms, [0, 0, 200, 200, 200, 3000, 3000, 0], "{ms:?}");
    }

    #[test]
    fn the_demo_recordings_start_at_once_and_keep_moving() {
        for f in ["02-call-answered.ami", "11-queue-answered.ami"] {
            let bytes = std::fs::read(format!("tests/fixtures/ami/{f}")).unwrap();
            let msgs = crate::ami::replay::messages_of(&bytes);
            let d = delays(&msgs);
            assert_eq!(d.len(), msgs.len());
            assert_eq!(d[0], Duration::ZERO);
            let total: Duration = d.iter().sum();
            assert!(
                total > Duration::from_secs(2) && total < Duration::from_secs(60),
                "{f}: {total:?}"
            );
        }
    }
}
