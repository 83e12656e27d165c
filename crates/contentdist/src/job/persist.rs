//! Keeping the job list on disk (`CacheDir/jobs.json`): at every change of state,
//! every half second while a job runs (so byte counts survive `kill -9`), and in
//! place of the old file when the disk is full (so a failure is still recorded).

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::manager::{JobManager, Slot};
use super::{JobId, JobInfo};

/// Finished jobs kept for `contentdist jobs`; older ones are forgotten.
const KEEP_FINISHED: usize = 200;

/// How often running jobs are saved (their byte counts move all the time).
const PERSIST_PERIOD: std::time::Duration = std::time::Duration::from_millis(500);

/// Room kept at the end of `jobs.json` (spaces, which JSON ignores) so that the list
/// can be rewritten in place when the disk is full: a failure with its message is a
/// few hundred bytes more.
const JOBS_RESERVE: usize = 16 * 1024;

/// Write `bytes` as the job list at `path`. Normally swapped in whole from the spare
/// file beside it (`jobs.tmp`, see [`crate::util::replace_file`]), padded with
/// [`JOBS_RESERVE`] spaces; when the disk is full, over the old file's own (already
/// allocated) bytes instead, which needs no new space. A spare that a failed save
/// may have half written never stays behind.
fn write_jobs(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut padded = bytes.to_vec();
    padded.push(b'\n');
    padded.resize((bytes.len() + JOBS_RESERVE).next_multiple_of(4096), b' ');
    let Err(e) = crate::util::replace_file(path, &padded, false) else {
        return Ok(());
    };
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

#[derive(Serialize, Deserialize)]
pub(super) struct Persisted {
    pub(super) next_id: JobId,
    pub(super) jobs: Vec<JobInfo>,
}

impl JobManager {
    /// Save the jobs every [`PERSIST_PERIOD`] while any runs, so that their byte
    /// counts survive a crash (`kill -9`) up to that period.
    pub(super) async fn persist_while_running(self, stop: CancellationToken) {
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
}
