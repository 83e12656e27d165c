//! A master whose cached block changed on disk: answered 409 when the change is in
//! the first read chunk, cut short later, and in both cases a peer sees "not held"
//! (no bad block, no network failure) and completes once the block is back.

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::sync::atomic::Ordering;

use super::*;

/// 200 blocks: the server's first read chunk (256 KiB) is blocks 0..64.
const BLOCKS: usize = 200;
const EARLY: usize = 10;
const LATE: usize = 120;

fn big() -> Content {
    Content::new(&[("big.bin", BLOCKS * BS)])
}

/// Write over `block` of the master's cached file, as an administrator writing
/// into a delivered hard link would.
fn tamper(entry: &ContentEntry, block: usize) {
    let path = entry.data_dir().join("big.bin");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"TAMPERED", (block * BS + 100) as u64)
        .unwrap();
}

async fn have(addr: SocketAddr) -> (HaveDoc, Vec<u8>) {
    let r = get(addr, "/content/PKG1/3/have", &[]).await;
    let doc: HaveDoc = serde_json::from_slice(&r.body).unwrap();
    let bitmap = hex::decode(&doc.bitmap).unwrap();
    (doc, bitmap)
}

#[tokio::test]
async fn a_changed_block_in_the_first_chunk_is_answered_409_and_the_entry_reverified() {
    bounded(async {
        let m = Master::with_key();
        let c = big();
        let e = m.node.entry(&c);
        c.fill(&e, 0..BLOCKS);
        tamper(&e, EARLY);
        let r = get(m.addr(), "/content/PKG1/3/files/big.bin", &[]).await;
        assert_eq!(r.status, 409, "{}", r.text());
        assert!(r.text().contains("changed"), "{}", r.text());
        // Not advertised from that moment on, and dropped by the re-verification.
        let (doc, bitmap) = have(m.addr()).await;
        assert!(!HaveDoc::bit(&bitmap, EARLY));
        assert_eq!((doc.verified, doc.complete), (BLOCKS - 1, false));
        until(|| !e.has_block(EARLY)).await;
        let s = m.counters().snapshot();
        assert_eq!((s.blocks_changed, s.changed_ranges_refused), (1, 1));
        assert_eq!(s.responses_aborted, 0);
    })
    .await
}

#[tokio::test]
async fn a_block_changed_past_the_first_chunk_cuts_the_body_and_leaves_have_before_the_cut() {
    bounded(async {
        let m = Master::with_key();
        let c = big();
        let e = m.node.entry(&c);
        c.fill(&e, 0..BLOCKS);
        tamper(&e, LATE);
        let r = get(m.addr(), "/content/PKG1/3/files/big.bin", &[]).await;
        assert_eq!(r.status, 200);
        assert!(r.body.len() <= LATE * BS, "{} bytes", r.body.len());
        assert!(!r.body.windows(8).any(|w| w == b"TAMPERED"));
        // Asked right after the cut, as a peer does: already not held.
        let (_, bitmap) = have(m.addr()).await;
        assert!(!HaveDoc::bit(&bitmap, LATE));
        assert!(HaveDoc::bit(&bitmap, LATE - 1));
        until(|| !e.has_block(LATE)).await;
        let s = m.counters().snapshot();
        assert_eq!((s.blocks_changed, s.responses_aborted), (1, 1));
    })
    .await
}

#[tokio::test]
async fn a_peer_waits_out_changed_blocks_without_counting_them_bad_and_completes_once_restored() {
    bounded(async {
        let m = Master::with_key();
        let c = Arc::new(big());
        let master_entry = m.node.entry(&c);
        c.fill(&master_entry, 0..BLOCKS);
        // A change the server finds before the head: the peer's first request gets
        // 409, and the re-verification drops the block from the master's map.
        tamper(&master_entry, EARLY);
        let peer = Node::new();
        let entry = peer.entry(&c);
        let client = client();
        let copy = {
            let (entry, target, client) = (entry.clone(), m.target(), client.clone());
            tokio::spawn(async move {
                let from = PeerBytes::default();
                let stop = CancellationToken::new();
                client
                    .copy(&entry, &target, http_only(), &from, &stop)
                    .await
            })
        };
        until(|| !master_entry.has_block(EARLY)).await;
        // A change found mid-body while the master's entry is incomplete (the peer
        // long-polls for 2 s after the 409, so this lands before it asks again):
        // the body is cut, the block hidden until the entry completes.
        tamper(&master_entry, LATE);
        let all_but_two = c.manifest.total_size() - 2 * BS as u64;
        until(|| entry.verified_bytes() == all_but_two).await;
        assert!(
            client.counters().cuts_not_held.load(Ordering::Relaxed) >= 1,
            "{:?} {:?}",
            client.counters(),
            m.counters().snapshot()
        );
        // "Repair" the first: the entry completes in the cache, whose map still
        // claims the second; the next `have` has it re-verified and dropped.
        c.fill(&master_entry, [EARLY]);
        until(|| !master_entry.has_block(LATE)).await;
        assert!(!copy.is_finished());
        c.fill(&master_entry, [LATE]);
        copy.await.unwrap().unwrap();
        assert!(entry.is_complete());
        let got = std::fs::read(entry.data_dir().join("big.bin")).unwrap();
        assert!(got == c.files[0].1, "the peer's copy differs");
        assert_eq!(client.counters().blocks_rejected.load(Ordering::Relaxed), 0);
        let s = m.counters().snapshot();
        assert!(s.changed_ranges_refused >= 1, "{s:?}");
        assert!(s.responses_aborted >= 1, "{s:?}");
    })
    .await
}

