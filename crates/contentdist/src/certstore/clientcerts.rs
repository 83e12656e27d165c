//! This agent's client certificate (the page's "Client authentication certificate
//! selection" and "Caching of certificates"): chosen from `my/` by the four rules
//! (or the `[Platform] thumbprint` exception), then **kept** and presented to every
//! master and to an HTTPS origin that asks, until it expires or leaves the store;
//! only then is one chosen again. A newer certificate added meanwhile does not
//! replace a cached one that is still good, as in the product.
//!
//! The boot-image certificate (`BootImageCertFile`, the page's Windows PE
//! certificate) comes first in preboot mode; in the full OS it is used when the
//! store has no usable one (a task sequence carried it over).
//!
//! rustls asks [`ClientCerts`] at every handshake that requests a certificate
//! (`ResolvesClientCert`); the agent calls [`ClientCerts::refresh`] at start and
//! whenever it looks at the store.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{client_usable, load_owned, select_client, utc, CertStore, ClientRules, OwnedCert};

/// What [`ClientCerts`] needs.
#[derive(Clone, Debug)]
pub struct ClientCertOptions {
    /// The store (`CertStoreDir`).
    pub store: Arc<CertStore>,
    /// `CertIssuer`, `CertSubject`, `[Platform] thumbprint`.
    pub rules: ClientRules,
    /// `BootImageCertFile`: PEM (certificate and key) or PKCS#12 (password in
    /// `NAME.pass` beside it).
    pub boot_image: Option<PathBuf>,
    /// Preboot mode: the boot-image certificate comes first.
    pub preboot: bool,
}

/// The client certificate in use, as the log, `status` and `certs` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCertLine {
    /// "store", "platform thumbprint" or "boot image".
    pub source: String,
    /// The subject.
    pub subject: String,
    /// The issuer.
    pub issuer: String,
    /// SHA-1, upper-case hex.
    pub thumbprint: String,
    /// Valid until, UTC.
    pub not_after: String,
    /// Valid until, Unix seconds (for the expiry alert of the metrics to come).
    pub not_after_unix: i64,
    /// The file.
    pub file: PathBuf,
}

/// Whether this agent has a client certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClientCertState {
    /// Not looked at yet.
    Unknown,
    /// Presented when a master or an origin asks.
    Chosen(ClientCertLine),
    /// None usable: with `P2PSslSettings` 0x2, jobs wait for one (0x209A).
    Missing {
        /// Why, in words: each certificate considered and its rule.
        reason: String,
    },
}

/// This agent's client certificate, chosen once and cached.
#[derive(Debug)]
pub struct ClientCerts {
    opts: ClientCertOptions,
    /// The rules in force (from `opts`, then from reloads of the settings).
    rules: Mutex<ClientRules>,
    /// The cached choice and where it came from.
    cached: Mutex<Option<(OwnedCert, &'static str)>>,
    state: Mutex<ClientCertState>,
    available: watch::Sender<bool>,
}

impl ClientCerts {
    /// A manager that has chosen nothing yet (call [`ClientCerts::refresh`]).
    pub fn new(opts: ClientCertOptions) -> ClientCerts {
        ClientCerts {
            rules: Mutex::new(opts.rules.clone()),
            opts,
            cached: Mutex::new(None),
            state: Mutex::new(ClientCertState::Unknown),
            available: watch::channel(false).0,
        }
    }

    /// The certificate in use, or why there is none.
    pub fn state(&self) -> ClientCertState {
        self.state.lock().expect("client cert lock").clone()
    }

    /// True while a certificate is in use (a waiting job watches it).
    pub fn available(&self) -> watch::Receiver<bool> {
        self.available.subscribe()
    }

    /// The certificate presented now.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.cached
            .lock()
            .expect("client cert lock")
            .as_ref()
            .map(|(c, _)| Arc::clone(&c.key))
    }

    /// New selection rules (a reload changed `CertIssuer`, `CertSubject` or the
    /// platform thumbprint): the cached choice is dropped, so the next
    /// [`ClientCerts::refresh`] chooses again by them.
    pub fn set_rules(&self, rules: ClientRules) {
        *self.rules.lock().expect("client rules lock") = rules;
        *self.cached.lock().expect("client cert lock") = None;
    }

