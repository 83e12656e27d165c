//! FanOut over SMB: holder messages and holder queries on the election socket.
//!
//! Over HTTP a FanOut peer describes itself in its `have` requests and the master
//! passes the holders on (see [`crate::peer::swarm`]). Over SMB a peer only reads
//! files from the master's share, so holders speak for themselves: while it follows
//! a master for a content, an agent that serves its own SMB share broadcasts a
//! holder message (its address, its share of the content, its P2P key: what a
//! peer needs to log on to its share), at once when it starts following, then at
//! most every [`AD_PERIOD`] as its share grows, and once more when it holds all.
//!
//! A holder that finished falls silent, and is forgotten
//! [`HOLDER_TTL`](crate::peer::swarm::HOLDER_TTL) after its last message; a peer
//! that starts copying later would then copy from the master alone. So a copying
//! peer also asks: a holder query ("who holds more than my share?") when it starts
//! following, then every [`ASK_PERIOD`] while it copies; every agent whose share
//! serves and is larger answers with a holder message, also once it holds all
//! and its job is over, until the content leaves its cache (at most one message
//! per content every [`AD_PERIOD`], whatever the number of askers: one broadcast
//! reaches them all). This is the product's FanOut question, "who has more than X
//! percent of this content", asked on the subnet.
//!
//! Every agent notes the holder messages it hears in its
//! [`HeardHolders`](crate::peer::swarm::HeardHolders), where its own copies find
//! them.
//!
//! The messages are election datagrams: authenticated and stamped with the site
//! key like the election's, the P2P key encrypted like a master's. A forged one
//! (without a site key) costs its victims time only: every block is verified
//! whoever sent it, and a holder that fails is dropped. A flood of forged queries
//! costs each holder at most one answer per content every [`AD_PERIOD`].

use std::collections::HashMap;
use std::time::Duration;

use crate::election::{Body, HolderNote, Instant, Message, P2pKey, FULL_SHARE};
use crate::manifest::ContentKey;
use crate::peer::swarm::{HeardHolders, HOLDER_TTL};

/// At most one holder message per content this often (as the share grows, or
/// answering queries).
pub const AD_PERIOD: Duration = Duration::from_secs(1);

/// A copying peer asks who holds more this often: a third of the time holders are
/// remembered, so one lost query or answer forgets nobody.
pub const ASK_PERIOD: Duration = Duration::from_secs(HOLDER_TTL.as_secs() / 3);

/// At most this many contents are tracked at once (copied, or held and answered
/// for): a bound, far above the jobs an agent runs.
const MAX_CONTENTS: usize = 256;

/// Whether this agent's share serves now (its smbd is running): a holder whose
/// smbd is down, not installed or failing says nothing, so that peers do not try
/// it (each would count three failures, and wait for the chunks it "owns").
pub type ServesNow = Box<dyn Fn() -> bool + Send + Sync>;

/// The holder message saying `share`, logging on with `p2p_key`.
fn holder_note(share: u16, p2p_key: P2pKey) -> Body {
    Body::Holder(HolderNote {
        share_permille: share,
        p2p_key,
    })
}

/// What this agent knows of its own part in one content.
#[derive(Debug)]
struct Tracked {
    /// Its share, in permille.
    share: u16,
    /// All of it is verified here: no more queries; answers until forgotten.
    complete: bool,
    /// When its last holder message went as its share grew (`None`: none yet).
    said: Option<Instant>,
    /// When it last answered a query (`None`: never).
    answered: Option<Instant>,
    /// A query came while an answer went less than [`AD_PERIOD`] ago: answered
    /// when the period is over, so that no asker waits for its next query.
    owed: bool,
    /// When it last asked who holds more (`None`: not yet).
    asked: Option<Instant>,
}

/// What this agent says and hears of holders.
pub(super) struct HolderAds {
    /// Where holders heard are noted; `None`: nobody here copies with them.
    heard: Option<HeardHolders>,
    /// The key of this agent's own P2P account, when it advertises itself (it
    /// serves its SMB share and copies with FanOut), and whether its share serves.
    own: Option<(P2pKey, ServesNow)>,
    /// The contents in play here.
    contents: HashMap<ContentKey, Tracked>,
}

impl HolderAds {
    pub(super) fn new(heard: Option<HeardHolders>, own: Option<(P2pKey, ServesNow)>) -> HolderAds {
        HolderAds {
            heard,
            own,
            contents: HashMap::new(),
        }
    }

    /// Whether this agent takes part at all: it may say it holds something, or
    /// copies with the holders it hears of.
    pub(super) fn in_play(&self) -> bool {
        self.own.is_some() || self.heard.is_some()
    }

    /// The key to say, when this agent's share serves now.
    fn own_key(&self) -> Option<P2pKey> {
        let (key, serves) = self.own.as_ref()?;
        serves().then_some(*key)
    }

