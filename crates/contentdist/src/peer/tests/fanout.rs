//! FanOut on loopback: peers on their own 127.0.0.X addresses, each running its
//! own peer-copy server, copy one content from a master and from each other.

use std::sync::atomic::Ordering;

use super::*;
use crate::peer::swarm::SelfAd;

/// An agent on `127.0.0.{host}`: a cache, a peer-copy server, and a FanOut client.
struct Agent {
    node: Node,
    server: PeerServer,
    client: PeerClient,
    _token: tokio_util::sync::DropGuard,
}

impl Agent {
    fn start(host: u8) -> Agent {
        Agent::start_with(host, PeerServerLimits::default())
    }

    fn start_with(host: u8, limits: PeerServerLimits) -> Agent {
        let node = Node::new();
        let token = CancellationToken::new();
        let ip = std::net::IpAddr::from([127, 0, 0, host]);
        let server = PeerServer::start_with_limits(
            PeerServerOptions {
                listen: SocketAddr::new(ip, 0),
                cache: node.cache.clone(),
                auth: Arc::new(key_auth()),
                shutdown: token.clone(),
            },
            limits,
        )
        .unwrap();
        let client = PeerClient::new(PeerClientOptions {
            connect_timeout: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(2),
            long_poll: Duration::from_secs(2),
            local_address: Some(ip),
            fan_out: Some(SelfAd {
                http_port: server.local_addr().port(),
                https_port: 0,
                protocols: http_only(),
                // The tests' agents share one P2P key: each accepts the others.
                p2p_key: Some(KEY),
                names: Vec::new(),
                pin: None,
            }),
            ..Default::default()
        })
        .unwrap();
        Agent {
            node,
            server,
            client,
            _token: token.drop_guard(),
        }
    }

    fn served(&self) -> u64 {
        self.server.counters().snapshot().bytes_served
    }

    /// Copy all of `c` from the master at `target` over HTTP; the entry filled.
    async fn copy_all(
        &self,
        c: &Content,
        target: &MasterTarget,
    ) -> Arc<crate::cache::ContentEntry> {
        let entry = self.node.entry(c);
        let got = PeerBytes::default();
        let stop = CancellationToken::new();
        let copied = self.client.copy(&entry, target, http_only(), &got, &stop);
        copied.await.unwrap();
        entry
    }
}

