//! One content version in the cache: its manifest, its data files, and the map of
//! blocks already verified.
//!
//! On disk (`CacheDir/content/ID/VERSION/`):
//! - `manifest.json`: written first, when the entry is created;
//! - `data/<path>`: the content's files under their real names (so delivery is a hard
//!   link), created sparse at their final size;
//! - `have.bin`: one bit per block, set only for blocks whose bytes were verified
//!   against the manifest *and* made durable (the data files are `fdatasync`ed before
//!   the bitmap is replaced, by rename);
//! - `meta.json`: priority, last use, complete.
//!
//! Why this survives `kill -9` and power loss: a bit is only ever persisted after the
//! block's bytes are on disk, so a persisted bit is always true. Bits not yet persisted
//! when the agent died are recovered at the next open by hashing the blocks the bitmap
//! does not mark (cheap with BLAKE3, and only for incomplete entries), so nothing
//! verified is fetched again and nothing unverified is ever marked.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::CacheError;
pub use stamp::FileStamp;

mod stamp;
use crate::manifest::ContentKey;
use crate::manifest::{Manifest, MANIFEST_FILE};

pub(super) const HAVE_FILE: &str = "have.bin";
pub(super) const META_FILE: &str = "meta.json";
pub(super) const DATA_DIR: &str = "data";

/// How often verified blocks are made durable while a download runs. A peer
/// copying over SMB offers its blocks to the others through `have.bin`, which
/// only a flush rewrites: every second, an office of 16 copying over SMB finished
/// 2.4 s after its master, every 250 ms 1.3 s (BENCHMARKS.md §14). The four times
/// as many flushes cost a 1 GiB download or peer copy nothing measurable there.
const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Writeback of a data file is started each time this many bytes of it were
/// written (see [`start_writeback`]).
const WRITEBACK_SPAN: u64 = 8 * 1024 * 1024;

