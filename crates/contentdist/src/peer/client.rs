//! The peer side: choose a protocol the master accepts, authenticate, and ask it for
//! the manifest and its verified blocks. The copy loop itself is in `copy`.
//!
//! Two connection pools: one for data, whose reads time out after
//! [`PeerClientOptions::stall_timeout`] without a byte, and one for `have`
//! long-polls, which legitimately wait up to [`PeerClientOptions::long_poll`] before
//! the first byte and are bounded by a per-request deadline instead.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url};

use super::auth::p2p_credentials;
use super::{HaveDoc, PeerError};
use crate::codes::Code;
use crate::config::{Protocol, Protocols};
use crate::manifest::{Manifest, MANIFEST_FILE};

/// How the client talks to masters.
#[derive(Clone)]
pub struct PeerClientOptions {
    /// Connection establishment limit.
    pub connect_timeout: Duration,
    /// A master that sends nothing for this long is lost.
    pub stall_timeout: Duration,
    /// How long one `have` request may wait for the master to verify more blocks.
    pub long_poll: Duration,
    /// TLS settings for HTTPS (server verification, client certificate). `None`: this
    /// agent does not copy over HTTPS.
    pub tls: Option<rustls::ClientConfig>,
    /// Credentials to send instead of the P2P account: the machine account
    /// (`SpecialNetShare` 0x80), from [`super::machine_credentials`].
    pub credentials: Option<(String, String)>,
}

impl Default for PeerClientOptions {
    fn default() -> Self {
        PeerClientOptions {
            connect_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(5),
            long_poll: Duration::from_secs(5),
            tls: None,
            credentials: None,
        }
    }
}

impl std::fmt::Debug for PeerClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClientOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("stall_timeout", &self.stall_timeout)
            .field("long_poll", &self.long_poll)
            .field("tls", &self.tls.is_some())
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// The elected master, as its announcement describes it.
#[derive(Clone)]
pub struct MasterTarget {
    /// Its address.
    pub addr: IpAddr,
    /// Its HTTP port (`P2PHttpPort`).
    pub http_port: u16,
    /// Its HTTPS port (`P2PHttpsPort`).
    pub https_port: u16,
    /// The protocols it accepts.
    pub protocols: Protocols,
    /// The key it shared, from which its P2P account's password derives.
    pub p2p_key: [u8; 32],
    /// SHA-256 of its HTTPS certificate, as announced (to pin a self-signed one).
    pub cert_fingerprint: Option<[u8; 32]>,
}

impl MasterTarget {
    /// The master an election names: the one place a copy's target is built, so
    /// nothing the announcement carries (the certificate fingerprint) is dropped.
    pub fn from_master(m: &crate::election::MasterInfo) -> MasterTarget {
        MasterTarget {
            addr: m.addr,
            http_port: m.http_port,
            https_port: m.https_port,
            protocols: m.protocols,
            p2p_key: m.p2p_key.0,
            cert_fingerprint: m.cert_fingerprint,
        }
    }
}

impl std::fmt::Debug for MasterTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterTarget")
            .field("addr", &self.addr)
            .field("http_port", &self.http_port)
            .field("https_port", &self.https_port)
            .field("protocols", &self.protocols)
            .field("cert_fingerprint", &self.cert_fingerprint.map(hex::encode))
            .finish_non_exhaustive()
    }
}

/// Counters of one client instance (all copies it ran).
#[derive(Debug, Default)]
pub struct PeerClientCounters {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Body bytes received from masters (verified or not).
    pub bytes_received: AtomicU64,
    /// Blocks that failed verification or arrived cut short.
    pub blocks_rejected: AtomicU64,
}

/// Of the protocols both sides allow, the most secure one this agent can speak
/// (`implemented`): HTTPS, then HTTP, then SMB.
pub fn choose_protocol(
    local: Protocols,
    master: Protocols,
    implemented: Protocols,
) -> Result<Protocol, PeerError> {
    let common = local.intersection(master);
    if common.is_empty() {
        return Err(PeerError::ProtocolMismatch { local, master });
    }
    common
        .iter()
        .find(|p| implemented.contains(*p))
        .ok_or(PeerError::ProtocolNotImplemented {
            common,
            local,
            master,
        })
}