/// A content of `blocks` blocks in one file.
fn content(blocks: usize) -> Content {
    Content::new(&[("image.bin", blocks * BS - 100)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_take_blocks_from_each_other_and_spare_the_master() {
    bounded(async {
        let c = Arc::new(content(640));
        let master = Agent::start(10);
        c.fill(&master.node.entry(&c), 0..c.manifest.block_count());
        let target = target_at(master.server.local_addr());
        let peers: Vec<Arc<Agent>> = (11..15).map(|h| Arc::new(Agent::start(h))).collect();
        let copies = peers.iter().map(|p| {
            let (p, c, target) = (Arc::clone(p), Arc::clone(&c), target.clone());
            tokio::spawn(async move {
                let entry = p.node.entry(&c);
                let got = PeerBytes::default();
                p.client
                    .copy(
                        &entry,
                        &target,
                        http_only(),
                        &got,
                        &CancellationToken::new(),
                    )
                    .await
                    .unwrap();
                assert!(entry.is_complete());
                got.total()
            })
        });
        let received = futures_util::future::join_all(copies).await;
        let total = c.manifest.total_size();
        for r in received {
            assert!(r.unwrap() >= total);
        }
        for p in &peers {
            let dir = p.node.entry(&c).data_dir();
            assert_eq!(std::fs::read(dir.join("image.bin")).unwrap(), c.files[0].1);
        }
        // Every byte crossed the master's port about once, not once per peer: the
        // rest came from the peers.
        let from_master = master.served();
        let from_peers: u64 = peers.iter().map(|p| p.served()).sum();
        eprintln!("content {total}, master served {from_master}, peers served {from_peers}");
        assert!(
            from_peers > total,
            "peers served {from_peers} of {}",
            4 * total
        );
        assert!(
            from_master < total * 3 / 2,
            "the master served {from_master} for 4 peers of {total}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_completes_says_so_and_the_master_names_it_to_later_peers_for_long() {
    bounded(async {
        let c = Arc::new(content(256));
        let master = Agent::start(30);
        let key = master.node.entry(&c).key().clone();
        c.fill(&master.node.entry(&c), 0..c.manifest.block_count());
        let target = target_at(master.server.local_addr());
        let first = Agent::start(31);
        first.copy_all(&c, &target).await;
        // Its last word to the master: it holds all, and asks no more, so it is
        // kept for 10 minutes, not 30 s.
        let ip = |h: u8| std::net::IpAddr::from([127, 0, 0, h]);
        let (verified, kept) = master.server.holder(&key, ip(31)).unwrap();
        assert_eq!(verified, c.manifest.block_count());
        assert!(kept > crate::peer::swarm::HOLDER_TTL, "kept {kept:?}");
        // A peer that starts later copies from it too.
        let late = Agent::start(32);
        let entry = late.copy_all(&c, &target).await;
        assert!(entry.is_complete());
        let total = c.manifest.total_size();
        assert!(
            first.served() >= total / 4,
            "the finished peer served {} of {total}",
            first.served()
        );
        // The late peer said so too.
        let (verified, kept) = master.server.holder(&key, ip(32)).unwrap();
        assert_eq!(verified, c.manifest.block_count());
        assert!(kept > crate::peer::swarm::HOLDER_TTL);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_goes_away_costs_only_time() {
    bounded(async {
        let c = Arc::new(content(256));
        let master = Agent::start(20);
        c.fill(&master.node.entry(&c), 0..c.manifest.block_count());
        let target = target_at(master.server.local_addr());
        // A first peer copies everything, then its server stops.
        let gone = Agent::start(21);
        gone.copy_all(&c, &target).await;
        // The master still names it as a holder (for 30 s); the second peer copies
        // anyway.
        drop(gone);
        let late = Agent::start(22);
        let entry = late.copy_all(&c, &target).await;
        assert!(entry.is_complete());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_master_is_not_a_failure_and_the_holders_serve_meanwhile() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        // 32 MiB: more than loopback's socket buffers, so an unread body keeps
        // the master's only serving slot taken.
        let c = Arc::new(content(8192));
        let n = c.manifest.block_count();
        let one = PeerServerLimits {
            max_serving: 1,
            ..Default::default()
        };
        let master = Agent::start_with(30, one);
        c.fill(&master.node.entry(&c), 0..n);
        let target = target_at(master.server.local_addr());
        // A holder with the first half, which tells the master so.
        let holder = Agent::start(31);
        c.fill(&holder.node.entry(&c), 0..n / 2);
        let route = holder
            .client
            .open(&target, http_only(), "PKG1", 3)
            .await
            .unwrap();
        holder.client.have_as(&route, None, Some(n / 2)).await.unwrap();
        // Someone takes the master's only slot and reads nothing.
        let mut hog = tokio::net::TcpStream::connect(master.server.local_addr())
            .await
            .unwrap();
        let auth = p2p_auth();
        hog.write_all(
            format!("GET /content/PKG1/3/files/image.bin HTTP/1.1\r\nHost: m\r\nAuthorization: {auth}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut head = [0u8; 12];
        hog.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");

        let peer = Arc::new(Agent::start(32));
        let copy = {
            let (peer, c, target) = (Arc::clone(&peer), Arc::clone(&c), target.clone());
            tokio::spawn(async move {
                let entry = peer.node.entry(&c);
                let got = PeerBytes::default();
                let r = peer
                    .client
                    .copy(&entry, &target, http_only(), &got, &CancellationToken::new())
                    .await;
                (r, entry)
            })
        };
        // While the master is busy, the peer gets the first half from the holder,
        // and is told busy for the second.
        let entry = peer.node.entry(&c);
        until(|| entry.verified_blocks() >= n / 2).await;
        until(|| master.server.counters().snapshot().busy_refusals >= 2).await;
        // Only the hog's response holds a slot.
        assert_eq!(master.server.counters().snapshot().serving_now, 1);
        // The slot frees: the peer finishes from the master.
        drop(hog);
        let (r, entry) = copy.await.unwrap();
        r.expect("busy answers are not a failure");
        assert_eq!(
            std::fs::read(entry.data_dir().join("image.bin")).unwrap(),
            c.files[0].1
        );
        let m = master.server.counters().snapshot();
        let busy = peer.client.counters().busy_answers.load(Ordering::Relaxed);
        assert_eq!(busy, m.busy_refusals, "{m:?}");
        assert!(holder.served() >= (n / 2 * BS) as u64, "{}", holder.served());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_alone_asks_the_master_for_longer_stretches_round_after_round() {
    bounded(async {
        // 40 pieces of 128 blocks for a lone agent.
        let pieces = 40;
        let c = Arc::new(content(pieces * 128));
        let master = Agent::start(40);
        c.fill(&master.node.entry(&c), 0..c.manifest.block_count());
        let target = target_at(master.server.local_addr());
        let alone = Agent::start(41);
        let entry = alone.copy_all(&c, &target).await;
        assert_eq!(
            std::fs::read(entry.data_dir().join("image.bin")).unwrap(),
            c.files[0].1
        );
        // Three rounds of one piece, then 2, 4 and 8 pieces per request: 9 rounds
        // (a `have` and a request each) and the last word, where one piece a round
        // made 40 rounds and two 22.
        let requests = master.server.counters().snapshot().requests;
        assert!(requests <= 24, "{requests} requests to the master");
        // Nothing twice: beyond the content, only the manifest and the `have`
        // answers (far less than a piece).
        let extra = master.served() - c.manifest.total_size();
        assert!(extra < 64 * 1024, "{extra} bytes served beyond the content");
    })
    .await
}
