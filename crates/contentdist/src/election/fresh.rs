//! Freshness of authenticated election messages, so that a captured message cannot
//! be replayed: the hostile test replayed one request 2,000 times and got 2,001
//! announcements, since a tag proves who wrote a message, not when.
//!
//! Every authenticated message carries a [`Stamp`] inside the tagged part: the
//! sender's wall-clock time and a counter that grows with every message it sends.
//! A receiver ([`ReplayGuard`]) accepts a message only if
//!
//! - its time is within [`MAX_CLOCK_SKEW`] (±30 s) of the receiver's clock: hosts of
//!   a site need clocks that agree to within 30 s (NTP gives far better); and
//! - its counter was not seen before from that node: higher than any seen, or one of
//!   the [`REORDER_WINDOW`] below the highest that has not arrived yet (datagrams
//!   can be reordered; the sliding window of IPsec and DTLS).
//!
//! The guard remembers at most [`MAX_SENDERS`] nodes. A node is forgotten once the
//! newest time it sent is older than the skew allows: every message it ever sent is
//! refused by its time from then on. If more nodes than that are live at once, the
//! one heard least recently is forgotten early and its newest time becomes a floor:
//! a node the guard does not know must send a newer time, so none of the forgotten
//! node's messages can come back.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::Stale;

/// How far a message's time may be from the receiver's clock, either way.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// How far below the highest counter seen from a node a late message is still
/// accepted (once).
pub const REORDER_WINDOW: u64 = 64;
/// How many senders the guard remembers at most.
pub const MAX_SENDERS: usize = 4096;

/// The freshness part of an authenticated message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    /// The sender's wall-clock time, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Grows by one with every message the sender sends.
    pub counter: u64,
}

/// The wall clock in milliseconds since the Unix epoch (0 before 1970).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// The sender's side: stamps every authenticated message it sends.
#[derive(Debug)]
pub struct Stamper {
    counter: u64,
}

impl Stamper {
    /// Counting up from `start`. The driver starts at the wall clock in
    /// microseconds, so that an agent restarted with the same node id still counts
    /// above what it sent before (at up to a million messages a second).
    pub fn new(start: u64) -> Stamper {
        Stamper { counter: start }
    }

    /// The stamp of the next message, sent at `now_ms`.
    pub fn next(&mut self, now_ms: u64) -> Stamp {
        self.counter = self.counter.wrapping_add(1);
        Stamp {
            time_ms: now_ms,
            counter: self.counter,
        }
    }
}

/// What the guard knows of one sender.
#[derive(Clone, Copy, Debug)]
struct Seen {
    /// The highest counter accepted.
    highest: u64,
    /// Bit `i` set: counter `highest - i` was accepted.
    window: u64,
    /// The newest time accepted.
    newest_ms: u64,
}

/// The receiver's side: refuses a message seen before or out of time.
#[derive(Debug)]
pub struct ReplayGuard {
    senders: HashMap<u64, Seen>,
    /// A sender the guard does not know must send a time above this (see the module).
    floor_ms: u64,
    capacity: usize,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::with_capacity(MAX_SENDERS)
    }
}

impl ReplayGuard {
    /// A guard remembering at most `capacity` senders (at least 1).
    pub fn with_capacity(capacity: usize) -> ReplayGuard {
        ReplayGuard {
            senders: HashMap::new(),
            floor_ms: 0,
            capacity: capacity.max(1),
        }
    }

    /// How many senders are remembered.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Whether no sender is remembered.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Accept (and remember) the message of `node` stamped `stamp`, received at
    /// `now_ms`, or say why it is stale. Call only for messages whose tag verified.
    pub fn check(&mut self, node: u64, stamp: Stamp, now_ms: u64) -> Result<(), Stale> {
        let skew = MAX_CLOCK_SKEW.as_millis() as u64;
        let offset = stamp.time_ms.abs_diff(now_ms);
        if offset > skew {
            return Err(Stale::OutOfWindow {
                node,
                offset_ms: offset,
            });
        }
        if let Some(seen) = self.senders.get_mut(&node) {
            return seen.accept(node, stamp);
        }
        if stamp.time_ms <= self.floor_ms {
            return Err(Stale::Forgotten { node });
        }
        if self.senders.len() >= self.capacity {
            self.make_room(now_ms, skew);
        }
        self.senders.insert(
            node,
            Seen {
                highest: stamp.counter,
                window: 1,
                newest_ms: stamp.time_ms,
            },
        );
        Ok(())
    }

