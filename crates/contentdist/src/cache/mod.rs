//! The content store: every content version the agent holds, block by verified block.
//!
//! A block enters the cache only through [`ContentEntry::put_block`], which checks it
//! against the manifest first, so it does not matter whether it came from the origin
//! or from a peer. See [`entry`] for the on-disk layout and why it survives `kill -9`.

pub mod clean;
mod deliver;
mod entry;
mod info;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Moved to [`crate::manifest::ContentKey`]; this path stays for one release.
pub use crate::manifest::ContentKey;
pub use clean::CleanPolicy;
pub use deliver::{deliver, DeliveryError, DeliveryReport};
pub use entry::{now_unix, BlockRun, ContentEntry, EntryLease, EntryMeta};
pub use info::{CacheEntryInfo, CleanReport};

use crate::codes::Code;
use crate::manifest::Manifest;

/// What went wrong in the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file operation failed.
    #[error("cache file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A cache file does not hold what it should.
    #[error("cache file {path} is damaged: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The content id is not acceptable.
    #[error("invalid content id '{0}'")]
    InvalidId(String),
    /// The entry holds other content than asked for and is in use, so it cannot be
    /// replaced now.
    #[error("cache entry {0} holds other content and is in use")]
    InUse(ContentKey),
}

impl CacheError {
    /// The catalogue code: a full disk is 0x70, other I/O problems 0xCD07.
    pub fn code(&self) -> Code {
        match self {
            CacheError::Io { source, .. } if is_disk_full(source) => Code::DISK_FULL,
            CacheError::InvalidId(_) => Code::INVALID_PACKAGE_PATH,
            _ => Code::CACHE_IO,
        }
    }
}

/// True for "no space left on device" and "disk quota exceeded".
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// The content store.
#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
    open: Mutex<HashMap<ContentKey, Arc<ContentEntry>>>,
    hooks: CacheHooks,
}

/// What a cache shares with its entries.
#[derive(Clone, Debug)]
pub(crate) struct CacheHooks {
    /// Background flush threads of the entries (see [`Cache::wait_background`]).
    background: tokio_util::task::TaskTracker,
    /// Entries that lost verified blocks (see [`Cache::damaged`]).
    damaged: tokio::sync::broadcast::Sender<ContentKey>,
}

