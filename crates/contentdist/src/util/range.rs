//! The one `Range` header parser of our HTTP servers (the peer-copy server and the
//! lab origin): a single byte range as RFC 9110 defines it, everything else ignored.

use http::HeaderValue;

/// A `Range` header as our servers apply it to a representation of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No range, or one the server ignores (malformed, backwards, several ranges,
    /// another unit): answer with the whole representation (200).
    Full,
    /// Bytes `start..=end`, both inside the representation (206).
    Part {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// A range that selects nothing: it starts past the end, or asks for the last
    /// 0 bytes, or the representation is empty (416).
    Unsatisfiable,
}

/// Read `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` against `size` bytes.
///
/// Ignoring what is not understood, rather than refusing it, is what RFC 9110 asks of
/// a server, and what clients rely on: the whole file is always a correct answer.
pub fn parse_range(value: Option<&HeaderValue>, size: u64) -> ByteRange {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    // Digits only: `u64::from_str` would also take a leading `+`.
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (num(a), num(b)) {
        // `-n`: the last n bytes.
        (None, Some(n)) if a.is_empty() => match n.min(size) {
            0 => ByteRange::Unsatisfiable,
            n => ByteRange::Part {
                start: size - n,
                end: size - 1,
            },
        },
        // `a-` and `a-b` (b past the end is cut to the end).
        (Some(start), end) if b.is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return ByteRange::Full;
            }
            if start >= size {
                return ByteRange::Unsatisfiable;
            }
            ByteRange::Part {
                start,
                end: end.map_or(size - 1, |e| e.min(size - 1)),
            }
        }
        _ => ByteRange::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn ranges_follow_rfc_9110_for_single_ranges() {
        let p = |s: &str, size| parse_range(Some(&hv(s)), size);
        assert_eq!(p("bytes=0-99", 1000), ByteRange::Part { start: 0, end: 99 });
        assert_eq!(
            p("bytes=900-", 1000),
            ByteRange::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=900-5000", 1000),
            ByteRange::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=-100", 1000),
            ByteRange::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=-5000", 1000),
            ByteRange::Part { start: 0, end: 999 }
        );
        assert_eq!(p("bytes=1000-", 1000), ByteRange::Unsatisfiable);
        assert_eq!(p("bytes=-0", 1000), ByteRange::Unsatisfiable);
        assert_eq!(p("bytes=0-0", 0), ByteRange::Unsatisfiable);
        // Ignored: malformed, backwards, several ranges, other units.
        for s in [
            "bytes=5-2",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(p(s, 1000), ByteRange::Full, "{s}");
        }
        assert_eq!(parse_range(None, 10), ByteRange::Full);
    }

    #[test]
    fn whitespace_around_the_spec_is_allowed_and_empty_files_have_no_part() {
        let p = |s: &str, size| parse_range(Some(&hv(s)), size);
        assert_eq!(p(" bytes= 1-2 ", 10), ByteRange::Part { start: 1, end: 2 });
        assert_eq!(p("bytes=-5", 0), ByteRange::Unsatisfiable);
        assert_eq!(p("bytes=0-", 0), ByteRange::Unsatisfiable);
        assert_eq!(p("bytes=1-", 1), ByteRange::Unsatisfiable);
        assert_eq!(p("bytes=0-", 1), ByteRange::Part { start: 0, end: 0 });
    }
}
