//! The job operations the control socket offers: submit (or attach), list, get,
//! pause, resume, cancel, and the cache's list and clean-up.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt};

use super::manager::{slot_from, JobManager, Slot};
use super::{ControlError, JobId, JobInfo, JobRequest, JobState, Source};
use crate::cache::{CacheEntryInfo, CleanReport};
use crate::codes::Code;

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
            bytes_from_peers_by_protocol: Default::default(),
            master: None,
            source: Source::None,
            waiting_for: None,
            cert_wait_until_unix: None,
            elapsed_ms: 0,
            final_stats: None,
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

    /// Ends once job `id`'s state is no longer `seen` (at once for an unknown job):
    /// what a caller following a job waits on instead of asking again and again.
    pub fn left(&self, id: JobId, seen: JobState) -> BoxFuture<'static, ()> {
        match self.with_slot(id, |s| Ok(Arc::clone(&s.live))) {
            Ok(live) => async move { live.left(seen).await }.boxed(),
            Err(_) => std::future::ready(()).boxed(),
        }
    }

    /// Pause a running or queued job.
    pub fn pause(&self, id: JobId) -> Result<JobInfo, ControlError> {
        let info = self.with_slot(id, |s| {
            let running = [
                JobState::Queued,
                JobState::Downloading,
                JobState::WaitingForCertificate,
                JobState::Delivering,
            ];
            if !s.live.force_if(&running, JobState::Paused) {
                match s.live.now().state {
                    JobState::Paused => return Ok(s.snapshot()),
                    st => {
                        return Err(ControlError::new(
                            Code::BAD_REQUEST,
                            format!("job {id} is {st} and cannot be paused"),
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
                    format!("job {id} is {state}, not paused"),
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
                    format!("job {id} has already finished ({state})"),
                ));
            }
            s.live.force(JobState::Cancelled);
            // A cancel ends a client-certificate wait (a pause does not).
            s.live.set_cert_deadline(None);
            s.info.code = Code::CANCELLED.0;
            s.info.message = Some("cancelled by request".into());
            s.info.code_in_success_codes = self.inner.success_codes.contains(Code::CANCELLED);
            match s.stop.take() {
                // Its task ends it (and records its end) as it winds down.
                Some(stop) => stop.cancel(),
                // Paused, or queued before its task ran: ends here.
                None => self.ended(s),
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
            .clean(self.clean_policy(), 0)
            .map_err(|e| ControlError::new(e.code(), e.to_string()))
    }
}
