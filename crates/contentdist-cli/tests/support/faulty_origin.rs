//! An in-process HTTP origin over a directory that injects faults on demand.
//!
//! It serves files with single `Range` requests (206 + `Content-Range`, 416 when
//! unsatisfiable) like nginx does, and misbehaves as the current [`Fault`] says.
//! It runs on its own tokio runtime thread, so sync tests can use it; dropping the
//! [`FaultyOrigin`] shuts the runtime down and with it every connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// Longest time [`Fault::StallAfter`] keeps a response hanging.
pub const MAX_STALL: Duration = Duration::from_secs(120);

/// What the origin does wrong. Faults without a `path_suffix` apply only to requests
/// whose path does not end with `manifest.json`; faults with one apply to paths ending
/// with it (so `path_suffix: "manifest.json".into()` targets the manifest).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    /// Serve correctly.
    #[default]
    None,
    /// Flip (XOR 0xFF) the byte at file offset `offset` in the first response whose
    /// body covers that offset, for a path ending with `path_suffix`.
    CorruptOnce { path_suffix: String, offset: u64 },
    /// Like `CorruptOnce`, in every response covering the offset.
    CorruptAlways { path_suffix: String, offset: u64 },
    /// Announce the full `Content-Length`, send `bytes` body bytes, then close the
    /// connection; for the first `times` file responses longer than `bytes`. A
    /// client that reads promptly gets exactly `bytes`; one that lags more than
    /// ~100 ms behind may get fewer (hyper drops its unflushed buffer on close).
    TruncateAfter { bytes: u64, times: u32 },
    /// Send `bytes` body bytes, then hang without closing until the client closes
    /// the connection (at most [`MAX_STALL`], then close); for the first `times`
    /// file responses.
    StallAfter { bytes: u64, times: u32 },
    /// Answer `status` (with a short text body) to the first `times` requests, then
    /// serve normally. `times: u32::MAX` means always.
    Status { status: u16, times: u32 },
    /// Like `Status`, only for paths ending with `path_suffix`.
    StatusFor {
        path_suffix: String,
        status: u16,
        times: u32,
    },
}

/// One request the origin answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEntry {
    /// HTTP method.
    pub method: String,
    /// Request path (without query), as sent.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// Status answered.
    pub status: u16,
    /// Whether the current fault was applied to this response.
    pub fault_applied: bool,
}

/// State shared between the handle and the server tasks.
pub(super) struct Shared {
    pub(super) root: PathBuf,
    pub(super) fault: Mutex<FaultState>,
    pub(super) requests: AtomicU64,
    pub(super) body_bytes: Arc<AtomicU64>,
    pub(super) log: Mutex<Vec<RequestEntry>>,
}

/// The fault and how many times it has been applied since it was set.
pub(super) struct FaultState {
    pub(super) fault: Fault,
    pub(super) applied: u32,
}

/// A running faulty origin; dropped = shut down.
pub struct FaultyOrigin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultyOrigin {
    /// Serves `root` on 127.0.0.1 (a free port) with `fault` in force.
    pub fn start(root: impl AsRef<Path>, fault: Fault) -> FaultyOrigin {
        let root = root.as_ref().to_path_buf();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            root,
            fault: Mutex::new(FaultState { fault, applied: 0 }),
            requests: AtomicU64::new(0),
            body_bytes: Arc::new(AtomicU64::new(0)),
            log: Mutex::new(Vec::new()),
        });
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("faulty-origin-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("build the faulty origin runtime");
                runtime.block_on(serve(listener, server_shared, shutdown_rx));
                // Dropping the runtime cancels every connection task, stalled ones too.
                runtime.shutdown_timeout(Duration::from_secs(5));
            })
            .expect("spawn the faulty origin thread");
        FaultyOrigin {
            addr,
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the origin listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the fault; the new fault's `times` count starts from zero.
    pub fn set_fault(&self, fault: Fault) {
        let mut state = self.shared.fault.lock().unwrap_or_else(|e| e.into_inner());
        *state = FaultState { fault, applied: 0 };
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.shared
            .fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fault
            .clone()
    }

    /// How many times the current fault has been applied.
    pub fn fault_applied(&self) -> u32 {
        self.shared
            .fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .applied
    }

    /// Requests received so far (all paths, all answers).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Response body bytes handed to the connections so far (file bodies only).
    pub fn body_bytes_sent(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::SeqCst)
    }

    /// Every request answered so far, oldest first.
    pub fn request_log(&self) -> Vec<RequestEntry> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for FaultyOrigin {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener =
        tokio::net::TcpListener::from_std(listener).expect("register the faulty origin listener");
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // e.g. EMFILE: keep serving the connections we have.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        super::faulty_origin_http::respond(&shared, req).await,
                    )
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
