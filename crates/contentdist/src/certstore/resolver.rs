//! The server certificate in force, swappable while the listener runs: rustls asks
//! [`ServerCertResolver`] at every handshake, and the agent replaces what it holds
//! when the store changes or the certificate nears its end. No SNI is consulted: a
//! peer that connects by IP address sends none, and the product chooses by its own
//! precedence, not by the name asked for.

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Holds the server certificate handed to every new TLS connection.
#[derive(Debug, Default)]
pub struct ServerCertResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl ServerCertResolver {
    /// Use `key` for connections from now on (`None`: refuse handshakes).
    pub fn set(&self, key: Option<Arc<CertifiedKey>>) {
        *self.current.write().expect("resolver lock") = key;
    }

    /// The certificate in force.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().expect("resolver lock").clone()
    }
}

impl ResolvesServerCert for ServerCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}
