//! A gate that jobs pass one at a time, in the order of their ids (the order they
//! were submitted), used by the missing-client-certificate wait.
//!
//! Why not a mutex: a mutex lets in whichever task asks first, and after a restart
//! every unfinished job is resumed at once, so a newer job could take the gate from
//! the one that was waiting before the restart. Here a job takes its place in line
//! when it is spawned (in id order, synchronously), and the gate opens for the
//! lowest id in line only.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::JobId;

#[derive(Default)]
pub(super) struct OrderedGate {
    state: Mutex<State>,
    changed: Notify,
}

/// A place in line: the job, and a serial of its own. A paused and resumed job
/// has two tickets for a moment (its old run is still ending when the new one
/// lines up): the old one leaving must not take the new one's place.
type Place = (JobId, u64);

#[derive(Default)]
struct State {
    in_line: BTreeSet<Place>,
    holder: Option<Place>,
    serial: u64,
}

impl OrderedGate {
    /// Take a place in line for `id`. Dropping the ticket leaves the line (and the
    /// gate, if it held it): a job that ends or is cancelled never blocks the others.
    pub(super) fn line_up(self: &Arc<Self>, id: JobId) -> Ticket {
        let mut s = self.lock();
        s.serial += 1;
        let place = (id, s.serial);
        s.in_line.insert(place);
        Ticket {
            gate: Arc::clone(self),
            place,
        }
    }

    /// The job holding the gate (tests).
    #[cfg(test)]
    pub(super) fn holder(&self) -> Option<JobId> {
        self.lock().holder.map(|(id, _)| id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("gate lock")
    }

    fn leave(&self, place: Place) {
        {
            let mut s = self.lock();
            s.in_line.remove(&place);
            if s.holder == Some(place) {
                s.holder = None;
            }
        }
        self.changed.notify_waiters();
    }
}

/// A job's place in line.
pub(super) struct Ticket {
    gate: Arc<OrderedGate>,
    place: Place,
}

impl Ticket {
    /// Wait until this job is first in line and the gate is free; it holds the gate
    /// until the returned guard (or the ticket) is dropped.
    pub(super) async fn pass(&self) -> Held<'_> {
        loop {
            let notified = self.gate.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a change between the look and the wait
            // is not missed.
            notified.as_mut().enable();
            {
                let mut s = self.gate.lock();
                if s.holder.is_none() && s.in_line.first() == Some(&self.place) {
                    s.in_line.remove(&self.place);
                    s.holder = Some(self.place);
                    return Held(self);
                }
            }
            notified.await;
        }
    }

    /// The job this one waits for: the one holding the gate, or, while nobody
    /// does yet, the first in line when that is another (after a restart every
    /// job is resumed at once: the one ahead may not have taken the gate yet).
    pub(super) fn waits_for(&self) -> Option<JobId> {
        let s = self.gate.lock();
        s.holder
            .or_else(|| s.in_line.first().copied().filter(|p| *p != self.place))
            .map(|(id, _)| id)
    }

    /// Whether the gate is free for this job now (without waiting).
    pub(super) fn is_next(&self) -> bool {
        let s = self.gate.lock();
        s.holder.is_none() && s.in_line.first() == Some(&self.place)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.leave(self.place);
    }
}

/// The gate, held.
pub(super) struct Held<'a>(&'a Ticket);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.gate.leave(self.0.place);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_gate_opens_in_id_order_whoever_asks_first() {
        let gate = Arc::new(OrderedGate::default());
        let first = gate.line_up(1);
        let second = gate.line_up(2);
        // The second asks first, and waits for the first.
        let second_passes = tokio::spawn(async move {
            let _held = second.pass().await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second_passes.is_finished());
        assert!(first.is_next());
        let held = first.pass().await;
        assert_eq!(gate.holder(), Some(1));
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), second_passes)
            .await
            .expect("the second passes once the first let go")
            .unwrap();
        assert_eq!(gate.holder(), None);
    }

    #[tokio::test]
    async fn a_job_in_line_says_whom_it_waits_for_before_and_after_the_first_passes() {
        let gate = Arc::new(OrderedGate::default());
        let first = gate.line_up(1);
        let second = gate.line_up(2);
        // Nobody holds the gate yet (a restart resumed both): the one ahead.
        assert_eq!(first.waits_for(), None);
        assert_eq!(second.waits_for(), Some(1));
        let held = first.pass().await;
        assert_eq!(second.waits_for(), Some(1));
        drop(held);
        drop(first);
        assert_eq!(second.waits_for(), None);
    }

    #[tokio::test]
    async fn a_resumed_job_keeps_its_place_when_its_old_run_leaves_after() {
        let gate = Arc::new(OrderedGate::default());
        let old = gate.line_up(1);
        let new = gate.line_up(1);
        drop(old);
        tokio::time::timeout(Duration::from_secs(5), new.pass())
            .await
            .expect("the new run still has its place");
    }

    #[tokio::test]
    async fn a_ticket_dropped_in_line_or_at_the_gate_lets_the_next_one_through() {
        let gate = Arc::new(OrderedGate::default());
        let first = gate.line_up(1);
        let second = gate.line_up(2);
        let third = gate.line_up(3);
        drop(second);
        let held = first.pass().await;
        std::mem::forget(held); // the job ends while holding it: its ticket goes
        drop(first);
        assert_eq!(gate.holder(), None);
        tokio::time::timeout(Duration::from_secs(5), third.pass())
            .await
            .expect("the third is not blocked by the ones that left");
    }
}
