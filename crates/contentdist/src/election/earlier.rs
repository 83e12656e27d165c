//! Election traffic heard for contents without an election here, for the election
//! a job may start for one of them (see `Earlier`): a table of at most
//! [`EARLIER_KEPT`] contents, in which entries older than the master timeout give
//! way to new contents.

use std::collections::HashMap;
use std::time::Duration;

use super::slot::Earlier;
use super::{wire, Instant};
use crate::manifest::ContentKey;

/// How many contents without a slot are remembered: a flood of messages for
/// made-up contents costs a bounded table.
pub(super) const EARLIER_KEPT: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct EarlierTable {
    map: HashMap<ContentKey, Earlier>,
    /// Full, and no entry can expire before this: a message for a new content is
    /// dropped without looking at the others. Without it, a flood of new contents
    /// made every message scan all 4,096 entries, to find none expired.
    full_until: Option<Instant>,
    /// Scans of the whole table (tests).
    scans: u64,
}

impl EarlierTable {
    /// Note `msg` (for a content without a slot): when, and the master it names,
    /// if any.
    pub(super) fn note(&mut self, msg: &wire::Message, now: Instant, master_timeout: Duration) {
        let master = match &msg.body {
            wire::Body::Master(a) if a.rank.can_be_master() => Some(msg.node_id),
            wire::Body::Heartbeat { rank, .. } if rank.can_be_master() => Some(msg.node_id),
            wire::Body::Request | wire::Body::Candidate { .. } | wire::Body::Done { .. } => None,
            _ => return,
        };
        if self.map.len() >= EARLIER_KEPT && !self.map.contains_key(&msg.key) {
            if self.full_until.is_some_and(|t| now < t) {
                return;
            }
            self.scans += 1;
            self.map.retain(|_, e| e.last + master_timeout > now);
            if self.map.len() >= EARLIER_KEPT {
                // The earliest any entry can expire (traffic since only moves an
                // entry's time later, so this is never too late).
                self.full_until = self.map.values().map(|e| e.last + master_timeout).min();
                return;
            }
            self.full_until = None;
        }
        let e = self.map.entry(msg.key.clone()).or_insert(Earlier {
            last: now,
            master: None,
        });
        e.last = now;
        if let Some(node) = master {
            e.master = Some((node, now));
        }
    }

    /// What was heard for `key`, forgotten here (its slot keeps it).
    pub(super) fn take(&mut self, key: &ContentKey) -> Option<Earlier> {
        self.map.remove(key)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub(super) fn scans(&self) -> u64 {
        self.scans
    }
}
