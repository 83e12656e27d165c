//! One election: this agent's state for one content, and how it reacts.
//!
//! The states and their invariants are described in `STATE.md`; the reactions to
//! messages are in `receive.rs`, the limit on answers to requests in `throttle.rs`.

mod head_start;
mod receive;
mod throttle;

use std::cmp::max;
use std::collections::BTreeMap;

use super::rank::{Rank, FULL_SHARE};
use super::types::{Action, Ctx, ElectionState, ElectionStatus, LocalInfo, MasterInfo, Timing};
use super::wire::{Body, MasterAnnounce, Message};
use super::Instant;
use crate::manifest::ContentKey;
use throttle::Throttle;

/// Where one election stands (see `STATE.md`).
#[derive(Debug)]
enum Phase {
    /// Holding the content (not wanted), no election. While a master is alive
    /// (`Slot::master_heard`), requests from others are its to answer.
    Idle,
    /// Collecting candidates heard since `started - window` until `deadline`. At
    /// `quiet_until` (pushed back by every claim heard) the best candidate so far
    /// may take a head start (`head_start.rs`); `None` once looked at, or with head
    /// starts off.
    Electing {
        started: Instant,
        deadline: Instant,
        quiet_until: Option<Instant>,
    },
    /// Another candidate won; waiting for its announcement until `deadline`.
    Awaiting { winner: u64, deadline: Instant },
    /// No eligible candidate at all (we are preboot or weight 0): ask again at `retry_at`.
    NoMaster { retry_at: Instant },
    /// This agent is master.
    Master(Mastership),
    /// This agent copies from a master.
    Following(Followed),
}

#[derive(Debug)]
struct Mastership {
    term: u64,
    next_heartbeat: Instant,
    /// When the next periodic re-election starts.
    reelect_at: Instant,
    /// A running re-election: (started, deadline).
    reelect: Option<(Instant, Instant)>,
    done_sent: bool,
    last_announce: Instant,
}

#[derive(Debug)]
struct Followed {
    info: MasterInfo,
    rank: Rank,
    last_heard: Instant,
}

/// A timer that is due.
enum Due {
    Decide(Instant),
    HeadStart,
    Restart,
    Lost,
    ReelectEnd(Instant),
    ReelectStart,
    Heartbeat,
}

/// This agent's election for one content.
#[derive(Debug)]
pub(super) struct Slot {
    key: ContentKey,
    /// A job needs the content (it is not complete here).
    wanted: bool,
    share: u16,
    /// The highest term seen for this content: a new master takes `term + 1`.
    term: u64,
    phase: Phase,
    /// Recent claims by node id, with when they were heard (any phase, so that a
    /// claim heard just before our own election starts still counts).
    candidates: BTreeMap<u64, (Rank, Instant)>,
    /// The last eligible master heard (announcement or heartbeat), in any phase:
    /// while it lives, we do not elect ourselves but ask it to announce itself.
    master_heard: Option<(u64, Instant)>,
    /// The rank we last claimed (our latest `Candidate`): what the others judge us
    /// by, so the window's end judges us by it too, not by the rank now (see
    /// `decide`).
    claimed: Option<Rank>,
    last_request: Option<Instant>,
    /// Answers to others' requests (announcement or claim), rate-limited.
    answers: Throttle,
    /// This agent downloads from the origin ahead of the window's end
    /// (`Action::HeadStart` sent, neither `BecomeMaster` nor `HeadStartEnded` yet).
    head_start: bool,
    /// Others were electing before this slot existed (`Earlier`): its first
    /// election waits longer before a head start.
    late: bool,
}

/// The claims an election started at `started` counts: those heard since one
/// window before it (a claim heard just before our own election still counts).
fn counted_since(started: Instant, window: std::time::Duration) -> Instant {
    started.checked_sub(window).unwrap_or(started)
}

/// Election traffic heard for a content before this agent took part in its
/// election: the last message, and the last master that announced itself or
/// heartbeated. A job that joins then knows a master lives (a master answers a
/// request within the answer limit, up to `election_window / 4` late when many
/// ask) or that others elect (their answers may be held back as long), and takes
/// no head start on the strength of not having heard them yet.
#[derive(Clone, Copy, Debug)]
pub(super) struct Earlier {
    pub(super) last: Instant,
    pub(super) master: Option<(u64, Instant)>,
}

