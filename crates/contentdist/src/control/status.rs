//! The agent's status as `GET /v1/status` reports it: typed here, so the agent,
//! the control socket and the CLI agree on its fields.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The credentials peers use with this agent's P2P account (`GET
/// /v1/p2p-account`, root only): for checking a master by hand with `curl -u` or
/// `smbclient -U`. The key behind them is new at every start of the agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct P2pAccount {
    /// The account's name (`contentdist-p2p`).
    pub user: String,
    /// Its password, derived from the key this agent announces.
    pub password: String,
}

/// An agent's status.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentStatus {
    /// contentdist's version.
    pub version: String,
    /// `OriginUrl` (empty when none is configured).
    pub origin_url: String,
    /// The control socket's path.
    pub control_socket: PathBuf,
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// True for a preboot agent (never master, never serves).
    pub preboot: bool,
    /// What the agent listens on, in words (`http://…/content/`, `udp://…`).
    pub listeners: Vec<String>,
    /// Jobs known (finished ones included).
    pub jobs_total: usize,
    /// Jobs not finished.
    pub jobs_active: usize,
    /// Bytes received from the origin since the agent started.
    pub bytes_from_origin: u64,
    /// Bytes received from peers since the agent started.
    pub bytes_from_peers: u64,
    /// The elections this agent takes part in.
    pub elections: Vec<ElectionReport>,
    /// Election datagrams dropped because they did not decode or authenticate
    /// (absent without peer copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_datagrams_dropped: Option<u64>,
    /// Authenticated election messages dropped as replayed or stale (seen before,
    /// or more than 30 s off this host's clock); absent without peer copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_datagrams_replayed: Option<u64>,
    /// Election datagrams the kernel dropped because the socket's receive queue was
    /// full (`SO_RXQ_OVFL`); absent without peer copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_datagrams_overflowed: Option<u64>,
    /// Election datagrams read (refused ones and this agent's own included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_datagrams_received: Option<u64>,
    /// The election socket's receive buffer, as the kernel reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_recv_buffer: Option<usize>,
    /// The free cache space elections rank this agent by, as last measured
    /// (absent without peer copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_free_bytes: Option<u64>,
    /// The peer-copy server's counters (absent when it does not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_server: Option<crate::peer::PeerServerStats>,
    /// The certificate bound to the HTTPS peer-copy port, or why none is (absent
    /// when this agent does not serve HTTPS): the `netsh http show sslcert` check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_certificate: Option<crate::certstore::ServerCertState>,
    /// This agent's client certificate (presented to masters with
    /// `P2PSslSettings` 0x2, and to an HTTPS origin that asks), or why it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<crate::certstore::ClientCertState>,
    /// Jobs waiting for a client certificate (`P2PSslSettings` 0x2, 0x209A), a
    /// paused wait included, each with its deadline: while one waits, no other job
    /// runs, so an administrator looking at `status` sees why.
    #[serde(default)]
    pub certificate_waits: Vec<CertWaitReport>,
    /// Where the metrics are served (`http://ADDRESS/metrics`), or why not
    /// (`unavailable: ...`); absent when `MetricsAddress` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// The agent's firewall table (`ManageFirewall`): managed or not and why, the
    /// ports peers need, and other tables that drop them with the commands that
    /// open them there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<crate::firewall::FirewallStatus>,
    /// The agent's own SMB server (P2PEnabled 0x01): its state, address, share,
    /// signing, restarts and last failure; absent when it does not serve SMB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smb: Option<crate::smb::SmbStatus>,
}

/// A job waiting for a client certificate, as the status shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertWaitReport {
    /// The job's number (`contentdist jobs`).
    pub job: crate::job::JobId,
    /// `ID/VERSION`.
    pub content: String,
    /// The job's state: `waiting_for_certificate`; `paused` (a pause does not stop
    /// the wait); or, after a restart, `queued` until the job's turn at the
    /// certificate gate comes (its deadline runs meanwhile).
    pub state: String,
    /// When the job fails with 0x209A unless a certificate appears, in UTC.
    pub until: String,
    /// The same, Unix seconds (wall clock).
    pub until_unix: u64,
}

impl CertWaitReport {
    /// The report of `job`, when it waits for a certificate (a final job does not,
    /// whatever deadline it kept).
    pub fn of(job: &crate::job::JobInfo) -> Option<CertWaitReport> {
        let until_unix = job.cert_wait_until_unix.filter(|_| !job.state.is_final())?;
        Some(CertWaitReport {
            job: job.id,
            content: format!("{}/{}", job.request.content_id, job.request.version),
            state: job.state.to_string(),
            until: crate::certstore::utc(i64::try_from(until_unix).unwrap_or(i64::MAX)),
            until_unix,
        })
    }
}

/// Where this agent stands in one content's election.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ElectionRole {
    /// Collecting candidates or waiting for a master.
    Electing,
    /// This agent is master.
    Master,
    /// This agent copies from a master.
    Following,
    /// This agent holds the content and answers requests; no election runs.
    Idle,
}

impl From<crate::election::ElectionState> for ElectionRole {
    fn from(s: crate::election::ElectionState) -> Self {
        use crate::election::ElectionState as S;
        match s {
            S::Electing => ElectionRole::Electing,
            S::Master => ElectionRole::Master,
            S::Following => ElectionRole::Following,
            S::Idle => ElectionRole::Idle,
        }
    }
}

/// One election, as the status shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ElectionReport {
    /// `ID/VERSION`.
    pub content: String,
    /// This agent's part.
    pub state: ElectionRole,
    /// The master's address, when there is one.
    pub master: Option<String>,
    /// The master's term, else the highest seen.
    pub term: u64,
    /// This agent's share of the content, in percent.
    pub share_percent: f64,
}

impl From<&crate::election::ElectionStatus> for ElectionReport {
    fn from(e: &crate::election::ElectionStatus) -> Self {
        ElectionReport {
            content: e.key.to_string(),
            state: e.state.into(),
            master: e.master_addr.map(|a| a.to_string()),
            term: e.term,
            share_percent: f64::from(e.share_permille) / 10.0,
        }
    }
}

/// The addresses an agent really bound (ports chosen by the system when 0 was
/// asked for are filled in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentAddrs {
    /// The control socket.
    pub control_socket: PathBuf,
    /// The peer-copy server over HTTP, when it runs.
    pub peer_http: Option<SocketAddr>,
    /// The peer-copy server over HTTPS, when it runs.
    pub peer_https: Option<SocketAddr>,
    /// The agent's own smbd (`P2PSmbPort`), when it is started (it may be
    /// restarting: see the status's `smb`).
    pub peer_smb: Option<SocketAddr>,
    /// The election socket, when the agent takes part in elections.
    pub election: Option<SocketAddr>,
}
