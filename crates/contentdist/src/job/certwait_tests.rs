//! The missing-client-certificate wait on a shortened clock: a job waits and holds
//! the others back, goes on when a certificate is dropped in (found by the store
//! watcher at once, or unwatched at the next retry), keeps its deadline across a
//! pause and a restart, fails with 0x209A at the deadline or at once in preboot.

use std::sync::Arc;
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose::ClientAuth;
use tokio_util::sync::CancellationToken;

use super::tests::{manager_with, request, wait_final};
use super::*;
use crate::certstore::{CertStore, ClientCertOptions, ClientCerts, ClientRules};
use crate::codes::Code;
use crate::tasks::Tasks;
use crate::test_util::{wait_until, TestCa, TestOrigin};

struct Setup {
    dir: tempfile::TempDir,
    store: Arc<CertStore>,
    certs: Arc<ClientCerts>,
    ca: TestCa,
    origin: TestOrigin,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let origin = TestOrigin::start(dir.path(), "JOBS0001", 1 << 20, None);
        let store = Arc::new(CertStore::new(&dir.path().join("store")));
        let certs = Arc::new(ClientCerts::new(ClientCertOptions {
            store: Arc::clone(&store),
            rules: ClientRules::default(),
            boot_image: None,
            preboot: false,
        }));
        Setup {
            dir,
            store,
            certs,
            ca: TestCa::new("Branch CA"),
            origin,
        }
    }

    fn wait(&self, preboot: bool, period: Duration, retry: Duration) -> Arc<CertWait> {
        Arc::new(CertWait::new(
            Arc::clone(&self.certs),
            Arc::clone(&self.store),
            preboot,
            period,
            retry,
        ))
    }

    fn manager(&self, tasks: &Tasks, wait: &Arc<CertWait>) -> JobManager {
        manager_with(
            self.dir.path(),
            &self.origin.url(),
            tasks,
            Some(Arc::clone(wait)),
        )
    }

    /// A usable client certificate appears in the store's `my/`.
    fn drop_in_certificate(&self) {
        let (cert, key) = self
            .ca
            .leaf_pem(&["pc1.branch.example"], (-1, 30), ClientAuth);
        let my = self.dir.path().join("store/my");
        std::fs::create_dir_all(&my).unwrap();
        std::fs::write(my.join("pc1.pem"), format!("{cert}{key}")).unwrap();
    }

    /// What the agent's store refresh does every `CertStoreRefreshSecs`.
    fn watcher_looks(&self) {
        self.store.refresh_logged();
        self.certs.refresh(crate::cache::now_unix() as i64);
    }
}

async fn state_is(jobs: &JobManager, id: JobId, state: JobState) {
    wait_until(Duration::from_secs(20), "the job's state", || async {
        jobs.get(id).unwrap().state == state
    })
    .await;
}

