//! The job manager against a lab origin: panics fail a job with a code, and a
//! second request for content already being fetched attaches or says it waits.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::cache::Cache;
use crate::codes::Code;
use crate::origin::{OriginClient, OriginOptions};
use crate::tasks::Tasks;
use crate::test_util::{wait_until, TestOrigin};

fn manager(dir: &std::path::Path, origin: &str, tasks: &Tasks) -> JobManager {
    manager_with(dir, origin, tasks, None)
}

/// A manager whose jobs need a client certificate when `cert_wait` is given.
pub(super) fn manager_with(
    dir: &std::path::Path,
    origin: &str,
    tasks: &Tasks,
    cert_wait: Option<Arc<super::CertWait>>,
) -> JobManager {
    JobManager::start(JobManagerOptions {
        cache: Arc::new(Cache::open(&dir.join("cache")).unwrap()),
        origin: OriginClient::new(OriginOptions {
            url: origin.into(),
            ..OriginOptions::default()
        })
        .map_err(Arc::new),
        success_codes: crate::config::Config::default().success_codes,
        clean_policy: Default::default(),
        state_file: dir.join("jobs.json"),
        max_concurrent: 4,
        tasks: tasks.clone(),
        peers: None,
        cert_wait,
    })
}

pub(super) fn request(dir: &std::path::Path, dest: &str) -> JobRequest {
    JobRequest {
        content_id: "JOBS0001".into(),
        version: 1,
        dest: Some(dir.join(dest)),
        content_hash: None,
        priority: 5,
    }
}

