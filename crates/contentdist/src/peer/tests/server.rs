use std::os::unix::fs::{FileExt, PermissionsExt};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::peer::auth::machine_credentials;

const FILES: &str = "/content/PKG1/3/files";

#[tokio::test]
async fn paths_outside_the_manifest_are_404_however_they_are_spelled() {
    bounded(async {
        let m = Master::with_key();
        let c = Content::standard();
        c.fill(&m.node.entry(&c), 0..c.manifest.block_count());
        for path in [
            "/content/PKG1/3/files/../manifest.json",
            "/content/PKG1/3/files/%2e%2e/manifest.json",
            "/content/PKG1/3/files/%2E%2E%2Fmanifest.json",
            "/content/PKG1/3/files/dir/../a.bin",
            "/content/PKG1/3/files//etc/passwd",
            "/content/PKG1/3/files/%2Fetc%2Fpasswd",
            "/content/PKG1/3/files/../../../../etc/passwd",
            "/content/PKG1/3/files/nothere.bin",
            "/content/PKG1/3/files/dir",
            "/content/PKG1/3/files/",
            "/content/PKG1/3/files/./a.bin",
            "/content/PKG1/3/../3/files/a.bin",
            "/content/..%2F..%2Fetc/3/files/passwd",
            "/etc/passwd",
        ] {
            let r = get(m.addr(), path, &[]).await;
            assert_eq!(r.status, 404, "{path}: {}", r.text());
        }
        // A symlink planted in the data directory is not in the manifest either.
        let entry = m.node.entry(&c);
        std::os::unix::fs::symlink("/etc/passwd", entry.data_dir().join("link")).unwrap();
        assert_eq!(
            get(m.addr(), &format!("{FILES}/link"), &[]).await.status,
            404
        );
        // The real names, percent-encoded or not, work.
        assert_eq!(
            get(m.addr(), &format!("{FILES}/dir/b%20b.bin"), &[])
                .await
                .status,
            200
        );
        assert_eq!(
            get(m.addr(), &format!("{FILES}/dir%2Fb%20b.bin"), &[])
                .await
                .status,
            200
        );
    })
    .await
}

#[tokio::test]
async fn requests_need_the_p2p_account_or_an_allowed_machine_account() {
    bounded(async {
        let machine_key = b"site machine key".to_vec();
        let (mu, mp) = machine_credentials(&machine_key, "peer-7");
        let machine = basic_header(&mu, &mp);
        let (pu, _) = p2p_credentials(&KEY);
        let wrong = basic_header(&pu, "00000000000000000000000000000000");
        let p2p = p2p_auth();
        for (au, machine_ok) in [(1, true), (2, false), (0, false)] {
            let m = Master::start(PeerAuth {
                p2p_key: Some(KEY),
                authenticated_users: au,
                machine_key: Some(machine_key.clone()),
            });
            let c = Content::standard();
            m.node.entry(&c);
            let path = "/content/PKG1/3/manifest.json";
            let addr = m.addr();
            let status = |h: Option<&str>| {
                let headers: Vec<(String, String)> = h
                    .map(|v| ("Authorization".to_string(), v.to_string()))
                    .into_iter()
                    .collect();
                async move {
                    let headers: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    raw_get(addr, path, &headers).await
                }
            };
            let none = status(None).await;
            assert_eq!(none.status, 403, "AuthenticatedUsers={au}");
            assert!(none.text().contains("no credentials"), "{}", none.text());
            let bad = status(Some(&wrong)).await;
            assert_eq!(bad.status, 403);
            assert!(bad.text().contains("wrong password"), "{}", bad.text());
            assert_eq!(
                status(Some(&p2p)).await.status,
                200,
                "AuthenticatedUsers={au}"
            );
            let mr = status(Some(&machine)).await;
            assert_eq!(
                mr.status == 200,
                machine_ok,
                "machine account, AuthenticatedUsers={au}: {}",
                mr.text()
            );
            if !machine_ok {
                assert!(mr.text().contains("not allowed"), "{}", mr.text());
            }
            let s = m.counters().snapshot();
            let (requests, refusals) = (s.requests, s.requests_refused);
            assert_eq!((requests, refusals), (4, if machine_ok { 2 } else { 3 }));
        }
    })
    .await
}

