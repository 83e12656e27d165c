//! The HTTPS server certificate in force, kept up to date: [`ServerCerts::refresh`]
//! reads the store again when its files changed, applies the page's rules (or keeps
//! the self-signed certificate), and swaps what the listener presents when the
//! choice changed, the chosen one expired, or the self-signed one was renewed.
//!
//! The agent calls it at start and then periodically; each change is logged once
//! (the page's "Checking SSL certificate bindings"), and [`ServerCerts::state`] is
//! what `contentdist status` shows.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{
    fingerprint, select_server, self_signed, utc, CertStore, HostIdentity, IssuerFilter, OwnedCert,
    ServerCertResolver,
};

/// What [`ServerCerts`] needs.
#[derive(Clone, Debug)]
pub struct ServerCertOptions {
    /// The store (`CertStoreDir`).
    pub store: Arc<CertStore>,
    /// `P2PSslSettings` 0x1: a PKI certificate from `my/`; else the self-signed one.
    pub pki: bool,
    /// The names certificates are matched against.
    pub identity: HostIdentity,
    /// `CertIssuer`.
    pub issuers: IssuerFilter,
    /// Where the self-signed certificate is kept.
    pub self_signed_dir: PathBuf,
}

/// The certificate bound to the HTTPS port, as the log and `status` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundCert {
    /// "PKI" or "self-signed".
    pub kind: String,
    /// The subject.
    pub subject: String,
    /// The issuer.
    pub issuer: String,
    /// SHA-1, upper-case hex.
    pub thumbprint: String,
    /// Valid until, UTC.
    pub not_after: String,
    /// Valid until, Unix seconds (the metrics' expiry gauge).
    #[serde(default)]
    pub not_after_unix: i64,
    /// The file it came from.
    pub file: PathBuf,
}

/// A certificate of `my/` that was not chosen, and the rule that rejected it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedCert {
    /// SHA-1, upper-case hex.
    pub thumbprint: String,
    /// The subject.
    pub subject: String,
    /// The file.
    pub file: PathBuf,
    /// Why it was not chosen.
    pub reason: String,
}

/// Whether the HTTPS server has a certificate, and which.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServerCertState {
    /// Not looked at yet.
    Unknown,
    /// Presented to every new connection.
    Bound(BoundCert),
    /// No usable certificate: the HTTPS listener does not listen.
    Unavailable {
        /// Why, in words.
        reason: String,
        /// The certificates of `my/` and the rule each failed (PKI only).
        rejected: Vec<RejectedCert>,
    },
}

/// The server certificate manager of one agent.
#[derive(Debug)]
pub struct ServerCerts {
    opts: ServerCertOptions,
    /// `CertIssuer` in force (from `opts`, then from reloads of the settings).
    issuers: Mutex<IssuerFilter>,
    resolver: Arc<ServerCertResolver>,
    state: Mutex<ServerCertState>,
    usable: watch::Sender<bool>,
    /// SHA-256 of the self-signed certificate in force (announced for pinning);
    /// `None` with a PKI certificate, which peers check against their CAs.
    pin: watch::Sender<Option<[u8; 32]>>,
}

impl ServerCerts {
    /// A manager that has chosen nothing yet (call [`ServerCerts::refresh`]).
    pub fn new(opts: ServerCertOptions) -> ServerCerts {
        ServerCerts {
            issuers: Mutex::new(opts.issuers.clone()),
            opts,
            resolver: Arc::new(ServerCertResolver::default()),
            state: Mutex::new(ServerCertState::Unknown),
            usable: watch::channel(false).0,
            pin: watch::channel(None).0,
        }
    }

    /// A new `CertIssuer` (a reload of the settings); the next
    /// [`ServerCerts::refresh`] chooses by it.
    pub fn set_issuers(&self, issuers: IssuerFilter) {
        *self.issuers.lock().expect("issuers lock") = issuers;
    }

    /// What rustls asks for the certificate at every handshake.
    pub fn resolver(&self) -> Arc<ServerCertResolver> {
        Arc::clone(&self.resolver)
    }

    /// The store.
    pub fn store(&self) -> &Arc<CertStore> {
        &self.opts.store
    }

    /// The certificate in force, or why there is none.
    pub fn state(&self) -> ServerCertState {
        self.state.lock().expect("cert state lock").clone()
    }

