//! Temporary directory, fsync, and the final rename into place.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{io_err, PublishError};
use crate::util::{flags_unsupported, renameat2};

/// The version being written: `ID/.VERSION.tmp-PID-RANDOM`, removed on drop unless it
/// was renamed into place. The random part keeps two publishes in one process apart.
pub(super) struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl TempDir {
    pub(super) fn create(id_dir: &Path, version: u32) -> Result<TempDir, PublishError> {
        let name = format!(
            ".{version}.tmp-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let path = id_dir.join(name);
        fs::create_dir(&path).map_err(io_err("creating", &path))?;
        Ok(TempDir { path, armed: true })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: the publish already failed with a better error than this.
            let _ = remove_any(&self.path);
        }
    }
}

/// Creates the directories under the content directory, remembering them so that each
/// can be fsynced once at the end (a new name is durable only once its directory is).
pub(super) struct DirMaker {
    root: PathBuf,
    made: HashSet<String>,
}

impl DirMaker {
    /// Create the root (the content directory) itself.
    pub(super) fn new(root: &Path) -> Result<DirMaker, PublishError> {
        fs::create_dir(root).map_err(io_err("creating", root))?;
        Ok(DirMaker {
            root: root.to_path_buf(),
            made: HashSet::new(),
        })
    }

    /// Create every missing parent directory of the relative path `rel`.
    pub(super) fn make_parents(&mut self, rel: &str) -> Result<(), PublishError> {
        for (i, _) in rel.match_indices('/') {
            let dir = &rel[..i];
            if !self.made.contains(dir) {
                let path = self.root.join(dir);
                fs::create_dir(&path).map_err(io_err("creating", &path))?;
                self.made.insert(dir.to_string());
            }
        }
        Ok(())
    }

    /// fsync the root and every directory made.
    pub(super) fn sync_all(&self) -> Result<(), PublishError> {
        sync_dir(&self.root)?;
        for dir in &self.made {
            sync_dir(&self.root.join(dir))?;
        }
        Ok(())
    }
}

/// Write a new file and fsync it.
pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("creating", path))?;
    f.write_all(bytes).map_err(io_err("writing", path))?;
    f.sync_all().map_err(io_err("flushing", path))
}

/// fsync a directory, making the names in it durable.
pub(super) fn sync_dir(path: &Path) -> Result<(), PublishError> {
    crate::util::sync_dir(path).map_err(io_err("flushing", path))
}

/// Move the finished `tmp` to `final_dir`. An existing `final_dir` is replaced when
/// `force`, else `exists` gives the error.
pub(super) fn install(
    mut tmp: TempDir,
    final_dir: &Path,
    force: bool,
    exists: impl FnOnce() -> PublishError,
) -> Result<(), PublishError> {
    let parent = final_dir.parent().unwrap_or(Path::new("."));
    let placing = io_err("renaming into place", final_dir);
    match renameat2(&tmp.path, final_dir, libc::RENAME_NOREPLACE) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            if !force {
                return Err(exists());
            }
            match renameat2(&tmp.path, final_dir, libc::RENAME_EXCHANGE) {
                // `tmp` now holds the old version: dropping it deletes it.
                Ok(()) => {}
                Err(e) if flags_unsupported(&e) => swap_by_renames(&tmp.path, final_dir)?,
                Err(e) => return Err(placing(e)),
            }
            sync_dir(parent)?;
            remove_old(tmp);
            return Ok(());
        }
        // The file system has no renameat2 flags: check, then plain rename (a version
        // created in between as an empty directory would be replaced: rename(2) allows it).
        Err(e) if flags_unsupported(&e) => {
            if fs::symlink_metadata(final_dir).is_ok() {
                if !force {
                    return Err(exists());
                }
                swap_by_renames(&tmp.path, final_dir)?;
                sync_dir(parent)?;
                remove_old(tmp);
                return Ok(());
            }
            fs::rename(&tmp.path, final_dir).map_err(placing)?;
        }
        Err(e) => return Err(placing(e)),
    }
    tmp.armed = false;
    sync_dir(parent)
}

/// Delete the replaced version, now at `tmp`'s path. The new version is already in
/// place, so a failure here is only worth a warning.
fn remove_old(mut tmp: TempDir) {
    tmp.armed = false;
    if let Err(e) = remove_any(&tmp.path) {
        tracing::warn!(path = %tmp.path.display(), error = %e, "could not delete the replaced version");
    }
}

/// Without RENAME_EXCHANGE: old version aside, new one in, old one moved to `tmp` (for
/// the caller to delete). If the second rename fails, the old version is put back.
fn swap_by_renames(tmp: &Path, final_dir: &Path) -> Result<(), PublishError> {
    let mut aside = tmp.as_os_str().to_owned();
    aside.push(".old");
    let aside = PathBuf::from(aside);
    fs::rename(final_dir, &aside).map_err(io_err("moving aside", final_dir))?;
    if let Err(e) = fs::rename(tmp, final_dir) {
        let _ = fs::rename(&aside, final_dir);
        return Err(io_err("renaming into place", final_dir)(e));
    }
    fs::rename(&aside, tmp).map_err(io_err("renaming", &aside))
}

/// Delete a directory tree, or a single file (an old "version" may be anything).
fn remove_any(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}
