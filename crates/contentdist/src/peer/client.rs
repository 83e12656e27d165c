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

use reqwest::Url;

use tracing::{debug, warn};

use super::auth::p2p_credentials;
use super::tls::{PeerTls, PeerTlsOptions, TlsClients};
use super::{HaveDoc, PeerError};
use crate::config::{Protocol, Protocols};
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::transfer::{
    check_status, classify, http_client, tls_config, BlockSource, ClientOptions, ContentUrls,
    HttpBody, HttpFailure, HttpSource, Opened, Remote, Roots, RunBody,
};

/// The waits before a machine account's SMB log-on is tried again after a refusal
/// (the master may not have registered it yet): 3.5 s in all, then the refusal
/// stands.
const SMB_MACHINE_RETRY: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// The data client (reads time out after the stall timeout) and the long-poll
/// client (bounded per request) over `tls`.
fn build_clients(
    opts: &PeerClientOptions,
    tls: rustls::ClientConfig,
) -> Result<TlsClients, PeerError> {
    let build = |read_timeout: Option<Duration>| {
        let client = ClientOptions {
            connect_timeout: opts.connect_timeout,
            read_timeout,
            local_address: opts.local_address,
        };
        http_client(tls.clone(), &client).map_err(|e| PeerError::Setup(e.to_string()))
    };
    Ok(TlsClients {
        data: build(Some(opts.stall_timeout))?,
        poll: build(None)?,
    })
}

/// How the client talks to masters.
#[derive(Clone)]
pub struct PeerClientOptions {
    /// Connection establishment limit.
    pub connect_timeout: Duration,
    /// A master that sends nothing for this long is lost.
    pub stall_timeout: Duration,
    /// How long one `have` request may wait for the master to verify more blocks.
    pub long_poll: Duration,
    /// How masters' HTTPS certificates are checked. `None`: this agent does not
    /// copy over HTTPS.
    pub tls: Option<PeerTlsOptions>,
    /// Credentials to send instead of the P2P account: the machine account
    /// (`SpecialNetShare` 0x80), from [`super::machine_credentials`].
    pub credentials: Option<(String, String)>,
    /// FanOut (`SpecialNetShare` 0x40): describe this agent to masters and copy
    /// from the other holders they name too; `None`: from the master only.
    pub fan_out: Option<super::swarm::SelfAd>,
    /// The address copies leave from: the agent's own (`ListenAddress`), so a master
    /// sees each peer as itself, and its per-address connection cap counts hosts,
    /// not every agent that shares a machine (the lab, tests); `None`: the system's.
    pub local_address: Option<std::net::IpAddr>,
    /// The TCP port of masters' SMB servers (`P2PSmbPort`: not announced, the same
    /// on every agent).
    pub smb_port: u16,
    /// FanOut over SMB: the holders heard on the subnet (see
    /// [`super::swarm::HeardHolders`]); a copy over SMB takes its holders from here.
    /// `None`: copies over SMB take every block from the master.
    pub heard_holders: Option<super::swarm::HeardHolders>,
}

