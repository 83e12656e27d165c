//! The engine against an in-memory source (any [`BlockSource`] plugs in), and the
//! failure classification's codes.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::cache::{BlockRun, Cache, ContentEntry};
use crate::codes::Code;
use crate::manifest::{hash_block, FileEntry, Manifest};

const BS: usize = 4096;

/// Every test gets this long, then fails.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test took more than 30 s")
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 4096) as u8).collect()
}

/// One file of `n` bytes in a fresh cache.
fn entry(n: usize) -> (Arc<ContentEntry>, Vec<u8>, tempfile::TempDir) {
    let d = data(n);
    let file = FileEntry::new(
        "f.bin",
        n as u64,
        false,
        d.chunks(BS).map(hash_block).collect(),
    );
    let m = Manifest::build("T", 1, BS as u32, vec![file]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    (cache.get_or_create(m, 5).unwrap(), d, dir)
}

/// Serves a file from memory in chunks of `chunk` bytes; `corrupt` bytes are
/// flipped, the body stops at `stop_at` (file offset), and `head` sends the file
/// from its start (a server that ignored Range).
struct Memory {
    bytes: Vec<u8>,
    chunk: usize,
    corrupt: Vec<usize>,
    stop_at: Option<u64>,
    head: bool,
    not_held: bool,
    asked: Mutex<Vec<Range<u64>>>,
}

impl Memory {
    fn new(bytes: Vec<u8>, chunk: usize) -> Memory {
        Memory {
            bytes,
            chunk,
            corrupt: Vec::new(),
            stop_at: None,
            head: false,
            not_held: false,
            asked: Mutex::new(Vec::new()),
        }
    }
}

struct Chunks(VecDeque<Bytes>);

impl RunBody for Chunks {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpFailure> {
        Ok(self.0.pop_front())
    }
}

impl BlockSource for Memory {
    type Body = Chunks;

    async fn open_run(
        &self,
        _: &FileEntry,
        range: Range<u64>,
    ) -> Result<Opened<Chunks>, HttpFailure> {
        self.asked.lock().unwrap().push(range.clone());
        if self.not_held {
            return Ok(Opened::NotHeld);
        }
        let from = if self.head { 0 } else { range.start };
        let to = self.stop_at.unwrap_or(range.end).min(range.end);
        let mut bytes = self.bytes.clone();
        for &i in &self.corrupt {
            bytes[i] ^= 0xff;
        }
        let body = bytes[from as usize..to as usize]
            .chunks(self.chunk)
            .map(Bytes::copy_from_slice)
            .collect();
        Ok(Opened::Body {
            body: Chunks(body),
            skip: range.start - from,
        })
    }
}

fn run(first: usize, last: usize) -> BlockRun {
    BlockRun {
        file: 0,
        first,
        last,
    }
}

#[tokio::test]
async fn blocks_are_reassembled_across_any_chunk_size_and_stored() {
    bounded(async {
        for chunk in [1000, BS, 3 * BS + 5] {
            let (e, d, _dir) = entry(5 * BS + 100);
            let source = Memory::new(d.clone(), chunk);
            let (a, b) = (AtomicU64::new(0), AtomicU64::new(0));
            let r = fetch_run(&e, run(1, 5), &source, &[&a, &b]).await.unwrap();
            assert!(matches!(r.end, Ok(RunEnd::Done)), "{:?}", r.end);
            assert!(r.rejected.is_empty());
            assert!((1..=5).all(|i| e.has_block(i)) && !e.has_block(0));
            let sent = (d.len() - BS) as u64;
            assert_eq!((a.into_inner(), b.into_inner()), (sent, sent));
            assert_eq!(source.asked.lock().unwrap()[0], BS as u64..d.len() as u64);
        }
    })
    .await
}

#[tokio::test]
async fn a_whole_file_answer_to_a_range_is_skipped_to_the_range_and_counted() {
    bounded(async {
        let (e, d, _dir) = entry(4 * BS);
        let mut source = Memory::new(d, 1500);
        source.head = true;
        let n = AtomicU64::new(0);
        let r = fetch_run(&e, run(2, 3), &source, &[&n]).await.unwrap();
        assert!(matches!(r.end, Ok(RunEnd::Done)));
        assert!(e.has_block(2) && e.has_block(3) && !e.has_block(1));
        assert_eq!(
            n.into_inner(),
            4 * BS as u64,
            "the skipped head crossed the wire too"
        );
    })
    .await
}

#[tokio::test]
async fn blocks_that_do_not_verify_are_reported_and_not_stored() {
    bounded(async {
        let (e, d, _dir) = entry(3 * BS);
        let mut source = Memory::new(d, BS);
        source.corrupt = vec![BS + 17];
        let r = fetch_run(&e, run(0, 2), &source, &[]).await.unwrap();
        assert_eq!(r.rejected, vec![1]);
        assert!(e.has_block(0) && !e.has_block(1) && e.has_block(2));
    })
    .await
}

#[tokio::test]
async fn a_body_that_ends_early_is_cut_short_at_the_block_arriving() {
    bounded(async {
        let (e, d, _dir) = entry(4 * BS);
        let mut source = Memory::new(d, 1000);
        source.stop_at = Some(2 * BS as u64 + 10);
        let r = fetch_run(&e, run(0, 3), &source, &[]).await.unwrap();
        match r.end {
            Ok(RunEnd::CutShort {
                block,
                at,
                end,
                cause,
            }) => {
                assert_eq!((block, at, end), (2, 2 * BS as u64 + 10, 4 * BS as u64));
                assert!(cause.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(e.has_block(0) && e.has_block(1) && !e.has_block(2));
    })
    .await
}

#[tokio::test]
async fn a_source_that_no_longer_holds_the_blocks_says_so() {
    bounded(async {
        let (e, d, _dir) = entry(2 * BS);
        let mut source = Memory::new(d, BS);
        source.not_held = true;
        let r = fetch_run(&e, run(0, 1), &source, &[]).await.unwrap();
        assert!(matches!(r.end, Ok(RunEnd::NotHeld)));
        assert_eq!(e.verified_bytes(), 0);
    })
    .await
}

#[test]
fn a_block_failing_more_than_the_limit_is_corrupt() {
    let (e, _, _dir) = entry(3 * BS);
    let mut bad = BadBlocks::new(2);
    assert_eq!((bad.record(1), bad.record(1), bad.record(2)), (1, 2, 1));
    assert_eq!(bad.over_limit(e.manifest()), None);
    bad.record(1);
    let c = bad.over_limit(e.manifest()).unwrap();
    assert_eq!((c.path.as_str(), c.block, c.times), ("f.bin", 1, 3));
}

#[test]
fn statuses_map_to_the_remote_s_codes_and_only_server_errors_are_retried() {
    let url: reqwest::Url = "http://h/x".parse().unwrap();
    let st = |r, s| check_status(r, &url, reqwest::StatusCode::from_u16(s).unwrap());
    assert!(st(Remote::Origin, 206).is_ok());
    let f = st(Remote::Origin, 404).unwrap_err();
    assert_eq!((f.code, f.retryable), (Code::ORIGIN_NOT_FOUND, false));
    assert_eq!(
        f.to_string(),
        "http://h/x: not found on the origin (HTTP 404)"
    );
    let f = st(Remote::Origin, 503).unwrap_err();
    assert_eq!((f.code, f.retryable), (Code::ORIGIN_SERVER_ERROR, true));
    assert_eq!(
        st(Remote::Origin, 403).unwrap_err().code,
        Code::ORIGIN_REFUSED
    );
    let f = st(Remote::Master, 403).unwrap_err();
    assert_eq!((f.code, f.status()), (Code::ORIGIN_REFUSED, Some(403)));
    assert!(f
        .to_string()
        .starts_with("master refused http://h/x (HTTP 403)"));
    assert_eq!(
        st(Remote::Master, 404).unwrap_err().code,
        Code::INVALID_SERVER_RESPONSE
    );
    let f = HttpFailure::stalled(Remote::Origin, &url, Duration::from_secs(2));
    assert_eq!(
        (f.code, f.retryable, f.is_unreachable()),
        (Code::TIMEOUT, true, true)
    );
    assert_eq!(f.to_string(), "http://h/x: no data for 2 s");
}

#[test]
fn content_urls_keep_every_path_part_a_segment() {
    let root: reqwest::Url = "https://dp.example/content".parse().unwrap();
    let u = ContentUrls::new(&root, &["PKG 1", "3"]).join(&["content"]);
    assert_eq!(
        u.url(&["dir/b b.bin"]).as_str(),
        "https://dp.example/content/PKG%201/3/content/dir/b%20b.bin"
    );
    let root: reqwest::Url = "http://127.0.0.1:1/".parse().unwrap();
    let u = ContentUrls::new(&root, &["content", "P", "3"]);
    assert_eq!(
        u.url(&["files", "a?#.bin"]).as_str(),
        "http://127.0.0.1:1/content/P/3/files/a%3F%23.bin"
    );
}

/// Sends `before` chunks of one block each, then waits for `go` before the rest.
struct Pausing {
    bytes: Vec<u8>,
    before: usize,
    go: Arc<tokio::sync::Notify>,
}

struct PausingBody {
    chunks: VecDeque<Bytes>,
    before: usize,
    go: Arc<tokio::sync::Notify>,
}

impl RunBody for PausingBody {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpFailure> {
        if self.before == 0 {
            self.go.notified().await;
        }
        self.before = self.before.wrapping_sub(1);
        Ok(self.chunks.pop_front())
    }
}

impl BlockSource for Pausing {
    type Body = PausingBody;

    async fn open_run(
        &self,
        _: &FileEntry,
        range: Range<u64>,
    ) -> Result<Opened<PausingBody>, HttpFailure> {
        let bytes = &self.bytes[range.start as usize..range.end as usize];
        Ok(Opened::Body {
            body: PausingBody {
                chunks: bytes.chunks(BS).map(Bytes::copy_from_slice).collect(),
                before: self.before,
                go: Arc::clone(&self.go),
            },
            skip: 0,
        })
    }
}

#[tokio::test]
async fn blocks_that_arrived_are_stored_while_the_source_pauses() {
    bounded(async {
        // A block is stored when it is complete, not when the run ends or more
        // bytes come (BENCHMARKS.md §16 tried batches of 1 MiB: no faster).
        let (e, d, _dir) = entry(8 * BS);
        let go = Arc::new(tokio::sync::Notify::new());
        let source = Pausing {
            bytes: d,
            before: 2,
            go: Arc::clone(&go),
        };
        let counter = AtomicU64::new(0);
        let counters = [&counter];
        let (r, ()) = tokio::join!(fetch_run(&e, run(0, 7), &source, &counters), async {
            let stored = tokio::time::timeout(Duration::from_secs(5), async {
                while !e.has_block(1) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await;
            // Let the transfer end either way, then say what was wrong.
            go.notify_one();
            assert!(
                stored.is_ok(),
                "blocks 0-1 not stored while the source paused"
            );
            assert!(!e.has_block(2));
        });
        let r = r.unwrap();
        assert!(matches!(r.end, Ok(RunEnd::Done)), "{:?}", r.end);
        assert!((0..8).all(|i| e.has_block(i)));
    })
    .await
}
