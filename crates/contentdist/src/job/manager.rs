//! The job manager: runs jobs, keeps their state, and persists it so that jobs
//! survive a restart of the agent (also `kill -9`): a job that was running starts
//! again where the cache left off, a paused one stays paused.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::run::{run_job, JobError};
use super::{CacheEntryInfo, CleanReport, ControlError, JobControl, JobId, JobInfo, JobRequest};
use super::{JobState, Source};
use crate::cache::{Cache, CleanPolicy};
use crate::codes::{Code, SuccessCodes};
use crate::manifest::ContentKey;
use crate::origin::{OriginClient, OriginError};

/// Finished jobs kept for `contentdist jobs`; older ones are forgotten.
const KEEP_FINISHED: usize = 200;

/// What the job manager needs.
pub struct JobManagerOptions {
    /// The content store.
    pub cache: Arc<Cache>,
    /// The origin client, or why there is none (jobs then fail with its code).
    pub origin: Result<OriginClient, Arc<OriginError>>,
    /// Codes the caller must not fall back on.
    pub success_codes: SuccessCodes,
    /// Clean-up limits, applied to make room before a download.
    pub clean_policy: CleanPolicy,
    /// Where jobs are persisted (`jobs.json`).
    pub state_file: PathBuf,
    /// Jobs that transfer at once; others wait queued.
    pub max_concurrent: usize,
    /// Cancelled when the agent stops.
    pub shutdown: CancellationToken,
    /// The subnet (elections and peer copy); `None`: every job downloads from the
    /// origin itself (peer copy off, or an inhibited subnet).
    pub peers: Option<super::fill::PeerSetup>,
}

/// Bytes by source, for the whole agent.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes received from the origin.
    pub from_origin: AtomicU64,
    /// Bytes received from peers.
    pub from_peers: AtomicU64,
}

pub(super) struct Slot {
    pub info: JobInfo,
    pub from_origin: Arc<AtomicU64>,
    pub from_peers: Arc<AtomicU64>,
    pub stop: Option<CancellationToken>,
    pub started: Option<Instant>,
    pub elapsed_before_ms: u64,
    pub entry: Option<Arc<crate::cache::ContentEntry>>,
}

impl Slot {
    fn snapshot(&self) -> JobInfo {
        let mut info = self.info.clone();
        info.bytes_from_origin = self.from_origin.load(Ordering::Relaxed);
        info.bytes_from_peers = self.from_peers.load(Ordering::Relaxed);
        if let Some(e) = &self.entry {
            info.bytes_total = e.manifest().total_size();
            info.bytes_verified = e.verified_bytes();
        }
        info.elapsed_ms =
            self.elapsed_before_ms + self.started.map_or(0, |s| s.elapsed().as_millis() as u64);
        info
    }
}

pub(super) struct Inner {
    pub opts: JobManagerOptions,
    pub jobs: Mutex<BTreeMap<JobId, Slot>>,
    next_id: AtomicU64,
    pub content_locks: Mutex<HashMap<ContentKey, Arc<tokio::sync::Mutex<()>>>>,
    pub counters: Counters,
    pub permits: tokio::sync::Semaphore,
    runtime: tokio::runtime::Handle,
    tasks: tokio_util::task::TaskTracker,
    persist_lock: Mutex<()>,
}

/// Runs the agent's jobs. Cheap to clone.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

#[derive(Serialize, Deserialize)]
struct Persisted {
    next_id: JobId,
    jobs: Vec<JobInfo>,
}

