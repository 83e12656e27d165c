//! Request handling of the faulty origin: file lookup, ranges, fault decisions and
//! the streamed body that carries out corruption, truncation and stalls.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::faulty_origin::{Fault, RequestEntry, Shared, MAX_STALL};

/// Size of the chunks read from disk and sent as body frames.
const CHUNK: u64 = 256 * 1024;

type ResponseBody = BoxBody<Bytes, io::Error>;

/// Where a response body stops early, and how.
#[derive(Clone, Copy)]
enum Cut {
    /// Close the connection after this many body bytes.
    Truncate(u64),
    /// Hang after this many body bytes.
    Stall(u64),
}

/// What the fault decided for one file response.
#[derive(Default)]
struct Plan {
    /// Offset within the response body of the byte to flip.
    corrupt_at: Option<u64>,
    cut: Option<Cut>,
}

/// Whether `fault` targets `path`, per the rule in [`Fault`]'s documentation.
fn targets(fault: &Fault, path: &str) -> bool {
    match fault {
        Fault::None => false,
        Fault::CorruptOnce { path_suffix, .. }
        | Fault::CorruptAlways { path_suffix, .. }
        | Fault::StatusFor { path_suffix, .. } => path.ends_with(path_suffix.as_str()),
        Fault::TruncateAfter { .. } | Fault::StallAfter { .. } | Fault::Status { .. } => {
            !path.ends_with("manifest.json")
        }
    }
}

pub(super) async fn respond(shared: &Shared, req: Request<Incoming>) -> Response<ResponseBody> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let method = req.method().clone();
    let (response, fault_applied) = answer(shared, &method, &path, range.as_deref()).await;
    shared
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(RequestEntry {
            method: method.to_string(),
            path,
            range,
            status: response.status().as_u16(),
            fault_applied,
        });
    response
}

async fn answer(
    shared: &Shared,
    method: &Method,
    path: &str,
    range: Option<&str>,
) -> (Response<ResponseBody>, bool) {
    if method != Method::GET && method != Method::HEAD {
        return (
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            false,
        );
    }
    if let Some(status) = status_fault(shared, path) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (text(status, "injected fault"), true);
    }
    let Some(file) = resolve(&shared.root, path) else {
        return (text(StatusCode::NOT_FOUND, "not found"), false);
    };
    let meta = match tokio::fs::metadata(&file).await {
        Ok(meta) if meta.is_file() => meta,
        _ => return (text(StatusCode::NOT_FOUND, "not found"), false),
    };
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{mtime:x}-{size:x}\""))
        .header(header::CONTENT_TYPE, content_type(path));
    let (start, len) = match range.map(|r| parse_range(r, size)) {
        None | Some(RangeAnswer::Ignore) => {
            builder = builder.status(StatusCode::OK);
            (0, size)
        }
        Some(RangeAnswer::Unsatisfiable) => {
            let response = builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .header(header::CONTENT_LENGTH, 0)
                .body(Empty::new().map_err(|never| match never {}).boxed())
                .expect("valid 416 response");
            return (response, false);
        }
        Some(RangeAnswer::Partial { start, end }) => {
            builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (start, end - start + 1)
        }
    };
    builder = builder.header(header::CONTENT_LENGTH, len);
    if method == Method::HEAD {
        let body = Empty::new().map_err(|never| match never {}).boxed();
        return (builder.body(body).expect("valid HEAD response"), false);
    }
    let plan = body_fault(shared, path, start, len);
    let applied = plan.corrupt_at.is_some() || plan.cut.is_some();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(produce(file, start, len, plan, tx));
    let body = ChannelBody {
        rx,
        counter: shared.body_bytes.clone(),
    };
    (
        builder.body(body.boxed()).expect("valid file response"),
        applied,
    )
}

/// Applies a `Status`/`StatusFor` fault if it is in force for `path`.
fn status_fault(shared: &Shared, path: &str) -> Option<u16> {
    let mut state = shared.fault.lock().unwrap_or_else(|e| e.into_inner());
    if !targets(&state.fault, path) {
        return None;
    }
    match state.fault {
        Fault::Status { status, times } | Fault::StatusFor { status, times, .. }
            if state.applied < times =>
        {
            state.applied = state.applied.saturating_add(1);
            Some(status)
        }
        _ => None,
    }
}

