//! The control socket's server side: bind the Unix socket safely, then answer
//! HTTP/JSON requests with a [`JobControl`].

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde::Serialize;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::MAX_REQUEST_BODY;
use crate::codes::Code;
use crate::job::{ControlError, JobControl, JobId, JobRequest, JobState};
use crate::util::http_server::{accept_loop, serve_http1, AcceptOptions};

/// How long [`serve`] lets open connections finish their request once shutdown is asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The longest a `GET /v1/jobs/{id}?wait_ms=` waits: short, since an agent that
/// stops lets open requests finish for [`SHUTDOWN_GRACE`] only.
const MAX_WAIT: Duration = Duration::from_secs(2);

/// The socket's permissions: owner and group may submit jobs, nobody else.
const SOCKET_MODE: u32 = 0o660;

/// The group the socket is given when it exists (the Debian package creates it):
/// administrators in it use the CLI without root.
pub const SOCKET_GROUP: &str = "contentdist";

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlSocketError {
    /// The socket's directory could not be created.
    #[error("cannot create the control socket's directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A live agent already answers on this socket.
    #[error("another agent is already listening on {path}")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket stands at the path; it is not ours to delete.
    #[error("{path} exists and is not a socket; remove it or choose another ControlSocket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A stale socket file could not be removed.
    #[error("cannot remove the stale control socket {path}: {source}")]
    RemoveStale {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Binding the socket failed.
    #[error("cannot listen on the control socket {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Setting the socket's mode to 0660 failed.
    #[error("cannot set mode 0660 on the control socket {path}: {source}")]
    Permissions {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl ControlSocketError {
    /// The catalogue code: every case is fixed by changing `ControlSocket` or what
    /// stands at that path, so all of them are configuration problems.
    pub fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

/// Bind the control socket at `path`.
///
/// Creates the parent directory, removes a stale socket file left by an agent that
/// died (one nobody answers on), refuses when a live agent answers there, and sets
/// mode 0660. Must be called inside a tokio runtime.
pub fn bind(path: &Path) -> Result<UnixListener, ControlSocketError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ControlSocketError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    remove_if_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|source| ControlSocketError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
        |source| ControlSocketError::Permissions {
            path: path.to_path_buf(),
            source,
        },
    )?;
    give_to_group(path, SOCKET_GROUP);
    Ok(listener)
}

/// Make `group` the socket's group, when that group exists. Without it (a
/// development machine), the socket stays with the agent's own group; a failure is
/// logged, never fatal: root can still use the CLI.
fn give_to_group(path: &Path, group: &str) {
    let Some(gid) = crate::util::group_id(group) else {
        tracing::debug!(
            group,
            "no such group: the control socket keeps the agent's group"
        );
        return;
    };
    match std::os::unix::fs::chown(path, None, Some(gid)) {
        Ok(()) => tracing::debug!(group, gid, "control socket given to its group"),
        Err(e) => {
            tracing::warn!(path = %path.display(), group, error = %e, "cannot give the control socket to its group; only the agent's user can use the CLI")
        }
    }
}

/// Remove `path` if it is a socket nobody answers on; refuse if someone does.
fn remove_if_stale(path: &Path) -> Result<(), ControlSocketError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        // Nothing there (the usual case), or unreadable: then bind reports the cause.
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(ControlSocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    // A connect on a Unix socket completes at once when a listener exists (the
    // kernel queues it), so this blocking call does not wait on a live agent.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ControlSocketError::InUse {
            path: path.to_path_buf(),
        });
    }
    info!(path = %path.display(), "removing stale control socket");
    std::fs::remove_file(path).map_err(|source| ControlSocketError::RemoveStale {
        path: path.to_path_buf(),
        source,
    })
}

/// A control socket being served in its own task.
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// [`bind`] `path` and [`serve`] `handler` on it until `shutdown` is cancelled.
    pub fn start(
        path: &Path,
        handler: Arc<dyn JobControl>,
        shutdown: CancellationToken,
    ) -> Result<ControlServer, ControlSocketError> {
        let listener = bind(path)?;
        info!(path = %path.display(), "control socket listening");
        let span = tracing::info_span!("control_server", path = %path.display());
        let task = tokio::spawn(serve(listener, handler, shutdown).instrument(span));
        Ok(ControlServer {
            path: path.to_path_buf(),
            task,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wait until the server has stopped (after its token was cancelled), then remove
    /// the socket file so the next start does not have to.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            warn!(error = %e, "control server task ended abnormally");
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!(path = %self.path.display(), error = %e, "cannot remove control socket");
            }
        }
    }
}

