//! Hostile traffic against a real agent's peer-copy port, on loopback: a flood of
//! unauthenticated requests costs a log line, not one per request; too many
//! connections from one address are closed while another address is served.
//! Every load loop is bounded in count, and every test in time.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::agent::AgentProc;
use support::{wait_until, with_timeout, TestDir};

/// One agent with peer copy over HTTP on `127.0.X.1` (nothing to fetch: its peer
/// server runs from the start), and its peer-copy address.
fn agent(t: &TestDir) -> (AgentProc, SocketAddr) {
    let port = support::free_udp_port();
    let extra = format!(
        "P2PEnabled = 0x28\nP2P_Port = {port}\nP2PHttpPort = 0\n\
         ListenAddress = \"127.0.{}.1\"\n",
        port % 250
    );
    let a = AgentProc::start(&t.join("agent"), "http://127.0.0.1:9/", &extra);
    let out = a.cli(&["status", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = s["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str()?.strip_prefix("http://"))
        .next()
        .unwrap_or_else(|| panic!("no peer-copy listener: {s}"))
        .to_string();
    let addr = url.trim_end_matches("/content/").parse().unwrap();
    (a, addr)
}

/// Send `n` requests without credentials on one keep-alive connection; the
/// status of each answer.
fn unauthenticated(addr: SocketAddr, n: usize) -> Vec<u16> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        s.write_all(b"GET /content/OSD00001/1/have HTTP/1.1\r\nHost: peer\r\n\r\n")
            .unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        statuses.push(line.split(' ').nth(1).unwrap().parse().unwrap());
        let mut length = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        r.read_exact(&mut body).unwrap();
    }
    statuses
}

/// A blocking connection to `addr` from `source` (std cannot bind before
/// connecting; tokio's socket can).
fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(source.parse().unwrap(), 0))
            .unwrap();
        socket.connect(addr).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

fn lines_with(log: &str, text: &str) -> usize {
    log.lines().filter(|l| l.contains(text)).count()
}

#[test]
fn five_thousand_unauthenticated_requests_write_one_refusal_line() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        let (a, addr) = agent(&t);
        let started = Instant::now();
        let floods: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || unauthenticated(addr, 1250)))
            .collect();
        for f in floods {
            assert!(f.join().unwrap().iter().all(|&s| s == 403));
        }
        assert!(started.elapsed() < Duration::from_secs(60));
        let log = a.log();
        assert_eq!(lines_with(&log, "peer-copy request refused"), 1, "{log}");
        assert!(log.len() < 200_000, "{} bytes of log", log.len());
    });
}

#[test]
fn connections_over_the_per_address_cap_are_closed_and_another_address_is_served() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        let (a, addr) = agent(&t);
        // The default cap is 64 per source address.
        let held: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // The server takes them in order: the 65th, and later ones, are closed
        // unread once it got there.
        let closed = wait_until(Duration::from_secs(20), || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            matches!(s.read(&mut [0u8; 1]), Ok(0) | Err(_))
                && lines_with(&a.log(), "connection closed unread") == 1
        });
        assert!(closed, "{}", a.log());
        // Another source address is served meanwhile.
        let mut other = connect_from("127.0.0.2", addr);
        other
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        other
            .write_all(
                b"GET /content/OSD00001/1/have HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        let mut answer = String::new();
        other.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        drop(held);
    });
}