/// Decides corruption and cut for a file response of `len` bytes from `start`.
fn body_fault(shared: &Shared, path: &str, start: u64, len: u64) -> Plan {
    let mut state = shared.fault.lock().unwrap_or_else(|e| e.into_inner());
    if !targets(&state.fault, path) {
        return Plan::default();
    }
    let covers = |offset: u64| offset >= start && offset < start + len;
    match state.fault {
        Fault::CorruptOnce { offset, .. } if state.applied == 0 && covers(offset) => {
            state.applied = 1;
            Plan {
                corrupt_at: Some(offset - start),
                cut: None,
            }
        }
        Fault::CorruptAlways { offset, .. } if covers(offset) => {
            state.applied = state.applied.saturating_add(1);
            Plan {
                corrupt_at: Some(offset - start),
                cut: None,
            }
        }
        Fault::TruncateAfter { bytes, times } if state.applied < times && bytes < len => {
            state.applied += 1;
            Plan {
                corrupt_at: None,
                cut: Some(Cut::Truncate(bytes)),
            }
        }
        Fault::StallAfter { bytes, times } if state.applied < times && bytes < len => {
            state.applied += 1;
            Plan {
                corrupt_at: None,
                cut: Some(Cut::Stall(bytes)),
            }
        }
        _ => Plan::default(),
    }
}

/// Reads the body from disk into the channel, carrying out `plan`.
async fn produce(
    file: PathBuf,
    start: u64,
    len: u64,
    plan: Plan,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    let limit = match plan.cut {
        Some(Cut::Truncate(n) | Cut::Stall(n)) => n.min(len),
        None => len,
    };
    if let Err(e) = send_range(&file, start, limit, plan.corrupt_at, &tx).await {
        let _ = tx.send(Err(e)).await;
        return;
    }
    match plan.cut {
        None => {}
        Some(Cut::Truncate(_)) => {
            // hyper drops its unflushed buffer when a body fails: let it take and
            // flush the last chunks before the error closes the connection.
            while tx.capacity() < tx.max_capacity() && !tx.is_closed() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tx.send(Err(io::Error::other("injected truncation"))).await;
        }
        Some(Cut::Stall(_)) => {
            // hyper drops the body (closing the channel) when the client goes away.
            tokio::select! {
                _ = tokio::time::sleep(MAX_STALL) => {}
                _ = tx.closed() => {}
            }
            let _ = tx.send(Err(io::Error::other("injected stall ended"))).await;
        }
    }
}

async fn send_range(
    file: &Path,
    start: u64,
    limit: u64,
    corrupt_at: Option<u64>,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    let mut f = tokio::fs::File::open(file).await?;
    f.seek(io::SeekFrom::Start(start)).await?;
    let mut sent = 0u64;
    while sent < limit {
        let n = CHUNK.min(limit - sent);
        let mut buf = vec![0u8; n as usize];
        f.read_exact(&mut buf).await?;
        if let Some(at) = corrupt_at {
            if at >= sent && at < sent + n {
                buf[(at - sent) as usize] ^= 0xFF;
            }
        }
        if tx.send(Ok(Bytes::from(buf))).await.is_err() {
            return Ok(()); // the client went away
        }
        sent += n;
    }
    Ok(())
}

/// A response body fed by [`produce`]; counts the bytes hyper takes.
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    counter: Arc<AtomicU64>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        this.rx.poll_recv(cx).map(|item| {
            item.map(|chunk| {
                chunk.map(|data| {
                    this.counter.fetch_add(data.len() as u64, Ordering::SeqCst);
                    Frame::data(data)
                })
            })
        })
    }
}

fn text(status: StatusCode, message: &str) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(
            Full::new(Bytes::from(format!("{message}\n")))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("valid text response")
}

fn content_type(path: &str) -> &'static str {
    if path.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

/// Maps a request path to a file under `root`; `None` for anything escaping it.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    let mut file = root.to_path_buf();
    for component in Path::new(&decoded).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => file.push(part),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(file)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How to answer a `Range` header.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeAnswer {
    /// Malformed or multi-range: serve the whole file (200), as RFC 9110 allows.
    Ignore,
    /// 416.
    Unsatisfiable,
    /// 206 with these inclusive bounds.
    Partial { start: u64, end: u64 },
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range against `size`.
pub(super) fn parse_range(header: &str, size: u64) -> RangeAnswer {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Ignore;
    };
    if spec.contains(',') {
        return RangeAnswer::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last n bytes.
        return match last.parse::<u64>() {
            Ok(0) => RangeAnswer::Unsatisfiable,
            Ok(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Ok(n) => RangeAnswer::Partial {
                start: size - n.min(size),
                end: size - 1,
            },
            Err(_) => RangeAnswer::Ignore,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeAnswer::Ignore;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return RangeAnswer::Ignore,
        }
    };
    if start >= size {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial {
        start,
        end: end.min(size - 1),
    }
}
