//! `contentdist publish`: write a directory tree and its manifest into an origin root.
//!
//! `publish` turns `SOURCE/` into `OUT_ROOT/ID/VERSION/`:
//!
//! ```text
//! OUT_ROOT/ID/VERSION/manifest.json       the manifest (see `crate::manifest`)
//! OUT_ROOT/ID/VERSION/content-hash        its content hash, hex (peers check a
//!                                         manifest taken from their master with it)
//! OUT_ROOT/ID/VERSION/content/<path>      every file of SOURCE, same relative path
//! ```
//!
//! Any web server serving `OUT_ROOT` is then an origin.
//!
//! - **Plain files only.** A symlink, socket, FIFO or device anywhere in the tree is an
//!   error naming it: content is cut into blocks that every hop verifies and copies as
//!   bytes, and a link or special file has no bytes to verify (a symlink could also point
//!   outside the content on the machine that receives it). File names must be valid
//!   UTF-8 and pass [`crate::manifest::validate_path`] (no backslash, no control
//!   characters). Empty directories are not published: the manifest lists files only.
//!   An empty source directory is allowed and gives a manifest with no files.
//! - **Deterministic.** Files are listed in byte order of their relative paths, so the
//!   same tree always gives the same manifest and content hash.
//! - **Streaming.** Each file is copied through one fixed buffer ([`COPY_BUFFER`]) and
//!   hashed block by block on the way; no file is ever held in memory, so memory use is
//!   flat whatever the file sizes (measured in `BENCHMARKS.md`).
//! - **Never half-visible.** Everything is written into `OUT_ROOT/ID/.VERSION.tmp-PID`,
//!   every file and directory is fsynced, `manifest.json` is written last, and the
//!   directory is renamed into place. Without `force` an existing version is an error
//!   (checked first, and again atomically by the final `renameat2(RENAME_NOREPLACE)`).
//!   With `force` the new version is swapped in with `renameat2(RENAME_EXCHANGE)`, so a
//!   web server sees the old or the new version, never neither; on file systems without
//!   it, the old version is renamed aside, the new one renamed in, and the old deleted.
//! - **Modes.** A file with any execute bit is published executable (mode 0755, and
//!   `executable: true` in the manifest); every other file gets 0644.

mod copy;
mod install;
mod walk;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::codes::Code;
use crate::manifest::{
    validate_content_id, FileEntry, Manifest, ManifestError, CONTENT_DIR, CONTENT_HASH_FILE,
    DEFAULT_BLOCK_SIZE, MANIFEST_FILE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE,
};

/// Size of the one read buffer used to copy every file (1 MiB).
pub const COPY_BUFFER: usize = 1 << 20;

/// What to publish and where.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// The directory tree to publish.
    pub source_dir: PathBuf,
    /// Content id (package id), see [`crate::manifest::validate_content_id`].
    pub content_id: String,
    /// Content version; the directory is `out_root/ID/VERSION` (decimal).
    pub version: u32,
    /// The origin root a web server serves.
    pub out_root: PathBuf,
    /// Block size in bytes, 4096..=4194304; default 131072 (the product's `BlockSize`).
    pub block_size: u32,
    /// Replace an existing published version instead of failing.
    pub force: bool,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            source_dir: PathBuf::from("."),
            content_id: String::new(),
            version: 1,
            out_root: PathBuf::from("."),
            block_size: DEFAULT_BLOCK_SIZE,
            force: false,
        }
    }
}

/// What `publish` wrote.
#[derive(Clone, Debug)]
pub struct PublishReport {
    /// The published version directory, `out_root/ID/VERSION`.
    pub dir: PathBuf,
    /// Number of files.
    pub files: usize,
    /// Total bytes of all files.
    pub bytes: u64,
    /// Total number of blocks.
    pub blocks: usize,
    /// The manifest's content hash (64 lower-case hex digits).
    pub content_hash: String,
    /// Wall-clock time taken.
    pub elapsed: Duration,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The content id is not allowed.
    #[error("cannot publish: {source}")]
    InvalidContentId {
        /// The validation error (names the id).
        source: ManifestError,
    },
    /// The block size is out of range.
    #[error(
        "cannot publish: block size {block_size} is outside {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE}"
    )]
    InvalidBlockSize {
        /// The requested block size.
        block_size: u32,
    },
    /// The source is missing or not a directory.
    #[error("cannot publish {path}: it is not a directory")]
    SourceNotDirectory {
        /// The source path.
        path: PathBuf,
    },
    /// A symlink, socket, FIFO or device in the source tree.
    #[error(
        "cannot publish {path}: it is a {kind}; content must be plain files (only bytes can be cut into blocks, verified and copied to peers)"
    )]
    NotRegularFile {
        /// The offending path in the source tree.
        path: PathBuf,
        /// What it is ("symbolic link", "socket", ...).
        kind: &'static str,
    },
    /// A file or directory name that is not valid UTF-8.
    #[error("cannot publish {path}: the name is not valid UTF-8, which manifest paths must be")]
    NonUtf8Name {
        /// The offending path in the source tree (lossily shown).
        path: PathBuf,
    },
    /// A name the manifest cannot carry (backslash, control character, too long).
    #[error("cannot publish {path}: {source}")]
    UnsafeName {
        /// The offending path in the source tree.
        path: PathBuf,
        /// Why the relative path was refused.
        source: ManifestError,
    },
    /// The version is already published and `force` is off.
    #[error("{dir} already exists: {content_id} version {version} is already published (use --force to replace it)")]
    VersionExists {
        /// The existing version directory.
        dir: PathBuf,
        /// The content id.
        content_id: String,
        /// The version.
        version: u32,
    },
    /// The source directory and the output directory contain one another.
    #[error("cannot publish {source_dir} into {out_dir}: one is inside the other")]
    Overlap {
        /// The source directory.
        source_dir: PathBuf,
        /// The content's output directory (`out_root/ID`).
        out_dir: PathBuf,
    },
    /// Reading the source or writing the output failed.
    #[error("publish failed {action} {path}: {source}")]
    Io {
        /// The step, e.g. "reading", "creating", "renaming into place".
        action: &'static str,
        /// The path being worked on.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The manifest built from the tree is invalid (not expected: every input is checked
    /// before it is built).
    #[error("publish built an invalid manifest: {source}")]
    Manifest {
        /// The validation error.
        source: ManifestError,
    },
}

