//! Validation of content ids, file paths and whole manifests.

use std::collections::HashSet;

use super::{Manifest, ManifestError, FORMAT, HASH_ALGORITHM, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};

/// Longest content id accepted.
const MAX_ID_LEN: usize = 64;
/// Longest path accepted, in bytes (Linux `PATH_MAX`, minus nothing: the cache and
/// destination prefixes are checked by the file system itself).
const MAX_PATH_LEN: usize = 4096;
/// Longest path component, in bytes (Linux `NAME_MAX`).
const MAX_COMPONENT_LEN: usize = 255;

/// Check a content id: 1 to 64 characters of `[A-Za-z0-9._-]`, and not `.` or `..`.
///
/// The id becomes a directory name on the origin, in every cache and in URLs, so it is
/// kept to characters that need no escaping anywhere. Error code `INVALID_PACKAGE_PATH`.
pub fn validate_content_id(id: &str) -> Result<(), ManifestError> {
    let bad = |reason| {
        Err(ManifestError::InvalidContentId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("it is longer than 64 characters");
    }
    if id == "." || id == ".." {
        return bad("it is a relative directory name");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Check a file path from a manifest: relative, `/`-separated, no empty, `.` or `..`
/// component, no leading or trailing `/`, no backslash, no NUL or other control
/// character, components of at most 255 bytes and at most 4096 bytes in all.
///
/// A path that passes cannot leave the directory it is joined under by its text alone
/// (symlinks already on disk are the caller's concern). Control
/// characters are refused because paths end up in logs, terminals and URLs. Backslash is
/// refused because it is a separator to Windows tools and SMB. Error code
/// `INVALID_PACKAGE_PATH`.
pub fn validate_path(path: &str) -> Result<(), ManifestError> {
    let bad = |reason| {
        Err(ManifestError::InvalidPath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("it is empty");
    }
    if path.len() > MAX_PATH_LEN {
        return bad("it is longer than 4096 bytes");
    }
    if path.starts_with('/') {
        return bad("it is absolute");
    }
    if path.contains('\\') {
        return bad("it contains a backslash");
    }
    if path.contains('\0') {
        return bad("it contains a NUL character");
    }
    if path.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    for component in path.split('/') {
        match component {
            "" => return bad("it has an empty component ('//' or a trailing '/')"),
            "." => return bad("it has a '.' component"),
            ".." => return bad("it has a '..' component"),
            c if c.len() > MAX_COMPONENT_LEN => {
                return bad("it has a component longer than 255 bytes")
            }
            _ => {}
        }
    }
    Ok(())
}

/// Validate everything but the content hash, and compute every `first_block`.
pub(super) fn check(m: &mut Manifest) -> Result<(), ManifestError> {
    if m.format != FORMAT {
        return Err(ManifestError::UnsupportedFormat { found: m.format });
    }
    if m.hash_algorithm != HASH_ALGORITHM {
        return Err(ManifestError::UnknownHashAlgorithm {
            found: m.hash_algorithm.clone(),
        });
    }
    validate_content_id(&m.content_id)?;
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&m.block_size) {
        return Err(ManifestError::InvalidBlockSize {
            found: m.block_size,
        });
    }
    let block_size = u64::from(m.block_size);
    let mut total: u64 = 0;
    let mut next_block: usize = 0;
    for f in &mut m.files {
        validate_path(&f.path)?;
        let expected = f.size.div_ceil(block_size);
        if expected != f.blocks.len() as u64 {
            return Err(ManifestError::BlockCount {
                path: f.path.clone(),
                size: f.size,
                block_size: m.block_size,
                expected,
                found: f.blocks.len(),
            });
        }
        total = total.checked_add(f.size).ok_or(ManifestError::TooLarge)?;
        f.first_block = next_block;
        // Cannot overflow: every block hash is held in memory.
        next_block += f.blocks.len();
    }
    check_unique(m)
}

/// Every path unique, and none is also a directory of another (`a` and `a/b`): such a
/// tree cannot be written to a file system.
fn check_unique(m: &Manifest) -> Result<(), ManifestError> {
    let mut paths: HashSet<&str> = HashSet::with_capacity(m.files.len());
    for f in &m.files {
        if !paths.insert(&f.path) {
            return Err(ManifestError::DuplicatePath {
                path: f.path.clone(),
            });
        }
    }
    for f in &m.files {
        for (i, _) in f.path.match_indices('/') {
            let dir = &f.path[..i];
            if paths.contains(dir) {
                return Err(ManifestError::PathConflict {
                    file: dir.to_string(),
                    other: f.path.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Whether `text` is 64 lower-case hex digits: the only spelling written, so that
/// content hashes can be compared as strings.
pub(super) fn is_hash_text(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Check the declared content hash's spelling.
pub(super) fn check_hash_text(text: &str) -> Result<(), ManifestError> {
    if is_hash_text(text) {
        Ok(())
    } else {
        Err(ManifestError::InvalidContentHash {
            found: text.to_string(),
        })
    }
}
