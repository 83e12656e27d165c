//! The engine: one run of consecutive blocks from one source into the cache.
//!
//! One request per run: a fresh transfer is one streaming request per file, a
//! resumed one asks only for the holes. Bytes are cut into blocks as they arrive and
//! each complete block goes to the [`BlockWriter`], which verifies and stores it on
//! a blocking thread; a block that does not verify stays missing and is reported, so
//! the caller can ask for it again and, through [`BadBlocks`], give up on a source
//! that keeps sending bytes that were never published.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::failure::HttpFailure;
use super::source::{BlockSource, Opened, RunBody};
use super::writer::BlockWriter;
use crate::cache::{BlockRun, CacheError, ContentEntry};
use crate::codes::Code;
use crate::manifest::Manifest;

/// How the transfer of one run ended, short of a failure.
#[derive(Debug)]
pub enum RunEnd {
    /// Every byte arrived and every block went to the writer (some may have been
    /// rejected: see [`RunReport::rejected`]).
    Done,
    /// The source no longer holds every block of the run (a master's 409): ask it
    /// what it holds again.
    NotHeld,
    /// The body ended, or broke off, before the end of the run.
    CutShort {
        /// The block that was arriving.
        block: usize,
        /// The file offset of the first byte that did not arrive.
        at: u64,
        /// The end of the run (file offset, exclusive).
        end: u64,
        /// Why, when the body broke rather than ended.
        cause: Option<HttpFailure>,
    },
}

/// What became of one run.
#[derive(Debug)]
pub struct RunReport {
    /// How the transfer ended. A failure here is one the source had before or while
    /// sending (no connection, a refusal, a stall); a body that merely ended early
    /// is [`RunEnd::CutShort`].
    pub end: Result<RunEnd, HttpFailure>,
    /// Blocks that arrived whole but failed verification; they were not stored.
    pub rejected: Vec<usize>,
}

/// Fetch `run` of `entry` from `source` into the cache. Every body byte is added to
/// each of `received` (verified or not: it crossed the network).
///
/// Whatever happened on the wire, the blocks already received are stored before
/// this returns; a cache error (a full disk) is the one that counts then.
pub async fn fetch_run<S: BlockSource>(
    entry: &Arc<ContentEntry>,
    run: BlockRun,
    source: &S,
    received: &[&AtomicU64],
) -> Result<RunReport, CacheError> {
    let writer = BlockWriter::start(Arc::clone(entry));
    let end = receive(entry.manifest(), run, source, received, &writer).await;
    let rejected = writer.finish().await?;
    let m = entry.manifest();
    let result = match &end {
        Ok(RunEnd::Done) => "done".to_string(),
        Ok(RunEnd::NotHeld) => "not held by the source".to_string(),
        Ok(RunEnd::CutShort { at, .. }) => format!("cut short at byte {at}"),
        Err(e) => format!("failed: {e}"),
    };
    tracing::debug!(
        content = %entry.key(),
        file = %m.files[run.file].path,
        blocks = %format!("{}-{}", run.first, run.last),
        rejected = rejected.len(),
        result,
        "range transfer ended"
    );
    Ok(RunReport { end, rejected })
}

/// Stream one answer into `writer`, block by block.
async fn receive<S: BlockSource>(
    m: &Manifest,
    run: BlockRun,
    source: &S,
    received: &[&AtomicU64],
    writer: &BlockWriter,
) -> Result<RunEnd, HttpFailure> {
    let file = &m.files[run.file];
    let start = m.block(run.first).offset;
    let last = m.block(run.last);
    let end = last.offset + u64::from(last.len); // exclusive
    let (mut body, mut skip) = match source.open_run(file, start..end).await? {
        Opened::Body { body, skip } => (body, skip),
        Opened::NotHeld => return Ok(RunEnd::NotHeld),
    };
    let mut pos = start; // file offset of the next byte of the current block
    let mut block = run.first;
    let mut len = m.block(block).len as usize;
    // The current block as the pieces of the answer it arrived in: they share the
    // answer's buffers, so no byte is copied before the writer hashes and stores it.
    let mut parts: Vec<Bytes> = Vec::new();
    let mut filled = 0usize;
    while pos < end {
        let mut chunk = match body.next_chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Ok(RunEnd::CutShort {
                    block,
                    at: pos,
                    end,
                    cause: None,
                })
            }
            // Silence means the source is gone, not that it ended the answer.
            Err(e) if e.code == Code::TIMEOUT => return Err(e),
            Err(e) => {
                return Ok(RunEnd::CutShort {
                    block,
                    at: pos,
                    end,
                    cause: Some(e),
                })
            }
        };
        for counter in received {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        if skip > 0 {
            let n = skip.min(chunk.len() as u64) as usize;
            skip -= n as u64;
            let _ = chunk.split_to(n);
        }
        while !chunk.is_empty() && pos < end {
            let take = (len - filled).min(chunk.len());
            parts.push(chunk.split_to(take));
            filled += take;
            pos += take as u64;
            if filled == len {
                if !writer.put(block, std::mem::take(&mut parts)).await {
                    // The writer stopped on a cache error; finish() reports it.
                    return Ok(RunEnd::Done);
                }
                filled = 0;
                block += 1;
                if block <= run.last {
                    len = m.block(block).len as usize;
                }
            }
        }
    }
    Ok(RunEnd::Done)
}

/// How often each block failed (did not verify, or the answer broke off in it),
/// across the runs of one transfer: one block failing again and again means the
/// source sends bytes that were never published, and retrying will not fix that.
#[derive(Debug)]
pub struct BadBlocks {
    times: HashMap<usize, u32>,
    limit: u32,
}

/// A block failed more often than the limit: the `Corrupt` error of the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptBlock {
    /// The file in the content.
    pub path: String,
    /// Global block index.
    pub block: usize,
    /// How many times it failed.
    pub times: u32,
}

impl BadBlocks {
    /// Give up once a block has failed more than `limit` times.
    pub fn new(limit: u32) -> BadBlocks {
        BadBlocks {
            times: HashMap::new(),
            limit,
        }
    }

    /// Count one more failure of `block`; returns how many it has had.
    pub fn record(&mut self, block: usize) -> u32 {
        let n = self.times.entry(block).or_default();
        *n += 1;
        *n
    }

    /// The block that failed most, if it failed more than the limit.
    pub fn over_limit(&self, m: &Manifest) -> Option<CorruptBlock> {
        let (&block, &times) = self.times.iter().max_by_key(|(_, &t)| t)?;
        (times > self.limit).then(|| CorruptBlock {
            path: m.files[m.block(block).file].path.clone(),
            block,
            times,
        })
    }
}