impl JobManager {
    /// Load persisted jobs and restart those that were running. Must be called
    /// inside a tokio runtime.
    pub fn start(opts: JobManagerOptions) -> JobManager {
        let persisted: Option<Persisted> = std::fs::read(&opts.state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let max = opts.max_concurrent.max(1);
        let inner = Arc::new(Inner {
            opts,
            jobs: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            content_locks: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            permits: tokio::sync::Semaphore::new(max),
            runtime: tokio::runtime::Handle::current(),
            tasks: tokio_util::task::TaskTracker::new(),
            persist_lock: Mutex::new(()),
        });
        let mgr = JobManager { inner };
        if let Some(p) = persisted {
            mgr.inner.next_id.store(p.next_id, Ordering::SeqCst);
            let mut restart = Vec::new();
            {
                let mut jobs = mgr.inner.jobs.lock().expect("jobs lock");
                for mut info in p.jobs {
                    if !info.state.is_final() && info.state != JobState::Paused {
                        info.state = JobState::Queued;
                        restart.push(info.id);
                    }
                    info.source = Source::None;
                    jobs.insert(info.id, slot_from(info));
                }
            }
            for id in restart {
                tracing::info!(job = id, "resuming job interrupted by an agent restart");
                mgr.spawn(id);
            }
        }
        mgr
    }

    /// Wait until every job task has ended (after the shutdown token fired).
    pub async fn wait_stopped(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Bytes by source for the whole agent.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// The cache the jobs fill.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.opts.cache
    }

    fn spawn(&self, id: JobId) {
        let stop = self.inner.opts.shutdown.child_token();
        {
            let mut jobs = self.inner.jobs.lock().expect("jobs lock");
            let Some(slot) = jobs.get_mut(&id) else {
                return;
            };
            slot.stop = Some(stop.clone());
        }
        let inner = Arc::clone(&self.inner);
        let mgr = self.clone();
        self.inner.tasks.spawn_on(
            async move {
                let result = run_job(&inner, id, &stop).await;
                mgr.finish(id, result);
            },
            &self.inner.runtime,
        );
    }

    fn finish(&self, id: JobId, result: Result<(), JobError>) {
        {
            let mut jobs = self.inner.jobs.lock().expect("jobs lock");
            let Some(slot) = jobs.get_mut(&id) else {
                return;
            };
            // Freeze the live counters into the record before the entry is let go.
            let snap = slot.snapshot();
            slot.info.bytes_total = snap.bytes_total;
            slot.info.bytes_verified = snap.bytes_verified;
            slot.info.bytes_from_origin = snap.bytes_from_origin;
            slot.info.bytes_from_peers = snap.bytes_from_peers;
            if let Some(s) = slot.started.take() {
                slot.elapsed_before_ms += s.elapsed().as_millis() as u64;
            }
            slot.stop = None;
            slot.info.source = Source::None;
            match result {
                Ok(()) => {
                    slot.info.state = JobState::Done;
                    slot.info.code = 0;
                    tracing::info!(job = id, content = %slot.info.request.content_id, version = slot.info.request.version,
                        from_origin = slot.from_origin.load(Ordering::Relaxed), "job done");
                }
                // Paused or cancelled: pause()/cancel() already set the state.
                Err(JobError::Stopped) => {}
                Err(e)
                    if self.inner.opts.shutdown.is_cancelled() && e.code() == Code::CANCELLED => {}
                Err(e) => {
                    let code = e.code();
                    slot.info.state = JobState::Failed;
                    slot.info.code = code.0;
                    slot.info.message = Some(e.to_string());
                    slot.info.code_in_success_codes = self.inner.opts.success_codes.contains(code);
                    let fix = code.info().map_or("", |i| i.fix);
                    tracing::error!(job = id, code = %code, name = code.name(), fix, "job failed: {e}");
                }
            }
            // While the agent stops, running jobs keep their state so they restart.
            if self.inner.opts.shutdown.is_cancelled()
                && !slot.info.state.is_final()
                && slot.info.state != JobState::Paused
            {
                slot.info.state = JobState::Queued;
            }
            slot.entry = None;
        }
        self.persist();
    }

    /// Write every job to the state file (atomically).
    pub fn persist(&self) {
        let _guard = self.inner.persist_lock.lock().expect("persist lock");
        let p = {
            let mut jobs = self.inner.jobs.lock().expect("jobs lock");
            let finished: Vec<JobId> = jobs
                .iter()
                .filter(|(_, s)| s.info.state.is_final())
                .map(|(&id, _)| id)
                .collect();
            for id in finished
                .iter()
                .take(finished.len().saturating_sub(KEEP_FINISHED))
            {
                jobs.remove(id);
            }
            Persisted {
                next_id: self.inner.next_id.load(Ordering::SeqCst),
                jobs: jobs.values().map(Slot::snapshot).collect(),
            }
        };
        let path = &self.inner.opts.state_file;
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(&p).expect("jobs serialize");
        let r = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = r {
            tracing::warn!(path = %path.display(), error = %e, "could not persist jobs");
        }
    }

    fn with_slot<T>(
        &self,
        id: JobId,
        f: impl FnOnce(&mut Slot) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let mut jobs = self.inner.jobs.lock().expect("jobs lock");
        let slot = jobs
            .get_mut(&id)
            .ok_or_else(|| ControlError::new(Code::BAD_REQUEST, format!("no job {id}")))?;
        f(slot)
    }
}

fn slot_from(info: JobInfo) -> Slot {
    Slot {
        from_origin: Arc::new(AtomicU64::new(info.bytes_from_origin)),
        from_peers: Arc::new(AtomicU64::new(info.bytes_from_peers)),
        elapsed_before_ms: info.elapsed_ms,
        info,
        stop: None,
        started: None,
        entry: None,
    }
}

fn validate(req: &JobRequest) -> Result<(), ControlError> {
    crate::manifest::validate_content_id(&req.content_id)
        .map_err(|e| ControlError::new(Code::INVALID_PACKAGE_PATH, e.to_string()))?;
    if !(1..=9).contains(&req.priority) {
        return Err(ControlError::new(
            Code::BAD_REQUEST,
            format!("priority {} is not in 1..=9", req.priority),
        ));
    }
    if let Some(d) = &req.dest {
        if !d.is_absolute() {
            return Err(ControlError::new(
                Code::BAD_REQUEST,
                format!("destination '{}' is not an absolute path", d.display()),
            ));
        }
    }
    if let Some(h) = &req.content_hash {
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ControlError::new(
                Code::BAD_REQUEST,
                format!("content hash '{h}' is not 64 hex digits"),
            ));
        }
    }
    Ok(())
}

