//! Download from the origin (the product's "distribution point"): any HTTP or HTTPS
//! web server serving what `contentdist publish` wrote.
//!
//! The manifest comes first (`ID/VERSION/manifest.json`); then every block the cache
//! does not hold yet is fetched with Range requests, verified, and written. Failures
//! are classified once, here, into a catalogue code and "worth retrying or not", so the
//! download loop decides from those two facts alone.

mod download;
mod throttle;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url};

use crate::codes::Code;
use crate::manifest::{Manifest, ManifestError, CONTENT_DIR, MANIFEST_FILE};

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
    /// 404.
    #[error("{url}: not found on the origin (HTTP 404)")]
    NotFound {
        /// What was asked for.
        url: String,
    },
    /// 401, 403 or another 4xx.
    #[error("{url}: refused by the origin (HTTP {status})")]
    Refused {
        /// What was asked for.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// 5xx.
    #[error("{url}: origin server error (HTTP {status})")]
    ServerError {
        /// What was asked for.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// No TCP connection (refused, unreachable, name unknown, timed out).
    #[error("{url}: {detail}")]
    Connect {
        /// What was asked for.
        url: String,
        /// The catalogue code for the kind of failure.
        code: Code,
        /// The cause, in words.
        detail: String,
    },
    /// The TLS handshake failed or the certificate was rejected.
    #[error("{url}: secure channel failure: {detail}")]
    Tls {
        /// What was asked for.
        url: String,
        /// The cause, in words.
        detail: String,
    },
    /// Nothing arrived for the stall timeout.
    #[error("{url}: no data for {secs} s")]
    Stalled {
        /// What was asked for.
        url: String,
        /// The timeout.
        secs: u64,
    },
    /// The answer was malformed or cut short.
    #[error("{url}: {detail}")]
    BadResponse {
        /// What was asked for.
        url: String,
        /// What was wrong.
        detail: String,
    },
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
            OriginError::NotFound { .. } => Code::ORIGIN_NOT_FOUND,
            OriginError::Refused { .. } => Code::ORIGIN_REFUSED,
            OriginError::ServerError { .. } => Code::ORIGIN_SERVER_ERROR,
            OriginError::Connect { code, .. } => *code,
            OriginError::Tls { .. } => Code::SECURE_FAILURE,
            OriginError::Stalled { .. } => Code::TIMEOUT,
            OriginError::BadResponse { .. } => Code::INVALID_SERVER_RESPONSE,
            OriginError::Corrupt { .. } => Code::DATA_ERROR,
            OriginError::Manifest { source, .. } => source.code(),
            OriginError::ManifestMismatch(_) => Code::MANIFEST_MISMATCH,
            OriginError::Cache(e) => e.code(),
            OriginError::Stopped => Code::CANCELLED,
        }
    }

    /// True when trying again may help (the server or the path may recover).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            OriginError::ServerError { .. }
                | OriginError::Connect { .. }
                | OriginError::Stalled { .. }
                | OriginError::BadResponse { .. }
        )
    }
}

/// A client of one origin, shared by every job of an agent (one connection pool,
/// one WAN throttle).
#[derive(Clone, Debug)]
pub struct OriginClient {
    base: Url,
    http: reqwest::Client,
    opts: OriginOptions,
    throttle: Option<Arc<tokio::sync::Mutex<Throttle>>>,
}

