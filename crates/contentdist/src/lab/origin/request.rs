//! Reading a request for the lab origin: the path it names and its `Range` header.
//! Pure functions, so the rules are tested without a server.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use http::HeaderValue;
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

/// A `Range` header as this server applies it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Span {
    /// No range, or one ignored (malformed, several ranges): the whole file.
    Full,
    /// Bytes `a..=b`.
    Part(u64, u64),
    /// Nothing of the file is in the range.
    Unsatisfiable,
}

pub(super) fn parse_range(value: Option<&HeaderValue>, size: u64) -> Span {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Span::Full;
    };
    let Some((a, b)) = spec.trim().split_once('-').filter(|_| !spec.contains(',')) else {
        return Span::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let digits = !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        digits.then(|| s.parse().ok()).flatten()
    };
    match (num(a), num(b)) {
        (None, Some(n)) if a.is_empty() => match n.min(size) {
            0 => Span::Unsatisfiable,
            n => Span::Part(size - n, size - 1),
        },
        (Some(s), None) if b.is_empty() => match s < size {
            true => Span::Part(s, size - 1),
            false => Span::Unsatisfiable,
        },
        (Some(s), Some(e)) if s <= e => match s < size {
            true => Span::Part(s, e.min(size - 1)),
            false => Span::Unsatisfiable,
        },
        _ => Span::Full,
    }
}
