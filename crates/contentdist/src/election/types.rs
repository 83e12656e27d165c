//! The election's vocabulary: what goes into [`Elections`](super::Elections) and what
//! comes out ([`Event`], [`Action`]), its settings ([`Timing`], [`LocalInfo`]), how it
//! reports ([`ElectionStatus`]), and [`Ctx`], what every slot handler is handed.
//!
//! Kept apart from the machine and its slots so that both depend on these types and
//! not on each other: the machine drives slots, slots never reach back into it.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::wire::{MasterAnnounce, Message, P2pKey};
use super::Instant;
use crate::config::{P2PEnabled, Protocols};
use crate::manifest::ContentKey;

/// The election timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long candidates are collected before the winner is picked (500 ms).
    pub election_window: Duration,
    /// How often a master sends a heartbeat (1 s).
    pub heartbeat_interval: Duration,
    /// Silence after which followers consider the master gone (3.5 s: about three
    /// missed heartbeats). Also how long a loser waits for the winner's announcement.
    pub master_timeout: Duration,
    /// How often a master re-runs the election (5 minutes, as in the product).
    pub reelect_interval: Duration,
    /// How often an agent that found no eligible master asks again (10 s).
    pub request_retry: Duration,
    /// A running election that has heard no new claim for this long (and started
    /// at least this long ago) lets the best candidate so far start its origin
    /// download before the window ends: a head start (`slot/head_start.rs`).
    /// `None`: the winner starts at the window's end. 50 ms.
    pub head_start_quiet: Option<Duration>,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            election_window: Duration::from_millis(500),
            heartbeat_interval: Duration::from_secs(1),
            master_timeout: Duration::from_millis(3500),
            reelect_interval: Duration::from_secs(300),
            request_retry: Duration::from_secs(10),
            head_start_quiet: Some(Duration::from_millis(50)),
        }
    }
}

/// What this agent says about itself in elections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalInfo {
    /// Unique on the subnet (for example random at each start). Messages carrying
    /// it are this agent's own and are ignored.
    pub node_id: u64,
    /// The address peers reach this agent's peer-copy server at.
    pub addr: IpAddr,
    /// `P2PElectionWeight`, 0..=99 (larger values are taken as 99). 0 = never
    /// master and never answers.
    pub weight: u8,
    /// Preboot mode: may answer, never master.
    pub preboot: bool,
    /// `P2PHttpPort`.
    pub http_port: u16,
    /// `P2PHttpsPort`.
    pub https_port: u16,
    /// The peer-copy protocols this agent accepts (`Config::peer_protocols`).
    pub protocols: Protocols,
    /// The key announced when this agent becomes master.
    pub p2p_key: P2pKey,
    /// SHA-256 of this agent's HTTPS certificate, announced when master. Renewed
    /// while running through [`Event::CertChanged`].
    pub cert_fingerprint: Option<[u8; 32]>,
    /// This agent's host name and FQDN, announced when master, for peers to check a
    /// PKI certificate's name. [`Elections::new`](super::Elections::new) keeps the
    /// first [`MAX_NAMES`](super::wire::MAX_NAMES) names valid by
    /// [`is_valid_master_name`](super::wire::is_valid_master_name) and drops the
    /// others, so that the announcement always encodes.
    pub names: Vec<String>,
    /// This agent's host name, sent in every message: a master's SMB server
    /// registers the machine accounts of the hosts it hears (see [`crate::smb`]).
    /// [`Elections::new`](super::Elections::new) drops one that is not valid by
    /// [`is_valid_host_name`](super::wire::is_valid_host_name).
    pub host: Option<String>,
    /// Free cache space in bytes (see [`Elections::set_free_bytes`](super::Elections::set_free_bytes)).
    pub free_bytes: u64,
}

impl Default for LocalInfo {
    /// Node 0 at 0.0.0.0, weight 50, ports 5080/5443, SMB (the default
    /// `P2PEnabled` 0x9), an all-zero P2P key, no fingerprint, no names, no host
    /// name: set at
    /// least `node_id`, `addr` and `p2p_key`.
    fn default() -> Self {
        LocalInfo {
            node_id: 0,
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            weight: 50,
            preboot: false,
            http_port: 5080,
            https_port: 5443,
            protocols: P2PEnabled::DEFAULT.protocols(),
            p2p_key: P2pKey([0; 32]),
            cert_fingerprint: None,
            names: Vec::new(),
            host: None,
            free_bytes: 0,
        }
    }
}

