//! The download loop: fetch every missing block of a cache entry from the origin.
//!
//! Runs of consecutive missing blocks of one file become one Range request, so a
//! fresh download is one streaming request per file and a resumed one asks only for
//! the holes. Each block is verified as soon as its last byte arrives; a block that
//! fails stays missing and is asked for again. The loop gives up after `retries`
//! attempts in a row that verified nothing new, or when one block has failed
//! verification more than `retries` times.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use super::writer::BlockWriter;
use super::{check_status, OriginClient, OriginError};
use crate::cache::{BlockRun, ContentEntry};

/// What one job wants told while it downloads.
pub struct DownloadCounters<'a> {
    /// Bytes received from the origin (verified or not: they crossed the WAN).
    pub from_origin: &'a AtomicU64,
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
        let mut bad: HashMap<usize, u32> = HashMap::new();
        loop {
            let runs = entry.missing_runs(|_| true);
            if runs.is_empty() {
                entry.flush()?;
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
                        let _ = entry.flush();
                        return Err(e);
                    }
                }
            }
            entry.flush()?;
            if let Some((&block, &times)) = bad.iter().max_by_key(|(_, &t)| t) {
                if times > self.opts.retries {
                    let m = entry.manifest();
                    return Err(OriginError::Corrupt {
                        path: m.files[m.block(block).file].path.clone(),
                        block,
                        times,
                    });
                }
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

    async fn fetch_run(
        &self,
        entry: &Arc<ContentEntry>,
        run: BlockRun,
        counters: &DownloadCounters<'_>,
        bad: &mut HashMap<usize, u32>,
    ) -> Result<(), OriginError> {
        let writer = BlockWriter::start(Arc::clone(entry));
        let received = self.receive_run(entry, run, counters, &writer).await;
        // Whatever happened on the wire, the blocks already received are stored (or
        // the cache's error, such as a full disk, is the one that counts).
        let rejected = writer.finish().await?;
        let m = entry.manifest();
        for block in rejected {
            let n = bad.entry(block).or_default();
            *n += 1;
            let path = &m.files[m.block(block).file].path;
            tracing::warn!(content = %entry.key(), file = %path, block, times = *n, "block failed verification; it will be fetched again");
        }
        received
    }

    /// Stream one Range request into `writer`, block by block.
    async fn receive_run(
        &self,
        entry: &ContentEntry,
        run: BlockRun,
        counters: &DownloadCounters<'_>,
        writer: &BlockWriter,
    ) -> Result<(), OriginError> {
        let m = entry.manifest();
        let file = &m.files[run.file];
        let url = self.file_url(&m.content_id, m.version, &file.path);
        let start = m.block(run.first).offset;
        let last = m.block(run.last);
        let end = last.offset + u64::from(last.len); // exclusive
        let request = self
            .http
            .get(url.clone())
            .header(RANGE, format!("bytes={}-{}", start, end - 1))
            .send();
        let mut resp = self.stall_guard(&url, request).await?;
        check_status(&url, resp.status())?;
        // A server that ignores Range answers 200 with the whole file: skip the head.
        let mut skip = 0u64;
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            let cr = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let expected = format!("bytes {}-{}/", start, end - 1);
            if !cr.starts_with(&expected) {
                return Err(OriginError::BadResponse {
                    url: url.to_string(),
                    detail: format!("asked for {expected}…, got Content-Range '{cr}'"),
                });
            }
        } else {
            skip = start;
        }
        let mut pos = start; // file offset of the next byte of the current block
        let mut block = run.first;
        let mut len = m.block(block).len as usize;
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        while pos < end {
            let chunk = self.stall_guard(&url, resp.chunk()).await?;
            let Some(mut chunk) = chunk else {
                return Err(OriginError::BadResponse {
                    url: url.to_string(),
                    detail: format!("response ended at byte {pos} of {end}: truncated"),
                });
            };
            counters
                .from_origin
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if let Some(t) = &self.throttle {
                let at = t.lock().await.book(chunk.len());
                tokio::time::sleep_until(at).await;
            }
            if skip > 0 {
                let n = skip.min(chunk.len() as u64) as usize;
                skip -= n as u64;
                let _ = chunk.split_to(n);
            }
            while !chunk.is_empty() && pos < end {
                let take = (len - buf.len()).min(chunk.len());
                buf.extend_from_slice(&chunk.split_to(take));
                pos += take as u64;
                if buf.len() == len {
                    if !writer.put(block, std::mem::take(&mut buf)).await {
                        // The writer stopped on a cache error; finish() reports it.
                        return Ok(());
                    }
                    block += 1;
                    if block <= run.last {
                        len = m.block(block).len as usize;
                        buf = Vec::with_capacity(len);
                    }
                }
            }
        }
        Ok(())
    }
}
