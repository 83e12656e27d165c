//! The job manager: runs jobs, keeps their state, and persists it so that jobs
//! survive a restart of the agent (also `kill -9`): a job that was running starts
//! again where the cache left off, a paused one stays paused.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::certwait::CertWait;
use super::context::{Counters, JobContext, PeerSetup};
use super::live::Live;
use super::persist::Persisted;
use super::run::{run_job, JobError, JobRun, Outcome};
use super::{ControlError, FinalStats, JobId, JobInfo, JobRequest, JobState, Source};
use crate::cache::{Cache, CleanPolicy};
use crate::codes::{Code, SuccessCodes};
use crate::manifest::ContentKey;
use crate::origin::{OriginClient, OriginError};
use crate::tasks::Tasks;

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
    /// The client-certificate wait (`P2PSslSettings` 0x2 with HTTPS); `None`: jobs
    /// need no client certificate.
    pub cert_wait: Option<Arc<CertWait>>,
}

/// The manager's record of one job: the request and result, and the live part
/// the job's task writes.
pub(super) struct Slot {
    pub(super) info: JobInfo,
    pub(super) live: Arc<Live>,
    /// Set while a task runs the job.
    pub(super) stop: Option<CancellationToken>,
}

impl Slot {
    pub(super) fn snapshot(&self) -> JobInfo {
        let mut info = self.info.clone();
        let now = self.live.now();
        info.state = now.state;
        info.source = now.source;
        info.waiting_for = now.waiting_for;
        info.cert_wait_until_unix = self.live.cert_deadline();
        info.bytes_from_origin = self.live.origin_bytes();
        let peers = self.live.peer_bytes();
        info.bytes_from_peers = peers.total();
        info.bytes_from_peers_by_protocol = peers;
        info.master = self.live.master().or(info.master);
        if let Some((total, verified)) = self.live.progress() {
            info.bytes_total = total;
            info.bytes_verified = verified;
        }
        info.elapsed_ms = self.live.elapsed_ms();
        info
    }
}

pub(super) struct Inner {
    pub(super) ctx: JobContext,
    pub(super) success_codes: SuccessCodes,
    pub(super) state_file: PathBuf,
    pub(super) jobs: Mutex<BTreeMap<JobId, Slot>>,
    pub(super) next_id: AtomicU64,
    pub(super) persist_lock: Mutex<()>,
    /// Jobs ended since the start, by outcome and code (for the metrics).
    pub(super) ends: Mutex<BTreeMap<(&'static str, u32), u64>>,
}

/// Runs the agent's jobs. Cheap to clone.
#[derive(Clone)]
pub struct JobManager {
    pub(super) inner: Arc<Inner>,
}

/// Job counts and bytes by source, for the agent's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobStats {
    /// Jobs known (finished ones included).
    pub total: usize,
    /// Jobs not finished.
    pub active: usize,
    /// Bytes received from the origin since the agent started. (From peers: the
    /// peer client counts them, `PeerClientCounters::content_bytes`.)
    pub from_origin: u64,
}

impl JobManager {
    /// Load persisted jobs and restart those that were running. Must be called
    /// inside a tokio runtime.
    pub fn start(opts: JobManagerOptions) -> JobManager {
        // A list cut short by a power loss gives way to the one saved before it;
        // with neither, the agent starts without (logged, with why).
        let persisted: Option<Persisted> =
            crate::util::read_saved(&opts.state_file, |b| serde_json::from_slice(b));
        let max = opts.max_concurrent.max(1);
        let inner = Arc::new(Inner {
            ctx: JobContext {
                cache: opts.cache,
                origin: opts.origin,
                peers: opts.peers,
                counters: Counters::default(),
                clean_policy: std::sync::Mutex::new(opts.clean_policy),
                permits: tokio::sync::Semaphore::new(max),
                content_locks: Mutex::new(HashMap::new()),
                tasks: opts.tasks,
                cert_wait: opts.cert_wait,
                #[cfg(test)]
                panic_at: Mutex::new(None),
            },
            success_codes: opts.success_codes,
            state_file: opts.state_file,
            jobs: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            persist_lock: Mutex::new(()),
            ends: Mutex::new(BTreeMap::new()),
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
            // In id order: they line up at the certificate gate as they are spawned.
            restart.sort_unstable();
            for id in restart {
                tracing::info!(job = id, "resuming job interrupted by an agent restart");
                mgr.spawn(id);
            }
        }
        mgr
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

    /// How long the WAN throttle has held downloads back (zero without an origin
    /// or a throttle).
    pub fn wan_held_back(&self) -> std::time::Duration {
        self.inner
            .ctx
            .origin
            .as_ref()
            .map_or(std::time::Duration::ZERO, OriginClient::wan_held_back)
    }

    /// The clean-up limits in force.
    pub fn clean_policy(&self) -> CleanPolicy {
        *self
            .inner
            .ctx
            .clean_policy
            .lock()
            .expect("clean policy lock")
    }

    /// Change the clean-up limits (a reload of the settings).
    pub fn set_clean_policy(&self, policy: CleanPolicy) {
        *self
            .inner
            .ctx
            .clean_policy
            .lock()
            .expect("clean policy lock") = policy;
    }

    /// The WAN throttle in force (`None`: none, or no origin).
    pub fn rate_limit(&self) -> Option<u64> {
        self.inner.ctx.origin.as_ref().ok()?.rate_limit()
    }

    /// Change the WAN throttle (a reload of the settings); no origin, nothing to do.
    pub fn set_rate_limit(&self, bytes_per_sec: Option<u64>) {
        if let Ok(o) = &self.inner.ctx.origin {
            o.set_rate_limit(bytes_per_sec);
        }
    }

    /// The cache the jobs fill.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.ctx.cache
    }

    pub(super) fn spawn(&self, id: JobId) {
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
            cert_ticket: self
                .inner
                .ctx
                .cert_wait
                .as_ref()
                .map(|w| w.gate.line_up(id)),
        };
        let mgr = self.clone();
        // Every line the job writes, also from the tasks it starts, carries its id
        // and content.
        let span = tracing::info_span!(
            "job",
            id,
            content = %format!("{}/{}", job.request.content_id, job.request.version)
        );
        self.inner
            .ctx
            .tasks
            .spawn(&format!("job {id}"), move |_agent_stop| {
                tracing::Instrument::instrument(
                    async move {
                        // A panic anywhere in the job fails the job with a code instead of
                        // leaving it "downloading" until a restart.
                        let run = std::panic::AssertUnwindSafe(run_job(&mgr.inner.ctx, &job));
                        let result = match run.catch_unwind().await {
                            Ok(r) => r,
                            Err(payload) => {
                                Err(JobError::panicked("the job task", payload.as_ref()))
                            }
                        };
                        job.live.end();
                        mgr.finish(id, result);
                    },
                    span,
                )
            });
    }

