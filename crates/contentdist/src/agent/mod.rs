//! The agent: `Agent::start(config)` opens the cache, restarts interrupted jobs,
//! serves the control socket and runs the periodic cache clean-up. Everything hangs
//! off one cancellation token, so many agents can live in one process (tests, the
//! lab) and `shutdown()` stops exactly one of them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, CacheEntryInfo, CacheError, CleanPolicy, CleanReport};
use crate::codes::Code;
use crate::config::Config;
use crate::control::{
    AgentAddrs, AgentStatus, CertWaitReport, ControlServer, ControlSocketError, ElectionReport,
};
use crate::election::ElectionStatus;
use crate::job::{
    CertWait, ControlError, JobControl, JobId, JobInfo, JobManager, JobManagerOptions, JobRequest,
    JobState,
};
use crate::origin::{OriginClient, OriginOptions};
use crate::peer::PeerServer;
use crate::subnet::SubnetHandle;
use crate::tasks::Tasks;

/// How long `join` waits for the agent's tasks, then for background flushes.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The cache directory is unusable.
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
    /// The control socket could not be bound.
    #[error("control socket: {0}")]
    Control(#[from] ControlSocketError),
    /// The peer-copy server or client could not start.
    #[error("peer copy: {0}")]
    Peer(crate::peer::PeerError),
    /// The election socket could not be set up.
    #[error("elections: {0}")]
    Subnet(crate::subnet::SubnetError),
}

impl AgentError {
    /// The catalogue code.
    pub fn code(&self) -> Code {
        match self {
            AgentError::Cache(e) => e.code(),
            AgentError::Control(e) => e.code(),
            AgentError::Peer(e) => e.code(),
            AgentError::Subnet(e) => e.code(),
        }
    }
}

/// The origin options the settings ask for.
pub fn origin_options(config: &Config) -> OriginOptions {
    OriginOptions {
        url: config.origin_url.clone().unwrap_or_default(),
        ca_file: config.origin_ca_file.clone(),
        retries: config.origin_retries,
        stall_timeout: Duration::from_secs(u64::from(config.origin_stall_timeout_secs)),
        connect_timeout: Duration::from_secs(u64::from(config.origin_connect_timeout_secs)),
        rate_limit: config.origin_rate_limit_bytes_per_sec(),
        ..OriginOptions::default()
    }
}

/// The clean-up limits the settings ask for.
pub fn clean_policy(config: &Config) -> CleanPolicy {
    CleanPolicy {
        max_days: config.max_cache_days,
        max_size_bytes: config.max_cache_size_mb.saturating_mul(1024 * 1024),
        percent_available_disk: config.percent_available_disk,
    }
}

/// A starting point for agents.
pub struct Agent;

