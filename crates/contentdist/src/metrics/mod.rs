//! Prometheus metrics: what an agent has done, for fleets watched with Prometheus
//! and Grafana (issue 11).
//!
//! One [`Metrics`] per agent, with its own `prometheus-client` registry: no global
//! recorder, so the agents of `contentdist lab` and of the tests, many in one
//! process, keep separate numbers. The numbers are not kept twice: at every scrape
//! the registry's collector asks the agent for a [`Sample`] of the counters it keeps
//! anyway (the job manager's, the peer client's and server's, the election's), which
//! are updated as blocks arrive, not at the end of a job. The hot path pays nothing
//! for metrics.
//!
//! Labels stay bounded: no content id and no host on any counter (at fleet scale
//! those explode); the site (`Site`) is a label of `contentdist_agent_info` only,
//! to be joined on in queries.
//!
//! The same listener serves a status page for people (`/`, [`page`]) and its data
//! as JSON (`/status.json`), filled the same way: at each request, by the agent.

pub mod page;
mod render;
mod server;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use page::{StatusPage, StatusPageFn};
pub use render::{render, render_classic};
pub use server::MetricsServer;

/// The agent's counters at one moment, as plain numbers: what a scrape shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// `Site`, the agent's version, whether it runs in preboot.
    pub site: String,
    pub version: String,
    /// When the agent started (Unix seconds).
    pub start_time_unix: f64,
    /// Body bytes received from the origin (verified or not: they crossed the
    /// WAN), and the origin's protocol (`http` or `https`).
    pub origin_bytes: u64,
    pub origin_protocol: &'static str,
    /// Body bytes received from peers, by protocol.
    pub peer_bytes_http: u64,
    pub peer_bytes_https: u64,
    pub peer_bytes_smb: u64,
    /// Body bytes this agent's peer-copy server sent, by protocol (SMB: what the
    /// data the agent's smbd sent in answers to READs).
    pub served_bytes_http: u64,
    pub served_bytes_https: u64,
    pub served_bytes_smb: u64,
    /// Blocks that failed verification, by source.
    pub blocks_rejected_origin: u64,
    pub blocks_rejected_peer: u64,
    /// Jobs in the job list by state (`queued`, `downloading`, ...).
    pub jobs_by_state: Vec<(String, u64)>,
    /// Jobs ended since the agent started, by outcome (`done`, `failed`,
    /// `cancelled`) and code (`0x0`, `0x205D`, ...).
    pub job_ends: Vec<(&'static str, String, u64)>,
    /// Elections this agent takes part in now, by its role in each.
    pub elections_by_role: Vec<(&'static str, u64)>,
    /// Times this agent became master (of any content): elections won.
    pub masterships: u64,
    /// Elections lost: times this agent was told to follow another master.
    pub elections_lost: u64,
    /// Times the master of a content this agent takes part in changed.
    pub master_changes: u64,
    /// Head starts resolved: `(kept, ended)` (kept: went on as master; ended: no
    /// mastership came of it). Both only grow.
    pub head_starts: (u64, u64),
    /// Election datagrams refused or lost, by reason.
    pub datagrams_dropped: Vec<(&'static str, u64)>,
    /// Peer-copy requests and connections refused, by reason.
    pub refusals: Vec<(&'static str, u64)>,
    /// Responses sending content now.
    pub serving_now: u64,
    /// The WAN throttle in bytes per second (`WanRateKbps` × `MaxWorkRate`, in
    /// bytes: Prometheus' base unit); 0 = not throttled.
    pub wan_throttle_bytes_per_second: u64,
    /// Seconds the WAN throttle held origin downloads back ("WAN protected").
    pub wan_throttled_seconds: f64,
    /// The cache: bytes verified in it, bytes free on its file system, entries.
    pub cache_bytes_verified: u64,
    pub cache_bytes_free: u64,
    pub cache_entries: u64,
    /// Seconds until the selected certificates expire (`server`, `client`);
    /// negative once expired; absent when none is selected.
    pub cert_expiry_seconds: Vec<(&'static str, f64)>,
}

/// Where a scrape gets its [`Sample`].
pub type SampleFn = Arc<dyn Fn() -> Sample + Send + Sync>;

/// One agent's metrics.
#[derive(Clone)]
pub struct Metrics {
    sample: SampleFn,
    page: Option<StatusPageFn>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics whose every scrape takes a fresh sample from `sample`.
    pub fn new(sample: SampleFn) -> Metrics {
        Metrics { sample, page: None }
    }

    /// The same, also serving a status page whose every request takes its data
    /// from `page`.
    pub fn with_status_page(self, page: StatusPageFn) -> Metrics {
        Metrics {
            page: Some(page),
            ..self
        }
    }

    /// The status page's data now (`None` when there is no page).
    pub fn status_page(&self) -> Option<StatusPage> {
        self.page.as_ref().map(|p| p())
    }

    /// The metrics now, in the OpenMetrics text format (what Prometheus asks for).
    pub fn encode(&self) -> String {
        render(&(self.sample)())
    }

    /// The metrics now, in the classic Prometheus text format (version 0.0.4).
    pub fn encode_classic(&self) -> String {
        render_classic(&(self.sample)())
    }
}
