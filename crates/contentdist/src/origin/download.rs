//! The download loop: fetch every missing block of a cache entry from the origin,
//! one run at a time through the [`crate::transfer`] engine, retrying with back-off.
//!
//! Runs of consecutive missing blocks of one file become one Range request, so a
//! fresh download is one streaming request per file and a resumed one asks only for
//! the holes. Each block is verified as soon as its last byte arrives; a block that
//! fails stays missing and is asked for again. The loop gives up after `retries`
//! attempts in a row that verified nothing new, or when one block has failed
//! verification more than `retries` times.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{OriginClient, OriginError};
use crate::cache::{BlockRun, ContentEntry};
use crate::manifest::CONTENT_DIR;
use crate::transfer::{self, BadBlocks, HttpFailure, HttpSource, Remote, RunEnd};

/// What one job wants told while it downloads.
pub struct DownloadCounters<'a> {
    /// Bytes received from the origin (verified or not: they crossed the WAN).
    pub from_origin: &'a AtomicU64,
    /// Counters of the agent that count the same bytes, live (its total, the
    /// serving pacer's).
    pub also: &'a [&'a AtomicU64],
    /// Blocks from the origin that failed verification, for the whole agent.
    pub rejected: &'a AtomicU64,
}

impl OriginClient {
    /// Fetch every block `entry` lacks. Returns when the entry is complete.
    pub async fn download(
        &self,
        entry: &Arc<ContentEntry>,
        counters: &DownloadCounters<'_>,
        stop: &CancellationToken,
    ) -> Result<(), OriginError> {
        let mut failures = 0u32;
        let mut bad = BadBlocks::new(self.opts.retries);
        loop {
            let runs = entry.missing_runs(|_| true);
            if runs.is_empty() {
                transfer::flush(entry).await?;
                return Ok(());
            }
            let before = entry.verified_bytes();
            let mut error = None;
            for run in runs {
                let r = tokio::select! {
                    r = self.fetch_run(entry, run, counters, &mut bad) => r,
                    _ = stop.cancelled() => Err(OriginError::Stopped),
                };
                match r {
                    Ok(()) => {}
                    Err(e) if e.retryable() => {
                        error = Some(e);
                        break;
                    }
                    Err(e) => {
                        let _ = transfer::flush(entry).await;
                        return Err(e);
                    }
                }
            }
            transfer::flush(entry).await?;
            if let Some(c) = bad.over_limit(entry.manifest()) {
                return Err(OriginError::Corrupt {
                    path: c.path,
                    block: c.block,
                    times: c.times,
                });
            }
            if entry.verified_bytes() > before {
                failures = 0;
            } else {
                failures += 1;
            }
            if let Some(e) = error {
                if failures > self.opts.retries {
                    return Err(e);
                }
                tracing::warn!(content = %entry.key(), error = %e, failures, "origin transfer failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(self.backoff(failures)) => {}
                    _ = stop.cancelled() => return Err(OriginError::Stopped),
                }
            }
        }
    }

    /// One run through the engine; the blocks that failed verification are counted
    /// in `bad` and stay missing for the next round.
    async fn fetch_run(
        &self,
        entry: &Arc<ContentEntry>,
        run: BlockRun,
        counters: &DownloadCounters<'_>,
        bad: &mut BadBlocks,
    ) -> Result<(), OriginError> {
        let m = entry.manifest();
        let source = HttpSource {
            remote: Remote::Origin,
            client: &self.http,
            files: self.urls(&m.content_id, m.version).join(&[CONTENT_DIR]),
            credentials: None,
            stall: Some(self.opts.stall_timeout),
            throttle: Some(&self.throttle),
            requests: None,
        };
        let received: Vec<&AtomicU64> = std::iter::once(counters.from_origin)
            .chain(counters.also.iter().copied())
            .collect();
        let report = transfer::fetch_run(entry, run, &source, &received).await?;
        counters.rejected.fetch_add(
            report.rejected.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        for block in report.rejected {
            let times = bad.record(block);
            let path = &m.files[m.block(block).file].path;
            tracing::warn!(content = %entry.key(), file = %path, block, times, "block failed verification; it will be fetched again");
        }
        match report.end? {
            RunEnd::Done => Ok(()),
            // A web server's 409 is a refusal (see `check_status`): never seen here.
            RunEnd::NotHeld => Ok(()),
            RunEnd::CutShort { cause: Some(e), .. } => Err(e.into()),
            RunEnd::CutShort {
                at,
                end,
                cause: None,
                ..
            } => {
                let url = self.file_url(&m.content_id, m.version, &m.files[run.file].path);
                Err(HttpFailure::bad_response(
                    Remote::Origin,
                    &url,
                    format!("response ended at byte {at} of {end}: truncated"),
                )
                .into())
            }
        }
    }
}
