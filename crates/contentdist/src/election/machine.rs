//! `Elections`: every election of one agent, as a pure state machine.
//!
//! Events go in ([`Elections::handle`]), actions come out; time is passed in by the
//! caller. Nothing here reads a clock, opens a socket or spawns a task. See
//! `STATE.md` beside this file for the states and their invariants.

use std::collections::BTreeMap;
use std::time::Duration;

use super::earlier::EarlierTable;
use super::slot::Slot;
use super::types::{Action, Ctx, ElectionStatus, Event, LocalInfo, Timing};
use super::{wire, Instant};
use crate::manifest::ContentKey;

/// All elections of one agent, keyed by content id and version.
#[derive(Debug)]
pub struct Elections {
    local: LocalInfo,
    timing: Timing,
    slots: BTreeMap<ContentKey, Slot>,
    /// Election traffic heard for contents without a slot here, for the election a
    /// job may start for one of them (`Earlier`); bounded.
    earlier: EarlierTable,
    /// The latest `now` seen: time never goes backwards inside.
    clock: Option<Instant>,
}

impl Elections {
    /// An agent taking part in no election yet. Durations below 1 ms are taken as
    /// 1 ms, so that no timer can fire again at the instant it fired. Names that
    /// the wire refuses are dropped, and all but the first four valid ones: a
    /// master whose announcement cannot be encoded would never be heard. So is a
    /// host name the wire refuses.
    pub fn new(mut local: LocalInfo, mut timing: Timing) -> Self {
        local.weight = local.weight.min(super::rank::MAX_WEIGHT);
        local.names.retain(|n| wire::is_valid_master_name(n));
        local.names.truncate(wire::MAX_NAMES);
        local.host = local.host.filter(|h| wire::is_valid_host_name(h));
        for d in [
            &mut timing.election_window,
            &mut timing.heartbeat_interval,
            &mut timing.master_timeout,
            &mut timing.reelect_interval,
            &mut timing.request_retry,
        ] {
            *d = (*d).max(Duration::from_millis(1));
        }
        if let Some(q) = &mut timing.head_start_quiet {
            *q = (*q).max(Duration::from_millis(1));
        }
        Elections {
            local,
            timing,
            slots: BTreeMap::new(),
            earlier: EarlierTable::default(),
            clock: None,
        }
    }

    /// What this agent says about itself.
    pub fn local(&self) -> &LocalInfo {
        &self.local
    }

    /// Update the free cache space carried in later candidates and heartbeats.
    pub fn set_free_bytes(&mut self, free_bytes: u64) {
        self.local.free_bytes = free_bytes;
    }

    /// Apply `event` at `now` and return what to do, in order. For every event but
    /// `Received`, timers due at `now` fire first, so `Tick` is only needed when
    /// nothing else happens. A `Received` message fires no timer: it waited in the
    /// socket's queue, so it arrived before `now`, and a timer due meanwhile (the
    /// end of an election window, a master's silence) must count it. The driver
    /// reads every queued datagram, then sends `Tick`. `now` must not go backwards
    /// (an earlier `now` is treated as "no time passed").
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let now = self.clock.map_or(now, |c| c.max(now));
        self.clock = Some(now);
        let mut out = Vec::new();
        let mut cx = Ctx {
            local: &self.local,
            timing: &self.timing,
            now,
            out: &mut out,
        };
        if !matches!(event, Event::Received { .. }) {
            for slot in self.slots.values_mut() {
                slot.poll(&mut cx);
            }
        }
        // Timers due fired with what we said so far; what follows says the new
        // fingerprint.
        let cert_changed = match event {
            Event::CertChanged { fingerprint } if fingerprint != self.local.cert_fingerprint => {
                self.local.cert_fingerprint = fingerprint;
                true
            }
            _ => false,
        };
        let mut cx = Ctx {
            local: &self.local,
            timing: &self.timing,
            now,
            out: &mut out,
        };
        match event {
            Event::Want {
                key,
                share_permille,
            } => {
                let earlier = self.earlier.take(&key);
                self.slots
                    .entry(key.clone())
                    .or_insert_with(|| Slot::new(key, share_permille).after(earlier, &cx))
                    .on_want(&mut cx, share_permille);
            }
            Event::Progress {
                key,
                share_permille,
            } => {
                if let Some(slot) = self.slots.get_mut(&key) {
                    slot.on_progress(share_permille);
                }
            }
            Event::Complete { key } => {
                self.slots
                    .entry(key.clone())
                    .or_insert_with(|| Slot::holder(key))
                    .on_complete(&mut cx);
            }
            Event::Forget { key } => {
                if let Some(mut slot) = self.slots.remove(&key) {
                    slot.on_forget(&mut cx);
                }
            }
            Event::Received { msg } => {
                // Our own broadcasts come back to us on a shared port.
                if msg.node_id != self.local.node_id {
                    match self.slots.get_mut(&msg.key) {
                        Some(slot) => slot.on_message(&mut cx, &msg),
                        None => self.earlier.note(&msg, now, self.timing.master_timeout),
                    }
                }
            }
            Event::CertChanged { .. } => {
                if cert_changed {
                    for slot in self.slots.values_mut() {
                        slot.on_cert_changed(&mut cx);
                    }
                }
            }
            Event::Tick => {}
        }
        out
    }

    /// When [`Elections::handle`] must next be called (with `Event::Tick` if nothing
    /// else happened), or `None` if no timer runs.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|s| s.deadline(&self.timing))
            .min()
    }

    /// How many contents without a slot have traffic remembered (tests).
    #[cfg(test)]
    pub(super) fn earlier_len(&self) -> usize {
        self.earlier.len()
    }

    /// How often that table was scanned whole (tests).
    #[cfg(test)]
    pub(super) fn earlier_scans(&self) -> u64 {
        self.earlier.scans()
    }

    /// Every election this agent takes part in, by content.
    pub fn status(&self) -> Vec<ElectionStatus> {
        self.slots.values().map(|s| s.status(&self.local)).collect()
    }
}