#[tokio::test]
async fn manifest_and_have_describe_what_the_cache_holds_verified() {
    bounded(async {
        let m = Master::with_key();
        let c = Content::standard();
        assert_eq!(
            get(m.addr(), "/content/PKG1/3/manifest.json", &[])
                .await
                .status,
            404
        );
        assert_eq!(get(m.addr(), "/content/PKG1/3/have", &[]).await.status, 404);
        c.fill(&m.node.entry(&c), [0, 2, 5]);
        let r = get(m.addr(), "/content/PKG1/3/manifest.json", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(Manifest::parse(&r.body).unwrap(), c.manifest);
        let r = get(m.addr(), "/content/PKG1/3/have", &[]).await;
        let doc: HaveDoc = serde_json::from_slice(&r.body).unwrap();
        assert_eq!((doc.block_count, doc.verified, doc.complete), (9, 3, false));
        assert_eq!(doc.content_hash, c.manifest.content_hash);
        assert_eq!(doc.bitmap, "2500", "blocks 0, 2 and 5: 0b100101");
        assert_eq!(
            get(m.addr(), "/content/PKG1/3/have?after=x", &[])
                .await
                .status,
            400
        );
        assert_eq!(
            get(m.addr(), "/content/BAD%20ID/3/have", &[]).await.status,
            404
        );
    })
    .await
}

#[tokio::test]
async fn have_long_poll_answers_when_a_block_is_verified_or_when_the_wait_ends() {
    bounded(async {
        let m = Master::with_key();
        let c = Content::standard();
        let e = m.node.entry(&c);
        c.fill(&e, [0]);
        // Nothing new: answers after the wait, unchanged.
        let t = Instant::now();
        let r = get(m.addr(), "/content/PKG1/3/have?after=1&wait_ms=300", &[]).await;
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            serde_json::from_slice::<HaveDoc>(&r.body).unwrap().verified,
            1
        );
        // A block verified meanwhile: answers at once, long before the wait.
        let t = Instant::now();
        let addr = m.addr();
        let poll = tokio::spawn(async move {
            get(addr, "/content/PKG1/3/have?after=1&wait_ms=20000", &[]).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.fill(&e, [3]);
        let r = poll.await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(
            serde_json::from_slice::<HaveDoc>(&r.body).unwrap().verified,
            2
        );
    })
    .await
}

#[tokio::test]
async fn ranges_are_served_only_from_verified_blocks() {
    bounded(async {
        let m = Master::with_key();
        let c = Content::standard();
        let e = m.node.entry(&c);
        let a = &c.files[0].1;
        c.fill(&e, [0, 1]); // a.bin bytes 0..8192
        let url = format!("{FILES}/a.bin");
        let r = get(m.addr(), &url, &[("Range", "bytes=100-8191")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(
            r.header("Content-Range"),
            Some(&*format!("bytes 100-8191/{}", a.len()))
        );
        assert_eq!(r.body, a[100..8192]);
        let r = get(m.addr(), &url, &[("Range", "bytes=100-8192")]).await;
        assert_eq!(r.status, 409);
        assert!(r.text().contains("blocks not verified yet"), "{}", r.text());
        assert_eq!(get(m.addr(), &url, &[]).await.status, 409);
        c.fill(&e, [2, 3]);
        let r = get(m.addr(), &url, &[]).await;
        assert_eq!((r.status, &r.body), (200, a));
        let r = get(m.addr(), &url, &[("Range", "bytes=-50")]).await;
        assert_eq!((r.status, &r.body[..]), (206, &a[a.len() - 50..]));
        let r = get(m.addr(), &url, &[("Range", &format!("bytes={}-", a.len()))]).await;
        assert_eq!(r.status, 416);
        assert_eq!(
            r.header("Content-Range"),
            Some(&*format!("bytes */{}", a.len()))
        );
        let r = get(m.addr(), &format!("{FILES}/empty.txt"), &[]).await;
        assert_eq!((r.status, r.body.len()), (200, 0));
        let served = m.counters().snapshot().bytes_served;
        assert!(served >= (8092 + a.len() + 50) as u64, "{served}");
    })
    .await
}

#[tokio::test]
async fn a_block_changed_on_disk_is_never_sent() {
    bounded(async {
        let m = Master::with_key();
        let c = Content::standard();
        let e = m.node.entry(&c);
        c.fill(&e, 0..c.manifest.block_count());
        assert!(e.is_complete());
        // Block 1 of a.bin changes under the cache (a delivered hard link written to).
        let path = e.data_dir().join("a.bin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"TAMPERED", BS as u64 + 10).unwrap();
        drop(f);
        let url = format!("{FILES}/a.bin");
        let r = get(m.addr(), &url, &[]).await;
        // Blocks 0 and 1 are read in one batch, before the head is sent: block 1
        // is not held any more (409), nothing of the file is sent.
        assert_eq!(r.status, 409, "{}", r.text());
        assert!(
            r.body.len() <= BS,
            "only block 0 may be sent, got {} bytes",
            r.body.len()
        );
        assert!(!r.body.windows(8).any(|w| w == b"TAMPERED"));
        // Block 0 alone is still fine.
        let r = get(m.addr(), &url, &[("Range", "bytes=0-4095")]).await;
        assert_eq!((r.status, &r.body[..]), (206, &c.files[0].1[..BS]));
        // The entry is re-verified in the background: the block stops being offered.
        until(|| !e.has_block(1)).await;
        let r = get(m.addr(), &url, &[("Range", "bytes=4096-4200")]).await;
        assert_eq!(r.status, 409);
        let doc: HaveDoc =
            serde_json::from_slice(&get(m.addr(), "/content/PKG1/3/have", &[]).await.body).unwrap();
        assert!(!doc.complete && doc.verified == c.manifest.block_count() - 1);
    })
    .await
}

#[tokio::test]
async fn curl_can_copy_a_range_with_the_p2p_account() {
    bounded(async {
        let m = Master::with_key();
        let c = Content::standard();
        c.fill(&m.node.entry(&c), 0..c.manifest.block_count());
        let (u, p) = p2p_credentials(&KEY);
        let url = format!("http://{}{FILES}/dir/b%20b.bin", m.addr());
        let run = |args: Vec<String>| {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("curl")
                    .args(args)
                    .output()
                    .unwrap()
            })
        };
        let ok = run(vec![
            "-sS".into(),
            "-u".into(),
            format!("{u}:{p}"),
            "-r".into(),
            "0-99".into(),
            url.clone(),
        ])
        .await
        .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(ok.stdout, c.files[1].1[..100]);
        let refused = run(vec![
            "-s".into(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code}".into(),
            url,
        ])
        .await
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&refused.stdout), "403");
        let url = format!("http://{}{FILES}/a.bin", m.addr());
        let head = run(vec![
            "-sS".into(),
            "-I".into(),
            "-u".into(),
            format!("{u}:{p}"),
            url,
        ])
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(
            text.contains(&format!("content-length: {}", c.files[0].1.len())),
            "{text}"
        );
    })
    .await
}

#[tokio::test]
async fn shutdown_ends_waiting_requests_and_closes_the_port() {
    bounded(async {
        let mut m = Master::with_key();
        let c = Content::standard();
        m.node.entry(&c);
        let addr = m.addr();
        let poll = tokio::spawn(async move {
            get(addr, "/content/PKG1/3/have?after=0&wait_ms=30000", &[]).await
        });
        until(|| m.counters().requests.load(Ordering::Relaxed) == 1).await;
        // The counter goes up as the request arrives, the lease a moment later, while
        // the long poll waits: a request being answered holds a lease (`bounded`
        // fails the test if it never does).
        until(|| m.node.entry(&c).in_use()).await;
        let t = Instant::now();
        m.token.cancel();
        assert_eq!(poll.await.unwrap().status, 200);
        m.server.take().unwrap().join().await;
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    })
    .await
}