    /// The entry of `key`, made when there is room.
    fn track(&mut self, key: &ContentKey, share: u16) -> Option<&mut Tracked> {
        if !self.contents.contains_key(key) && self.contents.len() >= MAX_CONTENTS {
            return None;
        }
        Some(self.contents.entry(key.clone()).or_insert(Tracked {
            share,
            complete: false,
            said: None,
            answered: None,
            owed: false,
            asked: None,
        }))
    }

    /// A holder message saying `share`, when this agent's share serves now.
    fn note(&self, share: u16) -> Option<Body> {
        Some(holder_note(share, self.own_key()?))
    }

    /// Note a holder message from another agent about a content a job here takes
    /// part in (`wanted`): the others are not kept, so that made-up contents
    /// cannot fill the registry.
    pub(super) fn hear(&self, msg: &Message, own_node: u64, wanted: bool) {
        let (Some(heard), Body::Holder(note)) = (&self.heard, &msg.body) else {
            return;
        };
        if msg.node_id != own_node && wanted {
            heard.heard(&msg.key, msg.addr, note.share_permille, note.p2p_key.0);
        }
    }

    /// This agent holds `share` of `key` now (a job wants it, or more is verified).
    /// Returns the message to broadcast when it follows a master for it
    /// (`following`) and none went within [`AD_PERIOD`].
    pub(super) fn progress(
        &mut self,
        key: &ContentKey,
        share: u16,
        following: bool,
        now: Instant,
    ) -> Option<Body> {
        if !self.in_play() {
            return None;
        }
        // Looked at before the entry is borrowed: `None` while this agent's share
        // does not serve, the share noted all the same.
        let note = self.note(share);
        let t = self.track(key, share)?;
        t.share = share;
        let due = t.said.is_none_or(|at| now.duration_since(at) >= AD_PERIOD);
        if !(following && due) {
            return None;
        }
        note.inspect(|_| t.said = Some(now))
    }

    /// This agent now follows a master for `key`: say at once what it holds, and
    /// ask who holds more (when it copies with the holders it hears of).
    pub(super) fn following(&mut self, key: &ContentKey, now: Instant) -> Vec<Body> {
        let share = self.contents.get(key).map_or(0, |t| t.share);
        if let Some(t) = self.contents.get_mut(key) {
            t.said = None;
        }
        let mut out = Vec::new();
        out.extend(self.progress(key, share, true, now));
        if self.heard.is_some() {
            if let Some(t) = self.contents.get_mut(key).filter(|t| !t.complete) {
                t.asked = Some(now);
                out.push(Body::WhoHolds {
                    above_permille: share,
                });
            }
        }
        out
    }

    /// All of `key` is verified here: a last message if this agent advertised it.
    /// It stays tracked (to answer queries) while its share may serve.
    pub(super) fn complete(&mut self, key: &ContentKey) -> Option<Body> {
        let Some(t) = self.contents.get_mut(key) else {
            // Complete without a job (a restart): kept to answer queries.
            if self.own.is_some() {
                let t = self.track(key, FULL_SHARE)?;
                t.complete = true;
            }
            return None;
        };
        let advertised = t.said.is_some() && !t.complete;
        t.share = FULL_SHARE;
        t.complete = true;
        if self.own.is_none() {
            self.contents.remove(key);
        }
        advertised.then(|| self.note(FULL_SHARE)).flatten()
    }

    /// A holder query about `key` from another agent that holds `above` permille:
    /// the answer, if this agent's share serves more of it and no answer went
    /// within [`AD_PERIOD`] (else it is owed, and [`due`](Self::due) gives it
    /// when the period is over). Not while this agent is master or electing
    /// (`may_answer` false): peers copy from the master anyway.
    pub(super) fn answer(
        &mut self,
        key: &ContentKey,
        above: u16,
        may_answer: bool,
        now: Instant,
    ) -> Option<Body> {
        if !may_answer {
            return None;
        }
        let p2p_key = self.own_key()?;
        let t = self.contents.get_mut(key)?;
        if t.share <= above {
            return None;
        }
        if t.answered
            .is_some_and(|at| now.duration_since(at) < AD_PERIOD)
        {
            t.owed = true;
            return None;
        }
        t.answered = Some(now);
        t.owed = false;
        Some(holder_note(t.share, p2p_key))
    }