impl PublishError {
    /// The catalogue code: `INVALID_PACKAGE_PATH` for a bad id or an unpublishable name,
    /// `DISK_FULL` when the output file system is full (ENOSPC/EDQUOT, so the
    /// administrator sees the product's usual code), `MANIFEST_INVALID` if the built
    /// manifest is refused, `PUBLISH_FAILED` for the rest.
    pub fn code(&self) -> Code {
        match self {
            PublishError::InvalidContentId { .. }
            | PublishError::NonUtf8Name { .. }
            | PublishError::UnsafeName { .. } => Code::INVALID_PACKAGE_PATH,
            PublishError::Io { source, .. }
                if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) =>
            {
                Code::DISK_FULL
            }
            PublishError::Manifest { source } => source.code(),
            _ => Code::PUBLISH_FAILED,
        }
    }
}

/// Shorthand for wrapping an I/O error with its step and path.
pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PublishError {
    let path = path.to_path_buf();
    move |source| PublishError::Io {
        action,
        path,
        source,
    }
}

/// Publish `opts.source_dir` as `opts.out_root/ID/VERSION` (see the module docs).
pub fn publish(opts: &PublishOptions) -> Result<PublishReport, PublishError> {
    let started = Instant::now();
    validate_content_id(&opts.content_id)
        .map_err(|source| PublishError::InvalidContentId { source })?;
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&opts.block_size) {
        return Err(PublishError::InvalidBlockSize {
            block_size: opts.block_size,
        });
    }
    let source_meta =
        std::fs::metadata(&opts.source_dir).map_err(io_err("reading", &opts.source_dir))?;
    if !source_meta.is_dir() {
        return Err(PublishError::SourceNotDirectory {
            path: opts.source_dir.clone(),
        });
    }
    let id_dir = opts.out_root.join(&opts.content_id);
    let final_dir = id_dir.join(opts.version.to_string());
    let exists = || std::fs::symlink_metadata(&final_dir).is_ok();
    if exists() && !opts.force {
        return Err(version_exists(opts, &final_dir));
    }

    // Read-only work first: a refused tree leaves nothing behind.
    let sources = walk::collect(&opts.source_dir)?;

    let created_id_dir = !id_dir.exists();
    std::fs::create_dir_all(&id_dir).map_err(io_err("creating", &id_dir))?;
    if let Err(e) = check_overlap(&opts.source_dir, &id_dir) {
        if created_id_dir {
            let _ = std::fs::remove_dir(&id_dir);
        }
        return Err(e);
    }

    let tmp = install::TempDir::create(&id_dir, opts.version)?;
    let content = tmp.path().join(CONTENT_DIR);
    let mut dirs = install::DirMaker::new(&content)?;
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut entries = Vec::with_capacity(sources.len());
    for src in &sources {
        let dest = content.join(&src.rel);
        dirs.make_parents(&src.rel)?;
        let copied = copy::copy_and_hash(&src.abs, &dest, opts.block_size, &mut buf)?;
        entries.push(FileEntry::new(
            src.rel.clone(),
            copied.size,
            copied.executable,
            copied.blocks,
        ));
    }
    dirs.sync_all()?;

    let manifest = Manifest::build(
        opts.content_id.clone(),
        opts.version,
        opts.block_size,
        entries,
    )
    .map_err(|source| PublishError::Manifest { source })?;
    install::write_synced(
        &tmp.path().join(CONTENT_HASH_FILE),
        format!("{}\n", manifest.content_hash).as_bytes(),
    )?;
    install::write_synced(&tmp.path().join(MANIFEST_FILE), &manifest.to_json())?;
    install::sync_dir(tmp.path())?;

    install::install(tmp, &final_dir, opts.force, || {
        version_exists(opts, &final_dir)
    })?;

    Ok(PublishReport {
        dir: final_dir,
        files: manifest.files.len(),
        bytes: manifest.total_size(),
        blocks: manifest.block_count(),
        content_hash: manifest.content_hash,
        elapsed: started.elapsed(),
    })
}

fn version_exists(opts: &PublishOptions, dir: &Path) -> PublishError {
    PublishError::VersionExists {
        dir: dir.to_path_buf(),
        content_id: opts.content_id.clone(),
        version: opts.version,
    }
}

/// Refuse an output inside the source (the next publish would include this one) and a
/// source inside the output (a forced publish would delete its own source).
fn check_overlap(source_dir: &Path, id_dir: &Path) -> Result<(), PublishError> {
    let src = source_dir
        .canonicalize()
        .map_err(io_err("resolving", source_dir))?;
    let out = id_dir.canonicalize().map_err(io_err("resolving", id_dir))?;
    if out.starts_with(&src) || src.starts_with(&out) {
        return Err(PublishError::Overlap {
            source_dir: src,
            out_dir: out,
        });
    }
    Ok(())
}