/// Answer control requests on `listener` with `handler` until `shutdown` is cancelled.
///
/// Each connection runs in its own task under a child of `shutdown`. Once cancelled,
/// the socket stops accepting (a client connecting now is refused at once); open
/// connections finish the request in hand and are dropped after a few seconds at
/// most, then this returns.
pub async fn serve(
    listener: UnixListener,
    handler: Arc<dyn JobControl>,
    shutdown: CancellationToken,
) {
    let accepting = AcceptOptions {
        server: "control socket",
        shutdown: shutdown.clone(),
        drain: SHUTDOWN_GRACE,
    };
    let mut next_conn: u64 = 0;
    accept_loop(listener, accepting, move |stream, _| {
        next_conn += 1;
        let caller = Caller::of(&stream);
        let span = tracing::debug_span!("control_conn", conn = next_conn);
        connection(stream, caller, handler.clone(), shutdown.child_token()).instrument(span)
    })
    .await;
}

/// Who is on the other end of a control connection, as the kernel says
/// (`SO_PEERCRED`): job operations are logged with it.
#[derive(Clone, Copy, Debug)]
struct Caller {
    uid: Option<u32>,
    pid: Option<i32>,
}

impl Caller {
    fn of(stream: &UnixStream) -> Caller {
        match stream.peer_cred() {
            Ok(c) => Caller {
                uid: Some(c.uid()),
                pid: c.pid(),
            },
            Err(e) => {
                debug!(error = %e, "control caller's credentials unknown");
                Caller {
                    uid: None,
                    pid: None,
                }
            }
        }
    }

    /// A job operation was asked for: log it with who asked and what came of it
    /// (absent fields are left out of the line).
    fn log(&self, action: &str, job: Option<JobId>, content: Option<&str>, answer: &Answer) {
        let status = answer.status().as_u16();
        info!(
            action,
            job,
            content,
            uid = self.uid,
            pid = self.pid,
            status,
            "job {action} requested"
        );
    }
}

/// Serve one connection until the client closes it or `token` is cancelled.
async fn connection(
    stream: UnixStream,
    caller: Caller,
    handler: Arc<dyn JobControl>,
    token: CancellationToken,
) {
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(route(handler, caller, req).await) }
    });
    if let Err(e) = serve_http1(stream, service, &token, SHUTDOWN_GRACE).await {
        debug!(error = %e, "control connection ended with an error");
    }
}

/// A finished answer: status and JSON body.
type Answer = Response<Full<Bytes>>;

/// A handler's refusal with the HTTP status it is answered with.
type Refusal = (StatusCode, ControlError);

/// Answer one request.
async fn route(handler: Arc<dyn JobControl>, caller: Caller, req: Request<Incoming>) -> Answer {
    dispatch(handler, caller, req)
        .await
        .unwrap_or_else(|(status, e)| json(status, &e))
}

