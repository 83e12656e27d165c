//! How a master checks the client certificates of its peers (`P2PSslSettings` 0x2,
//! the page's "Certificate-based authentication"): a certificate is required at
//! the TLS handshake, and it must
//!
//! - not be self-signed (the page: self-signed certificates cannot be used for
//!   client authentication);
//! - be for client authentication (extended key usage, or none: every usage);
//! - be valid now;
//! - chain to a CA of the store's `trusted/` (read again when it changes).
//!
//! The first three are checked here before the chain, so that the refusal names
//! the rule; each refusal is answered with the TLS alert that says it (certificate
//! expired, unsupported certificate, unknown CA) and logged with the certificate's
//! subject and thumbprint, at most once a minute per certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};

use super::{CertInfo, CertStore};

/// One log line per refused certificate per this long.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The chain check for one set of trusted CAs.
type Chain = (Vec<String>, Option<Arc<dyn ClientCertVerifier>>);

/// The master's client-certificate check.
pub struct PeerCertVerifier {
    store: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
    /// The chain verifier for the CAs of `trusted/` it was built from (by
    /// thumbprint); `None` when `trusted/` is empty (every certificate refused).
    chain: Mutex<Chain>,
    /// When each refused certificate was last logged, and how many refusals since.
    logged: Mutex<HashMap<String, (Instant, u64)>>,
}

impl std::fmt::Debug for PeerCertVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCertVerifier")
            .field("store", &self.store.dir())
            .finish_non_exhaustive()
    }
}

impl PeerCertVerifier {
    /// A verifier trusting the CAs of `store`'s `trusted/` (as last refreshed).
    pub fn new(store: Arc<CertStore>) -> PeerCertVerifier {
        PeerCertVerifier {
            store,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            chain: Mutex::new((Vec::new(), None)),
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// The chain verifier for the store's CAs now, built again when they changed.
    fn chain(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        let contents = self.store.contents();
        let ids: Vec<String> = contents
            .trusted
            .iter()
            .map(|t| t.info.thumbprint.clone())
            .collect();
        let mut chain = self.chain.lock().expect("verifier lock");
        if chain.0 != ids || (chain.1.is_none() && !ids.is_empty()) {
            let mut roots = RootCertStore::empty();
            for t in &contents.trusted {
                let _ = roots.add(t.der.clone());
            }
            let built = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::clone(&self.provider),
            )
            .build()
            .ok();
            *chain = (ids, built);
        }
        chain.1.clone()
    }

    /// Refuse `info` for `why` (a sentence), answering with `error`'s alert.
    fn refuse(&self, info: Option<&CertInfo>, why: &str, error: CertificateError) -> Error {
        let (subject, thumbprint) = info
            .map(|i| (i.subject.clone(), i.thumbprint.clone()))
            .unwrap_or_else(|| ("(unreadable)".into(), "-".into()));
        let now = Instant::now();
        let mut logged = self.logged.lock().expect("log limit lock");
        if logged.len() > 4096 {
            logged.retain(|_, (t, _)| now.duration_since(*t) < LOG_INTERVAL);
        }
        let entry = logged
            .entry(thumbprint.clone())
            .or_insert((now - LOG_INTERVAL * 2, 0));
        if now.duration_since(entry.0) >= LOG_INTERVAL {
            let not_logged = entry.1;
            *entry = (now, 0);
            // The connection's span names the peer's address.
            tracing::warn!(%subject, %thumbprint, reason = why, not_logged,
                "peer's client certificate refused at the TLS handshake");
        } else {
            entry.1 += 1;
        }
        Error::InvalidCertificate(error)
    }
}

impl ClientCertVerifier for PeerCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: peers choose their certificate by the page's rules, not by the
    /// CAs a master names.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let Ok(info) = CertInfo::from_der(end_entity) else {
            return Err(self.refuse(
                None,
                "not an X.509 certificate",
                CertificateError::BadEncoding,
            ));
        };
        let secs = now.as_secs() as i64;
        if info.self_signed {
            return Err(self.refuse(
                Some(&info),
                "self-signed: client authentication needs a certificate issued by a CA in trusted/",
                CertificateError::UnknownIssuer,
            ));
        }
        if !info.client_auth {
            return Err(self.refuse(
                Some(&info),
                "not for client authentication (extended key usage)",
                CertificateError::InvalidPurpose,
            ));
        }
        if info.not_before > secs {
            return Err(self.refuse(
                Some(&info),
                "not valid yet (NotBefore is in the future)",
                CertificateError::NotValidYet,
            ));
        }
        if info.not_after <= secs {
            return Err(self.refuse(
                Some(&info),
                "expired (NotAfter is in the past)",
                CertificateError::Expired,
            ));
        }
        let Some(chain) = self.chain() else {
            return Err(self.refuse(
                Some(&info),
                "no CA in this master's trusted/ to check it against",
                CertificateError::UnknownIssuer,
            ));
        };
        chain
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| match e {
                Error::InvalidCertificate(c) => {
                    let why = match &c {
                        CertificateError::UnknownIssuer => {
                            "not issued by a CA in this master's trusted/".to_string()
                        }
                        other => format!("chain check failed: {other:?}"),
                    };
                    self.refuse(Some(&info), &why, c)
                }
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        super::verify::signatures::tls12(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        super::verify::signatures::tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        super::verify::signatures::schemes(&self.provider)
    }
}
