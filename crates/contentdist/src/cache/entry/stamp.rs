//! A cheaper proof than re-hashing that a complete file's bytes are still the ones
//! verified: its inode, size, mtime and ctime, recorded once the entry is complete
//! (after its files were made read-only) and compared before a block is served.
//!
//! Any write to the file, through the cache or a delivered hard link, moves its
//! ctime forward, which no user can set back; so a file whose stat still equals
//! its stamp after its bytes were read was not written since it was verified. A
//! file whose stamp does not match is served as before: every block hashed again
//! (and a changed one hidden and repaired). Delivery by hard link moves ctime
//! too (the link count changes), so after a delivery the stamp takes the new ctime
//! when inode, size and mtime are unchanged (a write would have moved mtime).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{CacheError, ContentEntry};

/// What a file's stat said when its bytes were known good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<FileStamp> {
        Ok(FileStamp::from(&std::fs::metadata(path)?))
    }

    /// The same bytes as far as a write can tell: only ctime moved.
    fn same_but_ctime(&self, now: &FileStamp) -> bool {
        (self.ino, self.size, self.mtime) == (now.ino, now.size, now.mtime)
    }
}

impl From<&std::fs::Metadata> for FileStamp {
    fn from(m: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl ContentEntry {
    /// Record every file's stamp (the entry is complete, its files verified and
    /// read-only). A file that cannot be stat'ed gets none: it is re-hashed.
    pub(super) fn stamp_files(&self) -> Result<(), CacheError> {
        let stamps = (0..self.manifest.files.len())
            .map(|i| FileStamp::of(&self.data_path(i)).ok())
            .collect();
        self.update_meta(|m| m.file_stamps = stamps)
    }

    /// Forget the stamps (the entry is being re-verified or repaired).
    pub(super) fn clear_stamps(&self) {
        self.meta.lock().expect("meta lock").file_stamps.clear();
    }

    /// True when file `file` is stamped and its stat still equals the stamp: its
    /// bytes read before this call are the verified ones.
    pub fn unchanged_since_verified(&self, file: usize) -> bool {
        self.stamp(file)
            .is_some_and(|s| FileStamp::of(&self.data_path(file)).is_ok_and(|now| now == s))
    }

    /// File `file` opened for reading when it is stamped (its bytes may then be
    /// served by [`ContentEntry::open_file_unchanged`], without hashing); `None`
    /// otherwise. Opening it is a path lookup of a file just stat'ed, and cheap.
    pub fn open_stamped(&self, file: usize) -> Option<std::fs::File> {
        self.stamp(file)?;
        std::fs::File::open(self.data_path(file)).ok()
    }

    /// True when `f`, an open handle of file `file`, still equals its stamp: what
    /// was read from it before this call are the verified bytes. Checked on the
    /// handle (fstat), so a file renamed over the cached one meanwhile does not
    /// matter: the handle still reads the stamped inode.
    pub fn open_file_unchanged(&self, file: usize, f: &std::fs::File) -> bool {
        self.stamp(file)
            .is_some_and(|s| f.metadata().is_ok_and(|m| FileStamp::from(&m) == s))
    }

    fn stamp(&self, file: usize) -> Option<FileStamp> {
        self.meta
            .lock()
            .expect("meta lock")
            .file_stamps
            .get(file)
            .copied()
            .flatten()
    }

    /// After a delivery by hard link: take the files' new ctime into their stamps
    /// where only ctime moved; a file where more moved loses its stamp.
    pub fn restamp_after_delivery(&self) -> Result<(), CacheError> {
        let old = self.meta.lock().expect("meta lock").file_stamps.clone();
        if old.is_empty() {
            return Ok(());
        }
        let stamps = old
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let now = FileStamp::of(&self.data_path(i)).ok()?;
                s.filter(|s| s.same_but_ctime(&now)).map(|_| now)
            })
            .collect();
        self.update_meta(|m| m.file_stamps = stamps)
    }
}
