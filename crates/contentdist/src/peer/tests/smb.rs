//! Peer copy from a master's own smbd (root, samba installed): the SMB source of
//! the engine, the protocol order's last step.

use std::sync::atomic::Ordering;

use super::*;
use crate::smb::{SmbShare, SmbState};
use crate::tasks::Tasks;

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let ok = unsafe { libc::geteuid() } == 0 && std::path::Path::new("/usr/sbin/smbd").exists();
    if !ok {
        println!("skipped: needs root and smbd");
    }
    ok
}

/// A master's cache shared by its own smbd on 127.0.0.1 (a free port), for the
/// P2P account of [`KEY`].
struct SmbMaster {
    node: Node,
    tasks: Tasks,
    port: u16,
}

impl SmbMaster {
    async fn start() -> SmbMaster {
        let node = Node::new();
        let port = crate::util::free_tcp_port().unwrap();
        let tasks = Tasks::new(CancellationToken::new());
        let root = node.cache.root().to_path_buf();
        let share = SmbShare::start(
            crate::smb::tests::share_options(&root, port, &p2p_credentials(&KEY).1),
            &tasks,
        );
        let mut w = share.watch();
        while w.borrow_and_update().state != SmbState::Running {
            w.changed().await.unwrap();
        }
        SmbMaster { node, tasks, port }
    }

    /// Put every block of `c` in the master's cache, verified and durable.
    fn hold(&self, c: &Content) {
        let me = self.node.entry(c);
        c.fill(&me, 0..c.manifest.block_count());
        me.flush().unwrap();
    }

    fn target(&self, protocols: Protocols) -> MasterTarget {
        MasterTarget {
            protocols,
            // Nothing listens there: HTTP fails at once.
            http_port: 1,
            ..target_at("127.0.0.1:1".parse().unwrap())
        }
    }

    fn client(&self) -> PeerClient {
        PeerClient::new(PeerClientOptions {
            connect_timeout: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(5),
            long_poll: Duration::from_secs(2),
            smb_port: self.port,
            ..Default::default()
        })
        .unwrap()
    }
}

impl Drop for SmbMaster {
    fn drop(&mut self) {
        self.tasks.shutdown();
    }
}

fn smb_only() -> Protocols {
    Protocols::NONE.with(Protocol::Smb)
}

#[tokio::test]
async fn a_peer_copies_over_smb_and_every_byte_matches() {
    if !can_run() {
        return;
    }
    bounded(async {
        let m = SmbMaster::start().await;
        let c = Content::new(&[
            ("a.bin", 3 * BS + 100),
            ("dir/b b.bin", 700 * BS + 9),
            ("empty.txt", 0),
        ]);
        m.hold(&c);
        let peer = Node::new();
        let entry = peer.entry(&c);
        let from_peers = PeerBytes::default();
        let client = m.client();
        let out = client
            .copy(
                &entry,
                &m.target(smb_only()),
                smb_only(),
                &from_peers,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(out, CopyOutcome::Complete);
        let dir = entry.data_dir();
        for (p, d) in &c.files {
            assert_eq!(&std::fs::read(dir.join(p)).unwrap(), d, "{p}");
        }
        let got = from_peers.snapshot();
        assert_eq!(got.smb, c.manifest.total_size(), "{got:?}");
        assert_eq!(got.http + got.https, 0);
        assert_eq!(
            client.counters().content.snapshot().smb,
            c.manifest.total_size()
        );
        assert_eq!(client.counters().blocks_rejected.load(Ordering::Relaxed), 0);
    })
    .await
}

#[tokio::test]
async fn a_peer_follows_a_master_that_is_still_downloading_over_smb() {
    if !can_run() {
        return;
    }
    bounded(async {
        let m = SmbMaster::start().await;
        let c = Arc::new(Content::new(&[("big.bin", 64 * BS + 7)]));
        let me = m.node.entry(&c);
        let filler = {
            let (c, me) = (c.clone(), me.clone());
            tokio::spawn(async move {
                let n = c.manifest.block_count();
                for i in 0..n {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    c.fill(&me, [i]);
                    if i % 8 == 0 {
                        me.flush().unwrap();
                    }
                }
                me.flush().unwrap();
            })
        };
        let peer = Node::new();
        let entry = peer.entry(&c);
        let from_peers = PeerBytes::default();
        m.client()
            .copy(
                &entry,
                &m.target(smb_only()),
                smb_only(),
                &from_peers,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        filler.await.unwrap();
        assert_eq!(
            std::fs::read(entry.data_dir().join("big.bin")).unwrap(),
            c.files[0].1
        );
        // Only verified blocks were read, each once.
        assert_eq!(from_peers.snapshot().smb, c.manifest.total_size());
    })
    .await
}

#[tokio::test]
async fn https_and_http_failing_fall_back_to_smb() {
    if !can_run() {
        return;
    }
    bounded(async {
        let m = SmbMaster::start().await;
        let c = Content::standard();
        m.hold(&c);
        let peer = Node::new();
        let entry = peer.entry(&c);
        let from_peers = PeerBytes::default();
        let all = Protocols::ALL;
        // No TLS settings here: HTTPS is not spoken, HTTP finds nothing listening.
        m.client()
            .copy(
                &entry,
                &m.target(all),
                all,
                &from_peers,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert!(entry.is_complete());
        assert_eq!(from_peers.snapshot().smb, c.manifest.total_size());
    })
    .await
}

#[tokio::test]
async fn a_wrong_key_is_refused_over_smb() {
    if !can_run() {
        return;
    }
    bounded(async {
        let m = SmbMaster::start().await;
        let c = Content::standard();
        m.hold(&c);
        let peer = Node::new();
        let mut target = m.target(smb_only());
        target.p2p_key = [7; 32];
        let err = m
            .client()
            .copy(
                &peer.entry(&c),
                &target,
                smb_only(),
                &PeerBytes::default(),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
        assert!(!err.is_master_lost(), "{err}");
        assert_eq!(err.code(), crate::codes::Code::ORIGIN_REFUSED, "{err}");
    })
    .await
}
