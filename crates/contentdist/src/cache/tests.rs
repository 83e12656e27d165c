use std::fs;
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::manifest::{hash_block, FileEntry, Manifest};

const BS: usize = 4096;

/// A manifest for in-memory files, built the way `publish` would.
fn manifest(files: &[(&str, &[u8])]) -> Manifest {
    manifest_for("PKG1", files)
}

fn manifest_for(id: &str, files: &[(&str, &[u8])]) -> Manifest {
    let entries = files
        .iter()
        .map(|(path, data)| {
            FileEntry::new(
                *path,
                data.len() as u64,
                false,
                data.chunks(BS).map(hash_block).collect(),
            )
        })
        .collect();
    Manifest::build(id, 3, BS as u32, entries).unwrap()
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn fill(entry: &ContentEntry, files: &[(&str, &[u8])], blocks: impl Iterator<Item = usize>) {
    let m = entry.manifest().clone();
    for i in blocks {
        let b = m.block(i);
        let d = files[b.file].1;
        let chunk = &d[b.offset as usize..b.offset as usize + b.len as usize];
        assert!(entry.put_block(i, chunk).unwrap());
    }
}

#[test]
fn a_block_that_does_not_verify_is_refused_and_never_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let a = data(3 * BS + 10, 1);
    let files = [("a.bin", &a[..])];
    let e = cache.get_or_create(manifest(&files), 5).unwrap();
    let mut wrong = a[..BS].to_vec();
    wrong[7] ^= 1;
    assert!(!e.put_block(0, &wrong).unwrap());
    assert!(!e.has_block(0));
    assert_eq!(e.read_block(0).unwrap(), None);
    // The right bytes with one extra byte are refused too.
    let mut long = a[3 * BS..].to_vec();
    long.push(0);
    assert!(!e.put_block(3, &long).unwrap());
    fill(&e, &files, 0..1);
    assert_eq!(e.read_block(0).unwrap().unwrap(), a[..BS].to_vec());
    assert_eq!(e.verified_bytes(), BS as u64);
}

#[test]
fn blocks_written_but_not_recorded_before_a_crash_are_recovered_not_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let a = data(4 * BS, 2);
    let b = data(BS / 2, 3);
    let files = [("x/a.bin", &a[..]), ("b.bin", &b[..])];
    {
        let cache = Cache::open(dir.path()).unwrap();
        let e = cache.get_or_create(manifest(&files), 5).unwrap();
        // Blocks 0 and 2 land; no flush: the agent "dies" before recording them.
        fill(&e, &files, [0, 2].into_iter());
    }
    // A damaged, unrecorded block must not be picked up by recovery.
    let f = dir.path().join("content/PKG1/3/data/x/a.bin");
    let mut bytes = fs::read(&f).unwrap();
    bytes[2 * BS + 5] ^= 0xff;
    fs::write(&f, bytes).unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let e = cache
        .get(&ContentKey::new("PKG1", 3).unwrap())
        .unwrap()
        .unwrap();
    assert!(e.has_block(0));
    assert!(!e.has_block(1));
    assert!(!e.has_block(2), "a block whose bytes changed is not marked");
    assert_eq!(e.verified_bytes(), BS as u64);
    fill(&e, &files, [1, 2, 3, 4].into_iter());
    assert!(e.is_complete());
    assert!(e.meta().complete);
}

#[test]
fn a_complete_entry_survives_reopen_and_reverify_catches_changed_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = data(2 * BS, 4);
    let files = [("a.bin", &a[..])];
    {
        let cache = Cache::open(dir.path()).unwrap();
        let e = cache.get_or_create(manifest(&files), 5).unwrap();
        fill(&e, &files, 0..2);
        assert!(e.is_complete());
    }
    let cache = Cache::open(dir.path()).unwrap();
    let e = cache
        .get(&ContentKey::new("PKG1", 3).unwrap())
        .unwrap()
        .unwrap();
    assert!(e.is_complete());
    assert_eq!(e.reverify().unwrap(), 0);
    let f = e.data_dir().join("a.bin");
    let mut bytes = fs::read(&f).unwrap();
    bytes[BS + 1] ^= 1;
    fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fs::write(&f, bytes).unwrap();
    assert_eq!(e.reverify().unwrap(), 1);
    assert!(!e.is_complete());
    assert!(e.has_block(0) && !e.has_block(1));
}

#[test]
fn delivery_hard_links_every_file_and_replaces_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let a = data(BS + 1, 5);
    let files = [("d/e/a.bin", &a[..]), ("empty", &b""[..])];
    let e = cache.get_or_create(manifest(&files), 5).unwrap();
    fill(&e, &files, 0..2);
    let dest = dir.path().join("dest");
    fs::create_dir_all(dest.join("d/e")).unwrap();
    fs::write(dest.join("d/e/a.bin"), b"old").unwrap();
    let r = deliver(&e, &dest).unwrap();
    assert_eq!(r.linked, 2);
    assert_eq!(fs::read(dest.join("d/e/a.bin")).unwrap(), a);
    assert_eq!(fs::read(dest.join("empty")).unwrap(), b"");
    let ino = fs::metadata(e.data_dir().join("d/e/a.bin")).unwrap().ino();
    assert_eq!(fs::metadata(dest.join("d/e/a.bin")).unwrap().ino(), ino);
}

/// Every name under `dir`, recursively, relative to it.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(names(&e.path()).into_iter().map(|n| format!("{name}/{n}")));
        }
        out.push(name);
    }
    out.sort();
    out
}

