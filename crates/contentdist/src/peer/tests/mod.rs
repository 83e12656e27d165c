//! Peer copy over loopback: servers on 127.0.0.1:0, caches in temporary directories.

mod copy;
mod server;

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
        let node = Node::new();
        let token = CancellationToken::new();
        let server = PeerServer::start(PeerServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            cache: node.cache.clone(),
            auth: Arc::new(auth),
            shutdown: token.clone(),
        })
        .unwrap();
        Master {
            node,
            server: Some(server),
            token,
        }
    }

    pub fn with_key() -> Master {
        Master::start(PeerAuth {
            p2p_key: KEY,
            authenticated_users: 1,
            machine_key: None,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }

    pub fn target(&self) -> MasterTarget {
        MasterTarget {
            cert_fingerprint: None,
            addr: self.addr().ip(),
            http_port: self.addr().port(),
            https_port: 1,
            protocols: Protocols::NONE.with(Protocol::Http),
            p2p_key: KEY,
        }
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
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
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
