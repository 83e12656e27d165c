//! Hostile traffic from one address: a flood of refused requests, too many
//! connections. All on loopback, bounded in count and time.

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use futures_util::StreamExt;
use tokio::net::{TcpSocket, TcpStream};
use tracing::field::{Field, Visit};
use tracing::span;

use super::*;
use crate::transfer::{http_client, tls_config, ClientOptions, Roots};

/// Collects the messages of WARN (and ERROR) events on the thread it is installed
/// on: `#[tokio::test]` runs the server's tasks on the test's thread. (A tiny
/// subscriber by hand: the library does not depend on tracing-subscriber.)
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(self.clone())
    }

    fn containing(&self, text: &str) -> usize {
        let lines = self.0.lock().unwrap();
        lines.iter().filter(|m| m.contains(text)).count()
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.is_event() && *meta.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        self.0.lock().unwrap().push(m.0);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

const FLOOD: usize = 5_000;

#[tokio::test]
async fn a_flood_of_refused_requests_is_counted_in_full_and_logged_once_per_source() {
    let warnings = Warnings::default();
    let _log = warnings.install();
    bounded(async {
        let m = Master::with_key();
        let url = format!("http://{}/content/PKG1/3/manifest.json", m.addr());
        let client = http_client(
            tls_config(Roots::Nothing, None).unwrap(),
            &ClientOptions {
                connect_timeout: Duration::from_secs(2),
                read_timeout: Some(Duration::from_secs(5)),
                local_address: None,
            },
        )
        .unwrap();
        // 5,000 requests without credentials, 16 at a time over keep-alive
        // connections (under the connection cap: only the requests are refused).
        let started = Instant::now();
        let statuses: Vec<u16> = futures_util::stream::iter(0..FLOOD)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                async move { client.get(url).send().await.unwrap().status().as_u16() }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        assert!(statuses.iter().all(|&s| s == 403));
        assert!(started.elapsed() < Duration::from_secs(25));
        let s = m.counters().snapshot();
        assert_eq!(s.requests, FLOOD as u64);
        assert_eq!(s.requests_refused, FLOOD as u64);
        assert_eq!(s.refused_no_credentials, FLOOD as u64);
        assert_eq!(s.refusal_lines_logged, 1, "{s:?}");
        assert_eq!(s.refusals_not_logged, FLOOD as u64 - 1, "{s:?}");
        assert_eq!(s.connections_refused_per_source, 0, "{s:?}");
        assert_eq!(warnings.containing("peer-copy request refused"), 1);
    })
    .await
}

/// A connection to `addr` from `source` (any port).
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_unread_while_other_addresses_are_served() {
    let warnings = Warnings::default();
    let _log = warnings.install();
    bounded(async {
        let limits = PeerServerLimits {
            max_connections_per_source: 4,
            ..Default::default()
        };
        let m = Master::start_with_limits(key_auth(), limits);
        let c = Content::standard();
        m.node.entry(&c);
        let addr = m.addr();
        let manifest = "/content/PKG1/3/manifest.json";
        let auth = p2p_auth();
        let creds = [("Authorization", auth.as_str())];
        let open = || m.counters().snapshot().connections_open;
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(connect_from("127.0.0.1", addr).await);
        }
        until(|| open() == 4).await;
        // The fifth from the same address is closed before anything is read.
        let mut fifth = connect_from("127.0.0.1", addr).await;
        let mut buf = [0u8; 16];
        let n = fifth.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
        let r = raw_get_on(connect_from("127.0.0.1", addr).await, manifest, &creds).await;
        assert_eq!(r.status, 0, "no answer at all: {r:?}");
        // Another address is served meanwhile.
        let r = raw_get_on(connect_from("127.0.0.2", addr).await, manifest, &creds).await;
        assert_eq!(r.status, 200, "{}", r.text());
        // Once one of the four ends, the first address is served again.
        drop(held.pop());
        until(|| open() == 3).await;
        let r = raw_get_on(connect_from("127.0.0.1", addr).await, manifest, &creds).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let s = m.counters().snapshot();
        assert_eq!(s.connections_refused_per_source, 2, "{s:?}");
        // Both refusals come from one source within the minute: one line.
        assert_eq!((s.refusal_lines_logged, s.refusals_not_logged), (1, 1));
        assert_eq!(warnings.containing("connection closed unread"), 1);
        drop(held);
        until(|| open() == 0).await;
    })
    .await
}

#[tokio::test]
async fn the_default_cap_leaves_room_for_peers_sharing_an_address() {
    bounded(async {
        // What a peer holds: a data connection and a long poll per job, four jobs;
        // and several agents of a host (or behind a NAT) share its address.
        let limits = PeerServerLimits::default();
        assert!(limits.max_connections_per_source >= 8 * 2 * 4);
        let m = Master::with_key();
        let mut held = Vec::new();
        for _ in 0..limits.max_connections_per_source {
            held.push(TcpStream::connect(m.addr()).await.unwrap());
        }
        let open = || m.counters().snapshot().connections_open;
        until(|| open() == limits.max_connections_per_source as u64).await;
        assert_eq!(m.counters().snapshot().connections_refused_per_source, 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_beyond_max_serving_is_answered_busy_and_served_once_a_slot_frees() {
    bounded(async {
        let limits = PeerServerLimits {
            max_serving: 1,
            ..Default::default()
        };
        let m = Master::start_with_limits(key_auth(), limits);
        // 16 MiB: more than the socket buffers hold, so an unread body keeps its
        // response (and its slot) open.
        let c = Content::new(&[("image.bin", 4096 * BS)]);
        c.fill(&m.node.entry(&c), 0..c.manifest.block_count());
        let addr = m.addr();
        let file = "/content/PKG1/3/files/image.bin";
        let auth = p2p_auth();
        let creds = [("Authorization", auth.as_str())];
        let serving = || m.counters().snapshot().serving_now;

        // A first peer asks for the file and reads only the head.
        let mut first = TcpStream::connect(addr).await.unwrap();
        first
            .write_all(
                format!("GET {file} HTTP/1.1\r\nHost: m\r\nAuthorization: {auth}\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut head = vec![0u8; 4096];
        let n = first.read(&mut head).await.unwrap();
        let got = String::from_utf8_lossy(&head[..n]).to_string();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        until(|| serving() == 1).await;

        // The next request for content is told busy, with when to come back; the
        // small requests are still answered.
        let r = raw_get(addr, file, &creds).await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.text().contains("MaxServingConnections"), "{}", r.text());
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("retry-after") && v == "1"),
            "{:?}",
            r.headers
        );
        let r = raw_get(addr, "/content/PKG1/3/manifest.json", &creds).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(m.counters().snapshot().busy_refusals, 1);

        // The first peer goes away: its slot frees, and the file is served again.
        drop(first);
        until(|| serving() == 0).await;
        let r = raw_get(addr, file, &creds).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 4096 * BS);
        until(|| serving() == 0).await;
    })
    .await
}
