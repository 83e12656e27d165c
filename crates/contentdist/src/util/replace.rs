//! Replacing a small file that is saved often (the job list, an entry's bitmap and
//! metadata) so that a reader always finds one complete version, without creating
//! and deleting a file at every save.
//!
//! The usual way, write a temporary file and rename it over the old one, allocates
//! one inode and frees another per save. An agent saves its job list every 0.5 s and
//! the bitmap of every entry it downloads every 250 ms. On ext4 without a journal
//! (this project's machines) each new inode is found by scanning past the recently
//! deleted ones, so the cost grows with the rate of saves: with 128 agents in the lab
//! it took a tenth of the CPU, more as the run went on. Here the new bytes go into a
//! spare file kept beside the target (`NAME.tmp`), and `renameat2(RENAME_EXCHANGE)`
//! swaps the two names in one step. The target is always complete; the spare then
//! holds the previous version and is written over at the next save.
//!
//! After a power loss, a save made without `sync` may be half on disk: its bytes
//! went over blocks the file already had, which the file system does not order
//! before the swap (as it does a new file's before a rename). [`read_saved`] then
//! falls back to the spare, which holds the version before. A save with `sync` also
//! syncs the directory, so that the swap is on disk before the next save writes into
//! the spare.
//!
//! One writer per path at a time: two saves racing would write into the same spare.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The spare file beside `path` that [`replace_file`] writes into.
pub fn spare_path(path: &Path) -> PathBuf {
    path.with_extension("tmp")
}

/// Make `bytes` the content of `path`, atomically for readers; with `sync`, durable
/// (the directory's swap included) when it returns. A failed save leaves `path` as
/// it was and removes the spare (on a full disk it may hold a part of the bytes).
/// The caller makes sure no other save of `path` runs at the same time.
pub fn replace_file(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let spare = spare_path(path);
    let saved = (|| {
        let f = open_spare(&spare)?;
        // Over the spare's own blocks first, then cut what the older, longer version
        // left: no moment without allocated room for what is being written.
        f.write_all_at(bytes, 0)?;
        f.set_len(bytes.len() as u64)?;
        if sync {
            f.sync_data()?;
        }
        match renameat2(&spare, path, libc::RENAME_EXCHANGE) {
            Ok(()) => {}
            // The first save (nothing to swap with), or a file system without the
            // flag: a plain rename, which uses up the spare.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) || flags_unsupported(&e) => {
                fs::rename(&spare, path)?
            }
            Err(e) => return Err(e),
        }
        if sync {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            sync_dir(dir.unwrap_or(Path::new(".")))?;
        }
        Ok(())
    })();
    if saved.is_err() {
        let _ = fs::remove_file(&spare);
    }
    saved
}

/// The spare, as a regular file of its own: a symbolic link found there (one that
/// stood at the target's name and was swapped out) is removed, not written through.
fn open_spare(spare: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .open(spare)
    };
    match open() {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            fs::remove_file(spare)?;
            open()
        }
        other => other,
    }
}

