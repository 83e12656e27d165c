//! The self-signed server certificate the agent uses when `P2PSslSettings` lacks
//! 0x1 (the product's "NomadBranch" certificate): generated on first need, kept
//! across restarts, and made anew when it nears its end or no longer names the host.
//!
//! Peers do not validate its issuer (the page); they pin the SHA-256 fingerprint the
//! master announces in its election messages instead ([`fingerprint`]).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use super::{CertInfo, HostIdentity, OwnedCert};

/// Issuer and subject organisation of the agent's own certificates.
pub const SELF_SIGNED_ORG: &str = "contentdist self-signed";
/// How long a new self-signed certificate is valid.
const VALID_DAYS: i64 = 365;
/// Renewed when fewer days than this remain.
const RENEW_DAYS: i64 = 30;

/// The self-signed certificate could not be made or kept.
#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    /// Generating the key or the certificate failed.
    #[error("generating the self-signed certificate: {0}")]
    Generate(String),
    /// Writing it failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// SHA-256 of a DER certificate: what a master announces and peers pin.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// The self-signed certificate kept in `dir` (`self-signed.pem` and `.key`), made
/// (again) when missing, unreadable, within [`RENEW_DAYS`] of its end, or not
/// naming `id`'s host name and FQDN. `now` in Unix seconds.
pub fn self_signed(dir: &Path, id: &HostIdentity, now: i64) -> Result<OwnedCert, SelfSignedError> {
    let cert_path = dir.join("self-signed.pem");
    let key_path = dir.join("self-signed.key");
    if let Some(c) = read_kept(&cert_path, &key_path) {
        let fits = c.info.names(&id.host_name) && c.info.names(&id.fqdn);
        if fits && c.info.not_after - now > RENEW_DAYS * 86_400 && c.info.not_before <= now {
            return Ok(c);
        }
        tracing::info!(thumbprint = %c.info.thumbprint, "renewing the self-signed server certificate");
    }
    let (cert_pem, key_pem) = generate(id, now)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SelfSignedError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    write_private(&key_path, key_pem.as_bytes(), 0o600).map_err(io(&key_path))?;
    write_private(&cert_path, cert_pem.as_bytes(), 0o644).map_err(io(&cert_path))?;
    let c = read_kept(&cert_path, &key_path).ok_or_else(|| {
        SelfSignedError::Generate("the new certificate does not read back".into())
    })?;
    tracing::info!(thumbprint = %c.info.thumbprint, not_after = %super::utc(c.info.not_after),
        "made a self-signed server certificate");
    Ok(c)
}

/// Write through a temporary file and a rename, with `mode` from the start (a key
/// is never readable by others, not even for a moment).
fn write_private(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn read_kept(cert_path: &Path, key_path: &Path) -> Option<OwnedCert> {
    let der = CertificateDer::from_pem_file(cert_path).ok()?;
    let key = PrivateKeyDer::from_pem_file(key_path).ok()?;
    let info = CertInfo::from_der(&der).ok()?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(vec![der], key, &provider).ok()?;
    Some(OwnedCert {
        info,
        key: Arc::new(key),
        file: cert_path.to_path_buf(),
    })
}

fn generate(id: &HostIdentity, now: i64) -> Result<(String, String), SelfSignedError> {
    let err = |e: rcgen::Error| SelfSignedError::Generate(e.to_string());
    let mut names = vec![id.host_name.clone()];
    if !id.fqdn.eq_ignore_ascii_case(&id.host_name) {
        names.push(id.fqdn.clone());
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, id.host_name.clone());
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, SELF_SIGNED_ORG);
    let start = time::OffsetDateTime::from_unix_timestamp(now - 3600)
        .map_err(|e| SelfSignedError::Generate(e.to_string()))?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(VALID_DAYS);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}
