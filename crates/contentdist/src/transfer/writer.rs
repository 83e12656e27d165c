//! Verify-and-store on a blocking thread: while it hashes and writes one block, the
//! network task is already receiving the next ones. On two cores this is the
//! difference between a transfer running at the speed of the wire and running at
//! the speed of wire + hash + write in turn. It also keeps the runtime's threads off
//! the disk: storing the last block of a content syncs every file (`fdatasync`),
//! which can take seconds.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cache::{CacheError, ContentEntry};

/// Blocks queued ahead of the writer (128 KiB each by default: 2 MiB in flight).
const QUEUE: usize = 16;

/// A blocking writer fed through a bounded queue.
pub struct BlockWriter {
    tx: mpsc::Sender<(usize, Vec<Bytes>)>,
    task: JoinHandle<Result<Vec<usize>, CacheError>>,
}

impl BlockWriter {
    /// Start a writer for `entry`.
    pub fn start(entry: Arc<ContentEntry>) -> BlockWriter {
        let (tx, mut rx) = mpsc::channel::<(usize, Vec<Bytes>)>(QUEUE);
        let task = tokio::task::spawn_blocking(move || {
            let mut rejected = Vec::new();
            while let Some((index, parts)) = rx.blocking_recv() {
                if !entry.put_block_parts(index, &parts)? {
                    rejected.push(index);
                }
            }
            Ok(rejected)
        });
        BlockWriter { tx, task }
    }

    /// Queue block `index`, the concatenation of `parts` (the pieces it arrived in,
    /// not copied). `false` when the writer has stopped (a cache error that
    /// [`finish`](Self::finish) returns).
    pub async fn put(&self, index: usize, parts: Vec<Bytes>) -> bool {
        self.tx.send((index, parts)).await.is_ok()
    }

    /// Wait until every queued block is stored; returns the blocks that failed
    /// verification and were not stored.
    pub async fn finish(self) -> Result<Vec<usize>, CacheError> {
        drop(self.tx);
        self.task.await.expect("block writer panicked")
    }
}

/// [`ContentEntry::flush`] on a blocking thread: it syncs every file written since
/// the last flush, which can take seconds, and must not hold a runtime thread.
pub async fn flush(entry: &Arc<ContentEntry>) -> Result<(), CacheError> {
    let entry = Arc::clone(entry);
    tokio::task::spawn_blocking(move || entry.flush())
        .await
        .expect("cache flush panicked")
}
