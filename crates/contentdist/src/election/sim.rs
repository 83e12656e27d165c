//! A simulated subnet for the election tests: N `Elections` on one simulated clock,
//! broadcasts encoded, delayed, dropped (seeded RNG) and decoded; with a site key,
//! stamped by the sender and checked by the receiver's replay guard, as the driver does.
//! A node can be made to lag ([`Net::set_lag`]): like the driver of an agent on a
//! loaded host, it reads its socket and fires its timers only now and then, reading
//! everything queued first.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    decode_stamped, encode, Action, ElectionState, ElectionStatus, Elections, Event, Instant,
    LocalInfo, P2pKey, ReplayGuard, SiteKey, Stamper, Timing,
};
use crate::config::Protocols;
use crate::manifest::ContentKey;

/// How a simulated agent ranks.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub weight: u8,
    pub preboot: bool,
    pub free_bytes: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            weight: 50,
            preboot: false,
            free_bytes: 1 << 30,
        }
    }
}

pub struct Node {
    pub el: Elections,
    /// A dead node neither sends nor receives.
    pub alive: bool,
    /// Nodes deliver to each other only inside one group (partitions).
    pub group: u32,
    /// Every action, with when it happened.
    pub log: Vec<(Duration, Action)>,
    /// Stamps what it sends (site key only).
    pub stamper: Stamper,
    /// Checks the stamps of what it receives (site key only).
    pub guard: ReplayGuard,
    /// A lagging node runs only every `lag` (see [`Net::set_lag`]).
    lag: Option<Duration>,
    /// When a lagging node runs next.
    wake_at: Option<Instant>,
    /// Datagrams waiting in a lagging node's socket queue.
    inbox: Vec<Vec<u8>>,
}

/// The simulated wall clock at the start, in ms since the Unix epoch (2027).
pub const WALL_T0_MS: u64 = 1_800_000_000_000;

/// A datagram in flight: (delivery time, sequence for a stable order, to, bytes).
type Flight = Reverse<(Instant, u64, usize, Vec<u8>)>;

pub struct Net {
    pub t0: Instant,
    pub now: Instant,
    pub nodes: Vec<Node>,
    queue: BinaryHeap<Flight>,
    seq: u64,
    rng: StdRng,
    /// Per-message delay range in milliseconds (inclusive).
    pub delay_ms: (u64, u64),
    /// Probability that one delivery (one message to one node) is lost.
    pub drop: f64,
    pub site_key: Option<SiteKey>,
    pub sent: usize,
    /// Deliveries the receivers' replay guards refused (site key only).
    pub stale: usize,
}

pub fn key() -> ContentKey {
    ContentKey::new("PKG00001", 1).expect("a valid id")
}

/// `n` milliseconds: the tests' unit of simulated time.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An agent of `weight`, otherwise the default spec.
pub fn spec(weight: u8) -> Spec {
    Spec {
        weight,
        ..Spec::default()
    }
}

/// Node ids are 1..=n, so the node id breaks ties predictably.
pub fn node_id(i: usize) -> u64 {
    i as u64 + 1
}

impl Net {
    pub fn new(specs: &[Spec], seed: u64) -> Net {
        Net::with_timing(specs, seed, Timing::default())
    }

