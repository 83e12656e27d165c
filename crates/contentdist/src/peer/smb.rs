//! Peer copy over SMB, the peer's side: the master's share (see [`crate::smb`])
//! read with the pure-Rust `smb2` client, as a [`BlockSource`] of the one transfer
//! engine.
//!
//! At open the peer logs on with the P2P account, connects to the share and reads
//! `ID/VERSION/manifest.json`; `have` reads `ID/VERSION/have.bin` (the master's
//! durable verified blocks), polling it while the master downloads (smbd has no
//! long-poll: every [`HAVE_POLL`] until it holds more, up to the long-poll time).
//! The copy loop asks only for blocks the map marks, and the engine verifies every
//! one. Data runs are read with positioned READs over one open handle, [`WINDOW`]
//! of them in flight, so the wire stays busy while the engine hashes and writes.
//!
//! smbd does not hash blocks again before sending them (the HTTP server does): a
//! block that changed on the master's disk fails the peer's verification and is
//! asked for again, up to the copy's limit.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Mutex;

use super::{HaveDoc, PeerError};
use crate::codes::Code;
use crate::manifest::{FileEntry, Manifest, MANIFEST_FILE};
use crate::smb::SHARE_NAME;
use crate::transfer::{BlockSource, FailureKind, HttpFailure, Opened, RunBody};

/// How often `have.bin` is read again while waiting for the master to verify more.
const HAVE_POLL: Duration = Duration::from_millis(250);
/// Bytes per READ of a run.
const CHUNK: u64 = 1024 * 1024;
/// READs of one run in flight at once.
const WINDOW: usize = 8;

/// The file in the content's directory on the share that maps verified blocks.
const HAVE_FILE: &str = "have.bin";

struct Session {
    client: smb2::SmbClient,
    tree: smb2::Tree,
}

/// One content on one master's share: a logged-on session, and the manifest read
/// from it.
#[derive(Clone)]
pub(super) struct SmbRoute {
    /// `smb://ADDRESS:PORT/contentdist/ID/VERSION`.
    url: String,
    /// `ID/VERSION`, the content's directory in the share.
    base: String,
    /// The share's host.
    addr: SocketAddr,
    session: Arc<Mutex<Session>>,
    manifest: Arc<Manifest>,
    stall: Duration,
}

impl std::fmt::Debug for SmbRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmbRoute")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// An smb2 error as the engine's failure: a refusal (bad account) is like 403,
/// a missing file like 404, a lost or silent connection is unreachable (the
/// master is lost), anything else a bad answer.
fn failure(url: &str, e: &smb2::Error) -> HttpFailure {
    use smb2::ErrorKind as K;
    let status = |like: u16| FailureKind::SmbStatus {
        status: e.to_string(),
        like,
    };
    let (kind, code) = match e.kind() {
        K::AccessDenied | K::AuthRequired | K::SigningRequired => {
            (status(403), Code::ORIGIN_REFUSED)
        }
        K::NotFound => (status(404), Code::INVALID_SERVER_RESPONSE),
        K::TimedOut => (
            FailureKind::Unreachable {
                detail: format!("no answer from the master's SMB server: {e}"),
            },
            Code::TIMEOUT,
        ),
        K::ConnectionLost | K::Io | K::SessionExpired => (
            FailureKind::Unreachable {
                detail: e.to_string(),
            },
            Code::CANNOT_CONNECT,
        ),
        _ => (
            FailureKind::BadResponse {
                detail: e.to_string(),
            },
            Code::INVALID_SERVER_RESPONSE,
        ),
    };
    HttpFailure::smb(url, kind, code)
}

