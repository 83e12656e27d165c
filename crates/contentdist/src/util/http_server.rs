//! The HTTP/1 server plumbing our three servers share (the peer-copy server, the
//! control socket, the lab origin): serving one connection with hyper's header-read
//! timer and a graceful shutdown, and an accept loop that drains with a deadline.
//!
//! Each server keeps what is its own (its routes, its listener set-up, its grace
//! periods); this module only holds the loop they all had written out three times.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long to wait before accepting again after `accept` failed (out of file
/// descriptors and the like): long enough not to spin, short enough not to matter.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serve HTTP/1.1 with `service` on `io` until the client closes the connection or
/// `shutdown` is cancelled. Then the request in hand may finish for `grace` at most;
/// past that the connection is dropped and this returns `Ok`.
///
/// hyper is given a timer, which makes its header-read timeout apply: a client that
/// connects and never sends a request does not hold a task forever.
pub async fn serve_http1<I, S, B>(
    io: I,
    service: S,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(grace, conn.as_mut()).await.unwrap_or(Ok(()))
        }
    }
}

/// A listening socket the accept loop can take connections from.
pub trait Listener: Send + 'static {
    /// One accepted connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The peer's address.
    type Addr: Send + 'static;

    /// Wait for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    type Addr = std::net::SocketAddr;

    /// Accepted streams get `TCP_NODELAY`: our servers write whole chunks, and a
    /// small last write must not wait for the previous one's acknowledgement.
    async fn accept(&self) -> io::Result<(TcpStream, std::net::SocketAddr)> {
        let (stream, remote) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, remote))
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&self) -> io::Result<(UnixStream, tokio::net::unix::SocketAddr)> {
        UnixListener::accept(self).await
    }
}

/// How [`accept_loop`] runs and stops.
#[derive(Clone, Debug)]
pub struct AcceptOptions {
    /// The server's name in log lines ("peer-copy", "control socket", ...).
    pub server: &'static str,
    /// Cancelled to stop accepting.
    pub shutdown: CancellationToken,
    /// How long open connections may take to end once `shutdown` is cancelled;
    /// those still open then are dropped.
    pub drain: Duration,
}

/// Accept connections on `listener` and run `serve(stream, remote)` for each in its
/// own task until `opts.shutdown` is cancelled; then close the listener, wait up to
/// `opts.drain` for the open connections, drop what is left, and return.
///
/// The listener is closed before the drain so that a client connecting now is
/// refused at once (a peer then elects again, the CLI reports the agent stopping)
/// instead of waiting in the backlog of a server that will not answer.
pub async fn accept_loop<L, F, Fut>(listener: L, opts: AcceptOptions, mut serve: F)
where
    L: Listener,
    F: FnMut(L::Stream, L::Addr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let AcceptOptions {
        server,
        shutdown,
        drain,
    } = opts;
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reap finished connections so the set does not grow with every request.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    connections.spawn(serve(stream, remote));
                }
                Err(e) => {
                    warn!(server, error = %e, "accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_RETRY) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            server,
            open = connections.len(),
            "connections still open after the shutdown grace; dropping them"
        );
        connections.shutdown().await;
    }
    info!(server, "server stopped");
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Instant;

    use bytes::Bytes;
    use http::Response;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    use super::*;

    async fn bounded<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("test took too long")
    }

    async fn local_listener() -> (TcpListener, std::net::SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        (l, addr)
    }

    #[tokio::test]
    async fn shutdown_closes_the_port_and_drops_connections_past_the_drain_deadline() {
        bounded(async {
            let (listener, addr) = local_listener().await;
            let shutdown = CancellationToken::new();
            let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
            let opts = AcceptOptions {
                server: "test",
                shutdown: shutdown.clone(),
                drain: Duration::from_millis(300),
            };
            let server = tokio::spawn(accept_loop(listener, opts, move |stream, _| {
                let tx = accepted_tx.clone();
                async move {
                    let _ = tx.send(());
                    // A connection that never ends on its own.
                    let _keep = stream;
                    std::future::pending::<()>().await
                }
            }));
            let mut client = TcpStream::connect(addr).await.unwrap();
            accepted.recv().await.unwrap();
            let start = Instant::now();
            shutdown.cancel();
            server.await.unwrap();
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(300), "{took:?}");
            // The connection was dropped: the client reads the end of the stream.
            let mut buf = [0u8; 1];
            assert_eq!(client.read(&mut buf).await.unwrap(), 0);
            assert!(TcpStream::connect(addr).await.is_err(), "port still open");
        })
        .await
    }

    #[tokio::test]
    async fn a_request_in_hand_finishes_after_shutdown_within_the_grace() {
        bounded(async {
            let (listener, addr) = local_listener().await;
            let shutdown = CancellationToken::new();
            let (started_tx, mut started) = mpsc::unbounded_channel();
            let token = shutdown.clone();
            let server = tokio::spawn(async move {
                let (stream, _) = Listener::accept(&listener).await.unwrap();
                let service = service_fn(move |_req| {
                    let started = started_tx.clone();
                    async move {
                        let _ = started.send(());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("done"))))
                    }
                });
                serve_http1(stream, service, &token, Duration::from_secs(5)).await
            });
            let mut client = TcpStream::connect(addr).await.unwrap();
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                .await
                .unwrap();
            started.recv().await.unwrap();
            shutdown.cancel();
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with("done"), "{answer}");
            server.await.unwrap().unwrap();
        })
        .await
    }

    #[tokio::test]
    async fn a_request_outlasting_the_grace_is_cut_off() {
        bounded(async {
            let (listener, addr) = local_listener().await;
            let shutdown = CancellationToken::new();
            let (started_tx, mut started) = mpsc::unbounded_channel();
            let token = shutdown.clone();
            let server = tokio::spawn(async move {
                let (stream, _) = Listener::accept(&listener).await.unwrap();
                let service = service_fn(move |_req| {
                    let _ = started_tx.send(());
                    async {
                        std::future::pending::<()>().await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                serve_http1(stream, service, &token, Duration::from_millis(100)).await
            });
            let mut client = TcpStream::connect(addr).await.unwrap();
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                .await
                .unwrap();
            started.recv().await.unwrap();
            shutdown.cancel();
            server.await.unwrap().unwrap();
            let mut buf = Vec::new();
            client.read_to_end(&mut buf).await.unwrap();
            assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
        })
        .await
    }
}
