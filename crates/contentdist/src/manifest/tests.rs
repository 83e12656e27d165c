use super::*;
use crate::codes::Code;

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

fn entry(path: &str, contents: &[u8], executable: bool) -> FileEntry {
    let blocks = contents.chunks(BS as usize).map(hash_block).collect();
    FileEntry::new(path, contents.len() as u64, executable, blocks)
}

/// Files: "a.txt" 3 blocks (last short), "empty" none, "dir/b" exactly 1 block,
/// "dir/c" 2 blocks + 1 byte, "z-empty" none (last file empty).
fn contents() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.txt", data(10_000, 1)),
        ("empty", Vec::new()),
        ("dir/b", data(4096, 2)),
        ("dir/c", data(8193, 3)),
        ("z-empty", Vec::new()),
    ]
}

fn sample() -> Manifest {
    let files = contents()
        .iter()
        .map(|(p, d)| entry(p, d, *p == "dir/b"))
        .collect();
    Manifest::build("PKG00001", 3, BS, files).expect("valid sample")
}

/// Recompute the content hash after a change, so that the check under test (not the
/// hash check) is what refuses the document.
fn reseal(mut m: Manifest) -> Vec<u8> {
    m.content_hash = m.compute_content_hash();
    m.to_json()
}

fn parse_err(bytes: &[u8]) -> ManifestError {
    Manifest::parse(bytes).expect_err("document must be refused")
}

#[test]
fn round_trip_through_json_gives_the_same_manifest() {
    let m = sample();
    let parsed = Manifest::parse(&m.to_json()).unwrap();
    assert_eq!(parsed, m);
    assert_eq!(parsed.to_json(), m.to_json());
}

#[test]
fn json_formatting_does_not_change_the_content_hash() {
    let m = sample();
    let value: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
    let compact = serde_json::to_vec(&value).unwrap();
    assert_ne!(compact, m.to_json());
    assert_eq!(
        Manifest::parse(&compact).unwrap().content_hash,
        m.content_hash
    );
}

