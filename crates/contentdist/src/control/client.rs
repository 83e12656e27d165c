//! The control socket's client: one method per route, as the CLI uses them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;
use tracing::debug;

use crate::cache::{CacheEntryInfo, CleanReport};
use crate::codes::Code;
use crate::job::{ControlError, JobId, JobInfo, JobRequest, JobState};

/// How long a request may take before the agent is reported as not answering.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer read: a job list of thousands of jobs stays far below it.
const MAX_ANSWER_BODY: usize = 16 * 1024 * 1024;

/// Why a control request did not get the answer it asked for.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error("agent unreachable at {path} (is `contentdist agent` running?): {source}")]
    Unreachable {
        /// The socket path.
        path: PathBuf,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The socket exists but this user may not connect to it.
    #[error("access to the agent's control socket {path} was refused: it exists ({owner}), and only its owner and group may use it; run as root or as a member of group '{group}' (usermod -aG {group} USER, then log in again)")]
    Denied {
        /// The socket path.
        path: PathBuf,
        /// Owner, group and mode, in words.
        owner: String,
        /// The group that grants access.
        group: String,
    },
    /// The connection broke before the answer came (the agent stopped, say).
    #[error("control connection to {path} failed: {source}")]
    Connection {
        /// The socket path.
        path: PathBuf,
        /// The HTTP-level cause.
        source: hyper::Error,
    },
    /// The agent did not answer in time.
    #[error("agent at {path} did not answer within {} s", after.as_secs())]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// The time waited.
        after: Duration,
    },
    /// Something answered, but not as a contentdist agent does.
    #[error("unexpected answer from {path}: {detail}")]
    BadAnswer {
        /// The socket path.
        path: PathBuf,
        /// What was wrong with the answer.
        detail: String,
    },
    /// The agent refused the request.
    #[error("the agent refused: {0}")]
    Refused(ControlError),
}

impl ClientError {
    /// The catalogue code: the refusal's own, otherwise "agent unreachable" or
    /// "invalid server response".
    pub fn code(&self) -> Code {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Denied { .. }
            | ClientError::Connection { .. }
            | ClientError::Timeout { .. } => Code::AGENT_UNREACHABLE,
            ClientError::BadAnswer { .. } => Code::INVALID_SERVER_RESPONSE,
            ClientError::Refused(e) => Code(e.code),
        }
    }
}

/// A client of one agent's control socket. Each request opens its own connection,
/// so a client is cheap to keep and holds nothing open between calls.
#[derive(Clone, Debug)]
pub struct ControlClient {
    path: PathBuf,
    timeout: Duration,
}

impl ControlClient {
    /// A client of the socket at `path`, with a 30 s answer timeout.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ControlClient {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with another answer timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue a job (`POST /v1/jobs`).
    pub async fn submit(&self, req: &JobRequest) -> Result<JobInfo, ClientError> {
        self.request(Method::POST, "/v1/jobs", Some(req)).await
    }

    /// Every job the agent knows, oldest first (`GET /v1/jobs`).
    pub async fn list(&self) -> Result<Vec<JobInfo>, ClientError> {
        self.get_json("/v1/jobs").await
    }

    /// One job (`GET /v1/jobs/{id}`).
    pub async fn get(&self, id: JobId) -> Result<JobInfo, ClientError> {
        self.get_json(&format!("/v1/jobs/{id}")).await
    }

    /// One job, once its state is no longer `seen` or after `within` (at most 2 s)
    /// if it stays (`GET /v1/jobs/{id}?state=S&wait_ms=N`).
    pub async fn get_when_changed(
        &self,
        id: JobId,
        seen: JobState,
        within: Duration,
    ) -> Result<JobInfo, ClientError> {
        let (state, ms) = (seen.as_str(), within.as_millis());
        self.get_json(&format!("/v1/jobs/{id}?state={state}&wait_ms={ms}"))
            .await
    }

    /// Pause a job (`POST /v1/jobs/{id}/pause`).
    pub async fn pause(&self, id: JobId) -> Result<JobInfo, ClientError> {
        self.post_empty(&format!("/v1/jobs/{id}/pause")).await
    }

    /// Resume a paused job (`POST /v1/jobs/{id}/resume`).
    pub async fn resume(&self, id: JobId) -> Result<JobInfo, ClientError> {
        self.post_empty(&format!("/v1/jobs/{id}/resume")).await
    }

