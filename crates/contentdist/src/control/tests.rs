//! The control socket end to end: a fake [`JobControl`] behind a real Unix socket.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::cache::{CacheEntryInfo, CleanReport};
use crate::codes::Code;
use crate::job::{ControlError, JobControl, JobId, JobInfo, JobRequest, JobState, Source};

/// Fails the test instead of hanging it.
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("test timed out")
}

/// A job manager in memory with the real one's rules: unknown jobs and state
/// conflicts are refused with BAD_REQUEST.
#[derive(Default)]
struct FakeJobs {
    jobs: Arc<Mutex<Vec<JobInfo>>>,
    /// Woken at every change of a job's state.
    changed: Arc<tokio::sync::Notify>,
    /// Requests waiting in `left` now.
    waiting: Arc<AtomicUsize>,
}

impl FakeJobs {
    fn change(
        &self,
        id: JobId,
        allowed: &[JobState],
        to: JobState,
    ) -> Result<JobInfo, ControlError> {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs
            .iter_mut()
            .find(|j| j.id == id)
            .ok_or_else(|| ControlError::new(Code::BAD_REQUEST, format!("no job {id}")))?;
        if !allowed.contains(&job.state) {
            return Err(ControlError::new(
                Code::BAD_REQUEST,
                format!("job {id} is {}", job.state),
            ));
        }
        job.state = to;
        self.changed.notify_waiters();
        Ok(job.clone())
    }
}

impl JobControl for FakeJobs {
    fn submit(&self, request: JobRequest) -> Result<JobInfo, ControlError> {
        if request.content_id.is_empty() {
            return Err(ControlError::new(Code::BAD_REQUEST, "content id is empty"));
        }
        let mut jobs = self.jobs.lock().unwrap();
        let info = JobInfo {
            id: jobs.len() as JobId + 1,
            request,
            state: JobState::Queued,
            code: 0,
            message: None,
            code_in_success_codes: false,
            bytes_total: 1000,
            bytes_verified: 250,
            bytes_from_origin: 250,
            bytes_from_peers: 0,
            bytes_from_peers_by_protocol: Default::default(),
            master: None,
            source: Source::Origin,
            waiting_for: None,
            cert_wait_until_unix: None,
            elapsed_ms: 12,
            final_stats: None,
        };
        jobs.push(info.clone());
        Ok(info)
    }

    fn list(&self) -> Vec<JobInfo> {
        self.jobs.lock().unwrap().clone()
    }

    fn get(&self, id: JobId) -> Result<JobInfo, ControlError> {
        let jobs = self.jobs.lock().unwrap();
        let job = jobs.iter().find(|j| j.id == id);
        job.cloned()
            .ok_or_else(|| ControlError::new(Code::BAD_REQUEST, format!("no job {id}")))
    }

    fn left(&self, id: JobId, seen: JobState) -> BoxFuture<'static, ()> {
        let (jobs, changed, waiting) = (
            Arc::clone(&self.jobs),
            Arc::clone(&self.changed),
            Arc::clone(&self.waiting),
        );
        async move {
            let state = || {
                let jobs = jobs.lock().unwrap();
                jobs.iter().find(|j| j.id == id).map(|j| j.state)
            };
            waiting.fetch_add(1, Ordering::SeqCst);
            loop {
                let notified = changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if state() != Some(seen) {
                    break;
                }
                notified.await;
            }
            waiting.fetch_sub(1, Ordering::SeqCst);
        }
        .boxed()
    }

    fn pause(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.change(id, &[JobState::Queued], JobState::Paused)
    }

    fn resume(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.change(id, &[JobState::Paused], JobState::Queued)
    }

    fn cancel(&self, id: JobId) -> Result<JobInfo, ControlError> {
        self.change(
            id,
            &[JobState::Queued, JobState::Paused],
            JobState::Cancelled,
        )
    }

    fn status(&self) -> AgentStatus {
        AgentStatus {
            version: "fake".into(),
            jobs_total: self.jobs.lock().unwrap().len(),
            ..AgentStatus::default()
        }
    }

    fn cache_list(&self) -> Vec<CacheEntryInfo> {
        vec![CacheEntryInfo {
            content_id: "PKG00001".into(),
            version: 3,
            bytes_total: 1000,
            bytes_verified: 1000,
            complete: true,
            priority: 5,
            last_used_unix: 1_700_000_000,
            in_use: false,
        }]
    }

    fn cache_clean(&self) -> Result<CleanReport, ControlError> {
        Ok(CleanReport {
            removed: vec!["PKG00001/3 (over MaxCacheSizeMB)".into()],
            bytes_freed: 1000,
        })
    }
}

/// A served fake in a temporary directory; cancels and joins on `stop`.
struct Served {
    _dir: tempfile::TempDir,
    path: PathBuf,
    /// The fake's count of waiting requests.
    waiting: Arc<AtomicUsize>,
    token: CancellationToken,
    server: ControlServer,
}

impl Served {
    fn start() -> Served {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/control.sock");
        let token = CancellationToken::new();
        let jobs = FakeJobs::default();
        let waiting = Arc::clone(&jobs.waiting);
        let server = ControlServer::start(&path, Arc::new(jobs), token.clone()).unwrap();
        Served {
            _dir: dir,
            path,
            waiting,
            token,
            server,
        }
    }