/// Log on to the share of `addr` as `user` and read the manifest of
/// `id`/`version`, checked to be that content.
pub(super) async fn open(
    addr: SocketAddr,
    (user, password): (&str, &str),
    id: &str,
    version: u32,
    connect_timeout: Duration,
    stall: Duration,
) -> Result<(SmbRoute, u64), PeerError> {
    let url = format!("smb://{addr}/{SHARE_NAME}/{id}/{version}");
    let fail = |e: smb2::Error| PeerError::Http(failure(&url, &e));
    let config = smb2::ClientConfig {
        addr: addr.to_string(),
        timeout: connect_timeout,
        username: user.to_string(),
        password: password.to_string(),
        domain: String::new(),
        auto_reconnect: false,
        // Blocks are mostly incompressible, and compressing costs the CPU the
        // engine hashes with.
        compression: false,
        dfs_enabled: false,
        response_timeout: Some(stall),
        ..Default::default()
    };
    let mut client =
        tokio::time::timeout(connect_timeout + stall, smb2::SmbClient::connect(config))
            .await
            .map_err(|_| {
                PeerError::Http(HttpFailure::smb(
                    &url,
                    FailureKind::Unreachable {
                        detail: "no answer to the SMB log-on".into(),
                    },
                    Code::TIMEOUT,
                ))
            })?
            .map_err(fail)?;
    let mut tree = client.connect_share(SHARE_NAME).await.map_err(fail)?;
    let base = format!("{id}/{version}");
    let path = format!("{base}/{MANIFEST_FILE}");
    let bytes = client.read_file(&mut tree, &path).await.map_err(fail)?;
    let manifest = Manifest::parse(&bytes).map_err(|source| PeerError::Manifest {
        url: format!("{url}/{MANIFEST_FILE}"),
        source,
    })?;
    manifest
        .check_is(id, version, None)
        .map_err(|e| PeerError::ManifestMismatch(format!("{url}: {e}")))?;
    Ok((
        SmbRoute {
            url,
            base,
            addr,
            session: Arc::new(Mutex::new(Session { client, tree })),
            manifest: Arc::new(manifest),
            stall,
        },
        bytes.len() as u64,
    ))
}

impl SmbRoute {
    /// The manifest read at open.
    pub(super) fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The address of the share's host.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The master's verified blocks from `have.bin`; with `after`, read again
    /// every [`HAVE_POLL`] until it holds more than `after`, for at most `wait`.
    /// Also returns the bytes read.
    pub(super) async fn have(
        &self,
        after: Option<usize>,
        wait: Duration,
    ) -> Result<(HaveDoc, Vec<u8>, u64), PeerError> {
        let until = Instant::now() + wait;
        let path = format!("{}/{HAVE_FILE}", self.base);
        let m = &self.manifest;
        let mut read = 0;
        loop {
            let bitmap = {
                let mut s = self.session.lock().await;
                let Session { client, tree } = &mut *s;
                tokio::time::timeout(self.stall, client.read_file(tree, &path))
                    .await
                    .map_err(|_| {
                        HttpFailure::smb(
                            &self.url,
                            FailureKind::Stalled {
                                secs: self.stall.as_secs(),
                            },
                            Code::TIMEOUT,
                        )
                    })?
                    .map_err(|e| failure(&format!("{}/{HAVE_FILE}", self.url), &e))?
            };
            read += bitmap.len() as u64;
            let blocks = m.block_count();
            if bitmap.len() != blocks.div_ceil(8) {
                return Err(HttpFailure::smb(
                    &self.url,
                    FailureKind::BadResponse {
                        detail: format!(
                            "{HAVE_FILE} holds {} bytes for {blocks} blocks",
                            bitmap.len()
                        ),
                    },
                    Code::INVALID_SERVER_RESPONSE,
                )
                .into());
            }
            let verified = (0..blocks).filter(|&i| HaveDoc::bit(&bitmap, i)).count();
            let more = after.is_none_or(|a| verified > a) || verified == blocks;
            if more || Instant::now() + HAVE_POLL > until {
                let doc = HaveDoc {
                    content_id: m.content_id.clone(),
                    version: m.version,
                    content_hash: m.content_hash.clone(),
                    block_count: blocks,
                    verified,
                    complete: verified == blocks,
                    bitmap: String::new(),
                    holders: Vec::new(),
                    you: None,
                };
                return Ok((doc, bitmap, read));
            }
            tokio::time::sleep(HAVE_POLL).await;
        }
    }