    /// What is due at `now`: the answers owed whose period is over, and the
    /// holder queries, one per content this agent copies (not complete, and
    /// `following` a master for it) last asked about [`ASK_PERIOD`] ago.
    pub(super) fn due(
        &mut self,
        now: Instant,
        following: impl Fn(&ContentKey) -> bool,
    ) -> Vec<(ContentKey, Body)> {
        let own_key = self.own_key();
        let asks = self.heard.is_some();
        let mut out = Vec::new();
        for (key, t) in &mut self.contents {
            let answer_due = t
                .answered
                .is_none_or(|at| now.duration_since(at) >= AD_PERIOD);
            if let (true, true, Some(p2p_key)) = (t.owed, answer_due, own_key) {
                t.owed = false;
                t.answered = Some(now);
                out.push((key.clone(), holder_note(t.share, p2p_key)));
            }
            let ask_due = t
                .asked
                .is_some_and(|at| now.duration_since(at) >= ASK_PERIOD);
            if asks && !t.complete && ask_due && following(key) {
                t.asked = Some(now);
                out.push((
                    key.clone(),
                    Body::WhoHolds {
                        above_permille: t.share,
                    },
                ));
            }
        }
        out
    }

    /// `key` is no longer in play here (evicted, or a master resigned and
    /// becomes a plain holder again: `Complete` follows then).
    pub(super) fn forget(&mut self, key: &ContentKey) {
        self.contents.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use super::*;
    use crate::peer::swarm::HolderRegistry;

    fn key() -> ContentKey {
        ContentKey::new("PKG1".to_string(), 1).unwrap()
    }

    fn first(mut said: Vec<Body>) -> Option<Body> {
        (!said.is_empty()).then(|| said.remove(0))
    }

    fn share_of(b: Option<Body>) -> Option<u16> {
        match b {
            Some(Body::Holder(n)) => Some(n.share_permille),
            _ => None,
        }
    }

    #[test]
    fn a_follower_says_it_holds_at_once_then_at_most_every_period_then_when_complete() {
        let mut ads = HolderAds::new(None, Some((P2pKey([7; 32]), Box::new(|| true))));
        let t0 = Instant::now();
        // Wanted, not following yet: nothing said.
        assert_eq!(share_of(ads.progress(&key(), 0, false, t0)), None);
        assert_eq!(share_of(first(ads.following(&key(), t0))), Some(0));
        assert_eq!(
            share_of(ads.progress(&key(), 10, true, t0 + AD_PERIOD / 2)),
            None
        );
        assert_eq!(
            share_of(ads.progress(&key(), 20, true, t0 + AD_PERIOD)),
            Some(20)
        );
        // A new master: said again at once.
        assert_eq!(
            share_of(first(ads.following(&key(), t0 + AD_PERIOD))),
            Some(20)
        );
        assert_eq!(share_of(ads.complete(&key())), Some(1000));
        // Said once: complete again (a restart), nothing more.
        assert_eq!(share_of(ads.complete(&key())), None);
    }

    #[test]
    fn an_agent_without_a_share_of_its_own_says_nothing_and_a_master_neither() {
        let mut ads = HolderAds::new(None, None);
        let t0 = Instant::now();
        assert!(ads.following(&key(), t0).is_empty());
        let mut ads = HolderAds::new(None, Some((P2pKey([7; 32]), Box::new(|| true))));
        // Never followed (master, or electing): nothing, not even when complete.
        assert_eq!(share_of(ads.progress(&key(), 500, false, t0)), None);
        assert_eq!(share_of(ads.complete(&key())), None);
        // A share that does not serve now (smbd down): nothing said until it does.
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let serves = std::sync::Arc::clone(&up);
        let mut ads = HolderAds::new(
            None,
            Some((
                P2pKey([7; 32]),
                Box::new(move || serves.load(std::sync::atomic::Ordering::Relaxed)),
            )),
        );
        assert!(ads.following(&key(), t0).is_empty());
        up.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(share_of(ads.progress(&key(), 40, true, t0)), Some(40));
    }

    #[test]
    fn holders_heard_are_noted_except_this_agents_own_and_of_contents_not_wanted() {
        let heard = HeardHolders {
            registry: Arc::new(HolderRegistry::default()),
            me: IpAddr::from([10, 0, 0, 9]),
        };
        let ads = HolderAds::new(Some(heard.clone()), None);
        let msg = |node: u64, a: u8, body: Body| Message {
            node_id: node,
            addr: IpAddr::from([10, 0, 0, a]),
            key: key(),
            body,
            host: None,
        };
        let note = Body::Holder(HolderNote {
            share_permille: 300,
            p2p_key: P2pKey([1; 32]),
        });
        ads.hear(&msg(1, 1, note.clone()), 9, true);
        ads.hear(&msg(9, 9, note.clone()), 9, true);
        ads.hear(&msg(2, 2, Body::Request), 9, true);
        // A content no job here takes part in: not kept.
        ads.hear(&msg(3, 3, note), 9, false);
        let others = heard.registry.others(&key(), heard.me);
        assert_eq!(others.len(), 1, "{others:?}");
        assert_eq!(others[0].addr, IpAddr::from([10, 0, 0, 1]));
        let target = others[0].target(true).unwrap();
        assert_eq!(target.p2p_key, [1; 32]);
        assert_eq!(
            target.protocols,
            crate::config::Protocols::NONE.with(crate::config::Protocol::Smb)
        );
    }

    fn heard() -> HeardHolders {
        HeardHolders {
            registry: Arc::new(HolderRegistry::default()),
            me: IpAddr::from([10, 0, 0, 9]),
        }
    }

    fn ask_of(b: &Body) -> Option<u16> {
        match b {
            Body::WhoHolds { above_permille } => Some(*above_permille),
            _ => None,
        }
    }

    #[test]
    fn a_copying_peer_asks_who_holds_more_when_it_follows_then_every_ask_period_until_complete() {
        let mut ads = HolderAds::new(Some(heard()), None);
        let t0 = Instant::now();
        ads.progress(&key(), 120, false, t0);
        // It serves no share of its own: it asks, and says nothing of itself.
        let said = ads.following(&key(), t0);
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!(ask_of(&said[0]), Some(120));
        let following = |_: &ContentKey| true;
        assert!(ads.due(t0 + ASK_PERIOD / 2, following).is_empty());
        ads.progress(&key(), 400, true, t0 + ASK_PERIOD / 2);
        let due = ads.due(t0 + ASK_PERIOD, following);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, key());
        assert_eq!(ask_of(&due[0].1), Some(400));
        // Not while it follows no master (electing again, or master itself).
        assert!(ads.due(t0 + 3 * ASK_PERIOD, |_| false).is_empty());
        // Complete: no more queries.
        ads.complete(&key());
        assert!(ads.due(t0 + 5 * ASK_PERIOD, following).is_empty());
        // Without FanOut over SMB (nothing heard), nobody asks.
        let mut ads = HolderAds::new(None, Some((P2pKey([7; 32]), Box::new(|| true))));
        ads.progress(&key(), 0, false, t0);
        let said = ads.following(&key(), t0);
        assert!(said.iter().all(|b| ask_of(b).is_none()), "{said:?}");
        assert!(ads.due(t0 + ASK_PERIOD, following).is_empty());
    }