/// Dispatch one request to the handler; `Err` is a refusal before the handler ran.
async fn dispatch(
    handler: Arc<dyn JobControl>,
    caller: Caller,
    req: Request<Incoming>,
) -> Result<Answer, Refusal> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    debug!(%method, %path, "control request");
    let segments: Vec<&str> = path
        .strip_prefix("/v1/")
        .map(|rest| rest.trim_end_matches('/').split('/').collect())
        .unwrap_or_default();
    let ok = StatusCode::OK;
    Ok(match (segments.as_slice(), &method) {
        (["jobs"], &Method::POST) => {
            let request = read_job_request(req).await?;
            let content = format!("{}/{}", request.content_id, request.version);
            let (tx, rx) = std::sync::mpsc::channel();
            let answer = run(handler, StatusCode::CREATED, move |h| {
                let r = h.submit(request).map_err(request_refusal);
                if let Ok(job) = &r {
                    let _ = tx.send(job.id);
                }
                r
            })
            .await;
            let job = rx.try_recv().ok();
            caller.log("submit", job, Some(&content), &answer);
            answer
        }
        (["jobs"], &Method::GET) => run(handler, ok, |h| Ok(h.list())).await,
        (["jobs", id], &Method::GET) => {
            let id = parse_id(id)?;
            if let Some((seen, within)) = parse_wait(req.uri().query())? {
                let left = {
                    let handler = Arc::clone(&handler);
                    tokio::task::spawn_blocking(move || handler.left(id, seen)).await
                };
                if let Ok(left) = left {
                    let _ = tokio::time::timeout(within, left).await;
                }
            }
            with_job(handler, id, |h, id| h.get(id)).await
        }
        (["jobs", id, action @ ("pause" | "resume" | "cancel")], &Method::POST) => {
            let id = parse_id(id)?;
            let answer = match *action {
                "pause" => with_job(handler, id, |h, id| h.pause(id)).await,
                "resume" => with_job(handler, id, |h, id| h.resume(id)).await,
                _ => with_job(handler, id, |h, id| h.cancel(id)).await,
            };
            caller.log(action, Some(id), None, &answer);
            answer
        }
        (["status"], &Method::GET) => run(handler, ok, |h| Ok(h.status())).await,
        (["p2p-account"], &Method::GET) => {
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            if !may_read_secrets(caller.uid, me) {
                info!(
                    uid = caller.uid,
                    pid = caller.pid,
                    "P2P account asked for by a user other than root or the agent's: refused"
                );
                return Err((
                    StatusCode::FORBIDDEN,
                    ControlError::new(
                        Code::BAD_REQUEST,
                        "only root (or the agent's own user) may read the P2P account's password",
                    ),
                ));
            }
            run(handler, ok, |h| {
                h.p2p_account().ok_or_else(|| {
                    (
                        StatusCode::NOT_FOUND,
                        ControlError::new(
                            Code::BAD_REQUEST,
                            "this agent has no P2P account: it does not serve peers (peer copy off, preboot, or an inhibited subnet), or peers authenticate with certificates (P2PSslSettings 0x2)",
                        ),
                    )
                })
            })
            .await
        }
        (["cache"], &Method::GET) => run(handler, ok, |h| Ok(h.cache_list())).await,
        (["cache", "clean"], &Method::POST) => {
            run(handler, ok, |h| h.cache_clean().map_err(request_refusal)).await
        }
        (
            ["jobs"]
            | ["jobs", _]
            | ["jobs", _, "pause" | "resume" | "cancel"]
            | ["status"]
            | ["p2p-account"]
            | ["cache"]
            | ["cache", "clean"],
            _,
        ) => {
            return Err(refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}"),
            ))
        }
        _ => {
            return Err(refusal(
                StatusCode::NOT_FOUND,
                format!("no such route: {method} {path}"),
            ))
        }
    })
}

/// Secrets (the P2P account's password) go to root and to the agent's own user
/// only, not to every member of the socket's group: they let anyone on the LAN read
/// this agent's cache.
fn may_read_secrets(caller: Option<u32>, agent: u32) -> bool {
    matches!(caller, Some(uid) if uid == 0 || uid == agent)
}

/// Read and decode the body of `POST /v1/jobs`.
async fn read_job_request(req: Request<Incoming>) -> Result<JobRequest, Refusal> {
    let body = Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "request body is larger than {} KiB",
                        MAX_REQUEST_BODY / 1024
                    ),
                )
            } else {
                refusal(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                )
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        refusal(
            StatusCode::BAD_REQUEST,
            format!("request body is not a valid job request: {e}"),
        )
    })
}

/// A route that names a job: 404 when the job does not exist, else the operation;
/// the operation's refusal of an existing job is a state conflict (409).
async fn with_job<T: Serialize + Send + 'static>(
    handler: Arc<dyn JobControl>,
    id: JobId,
    op: impl FnOnce(&dyn JobControl, JobId) -> Result<T, ControlError> + Send + 'static,
) -> Answer {
    run(handler, StatusCode::OK, move |h| {
        h.get(id).map_err(|e| (StatusCode::NOT_FOUND, e))?;
        op(h, id).map_err(|e| (StatusCode::CONFLICT, e))
    })
    .await
}

