//! Peer copy over loopback: servers on 127.0.0.1:0, caches in temporary directories.

mod changed;
mod copy;
mod fanout;
mod https;
mod limits;
mod mtls;
mod server;
mod smb;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::auth::{basic_header, p2p_credentials};
use super::*;
use crate::cache::{Cache, ContentEntry};
use crate::config::Protocol;
use crate::manifest::{hash_block, FileEntry, Manifest};

pub(super) const BS: usize = 4096;
pub(super) const KEY: [u8; 32] = [42; 32];

/// Every test gets this long, then fails.
pub(super) async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test took more than 30 s")
}

pub(super) fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// A content of several files (one in a directory, one empty), as `publish` would
/// describe it.
pub(super) struct Content {
    pub files: Vec<(String, Vec<u8>)>,
    pub manifest: Manifest,
}

impl Content {
    pub fn new(files: &[(&str, usize)]) -> Content {
        let files: Vec<(String, Vec<u8>)> = files
            .iter()
            .enumerate()
            .map(|(i, (p, n))| (p.to_string(), data(*n, i as u8 * 17 + 1)))
            .collect();
        let entries = files
            .iter()
            .map(|(p, d)| {
                FileEntry::new(
                    p.clone(),
                    d.len() as u64,
                    false,
                    d.chunks(BS).map(hash_block).collect(),
                )
            })
            .collect();
        let manifest = Manifest::build("PKG1", 3, BS as u32, entries).unwrap();
        Content { files, manifest }
    }

    pub fn standard() -> Content {
        Content::new(&[
            ("a.bin", 3 * BS + 100),
            ("dir/b b.bin", 5 * BS),
            ("empty.txt", 0),
        ])
    }

    /// The bytes of block `i`.
    pub fn block(&self, i: usize) -> &[u8] {
        let b = self.manifest.block(i);
        &self.files[b.file].1[b.offset as usize..b.offset as usize + b.len as usize]
    }

    pub fn fill(&self, entry: &ContentEntry, blocks: impl IntoIterator<Item = usize>) {
        for i in blocks {
            assert!(entry.put_block(i, self.block(i)).unwrap());
        }
    }
}

/// A cache in a temporary directory.
pub(super) struct Node {
    pub cache: Arc<Cache>,
    _dir: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        Node {
            cache: Arc::new(Cache::open(dir.path()).unwrap()),
            _dir: dir,
        }
    }

    pub fn entry(&self, c: &Content) -> Arc<ContentEntry> {
        self.cache.get_or_create(c.manifest.clone(), 5).unwrap()
    }
}

/// A peer-copy server over a node's cache; stopped when dropped.
pub(super) struct Master {
    pub node: Node,
    pub server: Option<PeerServer>,
    pub token: CancellationToken,
}

impl Master {
    pub fn start(auth: PeerAuth) -> Master {
        Master::start_with_limits(auth, PeerServerLimits::default())
    }