    #[test]
    fn a_holder_answers_queries_from_peers_holding_less_at_most_once_a_period_until_forgotten() {
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let serves = Arc::clone(&up);
        let mut ads = HolderAds::new(
            Some(heard()),
            Some((
                P2pKey([7; 32]),
                Box::new(move || serves.load(std::sync::atomic::Ordering::Relaxed)),
            )),
        );
        let t0 = Instant::now();
        // Nothing held here: no answer.
        assert_eq!(share_of(ads.answer(&key(), 0, true, t0)), None);
        ads.progress(&key(), 0, false, t0);
        ads.following(&key(), t0);
        ads.progress(&key(), 600, true, t0 + AD_PERIOD);
        // Half-way: answers a peer holding less, once a period; not one holding as much.
        let t1 = t0 + 2 * AD_PERIOD;
        assert_eq!(share_of(ads.answer(&key(), 600, true, t1)), None);
        assert_eq!(share_of(ads.answer(&key(), 100, true, t1)), Some(600));
        // A second query within the period: owed, and answered when it is over.
        assert_eq!(share_of(ads.answer(&key(), 100, true, t1)), None);
        let following = |_: &ContentKey| true;
        assert!(ads.due(t1 + AD_PERIOD / 2, following).is_empty());
        let owed = ads.due(t1 + AD_PERIOD, following);
        assert_eq!(owed.len(), 1, "{owed:?}");
        assert_eq!(share_of(Some(owed[0].1.clone())), Some(600));
        assert!(ads.due(t1 + AD_PERIOD, following).is_empty());
        let t1 = t1 + AD_PERIOD;
        // Complete, its job over: it still answers, with all of it.
        assert_eq!(share_of(ads.complete(&key())), Some(1000));
        let t2 = t1 + AD_PERIOD;
        assert_eq!(share_of(ads.answer(&key(), 100, false, t2)), None);
        assert_eq!(share_of(ads.answer(&key(), 999, true, t2)), Some(1000));
        // Its share down: silent until it serves again.
        up.store(false, std::sync::atomic::Ordering::Relaxed);
        let t3 = t2 + AD_PERIOD;
        assert_eq!(share_of(ads.answer(&key(), 0, true, t3)), None);
        up.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(share_of(ads.answer(&key(), 0, true, t3)), Some(1000));
        // Evicted: forgotten.
        ads.forget(&key());
        assert_eq!(share_of(ads.answer(&key(), 0, true, t3 + AD_PERIOD)), None);
        // Complete in the cache at start (no job): answers too.
        let mut ads = HolderAds::new(None, Some((P2pKey([7; 32]), Box::new(|| true))));
        assert_eq!(share_of(ads.complete(&key())), None);
        assert_eq!(share_of(ads.answer(&key(), 0, true, t0)), Some(1000));
    }
}