fn tls_config(ca_file: Option<&PathBuf>) -> Result<rustls::ClientConfig, OriginError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| OriginError::Setup(format!("OriginCaFile {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(OriginError::Setup(format!(
                    "OriginCaFile {}: no certificate in it",
                    path.display()
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    OriginError::Setup(format!("OriginCaFile {}: {e}", path.display()))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OriginError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
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
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(opts.ca_file.as_ref())?)
            .connect_timeout(opts.connect_timeout)
            .no_proxy()
            .build()
            .map_err(|e| OriginError::Setup(e.to_string()))?;
        let throttle = opts
            .rate_limit
            .map(|r| Arc::new(tokio::sync::Mutex::new(Throttle::new(r))));
        Ok(OriginClient {
            base,
            http,
            opts,
            throttle,
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &OriginOptions {
        &self.opts
    }

    fn url(&self, id: &str, version: u32, rest: &[&str]) -> Url {
        let mut u = self.base.clone();
        {
            let mut segs = u.path_segments_mut().expect("http URLs have paths");
            segs.pop_if_empty().push(id).push(&version.to_string());
            for part in rest {
                for seg in part.split('/') {
                    segs.push(seg);
                }
            }
        }
        u
    }

    /// URL of a content file on the origin.
    pub fn file_url(&self, id: &str, version: u32, path: &str) -> Url {
        self.url(id, version, &[CONTENT_DIR, path])
    }

    /// Fetch and check the manifest of `id`/`version`. With `expect_hash`, the
    /// manifest must be the content with that hash.
    pub async fn fetch_manifest(
        &self,
        id: &str,
        version: u32,
        expect_hash: Option<&str>,
    ) -> Result<Manifest, OriginError> {
        let url = self.url(id, version, &[MANIFEST_FILE]);
        let mut attempt = 0;
        let bytes = loop {
            let r = async {
                let resp = self
                    .stall_guard(&url, self.http.get(url.clone()).send())
                    .await?;
                check_status(&url, resp.status())?;
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

    /// Await a reqwest step, abandoning it when nothing happens for the stall timeout.
    async fn stall_guard<T>(
        &self,
        url: &Url,
        step: impl std::future::Future<Output = Result<T, reqwest::Error>>,
    ) -> Result<T, OriginError> {
        match tokio::time::timeout(self.opts.stall_timeout, step).await {
            Ok(r) => r.map_err(|e| classify(url, &e)),
            Err(_) => Err(OriginError::Stalled {
                url: url.to_string(),
                secs: self.opts.stall_timeout.as_secs(),
            }),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.opts.backoff * 2u32.pow(attempt.min(4))
    }
}

fn check_status(url: &Url, status: StatusCode) -> Result<(), OriginError> {
    let url = url.to_string();
    match status.as_u16() {
        200..=299 => Ok(()),
        404 | 410 => Err(OriginError::NotFound { url }),
        s @ 500..=599 => Err(OriginError::ServerError { url, status: s }),
        s => Err(OriginError::Refused { url, status: s }),
    }
}

/// Turn a reqwest error into our error: walk the cause chain for the I/O or TLS
/// error underneath, since reqwest's own kinds do not say refused vs unreachable.
fn classify(url: &Url, e: &reqwest::Error) -> OriginError {
    let u = url.to_string();
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut text = Vec::new();
    while let Some(s) = src {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return OriginError::Tls {
                url: u,
                detail: tls.to_string(),
            };
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return OriginError::Tls {
                        url: u,
                        detail: tls.to_string(),
                    };
                }
            }
            let code = match (io.kind(), io.raw_os_error()) {
                (std::io::ErrorKind::ConnectionRefused, _) => Some(Code::CANNOT_CONNECT),
                (_, Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) => {
                    Some(Code::NETWORK_UNREACHABLE)
                }
                (std::io::ErrorKind::TimedOut, _) if e.is_connect() => Some(Code::CANNOT_CONNECT),
                (std::io::ErrorKind::TimedOut, _) => Some(Code::TIMEOUT),
                _ => None,
            };
            if let Some(code) = code {
                return OriginError::Connect {
                    url: u,
                    code,
                    detail: io.to_string(),
                };
            }
        }
        text.push(s.to_string());
        src = s.source();
    }
    let detail = text.join(": ");
    // Some connectors box the rustls error in their own type, so the downcasts above
    // miss it; its text is stable and specific.
    if [
        "invalid peer certificate",
        "received fatal alert",
        "tls handshake",
        "peer is incompatible",
        "peer misbehaved",
    ]
    .iter()
    .any(|m| detail.contains(m))
    {
        return OriginError::Tls { url: u, detail };
    }
    if e.is_connect() {
        let code = if detail.contains("dns error") || detail.contains("failed to lookup") {
            Code::NAME_NOT_RESOLVED
        } else {
            Code::CANNOT_CONNECT
        };
        return OriginError::Connect {
            url: u,
            code,
            detail,
        };
    }
    if e.is_timeout() {
        return OriginError::Connect {
            url: u,
            code: Code::TIMEOUT,
            detail,
        };
    }
    OriginError::BadResponse {
        url: u,
        detail: format!("transfer failed: {detail}"),
    }
}
