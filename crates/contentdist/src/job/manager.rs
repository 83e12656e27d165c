//! The job manager: runs jobs, keeps their state, and persists it so that jobs
//! survive a restart of the agent (also `kill -9`): a job that was running starts
//! again where the cache left off, a paused one stays paused.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::context::{Counters, JobContext, PeerSetup};
use super::live::Live;
use super::run::{run_job, JobError, JobRun, Outcome};
use super::{ControlError, JobId, JobInfo, JobRequest, JobState, Source};
use crate::cache::{Cache, CacheEntryInfo, CleanPolicy, CleanReport};
use crate::codes::{Code, SuccessCodes};
use crate::manifest::ContentKey;
use crate::origin::{OriginClient, OriginError};
use crate::tasks::Tasks;

/// Finished jobs kept for `contentdist jobs`; older ones are forgotten.
const KEEP_FINISHED: usize = 200;

/// How often running jobs are saved (their byte counts move all the time).
const PERSIST_PERIOD: std::time::Duration = std::time::Duration::from_millis(500);

/// Room kept at the end of `jobs.json` (spaces, which JSON ignores) so that the list
/// can be rewritten in place when the disk is full: a failure with its message is a
/// few hundred bytes more.
const JOBS_RESERVE: usize = 16 * 1024;

/// Write `bytes` as the job list at `path`. Normally through a temporary file and a
/// rename, padded with [`JOBS_RESERVE`] spaces; when the disk is full, over the old
/// file's own (already allocated) bytes instead, which needs no new space. The
/// temporary file never stays behind.
fn write_jobs(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut padded = bytes.to_vec();
    padded.push(b'\n');
    padded.resize((bytes.len() + JOBS_RESERVE).next_multiple_of(4096), b' ');
    let tmp = path.with_extension("tmp");
    let atomic = std::fs::write(&tmp, &padded).and_then(|()| std::fs::rename(&tmp, path));
    let Err(e) = atomic else { return Ok(()) };
    let _ = std::fs::remove_file(&tmp);
    if !crate::cache::is_disk_full(&e) {
        return Err(e);
    }
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    let room = f.metadata()?.len() as usize;
    if bytes.len() >= room {
        return Err(e);
    }
    let mut in_place = bytes.to_vec();
    in_place.resize(room, b' ');
    f.write_all_at(&in_place, 0)?;
    f.sync_data()
}

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
    /// Where job tasks run; stopping it stops every job (they stay resumable).
    pub tasks: Tasks,
    /// The subnet (elections and peer copy); `None`: every job downloads from the
    /// origin itself (peer copy off, or an inhibited subnet).
    pub peers: Option<PeerSetup>,
}

/// The manager's record of one job: the request and result, and the live part
/// the job's task writes.
struct Slot {
    info: JobInfo,
    live: Arc<Live>,
    /// Set while a task runs the job.
    stop: Option<CancellationToken>,
}

impl Slot {
    fn snapshot(&self) -> JobInfo {
        let mut info = self.info.clone();
        let now = self.live.now();
        info.state = now.state;
        info.source = now.source;
        info.waiting_for = now.waiting_for;
        info.bytes_from_origin = self.live.origin_bytes();
        info.bytes_from_peers = self.live.peer_bytes();
        if let Some((total, verified)) = self.live.progress() {
            info.bytes_total = total;
            info.bytes_verified = verified;
        }
        info.elapsed_ms = self.live.elapsed_ms();
        info
    }
}

struct Inner {
    ctx: JobContext,
    success_codes: SuccessCodes,
    state_file: PathBuf,
    jobs: Mutex<BTreeMap<JobId, Slot>>,
    next_id: AtomicU64,
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

/// Job counts and bytes by source, for the agent's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobStats {
    /// Jobs known (finished ones included).
    pub total: usize,
    /// Jobs not finished.
    pub active: usize,
    /// Bytes received from the origin since the agent started.
    pub from_origin: u64,
    /// Bytes received from peers since the agent started.
    pub from_peers: u64,
}

