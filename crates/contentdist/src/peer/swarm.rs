//! FanOut (`SpecialNetShare` 0x40): peers copy from each other, not only from the
//! master, so the master's port is not the office's bottleneck.
//!
//! Who holds what travels through the master, which sees every peer that copies
//! from it. A peer with FanOut describes itself in each `have` request it sends the
//! master (header [`HOLDER_HEADER`]: how to reach its own peer-copy server, and how
//! many blocks it holds verified); the master keeps the last word of each peer for
//! [`HOLDER_TTL`] and answers, to peers that described themselves, with up to
//! [`MAX_HOLDERS_SENT`] other holders ([`Holder`]) in the `have` document. The
//! peer then asks those holders for their own `have` maps and takes each block from
//! whoever holds it, keeping the master for blocks only the master has.
//!
//! This rides on the authenticated peer-copy channel (HTTPS, or the P2P or machine
//! account over HTTP): only an agent the master accepts can describe itself, and a
//! holder that lies costs its requester nothing but time, since every block is
//! verified on arrival whoever sent it, and a holder that fails is dropped.
//! The document's version is the `have` document's: `holders` is a field a peer
//! without FanOut (or an older one) never asks for and never gets.
//!
//! Over SMB a peer reads files and says nothing to its master, so holders there
//! speak for themselves: each broadcasts a holder message on the election socket
//! (see [`crate::subnet`]), the others note it in a [`HolderRegistry`] of their own
//! ([`HeardHolders`]), and the copy loop takes its holders from there instead of
//! from the master's answer.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::manifest::ContentKey;

/// The request header in which a FanOut peer describes itself to its master.
pub const HOLDER_HEADER: &str = "x-contentdist-holder";

/// How long a master remembers a holder that stopped asking (a peer asks at least
/// every long-poll, 5 s by default).
pub const HOLDER_TTL: Duration = Duration::from_secs(30);

/// How long a master remembers a holder that said it holds all of the content
/// (a peer says so once more when its copy completes, then asks no more): a peer
/// that starts later still learns of it. The master's own default time of serving
/// on after its download (10 minutes). A holder gone meanwhile costs its askers
/// time only: they drop it after a few failures.
pub const COMPLETE_HOLDER_TTL: Duration = Duration::from_secs(600);

/// At most this many other holders in one `have` answer.
pub const MAX_HOLDERS_SENT: usize = 16;

/// At most this many contents with holders remembered at once.
const MAX_CONTENTS_KEPT: usize = 256;

/// At most this many holders remembered per content (the rest are not tracked
/// until one leaves): bounds the master's memory whatever the peers send.
const MAX_HOLDERS_KEPT: usize = 1024;

/// How a peer describes itself to the master (the header's JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderAd {
    /// Its HTTP peer-copy port (0: none). A peer that serves nobody (preboot)
    /// describes itself with no protocols: it learns of holders, and is not one.
    pub http_port: u16,
    /// Its HTTPS peer-copy port (0: none).
    pub https_port: u16,
    /// The protocols it serves (`P2PEnabled` bits: 0x20 HTTP, 0x40 HTTPS).
    pub protocols: u32,
    /// Hex of the key its P2P account derives from; absent when it has none
    /// (certificate authentication, or machine accounts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2p_key: Option<String>,
    /// Hex of the SHA-256 of its self-signed HTTPS certificate, to pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_fingerprint: Option<String>,
    /// Its host name and FQDN, for a PKI certificate's name check.
    #[serde(default)]
    pub names: Vec<String>,
    /// Blocks of this content it holds verified (heard over SMB: its share in
    /// permille; either only ranks holders of one content against each other).
    pub verified: usize,
}

/// Another holder of the content, as the master passes it on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Its address, as the master saw it.
    pub addr: IpAddr,
    /// What it said about itself.
    #[serde(flatten)]
    pub ad: HolderAd,
}

/// Largest header value accepted (a description is about 300 bytes).
const MAX_AD_LEN: usize = 2048;

