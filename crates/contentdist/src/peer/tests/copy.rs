use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::codes::Code;

fn files_of(node: &Node, c: &Content) -> Vec<Vec<u8>> {
    let dir = node.entry(c).data_dir();
    c.files
        .iter()
        .map(|(p, _)| std::fs::read(dir.join(p)).unwrap())
        .collect()
}

#[tokio::test]
async fn a_peer_copies_complete_content_and_every_byte_matches() {
    bounded(async {
        let m = Master::with_key();
        // One file spans several 256 KiB read chunks of the server.
        let c = Content::new(&[
            ("a.bin", 3 * BS + 100),
            ("dir/b b.bin", 200 * BS + 9),
            ("empty.txt", 0),
        ]);
        c.fill(&m.node.entry(&c), 0..c.manifest.block_count());
        let big = &c.files[1].1;
        let r = get(
            m.addr(),
            "/content/PKG1/3/files/dir/b%20b.bin",
            &[("Range", "bytes=1000-700000")],
        )
        .await;
        assert_eq!((r.status, &r.body[..]), (206, &big[1000..=700000]));
        let peer = Node::new();
        let entry = peer.entry(&c);
        let from_peers = PeerBytes::default();
        let client = client();
        let out = client
            .copy(
                &entry,
                &m.target(),
                http_only(),
                &from_peers,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(out, CopyOutcome::Complete);
        assert!(entry.is_complete());
        let expected: Vec<Vec<u8>> = c.files.iter().map(|(_, d)| d.clone()).collect();
        assert_eq!(files_of(&peer, &c), expected);
        assert_eq!(from_peers.total(), c.manifest.total_size());
        assert_eq!(client.counters().blocks_rejected.load(Ordering::Relaxed), 0);
        // Copying again is a no-op.
        client
            .copy(
                &entry,
                &m.target(),
                http_only(),
                &from_peers,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(from_peers.total(), c.manifest.total_size());
    })
    .await
}

#[tokio::test]
async fn a_peer_copies_while_the_master_downloads_and_finishes_right_after_it() {
    bounded(async {
        let m = Master::with_key();
        let c = Arc::new(Content::new(&[
            ("big.bin", 48 * BS + 7),
            ("small.bin", 3 * BS),
        ]));
        let master_entry = m.node.entry(&c);
        let peer = Node::new();
        let entry = peer.entry(&c);
        let peer_entry = entry.clone();
        let filler = {
            let c = c.clone();
            tokio::spawn(async move {
                // Out of order, as several origin requests could land.
                let n = c.manifest.block_count();
                for i in (0..n)
                    .rev()
                    .step_by(2)
                    .chain((0..n).rev().skip(1).step_by(2))
                {
                    tokio::time::sleep(Duration::from_millis(8)).await;
                    c.fill(&master_entry, [i]);
                }
                (Instant::now(), peer_entry.verified_bytes())
            })
        };
        let from_peers = PeerBytes::default();
        let client = client();
        client
            .copy(
                &entry,
                &m.target(),
                http_only(),
                &from_peers,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        let peer_done = Instant::now();
        let (master_done, peer_had) = filler.await.unwrap();
        assert!(
            peer_had > 0,
            "the peer copied nothing while the master downloaded"
        );
        let lag = peer_done.saturating_duration_since(master_done);
        assert!(
            lag < Duration::from_secs(1),
            "peer finished {lag:?} after the master"
        );
        let expected: Vec<Vec<u8>> = c.files.iter().map(|(_, d)| d.clone()).collect();
        assert_eq!(files_of(&peer, &c), expected);
        // Every block crossed once and verified the first time: nothing unverified came.
        assert_eq!(from_peers.total(), c.manifest.total_size());
        assert_eq!(client.counters().blocks_rejected.load(Ordering::Relaxed), 0);
    })
    .await
}

#[tokio::test]
async fn a_master_that_shuts_down_mid_copy_is_reported_lost_quickly() {
    bounded(async {
        let m = Master::with_key();
        let c = Content::standard();
        c.fill(&m.node.entry(&c), 0..4);
        let peer = Node::new();
        let entry = peer.entry(&c);
        let (client, target, token) = (client(), m.target(), m.token.clone());
        let copy = {
            let entry = entry.clone();
            tokio::spawn(async move {
                let from = PeerBytes::default();
                client
                    .copy(
                        &entry,
                        &target,
                        http_only(),
                        &from,
                        &CancellationToken::new(),
                    )
                    .await
            })
        };
        // The peer holds what the master had and is waiting for more.
        until(|| entry.verified_bytes() == 3 * BS as u64 + 100).await;
        let t = Instant::now();
        token.cancel();
        let err = copy.await.unwrap().unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(err.is_master_lost(), "{err}");
        assert_eq!(err.code(), Code::CANNOT_CONNECT, "{err}");
        assert!(
            entry.has_block(0) && !entry.has_block(4),
            "verified blocks are kept"
        );
    })
    .await
}

/// The error of a copy of `entry` from `target` over HTTP that is expected to fail.
async fn failed_copy(entry: &Arc<ContentEntry>, target: &MasterTarget) -> PeerError {
    client()
        .copy(
            entry,
            target,
            http_only(),
            &PeerBytes::default(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err()
}

/// A fresh peer's copy from a "master" at `addr`:`port` where nothing answers: its
/// error.
async fn copy_from_nowhere(addr: &str, port: u16) -> PeerError {
    let target = MasterTarget {
        cert_fingerprint: None,
        names: Vec::new(),
        addr: addr.parse().unwrap(),
        http_port: port,
        https_port: port,
        protocols: http_only(),
        p2p_key: KEY,
    };
    failed_copy(&Node::new().entry(&Content::standard()), &target).await
}

/// The page's 0x4CF: no route to the master. In a network namespace of its own
/// (root only), where not even loopback is up, every connect fails with
/// ENETUNREACH and no packet leaves.
#[test]
fn a_master_on_an_unreachable_network_is_reported_lost_with_0x4cf() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: needs root (a network namespace of its own)");
        return;
    }
    let err = std::thread::spawn(|| {
        // SAFETY: unshare affects only this thread, which owns nothing shared yet.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(bounded(copy_from_nowhere("10.77.0.1", 5080)))
    })
    .join()
    .unwrap();
    assert!(err.is_master_lost(), "{err}");
    assert_eq!(err.code(), Code::NETWORK_UNREACHABLE, "{err}");
}

#[tokio::test]
async fn no_master_listening_is_reported_lost_with_cannot_connect() {
    bounded(async {
        let port = crate::util::free_tcp_port().unwrap();
        let err = copy_from_nowhere("127.0.0.1", port).await;
        assert!(err.is_master_lost());
        assert_eq!(err.code(), Code::CANNOT_CONNECT);
    })
    .await
}

#[tokio::test]
async fn protocol_choice_names_both_sides_when_nothing_usable_is_shared() {
    bounded(async {
        let smb = Protocols::NONE.with(Protocol::Smb);
        let https = Protocols::NONE.with(Protocol::Https);
        let all = Protocols::ALL;
        let http = http_only();
        assert_eq!(choose_protocol(all, all, http).unwrap(), Protocol::Http);
        assert_eq!(
            choose_protocol(all, all, http.with(Protocol::Https)).unwrap(),
            Protocol::Https
        );

        let e = choose_protocol(smb, http, http).unwrap_err();
        assert_eq!(e.code(), Code::PROTOCOL_MISMATCH);
        let msg = e.to_string();
        assert!(
            msg.contains("this agent allows SMB, the master accepts HTTP"),
            "{msg}"
        );
        assert!(!e.is_master_lost());

        let e = choose_protocol(all, smb.with(Protocol::Https), http).unwrap_err();
        assert_eq!(e.code(), Code::PROTOCOL_MISMATCH);
        let msg = e.to_string();
        assert!(
            msg.contains("is HTTPS + SMB, which this agent does not implement yet"),
            "{msg}"
        );

        // Through copy(): refused before any connection is made.
        let m = Master::with_key();
        let c = Content::standard();
        let peer = Node::new();
        let mut target = m.target();
        target.protocols = https;
        let err = client()
            .copy(
                &peer.entry(&c),
                &target,
                all,
                &PeerBytes::default(),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, PeerError::ProtocolNotImplemented { .. }),
            "{err}"
        );
        assert_eq!(m.counters().snapshot().requests, 0);
    })
    .await
}

#[tokio::test]
async fn wrong_key_is_refused_and_other_content_is_a_mismatch() {
    bounded(async {
        let m = Master::with_key();
        let c = Content::standard();
        c.fill(&m.node.entry(&c), 0..2);
        let peer = Node::new();
        let mut target = m.target();
        target.p2p_key = [1; 32];
        let err = failed_copy(&peer.entry(&c), &target).await;
        assert!(
            matches!(&err, PeerError::Http(f) if f.status() == Some(403)),
            "{err}"
        );
        assert_eq!(err.code(), Code::ORIGIN_REFUSED);
        assert!(!err.is_master_lost());
        assert_eq!(m.counters().snapshot().requests_refused, 1);

        // Same id and version, other bytes: another content hash.
        let other = Content::new(&[("a.bin", 2 * BS)]);
        let peer2 = Node::new();
        let err = failed_copy(&peer2.entry(&other), &m.target()).await;
        assert_eq!(err.code(), Code::MANIFEST_MISMATCH, "{err}");

        // The manifest itself comes from the master as published.
        let got = client()
            .fetch_manifest(&m.target(), http_only(), "PKG1", 3, None)
            .await
            .unwrap();
        assert_eq!(got, c.manifest);
        // With the content hash it is checked against: this one, or refused.
        let hash = c.manifest.content_hash.clone();
        let checked = client()
            .fetch_manifest(&m.target(), http_only(), "PKG1", 3, Some(&hash))
            .await
            .unwrap();
        assert_eq!(checked, c.manifest);
        let other = "0f".repeat(32);
        let err = client()
            .fetch_manifest(&m.target(), http_only(), "PKG1", 3, Some(&other))
            .await
            .unwrap_err();
        assert!(matches!(err, PeerError::ManifestMismatch(_)), "{err}");
        let err = client()
            .fetch_manifest(&m.target(), http_only(), "PKG2", 3, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PeerError::Http(f) if f.status() == Some(404)),
            "{err}"
        );
    })
    .await
}

#[tokio::test]
async fn stop_ends_a_copy_waiting_on_the_master() {
    bounded(async {
        let m = Master::with_key();
        let c = Content::standard();
        m.node.entry(&c);
        let peer = Node::new();
        let stop = CancellationToken::new();
        let copy = {
            let (entry, target, stop) = (peer.entry(&c), m.target(), stop.clone());
            tokio::spawn(async move {
                client()
                    .copy(&entry, &target, http_only(), &PeerBytes::default(), &stop)
                    .await
            })
        };
        until(|| m.counters().requests.load(Ordering::Relaxed) >= 2).await;
        stop.cancel();
        let err = copy.await.unwrap().unwrap_err();
        assert!(matches!(err, PeerError::Stopped), "{err}");
        assert_eq!(err.code(), Code::CANCELLED);
    })
    .await
}

#[tokio::test]
async fn a_master_sending_bytes_that_do_not_verify_is_abandoned_with_data_error() {
    bounded(async {
        let c = Content::standard();
        let addr = lying_master(&c, Lie::WrongBytes).await;
        let peer = Node::new();
        let entry = peer.entry(&c);
        let target = target_at(addr);
        let client = client();
        let err = client
            .copy(
                &entry,
                &target,
                http_only(),
                &PeerBytes::default(),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, PeerError::Corrupt { times: 4, .. }), "{err}");
        assert_eq!(err.code(), Code::DATA_ERROR);
        assert_eq!(
            entry.verified_bytes(),
            0,
            "nothing unverified entered the cache"
        );
        assert!(client.counters().blocks_rejected.load(Ordering::Relaxed) >= 4);
    })
    .await
}
