//! Download from the origin (the product's "distribution point"): any HTTP or HTTPS
//! web server serving what `contentdist publish` wrote.
//!
//! The manifest comes first (`ID/VERSION/manifest.json`); then every block the cache
//! does not hold yet is fetched with Range requests, verified, and written, by the
//! [`crate::transfer`] engine. Failures are classified there, once, into a catalogue
//! code and "worth retrying or not", so the download loop decides from those two
//! facts alone.

mod download;
mod throttle;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::codes::Code;
use crate::manifest::{Manifest, ManifestError, CONTENT_DIR, CONTENT_HASH_FILE, MANIFEST_FILE};
use crate::transfer::{
    check_status, http_client, stall_guard, tls_config, ClientOptions, ClientSetupError,
    ContentUrls, HttpFailure, Remote, Roots,
};

pub use download::DownloadCounters;
pub use throttle::Throttle;

/// How to reach the origin and how hard to try.
#[derive(Clone, Debug)]
pub struct OriginOptions {
    /// Base URL: `https://dp.example/content` (no trailing slash needed).
    pub url: String,
    /// PEM CA bundle to trust for an HTTPS origin; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Attempts without progress beyond the first before a download fails.
    pub retries: u32,
    /// A response that sends nothing for this long is abandoned and retried.
    pub stall_timeout: Duration,
    /// Connection establishment limit.
    pub connect_timeout: Duration,
    /// Shared WAN budget in bytes per second; `None`: not throttled.
    pub rate_limit: Option<u64>,
    /// Pause between failed attempts: doubles each time, up to 16 times this.
    pub backoff: Duration,
    /// The client certificate presented when an HTTPS origin asks for one (the
    /// agent's, chosen as for peers: the page's "HTTPS site systems").
    pub client_cert: Option<std::sync::Arc<dyn rustls::client::ResolvesClientCert>>,
}

impl Default for OriginOptions {
    fn default() -> Self {
        OriginOptions {
            url: String::new(),
            ca_file: None,
            retries: 5,
            stall_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            rate_limit: None,
            backoff: Duration::from_millis(250),
            client_cert: None,
        }
    }
}

/// Why talking to the origin failed.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// No origin URL is configured.
    #[error("no origin URL is configured (OriginUrl)")]
    NoOrigin,
    /// The URL or the TLS settings are unusable.
    #[error("origin settings: {0}")]
    Setup(String),
    /// An HTTP exchange failed: no connection, a status, a stall, a bad answer. The
    /// failure carries its code and whether a retry can help.
    #[error(transparent)]
    Http(#[from] HttpFailure),
    /// A block kept failing verification.
    #[error("block {block} of {path} failed verification {times} times: the origin sends bytes that were not published")]
    Corrupt {
        /// The file in the content.
        path: String,
        /// Global block index.
        block: usize,
        /// How many times.
        times: u32,
    },
    /// The manifest does not parse or is inconsistent.
    #[error("{url}: {source}")]
    Manifest {
        /// Where it came from.
        url: String,
        /// What is wrong.
        source: ManifestError,
    },
    /// The manifest is not the content asked for.
    #[error("manifest mismatch: {0}")]
    ManifestMismatch(String),
    /// The cache could not store a block.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// The job was paused or cancelled.
    #[error("stopped")]
    Stopped,
}

impl OriginError {
    /// The catalogue code.
    pub fn code(&self) -> Code {
        match self {
            OriginError::NoOrigin => Code::NO_ORIGIN,
            OriginError::Setup(_) => Code::CONFIG_INVALID,
            OriginError::Http(f) => f.code,
            OriginError::Corrupt { .. } => Code::DATA_ERROR,
            OriginError::Manifest { source, .. } => source.code(),
            OriginError::ManifestMismatch(_) => Code::MANIFEST_MISMATCH,
            OriginError::Cache(e) => e.code(),
            OriginError::Stopped => Code::CANCELLED,
        }
    }

    /// True when trying again may help (the server or the path may recover).
    pub fn retryable(&self) -> bool {
        matches!(self, OriginError::Http(f) if f.retryable)
    }
}

