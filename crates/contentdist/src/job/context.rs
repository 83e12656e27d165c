//! What every running job of an agent shares: the cache, the origin, the subnet,
//! the agent-wide counters and the task set. A job is handed this context and its
//! own [`super::live::Live`]; it never sees the manager's table of jobs.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::JobId;
use crate::cache::{Cache, CleanPolicy};
use crate::config::Protocols;
use crate::manifest::ContentKey;
use crate::origin::{OriginClient, OriginError};
use crate::peer::PeerClient;
use crate::subnet::SubnetHandle;
use crate::tasks::Tasks;

/// How a job reaches its peers, when it has any.
#[derive(Clone)]
pub struct PeerSetup {
    /// The election driver (which also holds the master policy: fallback, linger).
    pub subnet: SubnetHandle,
    /// The peer-copy client.
    pub client: Arc<PeerClient>,
    /// The protocols this agent accepts (`P2PEnabled`).
    pub protocols: Protocols,
    /// Paces this agent's serving by its origin downloads (`ServePaceFactor`);
    /// `None`: not paced (0, or the agent serves nobody).
    pub pacer: Option<Arc<crate::peer::pace::ServePacer>>,
}

/// Bytes by source, for the whole agent.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes received from the origin.
    pub from_origin: AtomicU64,
    /// Blocks from the origin that failed verification.
    pub origin_blocks_rejected: AtomicU64,
}

/// One transfer per content at a time: a second job for the same content waits on
/// this lock and then finds the blocks verified. `holder` names the job holding it,
/// so the waiting one can say whom it waits for.
#[derive(Default)]
pub(super) struct ContentLock {
    pub lock: tokio::sync::Mutex<()>,
    pub holder: Mutex<Option<JobId>>,
}

/// The shared context of an agent's jobs.
pub(super) struct JobContext {
    pub cache: Arc<Cache>,
    /// The origin client, or why there is none (jobs that need it fail with its code).
    pub origin: Result<OriginClient, Arc<OriginError>>,
    /// `None`: every job downloads from the origin itself.
    pub peers: Option<PeerSetup>,
    pub counters: Counters,
    /// Clean-up limits; a reload of the settings changes them.
    pub clean_policy: std::sync::Mutex<CleanPolicy>,
    /// Jobs that transfer at once.
    pub permits: tokio::sync::Semaphore,
    pub content_locks: Mutex<HashMap<ContentKey, Arc<ContentLock>>>,
    /// Where blocking steps (re-verification, delivery) and helpers run, accounted.
    pub tasks: Tasks,
    /// The client-certificate wait, when this agent authenticates to masters with
    /// a client certificate.
    pub cert_wait: Option<Arc<super::certwait::CertWait>>,
    /// Tests: the step that panics, to show a panic fails the job with a code.
    #[cfg(test)]
    pub panic_at: Mutex<Option<&'static str>>,
}

impl JobContext {
    /// Whether `step` must panic (only ever true in this crate's tests).
    pub fn injected_panic(&self, step: &str) -> bool {
        #[cfg(test)]
        {
            *self.panic_at.lock().expect("panic_at lock") == Some(step)
        }
        #[cfg(not(test))]
        {
            let _ = step;
            false
        }
    }

    pub fn content_lock(&self, key: &ContentKey) -> Arc<ContentLock> {
        let mut locks = self.content_locks.lock().expect("locks lock");
        Arc::clone(locks.entry(key.clone()).or_default())
    }
}
