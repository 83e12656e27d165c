//! The agent: `Agent::start(config)` opens the cache, restarts interrupted jobs,
//! serves the control socket and runs the periodic cache clean-up. Everything hangs
//! off one cancellation token, so many agents can live in one process (tests, the
//! lab) and `shutdown()` stops exactly one of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, CacheError, CleanPolicy};
use crate::codes::Code;
use crate::config::Config;
use crate::control::{ControlServer, ControlSocketError};
use crate::job::{
    CacheEntryInfo, CleanReport, ControlError, JobControl, JobId, JobInfo, JobManager,
    JobManagerOptions, JobRequest,
};
use crate::origin::{OriginClient, OriginOptions};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The cache directory is unusable.
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
    /// The control socket could not be bound.
    #[error("control socket: {0}")]
    Control(#[from] ControlSocketError),
}

impl AgentError {
    /// The catalogue code.
    pub fn code(&self) -> Code {
        match self {
            AgentError::Cache(e) => e.code(),
            AgentError::Control(e) => e.code(),
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
        let shutdown = CancellationToken::new();
        let cache = Arc::new(Cache::open(&config.cache_dir)?);
        let origin = OriginClient::new(origin_options(&config)).map_err(Arc::new);
        if let Err(e) = &origin {
            tracing::warn!(code = %e.code(), "origin unavailable: {e}; jobs that need it will fail");
        }
        let jobs = JobManager::start(JobManagerOptions {
            cache: Arc::clone(&cache),
            origin,
            success_codes: config.success_codes.clone(),
            clean_policy: clean_policy(&config),
            state_file: config.cache_dir.join("jobs.json"),
            max_concurrent: 4,
            shutdown: shutdown.clone(),
        });
        let control = Arc::new(AgentControl {
            jobs: jobs.clone(),
            config: Arc::new(config.clone()),
        });
        let server = ControlServer::start(&config.control_socket, control, shutdown.clone())?;
        let mut tasks = Vec::new();
        if config.cache_clean_cycle_hrs > 0 {
            let period = Duration::from_secs(u64::from(config.cache_clean_cycle_hrs) * 3600);
            tasks.push(tokio::spawn(clean_cycle(
                Arc::clone(&cache),
                clean_policy(&config),
                period,
                shutdown.clone(),
            )));
        }
        tracing::info!(
            cache = %config.cache_dir.display(),
            origin = config.origin_url.as_deref().unwrap_or("(none)"),
            control = %config.control_socket.display(),
            "agent started"
        );
        Ok(AgentHandle {
            control_socket: config.control_socket.clone(),
            jobs,
            shutdown,
            server,
            tasks,
        })
    }
}

async fn clean_cycle(
    cache: Arc<Cache>,
    policy: CleanPolicy,
    period: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let c = Arc::clone(&cache);
        match tokio::task::spawn_blocking(move || c.clean(policy, 0)).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "periodic cache clean-up failed"),
            Err(e) => tracing::warn!(error = %e, "periodic cache clean-up panicked"),
            Ok(Ok(_)) => {}
        }
    }
}

/// A running agent.
pub struct AgentHandle {
    control_socket: PathBuf,
    jobs: JobManager,
    shutdown: CancellationToken,
    server: ControlServer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl AgentHandle {
    /// Where the control socket listens.
    pub fn control_socket(&self) -> &Path {
        &self.control_socket
    }

    /// The job manager (tests and the lab read counters from it).
    pub fn jobs(&self) -> &JobManager {
        &self.jobs
    }

    /// Stop everything and wait (bounded) for it: running jobs keep their state on
    /// disk and resume at the next start.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let wait = async {
            self.server.join().await;
            for t in self.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            tracing::warn!("agent tasks did not stop within 10 s");
        }
        // Job tasks record their state as they wind down; wait for them, then persist.
        if tokio::time::timeout(Duration::from_secs(10), self.jobs.wait_stopped())
            .await
            .is_err()
        {
            tracing::warn!("jobs did not stop within 10 s");
        }
        self.jobs.persist();
    }
}

/// The control socket's view of the agent: the job manager plus agent-wide status.
struct AgentControl {
    jobs: JobManager,
    config: Arc<Config>,
}

impl JobControl for AgentControl {
    fn submit(&self, req: JobRequest) -> Result<JobInfo, ControlError> {
        self.jobs.submit(req)
    }
    fn list(&self) -> Vec<JobInfo> {
        self.jobs.list()
    }
    fn get(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.jobs.get(id)
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
    fn status(&self) -> serde_json::Value {
        let mut s = self.jobs.status();
        let c = &self.config;
        s["version"] = env!("CARGO_PKG_VERSION").into();
        s["origin_url"] = c.origin_url.clone().unwrap_or_default().into();
        s["control_socket"] = c.control_socket.display().to_string().into();
        s["preboot"] = c.preboot.into();
        s["listeners"] = serde_json::json!([]);
        s["elections"] = serde_json::json!([]);
        s
    }
    fn cache_list(&self) -> Vec<CacheEntryInfo> {
        self.jobs.cache_list()
    }
    fn cache_clean(&self) -> Result<CleanReport, ControlError> {
        self.jobs.cache_clean()
    }
}
