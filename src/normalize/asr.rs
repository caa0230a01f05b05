//! The answer-seizure ratio: of the last `normalize.asr_calls` calls that ended, the share
//! answered, by a party or by the PBX itself (an IVR, voicemail): either way the call got
//! through. When it falls under `normalize.asr_min_percent` that is one `system.asr_low`;
//! once it is back at the threshold, one `system.asr_recovered`. A carrier refusing calls,
//! a broken outbound route or a dialplan change gone wrong shows as calls that end
//! unanswered, one after another. Fixed memory: one outcome per call in the window.
//! Pure: each ended call is passed in.

use std::collections::VecDeque;

use crate::event::{AnswerRatio, Body};

#[derive(Debug)]
pub struct Answers {
    /// Whether each of the last `calls` calls was answered, oldest first.
    outcomes: VecDeque<bool>,
    answered: usize,
    calls: usize,
    min_percent: u32,
    /// `system.asr_low` was told and the ratio is not back yet.
    low: bool,
}

impl Answers {
    /// Watches the last `calls` calls (0: never) against `min_percent`.
    pub fn new(calls: u32, min_percent: u32) -> Answers {
        Answers {
            outcomes: VecDeque::with_capacity(calls as usize),
            answered: 0,
            calls: calls as usize,
            min_percent,
            low: false,
        }
    }

    /// A call ended; the event to publish after its `call.ended`, if the ratio crossed
    /// the threshold with it.
    pub fn ended(&mut self, answered: bool) -> Option<Body> {
        if self.calls == 0 {
            return None;
        }
        if self.outcomes.len() == self.calls && self.outcomes.pop_front() == Some(true) {
            self.answered -= 1;
        }
        self.outcomes.push_back(answered);
        self.answered += usize::from(answered);
        if self.outcomes.len() < self.calls {
            return None;
        }
        let under = self.answered * 100 < self.min_percent as usize * self.calls;
        if under == self.low {
            return None;
        }
        self.low = under;
        let ratio = AnswerRatio {
            asr_percent: (self.answered * 100 / self.calls) as u64,
            answered: self.answered as u64,
            calls: self.calls as u64,
            threshold_percent: u64::from(self.min_percent),
        };
        Some(if under {
            Body::AsrLow(ratio)
        } else {
            Body::AsrRecovered(ratio)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(a: &mut Answers, outcomes: &[bool]) -> Vec<(String, u64)> {
        outcomes
            .iter()
            .filter_map(|&o| a.ended(o))
            .map(|b| match &b {
                Body::AsrLow(r) | Body::AsrRecovered(r) => (b.name().to_string(), r.asr_percent),
                _ => panic!("{b:?}"),
            })
            .collect()
    }

    #[test]
    fn a_drop_is_told_once_and_the_recovery_once() {
        // 4 calls, at least 50 % answered.
        let mut a = Answers::new(4, 50);
        // Not a full window yet: nothing, however bad.
        assert!(told(&mut a, &[false, false, false]).is_empty());
        // 0 of 4, then still low: told once.
        assert_eq!(told(&mut a, &[false, false]), [("asr_low".into(), 0)]);
        // 2 of 4 answered: back at the threshold.
        assert_eq!(
            told(&mut a, &[true, false, true]),
            [("asr_recovered".into(), 50)]
        );
        assert!(told(&mut a, &[true, true, true]).is_empty());
        assert_eq!(a.outcomes.len(), 4);
        assert!(Answers::new(0, 50).ended(false).is_none());
    }
}