impl Default for PeerClientOptions {
    fn default() -> Self {
        PeerClientOptions {
            connect_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(5),
            long_poll: Duration::from_secs(5),
            tls: None,
            credentials: None,
            fan_out: None,
            local_address: None,
            smb_port: 445,
            heard_holders: None,
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
            .field("fan_out", &self.fan_out.is_some())
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
    /// Its host name and FQDN, as announced: a PKI certificate must carry one.
    pub names: Vec<String>,
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
            names: m.names.clone(),
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
            .field("names", &self.names)
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
    /// Blocks that failed verification, or at which an answer was cut short while
    /// the master still claimed them.
    pub blocks_rejected: AtomicU64,
    /// Answers cut short at a block the master no longer held when asked right
    /// after (it found the block changed on its disk): waited for, not counted as
    /// rejected.
    pub cuts_not_held: AtomicU64,
    /// Content body bytes received (blocks, verified or not; no `have` or
    /// manifest), by protocol: live, for the metrics.
    pub content: super::PeerBytes,
    /// Requests for blocks answered "busy" (503: the source's
    /// `MaxServingConnections` reached); the blocks were taken elsewhere or later.
    pub busy_answers: AtomicU64,
}

impl PeerClientCounters {
    /// Content body bytes received over every protocol.
    pub fn content_bytes(&self) -> u64 {
        self.content.total()
    }
}

/// Of the protocols both sides allow, the ones this agent can speak
/// (`implemented`), most secure first: HTTPS, then HTTP, then SMB.
pub fn protocol_order(
    local: Protocols,
    master: Protocols,
    implemented: Protocols,
) -> Result<Vec<Protocol>, PeerError> {
    let common = local.intersection(master);
    if common.is_empty() {
        return Err(PeerError::ProtocolMismatch { local, master });
    }
    let order: Vec<Protocol> = common.iter().filter(|p| implemented.contains(*p)).collect();
    if order.is_empty() {
        return Err(PeerError::ProtocolNotImplemented {
            common,
            local,
            master,
        });
    }
    Ok(order)
}

/// The first of [`protocol_order`]: the most secure protocol both sides allow and
/// this agent speaks.
pub fn choose_protocol(
    local: Protocols,
    master: Protocols,
    implemented: Protocols,
) -> Result<Protocol, PeerError> {
    protocol_order(local, master, implemented).map(|o| o[0])
}

/// A client for copying from masters; cheap to clone, share one per agent.
#[derive(Clone, Debug)]
pub struct PeerClient {
    plain: TlsClients,
    tls: Option<Arc<PeerTls>>,
    opts: Arc<PeerClientOptions>,
    counters: Arc<PeerClientCounters>,
}

/// Where one content lives on one master, over one protocol, and the account and
/// clients to ask with.
#[derive(Clone, Debug)]
pub(super) struct Route {
    /// The protocol.
    pub(super) protocol: Protocol,
    /// `…/content/{id}/{version}/`.
    pub(super) urls: ContentUrls,
    /// The account to send (HTTP Basic); `None` over HTTPS with a client
    /// certificate, which is the proof then.
    pub(super) credentials: Option<(String, String)>,
    pub(super) clients: TlsClients,
    /// Over SMB: the session on the master's share (then `urls` are `smb://`
    /// URLs, for messages only, and `clients` are unused).
    pub(super) smb: Option<super::smb::SmbRoute>,
}

/// Where one run comes from: a master or holder over HTTP(S), or a master's
/// SMB share. One engine for both ([`crate::transfer::fetch_run`]).
pub(super) enum PeerSource<'a> {
    Http(HttpSource<'a>),
    Smb(super::smb::SmbSource),
}

/// The body of a [`PeerSource`] answer.
pub(super) enum PeerBody<'a> {
    Http(HttpBody<'a>),
    Smb(super::smb::SmbBody),
}

impl<'a> BlockSource for PeerSource<'a> {
    type Body = PeerBody<'a>;

    async fn open_run(
        &self,
        file: &crate::manifest::FileEntry,
        range: std::ops::Range<u64>,
    ) -> Result<Opened<PeerBody<'a>>, HttpFailure> {
        Ok(match self {
            PeerSource::Http(h) => match h.open_run(file, range).await? {
                Opened::Body { body, skip } => Opened::Body {
                    body: PeerBody::Http(body),
                    skip,
                },
                Opened::NotHeld => Opened::NotHeld,
            },
            PeerSource::Smb(s) => match s.open_run(file, range).await? {
                Opened::Body { body, skip } => Opened::Body {
                    body: PeerBody::Smb(body),
                    skip,
                },
                Opened::NotHeld => Opened::NotHeld,
            },
        })
    }
}

impl RunBody for PeerBody<'_> {
    async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, HttpFailure> {
        match self {
            PeerBody::Http(b) => b.next_chunk().await,
            PeerBody::Smb(b) => b.next_chunk().await,
        }
    }
}

impl PeerClient {
    /// A client with these options.
    pub fn new(opts: PeerClientOptions) -> Result<PeerClient, PeerError> {
        // Plain HTTP gets a client that trusts nothing (see `transfer`).
        let plain = tls_config(Roots::Nothing, None)
            .map_err(|e| PeerError::Setup(e.to_string()))
            .and_then(|tls| build_clients(&opts, tls))?;
        Ok(PeerClient {
            plain,
            tls: opts.tls.clone().map(|t| Arc::new(PeerTls::new(t))),
            opts: Arc::new(opts),
            counters: Arc::new(PeerClientCounters::default()),
        })
    }