#[test]
fn delivering_the_same_content_twice_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let a = data(BS + 1, 6);
    let files = [("d/a.bin", &a[..]), ("b", &b"bee"[..])];
    let e = cache.get_or_create(manifest(&files), 5).unwrap();
    fill(&e, &files, 0..3);
    let dest = dir.path().join("dest");
    deliver(&e, &dest).unwrap();
    let r = deliver(&e, &dest).unwrap();
    assert_eq!(r.linked, 2);
    assert_eq!(names(&dest), ["b", "d", "d/a.bin"]);
    assert_eq!(fs::read(dest.join("d/a.bin")).unwrap(), a);
}

#[test]
fn clean_up_evicts_low_priority_first_and_never_an_entry_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let mk = |id: &str, prio: u8| {
        let d = data(BS, prio);
        let m = manifest_for(id, &[("f", &d[..])]);
        let e = cache.get_or_create(m, prio).unwrap();
        assert!(e.put_block(0, &d).unwrap());
        e
    };
    let low = mk("LOW", 1);
    let _mid = mk("MID", 5);
    let high = mk("HIGH", 9);
    let lease = low.lease();
    // Room for one entry only: LOW is in use, so MID goes, then HIGH stays over limit
    // only if nothing else can go.
    let policy = CleanPolicy {
        max_size_bytes: 2 * BS as u64,
        ..CleanPolicy::default()
    };
    let r = cache.clean(policy, 0).unwrap();
    assert_eq!(r.removed.len(), 1, "{r:?}");
    assert!(r.removed[0].starts_with("MID/3"), "{r:?}");
    assert!(cache
        .get(&ContentKey::new("LOW", 3).unwrap())
        .unwrap()
        .is_some());
    drop(lease);
    let r = cache.clean(policy, BS as u64).unwrap();
    assert!(r.removed[0].starts_with("LOW/3"), "{r:?}");
    assert!(cache
        .get(&ContentKey::new("HIGH", 3).unwrap())
        .unwrap()
        .is_some());
    drop(high);
}

#[test]
fn age_limit_removes_entries_unused_for_that_many_days() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let d = data(BS, 9);
    let e = cache.get_or_create(manifest(&[("f", &d[..])]), 5).unwrap();
    e.update_meta(|m| m.last_used_unix = now_unix() - 3 * 86_400)
        .unwrap();
    drop(e);
    let keep = CleanPolicy {
        max_days: 4,
        ..CleanPolicy::default()
    };
    assert!(cache.clean(keep, 0).unwrap().removed.is_empty());
    let drop_it = CleanPolicy {
        max_days: 3,
        ..CleanPolicy::default()
    };
    assert_eq!(cache.clean(drop_it, 0).unwrap().removed.len(), 1);
    assert!(cache.keys().is_empty());
}

#[test]
fn delivery_refuses_a_symlinked_directory_inside_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let files = [("a/x", &b"payload"[..])];
    let e = cache.get_or_create(manifest(&files), 5).unwrap();
    fill(&e, &files, 0..1);
    let dest = dir.path().join("D");
    let elsewhere = dir.path().join("O");
    fs::create_dir_all(&dest).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dest.join("a")).unwrap();
    let err = deliver(&e, &dest).unwrap_err();
    assert_eq!(err.path, dest.join("a"));
    assert!(err.to_string().contains("symbolic link"), "{err}");
    // Nothing was written through the link.
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    // A link in place of a file is replaced, not written through.
    fs::remove_file(dest.join("a")).unwrap();
    fs::create_dir_all(dest.join("a")).unwrap();
    let target = elsewhere.join("victim");
    fs::write(&target, b"keep").unwrap();
    std::os::unix::fs::symlink(&target, dest.join("a/x")).unwrap();
    deliver(&e, &dest).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"keep");
    assert_eq!(fs::read(dest.join("a/x")).unwrap(), b"payload");
    assert!(!fs::symlink_metadata(dest.join("a/x"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_complete_file_is_trusted_by_its_stamp_until_a_write_and_across_delivery_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let a = data(3 * BS, 6);
    let files = [("a.bin", &a[..])];
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let e = cache.get_or_create(manifest(&files), 5).unwrap();
    fill(&e, &files, 0..2);
    // Not complete: no stamp, every block is hashed when served.
    assert!(!e.unchanged_since_verified(0));
    fill(&e, &files, 2..3);
    e.flush().unwrap();
    assert!(e.is_complete());
    assert!(e.unchanged_since_verified(0));
    // A delivery by hard link moves ctime; the stamp follows, nothing else moved.
    let dest = dir.path().join("dest");
    deliver(&e, &dest).unwrap();
    assert!(e.unchanged_since_verified(0));
    // Across a restart of the cache (the stamps are in the entry's metadata).
    drop(e);
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let e = cache
        .get(&ContentKey::new("PKG1", 3).unwrap())
        .unwrap()
        .unwrap();
    assert!(e.unchanged_since_verified(0));
    // A write through the delivered hard link (its owner made it writable):
    // no longer trusted, even with the same size and the bytes put back.
    let delivered = dest.join("a.bin");
    fs::set_permissions(
        &delivered,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let f = fs::OpenOptions::new().write(true).open(&delivered).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &a[..10], 0).unwrap();
    drop(f);
    assert!(!e.unchanged_since_verified(0));
    // A reverification that finds every block intact stamps it again.
    assert_eq!(e.reverify().unwrap(), 0);
    assert!(e.unchanged_since_verified(0));
}