impl Agent {
    /// Start an agent with `config`. Must be called inside a tokio runtime.
    pub async fn start(config: Config) -> Result<AgentHandle, AgentError> {
        let tasks = Tasks::new(CancellationToken::new());
        let cache = Arc::new(Cache::open(&config.cache_dir)?);
        let certs = AgentCerts::new(&config);
        let origin = OriginClient::new(OriginOptions {
            client_cert: Some(Arc::clone(&certs.client) as _),
            ..origin_options(&config)
        })
        .map_err(Arc::new);
        if let Err(e) = &origin {
            tracing::warn!(code = %e.code(), "origin unavailable: {e}; jobs that need it will fail");
        }
        let SubnetParts {
            peers,
            servers,
            server_certs,
            listeners,
            smb,
            p2p_account,
        } = start_subnet(&config, &cache, &tasks, &certs)?;
        // With certificate authentication, a job without a client certificate
        // waits for one (or fails at once in preboot).
        let cert_wait = (peers.is_some()
            && config.p2p_enabled.has_https()
            && config.p2p_ssl_settings.client_cert_auth())
        .then(|| {
            Arc::new(CertWait::new(
                Arc::clone(&certs.client),
                Arc::clone(&certs.store),
                config.preboot,
                config.client_cert_wait_period(),
                config.client_cert_retry(),
            ))
        });
        spawn_refresh(
            &tasks,
            Refresh {
                store: Arc::clone(&certs.store),
                server: server_certs.clone(),
                client: Arc::clone(&certs.client),
                subnet: peers.as_ref().map(|p| p.subnet.clone()),
                period: config.cert_store_refresh(),
            },
        );
        let jobs = JobManager::start(JobManagerOptions {
            cache: Arc::clone(&cache),
            origin,
            success_codes: config.success_codes.clone(),
            clean_policy: clean_policy(&config),
            state_file: config.cache_dir.join("jobs.json"),
            max_concurrent: 4,
            tasks: tasks.clone(),
            peers: peers.clone(),
            cert_wait,
        });
        let peer_client = peers.as_ref().map(|p| Arc::clone(&p.client));
        let subnet = peers.map(|p| p.subnet);
        let addrs = AgentAddrs {
            control_socket: config.control_socket.clone(),
            peer_http: config
                .p2p_enabled
                .has_http()
                .then(|| servers.first().map(PeerServer::local_addr))
                .flatten(),
            peer_https: (config.p2p_enabled.has_https() && server_certs.is_some())
                .then(|| servers.last().map(PeerServer::local_addr))
                .flatten(),
            peer_smb: smb.as_ref().and_then(|s| {
                (s.status().state != crate::smb::SmbState::NotInstalled)
                    .then(|| std::net::SocketAddr::new(config.listen_address, config.p2p_smb_port))
            }),
            election: subnet.as_ref().map(SubnetHandle::local_addr),
        };
        let firewall = crate::firewall::start(
            crate::firewall::FirewallOptions::for_agent(&config, &addrs),
            &tasks,
        )
        .await;
        let view = Arc::new(AgentView {
            peer_counters: servers.first().map(PeerServer::counters),
            peer_client,
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            metrics: std::sync::OnceLock::new(),
            server_certs,
            client_certs: Arc::clone(&certs.client),
            jobs: jobs.clone(),
            config: std::sync::Mutex::new(Arc::new(config.clone())),
            subnet: subnet.clone(),
            listeners,
            firewall,
            smb,
            p2p_account,
        });
        // The metrics listener reads the view; the view says where it listens.
        let metrics = metrics::start_metrics(&config, &view, &tasks).await;
        let _ = view.metrics.set(match &metrics {
            Ok(Some(s)) => format!("http://{}/metrics", s.local_addr()),
            Ok(None) => String::new(),
            Err(e) => format!("unavailable: {e}"),
        });
        let metrics_server = metrics.ok().flatten();
        let server = ControlServer::start(
            &config.control_socket,
            Arc::clone(&view) as Arc<dyn JobControl>,
            tasks.token().child_token(),
        )?;
        let (j, damaged) = (jobs.clone(), cache.damaged());
        tasks.spawn("cache repair", move |stop| repair_damaged(j, damaged, stop));
        if config.cache_clean_cycle_hrs > 0 {
            let period = Duration::from_secs(u64::from(config.cache_clean_cycle_hrs) * 3600);
            let (j, t) = (jobs.clone(), tasks.clone());
            tasks.spawn("cache clean-up cycle", move |stop| {
                clean_cycle(j, period, t, stop)
            });
        }
        tracing::info!(
            cache = %config.cache_dir.display(),
            origin = config.origin_url.as_deref().unwrap_or("(none)"),
            control = %config.control_socket.display(),
            "agent started"
        );
        Ok(AgentHandle {
            addrs,
            view,
            tasks,
            server,
            servers,
            metrics_server,
            cache,
        })
    }
}

/// A running agent.
pub struct AgentHandle {
    addrs: AgentAddrs,
    view: Arc<AgentView>,
    tasks: Tasks,
    server: ControlServer,
    servers: Vec<PeerServer>,
    metrics_server: Option<crate::metrics::MetricsServer>,
    cache: Arc<Cache>,
}

impl AgentHandle {
    /// The addresses the agent really bound.
    pub fn addrs(&self) -> &AgentAddrs {
        &self.addrs
    }

    /// Where the control socket listens.
    pub fn control_socket(&self) -> &Path {
        &self.addrs.control_socket
    }

    /// The job manager (tests and the lab read counters from it).
    pub fn jobs(&self) -> &JobManager {
        &self.view.jobs
    }