/// What the last save of `path` left, as `parse` reads it: the file, or, when it is
/// missing or does not parse (a save without `sync` cut short by a power loss), the
/// spare beside it, which holds the version before. `None` when neither parses;
/// what was wrong with an existing file is logged either way.
pub fn read_saved<T, E: std::fmt::Display>(
    path: &Path,
    parse: impl Fn(&[u8]) -> Result<T, E>,
) -> Option<T> {
    let why = match fs::read(path) {
        Ok(b) => match parse(&b) {
            Ok(v) => return Some(v),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    let spare = spare_path(path);
    match fs::read(&spare).map(|b| parse(&b)) {
        Ok(Ok(v)) => {
            tracing::warn!(path = %path.display(), error = %why, spare = %spare.display(), "saved file unreadable: using the version before it, from its spare");
            Some(v)
        }
        _ => {
            if path.exists() {
                tracing::warn!(path = %path.display(), error = %why, "saved file unreadable, and no earlier version in its spare: not used");
            }
            None
        }
    }
}

/// Make the names in directory `path` durable (a rename or an exchange in it).
pub fn sync_dir(path: &Path) -> io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// True when `renameat2` failed because the file system (or kernel) does not know
/// the flag given.
pub fn flags_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
}

/// `renameat2(2)` with `flags` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`), paths
/// relative to the working directory.
pub fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
    };
    let (from, to) = (cstr(from)?, cstr(to)?);
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn the_first_save_creates_the_file_and_leaves_no_spare() {
        let d = dir();
        let p = d.path().join("jobs.json");
        replace_file(&p, b"one", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert!(!spare_path(&p).exists());
    }

    #[test]
    fn later_saves_swap_with_the_spare_instead_of_making_new_files() {
        let d = dir();
        let p = d.path().join("have.bin");
        replace_file(&p, b"first version, longer", false).unwrap();
        replace_file(&p, b"second", false).unwrap();
        // The spare holds the previous version, whole.
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(fs::read(spare_path(&p)).unwrap(), b"first version, longer");
        let inodes = |p: &Path| {
            let mut v = [
                fs::metadata(p).unwrap().ino(),
                fs::metadata(spare_path(p)).unwrap().ino(),
            ];
            v.sort_unstable();
            v
        };
        let before = inodes(&p);
        for i in 0..20 {
            replace_file(&p, format!("save {i}").as_bytes(), i % 2 == 0).unwrap();
            assert_eq!(fs::read(&p).unwrap(), format!("save {i}").as_bytes());
        }
        // Twenty saves, the same two files: nothing created, nothing deleted.
        assert_eq!(inodes(&p), before);
        // A shorter version after a longer one keeps nothing of the longer.
        replace_file(&p, b"x", false).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"x");
    }

    #[test]
    fn a_failed_save_leaves_the_file_as_it_was_and_no_spare() {
        let d = dir();
        let p = d.path().join("meta.json");
        replace_file(&p, b"kept", false).unwrap();
        replace_file(&p, b"kept too", false).unwrap();
        // The spare's name taken by a directory: opening it fails.
        fs::remove_file(spare_path(&p)).unwrap();
        fs::create_dir(spare_path(&p)).unwrap();
        assert!(replace_file(&p, b"lost", false).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"kept too");
    }

    #[test]
    fn a_symbolic_link_at_the_target_is_never_written_through() {
        let d = dir();
        let elsewhere = d.path().join("elsewhere");
        fs::write(&elsewhere, b"not ours").unwrap();
        let p = d.path().join("jobs.json");
        std::os::unix::fs::symlink(&elsewhere, &p).unwrap();
        // The first save swaps the link out to the spare's name; later saves
        // replace it with a file instead of writing where it points.
        for i in 0..3 {
            replace_file(&p, format!("save {i}").as_bytes(), i == 1).unwrap();
            assert_eq!(fs::read(&p).unwrap(), format!("save {i}").as_bytes());
        }
        assert_eq!(fs::read(&elsewhere).unwrap(), b"not ours");
        assert!(!fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
    }

    #[test]
    fn a_reader_falls_back_to_the_spare_when_the_file_does_not_parse() {
        let d = dir();
        let p = d.path().join("meta.json");
        let parse = |b: &[u8]| {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.strip_prefix("ok "))
                .map(str::to_string)
                .ok_or("not saved by this test")
        };
        assert_eq!(read_saved(&p, parse), None);
        replace_file(&p, b"ok one", false).unwrap();
        replace_file(&p, b"ok two", false).unwrap();
        assert_eq!(read_saved(&p, parse).as_deref(), Some("two"));
        // A save cut short by a power loss: the file holds a mix.
        fs::write(&p, b"garbage").unwrap();
        assert_eq!(read_saved(&p, parse).as_deref(), Some("one"));
        fs::remove_file(&p).unwrap();
        assert_eq!(read_saved(&p, parse).as_deref(), Some("one"));
        fs::write(spare_path(&p), b"garbage too").unwrap();
        assert_eq!(read_saved(&p, parse), None);
    }

    #[test]
    fn a_save_into_a_missing_directory_fails_and_creates_nothing() {
        let d = dir();
        let p = d.path().join("no/such/dir/jobs.json");
        let e = replace_file(&p, b"x", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!d.path().join("no").exists());
    }
}