    /// Keep the cached certificate while it is usable at `now` and still in the
    /// store (or the boot image); else choose again. Returns true when the
    /// certificate in use changed. Reads the boot-image file when it is needed.
    pub fn refresh(&self, now: i64) -> bool {
        let contents = self.opts.store.contents();
        let rules = &self.rules.lock().expect("client rules lock").clone();
        let mut cached = self.cached.lock().expect("client cert lock");
        if let Some((c, source)) = cached.as_ref() {
            let present = *source == "boot image"
                || contents
                    .mine
                    .iter()
                    .any(|m| m.info.thumbprint == c.info.thumbprint);
            if present && client_usable(&c.info, rules, now).is_ok() {
                return false;
            }
        }
        let boot = || -> Result<OwnedCert, String> {
            let path = self
                .opts
                .boot_image
                .as_ref()
                .ok_or_else(|| "no BootImageCertFile".to_string())?;
            let c = load_owned(path).map_err(|e| format!("{}: {e}", path.display()))?;
            client_usable(&c.info, rules, now)
                .map_err(|why| format!("{}: {why}", path.display()))?;
            Ok(c)
        };
        let from_store = || -> Result<(OwnedCert, &'static str), String> {
            let infos: Vec<_> = contents.mine.iter().map(|c| c.info.clone()).collect();
            let choice = select_client(&infos, rules, now);
            match choice.chosen {
                Some(i) => Ok((
                    contents.mine[i].clone(),
                    if choice.by_platform_thumbprint {
                        "platform thumbprint"
                    } else {
                        "store"
                    },
                )),
                None if infos.is_empty() => Err(format!(
                    "{} holds no certificate with its private key",
                    self.opts.store.dir().join("my").display()
                )),
                None => Err(choice
                    .rejected
                    .iter()
                    .map(|(i, why)| {
                        format!("{} ({}): {why}", infos[*i].thumbprint, infos[*i].subject)
                    })
                    .collect::<Vec<_>>()
                    .join("; ")),
            }
        };
        let chosen = if self.opts.preboot {
            boot()
                .map(|c| (c, "boot image"))
                .or_else(|b| from_store().map_err(|s| format!("boot image: {b}; store: {s}")))
        } else {
            from_store().or_else(|s| match &self.opts.boot_image {
                Some(_) => boot()
                    .map(|c| (c, "boot image"))
                    .map_err(|b| format!("store: {s}; boot image: {b}")),
                None => Err(s),
            })
        };
        let (next, key) = match chosen {
            Ok((c, source)) => {
                let line = ClientCertLine {
                    source: source.to_string(),
                    subject: c.info.subject.clone(),
                    issuer: c.info.issuer.clone(),
                    thumbprint: c.info.thumbprint.clone(),
                    not_after: utc(c.info.not_after),
                    not_after_unix: c.info.not_after,
                    file: c.file.clone(),
                };
                (ClientCertState::Chosen(line), Some((c, source)))
            }
            Err(reason) => (ClientCertState::Missing { reason }, None),
        };
        let changed = cached.as_ref().map(|(c, _)| &c.info.thumbprint)
            != key.as_ref().map(|(c, _)| &c.info.thumbprint);
        *cached = key;
        drop(cached);
        let mut state = self.state.lock().expect("client cert lock");
        if *state != next {
            match &next {
                ClientCertState::Chosen(l) => {
                    tracing::info!(source = %l.source, subject = %l.subject,
                    issuer = %l.issuer, thumbprint = %l.thumbprint, not_after = %l.not_after,
                    file = %l.file.display(), "client certificate chosen")
                }
                ClientCertState::Missing { reason } => {
                    tracing::info!("no usable client certificate: {reason}")
                }
                ClientCertState::Unknown => {}
            }
            self.available
                .send_replace(matches!(next, ClientCertState::Chosen(_)));
            *state = next;
        }
        changed
    }
}

impl ResolvesClientCert for ClientCerts {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.current().is_some()
    }
}