/// A client for copying from masters; cheap to clone, share one per agent.
#[derive(Clone, Debug)]
pub struct PeerClient {
    data: reqwest::Client,
    poll: reqwest::Client,
    opts: Arc<PeerClientOptions>,
    counters: Arc<PeerClientCounters>,
}

/// Where one content lives on one master, over the chosen protocol.
#[derive(Clone, Debug)]
pub(super) struct ContentUrls {
    base: Url,
    pub(super) user: String,
    pub(super) password: String,
}

impl ContentUrls {
    /// `…/content/{id}/{version}/{rest…}`, each part percent-encoded as a segment.
    pub(super) fn url(&self, rest: &[&str]) -> Url {
        let mut u = self.base.clone();
        {
            let mut segs = u.path_segments_mut().expect("http URLs have paths");
            for part in rest {
                for seg in part.split('/') {
                    segs.push(seg);
                }
            }
        }
        u
    }
}

impl PeerClient {
    /// A client with these options.
    pub fn new(opts: PeerClientOptions) -> Result<PeerClient, PeerError> {
        // reqwest needs a TLS backend even for plain HTTP: without HTTPS settings it
        // gets one that trusts nothing, so it can never complete an HTTPS handshake.
        let tls = match &opts.tls {
            Some(c) => c.clone(),
            None => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| PeerError::Setup(e.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }
        };
        let build = |read_timeout: Option<Duration>| {
            let mut b = reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .connect_timeout(opts.connect_timeout)
                .tcp_nodelay(true)
                // Peers are on the same subnet: a proxy from the environment would
                // only be in the way (and see the credentials).
                .no_proxy();
            if let Some(t) = read_timeout {
                b = b.read_timeout(t);
            }
            b.build().map_err(|e| PeerError::Setup(e.to_string()))
        };
        Ok(PeerClient {
            data: build(Some(opts.stall_timeout))?,
            poll: build(None)?,
            opts: Arc::new(opts),
            counters: Arc::new(PeerClientCounters::default()),
        })
    }

    /// This client's counters.
    pub fn counters(&self) -> &Arc<PeerClientCounters> {
        &self.counters
    }

    /// The protocols this client can speak: HTTP, and HTTPS when it has TLS settings.
    pub fn implemented(&self) -> Protocols {
        let p = Protocols::NONE.with(Protocol::Http);
        if self.opts.tls.is_some() {
            p.with(Protocol::Https)
        } else {
            p
        }
    }

    /// The URLs of `id`/`version` on `target`, over the protocol chosen from `local`
    /// and what the master accepts.
    pub(super) fn urls(
        &self,
        target: &MasterTarget,
        local: Protocols,
        id: &str,
        version: u32,
    ) -> Result<ContentUrls, PeerError> {
        let proto = choose_protocol(local, target.protocols, self.implemented())?;
        let (scheme, port) = match proto {
            Protocol::Https => ("https", target.https_port),
            _ => ("http", target.http_port),
        };
        let addr = SocketAddr::new(target.addr, port);
        let mut base = Url::parse(&format!("{scheme}://{addr}/"))
            .map_err(|e| PeerError::Setup(format!("master address {addr}: {e}")))?;
        base.path_segments_mut()
            .expect("http URLs have paths")
            .clear()
            .push("content")
            .push(id)
            .push(&version.to_string());
        let (user, password) = match &self.opts.credentials {
            Some((u, p)) => (u.clone(), p.clone()),
            None => p2p_credentials(&target.p2p_key),
        };
        Ok(ContentUrls {
            base,
            user,
            password,
        })
    }

    pub(super) fn get(&self, urls: &ContentUrls, url: Url, poll: bool) -> reqwest::RequestBuilder {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let client = if poll { &self.poll } else { &self.data };
        client.get(url).basic_auth(&urls.user, Some(&urls.password))
    }

    /// The master's manifest of `id`/`version`, checked to be for that id and version
    /// (over HTTP, and trusting the master: callers must check it against the content
    /// hash when they have one).
    pub async fn fetch_manifest(
        &self,
        target: &MasterTarget,
        local: Protocols,
        id: &str,
        version: u32,
    ) -> Result<Manifest, PeerError> {
        let urls = self.urls(target, local, id, version)?;
        let url = urls.url(&[MANIFEST_FILE]);
        let resp = self
            .get(&urls, url.clone(), false)
            .send()
            .await
            .map_err(|e| classify(&url, &e))?;
        check_status(&url, resp.status())?;
        let bytes = resp.bytes().await.map_err(|e| classify(&url, &e))?;
        self.counters
            .bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let m = Manifest::parse(&bytes).map_err(|source| PeerError::Manifest {
            url: url.to_string(),
            source,
        })?;
        m.check_is(id, version, None)
            .map_err(|e| PeerError::ManifestMismatch(format!("{url}: {e}")))?;
        Ok(m)
    }