impl JobManager {
    /// Load persisted jobs and restart those that were running. Must be called
    /// inside a tokio runtime.
    pub fn start(opts: JobManagerOptions) -> JobManager {
        let persisted: Option<Persisted> = match std::fs::read(&opts.state_file) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(path = %opts.state_file.display(), error = %e,
                        "the saved job list does not parse; starting without it");
                    None
                }
            },
            Err(_) => None,
        };
        let max = opts.max_concurrent.max(1);
        let inner = Arc::new(Inner {
            ctx: JobContext {
                cache: opts.cache,
                origin: opts.origin,
                peers: opts.peers,
                counters: Counters::default(),
                clean_policy: opts.clean_policy,
                permits: tokio::sync::Semaphore::new(max),
                content_locks: Mutex::new(HashMap::new()),
                tasks: opts.tasks,
                #[cfg(test)]
                panic_at: Mutex::new(None),
            },
            success_codes: opts.success_codes,
            state_file: opts.state_file,
            jobs: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            persist_lock: Mutex::new(()),
        });
        let mgr = JobManager { inner };
        let m = mgr.clone();
        mgr.inner
            .ctx
            .tasks
            .spawn("job persister", move |stop| m.persist_while_running(stop));
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
                    info.waiting_for = None;
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

    /// Save the jobs every [`PERSIST_PERIOD`] while any runs, so that their byte
    /// counts survive a crash (`kill -9`) up to that period.
    async fn persist_while_running(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(PERSIST_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            if self.any_running() {
                let m = self.clone();
                // A small file, but still a blocking write: off the runtime.
                let _ = self
                    .inner
                    .ctx
                    .tasks
                    .spawn_blocking("job persist", move || m.persist())
                    .await;
            }
        }
    }

    /// Job counts and bytes by source.
    pub fn stats(&self) -> JobStats {
        let jobs = self.inner.jobs.lock().expect("jobs lock");
        JobStats {
            total: jobs.len(),
            active: jobs
                .values()
                .filter(|s| !s.live.now().state.is_final())
                .count(),
            from_origin: self.inner.ctx.counters.from_origin.load(Ordering::Relaxed),
            from_peers: self.inner.ctx.counters.from_peers.load(Ordering::Relaxed),
        }
    }

    /// Tests: make `step` of every job panic from now on (`None`: none).
    #[cfg(test)]
    pub(crate) fn inject_panic(&self, step: Option<&'static str>) {
        *self.inner.ctx.panic_at.lock().expect("panic_at lock") = step;
    }

    /// Bytes by source for the whole agent.
    pub fn counters(&self) -> &Counters {
        &self.inner.ctx.counters
    }

    /// The cache the jobs fill.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.ctx.cache
    }

    fn spawn(&self, id: JobId) {
        let stop = self.inner.ctx.tasks.token().child_token();
        let (request, live) = {
            let mut jobs = self.inner.jobs.lock().expect("jobs lock");
            let Some(slot) = jobs.get_mut(&id) else {
                return;
            };
            slot.stop = Some(stop.clone());
            (slot.info.request.clone(), Arc::clone(&slot.live))
        };
        let job = JobRun {
            id,
            request,
            live,
            stop,
        };
        let mgr = self.clone();
        self.inner
            .ctx
            .tasks
            .spawn(&format!("job {id}"), move |_agent_stop| async move {
                // A panic anywhere in the job fails the job with a code instead of
                // leaving it "downloading" until a restart.
                let run = std::panic::AssertUnwindSafe(run_job(&mgr.inner.ctx, &job));
                let result = match run.catch_unwind().await {
                    Ok(r) => r,
                    Err(payload) => Err(JobError::panicked("the job task", payload.as_ref())),
                };
                job.live.end();
                mgr.finish(id, result);
            });
    }

    fn finish(&self, id: JobId, result: Result<Outcome, JobError>) {
        let agent_stopping = self.inner.ctx.tasks.token().is_cancelled();
        {
            let mut jobs = self.inner.jobs.lock().expect("jobs lock");
            let Some(slot) = jobs.get_mut(&id) else {
                return;
            };
            slot.stop = None;
            let live = Arc::clone(&slot.live);
            match result {
                Ok(Outcome::Done) => {
                    live.force(JobState::Done);
                    slot.info.code = 0;
                    tracing::info!(job = id, content = %slot.info.request.content_id, version = slot.info.request.version,
                        from_origin = live.origin_bytes(), "job done");
                }
                // Paused or cancelled: pause()/cancel() already set the state. While
                // the agent stops, a running job goes back to the queue so it
                // restarts with the agent.
                Ok(Outcome::Stopped) => {
                    if agent_stopping && !live.now().state.is_final() {
                        live.force_if(
                            &[
                                JobState::Queued,
                                JobState::Downloading,
                                JobState::Delivering,
                            ],
                            JobState::Queued,
                        );
                    }
                }
                Err(e) => {
                    let code = e.code();
                    live.force(JobState::Failed);
                    slot.info.code = code.0;
                    slot.info.message = Some(e.to_string());
                    slot.info.code_in_success_codes = self.inner.success_codes.contains(code);
                    let fix = code.info().map_or("", |i| i.fix);
                    tracing::error!(job = id, code = %code, name = code.name(), fix, "job failed: {e}");
                }
            }
            // Freeze the progress into the record, then let the entry go.
            let snap = slot.snapshot();
            slot.info = snap;
            live.attach(None);
        }
        self.persist();
    }

    /// Write every job to the state file: atomically when the disk allows, else in
    /// place of the previous list (see [`write_jobs`]), so that a failure on a full
    /// disk is recorded and a restart does not run the job again.
    pub fn persist(&self) {
        let _guard = self.inner.persist_lock.lock().expect("persist lock");
        let p = {
            let mut jobs = self.inner.jobs.lock().expect("jobs lock");
            let finished: Vec<JobId> = jobs
                .iter()
                .filter(|(_, s)| s.live.now().state.is_final())
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
        let path = &self.inner.state_file;
        let bytes = serde_json::to_vec_pretty(&p).expect("jobs serialize");
        if let Err(e) = write_jobs(path, &bytes) {
            tracing::warn!(path = %path.display(), error = %e, "could not persist jobs");
        }
    }

    /// True while some job has a task running.
    fn any_running(&self) -> bool {
        let jobs = self.inner.jobs.lock().expect("jobs lock");
        jobs.values().any(|s| s.stop.is_some())
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

    /// True when a job not finished (and not paused) is for this content: it will
    /// fetch whatever blocks the content lacks.
    pub fn is_fetching(&self, key: &ContentKey) -> bool {
        let jobs = self.inner.jobs.lock().expect("jobs lock");
        jobs.values().any(|s| {
            let state = s.live.now().state;
            !state.is_final()
                && state != JobState::Paused
                && s.info.request.content_id == key.id()
                && s.info.request.version == key.version()
        })
    }

    /// A job not finished that asks for exactly this (same content, version,
    /// destination and hash): a second `get` attaches to it instead of running twice.
    fn same_running(&self, req: &JobRequest) -> Option<JobInfo> {
        let jobs = self.inner.jobs.lock().expect("jobs lock");
        jobs.values()
            .find(|s| {
                let r = &s.info.request;
                let state = s.live.now().state;
                !state.is_final()
                    && state != JobState::Paused
                    && r.content_id == req.content_id
                    && r.version == req.version
                    && r.dest == req.dest
                    && r.content_hash == req.content_hash
            })
            .map(Slot::snapshot)
    }
}

fn slot_from(info: JobInfo) -> Slot {
    Slot {
        live: Arc::new(Live::new(
            info.state,
            info.bytes_from_origin,
            info.bytes_from_peers,
            info.elapsed_ms,
        )),
        info,
        stop: None,
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

/// The job operations the control socket offers (the agent adds status).
impl JobManager {
    /// Queue a job; returns it as first reported. A request identical to a job
    /// still running attaches to that job: the same job is returned.
    pub fn submit(&self, req: JobRequest) -> Result<JobInfo, ControlError> {
        validate(&req)?;
        if let Some(running) = self.same_running(&req) {
            tracing::info!(job = running.id, content = %req.content_id, version = req.version,
                "same request as a running job: attached to it");
            return Ok(running);
        }
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
            waiting_for: None,
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

    /// Every job this agent knows, oldest first.
    pub fn list(&self) -> Vec<JobInfo> {
        let jobs = self.inner.jobs.lock().expect("jobs lock");
        jobs.values().map(Slot::snapshot).collect()
    }

    /// One job.
    pub fn get(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.with_slot(id, |s| Ok(s.snapshot()))
    }

    /// Pause a running or queued job.
    pub fn pause(&self, id: JobId) -> Result<JobInfo, ControlError> {
        let info = self.with_slot(id, |s| {
            let running = [
                JobState::Queued,
                JobState::Downloading,
                JobState::Delivering,
            ];
            if !s.live.force_if(&running, JobState::Paused) {
                match s.live.now().state {
                    JobState::Paused => return Ok(s.snapshot()),
                    st => {
                        return Err(ControlError::new(
                            Code::BAD_REQUEST,
                            format!("job {id} is {st:?} and cannot be paused"),
                        ))
                    }
                }
            }
            if let Some(stop) = s.stop.take() {
                stop.cancel();
            }
            Ok(s.snapshot())
        })?;
        self.persist();
        Ok(info)
    }

    /// Resume a paused job.
    pub fn resume(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.with_slot(id, |s| {
            let state = s.live.now().state;
            if state != JobState::Paused {
                return Err(ControlError::new(
                    Code::BAD_REQUEST,
                    format!("job {id} is {state:?}, not paused"),
                ));
            }
            if s.stop.is_some() {
                // The paused task has not wound down yet; it will see the new state.
                return Err(ControlError::new(
                    Code::BAD_REQUEST,
                    format!("job {id} is still stopping; resume again in a moment"),
                ));
            }
            s.live.force(JobState::Queued);
            Ok(())
        })?;
        self.spawn(id);
        self.persist();
        self.get(id)
    }

    /// Cancel a job that has not finished.
    pub fn cancel(&self, id: JobId) -> Result<JobInfo, ControlError> {
        let info = self.with_slot(id, |s| {
            let state = s.live.now().state;
            if state.is_final() {
                return Err(ControlError::new(
                    Code::BAD_REQUEST,
                    format!("job {id} has already finished ({state:?})"),
                ));
            }
            s.live.force(JobState::Cancelled);
            s.info.code = Code::CANCELLED.0;
            s.info.message = Some("cancelled by request".into());
            s.info.code_in_success_codes = self.inner.success_codes.contains(Code::CANCELLED);
            if let Some(stop) = s.stop.take() {
                stop.cancel();
            }
            Ok(s.snapshot())
        })?;
        self.persist();
        Ok(info)
    }

    /// The cache's entries.
    pub fn cache_list(&self) -> Vec<CacheEntryInfo> {
        self.cache().list()
    }

    /// Run the cache clean-up now.
    pub fn cache_clean(&self) -> Result<CleanReport, ControlError> {
        self.cache()
            .clean(self.inner.ctx.clean_policy, 0)
            .map_err(|e| ControlError::new(e.code(), e.to_string()))
    }
}
