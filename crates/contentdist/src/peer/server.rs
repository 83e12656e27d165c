//! The peer-copy server: an accept loop ([`PeerServer`]) in front of a service that
//! serves one connection over any byte stream ([`PeerService::serve_connection`]).
//!
//! The split is for HTTPS: a TLS acceptor takes the TCP stream, asks
//! [`PeerService::admit`] (the per-source connection cap), completes the handshake
//! (checking a client certificate when `P2PSslSettings` 0x2 asks for one), and hands
//! the decrypted stream to the same service with
//! [`ConnectionInfo::client_certificate`] set.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::auth::{PeerAuth, Refusal};
use super::counters::PeerServerCounters;
use super::limits::{ConnectionPermit, LogVerdict, PeerServerLimits, SourceGuard};
use super::pace::ServePacer;
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

/// What [`PeerService::with_options`] needs.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// The cache whose verified blocks are served.
    pub cache: Arc<Cache>,
    /// Who may copy.
    pub auth: Arc<PeerAuth>,
    /// Ends waiting `have` requests and streamed bodies early.
    pub shutdown: CancellationToken,
    /// Per-source and serving limits.
    pub limits: PeerServerLimits,
    /// Paces serving by this agent's origin downloads; `None`: not paced.
    pub pacer: Option<Arc<ServePacer>>,
}

/// What the transport tells the service about one connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionInfo {
    /// The peer's address (for logs).
    pub remote: SocketAddr,
    /// True only when a TLS acceptor required a client certificate and verified it:
    /// requests are then accepted without Basic credentials.
    pub client_certificate: bool,
    /// Over TLS (the HTTPS port): counted apart in the served bytes.
    pub tls: bool,
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
    /// The per-source connection cap and the refusal log's rate limit.
    pub(super) guard: Arc<SourceGuard>,
    /// Entries being re-verified after a changed block was found, so one damaged
    /// block hit by many requests starts one re-hash, not many.
    pub(super) reverifying: Mutex<HashSet<ContentKey>>,
    /// Blocks found changed on disk, per entry, until its re-verification ran:
    /// neither advertised nor served (see `files`).
    pub(super) hidden: Mutex<HashMap<ContentKey, BTreeSet<usize>>>,
    /// FanOut: who holds what, as the peers copying from this agent describe
    /// themselves.
    pub(super) holders: super::swarm::HolderRegistry,
    /// One permit per response sending content ([`PeerServerLimits::max_serving`]);
    /// `None`: no limit.
    pub(super) serving: Option<Arc<tokio::sync::Semaphore>>,
    pub(super) max_serving: usize,
    /// Paces what is served while this agent downloads from the origin.
    pub(super) pacer: Option<Arc<ServePacer>>,
    /// The machine's cores: from this many responses sending on, stamped files
    /// are read on the async thread (see `cached`).
    pub(super) cores: u64,
}

/// A refusal, for [`PeerService::log_refusal`].
pub(super) enum Refused<'a> {
    /// A request whose credentials were refused (403).
    Request { path: &'a str, why: &'a Refusal },
    /// A connection closed unread: its source holds `open` already.
    Connection { open: usize },
    /// An HTTPS connection whose TLS handshake failed.
    Handshake { error: &'a str },
}

impl PeerService {
    /// A service over `cache` with the default [`PeerServerLimits`]; `shutdown`
    /// ends waiting `have` requests and streamed bodies early.
    pub fn new(cache: Arc<Cache>, auth: Arc<PeerAuth>, shutdown: CancellationToken) -> Self {
        PeerService::with_limits(cache, auth, shutdown, &PeerServerLimits::default())
    }

    /// A service over `cache` with `limits`.
    pub fn with_limits(
        cache: Arc<Cache>,
        auth: Arc<PeerAuth>,
        shutdown: CancellationToken,
        limits: &PeerServerLimits,
    ) -> Self {
        PeerService::with_options(ServiceOptions {
            cache,
            auth,
            shutdown,
            limits: limits.clone(),
            pacer: None,
        })
    }

    /// A service as `opts` say.
    pub fn with_options(opts: ServiceOptions) -> Self {
        let ServiceOptions {
            cache,
            auth,
            shutdown,
            limits,
            pacer,
        } = opts;
        let counters = Arc::new(PeerServerCounters::default());
        PeerService {
            inner: Arc::new(ServiceInner {
                cache,
                auth,
                pacer,
                guard: Arc::new(SourceGuard::new(&limits, Arc::clone(&counters))),
                counters,
                shutdown,
                reverifying: Mutex::new(HashSet::new()),
                hidden: Mutex::new(HashMap::new()),
                holders: Default::default(),
                serving: (limits.max_serving > 0)
                    .then(|| Arc::new(tokio::sync::Semaphore::new(limits.max_serving))),
                max_serving: limits.max_serving,
                cores: limits.inline_reads_from.map_or_else(
                    || std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
                    |n| n as u64,
                ),
            }),
        }
    }

    /// Admit a new connection from `remote`, before reading anything from it:
    /// `None` when its source already holds
    /// [`PeerServerLimits::max_connections_per_source`] connections (then the caller
    /// closes it at once; it is counted and logged here). Keep the permit for as long
    /// as the connection is open.
    pub fn admit(&self, remote: SocketAddr) -> Option<ConnectionPermit> {
        match self.inner.guard.admit(remote.ip()) {
            Ok(permit) => Some(permit),
            Err(open) => {
                self.inner
                    .counters
                    .connections_refused_per_source
                    .fetch_add(1, Ordering::Relaxed);
                self.log_refusal(remote, Refused::Connection { open });
                None
            }
        }
    }