    /// Forget every sender whose messages are all out of time; if none is, the one
    /// heard least recently, raising the floor to its newest time.
    fn make_room(&mut self, now_ms: u64, skew: u64) {
        self.senders
            .retain(|_, s| s.newest_ms.saturating_add(skew) >= now_ms);
        if self.senders.len() < self.capacity {
            return;
        }
        let oldest = self
            .senders
            .iter()
            .min_by_key(|(_, s)| s.newest_ms)
            .map(|(n, s)| (*n, s.newest_ms));
        if let Some((node, newest)) = oldest {
            self.senders.remove(&node);
            self.floor_ms = self.floor_ms.max(newest);
        }
    }
}

impl Seen {
    fn accept(&mut self, node: u64, stamp: Stamp) -> Result<(), Stale> {
        let c = stamp.counter;
        if c > self.highest {
            let shift = c - self.highest;
            self.window = if shift >= 64 { 0 } else { self.window << shift } | 1;
            self.highest = c;
        } else {
            let behind = self.highest - c;
            if behind >= REORDER_WINDOW {
                return Err(Stale::TooOld {
                    node,
                    counter: c,
                    highest: self.highest,
                });
            }
            if self.window & (1 << behind) != 0 {
                return Err(Stale::Replayed { node, counter: c });
            }
            self.window |= 1 << behind;
        }
        self.newest_ms = self.newest_ms.max(stamp.time_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn stamp(counter: u64) -> Stamp {
        Stamp {
            time_ms: NOW,
            counter,
        }
    }

    #[test]
    fn a_message_is_accepted_once() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.check(1, stamp(10), NOW), Ok(()));
        assert_eq!(
            g.check(1, stamp(10), NOW),
            Err(Stale::Replayed {
                node: 1,
                counter: 10
            })
        );
        // Another node's counters are its own.
        assert_eq!(g.check(2, stamp(10), NOW), Ok(()));
    }

    #[test]
    fn reordered_messages_are_accepted_inside_the_window_only() {
        let mut g = ReplayGuard::default();
        for c in [100, 103, 101, 102] {
            assert_eq!(g.check(1, stamp(c), NOW), Ok(()), "counter {c}");
        }
        assert!(matches!(
            g.check(1, stamp(101), NOW),
            Err(Stale::Replayed { .. })
        ));
        assert_eq!(g.check(1, stamp(103 + 200), NOW), Ok(()));
        assert_eq!(g.check(1, stamp(303 - 63), NOW), Ok(()));
        assert_eq!(
            g.check(1, stamp(303 - 64), NOW),
            Err(Stale::TooOld {
                node: 1,
                counter: 239,
                highest: 303
            })
        );
    }

    #[test]
    fn times_beyond_thirty_seconds_either_way_are_refused() {
        let mut g = ReplayGuard::default();
        let at = |time_ms, counter| Stamp { time_ms, counter };
        assert_eq!(g.check(1, at(NOW - 30_000, 1), NOW), Ok(()));
        assert_eq!(g.check(1, at(NOW + 30_000, 2), NOW), Ok(()));
        assert_eq!(
            g.check(1, at(NOW - 30_001, 3), NOW),
            Err(Stale::OutOfWindow {
                node: 1,
                offset_ms: 30_001
            })
        );
        assert!(matches!(
            g.check(2, at(NOW + 31_000, 1), NOW),
            Err(Stale::OutOfWindow { .. })
        ));
    }

    #[test]
    fn the_guard_stays_bounded_and_a_forgotten_sender_cannot_be_replayed() {
        let mut g = ReplayGuard::with_capacity(8);
        // 8 senders, one per second; then a 9th while all are still in time.
        for n in 0..8u64 {
            let s = Stamp {
                time_ms: NOW + n * 1_000,
                counter: 1,
            };
            assert_eq!(g.check(n, s, NOW + n * 1_000), Ok(()));
        }
        let ninth = Stamp {
            time_ms: NOW + 8_000,
            counter: 1,
        };
        assert_eq!(g.check(8, ninth, NOW + 8_000), Ok(()));
        assert_eq!(g.len(), 8);
        // Node 0 was forgotten: its message comes back, and is refused by the floor.
        let replay = Stamp {
            time_ms: NOW,
            counter: 1,
        };
        assert_eq!(
            g.check(0, replay, NOW + 9_000),
            Err(Stale::Forgotten { node: 0 })
        );
        // Much later, everyone is out of time and makes room at once.
        let later = NOW + 120_000;
        let fresh = Stamp {
            time_ms: later,
            counter: 2,
        };
        assert_eq!(g.check(100, fresh, later), Ok(()));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn the_stamper_counts_up_from_its_start() {
        let mut s = Stamper::new(41);
        assert_eq!(
            s.next(5),
            Stamp {
                time_ms: 5,
                counter: 42
            }
        );
        assert_eq!(s.next(5).counter, 43);
        // After 2020; before the epoch counts as 0 rather than failing.
        assert!(unix_ms(SystemTime::now()) > 1_600_000_000_000);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