pub(super) async fn wait_final(jobs: &JobManager, id: JobId) -> JobInfo {
    wait_until(Duration::from_secs(30), "the job to finish", || async {
        jobs.get(id).unwrap().state.is_final()
    })
    .await;
    jobs.get(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_job_fails_it_with_a_code_and_a_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(dir.path(), "JOBS0001", 1 << 20, None);
    let tasks = Tasks::new(CancellationToken::new());
    let jobs = manager(dir.path(), &origin.url(), &tasks);
    for step in ["delivery", "fill"] {
        jobs.inject_panic(Some(step));
        let job = jobs.submit(request(dir.path(), "dest")).unwrap();
        let done = wait_final(&jobs, job.id).await;
        assert_eq!(done.state, JobState::Failed, "{done:?}");
        assert_eq!(done.code(), Code::INTERNAL_ERROR, "{done:?}");
        let message = done.message.unwrap_or_default();
        assert!(message.contains("injected panic"), "{message}");
    }
    // The agent goes on: the same request runs to the end once nothing panics.
    jobs.inject_panic(None);
    let job = jobs.submit(request(dir.path(), "dest")).unwrap();
    let done = wait_final(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Done, "{done:?}");
    let big = std::fs::read(dir.path().join("dest/sub/big.bin")).unwrap();
    assert_eq!(big, std::fs::read(origin.src.join("sub/big.bin")).unwrap());
    tasks.shutdown();
    tasks.join(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_attaches_to_the_running_job_or_says_it_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    // 4 MiB at 8 MiB/s: the first job runs for about half a second.
    let origin = TestOrigin::start(dir.path(), "JOBS0001", 4 << 20, Some(8 << 20));
    let tasks = Tasks::new(CancellationToken::new());
    let jobs = manager(dir.path(), &origin.url(), &tasks);
    let first = jobs.submit(request(dir.path(), "one")).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the first job to download",
        || async { jobs.get(first.id).unwrap().source == Source::Origin },
    )
    .await;
    // The same request again: the same job, not a second one with false progress.
    let again = jobs.submit(request(dir.path(), "one")).unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(jobs.list().len(), 1);
    // Another destination needs a job of its own, which says whom it waits for.
    let other = jobs.submit(request(dir.path(), "two")).unwrap();
    assert_ne!(other.id, first.id);
    wait_until(
        Duration::from_secs(10),
        "the second job to wait",
        || async { jobs.get(other.id).unwrap().waiting_for == Some(first.id) },
    )
    .await;
    let waiting = jobs.get(other.id).unwrap();
    assert_eq!(waiting.state, JobState::Queued);
    assert_eq!(waiting.bytes_from_origin, 0);
    assert_eq!(wait_final(&jobs, first.id).await.state, JobState::Done);
    let second = wait_final(&jobs, other.id).await;
    assert_eq!(second.state, JobState::Done, "{second:?}");
    assert_eq!(second.waiting_for, None);
    // The content crossed the WAN once.
    assert_eq!(second.bytes_from_origin, 0);
    tasks.shutdown();
    tasks.join(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_end_is_recorded_once_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // 4 MiB at 4 MiB/s: time to pause a job before it is done.
    let origin = TestOrigin::start(dir.path(), "JOBS0001", 4 << 20, Some(4 << 20));
    let tasks = Tasks::new(CancellationToken::new());
    let jobs = manager(dir.path(), &origin.url(), &tasks);
    let (cancelled_code, failed_code) = (
        Code::CANCELLED.to_string(),
        Code::INTERNAL_ERROR.to_string(),
    );
    // Cancelled while paused (no task runs it then): recorded by the cancel itself.
    let paused = jobs.submit(request(dir.path(), "b")).unwrap();
    jobs.pause(paused.id).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the paused job's task to end",
        || async { jobs.cancel(paused.id).is_ok() },
    )
    .await;
    let cancelled = jobs.get(paused.id).unwrap();
    let c = cancelled
        .final_stats
        .clone()
        .expect("a cancelled job's record");
    assert_eq!(
        (c.outcome.as_str(), c.code.as_str()),
        ("cancelled", cancelled_code.as_str())
    );
    // Failed: the panic's code, in the record; it downloaded the content.
    jobs.inject_panic(Some("delivery"));
    let failed = jobs.submit(request(dir.path(), "a")).unwrap();
    let failed = wait_final(&jobs, failed.id).await;
    jobs.inject_panic(None);
    let f = failed.final_stats.clone().expect("a failed job's record");
    assert_eq!(
        (f.outcome.as_str(), f.code.as_str()),
        ("failed", failed_code.as_str())
    );
    assert!(f.bytes_from_origin > 0 && f.master.is_none(), "{f:?}");
    // Done, from the cache.
    let done = jobs.submit(request(dir.path(), "c")).unwrap();
    let done = wait_final(&jobs, done.id).await;
    let d = done.final_stats.clone().expect("a done job's record");
    assert_eq!((d.outcome.as_str(), d.code.as_str()), ("done", "0x0"));
    assert_eq!(
        (d.bytes_total, d.bytes_from_origin),
        (done.bytes_total, 0),
        "{d:?}"
    );
    assert!(d.bytes_total >= 4 << 20, "{d:?}");
    // Counted once each, whatever path ended them.
    let mut ends = jobs.ends();
    ends.sort();
    assert_eq!(
        ends,
        vec![
            ("cancelled", cancelled_code, 1),
            ("done", "0x0".to_string(), 1),
            ("failed", failed_code, 1)
        ]
    );
    tasks.shutdown();
    tasks.join(Duration::from_secs(10)).await.unwrap();
    jobs.persist();
    // The records stay with the jobs across a restart.
    let tasks = Tasks::new(CancellationToken::new());
    let again = manager(dir.path(), &origin.url(), &tasks);
    let kept: Vec<_> = again.list().iter().map(|j| j.final_stats.clone()).collect();
    assert_eq!(kept, vec![Some(c), Some(f), Some(d)]);
    // Saved twice (the list and its spare), then the list cut short as a power
    // loss may leave it: the next start takes the version before, from the spare.
    again.persist();
    again.persist();
    tasks.shutdown();
    tasks.join(Duration::from_secs(10)).await.unwrap();
    let state = dir.path().join("jobs.json");
    let whole = std::fs::read(&state).unwrap();
    // Within the JSON, not its padding of spaces.
    let json_end = whole.iter().rposition(|&b| b == b'}').unwrap();
    std::fs::write(&state, &whole[..json_end / 2]).unwrap();
    let tasks = Tasks::new(CancellationToken::new());
    let third = manager(dir.path(), &origin.url(), &tasks);
    let restored: Vec<_> = third.list().iter().map(|j| j.final_stats.clone()).collect();
    assert_eq!(restored, kept);
    tasks.shutdown();
    tasks.join(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waiting_for_a_change_hears_of_each_until_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(dir.path(), "JOBS0001", 1 << 20, None);
    let tasks = Tasks::new(CancellationToken::new());
    let jobs = manager(dir.path(), &origin.url(), &tasks);
    let job = jobs.submit(request(dir.path(), "dest")).unwrap();
    let mut now = job;
    // No polling: each wait ends only when the state moves on.
    while !now.state.is_final() {
        tokio::time::timeout(Duration::from_secs(30), jobs.left(now.id, now.state))
            .await
            .unwrap_or_else(|_| panic!("the job stayed {} for 30 s", now.state));
        now = jobs.get(now.id).unwrap();
    }
    // Woken by the end, the caller reads the finished record.
    assert_eq!((now.state, now.code), (JobState::Done, 0), "{now:?}");
    // 1 MiB and the 10-byte small.txt.
    assert_eq!(
        (now.bytes_verified, now.bytes_total),
        ((1 << 20) + 10, (1 << 20) + 10)
    );
    assert!(now.final_stats.is_some());
    tasks.shutdown();
    tasks.join(Duration::from_secs(10)).await.unwrap();
}
