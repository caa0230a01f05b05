//! The NATS sink's wire details: subjects (`<base>.<suffix>`, bounded) and the header
//! JetStream deduplicates on (the event's id, `Event::id`).

use async_nats::HeaderMap;

use crate::event::Event;

/// Longest subject published.
pub const SUBJECT_LEN: usize = 128;
/// The header JetStream deduplicates on.
pub(super) const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// The headers of `ev`'s JetStream message: `Nats-Msg-Id: <host>.<boot>.<seq>`, which the
/// stream deduplicates on and any consumer can read.
pub(super) fn headers(ev: &Event) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID_HEADER, ev.id().as_str());
    headers
}

/// The headers of the state message `ev` makes (`sink::nats::state`): its own id,
/// `<event id>.state`, so a stream that stores both never takes one for a copy of the
/// other.
pub(super) fn state_headers(ev: &Event) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID_HEADER, format!("{}.state", ev.id()).as_str());
    headers
}

/// Writes `parts` joined by dots into `out`; `Err` when it does not fit.
pub(super) fn write_subject<const N: usize>(
    out: &mut heapless::String<N>,
    parts: &[&str],
) -> Result<(), ()> {
    out.clear();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push('.').map_err(|_| ())?;
        }
        out.push_str(p).map_err(|_| ())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::nats::config::MAX_BASE_SUBJECT_LEN;

    #[test]
    fn subjects() {
        let mut s = heapless::String::<SUBJECT_LEN>::new();
        write_subject(&mut s, &["routr", "call.started"]).unwrap();
        assert_eq!(s, "routr.call.started");
        let mut tiny = heapless::String::<4>::new();
        assert!(write_subject(&mut tiny, &["routr", "x"]).is_err());
        // The longest base subject and event name fit.
        let base = "b".repeat(MAX_BASE_SUBJECT_LEN);
        write_subject(&mut s, &[&base, "system", "asterisk_restarted"]).unwrap();
    }
}
