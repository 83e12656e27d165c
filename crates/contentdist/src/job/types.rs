//! The job vocabulary shared by the job manager, the control socket and the CLI.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::codes::Code;
use crate::peer::PeerBytesByProtocol;

/// A job's number, unique within one agent's state directory.
pub type JobId = u64;

/// What a caller asks its agent for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobRequest {
    /// Content id, as published (`PKG00001`).
    pub content_id: String,
    /// Content version, as published.
    pub version: u32,
    /// Directory to deliver the content into; absolute. `None`: keep it in the cache only.
    pub dest: Option<PathBuf>,
    /// The content hash the caller expects (hex); the manifest must match it.
    #[serde(default)]
    pub content_hash: Option<String>,
    /// Cache priority 1 (evicted first) to 9 (evicted last).
    #[serde(default = "default_priority")]
    pub priority: u8,
}

fn default_priority() -> u8 {
    5
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its turn.
    Queued,
    /// Fetching the manifest and the blocks (from the origin, or later from peers).
    Downloading,
    /// Waiting for a valid client certificate (`P2PSslSettings` 0x2): until one is
    /// in the store or the deadline (`P2PClientCertWaitPeriodMins`) passes.
    WaitingForCertificate,
    /// Linking the verified content into the destination.
    Delivering,
    /// Stopped by the caller; `resume` continues from the verified blocks.
    Paused,
    /// Finished: content delivered.
    Done,
    /// Finished with an error code.
    Failed,
    /// Cancelled by the caller.
    Cancelled,
}

impl JobState {
    /// The state's name as the control socket's JSON spells it (`downloading`,
    /// `waiting_for_certificate`): the one spelling of a state in every message.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Downloading => "downloading",
            JobState::WaitingForCertificate => "waiting_for_certificate",
            JobState::Delivering => "delivering",
            JobState::Paused => "paused",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// True once the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

impl std::fmt::Display for JobState {
    /// [`JobState::as_str`]: messages say `downloading`, never `Downloading`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the bytes of a job currently come from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Nothing is being transferred.
    None,
    /// The origin web server, over the WAN.
    Origin,
    /// A peer on the subnet.
    Peer,
    /// The local cache already held the content.
    Cache,
}

/// A job as the control socket reports it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobInfo {
    /// The job's number.
    pub id: JobId,
    /// What was asked for.
    pub request: JobRequest,
    /// Where it stands.
    pub state: JobState,
    /// The result code: 0 while running or when done, the failure's code otherwise.
    pub code: u32,
    /// The failure in words, when it failed.
    pub message: Option<String>,
    /// True when `code` is in the agent's SuccessCodes: the caller must not fall back
    /// to a direct download.
    pub code_in_success_codes: bool,
    /// Size of the whole content in bytes (0 until the manifest is known).
    pub bytes_total: u64,
    /// Bytes verified in the cache so far.
    pub bytes_verified: u64,
    /// Bytes this job fetched from the origin.
    pub bytes_from_origin: u64,
    /// Bytes this job copied from peers.
    pub bytes_from_peers: u64,
    /// The same, by protocol.
    #[serde(default)]
    pub bytes_from_peers_by_protocol: PeerBytesByProtocol,
    /// Whom the job took the content from last: `self` when this agent was master,
    /// else the master's address; absent when no election gave it a role (peer
    /// copy off, a cache hit, no master on the subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Where bytes come from right now.
    pub source: Source,
    /// While queued behind another job that fetches the same content, or that
    /// waits for a client certificate: that job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<JobId>,
    /// While the job waits for a client certificate (and across a pause or a
    /// restart, which do not stop the wait): when it fails with 0x209A, Unix
    /// seconds (wall clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_wait_until_unix: Option<u64>,
    /// Milliseconds since the job started running (frozen once final).
    pub elapsed_ms: u64,
    /// Once the job ended (done, failed or cancelled): its record, as the log
    /// has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_stats: Option<FinalStats>,
}

/// What a job did, recorded once when it ends: the product's `FinalStats` event.
/// Written to the log as one line with these fields, and kept in the job list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FinalStats {
    /// `done`, `failed` or `cancelled`.
    pub outcome: String,
    /// The catalogue code (`0x0` when done).
    pub code: String,
    /// The content's size (0 when the manifest never arrived).
    pub bytes_total: u64,
    /// Bytes received from the origin, over the WAN.
    pub bytes_from_origin: u64,
    /// Bytes received from peers, by protocol.
    pub bytes_from_peers: PeerBytesByProtocol,
    /// How long the job ran, over all its runs (pauses and restarts excluded).
    pub duration_ms: u64,
    /// `self` when this agent was master, else the master's address; absent when
    /// no election gave the job a role.
    pub master: Option<String>,
    /// When it ended, Unix seconds.
    pub ended_unix: u64,
}

impl JobInfo {
    /// The code as a catalogue value.
    pub fn code(&self) -> Code {
        Code(self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_displayed_as_its_json_spelling() {
        for state in [
            JobState::Queued,
            JobState::Downloading,
            JobState::WaitingForCertificate,
            JobState::Delivering,
            JobState::Paused,
            JobState::Done,
            JobState::Failed,
            JobState::Cancelled,
        ] {
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json.as_str(), Some(state.to_string().as_str()));
        }
    }
}
