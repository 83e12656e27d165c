//! The agent on its subnet: runs the election state machine ([`crate::election`])
//! behind a UDP socket and tells jobs, per content, what role this agent has: master
//! (download from the origin), follower of a given master (copy from it), or still
//! electing.
//!
//! Jobs talk to it through a [`SubnetHandle`]: `want` a content (which starts or
//! joins its election) and watch its [`Role`]; report progress and completion. The
//! driver task owns the socket and the state machine; nothing else touches them.

mod driver;
mod holders;
mod membership;
mod recv;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

pub use driver::{start, start_with, SocketOptions, SubnetOptions, MAX_HEARD_HOSTS};
pub use holders::{ServesNow, AD_PERIOD, ASK_PERIOD};
pub use membership::{AfterFailure, Membership, RolePolicy, Waited};

use crate::election::{ElectionStatus, Event, MasterInfo};
use crate::manifest::ContentKey;

/// What this agent is for one content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The election runs (or, preboot / weight 0, no eligible master exists yet).
    Electing,
    /// This agent is master: it downloads from the origin and serves peers.
    Master,
    /// Copy from this master.
    Follow(MasterInfo),
}

/// Why the subnet layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum SubnetError {
    /// The election socket could not be set up.
    #[error("election socket on UDP port {port}: {source}")]
    Socket {
        /// The port (`P2P_Port`).
        port: u16,
        /// The cause.
        source: std::io::Error,
    },
}

impl SubnetError {
    /// The catalogue code.
    pub fn code(&self) -> crate::codes::Code {
        crate::codes::Code::CONFIG_INVALID
    }
}

pub(crate) struct Shared {
    roles: Mutex<HashMap<ContentKey, watch::Sender<Role>>>,
    status: Mutex<Vec<ElectionStatus>>,
    received: AtomicU64,
    dropped: AtomicU64,
    replayed: AtomicU64,
    overflowed: AtomicU64,
    free_bytes: AtomicU64,
    masterships: Mutex<Masterships>,
    outcomes: Mutex<Outcomes>,
}

/// How this agent's elections came out, for the metrics: elections lost (it
/// follows another agent), and master changes (the master of a content it takes
/// part in became another agent, this one included).
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    lost: u64,
    master_changes: u64,
    /// The last master of each content in play: `None` for this agent.
    last_master: HashMap<ContentKey, Option<std::net::IpAddr>>,
    head_starts: HeadStarts,
}

/// This agent's head starts (origin downloads begun before the election window
/// ended, `election::slot::head_start`). Every count only grows: a head start is
/// counted `kept` or `ended` once it is one or the other, not while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadStarts {
    /// Head starts taken.
    pub taken: u64,
    /// Those that went on as the master's download (`BecomeMaster`).
    pub kept: u64,
    /// Those that ended without a mastership: the only way an election can cost
    /// WAN bytes twice.
    pub ended: u64,
}

impl Outcomes {
    /// The election of `key` made `master` (`None`: this agent) its master;
    /// `before` was this agent's role until now.
    fn elected(&mut self, key: &ContentKey, master: Option<std::net::IpAddr>, before: &Role) {
        if master.is_some() && !matches!(before, Role::Follow(m) if Some(m.addr) == master) {
            self.lost += 1;
        }
        if let Some(prev) = self.last_master.insert(key.clone(), master) {
            if prev != master {
                self.master_changes += 1;
            }
        }
    }
}

/// One time this agent was master of a content: from `BecomeMaster` to
/// `StopMaster` (`None`: still master).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mastership {
    /// The content.
    pub key: ContentKey,
    /// When the election made this agent master.
    pub since: std::time::Instant,
    /// When it stopped being master (yielded, resigned, forgot).
    pub until: Option<std::time::Instant>,
}

/// The masterships of this agent, newest last: how many there were, and the last
/// [`Masterships::KEPT`] of them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Masterships {
    count: u64,
    recent: std::collections::VecDeque<Mastership>,
}

