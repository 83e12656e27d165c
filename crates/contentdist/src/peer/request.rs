//! Reading a request: which content and file a path names, and the `have` query.
//! Pure functions, so the rules are tested without a server. (The `Range` header is
//! read by [`crate::util::parse_range`], shared with the lab origin.)

use std::time::Duration;

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