    /// Log a refusal, unless its source had a line within the refusal interval
    /// (then it is only counted, and reported in that source's next line).
    pub(super) fn log_refusal(&self, remote: SocketAddr, what: Refused<'_>) {
        let (others, not_logged) = match self.inner.guard.note_refusal(remote.ip()) {
            LogVerdict::Quiet => return,
            LogVerdict::Source { not_logged } => (false, not_logged),
            LogVerdict::Others { not_logged } => (true, not_logged),
        };
        // One line per source per interval: `not_logged` says how many refusals of
        // that source (or, with `others`, of the sources too many to track one by
        // one) were only counted since its previous line.
        match what {
            Refused::Request { path, why } => warn!(
                %remote, path, reason = %why, not_logged, others,
                "peer-copy request refused (further refusals from this source are counted and logged at most once a minute)"
            ),
            Refused::Connection { open } => warn!(
                %remote, open, cap = self.inner.guard.max_connections(), not_logged, others,
                "peer-copy connection closed unread: its source holds the most connections allowed (further refusals from this source are counted and logged at most once a minute)"
            ),
            Refused::Handshake { error } => warn!(
                %remote, error, not_logged, others,
                "HTTPS peer-copy connection refused: the TLS handshake failed (further refusals from this source are counted and logged at most once a minute)"
            ),
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

/// A TCP socket bound to `listen` (not listening yet), with `SO_REUSEADDR`: a
/// restarted agent must get its port back while connections of the previous one
/// linger in TIME_WAIT.
pub(super) fn bind(listen: SocketAddr) -> Result<TcpSocket, PeerError> {
    let bind_err = |source| PeerError::Bind {
        addr: listen,
        source,
    };
    let socket = if listen.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_err)?;
    socket.set_reuseaddr(true).map_err(bind_err)?;
    socket.bind(listen).map_err(bind_err)?;
    Ok(socket)
}

impl PeerService {
    /// How this service's accept loops stop: on `shutdown`, with twice the
    /// per-connection grace (a connection that ignores it is dropped by its own
    /// timer first).
    pub(super) fn accept_options(&self, shutdown: CancellationToken) -> AcceptOptions {
        AcceptOptions {
            server: "peer-copy",
            shutdown,
            drain: SHUTDOWN_GRACE * 2,
        }
    }

    /// The token that stops this service.
    pub(super) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
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
    /// Listen on `opts.listen` and serve until `opts.shutdown` is cancelled, with
    /// the default [`PeerServerLimits`]. Must be called inside a tokio runtime.
    pub fn start(opts: PeerServerOptions) -> Result<PeerServer, PeerError> {
        PeerServer::start_with_limits(opts, PeerServerLimits::default())
    }

    /// [`PeerServer::start`] with `limits`: a connection whose source address
    /// already holds `limits.max_connections_per_source` open is closed at once,
    /// unread, and counted in
    /// [`PeerServerCounters::connections_refused_per_source`].
    pub fn start_with_limits(
        opts: PeerServerOptions,
        limits: PeerServerLimits,
    ) -> Result<PeerServer, PeerError> {
        let service = PeerService::with_limits(opts.cache, opts.auth, opts.shutdown, &limits);
        PeerServer::start_http(opts.listen, service)
    }

    /// Serve `service` over plain HTTP on `listen`, until the service's shutdown
    /// token is cancelled. An HTTP and an HTTPS server may share one service: they
    /// then share its counters and its per-source connection cap.
    pub fn start_http(listen: SocketAddr, service: PeerService) -> Result<PeerServer, PeerError> {
        let listener = bind(listen)?
            .listen(1024)
            .map_err(|source| PeerError::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| PeerError::Bind {
            addr: listen,
            source,
        })?;
        info!(addr = %local_addr, "peer-copy server listening (HTTP)");
        let span = tracing::info_span!("peer_server", addr = %local_addr);
        let accepting = service.accept_options(service.shutdown_token().clone());
        let conns = service.clone();
        let task = tokio::spawn(
            accept_loop(listener, accepting, move |stream, remote| {
                // Refused here, before a byte is read: dropping the stream closes it,
                // and its task ends at once.
                let permit = conns.admit(remote);
                let stream = permit.is_some().then_some(stream);
                let info = ConnectionInfo {
                    remote,
                    client_certificate: false,
                    tls: false,
                };
                let service = conns.clone();
                let span = tracing::debug_span!("peer_conn", %remote);
                async move {
                    if let (Some(stream), Some(_permit)) = (stream, permit) {
                        service.serve_connection(stream, info).await;
                    }
                }
                .instrument(span)
            })
            .instrument(span),
        );
        Ok(PeerServer::running(local_addr, service, task))
    }

    pub(super) fn running(
        local_addr: SocketAddr,
        service: PeerService,
        task: tokio::task::JoinHandle<()>,
    ) -> PeerServer {
        PeerServer {
            local_addr,
            service,
            task,
        }
    }

    /// The address really bound (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This server's counters.
    pub fn counters(&self) -> Arc<PeerServerCounters> {
        self.service.counters()
    }

    /// FanOut: what `addr` last said it holds of `key` (blocks), and how long it is
    /// remembered from now (tests).
    #[cfg(test)]
    pub(super) fn holder(
        &self,
        key: &ContentKey,
        addr: std::net::IpAddr,
    ) -> Option<(usize, std::time::Duration)> {
        self.service.inner.holders.kept(key, addr)
    }

    /// Wait until the server has stopped (after its shutdown token was cancelled)
    /// and every connection has ended.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            warn!(error = %e, "peer-copy server task ended abnormally");
        }
    }
}