#[tokio::test]
async fn cuts_at_blocks_the_master_still_claims_count_as_bad_and_end_with_data_error() {
    bounded(async {
        let c = Content::standard();
        let addr = lying_master(&c, Lie::CutShort).await;
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
        let counters = client.counters();
        assert!(counters.blocks_rejected.load(Ordering::Relaxed) >= 4);
        assert_eq!(counters.cuts_not_held.load(Ordering::Relaxed), 0);
        assert_eq!(entry.verified_bytes(), 0);
    })
    .await
}

/// A master that reads stamped files on its own thread from `from` responses on.
fn master_reading_inline_from(from: usize) -> Master {
    Master::start_with_limits(
        key_auth(),
        PeerServerLimits {
            inline_reads_from: Some(from),
            ..Default::default()
        },
    )
}

/// A complete entry, flushed: its files are stamped.
fn stamped(m: &Master, c: &Content) -> Arc<ContentEntry> {
    let e = m.node.entry(c);
    c.fill(&e, 0..BLOCKS);
    e.flush().unwrap();
    assert!(e.is_complete() && e.unchanged_since_verified(0));
    e
}

#[tokio::test]
async fn a_stamped_file_is_read_on_the_pool_for_a_lone_client_and_inline_under_load() {
    bounded(async {
        let c = big();
        // Alone on a machine with more cores than responses: on the pool, one
        // read per chunk of the stamped file (800 KiB: 4 chunks of 256 KiB).
        let m = master_reading_inline_from(2);
        stamped(&m, &c);
        let r = get(m.addr(), "/content/PKG1/3/files/big.bin", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, c.files[0].1);
        let s = m.counters().snapshot();
        assert_eq!((s.reads_cached, s.reads_pooled), (0, 4), "{s:?}");
        // As busy as it has cores: on the server's thread, from the page cache
        // (the file was just written, so it is there).
        let m = master_reading_inline_from(1);
        stamped(&m, &c);
        let r = get(m.addr(), "/content/PKG1/3/files/big.bin", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, c.files[0].1);
        let s = m.counters().snapshot();
        assert_eq!((s.reads_cached, s.reads_pooled), (4, 0), "{s:?}");
        let r = get(
            m.addr(),
            "/content/PKG1/3/files/big.bin",
            &[("Range", "bytes=5000-9000")],
        )
        .await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &c.files[0].1[5000..=9000]);
    })
    .await
}

#[tokio::test]
async fn a_stamped_file_written_after_verification_is_hashed_again_and_the_change_found() {
    bounded(async {
        let c = big();
        // Read inline (1) and on the pool (100).
        for from in [1, 100] {
            let start = || master_reading_inline_from(from);
            // Early: answered 409 before the head.
            let m = start();
            let e = stamped(&m, &c);
            tamper(&e, EARLY);
            let r = get(m.addr(), "/content/PKG1/3/files/big.bin", &[]).await;
            assert_eq!(r.status, 409, "{from}: {}", r.text());
            until(|| !e.has_block(EARLY)).await;
            // Late: the body is cut before the changed block.
            let m = start();
            let e = stamped(&m, &c);
            tamper(&e, LATE);
            let r = get(m.addr(), "/content/PKG1/3/files/big.bin", &[]).await;
            assert!(
                r.body.len() <= LATE * BS,
                "{from}: {} bytes sent",
                r.body.len()
            );
            assert_eq!(r.body, c.files[0].1[..r.body.len()]);
            until(|| !e.has_block(LATE)).await;
            let s = m.counters().snapshot();
            assert_eq!(s.blocks_changed, 1, "{from}: {s:?}");
        }
    })
    .await
}
