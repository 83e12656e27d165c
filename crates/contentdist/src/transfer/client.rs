//! One way to build the HTTP clients we fetch with: rustls with the `ring` provider
//! (chosen explicitly, so no other provider linked in by a dependency can be picked
//! up at run time), no proxy, and our timeouts.
//!
//! The origin trusts the system's roots or a CA file (`OriginCaFile`); the peer
//! client brings its own `rustls::ClientConfig` for HTTPS, or trusts nothing: reqwest
//! needs a TLS backend even for plain HTTP, and one that trusts no root can never
//! complete an HTTPS handshake by accident.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Which certificate authorities a client trusts.
#[derive(Clone, Copy, Debug)]
pub enum Roots<'a> {
    /// The system's trust store.
    System,
    /// The certificates of this PEM file, and only them.
    PemFile(&'a Path),
    /// None: the client cannot complete an HTTPS handshake.
    Nothing,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    /// The CA file cannot be read, or holds something that is not a certificate.
    #[error("{}: {detail}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the protocol versions (a build without TLS 1.2 or 1.3).
    #[error("TLS settings: {0}")]
    Tls(#[from] rustls::Error),
    /// reqwest could not build the client.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// A rustls client configuration trusting `roots`, presenting the certificate
/// `client` resolves when a server asks for one (an HTTPS origin with mandatory
/// client certificates), or none.
pub fn tls_config(
    roots: Roots<'_>,
    client: Option<Arc<dyn rustls::client::ResolvesClientCert>>,
) -> Result<rustls::ClientConfig, ClientSetupError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Roots::PemFile(path) => {
            let bad = |detail: String| ClientSetupError::CaFile {
                path: path.to_path_buf(),
                detail,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no certificate in it".into()));
            }
            for c in certs {
                store.add(c).map_err(|e| bad(e.to_string()))?;
            }
        }
        Roots::System => {
            // Unreadable system certificates are skipped: the ones that load still
            // count, and a missing root shows up as a clear certificate error later.
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(c);
            }
        }
        Roots::Nothing => {}
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store);
    Ok(match client {
        Some(c) => builder.with_client_cert_resolver(c),
        None => builder.with_no_client_auth(),
    })
}

/// How to build one HTTP client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Connection establishment limit.
    pub connect_timeout: Duration,
    /// A read that waits this long for a byte fails; `None`: reads wait as long as the
    /// caller does (the caller bounds each await itself).
    pub read_timeout: Option<Duration>,
    /// The local address connections leave from; `None`: the system's choice.
    pub local_address: Option<std::net::IpAddr>,
}

/// A reqwest client over `tls`. No proxy: the origin is configured by URL and peers
/// are on the same subnet, where a proxy from the environment would only be in the
/// way (and see the peers' credentials).
pub fn http_client(
    tls: rustls::ClientConfig,
    opts: &ClientOptions,
) -> Result<reqwest::Client, ClientSetupError> {
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true)
        .no_proxy();
    if let Some(t) = opts.read_timeout {
        b = b.read_timeout(t);
    }
    if let Some(a) = opts.local_address {
        b = b.local_address(a);
    }
    Ok(b.build()?)
}