impl Slot {
    /// A content a job wants; the election starts in `on_want`.
    pub fn new(key: ContentKey, share: u16) -> Slot {
        Slot {
            key,
            wanted: true,
            share: share.min(FULL_SHARE),
            term: 0,
            phase: Phase::Idle,
            candidates: BTreeMap::new(),
            master_heard: None,
            claimed: None,
            last_request: None,
            answers: Throttle::default(),
            head_start: false,
            late: false,
        }
    }

    /// A new slot, told what was heard before it existed: a live master is known,
    /// and traffic older than the quiet time makes the first election late.
    pub fn after(mut self, earlier: Option<Earlier>, cx: &Ctx<'_>) -> Slot {
        let Some(e) = earlier else { return self };
        let t = cx.timing;
        let live = |at: Instant| at + t.master_timeout > cx.now;
        self.master_heard = e.master.filter(|(_, at)| live(*at));
        let quiet = t.head_start_quiet.unwrap_or_default();
        self.late = live(e.last) && cx.now.saturating_duration_since(e.last) >= quiet;
        self
    }

    /// A content held in full, answering requests.
    pub fn holder(key: ContentKey) -> Slot {
        Slot {
            wanted: false,
            share: FULL_SHARE,
            ..Slot::new(key, FULL_SHARE)
        }
    }

    fn rank(&self, local: &LocalInfo) -> Rank {
        Rank {
            preboot: local.preboot,
            // A head start counts as holding something (`head_start.rs`).
            share_permille: if self.head_start {
                self.share.max(1)
            } else {
                self.share
            },
            weight: local.weight,
            free_bytes: local.free_bytes,
            node_id: local.node_id,
        }
    }

    /// The rank the others judge us by: the one we last claimed (see `decide`).
    fn claimed_rank(&self, local: &LocalInfo) -> Rank {
        self.claimed.unwrap_or_else(|| self.rank(local))
    }

    fn send(&self, cx: &mut Ctx<'_>, body: Body) {
        cx.out.push(Action::Broadcast(Message {
            node_id: cx.local.node_id,
            addr: cx.local.addr,
            key: self.key.clone(),
            body,
            host: cx.local.host.clone(),
        }));
    }

    /// Answer with our claim, unless weight 0 (never answers).
    fn send_candidate(&mut self, cx: &mut Ctx<'_>) {
        if cx.local.weight > 0 {
            self.answers.answered();
            let rank = self.rank(cx.local);
            self.claimed = Some(rank);
            self.send(cx, Body::Candidate { rank });
        }
    }

    /// Answer a request now, or once the limit allows (see `throttle.rs`).
    fn answer(&mut self, cx: &mut Ctx<'_>) {
        if self
            .answers
            .request(cx.now, throttle::interval(cx.timing.election_window))
        {
            self.send_answer(cx);
        }
    }

    /// A master answers with its announcement, anyone else with its claim.
    fn send_answer(&mut self, cx: &mut Ctx<'_>) {
        if let Phase::Master(_) = self.phase {
            self.announce(cx);
        } else {
            self.send_candidate(cx);
        }
    }

    fn send_request(&mut self, cx: &mut Ctx<'_>) {
        self.last_request = Some(cx.now);
        self.send(cx, Body::Request);
    }

    /// A master lives but its announcement did not reach us: ask again, at most
    /// once per window.
    fn ask_master(&mut self, cx: &mut Ctx<'_>) {
        let window = cx.timing.election_window;
        if self.last_request.is_none_or(|t| t + window <= cx.now) {
            self.send_request(cx);
        }
    }

    fn announce(&mut self, cx: &mut Ctx<'_>) {
        let Phase::Master(m) = &mut self.phase else {
            return;
        };
        m.last_announce = cx.now;
        let term = m.term;
        self.answers.answered();
        let l = cx.local;
        let a = MasterAnnounce {
            rank: self.rank(l),
            term,
            http_port: l.http_port,
            https_port: l.https_port,
            protocols: l.protocols,
            p2p_key: l.p2p_key,
            cert_fingerprint: l.cert_fingerprint,
            names: l.names.clone(),
        };
        self.send(cx, Body::Master(a));
    }

