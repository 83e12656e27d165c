//! The peer-copy server: an accept loop ([`PeerServer`]) in front of a service that
//! serves one connection over any byte stream ([`PeerService::serve_connection`]).
//!
//! The split is for HTTPS: a TLS acceptor takes the TCP stream, completes the
//! handshake (checking a client certificate when `P2PSslSettings` 0x2 asks for one),
//! and hands the decrypted stream to the same service with
//! [`ConnectionInfo::client_certificate`] set.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::auth::PeerAuth;
use super::PeerError;
use crate::cache::Cache;
use crate::manifest::ContentKey;
use crate::util::http_server::{accept_loop, serve_http1, AcceptOptions};

/// How long open connections may finish once shutdown is asked. Bodies being
/// streamed stop at the next block anyway, so this is rarely reached.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What [`PeerServer::start`] needs.
#[derive(Clone, Debug)]
pub struct PeerServerOptions {
    /// Where to listen (`0.0.0.0:5080`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// The cache whose verified blocks are served.
    pub cache: Arc<Cache>,
    /// Who may copy.
    pub auth: Arc<PeerAuth>,
    /// Cancelled to stop the server.
    pub shutdown: CancellationToken,
}

/// Counters of one server instance.
#[derive(Debug, Default)]
pub struct PeerServerCounters {
    /// Body bytes sent (file contents, manifests and `have` answers).
    pub bytes_served: AtomicU64,
    /// Requests received, refused ones included.
    pub requests: AtomicU64,
    /// Requests refused for their credentials (403).
    pub refusals: AtomicU64,
}

impl PeerServerCounters {
    /// `(bytes_served, requests, refusals)` now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.bytes_served.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
            self.refusals.load(Ordering::Relaxed),
        )
    }
}

/// What the transport tells the service about one connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionInfo {
    /// The peer's address (for logs).
    pub remote: SocketAddr,
    /// True only when a TLS acceptor required a client certificate and verified it:
    /// requests are then accepted without Basic credentials.
    pub client_certificate: bool,
}

/// The peer-copy HTTP service, shared by every connection of a server.
#[derive(Clone, Debug)]
pub struct PeerService {
    pub(super) inner: Arc<ServiceInner>,
}

#[derive(Debug)]
pub(super) struct ServiceInner {
    pub(super) cache: Arc<Cache>,
    pub(super) auth: Arc<PeerAuth>,
    pub(super) counters: Arc<PeerServerCounters>,
    pub(super) shutdown: CancellationToken,
    /// Entries being re-verified after a changed block was found, so one damaged
    /// block hit by many requests starts one re-hash, not many.
    pub(super) reverifying: Mutex<HashSet<ContentKey>>,
}

impl PeerService {
    /// A service over `cache`; `shutdown` ends waiting `have` requests and streamed
    /// bodies early.
    pub fn new(cache: Arc<Cache>, auth: Arc<PeerAuth>, shutdown: CancellationToken) -> Self {
        PeerService {
            inner: Arc::new(ServiceInner {
                cache,
                auth,
                counters: Arc::new(PeerServerCounters::default()),
                shutdown,
                reverifying: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// This service's counters.
    pub fn counters(&self) -> Arc<PeerServerCounters> {
        Arc::clone(&self.inner.counters)
    }

    /// Serve HTTP/1.1 on `io` until the client closes it or shutdown is asked (then
    /// the request in hand finishes, for [`SHUTDOWN_GRACE`] at most).
    pub async fn serve_connection<I>(&self, io: I, info: ConnectionInfo)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        let service = service_fn(move |req| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.handle(req, info).await) }
        });
        if let Err(e) = serve_http1(io, service, &self.inner.shutdown, SHUTDOWN_GRACE).await {
            debug!(remote = %info.remote, error = %e, "peer connection ended with an error");
        }
    }
}

/// A running peer-copy server.
#[derive(Debug)]
pub struct PeerServer {
    local_addr: SocketAddr,
    service: PeerService,
    task: tokio::task::JoinHandle<()>,
}

impl PeerServer {
    /// Listen on `opts.listen` and serve until `opts.shutdown` is cancelled. Must be
    /// called inside a tokio runtime.
    pub fn start(opts: PeerServerOptions) -> Result<PeerServer, PeerError> {
        let bind_err = |source| PeerError::Bind {
            addr: opts.listen,
            source,
        };
        let socket = if opts.listen.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(bind_err)?;
        // A restarted agent must get its port back while connections of the previous
        // one linger in TIME_WAIT.
        socket.set_reuseaddr(true).map_err(bind_err)?;
        socket.bind(opts.listen).map_err(bind_err)?;
        let listener = socket.listen(1024).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let service = PeerService::new(opts.cache, opts.auth, opts.shutdown.clone());
        info!(addr = %local_addr, "peer-copy server listening (HTTP)");
        let span = tracing::info_span!("peer_server", addr = %local_addr);
        let accepting = AcceptOptions {
            server: "peer-copy",
            shutdown: opts.shutdown,
            // Twice the per-connection grace: a connection that ignores it is dropped
            // by its own timer first.
            drain: SHUTDOWN_GRACE * 2,
        };
        let conns = service.clone();
        let task = tokio::spawn(
            accept_loop(listener, accepting, move |stream, remote| {
                let info = ConnectionInfo {
                    remote,
                    client_certificate: false,
                };
                let service = conns.clone();
                let span = tracing::debug_span!("peer_conn", %remote);
                async move { service.serve_connection(stream, info).await }.instrument(span)
            })
            .instrument(span),
        );
        Ok(PeerServer {
            local_addr,
            service,
            task,
        })
    }

    /// The address really bound (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This server's counters.
    pub fn counters(&self) -> Arc<PeerServerCounters> {
        self.service.counters()
    }

    /// Wait until the server has stopped (after its shutdown token was cancelled)
    /// and every connection has ended.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            warn!(error = %e, "peer-copy server task ended abnormally");
        }
    }
}