    /// True with FanOut: copies take blocks from other holders too.
    pub fn fan_out(&self) -> bool {
        self.opts.fan_out.is_some()
    }

    /// True with FanOut over SMB: holders are heard on the subnet, and this agent
    /// is one of them when it serves its share.
    pub(super) fn hears_holders(&self) -> bool {
        self.opts.heard_holders.is_some()
    }

    /// True when holders must offer a P2P account to be copied from: this agent
    /// authenticates with their P2P accounts (no machine account, no client
    /// certificate).
    pub(super) fn needs_account(&self) -> bool {
        self.opts.credentials.is_none() && !self.tls.as_ref().is_some_and(|t| t.uses_client_cert())
    }

    /// This client's counters.
    pub fn counters(&self) -> &Arc<PeerClientCounters> {
        &self.counters
    }

    /// The protocols this client can speak: HTTP and SMB, and HTTPS when it has
    /// TLS settings.
    pub fn implemented(&self) -> Protocols {
        let p = Protocols::NONE.with(Protocol::Http).with(Protocol::Smb);
        if self.tls.is_some() {
            p.with(Protocol::Https)
        } else {
            p
        }
    }

    /// Where `id`/`version` is on `target` over `proto`.
    fn route_over(
        &self,
        target: &MasterTarget,
        proto: Protocol,
        id: &str,
        version: u32,
    ) -> Result<Route, PeerError> {
        let (scheme, port, clients) = match (proto, &self.tls) {
            (Protocol::Https, Some(tls)) => (
                "https",
                target.https_port,
                tls.clients(target, |config| build_clients(&self.opts, config))?,
            ),
            _ => ("http", target.http_port, self.plain.clone()),
        };
        let addr = SocketAddr::new(target.addr, port);
        let root = Url::parse(&format!("{scheme}://{addr}/"))
            .map_err(|e| PeerError::Setup(format!("master address {addr}: {e}")))?;
        let by_certificate =
            proto == Protocol::Https && self.tls.as_ref().is_some_and(|t| t.uses_client_cert());
        let credentials = match &self.opts.credentials {
            _ if by_certificate => None,
            Some((u, p)) => Some((u.clone(), p.clone())),
            None => Some(p2p_credentials(&target.p2p_key)),
        };
        Ok(Route {
            protocol: proto,
            urls: ContentUrls::new(&root, &["content", id, &version.to_string()]),
            credentials,
            clients,
            smb: None,
        })
    }

    /// Log on to `target`'s SMB share and read the manifest of `id`/`version`
    /// there: with this host's machine account when it has one (`SpecialNetShare`
    /// 0x80), as over HTTP, else with the master's P2P account.
    async fn route_over_smb(
        &self,
        target: &MasterTarget,
        id: &str,
        version: u32,
    ) -> Result<Route, PeerError> {
        let addr = SocketAddr::new(target.addr, self.opts.smb_port);
        let machine = self.opts.credentials.is_some();
        let (user, password) = match &self.opts.credentials {
            Some((u, p)) => (u.clone(), p.clone()),
            None => p2p_credentials(&target.p2p_key),
        };
        // A master registers a machine account when it hears the host's election
        // message (see crate::smb::machines): a refusal right after the election
        // may only mean it is not registered yet. Asked again a few times.
        let mut waits = SMB_MACHINE_RETRY.iter();
        let (smb, read) = loop {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let opened = super::smb::open(
                addr,
                (&user, &password),
                id,
                version,
                self.opts.connect_timeout,
                self.opts.stall_timeout,
            )
            .await;
            match opened {
                Err(PeerError::Http(f)) if machine && f.status() == Some(403) => {
                    let Some(wait) = waits.next() else {
                        return Err(PeerError::Http(f));
                    };
                    debug!(%addr, account = %user, ?wait, "SMB log-on with the machine account refused; asking again");
                    tokio::time::sleep(*wait).await;
                }
                other => break other?,
            }
        };
        self.counters
            .bytes_received
            .fetch_add(read, Ordering::Relaxed);
        let root = Url::parse(&format!("smb://{addr}/"))
            .map_err(|e| PeerError::Setup(format!("master address {addr}: {e}")))?;
        Ok(Route {
            protocol: Protocol::Smb,
            urls: ContentUrls::new(&root, &[crate::smb::SHARE_NAME, id, &version.to_string()]),
            credentials: Some((user, password)),
            clients: self.plain.clone(),
            smb: Some(smb),
        })
    }