    /// Announce again, at most once per half window: answers to candidates and to
    /// another master's heartbeats must not flood the subnet.
    fn announce_limited(&mut self, cx: &mut Ctx<'_>) {
        if let Phase::Master(m) = &self.phase {
            if cx.now >= m.last_announce + cx.timing.election_window / 2 {
                self.announce(cx);
            }
        }
    }

    fn start_election(&mut self, cx: &mut Ctx<'_>) {
        self.send_request(cx);
        self.join_election(cx);
    }

    /// Someone else asked: answer and pick the winner ourselves at the window's end.
    fn join_election(&mut self, cx: &mut Ctx<'_>) {
        self.send_candidate(cx);
        // A late first election waits, besides the quiet time, for the answers
        // that others' answer limits may hold back.
        let late = std::mem::take(&mut self.late);
        let hold = throttle::interval(cx.timing.election_window);
        self.phase = Phase::Electing {
            started: cx.now,
            deadline: cx.after(cx.timing.election_window),
            quiet_until: cx
                .timing
                .head_start_quiet
                .map(|q| cx.after(if late { q + hold } else { q })),
        };
    }

    /// The master heard within `master_timeout`, if any.
    fn live_master(&self, cx: &Ctx<'_>) -> Option<u64> {
        self.master_heard
            .filter(|(_, t)| *t + cx.timing.master_timeout > cx.now)
            .map(|(n, _)| n)
    }

    /// The best eligible claim heard at or after `since`.
    fn best_candidate(&self, since: Instant) -> Option<Rank> {
        self.candidates
            .values()
            .filter(|(r, t)| *t >= since && r.can_be_master())
            .map(|(r, _)| *r)
            .max()
    }

    fn decide(&mut self, cx: &mut Ctx<'_>, started: Instant) {
        let since = counted_since(started, cx.timing.election_window);
        // A head start's re-claim that the answer limit held back goes out first:
        // the others judge us by it (`head_start.rs`).
        if self.head_start && self.answers.due().is_some() {
            self.send_candidate(cx);
        }
        if let Some(m) = self.live_master(cx) {
            // A master lives (we heard its heartbeat, but its answer to our
            // request was lost): it wins, whatever the claims say.
            self.end_head_start(cx);
            self.phase = if self.wanted {
                self.ask_master(cx);
                Phase::Awaiting {
                    winner: m,
                    deadline: cx.after(cx.timing.master_timeout),
                }
            } else {
                Phase::Idle
            };
            return;
        }
        // Judge ourselves by the claim the others judge us by. Our rank may have
        // changed since (free space measured again, a share grown): deciding with
        // the rank now, an agent whose free space shrank after its claim waited for
        // the runner-up while everyone else waited for it, and nobody was master
        // until `master_timeout` ran out (4.5 s instead of 0.5 s in the lab).
        let me = self.claimed_rank(cx.local);
        let best = max(me.can_be_master().then_some(me), self.best_candidate(since));
        if best.is_some_and(|r| r.node_id == cx.local.node_id) {
            return self.become_master(cx);
        }
        self.end_head_start(cx);
        self.phase = match best {
            Some(r) if self.wanted => Phase::Awaiting {
                winner: r.node_id,
                deadline: cx.after(cx.timing.master_timeout),
            },
            None if self.wanted => Phase::NoMaster {
                retry_at: cx.after(cx.timing.request_retry),
            },
            _ => Phase::Idle,
        };
    }

    fn become_master(&mut self, cx: &mut Ctx<'_>) {
        // A head start goes on as the master's download.
        self.head_start = false;
        self.term += 1;
        self.phase = Phase::Master(Mastership {
            term: self.term,
            next_heartbeat: cx.after(cx.timing.heartbeat_interval),
            reelect_at: cx.after(cx.timing.reelect_interval),
            reelect: None,
            done_sent: false,
            last_announce: cx.now,
        });
        cx.out.push(Action::BecomeMaster {
            key: self.key.clone(),
        });
        self.announce(cx);
        if self.share >= FULL_SHARE {
            self.send_done(cx);
        }
    }