/// Run a handler method and answer with its value (status `ok`) or its refusal.
///
/// The method runs off the async threads: the trait is synchronous and an
/// implementation may take locks or touch the disk (persisting a job, cleaning the cache).
async fn run<T: Serialize + Send + 'static>(
    handler: Arc<dyn JobControl>,
    ok: StatusCode,
    op: impl FnOnce(&dyn JobControl) -> Result<T, Refusal> + Send + 'static,
) -> Answer {
    match tokio::task::spawn_blocking(move || op(handler.as_ref())).await {
        Ok(Ok(value)) => json(ok, &value),
        Ok(Err((status, e))) => json(status, &e),
        // The panic itself was already printed by the panic hook; the caller learns
        // that the agent failed rather than seeing the connection drop.
        Err(e) => {
            warn!(error = %e, "control handler failed");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &ControlError::new(
                    Code::AGENT_UNREACHABLE,
                    "the agent failed while handling this request; see its log",
                ),
            )
        }
    }
}

/// The HTTP status of a refusal that does not concern one existing job.
fn request_refusal(e: ControlError) -> Refusal {
    let status = match Code(e.code) {
        Code::BAD_REQUEST | Code::INVALID_PACKAGE_PATH => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, e)
}

/// `GET /v1/jobs/{id}?state=S&wait_ms=N`: answer once the job's state is no longer
/// `S`, or after N ms (at most [`MAX_WAIT`]) if it stays. Without a query, at once.
fn parse_wait(query: Option<&str>) -> Result<Option<(JobState, Duration)>, Refusal> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    let (mut state, mut wait) = (None, None);
    for pair in query.split('&') {
        let bad = |why: &str| refusal(StatusCode::BAD_REQUEST, format!("'{pair}' {why}"));
        match pair.split_once('=') {
            Some(("state", s)) => {
                let parsed = serde_json::from_value(serde_json::Value::String(s.into()));
                state =
                    Some(parsed.map_err(|_| bad("is not a job state (e.g. state=downloading)"))?);
            }
            Some(("wait_ms", n)) => {
                let ms: u64 = n
                    .parse()
                    .map_err(|_| bad("is not a number of milliseconds"))?;
                wait = Some(Duration::from_millis(ms).min(MAX_WAIT));
            }
            _ => return Err(bad("is not a query this route takes (state, wait_ms)")),
        }
    }
    match (state, wait) {
        (Some(state), Some(wait)) => Ok(Some((state, wait))),
        _ => Err(refusal(
            StatusCode::BAD_REQUEST,
            "a wait needs both state and wait_ms".into(),
        )),
    }
}

fn parse_id(text: &str) -> Result<JobId, Refusal> {
    text.parse().map_err(|_| {
        refusal(
            StatusCode::BAD_REQUEST,
            format!("job id '{text}' is not a number"),
        )
    })
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(body) => (status, body),
        // Our answer types always encode; should one ever not, say so in JSON still.
        Err(e) => {
            let e = ControlError::new(Code::BAD_REQUEST, format!("cannot encode the answer: {e}"));
            let body = serde_json::to_vec(&e).expect("a ControlError encodes as JSON");
            (StatusCode::INTERNAL_SERVER_ERROR, body)
        }
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a response from a valid status and header")
}

/// A refusal of the request itself, with the BAD_REQUEST code.
fn refusal(status: StatusCode, message: String) -> Refusal {
    (status, ControlError::new(Code::BAD_REQUEST, message))
}

#[cfg(test)]
mod group_tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn only_root_and_the_agents_user_may_read_secrets() {
        assert!(may_read_secrets(Some(0), 1000));
        assert!(may_read_secrets(Some(1000), 1000));
        assert!(!may_read_secrets(Some(1001), 1000));
        assert!(!may_read_secrets(None, 0));
    }

    #[test]
    fn the_socket_goes_to_its_group_when_the_group_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let before = std::fs::metadata(&path).unwrap().gid();
        // Debian's `nogroup` stands in for `contentdist` here.
        let gid = crate::util::group_id("nogroup").expect("Debian has nogroup");
        give_to_group(&path, "nogroup");
        let after = std::fs::metadata(&path).unwrap().gid();
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(after, gid);
        } else {
            // Not root and not in that group: the socket keeps its group.
            assert_eq!(after, before);
        }
        // No such group: nothing changes, nothing fails.
        give_to_group(&path, "no-such-group-contentdist-test");
        assert_eq!(std::fs::metadata(&path).unwrap().gid(), after);
    }
}
