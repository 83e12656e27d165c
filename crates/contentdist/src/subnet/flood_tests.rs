//! The driver under hostile traffic on loopback: a flood of requests costs a
//! bounded number of announcements, a replayed authenticated request is dropped and
//! counted, and datagrams the kernel drops are counted too. Every flood is bounded
//! in count and time and goes to this test's own port only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::election::{
    decode, encode, unix_ms, Body, ElectionState, LocalInfo, Message, SiteKey, Stamper, Timing,
};
use crate::tasks::Tasks;
use crate::test_util::wait_until;

const MASTER: u64 = 7;
const BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);

fn start_driver(
    tasks: &Tasks,
    port: u16,
    site_key: Option<SiteKey>,
    socket: SocketOptions,
) -> SubnetHandle {
    let opts = SubnetOptions {
        local: LocalInfo {
            node_id: MASTER,
            addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 70)),
            ..LocalInfo::default()
        },
        timing: Timing::default(),
        port,
        broadcast: IpAddr::V4(BROADCAST),
        site_key,
        policy: RolePolicy::default(),
        cache_dir: None,
        tasks: tasks.clone(),
        heard_hosts: None,
        heard_holders: None,
        advertise_holding: None,
    };
    start_with(opts, socket).unwrap()
}

/// A socket on the election port that hears every broadcast, as another agent does.
pub(super) fn listener(port: u16) -> tokio::net::UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.set_nonblocking(true).unwrap();
    s.set_recv_buffer_size(4 << 20).unwrap();
    let any = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port);
    s.bind(&any.into()).unwrap();
    tokio::net::UdpSocket::from_std(s.into()).unwrap()
}

/// Read every datagram queued on `sock` and count the master's announcements.
fn count_announcements(sock: &tokio::net::UdpSocket, key: Option<&SiteKey>) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while let Ok(len) = sock.try_recv(&mut buf) {
        if let Ok(m) = decode(&buf[..len], key) {
            n += usize::from(m.node_id == MASTER && matches!(m.body, Body::Master(_)));
        }
    }
    n
}

fn sender() -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_broadcast(true).unwrap();
    s
}

fn request(content: &ContentKey) -> Message {
    Message {
        node_id: 0xF00D,
        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66)),
        key: content.clone(),
        body: Body::Request,
        host: None,
    }
}

/// Start a driver that becomes master of a content; returns it with a listener.
pub(super) async fn master(
    tasks: &Tasks,
    site_key: Option<SiteKey>,
) -> (SubnetHandle, tokio::net::UdpSocket, ContentKey, u16) {
    let port = crate::util::free_udp_port().unwrap();
    let heard = listener(port);
    let subnet = start_driver(tasks, port, site_key, SocketOptions::default());
    let content = ContentKey::new("FLOOD001", 1).unwrap();
    drop(subnet.join(&content, 0));
    wait_until(
        Duration::from_secs(5),
        "the driver to be master",
        || async {
            subnet
                .status()
                .first()
                .is_some_and(|s| s.state == ElectionState::Master)
        },
    )
    .await;
    (subnet, heard, content, port)
}