impl JobControl for JobManager {
    fn submit(&self, req: JobRequest) -> Result<JobInfo, ControlError> {
        validate(&req)?;
        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        let info = JobInfo {
            id,
            request: req,
            state: JobState::Queued,
            code: 0,
            message: None,
            code_in_success_codes: false,
            bytes_total: 0,
            bytes_verified: 0,
            bytes_from_origin: 0,
            bytes_from_peers: 0,
            source: Source::None,
            elapsed_ms: 0,
        };
        self.inner
            .jobs
            .lock()
            .expect("jobs lock")
            .insert(id, slot_from(info));
        self.persist();
        self.spawn(id);
        self.get(id)
    }

    fn list(&self) -> Vec<JobInfo> {
        let jobs = self.inner.jobs.lock().expect("jobs lock");
        jobs.values().map(Slot::snapshot).collect()
    }

    fn get(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.with_slot(id, |s| Ok(s.snapshot()))
    }

    fn pause(&self, id: JobId) -> Result<JobInfo, ControlError> {
        let info = self.with_slot(id, |s| {
            match s.info.state {
                JobState::Queued | JobState::Downloading | JobState::Delivering => {}
                JobState::Paused => return Ok(s.snapshot()),
                st => {
                    return Err(ControlError::new(
                        Code::BAD_REQUEST,
                        format!("job {id} is {st:?} and cannot be paused"),
                    ))
                }
            }
            s.info.state = JobState::Paused;
            if let Some(stop) = s.stop.take() {
                stop.cancel();
            }
            Ok(s.snapshot())
        })?;
        self.persist();
        Ok(info)
    }

    fn resume(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.with_slot(id, |s| {
            if s.info.state != JobState::Paused {
                return Err(ControlError::new(
                    Code::BAD_REQUEST,
                    format!("job {id} is {:?}, not paused", s.info.state),
                ));
            }
            if s.stop.is_some() {
                // The paused task has not wound down yet; it will see the new state.
                return Err(ControlError::new(
                    Code::BAD_REQUEST,
                    format!("job {id} is still stopping; resume again in a moment"),
                ));
            }
            s.info.state = JobState::Queued;
            Ok(())
        })?;
        self.spawn(id);
        self.persist();
        self.get(id)
    }

    fn cancel(&self, id: JobId) -> Result<JobInfo, ControlError> {
        let info = self.with_slot(id, |s| {
            if s.info.state.is_final() {
                return Err(ControlError::new(
                    Code::BAD_REQUEST,
                    format!("job {id} has already finished ({:?})", s.info.state),
                ));
            }
            s.info.state = JobState::Cancelled;
            s.info.code = Code::CANCELLED.0;
            s.info.message = Some("cancelled by request".into());
            s.info.code_in_success_codes = self.inner.opts.success_codes.contains(Code::CANCELLED);
            if let Some(stop) = s.stop.take() {
                stop.cancel();
            }
            Ok(s.snapshot())
        })?;
        self.persist();
        Ok(info)
    }

    fn status(&self) -> serde_json::Value {
        let jobs = self.list();
        let active = jobs.iter().filter(|j| !j.state.is_final()).count();
        serde_json::json!({
            "cache_dir": self.cache().root(),
            "jobs_total": jobs.len(),
            "jobs_active": active,
            "bytes_from_origin": self.inner.counters.from_origin.load(Ordering::Relaxed),
            "bytes_from_peers": self.inner.counters.from_peers.load(Ordering::Relaxed),
        })
    }

    fn cache_list(&self) -> Vec<CacheEntryInfo> {
        self.cache().list()
    }

    fn cache_clean(&self) -> Result<CleanReport, ControlError> {
        self.cache()
            .clean(self.inner.opts.clean_policy, 0)
            .map_err(|e| ControlError::new(e.code(), e.to_string()))
    }
}