    /// The elections this agent takes part in (empty without peer copy).
    pub fn elections(&self) -> Vec<ElectionStatus> {
        self.view
            .subnet
            .as_ref()
            .map(|s| s.status())
            .unwrap_or_default()
    }

    /// This agent's recent masterships, as its election driver recorded them
    /// (empty without peer copy).
    pub fn masterships(&self) -> Vec<crate::subnet::Mastership> {
        self.view
            .subnet
            .as_ref()
            .map(|s| s.masterships())
            .unwrap_or_default()
    }

    /// This agent's head starts (none without peer copy).
    pub fn head_starts(&self) -> crate::subnet::HeadStarts {
        self.view
            .subnet
            .as_ref()
            .map(|s| s.head_starts())
            .unwrap_or_default()
    }

    /// What the agent listens on, as `contentdist status` shows it.
    pub fn listeners(&self) -> &[String] {
        &self.view.listeners
    }

    /// The agent's status, as `contentdist status` shows it.
    pub fn status(&self) -> AgentStatus {
        self.view.status()
    }

    /// The settings in force (the live ones as the last reload set them).
    pub fn config(&self) -> Arc<Config> {
        self.view.config()
    }

    /// True when the agent produces its status within `within` (off the async
    /// threads: it takes the job manager's locks). The systemd watchdog is fed only
    /// then, so a stuck agent is restarted.
    pub async fn answers_status(&self, within: Duration) -> bool {
        let view = Arc::clone(&self.view);
        let status = tokio::task::spawn_blocking(move || view.status());
        matches!(tokio::time::timeout(within, status).await, Ok(Ok(_)))
    }

    /// The agent's own SMB server, when it serves SMB (P2PEnabled 0x01).
    pub fn smb(&self) -> Option<crate::smb::SmbStatus> {
        self.view.smb.as_ref().map(crate::smb::SmbShare::status)
    }

    /// The names of the agent's background tasks still running.
    pub fn tasks_live(&self) -> Vec<String> {
        self.tasks.live()
    }

    /// Stop at once, as a crash would: no resignation and no wait. The lab uses it
    /// to show that losing the master costs nothing.
    pub fn kill(&self) {
        self.tasks.shutdown();
    }

    /// Ask everything to stop; [`AgentHandle::join`] waits for it.
    pub fn shutdown(&self) {
        self.tasks.shutdown();
    }

    /// Wait (bounded) for everything the agent started to end: the listeners, every
    /// task (jobs keep their state on disk and resume at the next start), then the
    /// cache's background flushes. `Err` names what was still running.
    pub async fn join(self) -> Result<(), Vec<String>> {
        self.tasks.shutdown();
        let servers = async {
            self.server.join().await;
            for p in self.servers {
                p.join().await;
            }
            if let Some(m) = self.metrics_server {
                m.join().await;
            }
        };
        let mut left = Vec::new();
        if tokio::time::timeout(SHUTDOWN_DEADLINE, servers)
            .await
            .is_err()
        {
            left.push("listeners".to_string());
        }
        if let Err(names) = self.tasks.join(SHUTDOWN_DEADLINE).await {
            left.extend(names);
        }
        self.view.jobs.persist();
        if !self.cache.wait_background(SHUTDOWN_DEADLINE).await {
            left.push("cache flush".to_string());
        }
        if left.is_empty() {
            Ok(())
        } else {
            tracing::warn!(left = ?left, "agent tasks did not stop within the deadline");
            Err(left)
        }
    }
}

/// The agent as the control socket and the handle see it: the job manager plus
/// agent-wide status.
struct AgentView {
    jobs: JobManager,
    peer_counters: Option<Arc<crate::peer::PeerServerCounters>>,
    server_certs: Option<Arc<crate::certstore::ServerCerts>>,
    client_certs: Arc<crate::certstore::ClientCerts>,
    subnet: Option<SubnetHandle>,
    listeners: Vec<String>,
    /// The settings in force (a reload changes the live ones).
    config: std::sync::Mutex<Arc<Config>>,
    /// The peer-copy client (its counters feed the metrics).
    peer_client: Option<Arc<crate::peer::PeerClient>>,
    /// When the agent started, Unix seconds.
    started_unix: f64,
    /// The metrics URL, "" when off, or why the listener did not start.
    metrics: std::sync::OnceLock<String>,
    /// The firewall table's keeper (its status).
    firewall: crate::firewall::FirewallHandle,
    /// The agent's own smbd, when it serves SMB.
    smb: Option<crate::smb::SmbShare>,
    /// The P2P account peers use with this agent (`GET /v1/p2p-account`).
    p2p_account: Option<crate::control::P2pAccount>,
}

