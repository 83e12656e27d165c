//! The agent's own background work: repairing damaged content and the periodic
//! cache clean-up. Both run as accounted tasks.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::job::{JobManager, JobRequest};
use crate::tasks::Tasks;

/// Fetch again the blocks of content that lost some (a delivered hard link was
/// written to, found when the peer server or a job re-hashed it): a complete entry
/// has no job that would, and peers would wait for ever on a master that announces
/// it but cannot serve it. A repair is a job without destination; as master it
/// downloads only the missing blocks, and peers waiting on them take them as usual.
pub(super) async fn repair_damaged(
    jobs: JobManager,
    mut damaged: tokio::sync::broadcast::Receiver<crate::manifest::ContentKey>,
    stop: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let key = tokio::select! {
            r = damaged.recv() => match r {
                Ok(key) => key,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "damage notices lost; those contents are fetched again by their next job");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
            _ = stop.cancelled() => return,
        };
        if jobs.is_fetching(&key) {
            continue;
        }
        let Ok(Some(entry)) = jobs.cache().get(&key) else {
            continue;
        };
        if entry.is_complete() {
            continue;
        }
        let request = JobRequest {
            content_id: key.id().to_string(),
            version: key.version(),
            dest: None,
            content_hash: Some(entry.manifest().content_hash.clone()),
            priority: entry.meta().priority,
        };
        match jobs.submit(request) {
            Ok(job) => {
                tracing::warn!(job = job.id, content = %key, "cached blocks changed: repairing the content")
            }
            Err(e) => tracing::warn!(content = %key, error = %e, "could not start the repair"),
        }
    }
}

pub(super) async fn clean_cycle(
    jobs: JobManager,
    period: Duration,
    tasks: Tasks,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // The limits in force now: a reload may have changed them.
        let (c, policy) = (Arc::clone(jobs.cache()), jobs.clean_policy());
        match tasks
            .spawn_blocking("cache clean-up", move || c.clean(policy, 0))
            .await
        {
            Ok(Err(e)) => tracing::warn!(error = %e, "periodic cache clean-up failed"),
            Err(e) => tracing::warn!(error = %e, "periodic cache clean-up panicked"),
            Ok(Ok(_)) => {}
        }
    }
}
