//! The head start: the best candidate so far downloads before the window ends.
//!
//! An election window (500 ms) is long so that a slow answer still counts (a Wi-Fi
//! client hears broadcasts only at its beacons), but on a wired LAN every claim is
//! in within milliseconds, and every content then reached its office half a second
//! late: the master started only at the window's end, while a BitTorrent web seed
//! starts at once (BENCHMARKS.md §19). Now, once the election has heard no new claim
//! for `Timing::head_start_quiet` (50 ms), the agent whose claim is the best heard
//! starts its origin download (`Action::HeadStart`); the others do nothing early.
//!
//! The election itself is unchanged: the window runs to its end and every agent
//! decides by the claims, as before. The winner is almost always the one that
//! started, and its download simply goes on (`BecomeMaster`). What a head start
//! must not do is cost WAN bytes, and a claim better than ours can still arrive
//! late: an agent whose job came 60 ms after ours, with more free space or a
//! higher weight. So an agent that has started counts as holding at least one
//! permille of the content (its rank, whatever it verified so far: a download
//! under way is worth more than a better weight, as share ranks before weight in
//! the product, where "A answers 20% complete and wins"). When a claim better than
//! the one we made arrives:
//! - if our rank now (that share, or what we verified meanwhile) beats it, we say
//!   so (our claim again, through the answer limit) and the others pick us;
//! - otherwise (the claim holds more of the content than we do) the head start
//!   ends (`HeadStartEnded`) and what was fetched stays in the cache. That needs a
//!   latecomer that already held part of the content, or two agents that did not
//!   hear each other for the whole quiet time (a loaded host); of two started
//!   agents the one with less verified stops. It costs what was fetched before
//!   the claim came.
//!
//! Answers to a request can be held back by the answer limit (`throttle.rs`, up to
//! `election_window / 4` when many ask at once), so a newcomer cannot take silence
//! for absence: an agent that heard a content's election traffic before its job
//! came (`Earlier`) knows the master that announced itself, and takes no head
//! start while it lives; after others' election, its quiet time is longer by that
//! `election_window / 4`.
//!
//! Winning clears the floor: a master announces what it holds. Of two masters (a
//! claim lost on the way) the lower one yields as always, and a head-started one
//! that has verified less than a permille may be it.
//!
//! A live master heard (heartbeat or announcement) ends a head start too.

use super::{counted_since, Phase, Slot};
use crate::election::rank::Rank;
use crate::election::types::{Action, Ctx};

impl Slot {
    /// The election was quiet long enough: start downloading if our claim is the
    /// best heard, we want the content and may be master, and no master lives.
    pub(super) fn try_head_start(&mut self, cx: &mut Ctx<'_>) {
        let Phase::Electing {
            started,
            quiet_until,
            ..
        } = &mut self.phase
        else {
            return;
        };
        *quiet_until = None;
        let since = counted_since(*started, cx.timing.election_window);
        if !self.wanted || self.head_start || self.live_master(cx).is_some() {
            return;
        }
        let me = self.claimed_rank(cx.local);
        if !me.can_be_master() || self.best_candidate(since).is_some_and(|b| b > me) {
            return;
        }
        self.head_start = true;
        cx.out.push(Action::HeadStart {
            key: self.key.clone(),
        });
    }

    /// A claim was heard while electing: the quiet time starts again, and a head
    /// start that meets a better claim either answers with the share it gained or
    /// ends.
    pub(super) fn claim_heard(&mut self, cx: &mut Ctx<'_>, rank: Rank) {
        let Phase::Electing { quiet_until, .. } = &mut self.phase else {
            return;
        };
        if let (Some(q), Some(quiet)) = (quiet_until.as_mut(), cx.timing.head_start_quiet) {
            *q = (*q).max(cx.now + quiet);
        }
        if !self.head_start || !rank.can_be_master() {
            return;
        }
        if rank < self.claimed_rank(cx.local) {
            return;
        }
        if self.rank(cx.local) > rank {
            self.answer(cx);
        } else {
            self.end_head_start(cx);
        }
    }

    /// End a running head start (no mastership came of it).
    pub(super) fn end_head_start(&mut self, cx: &mut Ctx<'_>) {
        if std::mem::take(&mut self.head_start) {
            cx.out.push(Action::HeadStartEnded {
                key: self.key.clone(),
            });
        }
    }
}