    fn send_done(&mut self, cx: &mut Ctx<'_>) {
        if let Phase::Master(m) = &mut self.phase {
            if !m.done_sent {
                m.done_sent = true;
                let term = m.term;
                self.send(cx, Body::Done { term });
            }
        }
    }

    /// Stop being master; follow `successor` if we know how to reach it.
    fn resign(&mut self, cx: &mut Ctx<'_>, successor: Option<(MasterInfo, Rank)>) {
        let Phase::Master(m) = &self.phase else {
            return;
        };
        let term = m.term;
        cx.out.push(Action::StopMaster {
            key: self.key.clone(),
        });
        self.send(cx, Body::Resign { term });
        match successor {
            Some((info, rank)) if self.wanted => self.follow(cx, info, rank),
            Some(_) => self.phase = Phase::Idle,
            None if self.wanted => self.start_election(cx),
            None => self.phase = Phase::Idle,
        }
    }

    fn follow(&mut self, cx: &mut Ctx<'_>, info: MasterInfo, rank: Rank) {
        self.end_head_start(cx);
        cx.out.push(Action::FollowMaster {
            key: self.key.clone(),
            master: info.clone(),
        });
        self.phase = Phase::Following(Followed {
            info,
            rank,
            last_heard: cx.now,
        });
    }

    fn lose_master(&mut self, cx: &mut Ctx<'_>) {
        cx.out.push(Action::MasterLost {
            key: self.key.clone(),
        });
        self.start_election(cx);
    }

    /// The first timer due at `now`, if any.
    fn due(&self, t: &Timing, now: Instant) -> Option<Due> {
        match &self.phase {
            Phase::Idle => None,
            Phase::Electing {
                started,
                deadline,
                quiet_until,
            } => {
                if *deadline <= now {
                    Some(Due::Decide(*started))
                } else {
                    quiet_until
                        .is_some_and(|q| q <= now)
                        .then_some(Due::HeadStart)
                }
            }
            Phase::Awaiting { deadline, .. } => (*deadline <= now).then_some(Due::Restart),
            Phase::NoMaster { retry_at } => (*retry_at <= now).then_some(Due::Restart),
            Phase::Following(f) => (f.last_heard + t.master_timeout <= now).then_some(Due::Lost),
            Phase::Master(m) => match m.reelect {
                Some((started, deadline)) if deadline <= now => Some(Due::ReelectEnd(started)),
                None if m.reelect_at <= now => Some(Due::ReelectStart),
                _ => (m.next_heartbeat <= now).then_some(Due::Heartbeat),
            },
        }
    }

    /// Fire every timer due at `cx.now`.
    pub fn poll(&mut self, cx: &mut Ctx<'_>) {
        // Claims older than two windows go, but not those a collection still
        // running counts: on a loaded host the window's end is handled late, and
        // the claims that answered our request must still be there.
        let window = cx.timing.election_window;
        let counted_since = match &self.phase {
            Phase::Electing { started, .. } => Some(counted_since(*started, window)),
            Phase::Master(Mastership {
                reelect: Some((started, _)),
                ..
            }) => Some(*started),
            _ => None,
        };
        let keep = match (cx.now.checked_sub(window * 2), counted_since) {
            (Some(k), Some(s)) => Some(k.min(s)),
            (k, _) => k,
        };
        self.candidates
            .retain(|_, (_, t)| keep.is_none_or(|k| *t >= k));
        let every = throttle::interval(cx.timing.election_window);
        if self.answers.fire(cx.now, every) {
            self.send_answer(cx);
        }
        // Every firing moves its timer past `now` or changes phase; the bound is a
        // guard, not a limit reached in practice.
        for _ in 0..8 {
            let Some(due) = self.due(cx.timing, cx.now) else {
                return;
            };
            match due {
                Due::Decide(started) => self.decide(cx, started),
                Due::HeadStart => self.try_head_start(cx),
                Due::Restart => self.start_election(cx),
                Due::Lost => self.lose_master(cx),
                Due::ReelectStart => {
                    self.send_request(cx);
                    let deadline = cx.after(cx.timing.election_window);
                    if let Phase::Master(m) = &mut self.phase {
                        m.reelect = Some((cx.now, deadline));
                    }
                }
                Due::ReelectEnd(started) => {
                    let me = self.rank(cx.local);
                    if self.best_candidate(started).is_some_and(|b| b > me) {
                        self.resign(cx, None);
                    } else if let Phase::Master(m) = &mut self.phase {
                        m.reelect = None;
                        m.reelect_at = cx.after(cx.timing.reelect_interval);
                    }
                }
                Due::Heartbeat => {
                    let rank = self.rank(cx.local);
                    let next = cx.after(cx.timing.heartbeat_interval);
                    if let Phase::Master(m) = &mut self.phase {
                        m.next_heartbeat = next;
                        let term = m.term;
                        self.send(cx, Body::Heartbeat { rank, term });
                    }
                }
            }
        }
    }