impl Masterships {
    /// How many masterships are remembered (the count goes on).
    const KEPT: usize = 64;

    fn begin(&mut self, key: &ContentKey, at: std::time::Instant) {
        self.count += 1;
        if self.recent.len() == Self::KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(Mastership {
            key: key.clone(),
            since: at,
            until: None,
        });
    }

    fn end(&mut self, key: &ContentKey, at: std::time::Instant) {
        if let Some(m) = self
            .recent
            .iter_mut()
            .rev()
            .find(|m| &m.key == key && m.until.is_none())
        {
            m.until = Some(at);
        }
    }
}

impl Shared {
    fn role_sender(&self, key: &ContentKey) -> watch::Sender<Role> {
        let mut roles = self.roles.lock().expect("roles lock");
        roles
            .entry(key.clone())
            .or_insert_with(|| watch::channel(Role::Electing).0)
            .clone()
    }

    /// Set the role of `key` and return the one before. Watchers wake only when it
    /// changes: `BecomeMaster` after a head start must not restart the download
    /// that is under way.
    fn set_role(&self, key: &ContentKey, role: Role) -> Role {
        let mut before = None;
        self.role_sender(key).send_if_modified(|r| {
            before = Some(std::mem::replace(r, role));
            before.as_ref() != Some(r)
        });
        before.expect("send_if_modified runs the closure")
    }

    /// Drop the role of a content this agent no longer takes part in, unless a job
    /// still watches it (it joined again meanwhile): the map stays as large as the
    /// contents in play, not every content ever seen.
    fn drop_role(&self, key: &ContentKey) {
        let mut roles = self.roles.lock().expect("roles lock");
        if roles.get(key).is_some_and(|s| s.receiver_count() == 0) {
            roles.remove(key);
            let mut o = self.outcomes.lock().expect("outcomes lock");
            o.last_master.remove(key);
        }
    }

    /// Whether a job takes part in the election of `key` here (without creating
    /// its role), and whether this agent follows a master for it.
    fn role_of(&self, key: &ContentKey) -> Option<bool> {
        let roles = self.roles.lock().expect("roles lock");
        roles
            .get(key)
            .map(|r| matches!(*r.borrow(), Role::Follow(_)))
    }

    /// Contents with a role (tests: the map shrinks on forget).
    fn roles_len(&self) -> usize {
        self.roles.lock().expect("roles lock").len()
    }
}

/// How jobs reach the subnet driver. Cheap to clone.
#[derive(Clone)]
pub struct SubnetHandle {
    events: mpsc::UnboundedSender<Event>,
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    advertised: IpAddr,
    policy: Arc<RolePolicy>,
    recv_buffer: usize,
}

impl SubnetHandle {
    /// Join (or start) the election for `key`, holding `share_permille` of it;
    /// returns a watch of this agent's role for it.
    pub fn want(&self, key: &ContentKey, share_permille: u16) -> watch::Receiver<Role> {
        let rx = self.shared.role_sender(key).subscribe();
        let _ = self.events.send(Event::Want {
            key: key.clone(),
            share_permille,
        });
        rx
    }

    /// More of `key` is verified here.
    pub fn progress(&self, key: &ContentKey, share_permille: u16) {
        let _ = self.events.send(Event::Progress {
            key: key.clone(),
            share_permille,
        });
    }

    /// All of `key` is verified here: answer elections for it from now on.
    pub fn complete(&self, key: &ContentKey) {
        let _ = self.events.send(Event::Complete { key: key.clone() });
    }

    /// Stop taking part in elections for `key` (a master resigns).
    pub fn forget(&self, key: &ContentKey) {
        let _ = self.events.send(Event::Forget { key: key.clone() });
    }

    /// This agent's HTTPS certificate changed (renewed): announce `fp` (SHA-256 of
    /// the new certificate, DER) from now on. Where this agent is master it
    /// announces again at once, and its followers pin the new certificate.
    pub fn set_cert_fingerprint(&self, fp: Option<[u8; 32]>) {
        let _ = self.events.send(Event::CertChanged { fingerprint: fp });
    }