    pub fn with_timing(specs: &[Spec], seed: u64, timing: Timing) -> Net {
        let t0 = Instant::now();
        let nodes = specs
            .iter()
            .enumerate()
            .map(|(i, s)| Node {
                el: Elections::new(
                    LocalInfo {
                        node_id: node_id(i),
                        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8 + 1)),
                        weight: s.weight,
                        preboot: s.preboot,
                        protocols: Protocols::ALL,
                        p2p_key: P2pKey([i as u8; 32]),
                        free_bytes: s.free_bytes,
                        ..LocalInfo::default()
                    },
                    timing.clone(),
                ),
                alive: true,
                group: 0,
                log: Vec::new(),
                stamper: Stamper::new(0),
                guard: ReplayGuard::default(),
                lag: None,
                wake_at: None,
                inbox: Vec::new(),
            })
            .collect();
        Net {
            t0,
            now: t0,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            delay_ms: (0, 2),
            drop: 0.0,
            site_key: None,
            sent: 0,
            stale: 0,
        }
    }

    /// From now on node `i` runs only every `lag`, first after `first`: in between,
    /// datagrams for it wait in its queue and its timers wait too. When it runs it
    /// does what the driver does: every queued datagram first, then the timers due.
    /// (Its job events, `want` and the like, are still handled at once.)
    pub fn set_lag(&mut self, i: usize, lag: Duration, first: Duration) {
        self.nodes[i].lag = Some(lag);
        self.nodes[i].wake_at = Some(self.now + first);
    }

    /// Run lagging node `i` if it is due: its queue, then its timers.
    fn wake(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let (Some(lag), Some(at)) = (n.lag, n.wake_at) else {
            return;
        };
        if at > self.now {
            return;
        }
        n.wake_at = Some(at + lag);
        for bytes in std::mem::take(&mut n.inbox) {
            self.deliver(i, &bytes);
        }
        let due = self.nodes[i]
            .el
            .next_deadline()
            .is_some_and(|d| d <= self.now);
        if due {
            self.event(i, Event::Tick);
        }
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// The simulated wall clock, in ms since the Unix epoch.
    pub fn wall_ms(&self) -> u64 {
        WALL_T0_MS + self.elapsed().as_millis() as u64
    }

    /// Hand a datagram to node `i` now, as the driver does: decode, check the stamp,
    /// handle. Returns whether the message was accepted (not stale).
    pub fn deliver(&mut self, i: usize, bytes: &[u8]) -> bool {
        if !self.nodes[i].alive {
            return false;
        }
        let (msg, stamp) = decode_stamped(bytes, self.site_key.as_ref()).expect("decodable");
        if let Some(stamp) = stamp {
            let now = self.wall_ms();
            if self.nodes[i].guard.check(msg.node_id, stamp, now).is_err() {
                self.stale += 1;
                return false;
            }
        }
        self.event(i, Event::Received { msg });
        true
    }

    /// The bytes node `from` would broadcast for `msg` now (stamped with a site key).
    pub fn encode_from(&mut self, from: usize, msg: &super::Message) -> Vec<u8> {
        let now = self.wall_ms();
        let auth = match &self.site_key {
            Some(k) => Some((k, self.nodes[from].stamper.next(now))),
            None => None,
        };
        encode(msg, auth).expect("encodable")
    }

    /// Hand `event` to node `i` now.
    pub fn event(&mut self, i: usize, event: Event) {
        if !self.nodes[i].alive {
            return;
        }
        let actions = self.nodes[i].el.handle(self.now, event);
        self.dispatch(i, actions);
    }

    /// Node `i` wants the test content, holding `share` of it.
    pub fn want(&mut self, i: usize, share: u16) {
        self.event(
            i,
            Event::Want {
                key: key(),
                share_permille: share,
            },
        );
    }

    fn dispatch(&mut self, from: usize, actions: Vec<Action>) {
        let at = self.elapsed();
        for a in actions {
            self.nodes[from].log.push((at, a.clone()));
            let Action::Broadcast(msg) = a else {
                continue;
            };
            self.sent += 1;
            let bytes = self.encode_from(from, &msg);
            for to in 0..self.nodes.len() {
                let (n, f) = (&self.nodes[to], &self.nodes[from]);
                // Broadcasts come back to the sender too: it must ignore them.
                if !n.alive || n.group != f.group || self.rng.random_bool(self.drop) {
                    continue;
                }
                let delay = self.rng.random_range(self.delay_ms.0..=self.delay_ms.1);
                self.seq += 1;
                let when = self.now + Duration::from_millis(delay);
                self.queue
                    .push(Reverse((when, self.seq, to, bytes.clone())));
            }
        }
    }

    /// Run the network until `elapsed() == until`.
    pub fn run_until(&mut self, until: Duration) {
        let end = self.t0 + until;
        // Fail instead of eating memory if the machines ping-pong at one instant.
        let mut steps = 0u32;
        loop {
            steps += 1;
            assert!(steps < 10_000_000, "the simulation does not advance");
            let next_msg = self.queue.peek().map(|Reverse((t, ..))| *t);
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.alive)
                .filter_map(|n| match n.lag {
                    Some(_) => n.wake_at,
                    None => n.el.next_deadline(),
                })
                .min();
            let next = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            while let Some(Reverse((t, ..))) = self.queue.peek() {
                if *t > self.now {
                    break;
                }
                let Reverse((_, _, to, bytes)) = self.queue.pop().expect("peeked");
                assert!(self.queue.len() < 1_000_000, "message storm");
                if !self.nodes[to].alive {
                    continue;
                }
                if self.nodes[to].lag.is_some() {
                    self.nodes[to].inbox.push(bytes);
                    continue;
                }
                self.deliver(to, &bytes);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].lag.is_some() {
                    if self.nodes[i].alive {
                        self.wake(i);
                    }
                    continue;
                }
                let due = self.nodes[i].alive
                    && self.nodes[i]
                        .el
                        .next_deadline()
                        .is_some_and(|d| d <= self.now);
                if due {
                    self.event(i, Event::Tick);
                }
            }
        }
        self.now = self.now.max(end);
    }

    pub fn status(&self, i: usize) -> Option<ElectionStatus> {
        self.nodes[i]
            .el
            .status()
            .into_iter()
            .find(|s| s.key == key())
    }

    pub fn state(&self, i: usize) -> Option<ElectionState> {
        self.status(i).map(|s| s.state)
    }

    /// The live nodes that are master of the test content.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.state(i) == Some(ElectionState::Master))
            .collect()
    }

    /// Whether every other live node that wants the content follows `master`.
    pub fn all_follow(&self, master: usize) -> bool {
        (0..self.nodes.len())
            .filter(|&i| i != master && self.nodes[i].alive)
            .all(|i| {
                self.status(i).is_some_and(|s| {
                    s.state == ElectionState::Following && s.master_node == Some(node_id(master))
                })
            })
    }

    /// How many times node `i` logged an action matching `f`.
    pub fn count(&self, i: usize, f: impl Fn(&Action) -> bool) -> usize {
        self.nodes[i].log.iter().filter(|(_, a)| f(a)).count()
    }
}
