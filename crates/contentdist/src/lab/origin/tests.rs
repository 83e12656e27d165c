use std::collections::HashMap;
use std::future::Future;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::*;
use crate::codes::Code;

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test took more than 30 s")
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// An origin root as `publish` lays it out, plus a secret file beside the root.
struct Site {
    dir: tempfile::TempDir,
    file: Vec<u8>,
}

const FILE: &str = "/PKG1/3/content/a.bin";

impl Site {
    fn new(size: usize) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let file = data(size, 7);
        std::fs::create_dir_all(root.join("PKG1/3/content/dir")).unwrap();
        std::fs::write(root.join("PKG1/3/content/a.bin"), &file).unwrap();
        std::fs::write(root.join("PKG1/3/content/dir/b b.bin"), b"bee").unwrap();
        std::fs::write(root.join("PKG1/3/manifest.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"secret").unwrap();
        Site { dir, file }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn start(&self, rate: Option<u64>) -> LabOrigin {
        LabOrigin::start(LabOriginOptions {
            root: self.root(),
            rate_bytes_per_sec: rate,
            ..LabOriginOptions::default()
        })
        .unwrap()
    }
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One request on its own connection, raw, so the path reaches the server unchanged.
async fn request(addr: SocketAddr, method: &str, path: &str, range: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n");
    if let Some(r) = range {
        req.push_str(&format!("Range: {r}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.lines();
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
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    }
}

async fn get(addr: SocketAddr, path: &str, range: Option<&str>) -> Reply {
    request(addr, "GET", path, range).await
}

#[tokio::test]
async fn serves_whole_files_and_single_ranges() {
    bounded(async {
        let site = Site::new(1000);
        let o = site.start(None);
        let a = o.local_addr();
        let r = get(a, FILE, None).await;
        assert_eq!((r.status, r.body.as_slice()), (200, site.file.as_slice()));
        assert_eq!(r.header("content-length"), Some("1000"));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        for (range, from, to) in [
            ("bytes=100-199", 100, 199),
            ("bytes=990-", 990, 999),
            ("bytes=-5", 995, 999),
            ("bytes=-5000", 0, 999),
            ("bytes=900-5000", 900, 999),
        ] {
            let r = get(a, FILE, Some(range)).await;
            assert_eq!(r.status, 206, "{range}");
            assert_eq!(r.body, &site.file[from..=to], "{range}");
            let expected = format!("bytes {from}-{to}/1000");
            assert_eq!(r.header("content-range"), Some(expected.as_str()));
        }
        for range in ["bytes=1000-", "bytes=1000-1001", "bytes=-0"] {
            let r = get(a, FILE, Some(range)).await;
            assert_eq!(r.status, 416, "{range}");
            assert_eq!(r.header("content-range"), Some("bytes */1000"));
        }
        // Malformed, backwards or multiple ranges: the whole file, as nginx does.
        for range in ["bytes=5-2", "bytes=1-2,4-5", "items=1-2", "bytes=x-"] {
            let r = get(a, FILE, Some(range)).await;
            assert_eq!((r.status, r.body.len()), (200, 1000), "{range}");
        }
        let r = request(a, "HEAD", FILE, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("1000"));
        assert!(r.body.is_empty());
        let r = get(a, "/PKG1/3/manifest.json", None).await;
        assert_eq!(r.header("content-type"), Some("application/json"));
    })
    .await
}

#[tokio::test]
async fn missing_files_directories_and_other_methods_are_refused() {
    bounded(async {
        let site = Site::new(10);
        let o = site.start(None);
        let a = o.local_addr();
        for path in [
            "/PKG1/3/content/nothere.bin",
            "/PKG1/3/content",
            "/",
            "/PKG1/",
        ] {
            assert_eq!(get(a, path, None).await.status, 404, "{path}");
        }
        let r = request(a, "POST", FILE, None).await;
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    })
    .await
}

#[tokio::test]
async fn paths_leading_out_of_the_root_are_404_however_spelled() {
    bounded(async {
        let site = Site::new(10);
        let content = site.root().join("PKG1/3/content");
        let secret = site.dir.path().join("secret.txt");
        std::os::unix::fs::symlink(&secret, content.join("out")).unwrap();
        std::os::unix::fs::symlink(site.dir.path(), content.join("outdir")).unwrap();
        std::os::unix::fs::symlink(content.join("a.bin"), content.join("in")).unwrap();
        let o = site.start(None);
        let a = o.local_addr();
        for path in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/PKG1/%2E%2E%2F..%2F..%2F..%2Fsecret.txt",
            "/PKG1/3/content/../../../../secret.txt",
            "/PKG1/3/content/out",
            "/PKG1/3/content/outdir/secret.txt",
            "/PKG1/./3/content/a.bin",
            "/PKG1/3/content/a.bin%00",
        ] {
            let r = get(a, path, None).await;
            assert_eq!(r.status, 404, "{path}");
            assert!(!r.body.starts_with(b"secret"), "{path}");
        }
        // Encoded names and links that stay inside the root work.
        for (path, len) in [
            ("/PKG1/3/content/dir/b%20b.bin", 3),
            ("/PKG1/3/content/dir%2Fb%20b.bin", 3),
            ("//PKG1/3/content/in", 10),
        ] {
            let r = get(a, path, None).await;
            assert_eq!((r.status, r.body.len()), (200, len), "{path}");
        }
    })
    .await
}

#[tokio::test]
async fn one_rate_limit_holds_across_parallel_clients() {
    bounded(async {
        const SIZE: usize = 128 * 1024;
        const RATE: u64 = 1024 * 1024;
        let site = Site::new(SIZE);
        let o = site.start(Some(RATE));
        let a = o.local_addr();
        let start = std::time::Instant::now();
        let clients: Vec<_> = (0..4)
            .map(|_| tokio::spawn(async move { get(a, FILE, None).await }))
            .collect();
        for c in clients {
            assert_eq!(c.await.unwrap().body, site.file);
        }
        // 512 KiB at 1 MiB/s: 500 ms less one burst. Per-connection limits would
        // finish all four in about 125 ms.
        let took = start.elapsed();
        let floor = Duration::from_secs_f64(4.0 * SIZE as f64 / RATE as f64) - BURST;
        assert!(took >= floor, "took {took:?}, expected at least {floor:?}");
        assert_eq!(o.bytes_served(), 4 * SIZE as u64);
    })
    .await
}

#[tokio::test]
async fn counts_requests_body_bytes_and_bytes_per_path() {
    bounded(async {
        let site = Site::new(1000);
        let o = site.start(None);
        let a = o.local_addr();
        get(a, FILE, None).await;
        get(a, FILE, Some("bytes=0-99")).await;
        get(a, "/PKG1/3/content/dir/b%20b.bin", None).await;
        get(a, "/nothere", None).await;
        request(a, "HEAD", FILE, None).await;
        assert_eq!(o.requests(), 5);
        assert_eq!(o.bytes_served(), 1103);
        let per_path = o.bytes_by_path();
        assert_eq!(per_path.get(FILE), Some(&1100));
        assert_eq!(per_path.get("/PKG1/3/content/dir/b b.bin"), Some(&3));
        assert_eq!(per_path.len(), 2);
    })
    .await
}

#[tokio::test]
async fn stops_when_cancelled_and_releases_the_port() {
    bounded(async {
        let site = Site::new(10);
        let shutdown = CancellationToken::new();
        let o = LabOrigin::start(LabOriginOptions {
            root: site.root(),
            shutdown: shutdown.clone(),
            ..LabOriginOptions::default()
        })
        .unwrap();
        let a = o.local_addr();
        assert_eq!(o.url(), format!("http://{a}"));
        assert_eq!(get(a, FILE, None).await.status, 200);
        shutdown.cancel();
        o.join().await;
        assert!(TcpStream::connect(a).await.is_err());
    })
    .await
}

#[tokio::test]
async fn bad_roots_and_busy_addresses_are_configuration_errors() {
    bounded(async {
        let site = Site::new(10);
        let missing = LabOrigin::start(LabOriginOptions {
            root: site.dir.path().join("nothere"),
            ..LabOriginOptions::default()
        })
        .unwrap_err();
        assert!(matches!(missing, LabError::Root { .. }), "{missing}");
        assert!(missing.to_string().contains("nothere"), "{missing}");
        let file_root = LabOrigin::start(LabOriginOptions {
            root: site.dir.path().join("secret.txt"),
            ..LabOriginOptions::default()
        })
        .unwrap_err();
        assert!(matches!(file_root, LabError::Root { .. }), "{file_root}");
        let o = site.start(None);
        let busy = LabOrigin::start(LabOriginOptions {
            root: site.root(),
            listen: o.local_addr(),
            ..LabOriginOptions::default()
        })
        .unwrap_err();
        assert!(matches!(busy, LabError::Bind { .. }), "{busy}");
        let zero = LabOrigin::start(LabOriginOptions {
            root: site.root(),
            rate_bytes_per_sec: Some(0),
            ..LabOriginOptions::default()
        })
        .unwrap_err();
        for e in [missing, file_root, busy, zero] {
            assert_eq!(e.code(), Code::CONFIG_INVALID, "{e}");
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn the_bucket_lets_one_burst_through_then_paces() {
    let mut b = link(1000);
    let start = Instant::now();
    // 50 bytes = one burst: at once.
    assert_eq!(b.book(50), start);
    // The next 100 bytes are paid at 150 ms, sendable one burst earlier.
    assert_eq!(b.book(100), start + Duration::from_millis(100));
    // After a long idle time the bucket holds one burst again, not more.
    tokio::time::advance(Duration::from_secs(10)).await;
    let now = Instant::now();
    assert_eq!(b.book(50), now);
    assert_eq!(b.book(10), now + Duration::from_millis(10));
}
