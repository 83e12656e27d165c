//! Publish one large file and print the throughput: proves `publish` streams.
//!
//! ```text
//! cargo build --release -p contentdist --example publish_throughput
//! /usr/bin/time -v target/release/examples/publish_throughput [MIB] [WORK_DIR]
//! ```
//!
//! Writes a MIB-MiB (default 1024) pseudo-random file under WORK_DIR (default the
//! system temporary directory), publishes it with the default block size, and prints
//! MB/s (10^6 bytes per second). The baseline, measured in the same run before and
//! after publishing: the same file copied through a 1 MiB buffer with an fsync, no
//! hashing. Compare "Maximum resident set size" with a run of
//! `1` MiB: the difference is what publishing a large file costs in memory.

use std::io::{Read, Write};
use std::time::Instant;

use contentdist::publish::{publish, PublishOptions};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(1024), |a| a.parse())?;
    let work = match args.next() {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let src = work.path().join("src");
    std::fs::create_dir(&src)?;

    // Generate the file 1 MiB at a time so the generator does not inflate peak RSS.
    let mut file = std::io::BufWriter::new(std::fs::File::create(src.join("big.bin"))?);
    let mut chunk = vec![0u8; 1 << 20];
    let mut xof = blake3::Hasher::new().update(b"seed").finalize_xof();
    for _ in 0..mib {
        xof.fill(&mut chunk);
        file.write_all(&chunk)?;
    }
    file.into_inner()?.sync_all()?;
    drop(chunk);

    // Baseline before and after publishing (the file system's state differs between
    // the first and the last write of a run), averaged.
    let base_before = plain_copy(&src.join("big.bin"), &work.path().join("copy1.bin"))?;
    let report = publish(&PublishOptions {
        source_dir: src.clone(),
        content_id: "BIG".to_string(),
        version: 1,
        out_root: work.path().join("origin"),
        ..PublishOptions::default()
    })?;
    let base_after = plain_copy(&src.join("big.bin"), &work.path().join("copy2.bin"))?;
    let base = (base_before + base_after) / 2.0;
    let secs = report.elapsed.as_secs_f64();
    let mbs = |s: f64| report.bytes as f64 / s / 1e6;
    println!(
        "publish:       {} bytes, {} blocks, {:.2} s, {:.0} MB/s (content hash {})",
        report.bytes,
        report.blocks,
        secs,
        mbs(secs),
        report.content_hash
    );
    println!(
        "baseline copy: {:.2} s / {:.2} s (before / after), mean {:.0} MB/s; publish/copy time ratio {:.2}",
        base_before,
        base_after,
        mbs(base),
        secs / base
    );
    Ok(())
}

/// Copy through a 1 MiB buffer and fsync, no hashing: what publishing costs without the
/// manifest. Returns seconds.
fn plain_copy(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut input = std::fs::File::open(from)?;
    let mut output = std::fs::File::create(to)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n])?;
    }
    output.sync_all()?;
    Ok(started.elapsed().as_secs_f64())
}
