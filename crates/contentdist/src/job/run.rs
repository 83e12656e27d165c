//! One job's life: find or fetch the manifest, fill the cache, deliver.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::context::JobContext;
use super::live::Live;
use super::{JobId, JobRequest, JobState, Source};
use crate::cache::{deliver, CacheError, ContentEntry, DeliveryError};
use crate::codes::Code;
use crate::manifest::ContentKey;
use crate::origin::OriginError;

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Talking to the origin failed.
    #[error(transparent)]
    Origin(#[from] OriginError),
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Delivery into the destination failed.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// The origin client could not be set up (not configured, bad CA file).
    #[error("{0}")]
    NoOrigin(Arc<OriginError>),
    /// Copying from the master failed.
    #[error(transparent)]
    Peer(#[from] crate::peer::PeerError),
    /// No valid client certificate (`P2PSslSettings` 0x2): at once in preboot mode,
    /// else after `P2PClientCertWaitPeriodMins`.
    #[error("no valid client certificate: {reason}")]
    ClientCertMissing {
        /// Each certificate considered and why it is not usable.
        reason: String,
    },
    /// A step of the job panicked: a bug. The job fails instead of hanging.
    #[error("internal error in {step}: {detail}")]
    Internal {
        /// The step that panicked.
        step: &'static str,
        /// The panic's message.
        detail: String,
    },
}

impl JobError {
    /// The catalogue code.
    pub fn code(&self) -> Code {
        match self {
            JobError::Origin(e) => e.code(),
            JobError::Cache(e) => e.code(),
            JobError::Delivery(e) if crate::cache::is_disk_full(&e.source) => Code::DISK_FULL,
            JobError::Delivery(_) => Code::DELIVERY_FAILED,
            JobError::NoOrigin(e) => e.code(),
            JobError::Peer(e) => e.code(),
            JobError::ClientCertMissing { .. } => Code::CLIENT_CERT_MISSING,
            JobError::Internal { .. } => Code::INTERNAL_ERROR,
        }
    }

    /// A panic caught in `step`.
    pub(super) fn panicked(step: &'static str, payload: &(dyn std::any::Any + Send)) -> JobError {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        JobError::Internal { step, detail }
    }
}

/// How a run of a job ended, short of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The content is verified (and delivered, when a destination was asked for).
    Done,
    /// The job's token fired (pause, cancel, agent shutdown): the blocks verified so
    /// far stay, and the manager decides what state the job is left in.
    Stopped,
}

/// One run of one job.
pub(super) struct JobRun {
    pub id: JobId,
    pub request: JobRequest,
    pub live: Arc<Live>,
    pub stop: CancellationToken,
    /// Its place at the certificate gate, when client certificates are required.
    pub cert_ticket: Option<super::gate::Ticket>,
}

/// Run the job until it is done, fails, or its token fires. Whatever error a step
/// returns after the token fired is the stop, not a failure.
pub(super) async fn run_job(ctx: &JobContext, job: &JobRun) -> Result<Outcome, JobError> {
    let r = run(ctx, job).await;
    match r {
        Err(_) if job.stop.is_cancelled() => Ok(Outcome::Stopped),
        r => r,
    }
}

/// Wait for a blocking step; its panic fails the job.
async fn joined<T>(
    step: &'static str,
    h: tokio::task::JoinHandle<Result<T, JobError>>,
) -> Result<T, JobError> {
    match h.await {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(JobError::panicked(step, e.into_panic().as_ref())),
        Err(e) => Err(JobError::Internal {
            step,
            detail: e.to_string(),
        }),
    }
}

