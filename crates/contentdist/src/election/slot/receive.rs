//! How one election reacts to messages from other agents.

use super::{Phase, Slot};
use crate::election::rank::{Rank, FULL_SHARE};
use crate::election::types::{Action, Ctx, MasterInfo};
use crate::election::wire::{Body, Message};

impl Slot {
    /// React to a message from another agent (`Elections` drops our own).
    pub fn on_message(&mut self, cx: &mut Ctx<'_>, msg: &Message) {
        let from = msg.node_id;
        match &msg.body {
            Body::Request => self.on_request(cx, from),
            Body::Candidate { rank } if rank.node_id == from => self.on_candidate(cx, *rank),
            Body::Master(a) if a.rank.node_id == from => {
                self.term = self.term.max(a.term);
                let info = MasterInfo::from_announce(from, msg.addr, a);
                self.on_master(cx, info, a.rank);
            }
            Body::Heartbeat { rank, term } if rank.node_id == from => {
                self.term = self.term.max(*term);
                self.on_heartbeat(cx, *rank, *term);
            }
            Body::Done { term } => {
                self.term = self.term.max(*term);
                self.on_done(cx, from);
            }
            Body::Resign { term } => {
                self.term = self.term.max(*term);
                self.on_resign(cx, from, *term);
            }
            // A rank that is not the sender's: a forged or broken message.
            _ => {}
        }
    }

    /// Every answer goes through `answer`: at most a few per election window, so
    /// a flood of requests (forged or replayed) is no amplifier.
    fn on_request(&mut self, cx: &mut Ctx<'_>, from: u64) {
        match &self.phase {
            Phase::Master(_) => self.answer(cx),
            // Our master re-runs the election: make our claim.
            Phase::Following(f) if f.info.node_id == from => self.answer(cx),
            Phase::Following(_) => {}
            Phase::Electing { .. } | Phase::Awaiting { .. } | Phase::NoMaster { .. } => {
                self.answer(cx)
            }
            Phase::Idle => match self.live_master(cx) {
                Some(m) if m == from => self.answer(cx),
                // A live master answers the newcomer.
                Some(_) => {}
                None if self.rank(cx.local).can_be_master() => self.join_election(cx),
                None => self.answer(cx),
            },
        }
    }

    fn on_candidate(&mut self, cx: &mut Ctx<'_>, rank: Rank) {
        self.candidates.insert(rank.node_id, (rank, cx.now));
        match &self.phase {
            Phase::Electing { .. } => self.claim_heard(cx, rank),
            // Someone elects while we are master (its request may have been lost):
            // tell it, except while our own re-election collects claims.
            Phase::Master(m) if m.reelect.is_none() => self.announce_limited(cx),
            Phase::Idle
                if self.live_master(cx).is_none() && self.rank(cx.local).can_be_master() =>
            {
                self.join_election(cx)
            }
            _ => {}
        }
    }

    fn on_master(&mut self, cx: &mut Ctx<'_>, info: MasterInfo, rank: Rank) {
        if !rank.can_be_master() {
            return;
        }
        let from = info.node_id;
        self.master_heard = Some((from, cx.now));
        match &mut self.phase {
            Phase::Master(_) => {
                if rank > self.rank(cx.local) {
                    self.resign(cx, Some((info, rank)));
                } else {
                    self.announce_limited(cx);
                }
            }
            Phase::Following(f) if f.info.node_id == from => {
                let moved = !f.info.same_endpoint(&info);
                f.info = info.clone();
                f.rank = rank;
                f.last_heard = cx.now;
                if moved {
                    cx.out.push(Action::FollowMaster {
                        key: self.key.clone(),
                        master: info,
                    });
                }
            }
            // Two masters: follow the better one; the other yields when it hears it.
            Phase::Following(f) => {
                if rank > f.rank {
                    self.follow(cx, info, rank);
                }
            }
            Phase::Electing { .. } | Phase::Awaiting { .. } | Phase::NoMaster { .. } => {
                if self.wanted {
                    self.follow(cx, info, rank);
                } else {
                    self.end_head_start(cx);
                    self.phase = Phase::Idle;
                }
            }
            Phase::Idle => {}
        }
    }

    fn on_heartbeat(&mut self, cx: &mut Ctx<'_>, rank: Rank, term: u64) {
        if !rank.can_be_master() {
            return;
        }
        let from = rank.node_id;
        self.master_heard = Some((from, cx.now));
        match &mut self.phase {
            Phase::Master(_) => {
                if rank > self.rank(cx.local) {
                    self.resign(cx, None);
                } else {
                    self.announce_limited(cx);
                }
            }
            Phase::Following(f) if f.info.node_id == from => {
                f.last_heard = cx.now;
                f.rank = rank;
                f.info.share_permille = rank.share_permille;
                f.info.term = term;
            }
            // Another master: it announces itself when it hears ours.
            Phase::Following(_) => {}
            Phase::Electing { .. } | Phase::Awaiting { .. } | Phase::NoMaster { .. } => {
                // A master lives: it downloads, not us.
                self.end_head_start(cx);
                if self.wanted {
                    self.ask_master(cx);
                }
            }
            Phase::Idle => {}
        }
    }

    fn on_done(&mut self, cx: &mut Ctx<'_>, from: u64) {
        if let Some((m, t)) = &mut self.master_heard {
            if *m == from {
                *t = cx.now;
            }
        }
        match &mut self.phase {
            Phase::Following(f) if f.info.node_id == from => {
                f.last_heard = cx.now;
                f.rank.share_permille = FULL_SHARE;
                f.info.share_permille = FULL_SHARE;
            }
            _ => {}
        }
    }

    fn on_resign(&mut self, cx: &mut Ctx<'_>, from: u64, term: u64) {
        self.candidates.remove(&from);
        if self.master_heard.is_some_and(|(m, _)| m == from) {
            self.master_heard = None;
        }
        match &mut self.phase {
            Phase::Following(f) if f.info.node_id == from && term >= f.info.term => {
                self.lose_master(cx)
            }
            Phase::Awaiting { winner, .. } if *winner == from => self.start_election(cx),
            _ => {}
        }
    }
}