impl Cache {
    /// Open (creating if needed) the cache under `root`.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        let content = root.join("content");
        fs::create_dir_all(&content).map_err(|source| CacheError::Io {
            path: content.clone(),
            source,
        })?;
        let cache = Cache {
            root: root.to_path_buf(),
            open: Mutex::new(HashMap::new()),
            hooks: CacheHooks {
                background: tokio_util::task::TaskTracker::new(),
                damaged: tokio::sync::broadcast::channel(64).0,
            },
        };
        cache.remove_leftovers();
        Ok(cache)
    }

    /// Wait up to `deadline` for the entries' background flushes to end; true when
    /// none is left. An agent's shutdown calls it last, so no thread outlives it.
    pub async fn wait_background(&self, deadline: std::time::Duration) -> bool {
        self.hooks.background.close();
        let done = tokio::time::timeout(deadline, self.hooks.background.wait())
            .await
            .is_ok();
        self.hooks.background.reopen();
        done
    }

    /// Hear of every entry found to have lost verified blocks (a delivered hard link
    /// was written to, a disk error): they are no longer complete, and someone must
    /// fetch the blocks again.
    pub fn damaged(&self) -> tokio::sync::broadcast::Receiver<ContentKey> {
        self.hooks.damaged.subscribe()
    }

    /// Background flushes running now.
    pub fn background_flushes(&self) -> usize {
        self.hooks.background.len()
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entry_dir(&self, key: &ContentKey) -> PathBuf {
        self.root
            .join("content")
            .join(key.id())
            .join(key.version().to_string())
    }

    /// Entries a crash left half-created (`.N.new-PID`) are deleted: they never held
    /// a manifest-complete layout, so nothing verified is lost.
    fn remove_leftovers(&self) {
        let Ok(ids) = fs::read_dir(self.root.join("content")) else {
            return;
        };
        for id in ids.flatten() {
            let Ok(versions) = fs::read_dir(id.path()) else {
                continue;
            };
            for v in versions.flatten() {
                if v.file_name().to_string_lossy().starts_with('.') {
                    let _ = fs::remove_dir_all(v.path());
                }
            }
        }
    }

    /// The entry for `key` if the cache holds it.
    pub fn get(&self, key: &ContentKey) -> Result<Option<Arc<ContentEntry>>, CacheError> {
        // No id check here: a `ContentKey` only exists with a valid id.
        let mut open = self.open.lock().expect("cache lock");
        if let Some(e) = open.get(key) {
            return Ok(Some(Arc::clone(e)));
        }
        let dir = self.entry_dir(key);
        if !dir.join(crate::manifest::MANIFEST_FILE).exists() {
            return Ok(None);
        }
        match ContentEntry::open(key.clone(), &dir, self.hooks.clone()) {
            Ok(e) => {
                open.insert(key.clone(), Arc::clone(&e));
                Ok(Some(e))
            }
            Err(CacheError::Corrupt { path, detail }) => {
                // A damaged entry is worth nothing: drop it so the job fetches again.
                tracing::warn!(path = %path.display(), %detail, "removing damaged cache entry");
                let _ = fs::remove_dir_all(&dir);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The entry for `manifest`'s content: the existing one if it holds the same
    /// content (same content hash), else a new one. An existing entry holding other
    /// content under the same id and version is replaced unless it is in use.
    pub fn get_or_create(
        &self,
        manifest: Manifest,
        priority: u8,
    ) -> Result<Arc<ContentEntry>, CacheError> {
        let key = ContentKey::of(&manifest)
            .map_err(|_| CacheError::InvalidId(manifest.content_id.clone()))?;
        if let Some(e) = self.get(&key)? {
            if e.manifest().content_hash == manifest.content_hash {
                return Ok(e);
            }
            if e.in_use() {
                return Err(CacheError::InUse(key));
            }
            tracing::info!(content = %key, "cached entry holds other content; replacing it");
            self.remove(&key)?;
        }
        let mut open = self.open.lock().expect("cache lock");
        if let Some(e) = open.get(&key) {
            return Ok(Arc::clone(e));
        }
        let e = ContentEntry::create(
            key.clone(),
            &self.entry_dir(&key),
            manifest,
            priority,
            self.hooks.clone(),
        )?;
        open.insert(key, Arc::clone(&e));
        Ok(e)
    }

    /// Delete an entry (which must not be in use).
    pub fn remove(&self, key: &ContentKey) -> Result<(), CacheError> {
        let mut open = self.open.lock().expect("cache lock");
        if let Some(e) = open.get(key) {
            if e.in_use() {
                return Err(CacheError::InUse(key.clone()));
            }
        }
        open.remove(key);
        let dir = self.entry_dir(key);
        // Rename first so a crash mid-delete leaves a leftover, not a damaged entry.
        let doomed = dir.with_file_name(format!(".{}.del-{}", key.version(), std::process::id()));
        match fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(CacheError::Io { path: dir, source }),
        }
        fs::remove_dir_all(&doomed).map_err(|source| CacheError::Io {
            path: doomed,
            source,
        })?;
        let _ = fs::remove_dir(dir.parent().expect("entry dir has a parent"));
        Ok(())
    }

    /// Every entry on disk.
    pub fn keys(&self) -> Vec<ContentKey> {
        let mut keys = Vec::new();
        let Ok(ids) = fs::read_dir(self.root.join("content")) else {
            return keys;
        };
        for id in ids.flatten() {
            let id_name = id.file_name().to_string_lossy().into_owned();
            let Ok(versions) = fs::read_dir(id.path()) else {
                continue;
            };
            for v in versions.flatten() {
                // A directory that is not a valid id is no entry of ours.
                if let Ok(version) = v.file_name().to_string_lossy().parse::<u32>() {
                    keys.extend(ContentKey::new(id_name.clone(), version));
                }
            }
        }
        keys.sort();
        keys
    }

    /// Every entry, described.
    pub fn list(&self) -> Vec<CacheEntryInfo> {
        self.keys()
            .iter()
            .filter_map(|k| self.get(k).ok().flatten())
            .map(|e| describe(&e))
            .collect()
    }
}

/// An entry as the control socket reports it.
pub fn describe(e: &ContentEntry) -> CacheEntryInfo {
    let meta = e.meta();
    CacheEntryInfo {
        content_id: e.key().id().to_string(),
        version: e.key().version(),
        bytes_total: e.manifest().total_size(),
        bytes_verified: e.verified_bytes(),
        complete: e.is_complete(),
        priority: meta.priority,
        last_used_unix: meta.last_used_unix,
        in_use: e.in_use(),
    }
}

#[cfg(test)]
mod tests;