    /// Reach `id`/`version` on `target` over the first protocol that works, in the
    /// order of [`protocol_order`]: each is tried with a `have` request, and a
    /// failure (refused connection, rejected certificate, refused credentials) is
    /// logged with its code before the next is tried. The last failure is returned
    /// when none works.
    pub(super) async fn open(
        &self,
        target: &MasterTarget,
        local: Protocols,
        id: &str,
        version: u32,
    ) -> Result<Route, PeerError> {
        let order = protocol_order(local, target.protocols, self.implemented())?;
        let mut failed = None;
        for (i, &proto) in order.iter().enumerate() {
            let route = match proto {
                Protocol::Smb => self.route_over_smb(target, id, version).await,
                _ => self.route_over(target, proto, id, version),
            };
            let tried = match route {
                Ok(route) => self.have(&route, None).await.map(|_| route),
                Err(e) => Err(e),
            };
            let e = match tried {
                Ok(route) => {
                    return Ok(route);
                }
                // The protocol works; the master does not hold the content (yet):
                // another protocol would say the same.
                Err(e) if e.is_not_held() => return Err(e),
                Err(e) => e,
            };
            // Name the certificate this agent offered: the master's log names it
            // too, with its reason.
            let offered = match (proto, &self.tls) {
                (Protocol::Https, Some(t)) => t.offered(),
                _ => None,
            };
            let certificate_refused = offered.is_some()
                && matches!(
                    e.code(),
                    crate::codes::Code::SECURE_FAILURE | crate::codes::Code::CLIENT_CERT_MISSING
                );
            let offered = offered.as_deref().unwrap_or("-");
            match order.get(i + 1) {
                Some(next) => warn!(master = %target.addr, code = %e.code(), error = %e,
                    client_certificate = %offered, "peer copy over {proto} failed; trying {next}"),
                None if i > 0 => warn!(master = %target.addr, code = %e.code(), error = %e,
                    client_certificate = %offered, "peer copy over {proto} failed too; no protocol left"),
                // The only protocol, refused over its certificates: the job's
                // failure says the rest, but not which certificate the master refused.
                None if certificate_refused => {
                    warn!(master = %target.addr, code = %e.code(), error = %e,
                    client_certificate = %offered, "peer copy over {proto} failed")
                }
                None => {}
            }
            failed = Some(e);
        }
        Err(failed.expect("protocol_order is never empty"))
    }

    fn get(&self, route: &Route, url: Url, poll: bool) -> reqwest::RequestBuilder {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let client = if poll {
            &route.clients.poll
        } else {
            &route.clients.data
        };
        let req = client.get(url);
        match &route.credentials {
            Some((user, password)) => req.basic_auth(user, Some(password)),
            None => req,
        }
    }

    /// The content's files on the master, as a source for the transfer engine.
    pub(super) fn source<'a>(&'a self, route: &'a Route) -> PeerSource<'a> {
        if let Some(smb) = &route.smb {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            return PeerSource::Smb(smb.source());
        }
        PeerSource::Http(HttpSource {
            remote: Remote::Master,
            client: &route.clients.data,
            files: route.urls.join(&["files"]),
            credentials: route
                .credentials
                .as_ref()
                .map(|(u, p)| (u.as_str(), p.as_str())),
            // The data client's read timeout is the stall timeout.
            stall: None,
            throttle: None,
            requests: Some(&self.counters.requests),
        })
    }

