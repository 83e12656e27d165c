//! Where a file's bytes come from: the [`BlockSource`] trait, and [`HttpSource`],
//! its implementation for the origin and for a master over HTTP or HTTPS.
//!
//! A source answers one question, "send me bytes `a..b` of this file", with a body
//! the engine reads chunk by chunk, or with "I no longer hold those blocks". What a
//! valid answer looks like is the source's business (a web server may ignore Range,
//! our peer protocol may not); reassembly, verification and counting are the
//! engine's. An SMB source or a fan-out over several masters is one more
//! implementation of the same two traits.

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{StatusCode, Url};

use super::failure::{check_status, classify, stall_guard, HttpFailure, Remote};
use crate::manifest::FileEntry;
use crate::origin::Throttle;

/// A place that serves the files of one content.
pub trait BlockSource: Sync {
    /// The body of one answer.
    type Body: RunBody;

    /// Ask for bytes `range` (end exclusive, never empty) of `file`.
    fn open_run(
        &self,
        file: &FileEntry,
        range: Range<u64>,
    ) -> impl Future<Output = Result<Opened<Self::Body>, HttpFailure>> + Send;
}

/// A source's answer to [`BlockSource::open_run`].
pub enum Opened<B> {
    /// The bytes follow in `body`, starting `skip` bytes before the range asked for
    /// (a web server that ignored Range sends the file from its start).
    Body {
        /// The bytes.
        body: B,
        /// How many leading bytes to drop.
        skip: u64,
    },
    /// The source no longer holds (verified) every block of the range.
    NotHeld,
}

/// The bytes of one answer, as they arrive.
pub trait RunBody: Send {
    /// The next non-empty chunk; `None` at the end of the body.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, HttpFailure>> + Send;
}

/// The URLs of one content on one server: a base path to which path parts are
/// appended, each split at `/` and percent-encoded as segments (a content path never
/// becomes anything but path segments).
#[derive(Clone, Debug)]
pub struct ContentUrls {
    base: Url,
}

impl ContentUrls {
    /// `root` followed by the segments of `prefix` (origin: `[ID, VERSION]`; master:
    /// `["content", id, version]`). `root` must be an http or https URL.
    pub fn new(root: &Url, prefix: &[&str]) -> ContentUrls {
        let mut base = root.clone();
        base.path_segments_mut()
            .expect("http URLs have paths")
            .pop_if_empty();
        ContentUrls { base }.join(prefix)
    }

    /// The URLs under `parts` (e.g. the directory the files live in).
    pub fn join(&self, parts: &[&str]) -> ContentUrls {
        ContentUrls {
            base: self.url(parts),
        }
    }

    /// The URL of `parts` below the base.
    pub fn url(&self, parts: &[&str]) -> Url {
        let mut u = self.base.clone();
        {
            let mut segs = u.path_segments_mut().expect("http URLs have paths");
            for part in parts {
                for seg in part.split('/') {
                    segs.push(seg);
                }
            }
        }
        u
    }
}

/// The content's files on a web server (the origin) or a master over HTTP(S).
///
/// Borrowed, built per transfer: the client, counters and throttle belong to the
/// long-lived origin or peer client.
pub struct HttpSource<'a> {
    /// Who answers; decides what a valid answer is (see [`BlockSource::open_run`]).
    pub remote: Remote,
    /// The client to send with.
    pub client: &'a reqwest::Client,
    /// Where the files are: a file's URL is `files.url(&[path])`.
    pub files: ContentUrls,
    /// HTTP Basic credentials to send (the peer's P2P or machine account).
    pub credentials: Option<(&'a str, &'a str)>,
    /// `Some`: every await (the answer, each chunk) is abandoned after this long
    /// without progress. `None`: the client's own read timeout does that.
    pub stall: Option<Duration>,
    /// The WAN budget every byte received is paced by.
    pub throttle: Option<&'a Throttle>,
    /// Counts the requests sent.
    pub requests: Option<&'a AtomicU64>,
}

