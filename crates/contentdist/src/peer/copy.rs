//! The copy loop: take from the master every block it holds verified and we lack,
//! until the entry is complete, while the master may still be downloading.
//!
//! Each round asks `have` (long-polling when the last round found nothing new to
//! fetch), then fetches runs of consecutive wanted blocks of one file with one Range
//! request each, through the [`crate::transfer`] engine: every block is verified and
//! written by its block writer, off the async runtime. A block that fails is asked
//! for again, up to [`MAX_BAD`] times.
//!
//! A response cut short is asked about: a master cuts a body when it finds the
//! next block changed on its disk, and stops advertising that block first. So the
//! copy asks `have` again: a block no longer held is waited for like any block the
//! master lacks (it comes back once the master repaired it); only a cut at a block
//! the master still claims counts against [`MAX_BAD`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::{MasterTarget, PeerClient, Route};
use super::{HaveDoc, PeerError};
use crate::cache::{BlockRun, ContentEntry};
use crate::config::Protocols;
use crate::transfer::{self, BadBlocks, RunEnd};

/// A block that fails this many times is not asked of this master again.
const MAX_BAD: u32 = 3;

/// How a copy ended well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Every block is verified in the local cache.
    Complete,
}

impl PeerClient {
    /// Copy into `entry` every block `target` holds, until `entry` is complete.
    ///
    /// Waits for the master while it is still downloading. `from_peers` counts every
    /// body byte received. Errors: [`PeerError::is_master_lost`] when the master
    /// stops answering; [`PeerError::Corrupt`] (`DATA_ERROR`) when one block failed
    /// more than 3 times; [`PeerError::ManifestMismatch`] when the master holds other
    /// content; [`PeerError::Stopped`] when `stop` is cancelled. Verified blocks stay
    /// in the cache whatever happens, for the next attempt. (`entry` is shared with
    /// the blocking thread that verifies and writes its blocks.)
    pub async fn copy(
        &self,
        entry: &Arc<ContentEntry>,
        target: &MasterTarget,
        local: Protocols,
        from_peers: &AtomicU64,
        stop: &CancellationToken,
    ) -> Result<CopyOutcome, PeerError> {
        let m = entry.manifest();
        let route = tokio::select! {
            r = self.open(target, local, &m.content_id, m.version) => r?,
            _ = stop.cancelled() => return Err(PeerError::Stopped),
        };
        info!(content = %entry.key(), master = %target.addr, protocol = %route.protocol, "copying from the master");
        let mut bad = BadBlocks::new(MAX_BAD);
        let mut after: Option<usize> = None;
        let result = loop {
            if entry.is_complete() {
                break Ok(CopyOutcome::Complete);
            }
            let have = tokio::select! {
                r = self.have(&route, after) => r,
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
                    r = self.fetch_run(&route, entry, run, from_peers, &mut bad) => r,
                    _ = stop.cancelled() => Err(PeerError::Stopped),
                };
                match r {
                    // Blocks we fetched, or failed to, may be worth another try at
                    // once: do not wait on the next `have`.
                    Ok(RunEnd::Done) | Ok(RunEnd::CutShort { .. }) => after = None,
                    Ok(RunEnd::NotHeld) => {}
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = error {
                break Err(e);
            }
            if let Some(c) = bad.over_limit(m) {
                break Err(PeerError::Corrupt {
                    path: c.path,
                    block: c.block,
                    times: c.times,
                });
            }
        };
        // Make what was verified durable whatever happened, so a retry resumes.
        let flushed = transfer::flush(entry).await;
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

    /// One run through the engine. Blocks that did not verify are counted in `bad`
    /// and asked for again; so is the block at which the answer broke off, unless the
    /// master no longer holds it (then it is left to the next `have`).
    async fn fetch_run(
        &self,
        route: &Route,
        entry: &Arc<ContentEntry>,
        run: BlockRun,
        from_peers: &AtomicU64,
        bad: &mut BadBlocks,
    ) -> Result<RunEnd, PeerError> {
        let source = self.source(route);
        let received = [from_peers, &self.counters().bytes_received];
        let report = transfer::fetch_run(entry, run, &source, &received).await?;
        let m = entry.manifest();
        let rejected = &self.counters().blocks_rejected;
        for block in report.rejected {
            let times = bad.record(block);
            rejected.fetch_add(1, Ordering::Relaxed);
            let path = &m.files[m.block(block).file].path;
            warn!(content = %entry.key(), file = %path, block, times, "block from the master failed verification; it will be asked for again");
        }
        let end = report.end?;
        if let RunEnd::CutShort {
            block, at, cause, ..
        } = &end
        {
            let path = &m.files[run.file].path;
            if let Some(e) = cause {
                debug!(error = %e, "response broke off");
            }
            // A master cuts a body short when it finds a block changed on its disk,
            // and stops advertising the block before the cut. Asking again tells
            // that ("not held", as a 409 for the rest of the run would have said:
            // wait for it like any block the master lacks) from a master that keeps
            // claiming blocks it cannot send (a bad block). The rest of the run is
            // asked about, not only the block cut at: bytes in flight before the
            // cut may be lost with the connection. A master gone away fails this
            // request (master lost).
            let (_, bitmap) = self.have(route, None).await?;
            if (*block..=run.last).any(|i| !HaveDoc::bit(&bitmap, i)) {
                self.counters()
                    .cuts_not_held
                    .fetch_add(1, Ordering::Relaxed);
                info!(content = %entry.key(), file = %path, block, at, "response from the master cut short at a block it no longer holds; waiting for it to hold the block again");
                // Still `CutShort`, so the next round asks at once for the blocks
                // after this one; the next `have` leaves this one out.
                return Ok(end);
            }
            let times = bad.record(*block);
            rejected.fetch_add(1, Ordering::Relaxed);
            warn!(content = %entry.key(), file = %path, block, times, at, "response from the master cut short; the block will be asked for again");
        }
        Ok(end)
    }
}