async fn stop(tasks: Tasks) {
    tasks.shutdown();
    tasks.join(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_job_holds_the_others_and_goes_on_as_soon_as_the_watcher_finds_a_certificate() {
    let s = Setup::new();
    let tasks = Tasks::new(CancellationToken::new());
    // Retries far apart: only the watcher can end this wait in time.
    let wait = s.wait(false, Duration::from_secs(3600), Duration::from_secs(600));
    let jobs = s.manager(&tasks, &wait);
    let first = jobs.submit(request(s.dir.path(), "one")).unwrap();
    state_is(&jobs, first.id, JobState::WaitingForCertificate).await;
    let waiting = jobs.get(first.id).unwrap();
    let now = crate::cache::now_unix();
    let until = waiting.cert_wait_until_unix.expect("a deadline");
    assert!(
        (now + 3590..=now + 3600).contains(&until),
        "{until} vs {now}"
    );
    // No other job is processed meanwhile: it says whom it waits for.
    let second = jobs.submit(request(s.dir.path(), "two")).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the second job to wait",
        || async { jobs.get(second.id).unwrap().waiting_for == Some(first.id) },
    )
    .await;
    assert_eq!(jobs.get(second.id).unwrap().bytes_from_origin, 0);
    s.drop_in_certificate();
    s.watcher_looks();
    let done = wait_final(&jobs, first.id).await;
    assert_eq!(done.state, JobState::Done, "{done:?}");
    assert_eq!(done.cert_wait_until_unix, None);
    assert_eq!(wait_final(&jobs, second.id).await.state, JobState::Done);
    stop(tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwatched_the_certificate_is_found_at_the_next_retry() {
    let s = Setup::new();
    let tasks = Tasks::new(CancellationToken::new());
    let wait = s.wait(false, Duration::from_secs(3600), Duration::from_millis(300));
    let jobs = s.manager(&tasks, &wait);
    let job = jobs.submit(request(s.dir.path(), "one")).unwrap();
    state_is(&jobs, job.id, JobState::WaitingForCertificate).await;
    // Nobody refreshes the store: the job's own retry reads it.
    s.drop_in_certificate();
    let done = wait_final(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Done, "{done:?}");
    stop(tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_survives_a_pause_and_a_restart_then_fails_the_job_with_0x209a() {
    let s = Setup::new();
    let wait = s.wait(false, Duration::from_secs(4), Duration::from_millis(200));
    let tasks = Tasks::new(CancellationToken::new());
    let jobs = s.manager(&tasks, &wait);
    let job = jobs.submit(request(s.dir.path(), "one")).unwrap();
    state_is(&jobs, job.id, JobState::WaitingForCertificate).await;
    let until = jobs.get(job.id).unwrap().cert_wait_until_unix.unwrap();
    // A pause keeps the wait (and its deadline).
    jobs.pause(job.id).unwrap();
    state_is(&jobs, job.id, JobState::Paused).await;
    assert_eq!(jobs.get(job.id).unwrap().cert_wait_until_unix, Some(until));
    jobs.resume(job.id).unwrap();
    state_is(&jobs, job.id, JobState::WaitingForCertificate).await;
    assert_eq!(jobs.get(job.id).unwrap().cert_wait_until_unix, Some(until));
    // A restart of the agent keeps it too (jobs.json).
    jobs.persist();
    stop(tasks).await;
    let tasks = Tasks::new(CancellationToken::new());
    let jobs = s.manager(&tasks, &wait);
    state_is(&jobs, job.id, JobState::WaitingForCertificate).await;
    assert_eq!(jobs.get(job.id).unwrap().cert_wait_until_unix, Some(until));
    let failed = wait_final(&jobs, job.id).await;
    assert_eq!(failed.state, JobState::Failed, "{failed:?}");
    assert_eq!(failed.code(), Code::CLIENT_CERT_MISSING);
    assert!(
        failed.code_in_success_codes,
        "0x209A is in the default SuccessCodes"
    );
    assert!(crate::cache::now_unix() >= until);
    let message = failed.message.unwrap_or_default();
    assert!(message.contains("P2PClientCertWaitPeriodMins"), "{message}");
    stop(tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_preboot_the_job_fails_at_once_and_a_cancel_ends_a_wait() {
    let s = Setup::new();
    let tasks = Tasks::new(CancellationToken::new());
    let preboot = s.wait(true, Duration::from_secs(3600), Duration::from_secs(600));
    let jobs = s.manager(&tasks, &preboot);
    let started = std::time::Instant::now();
    let job = jobs.submit(request(s.dir.path(), "one")).unwrap();
    let failed = wait_final(&jobs, job.id).await;
    assert_eq!(failed.code(), Code::CLIENT_CERT_MISSING, "{failed:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(failed.message.unwrap_or_default().contains("preboot"));
    stop(tasks).await;

    let s = Setup::new();
    let tasks = Tasks::new(CancellationToken::new());
    let wait = s.wait(false, Duration::from_secs(3600), Duration::from_secs(600));
    let jobs = s.manager(&tasks, &wait);
    let job = jobs.submit(request(s.dir.path(), "one")).unwrap();
    state_is(&jobs, job.id, JobState::WaitingForCertificate).await;
    jobs.cancel(job.id).unwrap();
    let cancelled = wait_final(&jobs, job.id).await;
    assert_eq!(cancelled.state, JobState::Cancelled, "{cancelled:?}");
    assert_eq!(cancelled.code(), Code::CANCELLED);
    assert_eq!(
        cancelled.cert_wait_until_unix, None,
        "a cancel ends the wait"
    );
    stop(tasks).await;
}
