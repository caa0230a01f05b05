//! The NATS sink's wire details: subjects (`<base>.<suffix>`, bounded) and JetStream
//! message ids (`<host>.<run>.<seq>`, which the stream deduplicates on).

use crate::event;

/// Longest subject published.
pub const SUBJECT_LEN: usize = 128;
/// The header JetStream deduplicates on.
pub(super) const MSG_ID_HEADER: &str = "Nats-Msg-Id";

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

/// The JetStream message id of an event: `<host>.<run>.<seq>`.
pub(super) fn msg_id(
    host: &str,
    run_id: u64,
    seq: u64,
) -> heapless::String<{ event::TEXT_LEN + 42 }> {
    let mut id = heapless::String::new();
    let _ = core::fmt::write(&mut id, format_args!("{host}.{run_id}.{seq}"));
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::nats::config::MAX_BASE_SUBJECT_LEN;

    #[test]
    fn subjects_and_ids() {
        let mut s = heapless::String::<SUBJECT_LEN>::new();
        write_subject(&mut s, &["routr", "call.started"]).unwrap();
        assert_eq!(s, "routr.call.started");
        let mut tiny = heapless::String::<4>::new();
        assert!(write_subject(&mut tiny, &["routr", "x"]).is_err());
        // The longest base subject and event name fit.
        let base = "b".repeat(MAX_BASE_SUBJECT_LEN);
        write_subject(&mut s, &[&base, "system", "asterisk_restarted"]).unwrap();
        assert_eq!(msg_id("pbx1", 17, 42), "pbx1.17.42");
        assert_eq!(
            msg_id(&"h".repeat(event::TEXT_LEN), u64::MAX, u64::MAX).len(),
            event::TEXT_LEN + 42
        );
    }
}
