//! How a peer reaches a master over HTTPS: which check its certificate must pass
//! ([`MasterCheck`]), and one TLS client per master and check, kept while in use.
//!
//! The check follows the page's "Server authentication":
//!
//! - a peer with `P2PSslSettings` 0x1 expects PKI masters: the certificate must
//!   chain to a CA of its store's `trusted/`, be valid now, be for server
//!   authentication, and carry one of the names the master announced (its host
//!   name or FQDN), unless this peer uses net literal names (`P2PEnabled` 0x08);
//! - a peer without 0x1 takes the master's word for which kind it uses: a master
//!   that announced a fingerprint presents its self-signed certificate, whose
//!   issuer is not validated but whose fingerprint must be the one announced (a
//!   master that presents another one is refused); a master that announced none
//!   presents a PKI certificate, checked as above.
//!
//! A PKI check with no CA in `trusted/` cannot succeed: it is refused before any
//! connection with 0xA (this peer's environment lacks what the check needs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::RootCertStore;

use super::client::MasterTarget;
use super::PeerError;
use crate::certstore::{CertStore, ClientCerts, MasterCheck, MasterVerifier};

/// At most this many masters' TLS clients are kept; past it the cache starts over
/// (a subnet has few masters at a time, and a client is cheap to build again).
const MAX_CLIENTS: usize = 32;

/// How this peer checks masters' certificates.
#[derive(Clone, Debug)]
pub struct PeerTlsOptions {
    /// The store whose `trusted/` holds the CAs (read again by the agent when it
    /// changes: a CA added takes effect at the next connection to a master).
    pub store: Arc<CertStore>,
    /// `P2PSslSettings` 0x1: masters must present PKI certificates.
    pub require_pki: bool,
    /// `P2PEnabled` 0x08: masters are reached by address, so a certificate that
    /// does not name the master is not refused for that (chain and dates still are).
    pub literal_names: bool,
    /// `P2PSslSettings` 0x2: this agent proves itself to masters with this client
    /// certificate (and sends no account credentials over HTTPS); `None`: with the
    /// P2P or machine account.
    pub client_cert: Option<Arc<ClientCerts>>,
}

/// What identifies one master's TLS client: the same master presenting the same
/// kind of certificate, checked against the same CAs, reuses its connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    addr: std::net::SocketAddr,
    pin: Option<[u8; 32]>,
    names: Vec<String>,
    roots: Vec<String>,
}

/// The data and long-poll clients for one master over HTTPS.
#[derive(Clone, Debug)]
pub(super) struct TlsClients {
    pub(super) data: reqwest::Client,
    pub(super) poll: reqwest::Client,
}

/// The peer's TLS side: checks and cached clients.
#[derive(Debug)]
pub(super) struct PeerTls {
    opts: PeerTlsOptions,
    provider: Arc<rustls::crypto::CryptoProvider>,
    clients: Mutex<HashMap<ClientKey, TlsClients>>,
}

impl PeerTls {
    /// True when this agent authenticates with a client certificate over HTTPS.
    pub(super) fn uses_client_cert(&self) -> bool {
        self.opts.client_cert.is_some()
    }

    /// The thumbprint of the client certificate offered now, for messages.
    pub(super) fn offered(&self) -> Option<String> {
        let c = self.opts.client_cert.as_ref()?;
        match c.state() {
            crate::certstore::ClientCertState::Chosen(l) => Some(l.thumbprint),
            _ => None,
        }
    }

    pub(super) fn new(opts: PeerTlsOptions) -> PeerTls {
        PeerTls {
            opts,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The check `target`'s certificate must pass, and the key its client is kept
    /// under.
    fn check(&self, target: &MasterTarget) -> Result<(MasterCheck, ClientKey), PeerError> {
        let addr = std::net::SocketAddr::new(target.addr, target.https_port);
        if let (false, Some(pin)) = (self.opts.require_pki, target.cert_fingerprint) {
            let key = ClientKey {
                addr,
                pin: Some(pin),
                names: Vec::new(),
                roots: Vec::new(),
            };
            return Ok((MasterCheck::Pinned(pin), key));
        }
        let trusted = &self.opts.store.contents().trusted;
        if trusted.is_empty() {
            return Err(PeerError::NoTrustedCa {
                master: addr,
                trusted: self.opts.store.dir().join("trusted"),
                why: if self.opts.require_pki {
                    "this agent requires PKI master certificates (P2PSslSettings 0x1)"
                } else {
                    "the master announced no self-signed certificate, so it presents a PKI one"
                },
            });
        }
        let mut roots = RootCertStore::empty();
        for t in trusted.iter() {
            // A CA rustls cannot use is skipped: the others still count, and a
            // master it would have vouched for is refused with its reason.
            let _ = roots.add(t.der.clone());
        }
        let key = ClientKey {
            addr,
            pin: None,
            names: target.names.clone(),
            roots: trusted.iter().map(|t| t.info.thumbprint.clone()).collect(),
        };
        let check = MasterCheck::Pki {
            roots: Arc::new(roots),
            names: target.names.clone(),
            ignore_name: self.opts.literal_names,
        };
        Ok((check, key))
    }

    /// The clients for `target`, built on first use with `build` (which gets the
    /// TLS settings for this master).
    pub(super) fn clients(
        &self,
        target: &MasterTarget,
        build: impl Fn(rustls::ClientConfig) -> Result<TlsClients, PeerError>,
    ) -> Result<TlsClients, PeerError> {
        let (check, key) = self.check(target)?;
        let mut clients = self.clients.lock().expect("tls clients lock");
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let verifier = MasterVerifier::new(check, Arc::clone(&self.provider));
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| PeerError::Setup(format!("TLS versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match &self.opts.client_cert {
            Some(c) => config.with_client_cert_resolver(Arc::clone(c) as _),
            None => config.with_no_client_auth(),
        };
        let built = build(config)?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, built.clone());
        Ok(built)
    }
}
