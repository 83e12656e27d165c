//! FanOut over SMB: holder messages on the election socket.
//!
//! Over HTTP a FanOut peer describes itself in its `have` requests and the master
//! passes the holders on (see [`crate::peer::swarm`]). Over SMB a peer only reads
//! files from the master's share, so it speaks for itself: while it follows a
//! master for a content, an agent that serves its own SMB share broadcasts a
//! holder message (its address, its share of the content, its P2P key: what a
//! peer needs to log on to its share), at once when it starts following, then at
//! most every [`AD_PERIOD`] as its share grows, and once more when it holds all.
//! Every agent notes the holder messages it hears in its
//! [`HeardHolders`](crate::peer::swarm::HeardHolders), where its own copies find
//! them (and forget them [`HOLDER_TTL`](crate::peer::swarm::HOLDER_TTL) after the
//! last one).
//!
//! The messages are election datagrams: authenticated and stamped with the site
//! key like the election's, the P2P key encrypted like a master's. A forged one
//! (without a site key) costs its victims time only: every block is verified
//! whoever sent it, and a holder that fails is dropped.

use std::collections::HashMap;
use std::time::Duration;

use crate::election::{Body, HolderNote, Instant, Message, P2pKey};
use crate::manifest::ContentKey;
use crate::peer::swarm::HeardHolders;

/// At most one holder message per content this often while the share grows.
pub const AD_PERIOD: Duration = Duration::from_secs(1);

/// At most this many contents followed at once are advertised (a bound, far above
/// the jobs an agent runs).
const MAX_CONTENTS: usize = 256;

/// Whether this agent's share serves now (its smbd is running): a holder whose
/// smbd is down, not installed or failing says nothing, so that peers do not try
/// it (each would count three failures, and wait for the chunks it "owns").
pub type ServesNow = Box<dyn Fn() -> bool + Send + Sync>;

/// What this agent says and hears of holders.
pub(super) struct HolderAds {
    /// Where holders heard are noted; `None`: nobody here copies with them.
    heard: Option<HeardHolders>,
    /// The key of this agent's own P2P account, when it advertises itself (it
    /// serves its SMB share and copies with FanOut), and whether its share serves.
    own: Option<(P2pKey, ServesNow)>,
    /// The last share reported per content in play, and when the last message for
    /// it went (`None`: none yet).
    contents: HashMap<ContentKey, (u16, Option<Instant>)>,
}

impl HolderAds {
    pub(super) fn new(heard: Option<HeardHolders>, own: Option<(P2pKey, ServesNow)>) -> HolderAds {
        HolderAds {
            heard,
            own,
            contents: HashMap::new(),
        }
    }

    /// Whether this agent may say it holds anything (whatever it follows).
    pub(super) fn speaks(&self) -> bool {
        self.own.is_some()
    }

    /// The key to say, when this agent's share serves now.
    fn own_key(&self) -> Option<P2pKey> {
        let (key, serves) = self.own.as_ref()?;
        serves().then_some(*key)
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
        self.own.as_ref()?;
        // Looked at before the share is noted (which borrows the map): `None` while
        // this agent's share does not serve, the share noted all the same.
        let serving_key = self.own_key();
        if !self.contents.contains_key(key) && self.contents.len() >= MAX_CONTENTS {
            return None;
        }
        let (last_share, last_sent) = self.contents.entry(key.clone()).or_insert((share, None));
        *last_share = share;
        let due = last_sent.is_none_or(|t| now.duration_since(t) >= AD_PERIOD);
        if !(following && due) {
            return None;
        }
        let p2p_key = serving_key?;
        *last_sent = Some(now);
        Some(Body::Holder(HolderNote {
            share_permille: share,
            p2p_key,
        }))
    }

    /// This agent now follows a master for `key`: say at once what it holds.
    pub(super) fn following(&mut self, key: &ContentKey, now: Instant) -> Option<Body> {
        let share = self.contents.get(key).map_or(0, |(s, _)| *s);
        if let Some((_, sent)) = self.contents.get_mut(key) {
            *sent = None;
        }
        self.progress(key, share, true, now)
    }

    /// All of `key` is verified here: a last message if this agent advertised it,
    /// and it is no longer tracked.
    pub(super) fn complete(&mut self, key: &ContentKey) -> Option<Body> {
        let (_, sent) = self.contents.remove(key)?;
        sent?;
        Some(Body::Holder(HolderNote {
            share_permille: crate::election::FULL_SHARE,
            p2p_key: self.own_key()?,
        }))
    }

    /// `key` is no longer in play here.
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
        assert_eq!(share_of(ads.following(&key(), t0)), Some(0));
        assert_eq!(
            share_of(ads.progress(&key(), 10, true, t0 + AD_PERIOD / 2)),
            None
        );
        assert_eq!(
            share_of(ads.progress(&key(), 20, true, t0 + AD_PERIOD)),
            Some(20)
        );
        // A new master: said again at once.
        assert_eq!(share_of(ads.following(&key(), t0 + AD_PERIOD)), Some(20));
        assert_eq!(share_of(ads.complete(&key())), Some(1000));
        // Forgotten once complete.
        assert_eq!(share_of(ads.complete(&key())), None);
    }

    #[test]
    fn an_agent_without_a_share_of_its_own_says_nothing_and_a_master_neither() {
        let mut ads = HolderAds::new(None, None);
        let t0 = Instant::now();
        assert_eq!(share_of(ads.following(&key(), t0)), None);
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
        assert_eq!(share_of(ads.following(&key(), t0)), None);
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
}