    /// The master's manifest of `id`/`version` (over the first protocol that works),
    /// checked to be for that id and version and, with `expect_hash`, to have that
    /// content hash ([`PeerError::ManifestMismatch`] otherwise). Without a hash the
    /// master is trusted: callers check against the content hash when they have one,
    /// as the origin's `fetch_manifest` does.
    pub async fn fetch_manifest(
        &self,
        target: &MasterTarget,
        local: Protocols,
        id: &str,
        version: u32,
        expect_hash: Option<&str>,
    ) -> Result<Manifest, PeerError> {
        let route = self.open(target, local, id, version).await?;
        if let Some(smb) = &route.smb {
            // Read (and parsed) at log-on.
            let m = smb.manifest().clone();
            m.check_is(id, version, expect_hash)
                .map_err(|e| PeerError::ManifestMismatch(format!("smb://{}: {e}", smb.addr())))?;
            return Ok(m);
        }
        let url = route.urls.url(&[MANIFEST_FILE]);
        let failed = |e: reqwest::Error| classify(Remote::Master, &url, &e);
        let resp = self
            .get(&route, url.clone(), false)
            .send()
            .await
            .map_err(failed)?;
        debug!(remote = "peer", url = %url, status = resp.status().as_u16(), "manifest request answered");
        check_status(Remote::Master, &url, resp.status())?;
        let bytes = resp.bytes().await.map_err(failed)?;
        self.counters
            .bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let m = Manifest::parse(&bytes).map_err(|source| PeerError::Manifest {
            url: url.to_string(),
            source,
        })?;
        m.check_is(id, version, expect_hash)
            .map_err(|e| PeerError::ManifestMismatch(format!("{url}: {e}")))?;
        Ok(m)
    }

    /// The master's verified blocks; with `after`, wait (up to `long_poll`) until it
    /// holds more than `after`.
    pub(super) async fn have(
        &self,
        route: &Route,
        after: Option<usize>,
    ) -> Result<(HaveDoc, Vec<u8>), PeerError> {
        self.have_as(route, after, None).await
    }

    /// [`PeerClient::have`], describing this agent as holding `holding` blocks
    /// (FanOut, to a master: the answer then names other holders).
    pub(super) async fn have_as(
        &self,
        route: &Route,
        after: Option<usize>,
        holding: Option<usize>,
    ) -> Result<(HaveDoc, Vec<u8>), PeerError> {
        if let Some(smb) = &route.smb {
            // Nothing is said to an SMB master: the holders are those heard on the
            // subnet (FanOut over SMB), the master left out.
            let wait = match after {
                Some(_) => self.opts.long_poll.min(super::MAX_HAVE_WAIT),
                None => Duration::ZERO,
            };
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let (mut doc, bitmap, read) = smb.have(after, wait).await?;
            self.counters
                .bytes_received
                .fetch_add(read, Ordering::Relaxed);
            if let (Some(heard), Some(_)) = (&self.opts.heard_holders, holding) {
                let key = crate::manifest::ContentKey::new(doc.content_id.clone(), doc.version)
                    .map_err(|e| PeerError::ManifestMismatch(e.to_string()))?;
                let master = smb.addr().ip();
                doc.holders = heard.registry.others(&key, heard.me);
                doc.holders.retain(|h| h.addr != master);
                doc.you = Some(heard.me);
            }
            return Ok((doc, bitmap));
        }
        let mut url = route.urls.url(&["have"]);
        let mut deadline = self.opts.stall_timeout;
        if let Some(after) = after {
            let wait = self.opts.long_poll.min(super::MAX_HAVE_WAIT);
            url.set_query(Some(&format!("after={after}&wait_ms={}", wait.as_millis())));
            deadline += wait;
        }
        let failed = |e: reqwest::Error| classify(Remote::Master, &url, &e);
        let mut req = self.get(route, url.clone(), true).timeout(deadline);
        if let (Some(me), Some(n)) = (&self.opts.fan_out, holding) {
            req = req.header(super::swarm::HOLDER_HEADER, me.ad(n).to_header());
        }
        let resp = req.send().await.map_err(failed)?;
        debug!(remote = "peer", url = %url, status = resp.status().as_u16(), "have request answered");
        check_status(Remote::Master, &url, resp.status())?;
        let bytes = resp.bytes().await.map_err(failed)?;
        self.counters
            .bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let bad = |detail: String| HttpFailure::bad_response(Remote::Master, &url, detail);
        let doc: HaveDoc =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad have document: {e}")))?;
        let bitmap = hex::decode(&doc.bitmap).map_err(|e| bad(format!("bad have bitmap: {e}")))?;
        if bitmap.len() != doc.block_count.div_ceil(8) {
            return Err(bad(format!(
                "have bitmap holds {} bytes for {} blocks",
                bitmap.len(),
                doc.block_count
            ))
            .into());
        }
        Ok((doc, bitmap))
    }
}
