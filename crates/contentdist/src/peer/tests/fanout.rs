//! FanOut on loopback: peers on their own 127.0.0.X addresses, each running its
//! own peer-copy server, copy one content from a master and from each other.

use std::sync::atomic::{AtomicU64, Ordering};

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
                let got = AtomicU64::new(0);
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
                got.load(Ordering::Relaxed)
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
async fn a_holder_that_goes_away_costs_only_time() {
    bounded(async {
        let c = Arc::new(content(256));
        let master = Agent::start(20);
        c.fill(&master.node.entry(&c), 0..c.manifest.block_count());
        let target = target_at(master.server.local_addr());
        // A first peer copies everything, then its server stops.
        let gone = Agent::start(21);
        let entry = gone.node.entry(&c);
        gone.client
            .copy(
                &entry,
                &target,
                http_only(),
                &AtomicU64::new(0),
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        // The master still names it as a holder (for 30 s); the second peer copies
        // anyway.
        drop(gone);
        let late = Agent::start(22);
        let entry = late.node.entry(&c);
        late.client
            .copy(
                &entry,
                &target,
                http_only(),
                &AtomicU64::new(0),
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert!(entry.is_complete());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_master_sends_peers_to_the_other_holders() {
    bounded(async {
        let c = Arc::new(content(640));
        // The master serves one transfer at a time; the peers serve as many as
        // they like.
        let one = PeerServerLimits {
            max_serving: 1,
            ..Default::default()
        };
        let master = Agent::start_with(30, one);
        c.fill(&master.node.entry(&c), 0..c.manifest.block_count());
        let target = target_at(master.server.local_addr());
        let peers: Vec<Arc<Agent>> = (31..35).map(|h| Arc::new(Agent::start(h))).collect();
        let copies = peers.iter().map(|p| {
            let (p, c, target) = (Arc::clone(p), Arc::clone(&c), target.clone());
            tokio::spawn(async move {
                let entry = p.node.entry(&c);
                p.client
                    .copy(
                        &entry,
                        &target,
                        http_only(),
                        &AtomicU64::new(0),
                        &CancellationToken::new(),
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    std::fs::read(entry.data_dir().join("image.bin")).unwrap(),
                    c.files[0].1
                );
            })
        });
        for r in futures_util::future::join_all(copies).await {
            r.unwrap();
        }
        let m = master.server.counters().snapshot();
        let busy: u64 = peers
            .iter()
            .map(|p| p.client.counters().busy_answers.load(Ordering::Relaxed))
            .sum();
        let from_peers: u64 = peers.iter().map(|p| p.served()).sum();
        eprintln!("master: {m:?}; busy answers {busy}; peers served {from_peers}");
        assert!(
            m.busy_refusals > 0 && busy == m.busy_refusals,
            "{m:?}, busy {busy}"
        );
        assert!(
            from_peers > c.manifest.total_size(),
            "peers served {from_peers}"
        );
        assert_eq!(m.serving_now, 0);
    })
    .await
}
