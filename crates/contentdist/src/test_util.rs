//! Helpers for the in-process tests of agents and jobs: a published content served
//! by the lab origin, and waiting on a condition with a deadline.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::lab::origin::{LabOrigin, LabOriginOptions};
use crate::publish::{publish, PublishOptions};

/// Content `ID/1`, `size` bytes of generated data in two files, published under
/// `dir/origin` and served by a lab origin capped at `rate` bytes/s.
pub struct TestOrigin {
    pub origin: LabOrigin,
    pub src: PathBuf,
    stop: CancellationToken,
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestOrigin {
    pub fn start(dir: &Path, id: &str, size: usize, rate: Option<u64>) -> TestOrigin {
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(src.join("sub/big.bin"), &data).unwrap();
        std::fs::write(src.join("small.txt"), b"small file").unwrap();
        publish(&PublishOptions {
            source_dir: src.clone(),
            content_id: id.into(),
            version: 1,
            out_root: dir.join("origin"),
            ..PublishOptions::default()
        })
        .unwrap();
        let stop = CancellationToken::new();
        let origin = LabOrigin::start(LabOriginOptions {
            root: dir.join("origin"),
            rate_bytes_per_sec: rate,
            shutdown: stop.clone(),
            ..LabOriginOptions::default()
        })
        .unwrap();
        TestOrigin { origin, src, stop }
    }

    pub fn url(&self) -> String {
        self.origin.url()
    }
}

/// Poll `cond` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A CA and leaves it issues, made with rcgen (fast; the openssl PKI is for the
/// integration tests).
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate.
    pub der: rustls::pki_types::CertificateDer<'static>,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (the first is also its common name), valid `from..to`
    /// days around now, with `usage`: certificate and key, PEM.
    pub fn leaf_pem(
        &self,
        names: &[&str],
        days: (i64, i64),
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        self.leaf_pem_with(names, names, days, usage)
    }

    /// [`TestCa::leaf_pem`] with the common name `names[0]` and the DNS names
    /// `dns` apart (`dns` empty: a certificate named by its subject only).
    pub fn leaf_pem_with(
        &self,
        names: &[&str],
        dns: &[&str],
        days: (i64, i64),
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some(cn) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, *cn);
        }
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days.0);
        params.not_after = now + time::Duration::days(days.1);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// [`TestCa::leaf_pem`], ready for rustls.
    pub fn leaf(
        &self,
        names: &[&str],
        days: (i64, i64),
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> std::sync::Arc<rustls::sign::CertifiedKey> {
        Self::certified(self.leaf_pem(names, days, usage))
    }

    /// A PEM certificate and key, ready for rustls.
    pub fn certified((cert, key): (String, String)) -> std::sync::Arc<rustls::sign::CertifiedKey> {
        use rustls::pki_types::pem::PemObject;
        let cert = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        std::sync::Arc::new(
            rustls::sign::CertifiedKey::from_der(vec![cert], key, &provider).unwrap(),
        )
    }

    /// Write a server leaf for `names` into `store/my/NAME.pem` (certificate and
    /// key in one file) and this CA into `store/trusted/ca-N.pem`.
    pub fn install(&self, store: &Path, file: &str, names: &[&str], days: (i64, i64)) {
        let (cert, key) = self.leaf_pem(names, days, rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        std::fs::create_dir_all(store.join("my")).unwrap();
        std::fs::write(store.join("my").join(file), format!("{cert}{key}")).unwrap();
        self.trust(store);
    }

    /// Write this CA into `store/trusted/`.
    pub fn trust(&self, store: &Path) {
        std::fs::create_dir_all(store.join("trusted")).unwrap();
        let name = format!("ca-{}.pem", &crate::certstore::thumbprint(&self.der)[..8]);
        std::fs::write(store.join("trusted").join(name), &self.pem).unwrap();
    }
}