/// Something that happened, handed to [`Elections::handle`](super::Elections::handle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A job needs this content; `share_permille` of it is already verified here.
    /// Starts an election unless one runs or a master is known.
    Want {
        /// The content.
        key: ContentKey,
        /// Share already verified, 0..=1000.
        share_permille: u16,
    },
    /// More of the content is verified (carried in candidates and heartbeats).
    Progress {
        /// The content.
        key: ContentKey,
        /// Share verified, 0..=1000.
        share_permille: u16,
    },
    /// All of the content is verified here. Also registers content already in the
    /// cache at start: this agent then answers requests for it. A master broadcasts
    /// `Done` and keeps serving; a follower stops following.
    Complete {
        /// The content.
        key: ContentKey,
    },
    /// Stop taking part in elections for this content (evicted, job cancelled, or
    /// done serving). A master resigns.
    Forget {
        /// The content.
        key: ContentKey,
    },
    /// A message from the network, already decoded and authenticated. It fires no
    /// timer (it waited in the socket's queue: it counts before the timers due
    /// now); send `Tick` once the queue is read.
    Received {
        /// The message.
        msg: Message,
    },
    /// This agent's HTTPS certificate changed (renewed before it expires): announce
    /// `fingerprint` from now on. Every election this agent is master of announces
    /// again at once, not rate-limited, so that followers pin the new certificate
    /// (they get `FollowMaster` again). Nothing is sent if the fingerprint is the same.
    CertChanged {
        /// SHA-256 of the new certificate (DER); `None` if there is none.
        fingerprint: Option<[u8; 32]>,
    },
    /// Nothing but time passed: call at [`Elections::next_deadline`](super::Elections::next_deadline).
    Tick,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Encode and broadcast this message.
    Broadcast(Message),
    /// This agent is now master: download from the origin and serve peers.
    BecomeMaster {
        /// The content.
        key: ContentKey,
    },
    /// Copy from this master; replaces any master followed before for this content.
    /// Emitted again if the master's address, ports, protocols, keys, certificate
    /// fingerprint or names change.
    FollowMaster {
        /// The content.
        key: ContentKey,
        /// Where and how to reach it.
        master: MasterInfo,
    },
    /// The followed master went silent or resigned; an election is running. Stop
    /// copying from it (keep what was verified).
    MasterLost {
        /// The content.
        key: ContentKey,
    },
    /// This agent is no longer master (a better master took over, or it resigned):
    /// stop downloading from the origin as master. A `FollowMaster` may follow.
    StopMaster {
        /// The content.
        key: ContentKey,
    },
    /// The election still runs, but this agent's claim is the best heard and the
    /// subnet has been quiet for `Timing::head_start_quiet`: start the origin
    /// download now. A `BecomeMaster` follows if it wins (keep downloading), a
    /// `HeadStartEnded` if not.
    HeadStart {
        /// The content.
        key: ContentKey,
    },
    /// The head start ended without a mastership (a better candidate or a live
    /// master, or the job left): stop the origin download, keep what was verified.
    /// A `FollowMaster` may follow.
    HeadStartEnded {
        /// The content.
        key: ContentKey,
    },
}

/// The master a follower copies from, as it announced itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterInfo {
    /// Its node id.
    pub node_id: u64,
    /// Its address.
    pub addr: IpAddr,
    /// Its HTTP peer-copy port.
    pub http_port: u16,
    /// Its HTTPS peer-copy port.
    pub https_port: u16,
    /// The protocols it accepts.
    pub protocols: Protocols,
    /// The key to derive its P2P-account credentials from.
    pub p2p_key: P2pKey,
    /// SHA-256 of its HTTPS certificate, to pin a self-signed one.
    pub cert_fingerprint: Option<[u8; 32]>,
    /// Its host name and FQDN as announced, to check a PKI certificate's name.
    pub names: Vec<String>,
    /// Its share of the content, as last heard (announcement, heartbeat, done).
    pub share_permille: u16,
    /// Its term.
    pub term: u64,
}

impl MasterInfo {
    /// The master described by an announcement from `node_id` at `addr`.
    pub fn from_announce(node_id: u64, addr: IpAddr, a: &MasterAnnounce) -> MasterInfo {
        MasterInfo {
            node_id,
            addr,
            http_port: a.http_port,
            https_port: a.https_port,
            protocols: a.protocols,
            p2p_key: a.p2p_key,
            cert_fingerprint: a.cert_fingerprint,
            names: a.names.clone(),
            share_permille: a.rank.share_permille,
            term: a.term,
        }
    }

    /// Whether a follower reaches both the same way (share and term aside).
    pub(super) fn same_endpoint(&self, other: &MasterInfo) -> bool {
        (
            self.node_id,
            self.addr,
            self.http_port,
            self.https_port,
            self.protocols,
            self.p2p_key,
            self.cert_fingerprint,
            &self.names,
        ) == (
            other.node_id,
            other.addr,
            other.http_port,
            other.https_port,
            other.protocols,
            other.p2p_key,
            other.cert_fingerprint,
            &other.names,
        )
    }
}

/// Where one election stands, for `contentdist status` and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionState {
    /// Collecting candidates, waiting for the winner's announcement, or (preboot,
    /// weight 0) waiting for an eligible master to appear.
    Electing,
    /// This agent is master.
    Master,
    /// This agent copies from a master.
    Following,
    /// This agent holds the content and answers requests; no election runs.
    Idle,
}

/// One election of this agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionStatus {
    /// The content.
    pub key: ContentKey,
    /// Where the election stands.
    pub state: ElectionState,
    /// The master's node id (this agent's own when master).
    pub master_node: Option<u64>,
    /// The master's address.
    pub master_addr: Option<IpAddr>,
    /// The master's term, else the highest term seen.
    pub term: u64,
    /// This agent's share of the content, in permille.
    pub share_permille: u16,
}

/// What every handler needs: who we are, the timers, the time, and where actions go.
pub(super) struct Ctx<'a> {
    pub local: &'a LocalInfo,
    pub timing: &'a Timing,
    pub now: Instant,
    pub out: &'a mut Vec<Action>,
}

impl Ctx<'_> {
    /// `d` from now (`Elections::new` makes every duration at least 1 ms).
    pub fn after(&self, d: Duration) -> Instant {
        self.now + d
    }
}