    fn client(&self) -> ControlClient {
        ControlClient::new(&self.path)
    }

    async fn stop(self) {
        self.token.cancel();
        self.server.join().await;
    }
}

/// One raw HTTP/1.1 exchange, to see status codes the client hides.
async fn raw(path: &Path, method: &str, uri: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    let head = format!(
        "{method} {uri} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading the whole body and close; ignore
    // a write error then.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8(answer).unwrap();
    let status = text[9..12].parse().unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(body).unwrap())
}

fn request(content_id: &str) -> JobRequest {
    JobRequest {
        content_id: content_id.into(),
        version: 3,
        dest: Some("/srv/pkg".into()),
        content_hash: Some("ab".repeat(32)),
        priority: 7,
    }
}

#[tokio::test]
async fn every_route_round_trips_through_a_real_socket() {
    let served = Served::start();
    let client = served.client();
    within(async {
        let job = client.submit(&request("PKG00001")).await.unwrap();
        assert_eq!((job.id, job.state), (1, JobState::Queued));
        assert_eq!(job.request, request("PKG00001"));
        assert_eq!(job.source, Source::Origin);
        client.submit(&request("PKG00002")).await.unwrap();

        let ids: Vec<JobId> = client.list().await.unwrap().iter().map(|j| j.id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(client.get(2).await.unwrap().request.content_id, "PKG00002");
        assert_eq!(client.pause(1).await.unwrap().state, JobState::Paused);
        assert_eq!(client.resume(1).await.unwrap().state, JobState::Queued);
        assert_eq!(client.cancel(1).await.unwrap().state, JobState::Cancelled);
        assert_eq!(client.get(1).await.unwrap().state, JobState::Cancelled);

        let status = client.status().await.unwrap();
        assert_eq!((status.version.as_str(), status.jobs_total), ("fake", 2));
        assert_eq!(
            client.cache_list().await.unwrap(),
            FakeJobs::default().cache_list()
        );
        assert_eq!(
            client.cache_clean().await.unwrap(),
            FakeJobs::default().cache_clean().unwrap()
        );
    })
    .await;
    within(served.stop()).await;
}

#[tokio::test]
async fn a_wait_for_a_change_is_answered_when_the_state_changes_or_after_its_time() {
    let served = Served::start();
    let client = served.client();
    within(async {
        let job = client.submit(&request("PKG00001")).await.unwrap();
        // A wait on a state the job has left: answered at once.
        let started = Instant::now();
        let now = client
            .get_when_changed(job.id, JobState::Downloading, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(now.state, JobState::Queued);
        assert!(started.elapsed() < Duration::from_millis(1500));
        // The state stays: answered after the time asked for, as it is.
        let started = Instant::now();
        let now = client
            .get_when_changed(job.id, JobState::Queued, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(now.state, JobState::Queued);
        assert!(started.elapsed() >= Duration::from_millis(300));
        // It changes while the request waits: answered then, not after 2 s.
        let waiter = {
            let client = served.client();
            tokio::spawn(async move {
                let started = Instant::now();
                let now = client
                    .get_when_changed(job.id, JobState::Queued, Duration::from_secs(2))
                    .await
                    .unwrap();
                (now.state, started.elapsed())
            })
        };
        while served.waiting.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        client.cancel(job.id).await.unwrap();
        let (state, took) = waiter.await.unwrap();
        assert_eq!(state, JobState::Cancelled);
        assert!(
            took < Duration::from_millis(1500),
            "answered after {took:?}"
        );
    })
    .await;
    within(served.stop()).await;
}

#[tokio::test]
async fn a_bad_wait_query_is_400_naming_it() {
    let served = Served::start();
    within(served.client().submit(&request("PKG00001")))
        .await
        .unwrap();
    for (query, named) in [
        (
            "state=sleeping&wait_ms=5",
            "'state=sleeping' is not a job state",
        ),
        (
            "state=queued&wait_ms=soon",
            "'wait_ms=soon' is not a number",
        ),
        ("state=queued", "needs both state and wait_ms"),
        ("since=3", "'since=3' is not a query this route takes"),
    ] {
        let uri = format!("/v1/jobs/1?{query}");
        let (status, err) = within(raw(&served.path, "GET", &uri, b"")).await;
        assert_eq!(status, 400, "{query}");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(named), "{query}: {message}");
    }
    within(served.stop()).await;
}

#[tokio::test]
async fn submit_answers_201_with_the_job() {
    let served = Served::start();
    let body = serde_json::to_vec(&request("PKG00001")).unwrap();
    let (status, job) = within(raw(&served.path, "POST", "/v1/jobs", &body)).await;
    assert_eq!(status, 201);
    assert_eq!(job["id"], 1);
    assert_eq!(job["state"], "queued");
    within(served.stop()).await;
}

#[tokio::test]
async fn bad_json_is_400_with_a_message() {
    let served = Served::start();
    let (status, err) = within(raw(&served.path, "POST", "/v1/jobs", b"{\"content_id\": 3")).await;
    assert_eq!(status, 400);
    assert_eq!(err["code"], Code::BAD_REQUEST.0);
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("not a valid job request"), "{message}");

    let (status, err) = within(raw(&served.path, "GET", "/v1/jobs/seven", b"")).await;
    assert_eq!(status, 400);
    assert!(err["message"].as_str().unwrap().contains("'seven'"));
    within(served.stop()).await;
}

#[tokio::test]
async fn handler_refusal_of_a_submit_is_400_and_reaches_the_client() {
    let served = Served::start();
    let body = serde_json::to_vec(&request("")).unwrap();
    let (status, _) = within(raw(&served.path, "POST", "/v1/jobs", &body)).await;
    assert_eq!(status, 400);
    let err = within(served.client().submit(&request("")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::BAD_REQUEST);
    assert!(err.to_string().contains("content id is empty"), "{err}");
    within(served.stop()).await;
}

#[tokio::test]
async fn unknown_job_is_404_and_unknown_route_is_404() {
    let served = Served::start();
    let (status, err) = within(raw(&served.path, "GET", "/v1/jobs/99", b"")).await;
    assert_eq!(status, 404);
    assert_eq!(err["message"], "no job 99");
    let (status, _) = within(raw(&served.path, "POST", "/v1/jobs/99/cancel", b"")).await;
    assert_eq!(status, 404);
    let (status, err) = within(raw(&served.path, "GET", "/v2/jobs", b"")).await;
    assert_eq!(status, 404);
    assert!(err["message"].as_str().unwrap().contains("no such route"));

    match within(served.client().pause(99)).await {
        Err(ClientError::Refused(e)) => assert_eq!(e.message, "no job 99"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    within(served.stop()).await;
}

#[tokio::test]
async fn state_conflict_is_409_and_wrong_method_is_405() {
    let served = Served::start();
    let client = served.client();
    within(async {
        client.submit(&request("PKG00001")).await.unwrap();
        client.cancel(1).await.unwrap();
        let (status, err) = raw(&served.path, "POST", "/v1/jobs/1/resume", b"").await;
        assert_eq!(status, 409);
        assert_eq!(err["message"], "job 1 is cancelled");
        let (status, _) = raw(&served.path, "DELETE", "/v1/jobs/1", b"").await;
        assert_eq!(status, 405);
        let (status, _) = raw(&served.path, "GET", "/v1/cache/clean", b"").await;
        assert_eq!(status, 405);
    })
    .await;
    within(served.stop()).await;
}

#[tokio::test]
async fn body_over_64_kib_is_refused_with_413() {
    let served = Served::start();
    let big = vec![b' '; MAX_REQUEST_BODY + 1];
    let (status, err) = within(raw(&served.path, "POST", "/v1/jobs", &big)).await;
    assert_eq!(status, 413);
    assert!(err["message"].as_str().unwrap().contains("64 KiB"));
    within(served.stop()).await;
}

#[tokio::test]
async fn bind_removes_a_stale_socket_and_sets_mode_0660() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    // A listener that is closed leaves its socket file behind, as a killed agent does.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listener = within(async { bind(&path) }).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // The new socket is the live one: a connection reaches this listener.
    let (connected, accepted) =
        within(async { tokio::join!(tokio::net::UnixStream::connect(&path), listener.accept()) })
            .await;
    connected.unwrap();
    accepted.unwrap();
}

#[tokio::test]
async fn second_bind_on_a_live_socket_is_refused() {
    let served = Served::start();
    let err = bind(&served.path).unwrap_err();
    assert!(matches!(err, ControlSocketError::InUse { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "another agent is already listening on {}",
            served.path.display()
        )
    );
    // The first agent still answers.
    within(served.client().status()).await.unwrap();
    within(served.stop()).await;
}

#[tokio::test]
async fn bind_refuses_to_delete_a_file_that_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    std::fs::write(&path, "precious").unwrap();
    let err = bind(&path).unwrap_err();
    assert!(
        matches!(err, ControlSocketError::NotASocket { .. }),
        "{err:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[tokio::test]
async fn client_reports_an_absent_agent_as_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody.sock");
    let err = within(ControlClient::new(&path).list()).await.unwrap_err();
    assert_eq!(err.code(), Code::AGENT_UNREACHABLE);
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("is `contentdist agent` running?"), "{text}");
}

#[tokio::test]
async fn shutdown_ends_serve_despite_an_idle_connection_and_removes_the_socket() {
    let served = Served::start();
    let path = served.path.clone();
    within(served.client().list()).await.unwrap();
    // A client that connects and says nothing must not hold the shutdown up.
    let mut idle = within(tokio::net::UnixStream::connect(&path))
        .await
        .unwrap();
    within(served.stop()).await;
    assert!(!path.exists());
    let mut rest = Vec::new();
    // Closed without an answer: EOF if the server had accepted it, a reset if it was
    // still in the listen queue when the listener closed. Both are right.
    match within(idle.read_to_end(&mut rest)).await {
        Ok(read) => assert_eq!(read, 0, "the idle connection got an answer: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}
