//! Test support shared by the integration tests of the `contentdist` binary.
//!
//! Layout:
//! - `mod.rs` (this file): the binary's path, [`TestDir`], deterministic files,
//!   polling, tree comparison and a per-test timeout.
//! - [`nginx`]: a real nginx serving a directory as the origin (HTTP or HTTPS).
//! - [`faulty_origin`]: an in-process HTTP origin that injects faults on demand.
//! - [`pki`]: a throwaway PKI made with the `openssl` command.
//! - [`agent`]: a real `contentdist agent` process and CLI calls against it.
//! - [`office`]: agents in network namespaces on a bridge, behind a shaped WAN.
//! - [`subnet`]: agents on 127.0.X.Y sharing an election port, and their content.
//! - [`prometheus`]: a real Prometheus server scraping agents, and its API.
//! - `procs`: spawning child processes that die with the test process.
//!
//! Every integration test file compiles its own copy of this module and uses only
//! part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod agent;
pub mod faulty_origin;
mod faulty_origin_http;
pub mod netns;
pub mod nginx;
pub mod office;
pub mod pki;
mod procs;
pub mod prometheus;
pub mod subnet;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the `contentdist` binary built by cargo for this test run.
pub fn contentdist_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_contentdist"))
}

/// A temporary directory deleted when dropped, with path helpers.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// Creates an empty temporary directory whose name starts with `contentdist-test`.
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("contentdist-test")
            .tempdir()
            .expect("create a temporary test directory");
        TestDir { dir }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `self.path().join(rel)`, without creating anything.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Creates (with parents) and returns the sub-directory `rel`.
    pub fn subdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.join(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        path
    }

    /// Writes `contents` to `rel` (creating parents) and returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Keeps the directory on disk (for debugging a failed test) and returns its path.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

/// Writes `size` deterministic pseudo-random bytes (xorshift64* seeded by `seed`) to
/// `path`, creating parent directories. The same `(size, seed)` always gives the same
/// file, and a file of size n is a prefix of the file of size m > n with the same seed.
pub fn random_file(path: impl AsRef<Path>, size: u64, seed: u64) {
    let path = path.as_ref();
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    }
    let file = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut rng = XorShift::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        out.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
    out.flush()
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The bytes [`random_file`] writes, in memory.
pub fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut buf = vec![0u8; size];
    XorShift::new(seed).fill(&mut buf);
    buf
}

/// xorshift64*: fast, good enough to defeat compression and deduplication.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // A zero state would stay zero forever; mix the seed so small seeds differ a lot.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let last = self.next().to_le_bytes();
            rest.copy_from_slice(&last[..rest.len()]);
        }
    }
}

/// Polls `condition` (every 10 ms at first, backing off to 100 ms) until it returns
/// true or `timeout` passes. Returns whether the condition became true.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Runs `body` on its own thread and panics if it does not finish within `timeout`.
/// A panic inside `body` is re-raised with its original message.
///
/// On timeout the body's thread is left running (threads cannot be killed); the test
/// fails and the process ends when the test run does.
pub fn with_timeout<T: Send + 'static>(
    timeout: Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let name = std::thread::current().name().unwrap_or("test").to_string();
    let handle = std::thread::Builder::new()
        .name(format!("{name}-body"))
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            let _ = tx.send(result);
        })
        .expect("spawn the test body thread");
    match rx.recv_timeout(timeout) {
        Ok(Ok(value)) => {
            let _ = handle.join();
            value
        }
        Ok(Err(panic)) => {
            let _ = handle.join();
            std::panic::resume_unwind(panic)
        }
        Err(_) => panic!("test {name} did not finish within {timeout:?}"),
    }
}

/// What [`assert_trees_equal`] compares for each entry.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File { len: u64, executable: bool },
    Symlink(PathBuf),
}

fn tree_entries(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()));
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("entry under root")
                .to_path_buf();
            let meta = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path)
                    .unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()));
                out.insert(rel, Entry::Symlink(target));
            } else if meta.is_dir() {
                out.insert(rel, Entry::Dir);
                walk(root, &path, out);
            } else {
                let executable = meta.permissions().mode() & 0o111 != 0;
                out.insert(
                    rel,
                    Entry::File {
                        len: meta.len(),
                        executable,
                    },
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Panics unless the trees under `a` and `b` hold the same paths, the same kinds
/// (directory, file, symlink and its target), the same file contents byte for byte
/// and the same executable bit (any of u/g/o x set). The message names the first
/// difference.
pub fn assert_trees_equal(a: impl AsRef<Path>, b: impl AsRef<Path>) {
    let (a, b) = (a.as_ref(), b.as_ref());
    let left = tree_entries(a);
    let right = tree_entries(b);
    let only_left: Vec<_> = left.keys().filter(|k| !right.contains_key(*k)).collect();
    let only_right: Vec<_> = right.keys().filter(|k| !left.contains_key(*k)).collect();
    assert!(
        only_left.is_empty() && only_right.is_empty(),
        "trees differ: only in {}: {only_left:?}; only in {}: {only_right:?}",
        a.display(),
        b.display()
    );
    for (rel, entry) in &left {
        let other = &right[rel];
        assert_eq!(
            entry,
            other,
            "{} differs between {} and {}",
            rel.display(),
            a.display(),
            b.display()
        );
        if let Entry::File { .. } = entry {
            assert_files_equal(&a.join(rel), &b.join(rel));
        }
    }
}

/// Panics unless the two files have the same bytes; the message gives the first
/// differing offset.
pub fn assert_files_equal(a: &Path, b: &Path) {
    use std::io::Read;
    let open = |p: &Path| fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let (mut fa, mut fb) = (open(a), open(b));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let na =
            read_full(&mut fa, &mut ba).unwrap_or_else(|e| panic!("read {}: {e}", a.display()));
        let nb =
            read_full(&mut fb, &mut bb).unwrap_or_else(|e| panic!("read {}: {e}", b.display()));
        if ba[..na] != bb[..nb] {
            let first = ba[..na]
                .iter()
                .zip(&bb[..nb])
                .position(|(x, y)| x != y)
                .unwrap_or(na.min(nb));
            panic!(
                "{} and {} differ at byte {}",
                a.display(),
                b.display(),
                offset + first as u64
            );
        }
        if na == 0 {
            return;
        }
        offset += na as u64;
    }

    fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

/// Reserves a free TCP port on 127.0.0.1 by binding port 0 and releasing it. Another
/// process may take it before the caller binds it: callers retry on "address in use".
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// `contentdist publish SRC --id ID --version V --out OUT` with the real binary;
/// panics with its message if it fails. Returns the content hash.
pub fn publish(src: &Path, out: &Path, id: &str, version: u32) -> String {
    let o = std::process::Command::new(contentdist_bin())
        .args(["publish"])
        .arg(src)
        .args([
            "--id",
            id,
            "--version",
            &version.to_string(),
            "--json",
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["content_hash"].as_str().unwrap().to_string()
}

/// A UDP port free now, for a subnet of agents sharing one election port.
pub fn free_udp_port() -> u16 {
    contentdist::util::free_udp_port().expect("a free UDP port")
}
