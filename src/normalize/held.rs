//! `call.started` held back until the dialplan has run its first steps, so that the `X-`
//! variables it sets from the INVITE's headers (`PJSIP_HEADER(read,X-...)`) are in the
//! start's `extra_headers`: Asterisk announces a channel (Newchannel) before its dialplan
//! runs. A held start goes out just before the first other event of its call (a dial, an
//! answer, a queue, the end), or [`HOLD`] after the channel appeared, whichever is first.
//! Pure: time passed in.

use heapless::Vec;

use crate::event::{Body, CallStarted};

/// Longest a start is held (µs): a dialplan that plays a prompt before it dials does not
/// keep the call unannounced.
pub const HOLD: u64 = 1_000_000;
/// Longest the start of a call placed with AMI `Originate` is held (µs) while its first
/// phone rings: until that phone's channel dials the destination, which is the call's
/// `to`. Originate's own `Timeout` is 30 s by default.
pub const ORIGINATE_HOLD: u64 = 60_000_000;
/// Starts held at once; when full, the oldest goes out at once.
pub const MAX_HELD: usize = 32;

/// Held starts, each with the time it is due, oldest first.
#[derive(Default)]
pub struct Held(Vec<(CallStarted, u64), MAX_HELD>);

impl Held {
    /// Holds `start`, made at `now`, for [`HOLD`].
    pub fn hold(&mut self, start: CallStarted, now: u64, emit: &mut dyn FnMut(Body)) {
        if self.0.is_full() {
            let (oldest, _) = self.0.remove(0);
            emit(Body::CallStarted(oldest));
        }
        // Cannot fail: room was made above.
        let _ = self.0.push((start, now.saturating_add(HOLD)));
    }

    /// `call_id`'s held start, to add a dialplan variable to or to say where an
    /// originated call goes.
    pub fn start(&mut self, call_id: &str) -> Option<&mut CallStarted> {
        self.0
            .iter_mut()
            .find(|(s, _)| s.call_id == call_id)
            .map(|(s, _)| s)
    }

    /// Holds `call_id`'s start until `until` (µs) unless its call says something first.
    pub fn keep(&mut self, call_id: &str, until: u64) {
        if let Some((_, due)) = self.0.iter_mut().find(|(s, _)| s.call_id == call_id) {
            *due = until;
        }
    }

    /// Sends `call_id`'s held start, if any: its call has something else to say.
    pub fn release(&mut self, call_id: &str, emit: &mut dyn FnMut(Body)) {
        if let Some(i) = self.0.iter().position(|(s, _)| s.call_id == call_id) {
            emit(Body::CallStarted(self.0.remove(i).0));
        }
    }

    /// Sends every start due by `now` (`u64::MAX`: all of them), oldest first.
    pub fn due(&mut self, now: u64, emit: &mut dyn FnMut(Body)) {
        while let Some(i) = self.0.iter().position(|(_, due)| *due <= now) {
            emit(Body::CallStarted(self.0.remove(i).0));
        }
    }

    /// Sends the held start of the call `body` is about before `body` itself.
    pub fn before(&mut self, body: Body, emit: &mut dyn FnMut(Body)) {
        if let Some(call_id) = body.call_id() {
            self.release(call_id, emit);
        }
        emit(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{text, CallTarget};

    fn start(id: &str) -> CallStarted {
        CallStarted {
            call_id: text(id),
            ..Default::default()
        }
    }

    fn names(out: &[Body]) -> std::vec::Vec<std::string::String> {
        out.iter()
            .map(|b| format!("{}:{}", b.name(), b.call_id().unwrap_or("")))
            .collect()
    }

    #[test]
    fn a_start_goes_out_before_its_calls_next_event_or_when_due() {
        let mut h = Held::default();
        let mut out = std::vec::Vec::new();
        h.hold(start("a"), 0, &mut |b| out.push(b));
        h.hold(start("b"), 10, &mut |b| out.push(b));
        h.start("b").unwrap().extra_headers.insert("X-Ref", "r1");
        let ringing = Body::CallRinging(CallTarget {
            call_id: text("b"),
            ..Default::default()
        });
        h.before(ringing, &mut |b| out.push(b));
        assert_eq!(names(&out), ["started:b", "ringing:b"]);
        let Body::CallStarted(b) = &out[0] else {
            panic!()
        };
        assert_eq!(
            b.extra_headers.iter().collect::<std::vec::Vec<_>>(),
            [("X-Ref", "r1")]
        );
        h.due(HOLD - 1, &mut |b| out.push(b));
        assert_eq!(out.len(), 2, "not due yet");
        h.due(HOLD, &mut |b| out.push(b));
        assert_eq!(names(&out[2..]), ["started:a"]);
    }

    #[test]
    fn a_full_hold_lets_the_oldest_go() {
        let mut h = Held::default();
        let mut out = std::vec::Vec::new();
        for i in 0..=MAX_HELD {
            h.hold(start(&i.to_string()), i as u64, &mut |b| out.push(b));
        }
        assert_eq!(names(&out), ["started:0"]);
        h.due(u64::MAX, &mut |b| out.push(b));
        assert_eq!(out.len(), MAX_HELD + 1);
    }
}
