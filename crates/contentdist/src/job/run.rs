//! One job's life: find or fetch the manifest, fill the cache, deliver.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::manager::Inner;
use super::{JobId, JobState, Source};
use crate::cache::{deliver, CacheError, ContentEntry, DeliveryError};
use crate::codes::Code;
use crate::manifest::ContentKey;
use crate::origin::OriginError;

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Paused or cancelled while running.
    #[error("stopped")]
    Stopped,
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
}

impl JobError {
    /// The catalogue code.
    pub fn code(&self) -> Code {
        match self {
            JobError::Stopped => Code::CANCELLED,
            JobError::Origin(OriginError::Stopped) => Code::CANCELLED,
            JobError::Origin(e) => e.code(),
            JobError::Cache(e) => e.code(),
            JobError::Delivery(e) if crate::cache::is_disk_full(&e.source) => Code::DISK_FULL,
            JobError::Delivery(_) => Code::DELIVERY_FAILED,
            JobError::NoOrigin(e) => e.code(),
            JobError::Peer(e) => e.code(),
        }
    }
}

pub(super) fn set_state(inner: &Inner, id: JobId, state: JobState, source: Source) {
    let mut jobs = inner.jobs.lock().expect("jobs lock");
    if let Some(s) = jobs.get_mut(&id) {
        // Never overwrite a pause or cancel that arrived meanwhile.
        if !matches!(s.info.state, JobState::Paused | JobState::Cancelled) {
            s.info.state = state;
            s.info.source = source;
        }
    }
}

/// Run job `id` until it is done, fails, or `stop` fires.
pub(super) async fn run_job(
    inner: &Arc<Inner>,
    id: JobId,
    stop: &CancellationToken,
) -> Result<(), JobError> {
    let _permit = tokio::select! {
        p = inner.permits.acquire() => p.expect("semaphore never closed"),
        _ = stop.cancelled() => return Err(JobError::Stopped),
    };
    let (req, from_origin, from_peers) = {
        let mut jobs = inner.jobs.lock().expect("jobs lock");
        let slot = jobs.get_mut(&id).ok_or(JobError::Stopped)?;
        if matches!(slot.info.state, JobState::Paused | JobState::Cancelled) {
            return Err(JobError::Stopped);
        }
        slot.started = Some(Instant::now());
        slot.info.state = JobState::Downloading;
        (
            slot.info.request.clone(),
            Arc::clone(&slot.from_origin),
            Arc::clone(&slot.from_peers),
        )
    };
    let key = ContentKey::new(req.content_id.clone(), req.version)
        .map_err(|_| CacheError::InvalidId(req.content_id.clone()))?;
    let entry =
        find_or_create_entry(inner, &key, req.content_hash.as_deref(), req.priority).await?;
    let lease = entry.lease();
    {
        let mut jobs = inner.jobs.lock().expect("jobs lock");
        if let Some(s) = jobs.get_mut(&id) {
            s.entry = Some(Arc::clone(lease.entry()));
        }
    }
    // One transfer per content at a time: a second job for the same content waits
    // and then finds the blocks verified.
    let lock = {
        let mut locks = inner.content_locks.lock().expect("locks lock");
        Arc::clone(locks.entry(key.clone()).or_default())
    };
    let _guard = tokio::select! {
        g = lock.lock() => g,
        _ = stop.cancelled() => return Err(JobError::Stopped),
    };
    if entry.is_complete() {
        // A cache hit: the files may have been changed through a delivered hard link
        // since they were verified, so check them before handing them out again.
        set_state(inner, id, JobState::Downloading, Source::Cache);
        let e = Arc::clone(&entry);
        tokio::task::spawn_blocking(move || e.reverify())
            .await
            .expect("reverify task")?;
    }
    if !entry.is_complete() {
        super::fill::fill(inner, id, &entry, &from_origin, &from_peers, stop).await?;
    }
    if let Some(dest) = req.dest.clone() {
        set_state(inner, id, JobState::Delivering, Source::None);
        let e = Arc::clone(&entry);
        let report = tokio::task::spawn_blocking(move || deliver(&e, &dest))
            .await
            .expect("delivery task")?;
        tracing::info!(
            job = id,
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
    Ok(())
}

async fn find_or_create_entry(
    inner: &Arc<Inner>,
    key: &ContentKey,
    expect_hash: Option<&str>,
    priority: u8,
) -> Result<Arc<ContentEntry>, JobError> {
    let cache = &inner.opts.cache;
    if let Some(e) = cache.get(key)? {
        if e.manifest()
            .check_is(key.id(), key.version(), expect_hash)
            .is_ok()
        {
            return Ok(e);
        }
    }
    let origin = origin(inner)?;
    let manifest = origin
        .fetch_manifest(key.id(), key.version(), expect_hash)
        .await?;
    let needed = manifest.total_size();
    if let Err(e) = cache.clean(inner.opts.clean_policy, needed) {
        tracing::warn!(error = %e, "cache clean-up before download failed");
    }
    Ok(cache.get_or_create(manifest, priority)?)
}

pub(super) fn origin(inner: &Inner) -> Result<&crate::origin::OriginClient, JobError> {
    inner
        .opts
        .origin
        .as_ref()
        .map_err(|e| JobError::NoOrigin(Arc::clone(e)))
}