/// A client of one origin, shared by every job of an agent (one connection pool,
/// one WAN throttle).
#[derive(Clone, Debug)]
pub struct OriginClient {
    base: Url,
    http: reqwest::Client,
    opts: OriginOptions,
    /// The WAN budget (it may have no limit, and a reload may set one).
    throttle: Arc<Throttle>,
}

impl OriginClient {
    /// A client for `opts.url`.
    pub fn new(opts: OriginOptions) -> Result<OriginClient, OriginError> {
        if opts.url.is_empty() {
            return Err(OriginError::NoOrigin);
        }
        let mut base = Url::parse(&opts.url)
            .map_err(|e| OriginError::Setup(format!("OriginUrl '{}': {e}", opts.url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(OriginError::Setup(format!(
                "OriginUrl '{}': only http and https are supported",
                opts.url
            )));
        }
        // Url::join treats the last segment as a file unless the path ends in '/'.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let setup = |e: ClientSetupError| match e {
            ClientSetupError::CaFile { .. } => OriginError::Setup(format!("OriginCaFile {e}")),
            e => OriginError::Setup(e.to_string()),
        };
        let roots = match &opts.ca_file {
            Some(path) => Roots::PemFile(path),
            None => Roots::System,
        };
        let client = ClientOptions {
            connect_timeout: opts.connect_timeout,
            // Every await is bounded by `stall_timeout` instead (see `stall_guard`).
            read_timeout: None,
            local_address: None,
        };
        let http = http_client(
            tls_config(roots, opts.client_cert.clone()).map_err(setup)?,
            &client,
        )
        .map_err(setup)?;
        let throttle = Arc::new(Throttle::new(opts.rate_limit));
        Ok(OriginClient {
            base,
            http,
            opts,
            throttle,
        })
    }

    /// How long the WAN throttle has held this agent's downloads back (the
    /// product's "WAN protected" time): wall-clock time, counted once when several
    /// downloads waited together.
    pub fn wan_held_back(&self) -> Duration {
        self.throttle.held_back()
    }

    /// The WAN throttle in force, bytes per second (`None`: no limit).
    pub fn rate_limit(&self) -> Option<u64> {
        self.throttle.rate()
    }

    /// Change the WAN throttle (`None`: no limit): downloads running now are paced
    /// by the new rate from their next chunk on.
    pub fn set_rate_limit(&self, bytes_per_sec: Option<u64>) {
        self.throttle.set_rate(bytes_per_sec);
    }

    /// The options this client was built with.
    pub fn options(&self) -> &OriginOptions {
        &self.opts
    }

    /// The URLs of `id`/`version` on the origin: `BASE/ID/VERSION/…`.
    fn urls(&self, id: &str, version: u32) -> ContentUrls {
        ContentUrls::new(&self.base, &[id, &version.to_string()])
    }

    /// An HTTPS origin's 400: a refused client certificate when its answer says so
    /// (nginx's "No required SSL certificate was sent", "The SSL certificate
    /// error"), else the plain refusal. The manifest is the first request of every
    /// job, so this is where such an origin's refusal shows.
    async fn bad_request(&self, url: &Url, resp: reqwest::Response) -> OriginError {
        let said = match self.stall_guard(url, resp.bytes()).await {
            Ok(b) => String::from_utf8_lossy(&b[..b.len().min(512)]).into_owned(),
            Err(e) => return e,
        };
        if said.contains("SSL certificate") {
            let presented = self
                .opts
                .client_cert
                .as_ref()
                .is_some_and(|c| c.has_certs());
            let text = said
                .split(['<', '>'])
                .find(|t| t.contains("SSL certificate"))
                .unwrap_or(&said);
            return HttpFailure::client_cert_refused(Remote::Origin, url, presented, text).into();
        }
        match check_status(Remote::Origin, url, reqwest::StatusCode::BAD_REQUEST) {
            Err(e) => e.into(),
            Ok(()) => unreachable!("400 is never accepted"),
        }
    }

    /// URL of a content file on the origin.
    pub fn file_url(&self, id: &str, version: u32, path: &str) -> Url {
        self.urls(id, version).url(&[CONTENT_DIR, path])
    }

    /// Fetch and check the manifest of `id`/`version`. With `expect_hash`, the
    /// manifest must be the content with that hash.
    pub async fn fetch_manifest(
        &self,
        id: &str,
        version: u32,
        expect_hash: Option<&str>,
    ) -> Result<Manifest, OriginError> {
        let url = self.urls(id, version).url(&[MANIFEST_FILE]);
        let mut attempt = 0;
        let bytes = loop {
            let r = async {
                let resp = self
                    .stall_guard(&url, self.http.get(url.clone()).send())
                    .await?;
                if resp.status() == reqwest::StatusCode::BAD_REQUEST && url.scheme() == "https" {
                    return Err(self.bad_request(&url, resp).await);
                }
                tracing::debug!(remote = "origin", url = %url, status = resp.status().as_u16(), "manifest request answered");
                check_status(Remote::Origin, &url, resp.status())?;
                self.stall_guard(&url, resp.bytes()).await
            }
            .await;
            match r {
                Ok(b) => break b,
                Err(e) if e.retryable() && attempt < self.opts.retries => {
                    tracing::warn!(error = %e, attempt, "manifest fetch failed; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let manifest = Manifest::parse(&bytes).map_err(|source| OriginError::Manifest {
            url: url.to_string(),
            source,
        })?;
        manifest
            .check_is(id, version, expect_hash)
            .map_err(OriginError::ManifestMismatch)?;
        Ok(manifest)
    }

    /// The content hash the origin publishes beside the manifest of `id`/`version`
    /// ([`CONTENT_HASH_FILE`]), to check a manifest taken from a master with.
    /// `Ok(None)` when the origin has none (404: published by an older `contentdist
    /// publish`, or by hand); one attempt, no retries: the caller falls back to the
    /// manifest from the origin on any error.
    pub async fn fetch_content_hash(
        &self,
        id: &str,
        version: u32,
    ) -> Result<Option<String>, OriginError> {
        let url = self.urls(id, version).url(&[CONTENT_HASH_FILE]);
        let resp = self
            .stall_guard(&url, self.http.get(url.clone()).send())
            .await?;
        tracing::debug!(remote = "origin", url = %url, status = resp.status().as_u16(), "content hash request answered");
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        check_status(Remote::Origin, &url, resp.status())?;
        let bytes = self.stall_guard(&url, resp.bytes()).await?;
        parse_content_hash(&bytes).map(Some).ok_or_else(|| {
            HttpFailure::bad_response(
                Remote::Origin,
                &url,
                "not a content hash (64 hex digits)".into(),
            )
            .into()
        })
    }

    /// Await a reqwest step, abandoning it when nothing happens for the stall timeout.
    async fn stall_guard<T>(
        &self,
        url: &Url,
        step: impl std::future::Future<Output = Result<T, reqwest::Error>>,
    ) -> Result<T, OriginError> {
        Ok(stall_guard(Remote::Origin, url, self.opts.stall_timeout, step).await?)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.opts.backoff * 2u32.pow(attempt.min(4))
    }
}

/// A content hash file's text: 64 hex digits, surrounding white space allowed.
fn parse_content_hash(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| text.to_string())
}

#[cfg(test)]
mod content_hash_tests {
    use super::parse_content_hash;

    #[test]
    fn a_content_hash_file_is_64_hex_digits_and_nothing_else() {
        let h = "ab".repeat(32);
        assert_eq!(
            parse_content_hash(format!("{h}\n").as_bytes()),
            Some(h.clone())
        );
        assert_eq!(
            parse_content_hash(format!("  {h}\r\n").as_bytes()),
            Some(h.clone())
        );
        assert_eq!(parse_content_hash(&h.as_bytes()[..63]), None);
        assert_eq!(parse_content_hash(format!("{h}0").as_bytes()), None);
        assert_eq!(
            parse_content_hash(format!("{}zz", &h[..62]).as_bytes()),
            None
        );
        assert_eq!(parse_content_hash(b"<html>not found</html>"), None);
        assert_eq!(parse_content_hash(&[0xff; 64]), None);
    }
}
