//! Reading a request for the lab origin: the path it names (the `Range` header is
//! read by [`crate::util::parse_range`], shared with the peer-copy server). A pure
//! function, so the rules are tested without a server.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// The request path as a path relative to the root and as a counter key
/// (`/a/b`), or `None` when it could name something outside the root: `.` or `..`
/// components (also percent-encoded), NUL bytes, or nothing at all.
pub(super) fn relative_path(uri_path: &str) -> Option<(PathBuf, String)> {
    let decoded: Vec<u8> = percent_decode_str(uri_path).collect();
    if decoded.contains(&0) {
        return None;
    }
    let mut rel = PathBuf::new();
    let mut key = String::new();
    for part in decoded.split(|b| *b == b'/') {
        match part {
            b"" => continue,
            b"." | b".." => return None,
            _ => {
                rel.push(OsStr::from_bytes(part));
                key.push('/');
                key.push_str(&String::from_utf8_lossy(part));
            }
        }
    }
    (!key.is_empty()).then_some((rel, key))
}
