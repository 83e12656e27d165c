//! Walk the source tree: plain files only, sorted, names checked.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::{io_err, PublishError};
use crate::manifest::validate_path;

/// One file to publish.
#[derive(Debug)]
pub(super) struct SourceFile {
    /// Path on disk.
    pub abs: PathBuf,
    /// Relative `/`-separated path, as in the manifest (already validated).
    pub rel: String,
}

/// Every plain file under `root`, sorted by relative path (byte order). Any other kind
/// of entry, or a name the manifest cannot carry, is an error naming it.
pub(super) fn collect(root: &Path) -> Result<Vec<SourceFile>, PublishError> {
    let mut out = Vec::new();
    // An explicit stack rather than recursion: deep trees cannot overflow the stack.
    let mut pending: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let entry = entry.map_err(io_err("listing", &dir))?;
            let abs = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(PublishError::NonUtf8Name { path: abs });
            };
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            validate_path(&rel).map_err(|source| PublishError::UnsafeName {
                path: abs.clone(),
                source,
            })?;
            // `DirEntry::file_type` does not follow symlinks: a link is seen as a link.
            let kind = entry.file_type().map_err(io_err("inspecting", &abs))?;
            if kind.is_dir() {
                pending.push((abs, rel));
            } else if kind.is_file() {
                out.push(SourceFile { abs, rel });
            } else {
                return Err(PublishError::NotRegularFile {
                    path: abs,
                    kind: kind_name(kind),
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// A human name for a file type that is not a plain file or directory.
pub(super) fn kind_name(kind: fs::FileType) -> &'static str {
    if kind.is_symlink() {
        "symbolic link"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_fifo() {
        "FIFO (named pipe)"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_dir() {
        "directory"
    } else {
        "special file"
    }
}
