//! What a running job reports about itself, and the only way it does: a job task
//! holds an `Arc<Live>` and writes its state, source and byte counts there; the
//! manager reads them for `contentdist jobs` and writes pauses and cancels. Neither
//! reaches into the other's table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{JobId, JobState, Source};
use crate::cache::ContentEntry;
use crate::peer::{PeerBytes, PeerBytesByProtocol};

/// One job's live state.
#[derive(Debug)]
pub(super) struct Live {
    state: Mutex<Now>,
    /// Bytes this job received from the origin (all runs, also before a restart).
    pub from_origin: AtomicU64,
    /// Bytes this job received from peers, by protocol.
    pub from_peers: PeerBytes,
    /// Whom the job took the content from last: `self` (this agent was master) or
    /// the master's address; `None` before any election gave it a role.
    master: Mutex<Option<String>>,
    entry: Mutex<Option<Arc<ContentEntry>>>,
    /// Milliseconds the job ran in earlier runs (before a pause or restart).
    elapsed_before_ms: AtomicU64,
    /// When the current run started, while one runs.
    started: Mutex<Option<Instant>>,
    /// The deadline of the client-certificate wait, kept across runs.
    cert_deadline: Mutex<Option<u64>>,
    /// Woken at every change of `state` (callers waiting for the job to end).
    changed: tokio::sync::Notify,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Now {
    pub state: JobState,
    pub source: Source,
    /// The job that fetches the same content while this one waits for it.
    pub waiting_for: Option<JobId>,
}

impl Live {
    pub fn new(
        state: JobState,
        from_origin: u64,
        from_peers: PeerBytesByProtocol,
        elapsed_ms: u64,
    ) -> Live {
        Live {
            master: Mutex::new(None),
            cert_deadline: Mutex::new(None),
            state: Mutex::new(step(state, Source::None)),
            from_origin: AtomicU64::new(from_origin),
            from_peers: PeerBytes::from_snapshot(from_peers),
            entry: Mutex::new(None),
            elapsed_before_ms: AtomicU64::new(elapsed_ms),
            started: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Replace what the job does with `next` when `allowed` accepts the current
    /// state, in one step under the lock; true when it did.
    fn change_if(&self, allowed: impl FnOnce(JobState) -> bool, next: Now) -> bool {
        let mut now = self.state.lock().expect("job state lock");
        if !allowed(now.state) {
            return false;
        }
        let moved = now.state != next.state;
        *now = next;
        if moved {
            self.changed.notify_waiters();
        }
        true
    }

    /// Ends once the job's state is no longer `seen` (at once if it already is not).
    pub async fn left(&self, seen: JobState) {
        loop {
            // Registered before the state is read, so a change in between wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.now().state != seen {
                return;
            }
            changed.await;
        }
    }

    /// A run starts: unless the job was paused or cancelled meanwhile (then false),
    /// it is downloading and its clock runs.
    pub fn begin(&self) -> bool {
        if !self.change_if(running, step(JobState::Downloading, Source::None)) {
            return false;
        }
        *self.started.lock().expect("job clock lock") = Some(Instant::now());
        true
    }

    /// A run ended: stop the clock.
    pub fn end(&self) {
        if let Some(s) = self.started.lock().expect("job clock lock").take() {
            self.elapsed_before_ms
                .fetch_add(s.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Milliseconds the job has run, over all its runs.
    pub fn elapsed_ms(&self) -> u64 {
        let running = self
            .started
            .lock()
            .expect("job clock lock")
            .map_or(0, |s| s.elapsed().as_millis() as u64);
        self.elapsed_before_ms.load(Ordering::Relaxed) + running
    }

    /// What the job does now.
    pub fn now(&self) -> Now {
        *self.state.lock().expect("job state lock")
    }

    /// Report a step of the job. A pause or cancel that arrived meanwhile wins: the
    /// task is winding down and must not make the job look running again.
    pub fn report(&self, state: JobState, source: Source) {
        self.change_if(running, step(state, source));
    }

    /// The job waits for job `other`, which fetches the same content.
    pub fn report_waiting(&self, other: JobId) {
        let next = Now {
            waiting_for: Some(other),
            ..step(JobState::Queued, Source::None)
        };
        self.change_if(running, next);
    }

    /// Set the state whatever it was (the manager: pause, cancel, final states).
    pub fn force(&self, state: JobState) {
        self.change_if(|_| true, step(state, Source::None));
    }

    /// Change the state only if it is one of `from` (one atomic step for pause and
    /// resume).
    pub fn force_if(&self, from: &[JobState], state: JobState) -> bool {
        self.change_if(|s| from.contains(&s), step(state, Source::None))
    }

    /// The deadline of the client-certificate wait (Unix seconds), once one began.
    pub fn cert_deadline(&self) -> Option<u64> {
        *self.cert_deadline.lock().expect("cert deadline lock")
    }

    /// Start (`Some`) or end (`None`) the client-certificate wait's deadline.
    pub fn set_cert_deadline(&self, deadline: Option<u64>) {
        *self.cert_deadline.lock().expect("cert deadline lock") = deadline;
    }

    /// The cache entry the job fills, for its progress.
    pub fn attach(&self, entry: Option<Arc<ContentEntry>>) {
        *self.entry.lock().expect("job entry lock") = entry;
    }

    /// (total, verified) bytes of the entry, when the job has one.
    pub fn progress(&self) -> Option<(u64, u64)> {
        let e = self.entry.lock().expect("job entry lock");
        e.as_ref()
            .map(|e| (e.manifest().total_size(), e.verified_bytes()))
    }

    pub fn origin_bytes(&self) -> u64 {
        self.from_origin.load(Ordering::Relaxed)
    }

    pub fn peer_bytes(&self) -> PeerBytesByProtocol {
        self.from_peers.snapshot()
    }

    /// The election gave the job a role: `self` (master) or the master's address.
    pub fn set_master(&self, master: String) {
        *self.master.lock().expect("job master lock") = Some(master);
    }

    pub fn master(&self) -> Option<String> {
        self.master.lock().expect("job master lock").clone()
    }
}

/// Not paused or cancelled: the job's own task may still report.
fn running(state: JobState) -> bool {
    !matches!(state, JobState::Paused | JobState::Cancelled)
}

/// `state` from `source`, waiting for no other job.
fn step(state: JobState, source: Source) -> Now {
    Now {
        state,
        source,
        waiting_for: None,
    }
}