impl AgentView {
    /// The settings in force.
    fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.lock().expect("config lock"))
    }

    fn set_config(&self, config: Arc<Config>) {
        *self.config.lock().expect("config lock") = config;
    }

    fn status(&self) -> AgentStatus {
        let stats = self.jobs.stats();
        let c = &self.config();
        AgentStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            origin_url: c.origin_url.clone().unwrap_or_default(),
            control_socket: c.control_socket.clone(),
            cache_dir: self.jobs.cache().root().to_path_buf(),
            preboot: c.preboot,
            listeners: self.listeners.clone(),
            jobs_total: stats.total,
            jobs_active: stats.active,
            bytes_from_origin: stats.from_origin,
            // Live: the peer client counts content bytes as they arrive (no
            // client, no peer copy).
            bytes_from_peers: self
                .peer_client
                .as_ref()
                .map_or(0, |p| p.counters().content_bytes()),
            elections: self
                .subnet
                .as_ref()
                .map(|s| s.status())
                .unwrap_or_default()
                .iter()
                .map(ElectionReport::from)
                .collect(),
            election_datagrams_dropped: self.subnet.as_ref().map(SubnetHandle::dropped),
            election_datagrams_replayed: self.subnet.as_ref().map(SubnetHandle::replayed),
            election_datagrams_overflowed: self.subnet.as_ref().map(SubnetHandle::overflowed),
            election_datagrams_received: self.subnet.as_ref().map(SubnetHandle::received),
            election_recv_buffer: self.subnet.as_ref().map(SubnetHandle::recv_buffer),
            election_free_bytes: self.subnet.as_ref().map(SubnetHandle::free_bytes),
            peer_server: self.peer_counters.as_ref().map(|c| c.snapshot()),
            https_certificate: self.server_certs.as_ref().map(|c| c.state()),
            client_certificate: Some(self.client_certs.state()),
            certificate_waits: self
                .jobs
                .list()
                .iter()
                .filter_map(CertWaitReport::of)
                .collect(),
            metrics: self.metrics.get().filter(|m| !m.is_empty()).cloned(),
            firewall: Some(self.firewall.status()),
            smb: self.smb.as_ref().map(crate::smb::SmbShare::status),
        }
    }
}

impl JobControl for AgentView {
    fn submit(&self, req: JobRequest) -> Result<JobInfo, ControlError> {
        self.jobs.submit(req)
    }
    fn list(&self) -> Vec<JobInfo> {
        self.jobs.list()
    }
    fn get(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.jobs.get(id)
    }
    fn left(&self, id: JobId, seen: JobState) -> BoxFuture<'static, ()> {
        self.jobs.left(id, seen)
    }
    fn pause(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.jobs.pause(id)
    }
    fn resume(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.jobs.resume(id)
    }
    fn cancel(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.jobs.cancel(id)
    }
    fn status(&self) -> AgentStatus {
        AgentView::status(self)
    }
    fn cache_list(&self) -> Vec<CacheEntryInfo> {
        self.jobs.cache_list()
    }
    fn cache_clean(&self) -> Result<CleanReport, ControlError> {
        self.jobs.cache_clean()
    }
    fn p2p_account(&self) -> Option<crate::control::P2pAccount> {
        self.p2p_account.clone()
    }
}

mod background;
mod metrics;
mod page;
mod reload;
mod subnet;
mod tls;

use background::{clean_cycle, repair_damaged};
pub use reload::{changed_settings, ReloadReport, LIVE_SETTINGS};
pub use subnet::advertised_address;
use subnet::{start_subnet, SubnetParts};
use tls::{spawn_refresh, AgentCerts, Refresh};

#[cfg(test)]
mod tests;