    /// When `poll` must next run.
    pub fn deadline(&self, t: &Timing) -> Option<Instant> {
        let phase = self.phase_deadline(t);
        match (phase, self.answers.due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the phase's next timer fires.
    fn phase_deadline(&self, t: &Timing) -> Option<Instant> {
        match &self.phase {
            Phase::Idle => None,
            Phase::Electing {
                deadline,
                quiet_until,
                ..
            } => Some(quiet_until.map_or(*deadline, |q| q.min(*deadline))),
            Phase::Awaiting { deadline, .. } => Some(*deadline),
            Phase::NoMaster { retry_at } => Some(*retry_at),
            Phase::Following(f) => Some(f.last_heard + t.master_timeout),
            Phase::Master(m) => Some(m.next_heartbeat.min(match m.reelect {
                Some((_, deadline)) => deadline,
                None => m.reelect_at,
            })),
        }
    }

    pub fn on_want(&mut self, cx: &mut Ctx<'_>, share: u16) {
        self.wanted = true;
        self.share = share.min(FULL_SHARE);
        if let Phase::Idle = self.phase {
            self.start_election(cx);
        }
    }

    pub fn on_progress(&mut self, share: u16) {
        self.share = share.min(FULL_SHARE);
    }

    pub fn on_complete(&mut self, cx: &mut Ctx<'_>) {
        self.wanted = false;
        self.share = FULL_SHARE;
        match &self.phase {
            Phase::Master(_) => self.send_done(cx),
            Phase::Following(_) => self.phase = Phase::Idle,
            Phase::Awaiting { .. } | Phase::NoMaster { .. } => self.phase = Phase::Idle,
            // An election we take part in runs to its end: others count on our claim.
            Phase::Electing { .. } | Phase::Idle => {}
        }
    }

    /// Our certificate changed: a master tells its followers at once (not through
    /// `announce_limited`: the change must reach them, whenever it happens).
    pub fn on_cert_changed(&mut self, cx: &mut Ctx<'_>) {
        if let Phase::Master(_) = self.phase {
            self.announce(cx);
        }
    }

    pub fn on_forget(&mut self, cx: &mut Ctx<'_>) {
        self.end_head_start(cx);
        if let Phase::Master(m) = &self.phase {
            let term = m.term;
            cx.out.push(Action::StopMaster {
                key: self.key.clone(),
            });
            self.send(cx, Body::Resign { term });
        }
    }

    pub fn status(&self, local: &LocalInfo) -> ElectionStatus {
        let (state, master, term) = match &self.phase {
            Phase::Idle => (ElectionState::Idle, None, self.term),
            Phase::Electing { .. } | Phase::Awaiting { .. } | Phase::NoMaster { .. } => {
                (ElectionState::Electing, None, self.term)
            }
            Phase::Master(m) => (
                ElectionState::Master,
                Some((local.node_id, local.addr)),
                m.term,
            ),
            Phase::Following(f) => (
                ElectionState::Following,
                Some((f.info.node_id, f.info.addr)),
                f.info.term,
            ),
        };
        ElectionStatus {
            key: self.key.clone(),
            state,
            master_node: master.map(|m| m.0),
            master_addr: master.map(|m| m.1),
            term,
            share_permille: self.share,
        }
    }
}
