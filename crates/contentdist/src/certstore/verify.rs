//! How a peer checks a master's certificate (the page's "Server authentication"):
//!
//! - a PKI certificate must chain to a CA of `trusted/`, be valid now and be for
//!   server authentication, and name the master (its host name or FQDN) unless the
//!   peers reach masters by IP address (net literal names, `P2PEnabled` 0x08), when
//!   a name mismatch is ignored but chain and dates are not;
//! - a self-signed certificate's issuer is not validated (it is no CA), but it must
//!   be the very certificate the master announced in its election messages (SHA-256
//!   pin) and be valid now.
//!
//! Handshake signatures are always verified with the presented certificate's key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use super::{fingerprint, CertInfo};

/// What a peer expects of one master's certificate.
#[derive(Clone, Debug)]
pub enum MasterCheck {
    /// Issued through one of `roots` (the store's `trusted/`).
    Pki {
        /// The trusted CAs.
        roots: Arc<RootCertStore>,
        /// Names the certificate may carry (the master's host name or FQDN).
        names: Vec<String>,
        /// Net literal names: a name mismatch is ignored.
        ignore_name: bool,
    },
    /// Self-signed, and exactly the certificate with this SHA-256 fingerprint.
    Pinned([u8; 32]),
}

/// A rustls verifier applying a [`MasterCheck`].
#[derive(Debug)]
pub struct MasterVerifier {
    check: MasterCheck,
    provider: Arc<CryptoProvider>,
}

impl MasterVerifier {
    /// A verifier for `check`, with `provider`'s signature algorithms.
    pub fn new(check: MasterCheck, provider: Arc<CryptoProvider>) -> MasterVerifier {
        MasterVerifier { check, provider }
    }
}

fn dates(end_entity: &CertificateDer<'_>, now: UnixTime) -> Result<(), Error> {
    let info = CertInfo::from_der(end_entity)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let now = now.as_secs() as i64;
    if info.not_before > now {
        return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
    }
    if info.not_after <= now {
        return Err(Error::InvalidCertificate(CertificateError::Expired));
    }
    Ok(())
}

impl ServerCertVerifier for MasterVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match &self.check {
            MasterCheck::Pinned(pin) => {
                if fingerprint(end_entity) != *pin {
                    return Err(Error::InvalidCertificate(CertificateError::Other(
                        rustls::OtherError(Arc::new(PinMismatch)),
                    )));
                }
                dates(end_entity, now)?;
            }
            MasterCheck::Pki {
                roots,
                names,
                ignore_name,
            } => {
                let parsed = ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_cert_signed_by_trust_anchor(
                    &parsed,
                    roots,
                    intermediates,
                    now,
                    self.provider.signature_verification_algorithms.all,
                )?;
                if !ignore_name {
                    // The name rule the master chose its certificate by (subject
                    // common name or DNS name, without case), so that a certificate
                    // a master may select is one its peers accept: webpki alone
                    // would ignore a common name.
                    let info = CertInfo::from_der(end_entity)
                        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
                    if !names.iter().any(|n| info.names(n)) {
                        return Err(Error::InvalidCertificate(CertificateError::NotValidForName));
                    }
                }
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        signatures::tls12(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        signatures::tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signatures::schemes(&self.provider)
    }
}

/// Handshake signatures, checked the same way by the master's and the peer's
/// verifiers: with the presented certificate's key and the provider's algorithms.
pub(super) mod signatures {
    use rustls::client::danger::HandshakeSignatureValid;
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::CertificateDer;
    use rustls::{DigitallySignedStruct, Error, SignatureScheme};

    pub(in crate::certstore) fn tls12(
        p: &CryptoProvider,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &p.signature_verification_algorithms,
        )
    }

    pub(in crate::certstore) fn tls13(
        p: &CryptoProvider,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &p.signature_verification_algorithms,
        )
    }

    pub(in crate::certstore) fn schemes(p: &CryptoProvider) -> Vec<SignatureScheme> {
        p.signature_verification_algorithms.supported_schemes()
    }
}

/// The master presented another certificate than the one it announced.
struct PinMismatch;

// rustls shows the cause with `Debug`: make that the sentence too.
impl std::fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the master presented another self-signed certificate than the one it announced"
        )
    }
}

impl std::error::Error for PinMismatch {}
