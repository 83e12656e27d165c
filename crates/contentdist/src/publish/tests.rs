use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::manifest::Manifest;

const BS: u32 = 4096;

/// Deterministic contents with no repeating pattern (no two blocks alike).
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&[seed])
        .finalize_xof()
        .fill(&mut out);
    out
}

fn write(root: &Path, rel: &str, bytes: &[u8], mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A source tree with nested directories, an empty file, a file of exactly 3 blocks,
/// one of 3 blocks + 1 byte, an executable and an empty directory.
struct Fixture {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    out: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("origin");
    fs::create_dir_all(&src).unwrap();
    write(&src, "top.txt", b"hello\n", 0o644);
    write(&src, "empty", b"", 0o600);
    write(&src, "dir/sub/exact", &data(3 * BS as usize, 1), 0o644);
    write(&src, "dir/sub/plus1", &data(3 * BS as usize + 1, 2), 0o640);
    write(&src, "bin/run.sh", b"#!/bin/sh\necho hi\n", 0o750);
    write(&src, "dir-a", &data(10, 3), 0o644);
    fs::create_dir_all(src.join("dir/empty-dir")).unwrap();
    Fixture {
        _tmp: tmp,
        src,
        out,
    }
}

fn options(f: &Fixture) -> PublishOptions {
    PublishOptions {
        source_dir: f.src.clone(),
        content_id: "PKG00001".to_string(),
        version: 3,
        out_root: f.out.clone(),
        block_size: BS,
        force: false,
    }
}

fn read_manifest(dir: &Path) -> Manifest {
    Manifest::parse(&fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap()
}

/// Names in the content's id directory (to spot leftover temporary directories).
fn id_dir_names(f: &Fixture) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(f.out.join("PKG00001"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn published_tree_has_a_manifest_every_block_verifies_against() {
    let f = fixture();
    let report = publish(&options(&f)).unwrap();
    assert_eq!(report.dir, f.out.join("PKG00001").join("3"));
    let m = read_manifest(&report.dir);

    let paths: Vec<&str> = m.files.iter().map(|e| e.path.as_str()).collect();
    // Byte order of full paths: "dir-a" < "dir/..." because '-' < '/'.
    assert_eq!(
        paths,
        [
            "bin/run.sh",
            "dir-a",
            "dir/sub/exact",
            "dir/sub/plus1",
            "empty",
            "top.txt"
        ]
    );
    assert_eq!(
        (m.content_id.as_str(), m.version, m.block_size),
        ("PKG00001", 3, BS)
    );
    assert_eq!(report.files, 6);
    assert_eq!(report.blocks, m.block_count());
    assert_eq!(report.bytes, m.total_size());
    assert_eq!(report.content_hash, m.content_hash);

    let content = report.dir.join(CONTENT_DIR);
    for (i, entry) in m.files.iter().enumerate() {
        let published = fs::read(content.join(&entry.path)).unwrap();
        assert_eq!(
            published,
            fs::read(f.src.join(&entry.path)).unwrap(),
            "{}",
            entry.path
        );
        assert_eq!(published.len() as u64, entry.size);
        for index in m.file_blocks(i) {
            let b = m.block(index);
            let bytes = &published[b.offset as usize..][..b.len as usize];
            assert!(m.verify_block(index, bytes), "{} block {index}", entry.path);
        }
    }
    assert_eq!(m.blocks().count(), 3 + 4 + 1 + 1 + 1);
}

#[test]
fn block_counts_follow_sizes() {
    let f = fixture();
    let m = read_manifest(&publish(&options(&f)).unwrap().dir);
    let blocks = |p: &str| m.files[m.find_file(p).unwrap()].blocks.len();
    assert_eq!(blocks("dir/sub/exact"), 3);
    assert_eq!(blocks("dir/sub/plus1"), 4);
    assert_eq!(blocks("empty"), 0);
    assert_eq!(blocks("top.txt"), 1);
    let last = m.file_blocks(m.find_file("dir/sub/plus1").unwrap()).end - 1;
    assert_eq!(m.block(last).len, 1);
}

#[test]
fn executable_bit_is_kept_and_modes_are_normalised() {
    let f = fixture();
    let dir = publish(&options(&f)).unwrap().dir;
    let m = read_manifest(&dir);
    let mode = |p: &str| {
        fs::metadata(dir.join(CONTENT_DIR).join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for e in &m.files {
        assert_eq!(e.executable, e.path == "bin/run.sh", "{}", e.path);
    }
    assert_eq!(mode("bin/run.sh"), 0o755);
    assert_eq!(mode("empty"), 0o644);
    assert_eq!(mode("dir/sub/plus1"), 0o644);
}

#[test]
fn empty_directories_are_not_published() {
    let f = fixture();
    let dir = publish(&options(&f)).unwrap().dir;
    assert!(!dir.join(CONTENT_DIR).join("dir/empty-dir").exists());
}

#[test]
fn same_tree_gives_the_same_content_hash() {
    let f = fixture();
    let first = publish(&options(&f)).unwrap();
    let other = tempfile::tempdir().unwrap();
    let second = publish(&PublishOptions {
        out_root: other.path().to_path_buf(),
        ..options(&f)
    })
    .unwrap();
    assert_eq!(first.content_hash, second.content_hash);
}

#[test]
fn existing_version_without_force_fails_and_is_left_alone() {
    let f = fixture();
    let first = publish(&options(&f)).unwrap();
    write(&f.src, "top.txt", b"changed\n", 0o644);
    let err = publish(&options(&f)).unwrap_err();
    assert!(matches!(err, PublishError::VersionExists { .. }), "{err}");
    assert!(err.to_string().contains("already published"), "{err}");
    assert_eq!(err.code(), Code::PUBLISH_FAILED);
    assert_eq!(read_manifest(&first.dir).content_hash, first.content_hash);
    assert_eq!(id_dir_names(&f), ["3"]);
}

#[test]
fn force_replaces_an_existing_version() {
    let f = fixture();
    let first = publish(&options(&f)).unwrap();
    write(&f.src, "top.txt", b"changed\n", 0o644);
    let second = publish(&PublishOptions {
        force: true,
        ..options(&f)
    })
    .unwrap();
    assert_ne!(first.content_hash, second.content_hash);
    assert_eq!(read_manifest(&second.dir).content_hash, second.content_hash);
    let top = second.dir.join(CONTENT_DIR).join("top.txt");
    assert_eq!(fs::read(top).unwrap(), b"changed\n");
    assert_eq!(id_dir_names(&f), ["3"]);
}

#[test]
fn other_versions_sit_side_by_side() {
    let f = fixture();
    publish(&options(&f)).unwrap();
    publish(&PublishOptions {
        version: 4,
        ..options(&f)
    })
    .unwrap();
    assert_eq!(id_dir_names(&f), ["3", "4"]);
}

#[test]
fn symlink_in_source_fails_naming_it() {
    let f = fixture();
    std::os::unix::fs::symlink("top.txt", f.src.join("dir/link")).unwrap();
    let err = publish(&options(&f)).unwrap_err();
    assert!(
        matches!(&err, PublishError::NotRegularFile { path, kind: "symbolic link" }
            if path.ends_with("dir/link")),
        "{err}"
    );
    assert!(err.to_string().contains("plain files"), "{err}");
    assert!(!f.out.join("PKG00001").exists(), "nothing written");
}

#[test]
fn fifo_in_source_fails() {
    let f = fixture();
    let fifo = f.src.join("pipe");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let err = publish(&options(&f)).unwrap_err();
    assert!(
        matches!(&err, PublishError::NotRegularFile { path, .. } if *path == fifo),
        "{err}"
    );
}

#[test]
fn bad_content_id_fails_with_invalid_package_path() {
    let f = fixture();
    for id in ["", "..", "a/b", "PKG 1"] {
        let err = publish(&PublishOptions {
            content_id: id.to_string(),
            ..options(&f)
        })
        .unwrap_err();
        assert!(
            matches!(err, PublishError::InvalidContentId { .. }),
            "{err}"
        );
        assert_eq!(err.code(), Code::INVALID_PACKAGE_PATH);
    }
    assert!(!f.out.exists());
}

#[test]
fn backslash_and_non_utf8_names_fail_naming_them() {
    let f = fixture();
    write(&f.src, "dir/a\\b", b"x", 0o644);
    let err = publish(&options(&f)).unwrap_err();
    assert!(
        matches!(&err, PublishError::UnsafeName { path, .. } if path.ends_with("a\\b")),
        "{err}"
    );
    assert_eq!(err.code(), Code::INVALID_PACKAGE_PATH);
    fs::remove_file(f.src.join("dir/a\\b")).unwrap();

    let bad = f.src.join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
    fs::write(&bad, b"x").unwrap();
    let err = publish(&options(&f)).unwrap_err();
    assert!(
        matches!(&err, PublishError::NonUtf8Name { path } if *path == bad),
        "{err}"
    );
    assert_eq!(err.code(), Code::INVALID_PACKAGE_PATH);
}

#[test]
fn empty_source_publishes_an_empty_manifest() {
    let f = fixture();
    let empty = f.src.parent().unwrap().join("nothing");
    fs::create_dir(&empty).unwrap();
    let report = publish(&PublishOptions {
        source_dir: empty,
        ..options(&f)
    })
    .unwrap();
    assert_eq!((report.files, report.bytes, report.blocks), (0, 0, 0));
    assert!(read_manifest(&report.dir).files.is_empty());
    assert!(report.dir.join(CONTENT_DIR).is_dir());
}

#[test]
fn output_inside_source_is_refused() {
    let f = fixture();
    let err = publish(&PublishOptions {
        out_root: f.src.join("origin"),
        ..options(&f)
    })
    .unwrap_err();
    assert!(matches!(err, PublishError::Overlap { .. }), "{err}");
    assert!(!f.src.join("origin/PKG00001").exists());
}

#[test]
fn missing_source_and_bad_block_size_are_refused() {
    let f = fixture();
    let err = publish(&PublishOptions {
        source_dir: f.src.join("top.txt"),
        ..options(&f)
    })
    .unwrap_err();
    assert!(
        matches!(err, PublishError::SourceNotDirectory { .. }),
        "{err}"
    );
    let err = publish(&PublishOptions {
        source_dir: f.src.join("missing"),
        ..options(&f)
    })
    .unwrap_err();
    assert!(matches!(err, PublishError::Io { .. }), "{err}");
    let err = publish(&PublishOptions {
        block_size: 1000,
        ..options(&f)
    })
    .unwrap_err();
    assert!(
        matches!(err, PublishError::InvalidBlockSize { .. }),
        "{err}"
    );
}

#[test]
fn version_appearing_during_publish_is_not_overwritten() {
    // The race the final RENAME_NOREPLACE guards: the version directory appears (here
    // empty, which a plain rename(2) would silently replace) after the first check.
    let tmp = tempfile::tempdir().unwrap();
    let staged = install::TempDir::create(tmp.path(), 7).unwrap();
    let staged_path = staged.path().to_path_buf();
    fs::write(staged_path.join("new"), b"new").unwrap();
    let final_dir = tmp.path().join("7");
    fs::create_dir(&final_dir).unwrap();

    let err = install::install(staged, &final_dir, false, || PublishError::Overlap {
        source_dir: PathBuf::new(),
        out_dir: PathBuf::new(),
    })
    .unwrap_err();
    assert!(
        matches!(err, PublishError::Overlap { .. }),
        "the `exists` error"
    );
    assert!(!staged_path.exists(), "temporary directory removed");
    assert!(!final_dir.join("new").exists());
}

#[test]
fn forced_install_swaps_and_removes_the_old_version() {
    let tmp = tempfile::tempdir().unwrap();
    let final_dir = tmp.path().join("7");
    fs::create_dir(&final_dir).unwrap();
    fs::write(final_dir.join("old"), b"old").unwrap();
    let staged = install::TempDir::create(tmp.path(), 7).unwrap();
    fs::write(staged.path().join("new"), b"new").unwrap();

    install::install(staged, &final_dir, true, || unreachable!()).unwrap();
    assert!(final_dir.join("new").exists());
    assert!(!final_dir.join("old").exists());
    let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no leftovers: {names:?}");
}