    /// Cancel a job (`POST /v1/jobs/{id}/cancel`).
    pub async fn cancel(&self, id: JobId) -> Result<JobInfo, ClientError> {
        self.post_empty(&format!("/v1/jobs/{id}/cancel")).await
    }

    /// The agent's status (`GET /v1/status`).
    pub async fn status(&self) -> Result<super::AgentStatus, ClientError> {
        self.get_json("/v1/status").await
    }

    /// The agent's P2P account (`GET /v1/p2p-account`; root only).
    pub async fn p2p_account(&self) -> Result<super::P2pAccount, ClientError> {
        self.get_json("/v1/p2p-account").await
    }

    /// The cache's entries (`GET /v1/cache`).
    pub async fn cache_list(&self) -> Result<Vec<CacheEntryInfo>, ClientError> {
        self.get_json("/v1/cache").await
    }

    /// Run the cache clean-up now (`POST /v1/cache/clean`).
    pub async fn cache_clean(&self) -> Result<CleanReport, ClientError> {
        self.post_empty("/v1/cache/clean").await
    }

    async fn get_json<T: DeserializeOwned>(&self, uri: &str) -> Result<T, ClientError> {
        self.request::<(), T>(Method::GET, uri, None).await
    }

    async fn post_empty<T: DeserializeOwned>(&self, uri: &str) -> Result<T, ClientError> {
        self.request::<(), T>(Method::POST, uri, None).await
    }

    /// One request on a fresh connection, bounded by the client's timeout.
    async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        uri: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = match body {
            // Our request types are plain structs with string keys: they always encode.
            Some(b) => Bytes::from(serde_json::to_vec(b).expect("a request encodes as JSON")),
            None => Bytes::new(),
        };
        let exchange = self.exchange(method, uri, body);
        let (status, answer) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                path: self.path.clone(),
                after: self.timeout,
            })??;
        if status.is_success() {
            serde_json::from_slice(&answer)
                .map_err(|e| self.bad_answer(format!("{status} with an unreadable body: {e}")))
        } else {
            match serde_json::from_slice::<ControlError>(&answer) {
                Ok(refusal) => Err(ClientError::Refused(refusal)),
                Err(_) => Err(self.bad_answer(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&answer[..answer.len().min(200)])
                ))),
            }
        }
    }

    /// Connect, send, and read the whole answer.
    async fn exchange(
        &self,
        method: Method,
        uri: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(|source| connect_error(&self.path, source))?;
        let connection_error = |source| ClientError::Connection {
            path: self.path.clone(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(connection_error)?;
        // The connection future drives the socket; it ends when `sender` is dropped.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "control client connection ended with an error");
            }
        });
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            // HTTP/1.1 requires a Host; the socket has none, so name the machine's own.
            .header(header::HOST, "localhost");
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        // The method and the path are ours (fixed routes, numeric ids): always valid.
        let request = request
            .body(Full::new(body))
            .expect("a request from a fixed route");
        let response = sender
            .send_request(request)
            .await
            .map_err(connection_error)?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), MAX_ANSWER_BODY)
            .collect()
            .await
            .map_err(|e| self.bad_answer(format!("cannot read the answer: {e}")))?
            .to_bytes();
        Ok((status, answer))
    }

    fn bad_answer(&self, detail: String) -> ClientError {
        ClientError::BadAnswer {
            path: self.path.clone(),
            detail,
        }
    }
}

/// Why connecting failed, in the words an administrator needs: "not running" and
/// "not allowed" have different fixes.
fn connect_error(path: &Path, source: std::io::Error) -> ClientError {
    use std::os::unix::fs::MetadataExt;
    if source.kind() == std::io::ErrorKind::PermissionDenied {
        if let Ok(meta) = std::fs::metadata(path) {
            let group = name_of(Path::new("/etc/group"), meta.gid());
            let owner = format!(
                "owner {}, group {}, mode {:04o}",
                name_of(Path::new("/etc/passwd"), meta.uid()),
                group,
                meta.mode() & 0o7777
            );
            return ClientError::Denied {
                path: path.to_path_buf(),
                owner,
                group,
            };
        }
    }
    ClientError::Unreachable {
        path: path.to_path_buf(),
        source,
    }
}

/// The name of user or group `id` in a passwd/group file, else the number.
fn name_of(file: &Path, id: u32) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let num = fields.nth(1)?;
                (num.parse::<u32>().ok()? == id).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| id.to_string())
}
