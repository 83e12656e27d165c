//! Delivery: the verified content is linked from the cache into the caller's
//! directory, a hard link per file where the file system allows it (no copy, no
//! extra space), a copy otherwise. Each file appears atomically (link or copy to a
//! temporary name, then rename), so a caller never sees half a file.
//!
//! The agent runs as root and the destination may be writable by others, so every
//! step below the destination is taken relative to an open directory, and a
//! directory that turns out to be a symbolic link is refused, never followed:
//! `mkdir D O; ln -s O D/a` must not make the agent write `a/x` into `O`. The
//! destination path itself is the caller's choice and is resolved as given.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, CWD};

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

fn err(path: &Path) -> impl FnOnce(io::Error) -> DeliveryError + '_ {
    move |source| DeliveryError {
        path: path.to_path_buf(),
        source,
    }
}

fn errno(path: &Path) -> impl FnOnce(rustix::io::Errno) -> DeliveryError + '_ {
    move |e| err(path)(e.into())
}

/// Open directory `name` in `parent`, creating it if needed; a symbolic link (or
/// anything but a directory) there is refused.
fn open_subdir(parent: &OwnedFd, name: &Path, shown: &Path) -> Result<OwnedFd, DeliveryError> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(errno(shown)(e)),
    }
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    rustix::fs::openat(parent, name, flags, Mode::empty()).map_err(|e| {
        let linked = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_symlink());
        if linked {
            err(shown)(io::Error::other(
                "is a symbolic link: delivery does not follow links inside the destination",
            ))
        } else {
            errno(shown)(e)
        }
    })
}

/// Put every file of the complete `entry` under `dest`.
pub fn deliver(entry: &ContentEntry, dest: &Path) -> Result<DeliveryReport, DeliveryError> {
    fs::create_dir_all(dest).map_err(err(dest))?;
    let dir_flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let root = rustix::fs::open(dest, dir_flags, Mode::empty()).map_err(errno(dest))?;
    let mut report = DeliveryReport::default();
    let data = entry.data_dir();
    for file in &entry.manifest().files {
        let src = data.join(&file.path);
        let dst = dest.join(&file.path);
        let rel = Path::new(&file.path);
        // Manifest paths are validated (relative, no `..`); walk them one
        // directory at a time, each opened without following links.
        let mut dir = None::<OwnedFd>;
        let mut shown = dest.to_path_buf();
        let parts: Vec<&Path> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(Path::new(n)),
                _ => None,
            })
            .collect();
        let (name, dirs) = parts.split_last().expect("manifest paths name files");
        for d in dirs {
            shown.push(d);
            let parent = dir.as_ref().unwrap_or(&root);
            dir = Some(open_subdir(parent, d, &shown)?);
        }
        let parent = dir.as_ref().unwrap_or(&root);
        let tmp_name = format!(".{}.cdtmp", name.to_string_lossy());
        let tmp = dst.with_file_name(&tmp_name);
        let _ = rustix::fs::unlinkat(parent, tmp_name.as_str(), AtFlags::empty());
        match rustix::fs::linkat(CWD, &src, parent, tmp_name.as_str(), AtFlags::empty()) {
            Ok(()) => report.linked += 1,
            Err(_) => {
                copy_into(&src, parent, &tmp_name).map_err(err(&dst))?;
                report.copied += 1;
            }
        }
        // renameat replaces whatever has the final name, a symbolic link included,
        // without following it.
        if let Err(e) = rustix::fs::renameat(parent, tmp_name.as_str(), parent, *name) {
            let _ = rustix::fs::unlinkat(parent, tmp_name.as_str(), AtFlags::empty());
            return Err(errno(&dst)(e));
        }
        // rename(2) between two hard links of one inode (the same content delivered
        // again into the same place) does nothing and succeeds: the temporary name
        // is still there, and must go.
        if rustix::fs::statat(parent, tmp_name.as_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            rustix::fs::unlinkat(parent, tmp_name.as_str(), AtFlags::empty())
                .map_err(errno(&tmp))?;
        }
    }
    // Hard links moved the files' ctime: keep serving them without re-hashing
    // when nothing else moved (see `entry::stamp`). Not being able to record that
    // costs re-hashing, not the delivery.
    if let Err(e) = entry.restamp_after_delivery() {
        tracing::warn!(content = %entry.key(), error = %e, "file stamps not updated after delivery; blocks will be re-hashed when served");
    }
    Ok(report)
}

/// Copy `src` to a new file `name` in `dir` (never through an existing name).
fn copy_into(src: &Path, dir: &OwnedFd, name: &str) -> io::Result<()> {
    let mut from = File::open(src)?;
    let mode = from.metadata()?.permissions().mode() & 0o777;
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir.as_fd(), name, flags, Mode::from_raw_mode(mode))?;
    let mut to = File::from(fd);
    io::copy(&mut from, &mut to)?;
    Ok(())
}
