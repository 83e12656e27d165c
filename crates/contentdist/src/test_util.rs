//! Helpers for the in-process tests of agents and jobs: a published content served
//! by the lab origin, and waiting on a condition with a deadline.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::lab::origin::{LabOrigin, LabOriginOptions};
use crate::publish::{publish, PublishOptions};

/// Content `ID/1`, `size` bytes of generated data in two files, published under
/// `dir/origin` and served by a lab origin capped at `rate` bytes/s.
pub struct TestOrigin {
    pub origin: LabOrigin,
    pub src: PathBuf,
    stop: CancellationToken,
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestOrigin {
    pub fn start(dir: &Path, id: &str, size: usize, rate: Option<u64>) -> TestOrigin {
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(src.join("sub/big.bin"), &data).unwrap();
        std::fs::write(src.join("small.txt"), b"small file").unwrap();
        publish(&PublishOptions {
            source_dir: src.clone(),
            content_id: id.into(),
            version: 1,
            out_root: dir.join("origin"),
            ..PublishOptions::default()
        })
        .unwrap();
        let stop = CancellationToken::new();
        let origin = LabOrigin::start(LabOriginOptions {
            root: dir.join("origin"),
            rate_bytes_per_sec: rate,
            shutdown: stop.clone(),
            ..LabOriginOptions::default()
        })
        .unwrap();
        TestOrigin { origin, src, stop }
    }

    pub fn url(&self) -> String {
        self.origin.url()
    }
}

/// Poll `cond` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