    /// The elections this agent takes part in.
    pub fn status(&self) -> Vec<ElectionStatus> {
        self.shared.status.lock().expect("status lock").clone()
    }

    /// Whether the election made this agent master of `key` (as of the driver's
    /// last step; a head start is not a mastership).
    pub fn is_master_of(&self, key: &ContentKey) -> bool {
        self.shared
            .status
            .lock()
            .expect("status lock")
            .iter()
            .any(|s| &s.key == key && s.state == crate::election::ElectionState::Master)
    }

    /// Election datagrams dropped because they did not decode or authenticate
    /// (malformed, another protocol version, wrong or missing site key).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Authenticated election messages dropped as replayed or stale: seen before
    /// from that node, or more than 30 s off this host's clock. Always 0 without a
    /// site key (nothing can tell a replay then).
    pub fn replayed(&self) -> u64 {
        self.shared.replayed.load(Ordering::Relaxed)
    }

    /// Datagrams the kernel dropped before the driver read them (the socket's
    /// receive queue was full: `SO_RXQ_OVFL`). Election messages among them are
    /// lost. The kernel reports its count with the next datagram read, so drops
    /// show once traffic resumes.
    pub fn overflowed(&self) -> u64 {
        self.shared.overflowed.load(Ordering::Relaxed)
    }

    /// Datagrams read from the election socket, accepted or not (our own
    /// broadcasts come back and count too). Every datagram that reached the socket
    /// is in `received() + overflowed()`; `dropped()` and `replayed()` are among
    /// the received.
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    /// The election socket's receive buffer, in bytes, as the kernel reports it
    /// (about twice what was asked: see [`SocketOptions::recv_buffer`]).
    pub fn recv_buffer(&self) -> usize {
        self.recv_buffer
    }

    /// The election socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address announced to peers.
    pub fn advertised(&self) -> IpAddr {
        self.advertised
    }

    /// The master policy (fallback, grace, linger).
    pub fn policy(&self) -> &RolePolicy {
        &self.policy
    }

    /// How many contents have a role (one per content in play).
    pub fn roles_held(&self) -> usize {
        self.shared.roles_len()
    }

    /// The free cache space the election ranks this agent by, as last measured.
    pub fn free_bytes(&self) -> u64 {
        self.shared.free_bytes.load(Ordering::Relaxed)
    }

    /// How many times the election made this agent master (of any content).
    pub fn masterships_count(&self) -> u64 {
        self.shared
            .masterships
            .lock()
            .expect("masterships lock")
            .count
    }

    /// Elections this agent lost: times it was told to follow another master.
    pub fn elections_lost(&self) -> u64 {
        self.shared.outcomes.lock().expect("outcomes lock").lost
    }

    /// Times the master of a content this agent takes part in changed to another
    /// agent (this one included).
    pub fn master_changes(&self) -> u64 {
        self.shared
            .outcomes
            .lock()
            .expect("outcomes lock")
            .master_changes
    }

    /// This agent's head starts: taken, kept, ended.
    pub fn head_starts(&self) -> HeadStarts {
        self.shared
            .outcomes
            .lock()
            .expect("outcomes lock")
            .head_starts
    }

    /// This agent's recent masterships (the last 64), oldest first, as the
    /// election's actions made and ended them.
    pub fn masterships(&self) -> Vec<Mastership> {
        let m = self.shared.masterships.lock().expect("masterships lock");
        m.recent.iter().cloned().collect()
    }
}

/// Share of `verified` out of `total` bytes, in permille (1000 = all).
pub fn share_permille(verified: u64, total: u64) -> u16 {
    if total == 0 || verified >= total {
        1000
    } else {
        ((verified as u128 * 1000) / total as u128) as u16
    }
}

#[cfg(test)]
mod flood_tests;
#[cfg(test)]
mod tests;
