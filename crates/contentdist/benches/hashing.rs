//! Block-hash throughput: BLAKE3 vs SHA-256, one thread.
//!
//! Run with `cargo bench -p contentdist --bench hashing` (release profile). Prints MB/s
//! (10^6 bytes per second) for every case; results and the machine are recorded in
//! `BENCHMARKS.md`.
//!
//! The data is a 64 MiB buffer of pseudo-random bytes walked block by block, 16 passes
//! (1 GiB per case), so that it does not sit in the CPU caches: the figures include
//! reading from memory, as hashing a file streamed from disk does. Each case runs
//! `ROUNDS` times and the median is reported, because the machine is shared.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const BUFFER: usize = 64 << 20;
const TOTAL: usize = 1 << 30;
const ROUNDS: usize = 5;

fn main() {
    // cargo passes `--bench`; there are no options.
    let data = pseudo_random(BUFFER);
    println!(
        "hashing {} MiB per case, {} rounds, median shown",
        TOTAL >> 20,
        ROUNDS
    );
    report("blake3   128 KiB blocks", &data, 128 << 10, |b| {
        *blake3::hash(b).as_bytes()
    });
    report("sha256   128 KiB blocks", &data, 128 << 10, |b| {
        Sha256::digest(b).into()
    });
    report("blake3     4 MiB blocks", &data, 4 << 20, |b| {
        *blake3::hash(b).as_bytes()
    });
    report("sha256     4 MiB blocks", &data, 4 << 20, |b| {
        Sha256::digest(b).into()
    });
}

/// Hash `TOTAL` bytes of `data` in `block`-sized pieces, `ROUNDS` times; print the
/// median and the spread.
fn report(name: &str, data: &[u8], block: usize, hash: impl Fn(&[u8]) -> [u8; 32]) {
    // One warm-up pass: page faults and CPU frequency ramp-up are not the hash's cost.
    run(data, block, BUFFER, &hash);
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| run(data, block, TOTAL, &hash))
        .collect();
    times.sort();
    let mbs = |d: Duration| TOTAL as f64 / d.as_secs_f64() / 1e6;
    println!(
        "{name}: {:>7.0} MB/s  (min {:.0}, max {:.0})",
        mbs(times[ROUNDS / 2]),
        mbs(times[ROUNDS - 1]),
        mbs(times[0]),
    );
}

fn run(data: &[u8], block: usize, total: usize, hash: &impl Fn(&[u8]) -> [u8; 32]) -> Duration {
    let start = Instant::now();
    let mut done = 0;
    let mut acc = 0u8;
    while done < total {
        for chunk in data.chunks_exact(block) {
            acc ^= black_box(hash(black_box(chunk)))[0];
            done += block;
            if done >= total {
                break;
            }
        }
    }
    black_box(acc);
    start.elapsed()
}

/// xorshift64*: fast, deterministic, incompressible enough for hashing.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
