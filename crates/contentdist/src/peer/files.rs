//! Serving a file, or a range of it, from verified blocks only, and what happens
//! when a block turns out to have changed on disk since it was verified.
//!
//! Every block is checked again just before it is sent (while the chunk before
//! it, at most 256 KiB, is on its way: reading and checking overlap sending): by
//! its file's stamp when the entry is complete and the file's stat still matches
//! (no hashing), else by hashing it. A changed block is *hidden* at once (no longer advertised by `have`, no range touching it
//! served) and the
//! entry is re-verified in the background, which drops the block from the cache's
//! map and tells the agent to repair it; the hiding ends when that re-verification
//! has run. How the requester learns of it depends on where the block is:
//!
//! - in the first read chunk of the range (checked before the head is sent): the
//!   answer is 409, "not held", which a peer handles by asking `have` again;
//! - later: the head has gone, so the body is cut short. The peer asks `have`
//!   again, sees the block is no longer held, and treats the run as not held (not
//!   as a bad block or a network failure).

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use tracing::{debug, warn};

use super::cached::{read_stamped, ReadMode};
use super::handlers::{text, Body};
use super::server::PeerService;
use crate::cache::{CacheError, ContentEntry, EntryLease};
use crate::manifest::ContentKey;
use crate::util::{parse_range, ByteRange};

/// Read at least this much per trip to the blocking pool (whole blocks).
const READ_CHUNK: usize = 256 * 1024;