    pub fn start_with_limits(auth: PeerAuth, limits: PeerServerLimits) -> Master {
        let node = Node::new();
        let token = CancellationToken::new();
        let opts = PeerServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            cache: node.cache.clone(),
            auth: Arc::new(auth),
            shutdown: token.clone(),
        };
        let server = PeerServer::start_with_limits(opts, limits).unwrap();
        Master {
            node,
            server: Some(server),
            token,
        }
    }

    pub fn with_key() -> Master {
        Master::start(key_auth())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }

    pub fn target(&self) -> MasterTarget {
        target_at(self.addr())
    }

    pub fn counters(&self) -> Arc<PeerServerCounters> {
        self.server.as_ref().unwrap().counters()
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The P2P account of [`KEY`] only.
pub(super) fn key_auth() -> PeerAuth {
    PeerAuth {
        p2p_key: Some(KEY),
        authenticated_users: 1,
        machine_key: None,
    }
}

pub(super) fn http_only() -> Protocols {
    Protocols::NONE.with(Protocol::Http)
}

pub(super) fn client() -> PeerClient {
    PeerClient::new(PeerClientOptions {
        connect_timeout: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(2),
        long_poll: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap()
}

/// `Authorization` for the P2P account of [`KEY`].
pub(super) fn p2p_auth() -> String {
    let (u, p) = p2p_credentials(&KEY);
    basic_header(&u, &p)
}

/// An HTTP/1.1 answer read off the socket as it came.
#[derive(Debug)]
pub(super) struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `target` exactly as written (no client-side path normalisation, unlike curl
/// or reqwest), with `headers`, on a fresh connection.
pub(super) async fn raw_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Raw {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw_get_on(s, target, headers).await
}

/// [`raw_get`] on a connection the caller opened (from a chosen source address).
pub(super) async fn raw_get_on(
    mut s: tokio::net::TcpStream,
    target: &str,
    headers: &[(&str, &str)],
) -> Raw {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut buf = Vec::new();
    // A connection the server closed unread may refuse the write: no answer.
    if s.write_all(req.as_bytes()).await.is_err() {
        return Raw {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        };
    }
    let mut chunk = [0u8; 65536];
    // A response aborted by the server may end in a reset: keep what arrived.
    while let Ok(n) = s.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    // A response aborted before its head was flushed arrives as nothing at all:
    // status 0, so tests can tell it from any real answer.
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        assert!(
            buf.is_empty(),
            "a partial response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        return Raw {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        };
    };
    let head = String::from_utf8(buf[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    }
}

/// GET with the P2P account.
pub(super) async fn get(addr: SocketAddr, target: &str, extra: &[(&str, &str)]) -> Raw {
    let auth = p2p_auth();
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    raw_get(addr, target, &headers).await
}

/// Poll `cond` every few milliseconds until it holds (the caller bounds the wait).
pub(super) async fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How a [`lying_master`] lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lie {
    /// Every range comes whole, with bytes that do not verify.
    WrongBytes,
    /// Every range gets its head, then the connection closes before a byte of
    /// the body, while `have` keeps claiming every block.
    CutShort,
}

/// A "master" that claims every block and answers every range with `lie`.
pub(super) async fn lying_master(c: &Content, lie: Lie) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let m = &c.manifest;
    let have = serde_json::to_vec(&HaveDoc {
        content_id: m.content_id.clone(),
        version: m.version,
        content_hash: m.content_hash.clone(),
        block_count: m.block_count(),
        verified: m.block_count(),
        complete: true,
        bitmap: hex::encode(vec![0xffu8; m.block_count().div_ceil(8)]),
        holders: Vec::new(),
        you: None,
    })
    .unwrap();
    let sizes: Vec<(String, u64)> = m
        .files
        .iter()
        .map(|f| (f.path.replace(' ', "%20"), f.size))
        .collect();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let (have, sizes) = (have.clone(), sizes.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let target = head.split(' ').nth(1).unwrap_or("").to_string();
                    // `length` is what the head promises; a cut body sends less and
                    // closes the connection.
                    let (status, extra, body, length) = if target.contains("/have") {
                        ("200 OK", String::new(), have.clone(), have.len())
                    } else {
                        let range = head.lines().find_map(|l| {
                            l.strip_prefix("range: bytes=")
                                .or(l.strip_prefix("Range: bytes="))
                        });
                        let (a, b) = range.and_then(|r| r.split_once('-')).unwrap();
                        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                        let size = sizes
                            .iter()
                            .find(|(p, _)| target.ends_with(p.as_str()))
                            .unwrap()
                            .1;
                        let body = match lie {
                            Lie::WrongBytes => vec![0xEE; (b - a + 1) as usize],
                            Lie::CutShort => Vec::new(),
                        };
                        (
                            "206 Partial Content",
                            format!("Content-Range: bytes {a}-{b}/{size}\r\n"),
                            body,
                            (b - a + 1) as usize,
                        )
                    };
                    let head =
                        format!("HTTP/1.1 {status}\r\nContent-Length: {length}\r\n{extra}\r\n");
                    if s.write_all(head.as_bytes()).await.is_err()
                        || s.write_all(&body).await.is_err()
                    {
                        return;
                    }
                    if body.len() < length {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A master over HTTP at `addr`, with the tests' P2P key.
pub fn target_at(addr: std::net::SocketAddr) -> MasterTarget {
    MasterTarget {
        cert_fingerprint: None,
        names: Vec::new(),
        addr: addr.ip(),
        http_port: addr.port(),
        https_port: 1,
        protocols: Protocols::NONE.with(Protocol::Http),
        p2p_key: KEY,
    }
}