impl HolderAd {
    /// Parse a header value; `None` for anything malformed or oversized (the
    /// request is still answered, without holders).
    pub fn parse(value: &[u8]) -> Option<HolderAd> {
        if value.len() > MAX_AD_LEN {
            return None;
        }
        let ad: HolderAd = serde_json::from_slice(value).ok()?;
        let hex_ok = |h: &Option<String>| {
            h.as_ref()
                .is_none_or(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        let names_ok = ad.names.len() <= 4
            && ad
                .names
                .iter()
                .all(|n| crate::election::is_valid_master_name(n));
        (hex_ok(&ad.p2p_key) && hex_ok(&ad.cert_fingerprint) && names_ok).then_some(ad)
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        serde_json::to_string(self).expect("HolderAd serializes")
    }
}

/// The holders of one content: what each said last, and until when it is kept.
type Holders = HashMap<IpAddr, (HolderAd, Instant)>;

/// What is known of the holders of each content: by a master, from the peers'
/// descriptions; over SMB, by every agent, from the holder messages heard.
#[derive(Debug, Default)]
pub struct HolderRegistry {
    by_content: Mutex<HashMap<ContentKey, Holders>>,
}

impl HolderRegistry {
    /// `addr` described itself as `ad` for `key`: kept for `kept` ([`HOLDER_TTL`],
    /// or [`COMPLETE_HOLDER_TTL`] for a holder that holds all) unless it says more.
    pub fn note(&self, key: &ContentKey, addr: IpAddr, ad: HolderAd, kept: Duration) {
        let now = Instant::now();
        let mut all = self.by_content.lock().expect("holders lock");
        if all.len() > 64 {
            // Contents nobody asked about for a while: forgotten, so the map stays
            // as large as the contents being copied now.
            all.retain(|_, h| h.values().any(|(_, until)| now < *until));
        }
        if all.len() >= MAX_CONTENTS_KEPT && !all.contains_key(key) {
            // Bounds what forged descriptions (or holder messages) of made-up
            // contents can make it keep.
            return;
        }
        let holders = all.entry(key.clone()).or_default();
        holders.retain(|_, (_, until)| now < *until);
        if holders.len() < MAX_HOLDERS_KEPT || holders.contains_key(&addr) {
            holders.insert(addr, (ad, now + kept));
        }
    }

    /// Up to [`MAX_HOLDERS_SENT`] holders of `key` other than `asker` that serve,
    /// those holding most first (they can serve the most); among equal holders an
    /// order of the asker's own, and beyond the best half a rotating start, so that
    /// askers are spread over equal holders. (With ties broken by address, every
    /// asker that follows 8 holders took the same 8 while all held nothing yet, and
    /// in 16 hosts 6 never served: BENCHMARKS.md §14.)
    pub fn others(&self, key: &ContentKey, asker: IpAddr) -> Vec<Holder> {
        let now = Instant::now();
        let all = self.by_content.lock().expect("holders lock");
        let Some(holders) = all.get(key) else {
            return Vec::new();
        };
        let mut list: Vec<Holder> = holders
            .iter()
            .filter(|(addr, (ad, until))| {
                // Holders with nothing yet are named too: they are copying, and
                // the chunks of the master's are shared out among all of them.
                **addr != asker && ad.protocols != 0 && now < *until
            })
            .map(|(addr, (ad, _))| Holder {
                addr: *addr,
                ad: ad.clone(),
            })
            .collect();
        let tie = |addr: &IpAddr| {
            let mut h = std::hash::DefaultHasher::new();
            (asker, addr).hash(&mut h);
            h.finish()
        };
        list.sort_by_cached_key(|h| (std::cmp::Reverse(h.ad.verified), tie(&h.addr), h.addr));
        if list.len() > MAX_HOLDERS_SENT {
            // Keep the best half, and rotate the rest by the asker so that not
            // every asker is sent to the same few.
            let keep = MAX_HOLDERS_SENT / 2;
            let rest = list.split_off(keep);
            let seed = match asker {
                IpAddr::V4(a) => u32::from(a) as usize,
                IpAddr::V6(a) => u128::from(a) as usize,
            };
            let start = seed % rest.len();
            list.extend(
                rest.iter()
                    .cycle()
                    .skip(start)
                    .take(MAX_HOLDERS_SENT - keep)
                    .cloned(),
            );
        }
        list
    }

    /// What `addr` last said it holds of `key`, and how long it is kept from now
    /// (tests).
    #[cfg(test)]
    pub(super) fn kept(&self, key: &ContentKey, addr: IpAddr) -> Option<(usize, Duration)> {
        let all = self.by_content.lock().expect("holders lock");
        let (ad, until) = all.get(key)?.get(&addr)?;
        Some((ad.verified, until.saturating_duration_since(Instant::now())))
    }

    /// How many holders of `key` are remembered (tests).
    #[cfg(test)]
    pub(super) fn len(&self, key: &ContentKey) -> usize {
        self.by_content
            .lock()
            .expect("holders lock")
            .get(key)
            .map_or(0, HashMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad(verified: usize) -> HolderAd {
        HolderAd {
            http_port: 5080,
            https_port: 5443,
            protocols: 0x60,
            p2p_key: Some("ab".repeat(32)),
            cert_fingerprint: None,
            names: vec!["pc1".into()],
            verified,
        }
    }

    #[test]
    fn a_description_round_trips_and_bad_ones_are_refused() {
        let a = ad(7);
        assert_eq!(HolderAd::parse(a.to_header().as_bytes()), Some(a.clone()));
        let mut bad = a.clone();
        bad.p2p_key = Some("zz".into());
        assert_eq!(HolderAd::parse(bad.to_header().as_bytes()), None);
        let mut bad = a.clone();
        bad.names = vec!["not a name".into()];
        assert_eq!(HolderAd::parse(bad.to_header().as_bytes()), None);
        assert_eq!(HolderAd::parse(b"{"), None);
        assert_eq!(HolderAd::parse(&[b' '; 4096]), None);
    }

    #[test]
    fn others_leave_out_the_asker_and_agents_that_serve_nobody_and_are_bounded() {
        let key = ContentKey::new("PKG1".to_string(), 1).unwrap();
        let r = HolderRegistry::default();
        let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
        r.note(&key, ip(1), ad(5), HOLDER_TTL);
        let mut preboot = ad(0);
        preboot.protocols = 0;
        r.note(&key, ip(2), preboot, HOLDER_TTL);
        r.note(&key, ip(3), ad(9), HOLDER_TTL);
        r.note(&key, ip(4), ad(0), HOLDER_TTL);
        let others = r.others(&key, ip(1));
        assert_eq!(
            others.iter().map(|h| h.addr).collect::<Vec<_>>(),
            vec![ip(3), ip(4)]
        );
        for i in 10..100 {
            r.note(&key, ip(i), ad(usize::from(i)), HOLDER_TTL);
        }
        let others = r.others(&key, ip(1));
        assert_eq!(others.len(), MAX_HOLDERS_SENT);
        // The best holders first.
        assert_eq!(others[0].addr, ip(99));
        // A later description replaces the earlier one.
        r.note(&key, ip(3), ad(1), HOLDER_TTL);
        assert_eq!(r.len(&key), 94);
        let other_askers: Vec<_> = r.others(&key, ip(50)).into_iter().map(|h| h.addr).collect();
        assert_ne!(
            other_askers,
            others.iter().map(|h| h.addr).collect::<Vec<_>>()
        );
        // Each is kept for the time it was noted for.
        r.note(&key, ip(200), ad(1), Duration::ZERO);
        assert!(r.others(&key, ip(1)).iter().all(|h| h.addr != ip(200)));
        assert!(r.kept(&key, ip(3)).unwrap().1 <= HOLDER_TTL);
        r.note(&key, ip(3), ad(1), COMPLETE_HOLDER_TTL);
        assert!(r.kept(&key, ip(3)).unwrap().1 > HOLDER_TTL);
        // Equal holders come in an order of each asker's own: followed 8 at a time,
        // every holder is among someone's 8.
        let r = HolderRegistry::default();
        for i in 1..=15 {
            r.note(&key, ip(i), ad(0), HOLDER_TTL);
        }
        let firsts: std::collections::HashSet<IpAddr> = (1..=15)
            .flat_map(|asker| r.others(&key, ip(asker))[..8].to_vec())
            .map(|h| h.addr)
            .collect();
        assert_eq!(firsts.len(), 15, "every holder among some asker's first 8");
    }
}

/// The holders this agent heard of on its subnet (FanOut over SMB), for its copies.
#[derive(Clone, Debug)]
pub struct HeardHolders {
    /// The holders heard, by content.
    pub registry: Arc<HolderRegistry>,
    /// This agent's own address as holder messages carry it (the position of each
    /// agent among those copying is by these addresses).
    pub me: IpAddr,
}

impl HeardHolders {
    /// A holder heard in an election datagram: `addr` serves `share_permille` of
    /// `key` from its SMB share, its P2P account's password deriving from `p2p_key`.
    pub fn heard(&self, key: &ContentKey, addr: IpAddr, share_permille: u16, p2p_key: [u8; 32]) {
        let ad = HolderAd {
            http_port: 0,
            https_port: 0,
            protocols: crate::config::Protocols::NONE
                .with(crate::config::Protocol::Smb)
                .bits(),
            p2p_key: Some(hex::encode(p2p_key)),
            cert_fingerprint: None,
            names: Vec::new(),
            // Only ranks holders of one content against each other: a share does.
            verified: usize::from(share_permille),
        };
        // Refreshed by the holder's answers to this agent's queries, every
        // `ASK_PERIOD` while it copies: the short time is enough.
        self.registry.note(key, addr, ad, HOLDER_TTL);
    }
}

/// How this agent describes itself to masters with FanOut on.
#[derive(Clone, Debug)]
pub struct SelfAd {
    /// Its HTTP peer-copy port (0: not serving HTTP).
    pub http_port: u16,
    /// Its HTTPS peer-copy port (0: not serving HTTPS).
    pub https_port: u16,
    /// What it serves: `NONE` for an agent that serves nobody (preboot).
    pub protocols: crate::config::Protocols,
    /// Its P2P account's key; `None` without one (certificate authentication).
    pub p2p_key: Option<[u8; 32]>,
    /// Its host name and FQDN.
    pub names: Vec<String>,
    /// The pin of its self-signed HTTPS certificate, as it changes.
    pub pin: Option<tokio::sync::watch::Receiver<Option<[u8; 32]>>>,
}

impl SelfAd {
    /// The description sent with a `have` request, holding `verified` blocks.
    pub fn ad(&self, verified: usize) -> HolderAd {
        HolderAd {
            http_port: self.http_port,
            https_port: self.https_port,
            protocols: self.protocols.bits(),
            p2p_key: self.p2p_key.map(hex::encode),
            cert_fingerprint: self.pin.as_ref().and_then(|p| p.borrow().map(hex::encode)),
            names: self.names.clone(),
            verified,
        }
    }
}

impl Holder {
    /// The holder as a copy target (the same shape as a master's). `None` when it
    /// cannot be authenticated to the way this agent copies: it has no P2P account
    /// and `account_needed`.
    pub fn target(&self, account_needed: bool) -> Option<super::MasterTarget> {
        let key = match &self.ad.p2p_key {
            Some(k) => {
                let mut key = [0u8; 32];
                hex::decode_to_slice(k, &mut key).ok()?;
                key
            }
            None if account_needed => return None,
            None => [0; 32],
        };
        let cert_fingerprint = match &self.ad.cert_fingerprint {
            Some(f) => {
                let mut fp = [0u8; 32];
                hex::decode_to_slice(f, &mut fp).ok()?;
                Some(fp)
            }
            None => None,
        };
        Some(super::MasterTarget {
            addr: self.addr,
            http_port: self.ad.http_port,
            https_port: self.ad.https_port,
            protocols: crate::config::Protocols::from_bits(self.ad.protocols),
            p2p_key: key,
            cert_fingerprint,
            names: self.ad.names.clone(),
        })
    }
}