/// Await a reqwest step of `remote`: bounded by `stall` when given, else by the
/// client's own read timeout.
async fn guarded<T>(
    remote: Remote,
    stall: Option<Duration>,
    url: &Url,
    step: impl Future<Output = Result<T, reqwest::Error>>,
) -> Result<T, HttpFailure> {
    match stall {
        Some(t) => stall_guard(remote, url, t, step).await,
        None => step.await.map_err(|e| classify(remote, url, &e)),
    }
}

/// Whether a master's answer is valid: our peer protocol answers a Range request
/// with exactly that range of the file, or (whole file asked) a plain 200. A web
/// server may ignore Range and send the whole file with 200, and its Content-Range
/// total is not checked: a changed file shows up as blocks that do not verify.
fn check_range(
    remote: Remote,
    url: &Url,
    resp: &reqwest::Response,
    file: &FileEntry,
    range: &Range<u64>,
) -> Result<u64, HttpFailure> {
    let bad = |detail| HttpFailure::bad_response(remote, url, detail);
    let (start, last) = (range.start, range.end - 1);
    if resp.status() == StatusCode::PARTIAL_CONTENT {
        let cr = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let ok = match remote {
            Remote::Origin => cr.starts_with(&format!("bytes {start}-{last}/")),
            Remote::Master => cr == format!("bytes {start}-{last}/{}", file.size),
        };
        if !ok {
            let expected = match remote {
                Remote::Origin => format!("bytes {start}-{last}/…"),
                Remote::Master => format!("bytes {start}-{last}/{}", file.size),
            };
            return Err(bad(format!(
                "asked for {expected}, got Content-Range '{cr}'"
            )));
        }
        return Ok(0);
    }
    match remote {
        Remote::Origin => Ok(start),
        Remote::Master if start == 0 && range.end == file.size => Ok(0),
        Remote::Master => Err(bad(format!(
            "asked for a range, got HTTP {}",
            resp.status()
        ))),
    }
}

impl<'a> BlockSource for HttpSource<'a> {
    type Body = HttpBody<'a>;

    async fn open_run(
        &self,
        file: &FileEntry,
        range: Range<u64>,
    ) -> Result<Opened<Self::Body>, HttpFailure> {
        let url = self.files.url(&[&file.path]);
        let mut request = self
            .client
            .get(url.clone())
            .header(RANGE, format!("bytes={}-{}", range.start, range.end - 1));
        if let Some((user, password)) = self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(n) = self.requests {
            n.fetch_add(1, Ordering::Relaxed);
        }
        let range_text = format!("{}-{}", range.start, range.end - 1);
        let resp = match guarded(self.remote, self.stall, &url, request.send()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(remote = self.remote.name(), url = %url, range = %range_text, code = %e.code, error = %e, "range request failed");
                return Err(e);
            }
        };
        tracing::debug!(remote = self.remote.name(), url = %url, range = %range_text, status = resp.status().as_u16(), "range request answered");
        // In the peer protocol, 409 means "some of these blocks are not verified here
        // (any more)"; for a web server it is just a refusal.
        if self.remote == Remote::Master && resp.status() == StatusCode::CONFLICT {
            tracing::debug!(url = %url, "master no longer holds some blocks of the run");
            return Ok(Opened::NotHeld);
        }
        check_status(self.remote, &url, resp.status())?;
        let skip = check_range(self.remote, &url, &resp, file, &range)?;
        Ok(Opened::Body {
            body: HttpBody {
                resp,
                url,
                remote: self.remote,
                stall: self.stall,
                throttle: self.throttle,
            },
            skip,
        })
    }
}

/// The body of an [`HttpSource`] answer.
pub struct HttpBody<'a> {
    resp: reqwest::Response,
    url: Url,
    remote: Remote,
    stall: Option<Duration>,
    throttle: Option<&'a Throttle>,
}

impl RunBody for HttpBody<'_> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpFailure> {
        loop {
            let chunk = guarded(self.remote, self.stall, &self.url, self.resp.chunk()).await?;
            match chunk {
                Some(c) if c.is_empty() => continue,
                Some(c) => {
                    if let Some(at) = self.throttle.and_then(|t| t.book(c.len())) {
                        tokio::time::sleep_until(at).await;
                    }
                    return Ok(Some(c));
                }
                None => return Ok(None),
            }
        }
    }
}
