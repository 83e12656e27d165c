//! The copy loop: take from the master every block it holds verified and we lack,
//! until the entry is complete, while the master may still be downloading.
//!
//! Each round asks `have` (long-polling when the last round found nothing new to
//! fetch), then fetches runs of consecutive wanted blocks of one file with one Range
//! request each. Every block goes through [`ContentEntry::put_block`], which verifies
//! it; a block that fails, or at which the response was cut short (what a master
//! does when it finds the block changed on its disk), is asked for again, up to
//! [`MAX_BAD`] times.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::client::{check_status, classify, ContentUrls, MasterTarget, PeerClient};
use super::{HaveDoc, PeerError};
use crate::cache::{BlockRun, ContentEntry};
use crate::codes::Code;
use crate::config::Protocols;

/// A block that fails this many times is not asked of this master again.
const MAX_BAD: u32 = 3;

/// How a copy ended well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Every block is verified in the local cache.
    Complete,
}

/// How fetching one run went, short of an error that ends the copy.
enum RunResult {
    /// Every byte arrived (blocks that failed verification are counted in `bad`).
    Done,
    /// The master no longer holds some of the blocks (409): ask `have` again.
    NotVerified,
    /// The response ended early at a block (counted in `bad`).
    CutShort,
}

impl PeerClient {
    /// Copy into `entry` every block `target` holds, until `entry` is complete.
    ///
    /// Waits for the master while it is still downloading. `from_peers` counts every
    /// body byte received. Errors: [`PeerError::is_master_lost`] when the master
    /// stops answering; [`PeerError::Corrupt`] (`DATA_ERROR`) when one block failed
    /// more than 3 times; [`PeerError::ManifestMismatch`] when the master holds other
    /// content; [`PeerError::Stopped`] when `stop` is cancelled. Verified blocks stay
    /// in the cache whatever happens, for the next attempt.
    pub async fn copy(
        &self,
        entry: &ContentEntry,
        target: &MasterTarget,
        local: Protocols,
        from_peers: &AtomicU64,
        stop: &CancellationToken,
    ) -> Result<CopyOutcome, PeerError> {
        let m = entry.manifest();
        let urls = self.urls(target, local, &m.content_id, m.version)?;
        let mut bad: HashMap<usize, u32> = HashMap::new();
        let mut after: Option<usize> = None;
        let result = loop {
            if entry.is_complete() {
                break Ok(CopyOutcome::Complete);
            }
            let have = tokio::select! {
                r = self.have(&urls, after) => r,
                _ = stop.cancelled() => break Err(PeerError::Stopped),
            };
            let (doc, bitmap) = match have {
                Ok(h) => h,
                Err(e) => break Err(e),
            };
            if doc.content_hash != m.content_hash || doc.block_count != m.block_count() {
                break Err(PeerError::ManifestMismatch(format!(
                    "master {} holds {}/{} with content hash {} ({} blocks), this agent wants {} ({} blocks)",
                    target.addr,
                    doc.content_id,
                    doc.version,
                    doc.content_hash,
                    doc.block_count,
                    m.content_hash,
                    m.block_count()
                )));
            }
            let runs = entry.missing_runs(|i| HaveDoc::bit(&bitmap, i));
            // Nothing new on the master: next time, wait until it verifies more.
            after = Some(doc.verified);
            let mut error = None;
            for run in runs {
                let r = tokio::select! {
                    r = self.fetch_run(&urls, entry, run, from_peers, &mut bad) => r,
                    _ = stop.cancelled() => Err(PeerError::Stopped),
                };
                match r {
                    // Blocks we fetched, or failed to, may be worth another try at
                    // once: do not wait on the next `have`.
                    Ok(RunResult::Done) | Ok(RunResult::CutShort) => after = None,
                    Ok(RunResult::NotVerified) => {}
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = error {
                break Err(e);
            }
            if let Some((&block, &times)) = bad.iter().max_by_key(|(_, &t)| t) {
                if times > MAX_BAD {
                    let path = m.files[m.block(block).file].path.clone();
                    break Err(PeerError::Corrupt { path, block, times });
                }
            }
        };
        // Make what was verified durable whatever happened, so a retry resumes.
        let flushed = entry.flush();
        match result {
            Ok(outcome) => {
                flushed?;
                Ok(outcome)
            }
            Err(e) => {
                if let Err(f) = flushed {
                    warn!(content = %entry.key(), error = %f, "flushing the cache entry after a failed copy");
                }
                Err(e)
            }
        }
    }

    async fn fetch_run(
        &self,
        urls: &ContentUrls,
        entry: &ContentEntry,
        run: BlockRun,
        from_peers: &AtomicU64,
        bad: &mut HashMap<usize, u32>,
    ) -> Result<RunResult, PeerError> {
        let m = entry.manifest();
        let file = &m.files[run.file];
        let url = urls.url(&["files", &file.path]);
        let start = m.block(run.first).offset;
        let last = m.block(run.last);
        let end = last.offset + u64::from(last.len); // exclusive
        let mut resp = self
            .get(urls, url.clone(), false)
            .header(RANGE, format!("bytes={}-{}", start, end - 1))
            .send()
            .await
            .map_err(|e| classify(&url, &e))?;
        if resp.status() == StatusCode::CONFLICT {
            debug!(url = %url, "master no longer holds some blocks of the run");
            return Ok(RunResult::NotVerified);
        }
        check_status(&url, resp.status())?;
        let whole_file = start == 0 && end == file.size;
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            let cr = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let expected = format!("bytes {}-{}/{}", start, end - 1, file.size);
            if cr != expected {
                return Err(PeerError::BadResponse {
                    url: url.to_string(),
                    detail: format!("asked for {expected}, got Content-Range '{cr}'"),
                });
            }
        } else if !whole_file {
            return Err(PeerError::BadResponse {
                url: url.to_string(),
                detail: format!("asked for a range, got HTTP {}", resp.status()),
            });
        }
        let mut pos = start; // file offset of the next byte
        let mut block = run.first;
        let mut buf: Vec<u8> = Vec::with_capacity(m.block(block).len as usize);
        while pos < end {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) if c.is_empty() => continue,
                Ok(Some(c)) => Some(c),
                Ok(None) => None,
                Err(e) => {
                    let err = classify(&url, &e);
                    if matches!(&err, PeerError::MasterUnreachable { code, .. } if *code == Code::TIMEOUT)
                    {
                        return Err(err);
                    }
                    debug!(url = %url, error = %err, "response broke off");
                    None
                }
            };
            let Some(mut chunk) = chunk else {
                let n = bad.entry(block).or_default();
                *n += 1;
                self.counters()
                    .blocks_rejected
                    .fetch_add(1, Ordering::Relaxed);
                warn!(url = %url, block, times = *n, at = pos, "response from the master cut short; the block will be asked for again");
                return Ok(RunResult::CutShort);
            };
            from_peers.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            self.counters()
                .bytes_received
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            while !chunk.is_empty() && pos < end {
                let want = m.block(block).len as usize - buf.len();
                let take = want.min(chunk.len());
                buf.extend_from_slice(&chunk.split_to(take));
                pos += take as u64;
                if buf.len() == m.block(block).len as usize {
                    if !entry.put_block(block, &buf)? {
                        let n = bad.entry(block).or_default();
                        *n += 1;
                        self.counters()
                            .blocks_rejected
                            .fetch_add(1, Ordering::Relaxed);
                        warn!(content = %entry.key(), file = %file.path, block, times = *n, "block from the master failed verification; it will be asked for again");
                    }
                    buf.clear();
                    block += 1;
                }
            }
        }
        Ok(RunResult::Done)
    }
}
