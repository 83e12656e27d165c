//! Reading a request: which content and file a path names, the `Range` header, and
//! the `have` query. Pure functions, so the rules are tested without a server.

use std::time::Duration;

use http::HeaderValue;
use percent_encoding::percent_decode_str;

use super::MAX_HAVE_WAIT;
use crate::manifest::ContentKey;

/// What a path asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    Manifest(ContentKey),
    Have(ContentKey),
    File(ContentKey, String),
}

/// `/content/{id}/{version}/(manifest.json|have|files/{path})`, percent-decoded.
/// The file path is only ever compared with the manifest's paths.
pub(super) fn parse_route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/content/")?;
    let (id, rest) = rest.split_once('/')?;
    let (version, what) = rest.split_once('/')?;
    let id = percent_decode_str(id).decode_utf8().ok()?.into_owned();
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // An id that is not valid names nothing any cache could hold.
    let key = ContentKey::new(id, version.parse().ok()?).ok()?;
    match what {
        "manifest.json" => Some(Route::Manifest(key)),
        "have" => Some(Route::Have(key)),
        _ => {
            let raw = what.strip_prefix("files/")?;
            let file = percent_decode_str(raw).decode_utf8().ok()?.into_owned();
            Some(Route::File(key, file))
        }
    }
}

/// A `Range` header as this server applies it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeReq {
    /// No range, or one this server ignores (malformed, several ranges): the whole file.
    Full,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range starting past the end.
    Unsatisfiable,
}

pub(super) fn parse_range(value: Option<&HeaderValue>, size: u64) -> RangeReq {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeReq::Full;
    };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Full;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.is_empty(), num(a), num(b)) {
        // `-n`: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                RangeReq::Unsatisfiable
            } else {
                RangeReq::Part {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        (false, Some(start), end) if b.is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return RangeReq::Full;
            }
            if start >= size {
                return RangeReq::Unsatisfiable;
            }
            RangeReq::Part {
                start,
                end: end.map_or(size - 1, |e| e.min(size - 1)),
            }
        }
        _ => RangeReq::Full,
    }
}

/// `after=N&wait_ms=M`.
pub(super) fn parse_have_query(query: Option<&str>) -> Result<(Option<usize>, Duration), String> {
    let (mut after, mut wait) = (None, Duration::ZERO);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "after" => {
                after = Some(
                    v.parse()
                        .map_err(|_| format!("after={v} is not a number"))?,
                )
            }
            "wait_ms" => {
                let ms: u64 = v
                    .parse()
                    .map_err(|_| format!("wait_ms={v} is not a number"))?;
                wait = Duration::from_millis(ms).min(MAX_HAVE_WAIT);
            }
            _ => {}
        }
    }
    Ok((after, wait))
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
        assert_eq!(p("bytes=0-99", 1000), RangeReq::Part { start: 0, end: 99 });
        assert_eq!(
            p("bytes=900-", 1000),
            RangeReq::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=900-5000", 1000),
            RangeReq::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=-100", 1000),
            RangeReq::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=-5000", 1000),
            RangeReq::Part { start: 0, end: 999 }
        );
        assert_eq!(p("bytes=1000-", 1000), RangeReq::Unsatisfiable);
        assert_eq!(p("bytes=-0", 1000), RangeReq::Unsatisfiable);
        assert_eq!(p("bytes=0-0", 0), RangeReq::Unsatisfiable);
        // Ignored: malformed, backwards, several ranges, other units.
        for s in [
            "bytes=5-2",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(p(s, 1000), RangeReq::Full, "{s}");
        }
        assert_eq!(parse_range(None, 10), RangeReq::Full);
    }

    #[test]
    fn routes_decode_percent_escapes_and_refuse_other_shapes() {
        let k = ContentKey::new("PKG1", 3).unwrap();
        assert_eq!(
            parse_route("/content/PKG1/3/have"),
            Some(Route::Have(k.clone()))
        );
        assert_eq!(
            parse_route("/content/PKG1/3/manifest.json"),
            Some(Route::Manifest(k.clone()))
        );
        assert_eq!(
            parse_route("/content/PKG1/3/files/a%20b/c%2e.bin"),
            Some(Route::File(k.clone(), "a b/c..bin".into()))
        );
        assert_eq!(
            parse_route("/content/PKG1/3/files/%2e%2e/x"),
            Some(Route::File(k, "../x".into())),
            "decoded, then only ever compared with manifest paths"
        );
        for p in [
            "/content/PKG1/x/have",
            "/content/PKG1/3/other",
            "/content/PKG1/+3/have",
            "/x",
            "/content/PKG1/3/files/%ff",
        ] {
            assert_eq!(parse_route(p), None, "{p}");
        }
    }

    #[test]
    fn have_query_caps_the_wait_and_refuses_garbage() {
        assert_eq!(parse_have_query(None), Ok((None, Duration::ZERO)));
        assert_eq!(
            parse_have_query(Some("after=5&wait_ms=99000")),
            Ok((Some(5), MAX_HAVE_WAIT))
        );
        assert!(parse_have_query(Some("after=x")).is_err());
    }
}