impl PeerService {
    /// A file, or part of it, if every block the bytes come from is verified (and
    /// not found changed since), checked for the first [`READ_CHUNK`] before the
    /// head is sent.
    pub(super) async fn file(
        &self,
        lease: EntryLease,
        path: &str,
        range: Option<&HeaderValue>,
        head: bool,
        tls: bool,
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
        let mut first_chunk = Vec::new();
        let mut serving = None;
        // Opened once for the whole response when the file is stamped (see `cached`).
        let stamped = if head {
            None
        } else {
            entry.open_stamped(fi).map(Arc::new)
        };
        if start < end {
            let bs = u64::from(m.block_size);
            let first = m.files[fi].first_block;
            let blocks = first + (start / bs) as usize..=first + ((end - 1) / bs) as usize;
            let hidden = self.hidden_blocks(entry.key());
            let missing = blocks
                .clone()
                .filter(|&i| !entry.has_block(i) || hidden.contains(&i))
                .count();
            if missing > 0 {
                if blocks.clone().any(|i| hidden.contains(&i)) {
                    self.reverify_later(&entry);
                }
                return text(
                    StatusCode::CONFLICT,
                    format!(
                        "blocks not verified yet: {missing} of the {} blocks holding bytes {start}-{} of {path}",
                        blocks.count(),
                        end - 1
                    ),
                );
            }
            if !head {
                serving = match self.serving_slot() {
                    Ok(s) => s,
                    Err(Busy) => return self.busy(),
                };
                let cached = stamped
                    .as_ref()
                    .filter(|_| self.reads_inline())
                    .and_then(|f| {
                        let range = (start, end);
                        read_stamped(
                            &entry,
                            fi,
                            f,
                            range,
                            READ_CHUNK,
                            &hidden,
                            ReadMode::CachedOnly,
                        )
                    });
                if let Some(bytes) = cached {
                    self.inner
                        .counters
                        .reads_cached
                        .fetch_add(1, Ordering::Relaxed);
                    first_chunk = vec![bytes];
                }
            }
            if !head && first_chunk.is_empty() {
                // Before the head: a changed block here can still be answered as
                // "not held" rather than as a body cut short.
                let e = Arc::clone(&entry);
                self.inner
                    .counters
                    .reads_pooled
                    .fetch_add(1, Ordering::Relaxed);
                let f = stamped.clone();
                let read = move || pool_read(&e, fi, f.as_deref(), (start, end), &hidden);
                match tokio::task::spawn_blocking(read).await {
                    Ok((pieces, None)) => first_chunk = pieces,
                    Ok((_, Some(ChunkError::Changed(block)))) => {
                        warn!(content = %entry.key(), file = %path, block, "cached block changed on disk since it was verified: answered 409 (not held)");
                        self.block_changed(&entry, block);
                        self.inner
                            .counters
                            .changed_ranges_refused
                            .fetch_add(1, Ordering::Relaxed);
                        return text(
                            StatusCode::CONFLICT,
                            format!("block {block} of {path} changed on this agent's disk since it was verified: not held any more"),
                        );
                    }
                    Ok((_, Some(ChunkError::NotVerified(block)))) => {
                        return text(
                            StatusCode::CONFLICT,
                            format!("block {block} of {path} is no longer verified here"),
                        );
                    }
                    Ok((_, Some(ChunkError::Cache(e)))) => {
                        warn!(content = %entry.key(), file = %path, error = %e, "reading a cached block failed");
                        return text(StatusCode::INTERNAL_SERVER_ERROR, "cache read error");
                    }
                    Err(e) => {
                        warn!(content = %entry.key(), error = %e, "cache read task failed");
                        return text(StatusCode::INTERNAL_SERVER_ERROR, "cache read error");
                    }
                }
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
            self.file_body(Streamed {
                lease,
                fi,
                range: start..end,
                ready: first_chunk,
                serving,
                file: stamped,
                tls,
            })
        };
        b.body(body).expect("headers are valid")
    }

    /// Stream bytes `range` of file `fi`: first `ready` (read and verified already,
    /// from the range's start), then the rest, re-verifying each block before it
    /// goes.
    fn file_body(&self, body: Streamed) -> Body {
        let Streamed {
            lease,
            fi,
            range,
            ready,
            serving,
            file,
            tls,
        } = body;
        /// What one read of the blocking pool returns.
        type Read = tokio::task::JoinHandle<(Vec<Bytes>, Option<ChunkError>)>;
        struct State {
            svc: PeerService,
            lease: EntryLease,
            fi: usize,
            pos: u64,
            end: u64,
            ready: VecDeque<Bytes>,
            /// The next chunk, being read and re-hashed while this one is sent:
            /// reading overlaps sending instead of alternating with it.
            next: Option<Read>,
            /// Held until the body is sent or dropped.
            _serving: Option<ServingSlot>,
            /// The file, when stamped (see `cached`).
            file: Option<Arc<std::fs::File>>,
            /// False once a chunk was not in the page cache: the rest is read on
            /// the pool.
            inline_ok: bool,
            tls: bool,
        }
        impl State {
            /// Whether the next chunk is read on this thread (see `cached`).
            fn inline(&self) -> bool {
                self.file.is_some() && self.inline_ok && self.svc.reads_inline()
            }

            /// The next chunk from the page cache on this thread, if reads go
            /// inline now and it is there.
            fn cached(&mut self) -> bool {
                if self.next.is_some() || !self.inline() {
                    return false;
                }
                let Some(f) = &self.file else { return false };
                let entry = self.lease.entry();
                let hidden = self.svc.hidden_blocks(entry.key());
                let range = (self.pos, self.end);
                match read_stamped(
                    entry,
                    self.fi,
                    f,
                    range,
                    READ_CHUNK,
                    &hidden,
                    ReadMode::CachedOnly,
                ) {
                    Some(b) => {
                        self.pos += b.len() as u64;
                        self.ready.push_back(b);
                        let c = &self.svc.inner.counters;
                        c.reads_cached.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    // Not cached (or not to be trusted): the rest of this
                    // response is read on the pool, ahead of sending, as a file
                    // read from the disk is best read.
                    None => {
                        self.inline_ok = false;
                        false
                    }
                }
            }

            fn read_ahead(&mut self) {
                if self.next.is_none()
                    && self.pos < self.end
                    && !self.svc.inner.shutdown.is_cancelled()
                {
                    let entry = Arc::clone(self.lease.entry());
                    let (fi, pos, end) = (self.fi, self.pos, self.end);
                    let c = &self.svc.inner.counters;
                    c.reads_pooled.fetch_add(1, Ordering::Relaxed);
                    let hidden = self.svc.hidden_blocks(entry.key());
                    let f = self.file.clone();
                    self.next = Some(tokio::task::spawn_blocking(move || {
                        pool_read(&entry, fi, f.as_deref(), (pos, end), &hidden)
                    }));
                }
            }
        }
        let read: u64 = ready.iter().map(|p| p.len() as u64).sum();
        let mut state = State {
            svc: self.clone(),
            lease,
            fi,
            pos: range.start + read,
            end: range.end,
            ready: ready.into(),
            next: None,
            _serving: serving,
            file,
            inline_ok: true,
            tls,
        };
        if !state.inline() {
            state.read_ahead();
        }
        let stream = futures_util::stream::unfold(state, |mut st| async move {
            let fail = |mut st: State, e: io::Error| {
                st.pos = st.end;
                st.next = None;
                st.svc
                    .inner
                    .counters
                    .responses_aborted
                    .fetch_add(1, Ordering::Relaxed);
                Some((Err(e), st))
            };
            let more = st.ready.is_empty() && st.pos < st.end;
            if more && st.svc.inner.shutdown.is_cancelled() {
                return fail(st, io::Error::other("peer-copy server shutting down"));
            }
            if more && !st.cached() {
                st.read_ahead();
                let read = st.next.take().expect("a read is under way").await;
                match read {
                    Ok((pieces, Some(e))) if pieces.is_empty() => {
                        let entry = Arc::clone(st.lease.entry());
                        let path = &entry.manifest().files[st.fi].path;
                        match e {
                            ChunkError::Changed(block) => {
                                warn!(content = %entry.key(), file = %path, block, "cached block changed on disk since it was verified: not sent, response aborted");
                                st.svc.block_changed(&entry, block);
                            }
                            ChunkError::NotVerified(block) => {
                                warn!(content = %entry.key(), file = %path, block, "block no longer verified: response aborted");
                            }
                            ChunkError::Cache(ref e) => {
                                warn!(content = %entry.key(), file = %path, error = %e, "reading a cached block failed: response aborted");
                            }
                        }
                        return fail(st, io::Error::other(e.to_string()));
                    }
                    // Send what verified; a failure after it is met again, first
                    // thing, by the next read.
                    Ok((pieces, failed)) => {
                        st.pos += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
                        st.ready = pieces.into();
                        // After a failure, the next read starts at the failing
                        // block, and meets it again when these pieces are sent.
                        // Inline reads need none ahead.
                        if failed.is_none() && !st.inline() {
                            st.read_ahead();
                        }
                    }
                    Err(join) => return fail(st, io::Error::other(join.to_string())),
                }
            }
            let chunk = st.ready.pop_front()?;
            if let Some(pacer) = &st.svc.inner.pacer {
                let wait = pacer.delay(chunk.len(), std::time::Instant::now());
                if !wait.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = st.svc.inner.shutdown.cancelled() => {}
                    }
                }
            }
            let c = &st.svc.inner.counters;
            c.bytes_served
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if st.tls {
                c.content_served_https
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            } else {
                c.content_served_http
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            Some((Ok(Frame::data(chunk)), st))
        });
        StreamBody::new(stream).boxed_unsync()
    }

    /// A permit to send content (`None`: no limit), or [`Busy`] when
    /// [`super::PeerServerLimits::max_serving`] responses are sending already.
    fn serving_slot(&self) -> Result<Option<ServingSlot>, Busy> {
        let permit = match &self.inner.serving {
            Some(sem) => Some(Arc::clone(sem).try_acquire_owned().map_err(|_| Busy)?),
            None => None,
        };
        let counters = &self.inner.counters;
        counters.serving_now.fetch_add(1, Ordering::Relaxed);
        Ok(Some(ServingSlot {
            _permit: permit,
            counters: Arc::clone(counters),
        }))
    }

    /// Whether chunks of stamped files are read on the async thread (from the page
    /// cache) rather than ahead on the blocking pool: when at least as many
    /// responses are sending as the machine has cores, so that reading ahead
    /// would not find an idle core anyway (see `cached`).
    fn reads_inline(&self) -> bool {
        self.inner.counters.serving_now.load(Ordering::Relaxed) >= self.inner.cores
    }

    /// The 503 "busy" answer, with when to come back.
    fn busy(&self) -> Response<Body> {
        let max = self.inner.max_serving;
        self.inner
            .counters
            .busy_refusals
            .fetch_add(1, Ordering::Relaxed);
        debug!(
            limit = max,
            "content request answered busy (MaxServingConnections)"
        );
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("busy: this agent sends content on {max} connections at once (MaxServingConnections); ask another holder or again in a moment"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    }

    /// Blocks of `key` found changed and not yet re-verified: neither advertised
    /// nor served. Nearly always empty.
    pub(super) fn hidden_blocks(&self, key: &ContentKey) -> Vec<usize> {
        let hidden = self.inner.hidden.lock().expect("hidden blocks lock");
        hidden
            .get(key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The cache's verified-block map without the hidden blocks: what `have`
    /// advertises. Hidden blocks are read before the map: a re-verification clears
    /// the cache's bits before it stops hiding them, so a block is never seen
    /// neither hidden nor cleared. Also starts a re-verification that could not run
    /// when the blocks were hidden (the entry was incomplete).
    pub(super) fn advertised_bitmap(&self, entry: &Arc<ContentEntry>) -> Vec<u8> {
        let hidden = self.hidden_blocks(entry.key());
        let mut bitmap = entry.have_bitmap();
        if !hidden.is_empty() {
            for i in hidden {
                bitmap[i / 8] &= !(1 << (i % 8));
            }
            self.reverify_later(entry);
        }
        bitmap
    }

    /// `block` of `entry` was found changed on disk: hide it at once (before the
    /// response that found it ends, so a requester asking `have` next already sees
    /// it gone), and have the entry re-verified.
    fn block_changed(&self, entry: &Arc<ContentEntry>, block: usize) {
        self.inner
            .counters
            .blocks_changed
            .fetch_add(1, Ordering::Relaxed);
        self.inner
            .hidden
            .lock()
            .expect("hidden blocks lock")
            .entry(entry.key().clone())
            .or_default()
            .insert(block);
        self.reverify_later(entry);
    }

    /// Re-hash a complete entry in the background after one of its blocks was found
    /// changed, so the cache drops the changed blocks from its map (and the agent
    /// repairs them); then stop hiding them here. Incomplete entries are left until
    /// they complete (the blocks stay hidden meanwhile, and `have` asks again).
    /// A re-verification that fails keeps the blocks hidden.
    pub(super) fn reverify_later(&self, entry: &Arc<ContentEntry>) {
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
                Ok(n) => {
                    debug!(content = %key, blocks = n, "re-verified after a changed block");
                    inner
                        .hidden
                        .lock()
                        .expect("hidden blocks lock")
                        .remove(&key);
                }
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

/// Why a block could not be sent.
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
/// bytes, each hashed again, trimmed to the range; and, when a block fails, the
/// blocks before it with the failure (so a body is cut exactly at the failing
/// block, and its requester can ask about that block).
fn read_chunk(
    entry: &ContentEntry,
    fi: usize,
    mut pos: u64,
    end: u64,
) -> (Vec<Bytes>, Option<ChunkError>) {
    let m = entry.manifest();
    let bs = u64::from(m.block_size);
    let first = m.files[fi].first_block;
    let mut blocks = Vec::new();
    let mut total = 0usize;
    let mut failed = None;
    while pos < end && total < READ_CHUNK {
        let i = first + (pos / bs) as usize;
        let b = m.block(i);
        let data = match entry.read_block(i) {
            Ok(Some(d)) => d,
            Ok(None) => {
                failed = Some(ChunkError::NotVerified(i));
                break;
            }
            Err(e) => {
                failed = Some(ChunkError::Cache(e));
                break;
            }
        };
        let from = (pos - b.offset) as usize;
        let to = (end - b.offset).min(u64::from(b.len)) as usize;
        total += to - from;
        pos += (to - from) as u64;
        blocks.push((i, data, from..to));
    }
    // After the reads: a file whose stat still equals its stamp was not written
    // since it was verified, so its bytes need no hashing (see `cache::entry`'s
    // stamps); any other is hashed block by block, as it always was.
    let trusted = entry.unchanged_since_verified(fi);
    let mut pieces = Vec::with_capacity(blocks.len());
    for (i, data, range) in blocks {
        if !trusted && !m.verify_block(i, &data) {
            return (pieces, Some(ChunkError::Changed(i)));
        }
        pieces.push(Bytes::from(data).slice(range));
    }
    (pieces, failed)
}

/// One chunk read on the blocking pool: with one read of the stamped file when
/// there is one and it still matches its stamp, else block by block, each hashed.
fn pool_read(
    entry: &ContentEntry,
    fi: usize,
    stamped: Option<&std::fs::File>,
    (pos, end): (u64, u64),
    hidden: &[usize],
) -> (Vec<Bytes>, Option<ChunkError>) {
    let one = stamped.and_then(|f| {
        read_stamped(
            entry,
            fi,
            f,
            (pos, end),
            READ_CHUNK,
            hidden,
            ReadMode::Blocking,
        )
    });
    match one {
        Some(b) => (vec![b], None),
        None => read_chunk(entry, fi, pos, end),
    }
}

/// What [`PeerService::file_body`] streams.
struct Streamed {
    lease: EntryLease,
    fi: usize,
    range: std::ops::Range<u64>,
    /// Read and verified already, from the range's start.
    ready: Vec<Bytes>,
    serving: Option<ServingSlot>,
    /// The file, open, when it is stamped.
    file: Option<Arc<std::fs::File>>,
    /// Sent over TLS (counted apart).
    tls: bool,
}

/// Every serving slot is taken.
struct Busy;

/// One response sending content, counted while it lasts.
pub(super) struct ServingSlot {
    /// `None` without a limit: the slot is still counted.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    counters: Arc<super::PeerServerCounters>,
}

impl Drop for ServingSlot {
    fn drop(&mut self) {
        self.counters.serving_now.fetch_sub(1, Ordering::Relaxed);
    }
}
