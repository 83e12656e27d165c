//! [`LabOrigin`]: the lab's origin web server, in process (no nginx needed).
//!
//! A static HTTP/1.1 file server over what `contentdist publish` wrote
//! (`ROOT/ID/VERSION/manifest.json`, `ROOT/ID/VERSION/content/...`): `GET` and `HEAD`,
//! one `Range: bytes=a-b` / `a-` / `-n` (206 with `Content-Range`, 416 past the end;
//! several ranges or a malformed one get the whole file), 404 for anything that is not
//! a regular file strictly inside the root (no `..`, percent-encoding decoded first,
//! symlinks resolved and refused when they lead out of the root).
//!
//! The WAN link is one token bucket shared by every connection: the origin's total
//! egress never exceeds `rate_bytes_per_sec` (plus a burst of 50 ms worth), however
//! many agents download at once, which is what a thin branch-office link does.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ffi::OsStr;
use std::io::{self, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT_RANGES, ALLOW, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::LabError;
use crate::util::http_server::{accept_loop, serve_http1, AcceptOptions};
use crate::util::{parse_range, ByteRange, TokenBucket};
use request::relative_path;

mod request;

/// How far ahead of the rate the shared bucket lets the origin run.
const BURST: Duration = Duration::from_millis(50);
/// Largest body chunk read and sent at once (smaller when throttled, see `chunk_for`).
const CHUNK: usize = 256 * 1024;
/// How long open connections may finish once shutdown is asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

type Body = BoxBody<Bytes, io::Error>;

/// What [`LabOrigin::start`] needs.
#[derive(Clone, Debug)]
pub struct LabOriginOptions {
    /// Directory served at `/` (an origin root written by `contentdist publish`).
    pub root: PathBuf,
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Total egress cap of the origin (all connections together); `None`: unlimited.
    pub rate_bytes_per_sec: Option<u64>,
    /// Cancelled to stop the server.
    pub shutdown: CancellationToken,
}

impl Default for LabOriginOptions {
    fn default() -> Self {
        LabOriginOptions {
            root: PathBuf::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rate_bytes_per_sec: None,
            shutdown: CancellationToken::new(),
        }
    }
}

/// A running lab origin.
#[derive(Debug)]
pub struct LabOrigin {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    /// Canonical root: resolved files must stay under it.
    root: PathBuf,
    chunk: usize,
    /// The WAN link: one bucket for every connection.
    bucket: Option<Mutex<TokenBucket>>,
    shutdown: CancellationToken,
    bytes: AtomicU64,
    requests: AtomicU64,
    per_path: Mutex<BTreeMap<String, u64>>,
}

/// The lab's WAN link: a sender runs at most [`BURST`] ahead of the rate, and an idle
/// link holds that one burst again, no more.
fn link(bytes_per_sec: u64) -> TokenBucket {
    TokenBucket::new(bytes_per_sec, BURST)
}

impl LabOrigin {
    /// Listen on `opts.listen` and serve `opts.root` until `opts.shutdown` is
    /// cancelled. Must be called inside a tokio runtime.
    pub fn start(opts: LabOriginOptions) -> Result<LabOrigin, LabError> {
        if opts.rate_bytes_per_sec == Some(0) {
            return Err(LabError::ZeroRate);
        }
        let root_err = |source| LabError::Root {
            path: opts.root.clone(),
            source,
        };
        let root = std::fs::canonicalize(&opts.root).map_err(root_err)?;
        if !root.is_dir() {
            return Err(root_err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        let bind_err = |source| LabError::Bind {
            addr: opts.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(opts.listen).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let listener = TcpListener::from_std(listener).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let shared = Arc::new(Shared {
            root,
            chunk: chunk_for(opts.rate_bytes_per_sec),
            bucket: opts.rate_bytes_per_sec.map(|rate| Mutex::new(link(rate))),
            shutdown: opts.shutdown,
            bytes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            per_path: Mutex::new(BTreeMap::new()),
        });
        info!(addr = %local_addr, root = %shared.root.display(), rate = ?opts.rate_bytes_per_sec, "lab origin listening");
        let span = tracing::info_span!("lab_origin", addr = %local_addr);
        let accepting = AcceptOptions {
            server: "lab origin",
            shutdown: shared.shutdown.clone(),
            drain: SHUTDOWN_GRACE * 2,
        };
        let conns = Arc::clone(&shared);
        let task = tokio::spawn(
            accept_loop(listener, accepting, move |stream, remote| {
                let span = tracing::debug_span!("lab_origin_conn", %remote);
                serve(stream, Arc::clone(&conns)).instrument(span)
            })
            .instrument(span),
        );
        Ok(LabOrigin {
            local_addr,
            shared,
            task,
        })
    }

    /// `http://ADDR:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The address really bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Body bytes handed to connections so far (a client that hangs up mid-body may
    /// have received up to one chunk less).
    pub fn bytes_served(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Requests received, refused ones included.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Body bytes served per request path (percent-decoded, `/ID/VERSION/...`).
    pub fn bytes_by_path(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.per_path).clone()
    }

    /// Wait until the server stopped (after its shutdown token was cancelled) and
    /// every connection ended.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            warn!(error = %e, "lab origin task ended abnormally");
        }
    }
}

/// Throttled, a chunk is at most one burst's worth, so no single write overshoots.
fn chunk_for(rate: Option<u64>) -> usize {
    match rate {
        Some(rate) => ((rate as u128 * BURST.as_millis() / 1000) as usize).clamp(1024, CHUNK),
        None => CHUNK,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let svc = Arc::clone(&shared);
    let service = service_fn(move |req| {
        let svc = Arc::clone(&svc);
        async move { Ok::<_, Infallible>(handle(&svc, req).await) }
    });
    if let Err(e) = serve_http1(stream, service, &shared.shutdown, SHUTDOWN_GRACE).await {
        debug!(error = %e, "lab origin connection ended with an error");
    }
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = empty(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    let Some((rel, key)) = relative_path(req.uri().path()) else {
        return empty(StatusCode::NOT_FOUND);
    };
    // Symlinks are resolved before the check, so one pointing out of the root is refused.
    let full = match tokio::fs::canonicalize(shared.root.join(rel)).await {
        Ok(full) if full.starts_with(&shared.root) => full,
        _ => return empty(StatusCode::NOT_FOUND),
    };
    let Ok(mut file) = tokio::fs::File::open(&full).await else {
        return empty(StatusCode::NOT_FOUND);
    };
    let size = match file.metadata().await {
        Ok(meta) if meta.is_file() => meta.len(),
        _ => return empty(StatusCode::NOT_FOUND),
    };
    let (status, start, len) = match parse_range(req.headers().get(RANGE), size) {
        ByteRange::Full => (StatusCode::OK, 0, size),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            let mut r = empty(StatusCode::RANGE_NOT_SATISFIABLE);
            r.headers_mut()
                .insert(CONTENT_RANGE, header(format!("bytes */{size}")));
            return r;
        }
    };
    let body = if head || len == 0 {
        empty_body()
    } else if let Err(e) = file.seek(SeekFrom::Start(start)).await {
        warn!(path = %full.display(), error = %e, "lab origin cannot seek");
        return empty(StatusCode::INTERNAL_SERVER_ERROR);
    } else {
        let sending = Sending {
            shared: Arc::clone(shared),
            file,
            left: len,
            key,
        };
        BodyExt::boxed(StreamBody::new(futures_util::stream::unfold(
            Some(sending),
            next_chunk,
        )))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_LENGTH, header(len.to_string()));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let json = full.extension() == Some(OsStr::new("json"));
    let kind = if json {
        "application/json"
    } else {
        "application/octet-stream"
    };
    h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + len - 1;
        h.insert(CONTENT_RANGE, header(format!("bytes {start}-{end}/{size}")));
    }
    r
}

/// A body being streamed: what is left of the file's range.
struct Sending {
    shared: Arc<Shared>,
    file: tokio::fs::File,
    left: u64,
    key: String,
}

type Step = Option<(Result<Frame<Bytes>, io::Error>, Option<Sending>)>;

/// Reads the next chunk, waits for the shared bucket, counts it and hands it out.
async fn next_chunk(state: Option<Sending>) -> Step {
    let mut s = state?;
    if s.left == 0 {
        return None;
    }
    let want = s.left.min(s.shared.chunk as u64) as usize;
    let mut buf = vec![0u8; want];
    if let Err(e) = s.file.read_exact(&mut buf).await {
        return Some((Err(e), None));
    }
    if let Some(bucket) = &s.shared.bucket {
        let at = lock(bucket).book(want);
        tokio::select! {
            _ = s.shared.shutdown.cancelled() => {
                return Some((Err(io::Error::other("lab origin shutting down")), None));
            }
            _ = tokio::time::sleep_until(at) => {}
        }
    }
    s.left -= want as u64;
    s.shared.bytes.fetch_add(want as u64, Ordering::Relaxed);
    *lock(&s.shared.per_path).entry(s.key.clone()).or_default() += want as u64;
    Some((Ok(Frame::data(Bytes::from(buf))), Some(s)))
}

fn header(value: String) -> HeaderValue {
    HeaderValue::try_from(value).expect("digits and ASCII punctuation form a valid header")
}

fn empty_body() -> Body {
    BodyExt::boxed(Empty::new().map_err(|never| match never {}))
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty_body());
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests;