    /// The content's files on the share, as a source for the transfer engine.
    pub(super) fn source(&self) -> SmbSource {
        SmbSource {
            route: self.clone(),
        }
    }
}

/// The content's data files on a master's share.
pub(super) struct SmbSource {
    route: SmbRoute,
}

type Read = Pin<Box<dyn Future<Output = Result<Vec<u8>, smb2::Error>> + Send>>;

/// One run's bytes: positioned READs over one handle, [`WINDOW`] in flight.
pub(super) struct SmbBody {
    reader: Option<Arc<smb2::FileReader>>,
    next: u64,
    end: u64,
    inflight: VecDeque<tokio::task::JoinHandle<Result<Vec<u8>, smb2::Error>>>,
    url: String,
    stall: Duration,
}

impl SmbBody {
    fn refill(&mut self) {
        let Some(reader) = &self.reader else { return };
        while self.inflight.len() < WINDOW && self.next < self.end {
            let len = CHUNK.min(self.end - self.next);
            let (r, at) = (Arc::clone(reader), self.next);
            let read: Read = Box::pin(async move { r.read_at(at, len).await });
            // Each READ on its own task: they proceed while the engine is busy
            // with the previous chunk.
            self.inflight.push_back(tokio::spawn(read));
            self.next += len;
        }
    }
}

impl Drop for SmbBody {
    fn drop(&mut self) {
        for t in &self.inflight {
            t.abort();
        }
    }
}

impl BlockSource for SmbSource {
    type Body = SmbBody;

    async fn open_run(
        &self,
        file: &FileEntry,
        range: Range<u64>,
    ) -> Result<Opened<SmbBody>, HttpFailure> {
        let path = format!("{}/data/{}", self.route.base, file.path);
        let url = format!("{}/data/{}", self.route.url, file.path);
        let reader = {
            let mut s = self.route.session.lock().await;
            let Session { client, tree } = &mut *s;
            tokio::time::timeout(self.route.stall, client.open_file_reader(tree, &path))
                .await
                .map_err(|_| {
                    HttpFailure::smb(
                        &url,
                        FailureKind::Stalled {
                            secs: self.route.stall.as_secs(),
                        },
                        Code::TIMEOUT,
                    )
                })?
                .map_err(|e| failure(&url, &e))?
        };
        tracing::debug!(remote = "peer", url = %url, range = %format!("{}-{}", range.start, range.end - 1), "SMB range read");
        let mut body = SmbBody {
            reader: Some(Arc::new(reader)),
            next: range.start,
            end: range.end,
            inflight: VecDeque::new(),
            url,
            stall: self.route.stall,
        };
        body.refill();
        Ok(Opened::Body { body, skip: 0 })
    }
}

impl RunBody for SmbBody {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpFailure> {
        let Some(task) = self.inflight.pop_front() else {
            // Every READ answered: let go of the handle.
            self.reader = None;
            return Ok(None);
        };
        let stalled = || {
            HttpFailure::smb(
                &self.url,
                FailureKind::Stalled {
                    secs: self.stall.as_secs(),
                },
                Code::TIMEOUT,
            )
        };
        let data = match tokio::time::timeout(self.stall, task).await {
            Err(_) => return Err(stalled()),
            Ok(Err(join)) => {
                return Err(HttpFailure::smb(
                    &self.url,
                    FailureKind::BadResponse {
                        detail: format!("SMB read task: {join}"),
                    },
                    Code::INVALID_SERVER_RESPONSE,
                ))
            }
            Ok(Ok(r)) => r.map_err(|e| failure(&self.url, &e))?,
        };
        if data.is_empty() {
            // The file is shorter than the manifest says: the body ends here.
            self.inflight.clear();
            return Ok(None);
        }
        self.refill();
        Ok(Some(Bytes::from(data)))
    }
}