    fn tally(&self, outcome: &'static str, code: u32) {
        *self
            .inner
            .ends
            .lock()
            .expect("ends lock")
            .entry((outcome, code))
            .or_default() += 1;
    }

    /// Jobs ended since the agent started, by outcome (`done`, `failed`,
    /// `cancelled`) and catalogue code.
    pub fn ends(&self) -> Vec<(&'static str, String, u64)> {
        let ends = self.inner.ends.lock().expect("ends lock");
        ends.iter()
            .map(|((o, c), n)| (*o, crate::codes::Code(*c).to_string(), *n))
            .collect()
    }

    /// Jobs in the list, by state (as `status` and `jobs` name them).
    pub fn count_by_state(&self) -> Vec<(String, u64)> {
        let jobs = self.inner.jobs.lock().expect("jobs lock");
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for slot in jobs.values() {
            let state = serde_json::to_value(slot.live.now().state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            *counts.entry(state).or_default() += 1;
        }
        counts.into_iter().collect()
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
                    tracing::info!(job = id, "job done");
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
                                JobState::WaitingForCertificate,
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
            if slot.info.state.is_final() {
                self.ended(slot);
            }
        }
        self.persist();
    }

    /// A job has just become final (done, failed, cancelled): count it for the
    /// metrics, write its `FinalStats` line and keep the record with the job.
    pub(super) fn ended(&self, slot: &mut Slot) {
        if slot.info.final_stats.is_some() {
            // A paused job cancelled while its task wound down: recorded once.
            return;
        }
        let info = slot.snapshot();
        let outcome = match info.state {
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
            _ => "failed",
        };
        self.tally(outcome, info.code);
        let stats = FinalStats {
            outcome: outcome.into(),
            code: Code(info.code).to_string(),
            bytes_total: info.bytes_total,
            bytes_from_origin: info.bytes_from_origin,
            bytes_from_peers: info.bytes_from_peers_by_protocol,
            duration_ms: info.elapsed_ms,
            master: info.master.clone(),
            ended_unix: crate::cache::now_unix(),
        };
        let p = &stats.bytes_from_peers;
        tracing::info!(
            job = info.id,
            content = %format!("{}/{}", info.request.content_id, info.request.version),
            outcome,
            code = %stats.code,
            bytes_total = stats.bytes_total,
            from_origin = stats.bytes_from_origin,
            from_peers_http = p.http,
            from_peers_https = p.https,
            from_peers_smb = p.smb,
            duration_ms = stats.duration_ms,
            master = stats.master.as_deref().unwrap_or("none"),
            "FinalStats"
        );
        slot.info.final_stats = Some(stats);
    }

    pub(super) fn with_slot<T>(
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
        self.find_active(|r| r.content_id == key.id() && r.version == key.version())
            .is_some()
    }

    /// A job not finished that asks for exactly this (same content, version,
    /// destination and hash): a second `get` attaches to it instead of running twice.
    pub(super) fn same_running(&self, req: &JobRequest) -> Option<JobInfo> {
        self.find_active(|r| {
            r.content_id == req.content_id
                && r.version == req.version
                && r.dest == req.dest
                && r.content_hash == req.content_hash
        })
    }

    /// The first job neither finished nor paused whose request `matches`.
    fn find_active(&self, matches: impl Fn(&JobRequest) -> bool) -> Option<JobInfo> {
        let jobs = self.inner.jobs.lock().expect("jobs lock");
        jobs.values()
            .find(|s| {
                let state = s.live.now().state;
                !state.is_final() && state != JobState::Paused && matches(&s.info.request)
            })
            .map(Slot::snapshot)
    }
}

pub(super) fn slot_from(info: JobInfo) -> Slot {
    // A job list written before bytes were kept by protocol has only the total:
    // what is not accounted for by protocol was HTTP, the only protocol then.
    let mut peers = info.bytes_from_peers_by_protocol;
    peers.http += info.bytes_from_peers.saturating_sub(peers.total());
    let live = Live::new(info.state, info.bytes_from_origin, peers, info.elapsed_ms);
    if let Some(m) = &info.master {
        live.set_master(m.clone());
    }
    // A restart keeps the client-certificate wait's deadline (the page).
    live.set_cert_deadline(info.cert_wait_until_unix);
    Slot {
        live: Arc::new(live),
        info,
        stop: None,
    }
}