#[test]
fn content_hash_is_lower_case_hex_of_64_digits() {
    let h = sample().content_hash;
    assert_eq!(h.len(), 64);
    assert!(h
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

#[test]
fn every_field_changes_the_content_hash() {
    let m = sample();
    let base = m.compute_content_hash();
    let changes: [fn(&mut Manifest); 10] = [
        |m| m.content_id.push('x'),
        |m| m.version += 1,
        |m| m.block_size *= 2,
        |m| m.hash_algorithm.push('x'),
        |m| m.files[0].path.push('x'),
        |m| m.files[0].size += 1,
        |m| m.files[0].executable ^= true,
        |m| m.files[0].blocks[1][0] ^= 1,
        |m| m.files.swap(0, 2),
        |m| {
            m.files.pop();
        },
    ];
    for (i, change) in changes.iter().enumerate() {
        let mut changed = m.clone();
        change(&mut changed);
        assert_ne!(changed.compute_content_hash(), base, "change {i}");
    }
}

#[test]
fn tampered_block_hash_is_refused_as_content_hash_mismatch() {
    let mut m = sample();
    m.files[3].blocks[0][5] ^= 0x40;
    let err = parse_err(&m.to_json());
    assert!(
        matches!(err, ManifestError::ContentHashMismatch { .. }),
        "{err}"
    );
    assert_eq!(err.code(), Code::MANIFEST_INVALID);
}

#[test]
fn tampered_content_hash_is_refused() {
    let mut m = sample();
    m.content_hash = format!("{:0>64}", "1");
    let err = parse_err(&m.to_json());
    assert!(
        matches!(err, ManifestError::ContentHashMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("content_hash"), "{err}");
}

#[test]
fn upper_case_content_hash_is_refused() {
    let mut m = sample();
    m.content_hash = m.content_hash.to_uppercase();
    let err = parse_err(&m.to_json());
    assert!(
        matches!(err, ManifestError::InvalidContentHash { .. }),
        "{err}"
    );
}

#[test]
fn unsafe_paths_are_refused_with_invalid_package_path() {
    for bad in [
        "../x", "a/../x", "..", "/abs", "a//b", "a/", "./a", "a/./b", "", "a\\b", "a\0b", "a\nb",
    ] {
        let mut m = sample();
        m.files[0].path = bad.to_string();
        let err = parse_err(&reseal(m));
        assert!(
            matches!(&err, ManifestError::InvalidPath { path, .. } if path == bad),
            "{bad:?}: {err}"
        );
        assert_eq!(err.code(), Code::INVALID_PACKAGE_PATH);
    }
}

#[test]
fn long_components_and_paths_are_refused() {
    let long_component = "x".repeat(256);
    assert!(validate_path(&"x".repeat(255)).is_ok());
    assert!(validate_path(&long_component).is_err());
    let long_path = vec!["abcdefg"; 600].join("/");
    assert!(validate_path(&long_path).is_err());
}

#[test]
fn ordinary_paths_are_accepted() {
    for good in [
        "a",
        "a/b/c.txt",
        ".hidden",
        "a/..b",
        "dir with space/é.bin",
        "a-b_c.d",
    ] {
        validate_path(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
}

#[test]
fn duplicate_path_is_refused() {
    let mut m = sample();
    m.files[2].path = "a.txt".to_string();
    let err = parse_err(&reseal(m));
    assert!(
        matches!(&err, ManifestError::DuplicatePath { path } if path == "a.txt"),
        "{err}"
    );
}

#[test]
fn file_that_is_also_a_directory_is_refused() {
    let mut m = sample();
    m.files[0].path = "dir".to_string();
    let err = parse_err(&reseal(m));
    assert!(
        matches!(&err, ManifestError::PathConflict { file, .. } if file == "dir"),
        "{err}"
    );
    assert!(err.to_string().contains("dir/"), "{err}");
}

#[test]
fn wrong_block_count_is_refused_naming_the_file() {
    for (file, change) in [(0usize, 1i64), (0, -1), (1, 1), (2, 1)] {
        let mut m = sample();
        if change > 0 {
            m.files[file].blocks.push([0; 32]);
        } else {
            m.files[file].blocks.pop();
        }
        let path = m.files[file].path.clone();
        let err = parse_err(&reseal(m));
        assert!(
            matches!(&err, ManifestError::BlockCount { path: p, .. } if *p == path),
            "{err}"
        );
        assert!(err.to_string().contains(&path), "{err}");
    }
}

#[test]
fn size_without_blocks_is_refused() {
    let mut m = sample();
    m.files[1].size = 1;
    assert!(matches!(
        parse_err(&reseal(m)),
        ManifestError::BlockCount {
            expected: 1,
            found: 0,
            ..
        }
    ));
}

#[test]
fn unknown_hash_algorithm_is_refused() {
    let mut m = sample();
    m.hash_algorithm = "sha256".to_string();
    let err = parse_err(&reseal(m));
    assert!(
        matches!(err, ManifestError::UnknownHashAlgorithm { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("hash_algorithm"), "{err}");
}

#[test]
fn other_format_is_refused_even_with_new_fields() {
    let mut m = sample();
    m.format = 2;
    let err = parse_err(&reseal(m.clone()));
    assert!(
        matches!(err, ManifestError::UnsupportedFormat { found: 2 }),
        "{err}"
    );

    let mut value: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
    value["signature"] = serde_json::json!("future field");
    let err = parse_err(&serde_json::to_vec(&value).unwrap());
    assert!(
        matches!(err, ManifestError::UnsupportedFormat { found: 2 }),
        "{err}"
    );
}

#[test]
fn block_size_out_of_range_is_refused() {
    for bs in [0, 4095, MAX_BLOCK_SIZE + 1] {
        let err = Manifest::build("P", 1, bs, Vec::new()).unwrap_err();
        assert!(
            matches!(err, ManifestError::InvalidBlockSize { .. }),
            "{bs}: {err}"
        );
    }
    assert!(Manifest::build("P", 1, MIN_BLOCK_SIZE, Vec::new()).is_ok());
    assert!(Manifest::build("P", 1, MAX_BLOCK_SIZE, Vec::new()).is_ok());
}

#[test]
fn garbage_json_is_refused_as_invalid_manifest() {
    for garbage in [
        &b""[..],
        b"not json",
        b"{}",
        b"[1,2]",
        b"{\"format\":1}",
        b"\xff\xfe",
    ] {
        let err = parse_err(garbage);
        assert!(matches!(err, ManifestError::Json { .. }), "{err}");
        assert_eq!(err.code(), Code::MANIFEST_INVALID);
    }
}

#[test]
fn unknown_field_is_refused() {
    let m = sample();
    let mut value: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
    value["files"][0]["mode"] = serde_json::json!(420);
    let err = parse_err(&serde_json::to_vec(&value).unwrap());
    assert!(err.to_string().contains("mode"), "{err}");
}

#[test]
fn malformed_block_hash_is_refused_naming_file_and_block() {
    let m = sample();
    let mut value: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
    let upper = value["files"][3]["blocks"][1]
        .as_str()
        .unwrap()
        .to_uppercase();
    value["files"][3]["blocks"][1] = serde_json::json!(upper);
    let err = parse_err(&serde_json::to_vec(&value).unwrap());
    assert!(
        matches!(&err, ManifestError::InvalidBlockHash { path, block: 1, .. } if path == "dir/c"),
        "{err}"
    );
}

#[test]
fn content_ids_are_checked() {
    for good in ["PKG00001", "a", "a.b-c_d", &"x".repeat(64), "..."] {
        validate_content_id(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
    for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(65), "a\\b"] {
        let err = validate_content_id(bad).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_PACKAGE_PATH, "{bad:?}");
    }
    let mut m = sample();
    m.content_id = "../etc".to_string();
    assert!(matches!(
        parse_err(&reseal(m)),
        ManifestError::InvalidContentId { .. }
    ));
}

#[test]
fn global_block_indices_run_across_files_and_skip_empty_ones() {
    let m = sample();
    // a.txt: 0..3, empty: 3..3, dir/b: 3..4, dir/c: 4..7, z-empty: 7..7
    let ranges: Vec<_> = (0..m.files.len()).map(|f| m.file_blocks(f)).collect();
    assert_eq!(ranges, vec![0..3, 3..3, 3..4, 4..7, 7..7]);
    assert_eq!(m.block_count(), 7);
    assert_eq!(m.total_size(), 10_000 + 4096 + 8193);

    let expected = [
        (0, 0, 4096),
        (0, 4096, 4096),
        (0, 8192, 1808),
        (2, 0, 4096),
        (3, 0, 4096),
        (3, 4096, 4096),
        (3, 8192, 1),
    ];
    for (index, &(file, offset, len)) in expected.iter().enumerate() {
        let b = m.block(index);
        assert_eq!(
            (b.index, b.file, b.offset, b.len),
            (index, file, offset, len)
        );
        assert_eq!(b.hash, m.files[file].blocks[(offset / 4096) as usize]);
    }
    let all: Vec<BlockRef> = m.blocks().collect();
    let by_index: Vec<BlockRef> = (0..m.block_count()).map(|i| m.block(i)).collect();
    assert_eq!(all, by_index);
    assert_eq!(m.try_block(7), None);
}

#[test]
#[should_panic(expected = "out of range")]
fn block_out_of_range_panics() {
    sample().block(7);
}

#[test]
fn verify_block_checks_length_and_hash() {
    let m = sample();
    let files = contents();
    for b in m.blocks() {
        let file = &files[b.file].1;
        let block = &file[b.offset as usize..][..b.len as usize];
        assert!(m.verify_block(b.index, block), "block {}", b.index);

        let mut flipped = block.to_vec();
        flipped[0] ^= 1;
        assert!(!m.verify_block(b.index, &flipped), "flipped {}", b.index);
        assert!(!m.verify_block(b.index, &block[..block.len() - 1]));
        let mut longer = block.to_vec();
        longer.push(0);
        assert!(!m.verify_block(b.index, &longer));
    }
    // Right bytes, wrong index; and an index past the end.
    assert!(!m.verify_block(1, &files[0].1[..4096]));
    assert!(!m.verify_block(7, b""));
    assert!(!m.verify_block(usize::MAX, b""));
}

#[test]
fn manifest_without_files_is_valid() {
    let m = Manifest::build("EMPTY", 1, DEFAULT_BLOCK_SIZE, Vec::new()).unwrap();
    let parsed = Manifest::parse(&m.to_json()).unwrap();
    assert_eq!(parsed.block_count(), 0);
    assert_eq!(parsed.blocks().count(), 0);
    assert_eq!(parsed.try_block(0), None);
}

#[test]
fn find_file_returns_the_index() {
    let m = sample();
    assert_eq!(m.find_file("dir/c"), Some(3));
    assert_eq!(m.find_file("dir"), None);
}

#[test]
fn check_is_names_what_differs_from_the_content_asked_for() {
    let m = sample();
    let (id, v, h) = (m.content_id.clone(), m.version, m.content_hash.clone());
    assert_eq!(m.check_is(&id, v, None), Ok(()));
    assert_eq!(m.check_is(&id, v, Some(&h.to_uppercase())), Ok(()));
    let other = m.check_is("OTHER", v, None).unwrap_err();
    assert!(other.contains("OTHER") && other.contains(&id), "{other}");
    assert!(m
        .check_is(&id, v + 1, None)
        .unwrap_err()
        .contains(&(v + 1).to_string()));
    let wrong = "0".repeat(64);
    let e = m.check_is(&id, v, Some(&wrong)).unwrap_err();
    assert!(e.contains(&wrong) && e.contains(&h), "{e}");
}