    /// True while a certificate is in force (the HTTPS listener listens only then).
    pub fn usable(&self) -> watch::Receiver<bool> {
        self.usable.subscribe()
    }

    /// The pin to announce: the self-signed certificate's SHA-256, or `None`.
    pub fn pin(&self) -> watch::Receiver<Option<[u8; 32]>> {
        self.pin.subscribe()
    }

    /// Choose at `now` (Unix seconds) from the store as last read
    /// ([`CertStore::refresh`] is the caller's), and swap the certificate presented
    /// when the choice changed. Returns true when it did. Blocking: the self-signed
    /// certificate is read from disk, and may be generated.
    pub fn refresh(&self, now: i64) -> bool {
        let chosen = if self.opts.pki {
            self.choose_pki(now)
        } else {
            self_signed(&self.opts.self_signed_dir, &self.opts.identity, now).map_err(|e| {
                (
                    format!("no self-signed certificate: {e}"),
                    Vec::<RejectedCert>::new(),
                )
            })
        };
        let next = match &chosen {
            Ok(c) => ServerCertState::Bound(BoundCert {
                kind: if self.opts.pki { "PKI" } else { "self-signed" }.into(),
                subject: c.info.subject.clone(),
                issuer: c.info.issuer.clone(),
                thumbprint: c.info.thumbprint.clone(),
                not_after: utc(c.info.not_after),
                not_after_unix: c.info.not_after,
                file: c.file.clone(),
            }),
            Err((reason, rejected)) => ServerCertState::Unavailable {
                reason: reason.clone(),
                rejected: rejected.clone(),
            },
        };
        let mut state = self.state.lock().expect("cert state lock");
        if *state == next {
            return false;
        }
        match (&chosen, &next) {
            (Ok(c), ServerCertState::Bound(b)) => {
                self.resolver.set(Some(Arc::clone(&c.key)));
                let pin = (!self.opts.pki).then(|| fingerprint(&c.key.cert[0]));
                self.pin.send_replace(pin);
                self.usable.send_replace(true);
                tracing::info!(kind = %b.kind, subject = %b.subject, issuer = %b.issuer,
                    thumbprint = %b.thumbprint, not_after = %b.not_after,
                    file = %b.file.display(), "HTTPS server certificate bound");
            }
            (_, ServerCertState::Unavailable { reason, rejected }) => {
                self.resolver.set(None);
                self.pin.send_replace(None);
                self.usable.send_replace(false);
                tracing::warn!("HTTPS peer-copy server not listening: {reason}");
                for r in rejected {
                    tracing::warn!(thumbprint = %r.thumbprint, subject = %r.subject,
                        file = %r.file.display(), "not chosen for server authentication: {}", r.reason);
                }
            }
            _ => {}
        }
        *state = next;
        true
    }

    fn choose_pki(&self, now: i64) -> Result<OwnedCert, (String, Vec<RejectedCert>)> {
        let contents = self.opts.store.contents();
        let infos: Vec<_> = contents.mine.iter().map(|c| c.info.clone()).collect();
        let issuers = self.issuers.lock().expect("issuers lock").clone();
        let choice = select_server(&infos, &self.opts.identity, &issuers, now);
        if let Some(i) = choice.chosen {
            return Ok(contents.mine[i].clone());
        }
        let rejected = choice
            .rejected
            .iter()
            .map(|(i, why)| {
                let c = &contents.mine[*i];
                RejectedCert {
                    thumbprint: c.info.thumbprint.clone(),
                    subject: c.info.subject.clone(),
                    file: c.file.clone(),
                    reason: why.to_string(),
                }
            })
            .collect();
        let my = self.opts.store.dir().join("my");
        let reason = if infos.is_empty() {
            format!(
                "P2PSslSettings 0x1 asks for a PKI server certificate, and {} holds none (with its private key); add one for {} or {} with the Server Authentication usage (contentdist certs)",
                my.display(),
                self.opts.identity.host_name,
                self.opts.identity.fqdn
            )
        } else {
            format!(
                "P2PSslSettings 0x1 asks for a PKI server certificate, and none of the {} in {} qualifies (see below, or contentdist certs)",
                infos.len(),
                my.display()
            )
        };
        Err((reason, rejected))
    }
}
