//! Answering one peer-copy request: authentication, routing, `have`, and files.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tracing::{debug, warn};

use super::request::{parse_have_query, parse_route, Route};
use super::server::{ConnectionInfo, PeerService};
use super::HaveDoc;
use crate::cache::{CacheError, ContentEntry, EntryLease};
use crate::util::{parse_range, ByteRange};

/// Response body: small documents, or a file streamed block by block.
pub(super) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Read at least this much per trip to the blocking pool (whole blocks).
const READ_CHUNK: usize = 256 * 1024;

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let body: Bytes = body.into();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .body(
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("static headers are valid")
}

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut m = message.into();
    m.push('\n');
    full(status, "text/plain; charset=utf-8", m)
}

impl PeerService {
    /// Answer one request.
    pub(super) async fn handle(
        &self,
        req: Request<Incoming>,
        info: ConnectionInfo,
    ) -> Response<Body> {
        let inner = &self.inner;
        inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        if !info.client_certificate {
            let authz = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes);
            if let Err(why) = inner.auth.check(authz) {
                inner.counters.refusals.fetch_add(1, Ordering::Relaxed);
                warn!(remote = %info.remote, path = %req.uri().path(), reason = %why, "peer-copy request refused");
                return text(StatusCode::FORBIDDEN, format!("refused: {why}"));
            }
        }
        let head = req.method() == Method::HEAD;
        if req.method() != Method::GET && !head {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let Some(route) = parse_route(req.uri().path()) else {
            return text(StatusCode::NOT_FOUND, "not found");
        };
        let key = match &route {
            Route::Manifest(k) | Route::Have(k) | Route::File(k, _) => k,
        };
        // Opening an entry not open yet may hash its unrecorded blocks: off the runtime.
        let lookup = {
            let (cache, key) = (Arc::clone(&inner.cache), key.clone());
            tokio::task::spawn_blocking(move || cache.get(&key)).await
        };
        let entry = match lookup {
            Ok(Ok(Some(e))) => e,
            Ok(Ok(None)) | Ok(Err(CacheError::InvalidId(_))) => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("content {key} is not in this agent's cache"),
                )
            }
            Ok(Err(e)) => {
                warn!(content = %key, error = %e, "peer-copy request: cache lookup failed");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "cache error");
            }
            Err(e) => {
                warn!(content = %key, error = %e, "peer-copy request: cache lookup task failed");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "cache error");
            }
        };
        // Held until the answer is sent (the body owns it), so clean-up never deletes
        // content being served.
        let lease = entry.lease();
        let mut resp = match route {
            Route::Manifest(_) => full(
                StatusCode::OK,
                "application/json",
                entry.manifest().to_json(),
            ),
            Route::Have(_) => match parse_have_query(req.uri().query()) {
                Ok((after, wait)) => self.have(&entry, after, wait).await,
                Err(msg) => text(StatusCode::BAD_REQUEST, msg),
            },
            Route::File(_, path) => {
                return self.file(lease, &path, req.headers().get(header::RANGE), head);
            }
        };
        drop(lease);
        let len = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        if head {
            *resp.body_mut() = Empty::new().map_err(|never| match never {}).boxed_unsync();
        } else {
            inner
                .counters
                .bytes_served
                .fetch_add(len.unwrap_or(0), Ordering::Relaxed);
        }
        resp
    }

    /// The verified-block map, once more than `after` blocks are verified (or the
    /// content is complete, or `wait` passed, or the server stops).
    async fn have(
        &self,
        entry: &ContentEntry,
        after: Option<usize>,
        wait: Duration,
    ) -> Response<Body> {
        if let Some(after) = after.filter(|_| !wait.is_zero()) {
            let mut rx = entry.subscribe();
            let deadline = tokio::time::sleep(wait);
            tokio::pin!(deadline);
            loop {
                let n = *rx.borrow_and_update();
                if n > after || entry.is_complete() {
                    break;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { break },
                    _ = &mut deadline => break,
                    _ = self.inner.shutdown.cancelled() => break,
                }
            }
        }
        let m = entry.manifest();
        let bitmap = entry.have_bitmap();
        let block_count = m.block_count();
        // Counted from the same snapshot as the bitmap, so the document agrees with itself.
        let verified = (0..block_count)
            .filter(|&i| HaveDoc::bit(&bitmap, i))
            .count();
        let doc = HaveDoc {
            content_id: m.content_id.clone(),
            version: m.version,
            content_hash: m.content_hash.clone(),
            block_count,
            verified,
            complete: verified == block_count,
            bitmap: hex::encode(&bitmap),
        };
        full(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&doc).expect("HaveDoc serializes"),
        )
    }

    /// A file, or part of it, if every block the bytes come from is verified.
    fn file(
        &self,
        lease: EntryLease,
        path: &str,
        range: Option<&HeaderValue>,
        head: bool,
    ) -> Response<Body> {
        let entry = Arc::clone(lease.entry());
        let m = entry.manifest();
        let Some(fi) = m.find_file(path) else {
            return text(StatusCode::NOT_FOUND, "no such file in this content");
        };
        let size = m.files[fi].size;
        let (start, end, partial) = match parse_range(range, size) {
            ByteRange::Full => (0, size, false),
            ByteRange::Part { start, end } => (start, end + 1, true),
            ByteRange::Unsatisfiable => {
                let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
                );
                return r;
            }
        };
        if start < end {
            let bs = u64::from(m.block_size);
            let first = m.files[fi].first_block;
            let blocks = first + (start / bs) as usize..=first + ((end - 1) / bs) as usize;
            let missing = blocks.clone().filter(|&i| !entry.has_block(i)).count();
            if missing > 0 {
                return text(
                    StatusCode::CONFLICT,
                    format!(
                        "blocks not verified yet: {missing} of the {} blocks holding bytes {start}-{} of {path}",
                        blocks.count(),
                        end - 1
                    ),
                );
            }
        }
        let mut b = Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::CONTENT_LENGTH, end - start);
        b = if partial {
            b.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{size}", end - 1),
            )
        } else {
            b.status(StatusCode::OK)
        };
        let body = if head || start == end {
            Empty::new().map_err(|never| match never {}).boxed_unsync()
        } else {
            self.file_body(lease, fi, start, end)
        };
        b.body(body).expect("headers are valid")
    }

    /// Stream bytes `start..end` of file `fi`, re-verifying each block before it goes.
    fn file_body(&self, lease: EntryLease, fi: usize, start: u64, end: u64) -> Body {
        struct State {
            svc: PeerService,
            lease: EntryLease,
            fi: usize,
            pos: u64,
            end: u64,
            ready: VecDeque<Bytes>,
        }
        let state = State {
            svc: self.clone(),
            lease,
            fi,
            pos: start,
            end,
            ready: VecDeque::new(),
        };
        let stream = futures_util::stream::unfold(state, |mut st| async move {
            if let Some(chunk) = st.ready.pop_front() {
                let n = chunk.len() as u64;
                st.svc
                    .inner
                    .counters
                    .bytes_served
                    .fetch_add(n, Ordering::Relaxed);
                return Some((Ok(Frame::data(chunk)), st));
            }
            if st.pos >= st.end {
                return None;
            }
            let fail = |mut st: State, e: io::Error| {
                st.pos = st.end;
                Some((Err(e), st))
            };
            if st.svc.inner.shutdown.is_cancelled() {
                return fail(st, io::Error::other("peer-copy server shutting down"));
            }
            let entry = Arc::clone(st.lease.entry());
            let (fi, pos, end) = (st.fi, st.pos, st.end);
            let read = tokio::task::spawn_blocking(move || read_chunk(&entry, fi, pos, end)).await;
            match read {
                Ok(Ok(pieces)) => {
                    st.pos += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
                    st.ready = pieces.into();
                    let chunk = st
                        .ready
                        .pop_front()
                        .expect("read_chunk returns at least one piece");
                    st.svc
                        .inner
                        .counters
                        .bytes_served
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    Some((Ok(Frame::data(chunk)), st))
                }
                Ok(Err(e)) => {
                    let entry = st.lease.entry();
                    let path = &entry.manifest().files[st.fi].path;
                    match e {
                        ChunkError::Changed(block) => {
                            warn!(content = %entry.key(), file = %path, block, "cached block changed on disk since it was verified: not sent, response aborted");
                            st.svc.reverify_later(st.lease.entry());
                        }
                        ChunkError::NotVerified(block) => {
                            warn!(content = %entry.key(), file = %path, block, "block no longer verified: response aborted");
                        }
                        ChunkError::Cache(ref e) => {
                            warn!(content = %entry.key(), file = %path, error = %e, "reading a cached block failed: response aborted");
                        }
                    }
                    fail(st, io::Error::other(e.to_string()))
                }
                Err(join) => fail(st, io::Error::other(join.to_string())),
            }
        });
        StreamBody::new(stream).boxed_unsync()
    }

    /// Re-hash a complete entry in the background after one of its blocks was found
    /// changed, so it stops being advertised and served (and is fetched again).
    /// Incomplete entries are left to the job filling them.
    fn reverify_later(&self, entry: &Arc<ContentEntry>) {
        if !entry.is_complete() {
            return;
        }
        let key = entry.key().clone();
        if !self
            .inner
            .reverifying
            .lock()
            .expect("reverify lock")
            .insert(key.clone())
        {
            return;
        }
        let inner = Arc::clone(&self.inner);
        let lease = entry.lease();
        tokio::task::spawn_blocking(move || {
            match lease.entry().reverify() {
                Ok(n) => debug!(content = %key, blocks = n, "re-verified after a changed block"),
                Err(e) => warn!(content = %key, error = %e, "re-verifying the entry failed"),
            }
            inner
                .reverifying
                .lock()
                .expect("reverify lock")
                .remove(&key);
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum ChunkError {
    #[error("block {0} changed on disk since it was verified")]
    Changed(usize),
    #[error("block {0} is not verified")]
    NotVerified(usize),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Whole verified blocks covering `pos..end` of file `fi`, about [`READ_CHUNK`]
/// bytes, each hashed again, trimmed to the range.
fn read_chunk(
    entry: &ContentEntry,
    fi: usize,
    mut pos: u64,
    end: u64,
) -> Result<Vec<Bytes>, ChunkError> {
    let m = entry.manifest();
    let bs = u64::from(m.block_size);
    let first = m.files[fi].first_block;
    let mut pieces = Vec::new();
    let mut total = 0usize;
    while pos < end && total < READ_CHUNK {
        let i = first + (pos / bs) as usize;
        let b = m.block(i);
        let data = entry.read_block(i)?.ok_or(ChunkError::NotVerified(i))?;
        if !m.verify_block(i, &data) {
            return Err(ChunkError::Changed(i));
        }
        let from = (pos - b.offset) as usize;
        let to = (end - b.offset).min(u64::from(b.len)) as usize;
        pieces.push(Bytes::from(data).slice(from..to));
        total += to - from;
        pos += (to - from) as u64;
    }
    Ok(pieces)
}
