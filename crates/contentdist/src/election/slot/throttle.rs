//! Answers to requests, per content: a request costs the sender one datagram, and
//! without a limit it costs every agent that answers one broadcast too (the hostile
//! test: 2,000 forged requests, 1,886 announcements). Broadcast answers are heard by
//! every asker, so answers are coalesced instead of dropped: a request that finds
//! the limit reached is answered when it allows again, together with every request
//! that arrived meanwhile. A newcomer that asks during a flood waits at most one
//! interval (`election_window / 4`) for its answer, well inside its own window.

use std::time::Duration;

use crate::election::Instant;

/// Answers sent at once before the limit applies (several newcomers asking
/// together are answered without delay).
pub(super) const BURST: u32 = 3;

/// The interval between answers once the burst is spent.
pub(super) fn interval(election_window: Duration) -> Duration {
    election_window / 4
}

/// A token bucket (as a "theoretical arrival time", GCRA) with one pending answer.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    /// When the bucket is full again; `None`: full.
    full_at: Option<Instant>,
    /// An answer owed: send it at this time.
    due: Option<Instant>,
}

impl Throttle {
    /// A request arrived: true if it is to be answered now. Otherwise an answer is
    /// scheduled (see [`Throttle::due`]), or already was.
    pub fn request(&mut self, now: Instant, every: Duration) -> bool {
        if self.due.is_some() {
            return false;
        }
        let full_at = self.full_at.map_or(now, |t| t.max(now));
        let slack = every * (BURST - 1);
        if full_at <= now + slack {
            self.full_at = Some(full_at + every);
            true
        } else {
            self.due = Some(full_at - slack);
            false
        }
    }

    /// When the owed answer is to be sent, if one is owed.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// True (once) when the owed answer is due at `now`; it counts as sent.
    pub fn fire(&mut self, now: Instant, every: Duration) -> bool {
        if self.due.is_none_or(|d| d > now) {
            return false;
        }
        self.due = None;
        self.full_at = Some(self.full_at.map_or(now, |t| t.max(now)) + every);
        true
    }

    /// An answer went out for another reason: nothing is owed any more.
    pub fn answered(&mut self) {
        self.due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_answered_at_once_then_one_answer_per_interval() {
        let t0 = Instant::now();
        let every = Duration::from_millis(100);
        let mut t = Throttle::default();
        assert!((0..BURST).all(|_| t.request(t0, every)));
        // The next requests share one answer, due when a token is back.
        assert!(!t.request(t0, every));
        assert!(!t.request(t0 + Duration::from_millis(10), every));
        assert_eq!(t.due(), Some(t0 + every));
        assert!(!t.fire(t0 + Duration::from_millis(99), every));
        assert!(t.fire(t0 + every, every));
        assert!(!t.fire(t0 + every, every));
        assert_eq!(t.due(), None);
        // Quiet for a while: the bucket fills again.
        let later = t0 + Duration::from_secs(10);
        assert!((0..BURST).all(|_| t.request(later, every)));
        assert!(!t.request(later, every));
        t.answered();
        assert_eq!(t.due(), None);
    }
}
