//! The HTTPS transport of the peer-copy server (`P2PEnabled` 0x40, `P2PHttpsPort`).
//!
//! TLS 1.2 and 1.3 only, with rustls's `ring` cipher suites, which are all AEAD
//! (AES-GCM and ChaCha20-Poly1305; no CBC, no RC4, no export suites). The
//! certificate is whatever [`ServerCertResolver`](crate::certstore::ServerCertResolver)
//! holds at each handshake, so a swap takes effect from the next connection.
//!
//! The port listens only while a certificate is in force: with `P2PSslSettings` 0x1
//! and no qualifying PKI certificate, a peer's connection is refused (0x2EFD, the
//! page's "HTTPS is not enabled on the master"), and it goes on to HTTP when both
//! allow it. The socket stays bound meanwhile, so that no other program takes the
//! port; it starts listening as soon as a certificate qualifies, and stops if the
//! certificate expires or leaves the store with none to replace it.
//!
//! Once the handshake is done, the decrypted stream goes to the same
//! [`PeerService`] as plain HTTP: the P2P account's credentials now travel inside
//! TLS.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::ResolvesServerCert;
use rustls::ServerConfig;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn, Instrument};

use super::server::{bind, ConnectionInfo, PeerServer, PeerService, Refused};
use super::PeerError;
use crate::util::http_server::accept_loop;

/// A client that has not finished its handshake by then is dropped: a connection
/// that sends nothing must not hold a task and a connection slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait before binding the port again after it was taken meanwhile.
const REBIND_RETRY: Duration = Duration::from_secs(5);

/// The TLS settings of the HTTPS peer-copy server: TLS 1.2 and 1.3, AEAD suites,
/// HTTP/1.1 by ALPN, the certificate from `certs`; with `clients`, a client
/// certificate is required and checked by it (`P2PSslSettings` 0x2), else none is
/// asked for.
pub fn server_tls_config(
    certs: Arc<dyn ResolvesServerCert>,
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, PeerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| PeerError::Setup(format!("TLS versions: {e}")))?;
    let mut config = match clients {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    }
    .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What [`PeerServer::start_https`] needs.
#[derive(Clone, Debug)]
pub struct HttpsOptions {
    /// Where to listen (`0.0.0.0:5443`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// TLS settings ([`server_tls_config`]).
    pub tls: Arc<ServerConfig>,
    /// True while a certificate is in force: the port listens only then.
    pub usable: watch::Receiver<bool>,
    /// `tls` requires and checks client certificates: requests are then accepted
    /// without credentials (the certificate is the peer's proof).
    pub client_certificates: bool,
}

impl PeerServer {
    /// Serve `service` over HTTPS on `opts.listen` whenever `opts.usable` is true,
    /// until the service's shutdown token is cancelled. The port is bound at once
    /// (an error when it is taken), and listens only while a certificate is in
    /// force. [`PeerServer::local_addr`] is the bound address either way.
    pub fn start_https(opts: HttpsOptions, service: PeerService) -> Result<PeerServer, PeerError> {
        let socket = bind(opts.listen)?;
        let local_addr = socket.local_addr().map_err(|source| PeerError::Bind {
            addr: opts.listen,
            source,
        })?;
        // With a certificate in force already, listen before returning: the agent
        // announces the port next, and a peer must not find it closed.
        let mut usable = opts.usable;
        let first = if *usable.borrow_and_update() {
            Port::Listening(socket.listen(1024).map_err(|source| PeerError::Bind {
                addr: opts.listen,
                source,
            })?)
        } else {
            Port::Bound(socket)
        };
        let span = tracing::info_span!("peer_server_https", addr = %local_addr);
        let run = Listening {
            addr: local_addr,
            client_certificates: opts.client_certificates,
            acceptor: TlsAcceptor::from(opts.tls),
            service: service.clone(),
        };
        let task = tokio::spawn(run.run(first, usable).instrument(span));
        Ok(PeerServer::running(local_addr, service, task))
    }
}

/// The port: bound only (no certificate), or listening.
enum Port {
    Bound(TcpSocket),
    Listening(tokio::net::TcpListener),
}

struct Listening {
    addr: SocketAddr,
    client_certificates: bool,
    acceptor: TlsAcceptor,
    service: PeerService,
}

impl Listening {
    async fn run(self, first: Port, mut usable: watch::Receiver<bool>) {
        let shutdown = self.service.shutdown_token().clone();
        let mut port = Some(first);
        loop {
            let listener = match port.take() {
                Some(Port::Listening(l)) => l,
                reserved => {
                    // Wait for a certificate.
                    while !*usable.borrow_and_update() {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            changed = usable.changed() => if changed.is_err() { return },
                        }
                    }
                    let socket = match reserved {
                        Some(Port::Bound(s)) => Ok(s),
                        _ => bind(self.addr),
                    };
                    match socket.and_then(|s| {
                        s.listen(1024).map_err(|source| PeerError::Bind {
                            addr: self.addr,
                            source,
                        })
                    }) {
                        Ok(l) => l,
                        Err(e) => {
                            warn!(error = %e, "HTTPS peer-copy port cannot listen; retrying");
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep(REBIND_RETRY) => continue,
                            }
                        }
                    }
                }
            };
            info!(url = %format!("https://{}/content/", self.addr), "peer-copy server listening (HTTPS)");
            let round = shutdown.child_token();
            let accepting = accept_loop(
                listener,
                self.service.accept_options(round.clone()),
                |stream, remote| self.connection(stream, remote),
            );
            tokio::pin!(accepting);
            tokio::select! {
                _ = &mut accepting => {}
                _ = until_false(&mut usable) => {
                    round.cancel();
                    accepting.await;
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
            warn!(addr = %self.addr, "HTTPS peer-copy server stopped listening: no server certificate in force");
            // Keep the port bound while not listening.
            port = bind(self.addr).ok().map(Port::Bound);
        }
    }

    /// One connection: admitted (per-source cap) before a byte is read, then the
    /// handshake (bounded), then HTTP.
    fn connection(
        &self,
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let permit = self.service.admit(remote);
        let stream = permit.is_some().then_some(stream);
        let acceptor = self.acceptor.clone();
        let service = self.service.clone();
        let client_certificate = self.client_certificates;
        let span = tracing::debug_span!("peer_conn", %remote, tls = true);
        async move {
            let (Some(stream), Some(_permit)) = (stream, permit) else {
                return;
            };
            let shaken = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            let tls = match shaken {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return service.handshake_failed(remote, &e.to_string()),
                Err(_) => return service.handshake_failed(remote, "no handshake within 10 s"),
            };
            let info = ConnectionInfo {
                remote,
                client_certificate,
                tls: true,
            };
            service.serve_connection(tls, info).await;
        }
        .instrument(span)
    }
}

/// Resolves when `usable` turns false (or its sender is gone).
async fn until_false(usable: &mut watch::Receiver<bool>) {
    while *usable.borrow_and_update() {
        if usable.changed().await.is_err() {
            return;
        }
    }
}

impl PeerService {
    fn handshake_failed(&self, remote: SocketAddr, error: &str) {
        self.inner
            .counters
            .tls_handshakes_failed
            .fetch_add(1, Ordering::Relaxed);
        self.log_refusal(remote, Refused::Handshake { error });
    }
}
