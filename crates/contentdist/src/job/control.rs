//! The operations the control socket exposes, as a trait so the socket server can be
//! tested against a fake and the agent's job manager implements it for real.

use serde::{Deserialize, Serialize};

use futures_util::future::{BoxFuture, FutureExt};

use super::{JobId, JobInfo, JobRequest, JobState};
use crate::cache::{CacheEntryInfo, CleanReport};
use crate::codes::Code;

/// A refused control request: a catalogue code and a message naming the problem.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code:#X})")]
pub struct ControlError {
    /// Catalogue code (e.g. `Code::BAD_REQUEST`).
    pub code: u32,
    /// What was wrong, in words.
    pub message: String,
}

impl ControlError {
    /// A refusal with this code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ControlError {
            code: code.0,
            message: message.into(),
        }
    }
}

/// The agent's operations, as the control socket offers them.
pub trait JobControl: Send + Sync {
    /// Queue a job; returns it as first reported.
    fn submit(&self, req: JobRequest) -> Result<JobInfo, ControlError>;
    /// Every job this agent knows, oldest first.
    fn list(&self) -> Vec<JobInfo>;
    /// One job.
    fn get(&self, id: JobId) -> Result<JobInfo, ControlError>;
    /// Ends once job `id`'s state is no longer `seen`. The default ends at once
    /// (the caller then asks again after its own pause).
    fn left(&self, id: JobId, seen: JobState) -> BoxFuture<'static, ()> {
        let _ = (id, seen);
        std::future::ready(()).boxed()
    }
    /// Pause a running or queued job.
    fn pause(&self, id: JobId) -> Result<JobInfo, ControlError>;
    /// Resume a paused job.
    fn resume(&self, id: JobId) -> Result<JobInfo, ControlError>;
    /// Cancel a job that has not finished.
    fn cancel(&self, id: JobId) -> Result<JobInfo, ControlError>;
    /// The agent's status (listeners, counters, elections).
    fn status(&self) -> crate::control::AgentStatus;
    /// The cache's entries.
    fn cache_list(&self) -> Vec<CacheEntryInfo>;
    /// Run the cache clean-up now.
    fn cache_clean(&self) -> Result<CleanReport, ControlError>;
    /// The P2P account peers use with this agent, when it has one (it serves, and
    /// peers are not authenticated by certificate).
    fn p2p_account(&self) -> Option<crate::control::P2pAccount> {
        None
    }
}