#[tokio::test]
async fn a_master_flooded_with_requests_over_udp_announces_at_a_bounded_rate() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let tasks = Tasks::new(CancellationToken::new());
        let (subnet, heard, content, port) = master(&tasks, None).await;
        let out = sender();
        let target = SocketAddr::new(BROADCAST.into(), port);
        let bytes = encode(&request(&content), None).unwrap();
        count_announcements(&heard, None);
        // 2,000 forged requests in about 2 s: 20 every 20 ms.
        let started = tokio::time::Instant::now();
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..100 {
            pace.tick().await;
            for _ in 0..20 {
                out.send_to(&bytes, target).unwrap();
            }
        }
        let sent = 2_000;
        wait_until(Duration::from_secs(10), "every request read", || async {
            // The driver's own broadcasts come back too: at least the requests.
            subnet.received() + subnet.overflowed() >= sent
        })
        .await;
        // Let an answer still owed go out.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let elapsed = started.elapsed();
        let announced = count_announcements(&heard, None);
        eprintln!(
            "{announced} announcements for {sent} requests in {elapsed:?} (overflowed {})",
            subnet.overflowed()
        );
        // A burst of 3, then one per election_window / 4 = 125 ms.
        let bound = 3 + elapsed.as_millis() as usize / 125 + 1;
        assert!(
            announced <= bound,
            "{announced} announcements, bound {bound}"
        );
        assert!(announced >= 2, "the master stopped answering: {announced}");
        assert_eq!((subnet.dropped(), subnet.replayed()), (0, 0));
        tasks.shutdown();
        tasks.join(Duration::from_secs(5)).await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_replayed_authenticated_request_is_dropped_and_counted_after_the_first() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let key = SiteKey::new(b"site secret");
        let tasks = Tasks::new(CancellationToken::new());
        let (subnet, heard, content, port) = master(&tasks, Some(key.clone())).await;
        // One request, as a site member sent it: captured, then sent 2,000 times.
        let stamp = Stamper::new(1).next(unix_ms(SystemTime::now()));
        let captured = encode(&request(&content), Some((&key, stamp))).unwrap();
        let out = sender();
        let target = SocketAddr::new(BROADCAST.into(), port);
        count_announcements(&heard, Some(&key));
        let mut pace = tokio::time::interval(Duration::from_millis(10));
        for _ in 0..100 {
            pace.tick().await;
            for _ in 0..20 {
                out.send_to(&captured, target).unwrap();
            }
        }
        wait_until(
            Duration::from_secs(10),
            "the replays to be counted",
            || async { subnet.replayed() + subnet.overflowed() >= 1_999 },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let announced = count_announcements(&heard, Some(&key));
        eprintln!(
            "{announced} announcements for 2,000 copies of one request; replayed {}, overflowed {}",
            subnet.replayed(),
            subnet.overflowed()
        );
        assert_eq!(subnet.overflowed(), 0, "nothing lost at this pace");
        assert_eq!(subnet.replayed(), 1_999);
        assert_eq!(subnet.dropped(), 0);
        // The first copy is answered; a heartbeat's re-announce cannot be told apart.
        assert!((1..=2).contains(&announced), "{announced} announcements");
        tasks.shutdown();
        tasks.join(Duration::from_secs(5)).await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn datagrams_the_kernel_drops_are_counted_as_overflowed() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let tasks = Tasks::new(CancellationToken::new());
        let port = crate::util::free_udp_port().unwrap();
        // The smallest buffer the kernel allows: a few datagrams fit.
        let small = SocketOptions { recv_buffer: 4096 };
        let subnet = start_driver(&tasks, port, None, small);
        assert!(subnet.recv_buffer() < 64 << 10, "{}", subnet.recv_buffer());
        // This test runs on one thread: the driver reads nothing until we await, so
        // the burst overflows the queue.
        let out = sender();
        let target = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        let junk = [0x5Au8; 100];
        let mut sent = 0u64;
        for _ in 0..5_000 {
            out.send_to(&junk, target).unwrap();
            sent += 1;
        }
        // The kernel reports its drops with the next datagram queued after them:
        // one more now and then until everything sent is accounted for.
        wait_until(
            Duration::from_secs(10),
            "every datagram accounted for",
            || {
                let accounted = subnet.received() + subnet.overflowed();
                if accounted < sent && sent < 5_500 {
                    out.send_to(&junk, target).unwrap();
                    sent += 1;
                }
                async move { accounted == sent }
            },
        )
        .await;
        eprintln!(
            "sent {sent}: received {}, overflowed {}, buffer {} bytes",
            subnet.received(),
            subnet.overflowed(),
            subnet.recv_buffer()
        );
        assert!(subnet.overflowed() > 4_000, "{}", subnet.overflowed());
        // Everything read was junk: dropped as undecodable, none as replayed.
        assert_eq!(subnet.dropped(), subnet.received());
        assert_eq!(subnet.replayed(), 0);
        tasks.shutdown();
        tasks.join(Duration::from_secs(5)).await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn messages_of_old_wire_versions_are_dropped_and_counted() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let tasks = Tasks::new(CancellationToken::new());
        let port = crate::util::free_udp_port().unwrap();
        let subnet = start_driver(&tasks, port, None, SocketOptions::default());
        let target = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        // Version 1 had no stamp, version 2 no master names.
        for version in [1, 2] {
            let mut old = encode(&request(&ContentKey::new("OLD00001", 1).unwrap()), None).unwrap();
            old[4] = version;
            sender().send_to(&old, target).unwrap();
        }
        wait_until(
            Duration::from_secs(5),
            "the datagrams to be dropped",
            || async { subnet.dropped() == 2 },
        )
        .await;
        assert_eq!((subnet.received(), subnet.replayed()), (2, 0));
        tasks.shutdown();
        tasks.join(Duration::from_secs(5)).await.unwrap();
    })
    .await
    .expect("test timed out");
}