    /// The master's verified blocks; with `after`, wait (up to `long_poll`) until it
    /// holds more than `after`.
    pub(super) async fn have(
        &self,
        urls: &ContentUrls,
        after: Option<usize>,
    ) -> Result<(HaveDoc, Vec<u8>), PeerError> {
        let mut url = urls.url(&["have"]);
        let mut deadline = self.opts.stall_timeout;
        if let Some(after) = after {
            let wait = self.opts.long_poll.min(super::MAX_HAVE_WAIT);
            url.set_query(Some(&format!("after={after}&wait_ms={}", wait.as_millis())));
            deadline += wait;
        }
        let resp = self
            .get(urls, url.clone(), true)
            .timeout(deadline)
            .send()
            .await
            .map_err(|e| classify(&url, &e))?;
        check_status(&url, resp.status())?;
        let bytes = resp.bytes().await.map_err(|e| classify(&url, &e))?;
        self.counters
            .bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let bad = |detail: String| PeerError::BadResponse {
            url: url.to_string(),
            detail,
        };
        let doc: HaveDoc =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad have document: {e}")))?;
        let bitmap = hex::decode(&doc.bitmap).map_err(|e| bad(format!("bad have bitmap: {e}")))?;
        if bitmap.len() != doc.block_count.div_ceil(8) {
            return Err(bad(format!(
                "have bitmap holds {} bytes for {} blocks",
                bitmap.len(),
                doc.block_count
            )));
        }
        Ok((doc, bitmap))
    }
}

/// 2xx is fine; 403 (and 401) a refusal; 404 not held; anything else unexpected.
pub(super) fn check_status(url: &Url, status: StatusCode) -> Result<(), PeerError> {
    let url = url.to_string();
    match status.as_u16() {
        200..=299 => Ok(()),
        s @ (401 | 403) => Err(PeerError::Refused { url, status: s }),
        404 => Err(PeerError::NotFound { url }),
        s => Err(PeerError::BadResponse {
            url,
            detail: format!("unexpected HTTP {s}"),
        }),
    }
}

/// Turn a reqwest error into ours: walk the cause chain for the I/O or TLS error
/// underneath, since reqwest's own kinds do not say refused from unreachable.
pub(super) fn classify(url: &Url, e: &reqwest::Error) -> PeerError {
    let u = url.to_string();
    let lost = |code, detail: String| PeerError::MasterUnreachable {
        url: u.clone(),
        code,
        detail,
    };
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut text = Vec::new();
    while let Some(s) = src {
        let tls = s.downcast_ref::<rustls::Error>().or_else(|| {
            s.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return PeerError::Tls {
                url: u,
                detail: tls.to_string(),
            };
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match (io.kind(), io.raw_os_error()) {
                (std::io::ErrorKind::ConnectionRefused, _) => {
                    return lost(Code::CANNOT_CONNECT, io.to_string())
                }
                (_, Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) => {
                    return lost(Code::NETWORK_UNREACHABLE, io.to_string())
                }
                (std::io::ErrorKind::TimedOut, _) if e.is_connect() => {
                    return lost(Code::CANNOT_CONNECT, io.to_string())
                }
                (std::io::ErrorKind::TimedOut, _) => {
                    return lost(Code::TIMEOUT, "no data from the master".into())
                }
                _ => {}
            }
        }
        text.push(s.to_string());
        src = s.source();
    }
    let detail = text.join(": ");
    if e.is_connect() {
        return lost(Code::CANNOT_CONNECT, detail);
    }
    if e.is_timeout() {
        return lost(Code::TIMEOUT, format!("no answer in time: {detail}"));
    }
    if e.is_body() || e.is_decode() {
        return PeerError::BadResponse {
            url: u,
            detail: format!("transfer failed: {detail}"),
        };
    }
    // The connection broke before an answer came: the master went away.
    lost(Code::CANNOT_CONNECT, detail)
}