/// Ask the kernel to start writing back the [`WRITEBACK_SPAN`] of `f` that the
/// block `[offset, end)` completes, without waiting for it. Otherwise the kernel
/// keeps written bytes dirty up to its dirty ratio (gigabytes on a large machine),
/// and the flushes, the last one in the path of the job's end, write them all at
/// once: at 1 GiB that was about a third of a peer copy's time here. Started early,
/// the disk writes while the network delivers, and a flush's `fdatasync` waits only
/// for what is still in flight. Durability is unchanged (bits are recorded after
/// `fdatasync`, as before); this is only a hint, so its failure is ignored (a real
/// disk error comes back from `fdatasync`).
fn start_writeback(f: &File, offset: u64, end: u64) {
    if end / WRITEBACK_SPAN == offset / WRITEBACK_SPAN {
        return;
    }
    let span_end = end - end % WRITEBACK_SPAN;
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its arguments; the fd is open for the call.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            (span_end - WRITEBACK_SPAN) as libc::off64_t,
            WRITEBACK_SPAN as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// The small mutable facts about an entry, kept in `meta.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EntryMeta {
    /// Cache priority 1 (evicted first) to 9.
    pub priority: u8,
    /// Seconds since the epoch of the last job that used the entry.
    pub last_used_unix: u64,
    /// Every block verified and durable.
    pub complete: bool,
    /// Per file, its stat once the entry was complete: a file whose stat still
    /// matches is served without re-hashing (see `stamp`). Empty: none recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_stamps: Vec<Option<FileStamp>>,
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct HaveMap {
    bits: Vec<u8>,
    /// Files written since the last flush: they must be synced before the bitmap.
    dirty_files: BTreeSet<usize>,
    /// Bits set since the last flush.
    unflushed: usize,
    last_flush: Instant,
}

impl HaveMap {
    fn get(&self, i: usize) -> bool {
        self.bits[i / 8] & (1 << (i % 8)) != 0
    }
    fn set(&mut self, i: usize) {
        self.bits[i / 8] |= 1 << (i % 8);
    }
}

/// One content version in the cache.
pub struct ContentEntry {
    key: ContentKey,
    dir: PathBuf,
    manifest: Arc<Manifest>,
    have: Mutex<HaveMap>,
    meta: Mutex<EntryMeta>,
    verified_bytes: AtomicU64,
    verified_blocks: AtomicUsize,
    users: AtomicUsize,
    /// Tells waiters (peers copying while we download) that blocks were added.
    changed: tokio::sync::watch::Sender<usize>,
    /// Ourselves, so that a periodic flush can run on its own thread while blocks
    /// keep arriving.
    me: Weak<ContentEntry>,
    /// A background flush is running.
    flushing: AtomicBool,
    /// What the cache shares with its entries: the record of background flush
    /// threads and where lost blocks are announced.
    hooks: super::CacheHooks,
    /// Flushes replace the same files: one at a time.
    flush_lock: Mutex<()>,
}

impl std::fmt::Debug for ContentEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentEntry")
            .field("key", &self.key)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` so that a reader never sees half of it (through the spare
/// file beside it, see [`crate::util::replace_file`]: no file is created per save).
pub(super) fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> Result<(), CacheError> {
    crate::util::replace_file(path, bytes, sync).map_err(io_err(path))
}

impl ContentEntry {
    /// Lay out a new entry in `dir` (which must not exist yet) for `manifest`.
    pub(super) fn create(
        key: ContentKey,
        dir: &Path,
        manifest: Manifest,
        priority: u8,
        hooks: super::CacheHooks,
    ) -> Result<Arc<ContentEntry>, CacheError> {
        // Build in a sibling temporary directory and rename it into place, so a crash
        // half-way never leaves an entry without its manifest.
        let tmp = dir.with_file_name(format!(".{}.new-{}", key.version(), std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let result = (|| {
            fs::create_dir_all(tmp.join(DATA_DIR)).map_err(io_err(&tmp))?;
            for file in &manifest.files {
                let path = tmp.join(DATA_DIR).join(&file.path);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                let f = File::create(&path).map_err(io_err(&path))?;
                f.set_len(file.size).map_err(io_err(&path))?;
            }
            let bits = vec![0u8; manifest.block_count().div_ceil(8)];
            write_atomic(&tmp.join(HAVE_FILE), &bits, false)?;
            let meta = EntryMeta {
                priority,
                last_used_unix: now_unix(),
                complete: false,
                file_stamps: Vec::new(),
            };
            let meta_json = serde_json::to_vec(&meta).expect("meta serializes");
            write_atomic(&tmp.join(META_FILE), &meta_json, false)?;
            write_atomic(&tmp.join(MANIFEST_FILE), &manifest.to_json(), true)?;
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            fs::rename(&tmp, dir).map_err(io_err(dir))
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        // Nothing to recover: its files are holes. Hashing them would read the
        // whole content's size of zeros (64 MiB for the lab's content, on every
        // agent at once).
        Self::load(key, dir, hooks, false)
    }

    /// Open an existing entry, recovering blocks verified but not yet recorded.
    pub(super) fn open(
        key: ContentKey,
        dir: &Path,
        hooks: super::CacheHooks,
    ) -> Result<Arc<ContentEntry>, CacheError> {
        Self::load(key, dir, hooks, true)
    }

    /// Open the entry in `dir`; with `recover`, hash the blocks its bitmap does not
    /// mark (a crash may have left verified blocks unrecorded).
    fn load(
        key: ContentKey,
        dir: &Path,
        hooks: super::CacheHooks,
        recover: bool,
    ) -> Result<Arc<ContentEntry>, CacheError> {
        let mpath = dir.join(MANIFEST_FILE);
        let bytes = fs::read(&mpath).map_err(io_err(&mpath))?;
        let manifest = Manifest::parse(&bytes).map_err(|e| CacheError::Corrupt {
            path: mpath.clone(),
            detail: e.to_string(),
        })?;
        let meta_path = dir.join(META_FILE);
        let meta: EntryMeta = crate::util::read_saved(&meta_path, |b| serde_json::from_slice(b))
            .unwrap_or(EntryMeta {
                priority: 5,
                last_used_unix: now_unix(),
                complete: false,
                file_stamps: Vec::new(),
            });
        let nblocks = manifest.block_count();
        let have_path = dir.join(HAVE_FILE);
        let nbytes = nblocks.div_ceil(8);
        let mut bits = crate::util::read_saved(&have_path, |b| match b.len() {
            n if n == nbytes => Ok(b.to_vec()),
            n => Err(format!("{n} bytes, not the {nbytes} of {nblocks} blocks")),
        })
        .unwrap_or_default();
        let mut complete = meta.complete;
        if bits.len() != nbytes {
            // A bitmap of the wrong length cannot be trusted: recover from the data.
            bits = vec![0u8; nbytes];
            complete = false;
        }
        let (tx, _) = tokio::sync::watch::channel(0);
        let entry = Arc::new_cyclic(|me| ContentEntry {
            key,
            dir: dir.to_path_buf(),
            manifest: Arc::new(manifest),
            have: Mutex::new(HaveMap {
                bits,
                dirty_files: BTreeSet::new(),
                unflushed: 0,
                last_flush: Instant::now(),
            }),
            meta: Mutex::new(EntryMeta { complete, ..meta }),
            verified_bytes: AtomicU64::new(0),
            verified_blocks: AtomicUsize::new(0),
            users: AtomicUsize::new(0),
            changed: tx,
            me: me.clone(),
            flushing: AtomicBool::new(false),
            hooks,
            flush_lock: Mutex::new(()),
        });
        if complete {
            let mut have = entry.have.lock().expect("have lock");
            for i in 0..nblocks {
                have.set(i);
            }
        } else if recover {
            entry.recover()?;
        }
        entry.recount();
        Ok(entry)
    }

    /// Hash every block the bitmap does not mark; mark those whose bytes verify.
    fn recover(&self) -> Result<(), CacheError> {
        let missing: Vec<usize> = {
            let have = self.have.lock().expect("have lock");
            (0..self.manifest.block_count())
                .filter(|&i| !have.get(i))
                .collect()
        };
        let mut found = 0;
        for i in missing {
            let Some(data) = self.read_raw(i)? else {
                continue;
            };
            if self.manifest.verify_block(i, &data) {
                let mut have = self.have.lock().expect("have lock");
                have.set(i);
                have.dirty_files.insert(self.manifest.block(i).file);
                found += 1;
            }
        }
        if found > 0 {
            tracing::info!(content = %self.key, blocks = found, "recovered verified blocks not yet recorded");
            self.flush()?;
        }
        Ok(())
    }

    fn recount(&self) {
        let have = self.have.lock().expect("have lock");
        let (mut n, mut bytes) = (0, 0u64);
        for b in self.manifest.blocks() {
            if have.get(b.index) {
                n += 1;
                bytes += u64::from(b.len);
            }
        }
        self.verified_blocks.store(n, Ordering::SeqCst);
        self.verified_bytes.store(bytes, Ordering::SeqCst);
        drop(have);
        self.changed.send_replace(n);
    }

    /// Which content this is.
    pub fn key(&self) -> &ContentKey {
        &self.key
    }

    /// The manifest every block is checked against.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// The directory holding the content's files under their real names.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join(DATA_DIR)
    }

    /// The entry's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when block `index` is verified.
    pub fn has_block(&self, index: usize) -> bool {
        self.have.lock().expect("have lock").get(index)
    }

    /// Runs of consecutive blocks of one file that this entry lacks and `wanted`
    /// accepts, in file order: each becomes one Range request, whoever serves it.
    pub fn missing_runs(&self, wanted: impl Fn(usize) -> bool) -> Vec<BlockRun> {
        let m = &self.manifest;
        let have = self.have.lock().expect("have lock");
        let mut runs = Vec::new();
        for file in 0..m.files.len() {
            let mut current: Option<BlockRun> = None;
            for i in m.file_blocks(file) {
                if !have.get(i) && wanted(i) {
                    match &mut current {
                        Some(r) => r.last = i,
                        None => {
                            current = Some(BlockRun {
                                file,
                                first: i,
                                last: i,
                            })
                        }
                    }
                } else {
                    runs.extend(current.take());
                }
            }
            runs.extend(current);
        }
        runs
    }

    /// The verified blocks, as a bitmap (bit i of byte i/8).
    pub fn have_bitmap(&self) -> Vec<u8> {
        self.have.lock().expect("have lock").bits.clone()
    }

    /// Bytes verified so far.
    pub fn verified_bytes(&self) -> u64 {
        self.verified_bytes.load(Ordering::SeqCst)
    }

    /// How many blocks are verified.
    pub fn verified_blocks(&self) -> usize {
        self.verified_blocks.load(Ordering::SeqCst)
    }

    /// True when every block is verified.
    pub fn is_complete(&self) -> bool {
        self.verified_blocks.load(Ordering::SeqCst) == self.manifest.block_count()
    }

    /// A receiver told each time blocks are added (value: verified block count).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<usize> {
        self.changed.subscribe()
    }

    /// The entry's metadata.
    pub fn meta(&self) -> EntryMeta {
        self.meta.lock().expect("meta lock").clone()
    }

    fn data_path(&self, file: usize) -> PathBuf {
        self.data_dir().join(&self.manifest.files[file].path)
    }

    /// Read a block's bytes whether verified or not (recovery, delivery checks).
    fn read_raw(&self, index: usize) -> Result<Option<Vec<u8>>, CacheError> {
        let b = self.manifest.block(index);
        let path = self.data_path(b.file);
        let f = File::open(&path).map_err(io_err(&path))?;
        let mut buf = vec![0u8; b.len as usize];
        match f.read_exact_at(&mut buf, b.offset) {
            Ok(()) => Ok(Some(buf)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// A verified block's bytes, or `None` if the block is not verified: a block that
    /// is not verified is never handed out.
    pub fn read_block(&self, index: usize) -> Result<Option<Vec<u8>>, CacheError> {
        if !self.has_block(index) {
            return Ok(None);
        }
        self.read_raw(index)
    }

    /// Check `data` against the manifest and, if it verifies, write it as block
    /// `index`. Returns `Ok(false)` (and writes nothing) when it does not verify.
    pub fn put_block(&self, index: usize, data: &[u8]) -> Result<bool, CacheError> {
        self.put_block_parts(index, &[data])
    }

    /// [`put_block`](Self::put_block) of a block given as the concatenation of
    /// `parts`, as it arrived from the network: hashed and written piece by piece,
    /// never copied into one buffer first (1 GiB of memcpy saved per GiB copied).
    pub fn put_block_parts<P: AsRef<[u8]>>(
        &self,
        index: usize,
        parts: &[P],
    ) -> Result<bool, CacheError> {
        if !self.manifest.verify_block_parts(index, parts) {
            return Ok(false);
        }
        if self.has_block(index) {
            return Ok(true);
        }
        let b = self.manifest.block(index);
        let path = self.data_path(b.file);
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut at = b.offset;
        for part in parts {
            let part = part.as_ref();
            f.write_all_at(part, at).map_err(io_err(&path))?;
            at += part.len() as u64;
        }
        start_writeback(&f, b.offset, at);
        let flush_due = {
            let mut have = self.have.lock().expect("have lock");
            if have.get(index) {
                return Ok(true);
            }
            have.set(index);
            have.dirty_files.insert(b.file);
            have.unflushed += 1;
            have.last_flush.elapsed() >= FLUSH_INTERVAL
        };
        let n = self.verified_blocks.fetch_add(1, Ordering::SeqCst) + 1;
        self.verified_bytes
            .fetch_add(u64::from(b.len), Ordering::SeqCst);
        if n == self.manifest.block_count() {
            self.flush()?;
        } else if flush_due {
            self.flush_in_background();
        }
        self.changed.send_replace(n);
        Ok(true)
    }

    /// Start a flush on its own thread unless one is running: syncing hundreds of
    /// megabytes takes a while, and the blocks arriving meanwhile need not wait. Safe
    /// because a flush records only the bits set before it started, and their bytes
    /// were written before that, so the sync covers them.
    fn flush_in_background(&self) {
        if self.flushing.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            self.flushing.store(false, Ordering::SeqCst);
            return;
        };
        // The token counts this thread among the cache's background work until it ends.
        let token = self.hooks.background.token();
        let spawned = std::thread::Builder::new()
            .name("cache-flush".into())
            .spawn(move || {
                let _counted = token;
                if let Err(e) = me.flush() {
                    tracing::warn!(content = %me.key, error = %e, "background flush failed; the next one retries");
                }
                me.flushing.store(false, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.flushing.store(false, Ordering::SeqCst);
        }
    }

    /// Make every verified block durable: sync the data files written since the last
    /// flush, then replace the bitmap. Marks the entry complete when it is.
    pub fn flush(&self) -> Result<(), CacheError> {
        let _one_at_a_time = self.flush_lock.lock().expect("flush lock");
        let (bits, files) = {
            let mut have = self.have.lock().expect("have lock");
            if have.unflushed == 0 && have.dirty_files.is_empty() {
                return Ok(());
            }
            have.unflushed = 0;
            have.last_flush = Instant::now();
            (have.bits.clone(), std::mem::take(&mut have.dirty_files))
        };
        let synced = files.iter().try_for_each(|&file| {
            let path = self.data_path(file);
            let f = File::open(&path).map_err(io_err(&path))?;
            f.sync_data().map_err(io_err(&path))
        });
        let written = synced.and_then(|()| write_atomic(&self.dir.join(HAVE_FILE), &bits, true));
        if let Err(e) = written {
            // Not recorded: the next flush must sync these files again.
            let mut have = self.have.lock().expect("have lock");
            have.dirty_files.extend(files);
            have.unflushed += 1;
            return Err(e);
        }
        if self.is_complete() {
            self.finish()?;
        }
        Ok(())
    }

    /// Record completion: files become read-only (executable where published so),
    /// because delivered hard links share them with the caller.
    fn finish(&self) -> Result<(), CacheError> {
        for (i, file) in self.manifest.files.iter().enumerate() {
            let path = self.data_path(i);
            let mode = if file.executable { 0o555 } else { 0o444 };
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_err(&path))?;
        }
        self.update_meta(|m| m.complete = true)?;
        // After the permissions: changing them moves ctime too.
        self.stamp_files()
    }

    /// Change the metadata and persist it.
    pub fn update_meta(&self, f: impl FnOnce(&mut EntryMeta)) -> Result<(), CacheError> {
        // Held while saving: two saves at once would write into the same spare
        // (see `util::replace_file`), and the older could land last.
        let mut meta = self.meta.lock().expect("meta lock");
        f(&mut meta);
        let bytes = serde_json::to_vec(&*meta).expect("meta serializes");
        write_atomic(&self.dir.join(META_FILE), &bytes, false)
    }

    /// Re-hash every block; unmark (and report) any whose bytes changed since they
    /// were verified, e.g. through a delivered hard link written by its owner.
    pub fn reverify(&self) -> Result<usize, CacheError> {
        // Re-hashing is the proof now; stamped again below when nothing changed.
        self.clear_stamps();
        let mut bad = Vec::new();
        for i in 0..self.manifest.block_count() {
            if !self.has_block(i) {
                continue;
            }
            let ok = self
                .read_raw(i)?
                .is_some_and(|d| self.manifest.verify_block(i, &d));
            if !ok {
                bad.push(i);
            }
        }
        if !bad.is_empty() {
            {
                let mut have = self.have.lock().expect("have lock");
                for &i in &bad {
                    have.bits[i / 8] &= !(1 << (i % 8));
                }
                have.unflushed += 1;
            }
            for (i, file) in self.manifest.files.iter().enumerate() {
                let path = self.data_path(i);
                let mode = if file.executable { 0o755 } else { 0o644 };
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(mode));
            }
            self.update_meta(|m| m.complete = false)?;
            self.recount();
            self.flush()?;
            tracing::warn!(content = %self.key, blocks = bad.len(), "cached blocks changed since verification; they will be fetched again");
            // Whoever repairs content (the agent) hears of it: a complete entry has
            // no job that would fetch the blocks otherwise.
            let _ = self.hooks.damaged.send(self.key.clone());
        } else if self.is_complete() {
            self.stamp_files()?;
        }
        Ok(bad.len())
    }

    /// Mark the entry as used by one more job or transfer; it is never evicted while
    /// a lease is held.
    pub fn lease(self: &Arc<Self>) -> EntryLease {
        self.users.fetch_add(1, Ordering::SeqCst);
        EntryLease(Arc::clone(self))
    }

    /// True while a lease is held.
    pub fn in_use(&self) -> bool {
        self.users.load(Ordering::SeqCst) > 0
    }
}

/// Consecutive blocks of one file: `first..=last` (global indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRun {
    /// The file (index into the manifest's files).
    pub file: usize,
    /// First block.
    pub first: usize,
    /// Last block (inclusive).
    pub last: usize,
}

/// Holds an entry in use; dropping it releases it.
#[derive(Debug)]
pub struct EntryLease(Arc<ContentEntry>);

impl EntryLease {
    /// The leased entry.
    pub fn entry(&self) -> &Arc<ContentEntry> {
        &self.0
    }
}

impl Drop for EntryLease {
    fn drop(&mut self) {
        self.0.users.fetch_sub(1, Ordering::SeqCst);
    }
}
