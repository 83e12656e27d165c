//! One certificate as the selection rules see it.

use sha1::{Digest, Sha1};
use x509_parser::prelude::*;

/// A certificate that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("not an X.509 certificate: {0}")]
pub struct CertError(String);

/// The facts of one certificate that the product's rules look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-1 of the DER certificate, upper-case hex without colons: what
    /// `openssl x509 -fingerprint -sha1` prints, less the colons (the product's
    /// "thumbprint").
    pub thumbprint: String,
    /// The subject, as `CN=…, O=…`.
    pub subject: String,
    /// The subject's common names.
    pub common_names: Vec<String>,
    /// The DNS names of the subject alternative name extension.
    pub dns_names: Vec<String>,
    /// The issuer, as `CN=…, O=…`.
    pub issuer: String,
    /// Valid from (Unix seconds).
    pub not_before: i64,
    /// Valid until (Unix seconds).
    pub not_after: i64,
    /// Usable for server authentication: the extended key usage lists it (or any
    /// usage), or the certificate has no extended key usage at all, which by X.509
    /// (and Windows) means every usage.
    pub server_auth: bool,
    /// Usable for client authentication, by the same reading.
    pub client_auth: bool,
    /// Subject and issuer are the same name.
    pub self_signed: bool,
}

/// The thumbprint of a DER certificate (see [`CertInfo::thumbprint`]).
pub fn thumbprint(der: &[u8]) -> String {
    hex::encode_upper(Sha1::digest(der))
}

impl CertInfo {
    /// Read the facts of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, CertError> {
        let (_, cert) = parse_x509_certificate(der).map_err(|e| CertError(e.to_string()))?;
        let names = |name: &X509Name| -> Vec<String> {
            name.iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_string))
                .collect()
        };
        let dns_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let (server_auth, client_auth) = match cert.extended_key_usage() {
            Ok(Some(eku)) => {
                let e = eku.value;
                (e.any || e.server_auth, e.any || e.client_auth)
            }
            // Without the extension a certificate is not restricted.
            Ok(None) => (true, true),
            // A malformed extension restricts it to nothing.
            Err(_) => (false, false),
        };
        Ok(CertInfo {
            thumbprint: thumbprint(der),
            subject: cert.subject().to_string(),
            common_names: names(cert.subject()),
            dns_names,
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            server_auth,
            client_auth,
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
        })
    }

    /// True when the subject's common name or a DNS name is `name` (case-insensitive).
    pub fn names(&self, name: &str) -> bool {
        !name.is_empty()
            && self
                .common_names
                .iter()
                .chain(&self.dns_names)
                .any(|n| n.eq_ignore_ascii_case(name))
    }
}