async fn run(ctx: &JobContext, job: &JobRun) -> Result<Outcome, JobError> {
    let stop = &job.stop;
    // The certificate gate comes before the transfer slots: a job waiting for a
    // certificate holds the others back without holding a slot, and jobs pass the
    // gate in the order they were submitted, also when a restart resumes them all.
    if super::certwait::ensure_client_cert(ctx, job).await? == Outcome::Stopped {
        return Ok(Outcome::Stopped);
    }
    let _permit = tokio::select! {
        p = ctx.permits.acquire() => p.expect("semaphore never closed"),
        _ = stop.cancelled() => return Ok(Outcome::Stopped),
    };
    if !job.live.begin() {
        return Ok(Outcome::Stopped);
    }
    let req = &job.request;
    let key = ContentKey::new(req.content_id.clone(), req.version)
        .map_err(|_| CacheError::InvalidId(req.content_id.clone()))?;
    let lock = ctx.content_lock(&key);
    let _guard = match lock.lock.try_lock() {
        Ok(g) => g,
        Err(_) => {
            // Another job fetches this content: say so, and wait for it.
            if let Some(other) = *lock.holder.lock().expect("holder lock") {
                job.live.report_waiting(other);
            }
            tokio::select! {
                g = lock.lock.lock() => g,
                _ = stop.cancelled() => return Ok(Outcome::Stopped),
            }
        }
    };
    *lock.holder.lock().expect("holder lock") = Some(job.id);
    let _release = ReleaseHolder(&lock.holder);
    let mut early = super::fill::join_before_manifest(ctx, &key)?;
    // The manifest may wait for the election and the master (`super::manifest`): a
    // pause or a cancel ends that wait at once.
    let found = tokio::select! {
        f = find_or_create_entry(
            ctx,
            &key,
            req.content_hash.as_deref(),
            req.priority,
            early.as_mut(),
        ) => f,
        _ = stop.cancelled() => return Ok(Outcome::Stopped),
    };
    let entry = match found {
        Ok(e) => e,
        Err(e) => {
            // Joined for nothing: leave the election, so that no peer follows a
            // master that will never hold the content.
            if let Some(m) = early {
                m.leave();
            }
            return Err(e);
        }
    };
    let lease = entry.lease();
    job.live.report(JobState::Downloading, Source::None);
    job.live.attach(Some(Arc::clone(lease.entry())));
    if entry.is_complete() {
        // A cache hit: the files may have been changed through a delivered hard link
        // since they were verified, so check them before handing them out again.
        job.live.report(JobState::Downloading, Source::Cache);
        let e = Arc::clone(&entry);
        let check = ctx
            .tasks
            .spawn_blocking("re-verify", move || Ok(e.reverify()?));
        joined("re-verification", check).await?;
    }
    if ctx.injected_panic("fill") {
        panic!("injected panic before filling the cache");
    }
    if !entry.is_complete() && super::fill::fill(ctx, job, &entry, early).await? == Outcome::Stopped
    {
        return Ok(Outcome::Stopped);
    }
    if let Some(dest) = req.dest.clone() {
        job.live.report(JobState::Delivering, Source::None);
        let e = Arc::clone(&entry);
        let boom = ctx.injected_panic("delivery");
        let delivery = ctx.tasks.spawn_blocking("delivery", move || {
            assert!(!boom, "injected panic in delivery");
            Ok(deliver(&e, &dest)?)
        });
        let report = joined("delivery", delivery).await?;
        tracing::info!(
            job = job.id,
            linked = report.linked,
            copied = report.copied,
            "content delivered"
        );
    }
    let prio = req.priority;
    entry.update_meta(|m| {
        m.last_used_unix = crate::cache::now_unix();
        m.priority = m.priority.max(prio);
    })?;
    Ok(Outcome::Done)
}

/// Clears the content lock's holder when the holding job's run ends.
struct ReleaseHolder<'a>(&'a std::sync::Mutex<Option<JobId>>);

impl Drop for ReleaseHolder<'_> {
    fn drop(&mut self) {
        *self.0.lock().expect("holder lock") = None;
    }
}

async fn find_or_create_entry(
    ctx: &JobContext,
    key: &ContentKey,
    expect_hash: Option<&str>,
    priority: u8,
    member: Option<&mut crate::subnet::Membership>,
) -> Result<Arc<ContentEntry>, JobError> {
    let cache = &ctx.cache;
    if let Some(e) = cache.get(key)? {
        if e.manifest()
            .check_is(key.id(), key.version(), expect_hash)
            .is_ok()
        {
            return Ok(e);
        }
    }
    let manifest = super::manifest::manifest_for(ctx, key, expect_hash, member).await?;
    let needed = manifest.total_size();
    let policy = *ctx.clean_policy.lock().expect("clean policy lock");
    if let Err(e) = cache.clean(policy, needed) {
        tracing::warn!(error = %e, "cache clean-up before download failed");
    }
    Ok(cache.get_or_create(manifest, priority)?)
}

pub(super) fn origin(ctx: &JobContext) -> Result<&crate::origin::OriginClient, JobError> {
    ctx.origin
        .as_ref()
        .map_err(|e| JobError::NoOrigin(Arc::clone(e)))
}
