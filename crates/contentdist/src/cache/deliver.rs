//! Delivery: the verified content is linked from the cache into the caller's
//! directory, a hard link per file where the file system allows it (no copy, no
//! extra space), a copy otherwise. Each file appears atomically (link or copy to a
//! temporary name, then rename), so a caller never sees half a file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::ContentEntry;

/// How the content reached the destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Files hard-linked from the cache.
    pub linked: usize,
    /// Files copied (other file system, or links refused).
    pub copied: usize,
}

/// Why delivery failed: the destination path and the cause.
#[derive(Debug, thiserror::Error)]
#[error("delivering into {path}: {source}")]
pub struct DeliveryError {
    /// The destination file or directory.
    pub path: PathBuf,
    /// The cause.
    pub source: io::Error,
}

/// Put every file of the complete `entry` under `dest`.
pub fn deliver(entry: &ContentEntry, dest: &Path) -> Result<DeliveryReport, DeliveryError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DeliveryError { path, source }
    };
    fs::create_dir_all(dest).map_err(err(dest))?;
    let mut report = DeliveryReport::default();
    let data = entry.data_dir();
    for file in &entry.manifest().files {
        let src = data.join(&file.path);
        let dst = dest.join(&file.path);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(err(parent))?;
        }
        let name = dst.file_name().expect("manifest paths name files");
        let tmp = dst.with_file_name(format!(".{}.cdtmp", name.to_string_lossy()));
        let _ = fs::remove_file(&tmp);
        match fs::hard_link(&src, &tmp) {
            Ok(()) => report.linked += 1,
            Err(_) => {
                fs::copy(&src, &tmp).map_err(err(&dst))?;
                report.copied += 1;
            }
        }
        if let Err(e) = fs::rename(&tmp, &dst) {
            let _ = fs::remove_file(&tmp);
            return Err(err(&dst)(e));
        }
        // rename(2) between two hard links of one inode (the same content delivered
        // again into the same place) does nothing and succeeds: the temporary name
        // is still there, and must go.
        if tmp.symlink_metadata().is_ok() {
            fs::remove_file(&tmp).map_err(err(&tmp))?;
        }
    }
    Ok(report)
}
