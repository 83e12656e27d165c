//! Tests of the test harness itself (tests/support): nginx, the faulty origin, the
//! openssl PKI and the small helpers. They do not run the `contentdist` binary.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::faulty_origin::{Fault, FaultyOrigin};
use support::nginx::{ClientAuth, Nginx, NginxOptions, TlsFiles};
use support::pki::{self, CertFiles, KeyKind, Pki, PkiOptions};
use support::{random_bytes, random_file, wait_until, with_timeout, TestDir};

const TIMEOUT: Duration = Duration::from_secs(90);

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-s", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl")
}

fn curl_ok(args: &[&str]) -> Vec<u8> {
    let out = curl(args);
    assert!(
        out.status.success(),
        "curl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The status code and the response headers (lower-case names) curl received.
fn curl_head(args: &[&str]) -> (u16, Vec<(String, String)>) {
    let mut all = vec!["-o", "/dev/null", "-D", "-"];
    all.extend_from_slice(args);
    let out = curl(&all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A content root with `pkg/data.bin` (`size` bytes, seed 7) and `pkg/manifest.json`.
fn content_root(size: u64) -> TestDir {
    let dir = TestDir::new();
    random_file(dir.join("root/pkg/data.bin"), size, 7);
    dir.write("root/pkg/manifest.json", br#"{"files":["data.bin"]}"#);
    dir
}

/// Sends one raw GET and returns (status line + headers, body bytes read until EOF
/// or `read_timeout`, whether EOF was reached).
fn raw_get(
    url_addr: std::net::SocketAddr,
    path: &str,
    read_timeout: Duration,
) -> (String, Vec<u8>, bool) {
    let mut stream = TcpStream::connect(url_addr).expect("connect");
    stream.set_read_timeout(Some(read_timeout)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    let eof = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true, // reset: the server closed
        }
    };
    let split = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers")
        + 4;
    let head = String::from_utf8_lossy(&data[..split]).into_owned();
    (head, data[split..].to_vec(), eof)
}

// ---------------------------------------------------------------- nginx

#[test]
fn nginx_serves_a_range_and_logs_the_bytes_sent() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(1000);
        let nginx = Nginx::start(NginxOptions {
            root: dir.join("root"),
            ..Default::default()
        })
        .expect("start nginx");
        assert!(nginx.url().starts_with("http://127.0.0.1:"));
        let body = curl_ok(&["-r", "0-99", &format!("{}/pkg/data.bin", nginx.url())]);
        assert_eq!(body, random_bytes(1000, 7)[..100]);
        let full = curl_ok(&[&format!("{}/pkg/data.bin", nginx.url())]);
        assert_eq!(full, random_bytes(1000, 7));
        let log = nginx.wait_access_log(2, Duration::from_secs(10));
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(log[0].path, "/pkg/data.bin");
        assert_eq!(log[0].method, "GET");
        assert_eq!(log[0].status, 206);
        assert_eq!(log[0].bytes_sent, 100);
        assert_eq!(log[0].range.as_deref(), Some("bytes=0-99"));
        assert_eq!(log[1].status, 200);
        assert_eq!(log[1].range, None);
        assert_eq!(nginx.bytes_sent_total(), 1100);
        assert_eq!(nginx.bytes_sent_for_prefix("/pkg/"), 1100);
        assert_eq!(nginx.bytes_sent_for_prefix("/other/"), 0);
    });
}

#[test]
fn nginx_answers_404_and_416_like_an_origin() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(1000);
        let nginx = Nginx::start(NginxOptions {
            root: dir.join("root"),
            ..Default::default()
        })
        .expect("start nginx");
        let (status, _) = curl_head(&[&format!("{}/pkg/missing.bin", nginx.url())]);
        assert_eq!(status, 404);
        let (status, headers) =
            curl_head(&["-r", "5000-", &format!("{}/pkg/data.bin", nginx.url())]);
        assert_eq!(status, 416);
        assert_eq!(header(&headers, "content-range"), Some("bytes */1000"));
    });
}

#[test]
fn nginx_serves_https_with_a_pki_server_certificate() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(5000);
        let pki = Pki::create_with(PkiOptions {
            key: KeyKind::EcP256,
            ..Default::default()
        });
        let server = pki.server_cert("origin", &["IP:127.0.0.1", "DNS:localhost"]);
        let nginx = Nginx::start(NginxOptions {
            root: dir.join("root"),
            tls: Some(TlsFiles {
                cert: server.cert.clone(),
                key: server.key.clone(),
            }),
            ..Default::default()
        })
        .expect("start nginx with TLS");
        assert!(nginx.url().starts_with("https://127.0.0.1:"));
        let url = format!("{}/pkg/data.bin", nginx.url());
        let ca = pki.ca_cert();
        let body = curl_ok(&["--cacert", ca.to_str().unwrap(), &url]);
        assert_eq!(body, random_bytes(5000, 7));
        // Without the CA, curl must refuse the certificate (exit 60).
        let out = curl(&[&url]);
        assert_eq!(
            out.status.code(),
            Some(60),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

#[test]
fn nginx_with_required_client_auth_accepts_only_a_ca_client_certificate() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(100);
        let pki = Pki::create_with(PkiOptions {
            key: KeyKind::EcP256,
            ..Default::default()
        });
        let server = pki.server_cert("origin", &["IP:127.0.0.1"]);
        let client = pki.client_cert("host1");
        let stranger = pki.self_signed_client_cert("stranger");
        let nginx = Nginx::start(NginxOptions {
            root: dir.join("root"),
            tls: Some(TlsFiles {
                cert: server.cert.clone(),
                key: server.key.clone(),
            }),
            client_auth: Some(ClientAuth {
                ca_cert: pki.ca_cert(),
                required: true,
            }),
            ..Default::default()
        })
        .expect("start nginx with client auth");
        let url = format!("{}/pkg/data.bin", nginx.url());
        let ca = pki.ca_cert();
        let with = |c: &CertFiles| {
            curl_head(&[
                "--cacert",
                ca.to_str().unwrap(),
                "--cert",
                c.cert.to_str().unwrap(),
                "--key",
                c.key.to_str().unwrap(),
                &url,
            ])
            .0
        };
        assert_eq!(with(&client), 200);
        assert_eq!(with(&stranger), 400);
        assert_eq!(curl_head(&["--cacert", ca.to_str().unwrap(), &url]).0, 400);
    });
}

#[test]
fn nginx_rate_limit_slows_each_connection() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(300 * 1024);
        let nginx = Nginx::start(NginxOptions {
            root: dir.join("root"),
            rate_limit_bytes_per_sec: Some(100 * 1024),
            ..Default::default()
        })
        .expect("start nginx");
        let started = Instant::now();
        let body = curl_ok(&[&format!("{}/pkg/data.bin", nginx.url())]);
        let elapsed = started.elapsed();
        assert_eq!(body.len(), 300 * 1024);
        // 300 KiB at 100 KiB/s: about 2 s. nginx allows rate x (whole seconds since
        // the request began + 1), on its one-second clock: a request that began just
        // before a second's tick may take only a little more than 1 s (seen: 1.01 s
        // on a loaded machine). Unlimited, it takes milliseconds.
        assert!(
            elapsed >= Duration::from_millis(900),
            "took only {elapsed:?}"
        );
    });
}

#[test]
fn nginx_instances_get_distinct_ports_and_stop_when_dropped() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(10);
        let start = || {
            Nginx::start(NginxOptions {
                root: dir.join("root"),
                ..Default::default()
            })
            .expect("start nginx")
        };
        let (a, b) = (start(), start());
        assert_ne!(a.port(), b.port());
        let port = a.port();
        let prefix = a.prefix().to_path_buf();
        drop(a);
        assert!(!prefix.exists(), "prefix dir removed on drop");
        assert!(
            wait_until(Duration::from_secs(5), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_err()),
            "port {port} still accepts after drop"
        );
        assert_eq!(curl_ok(&[&format!("{}/pkg/data.bin", b.url())]).len(), 10);
    });
}

#[test]
fn nginx_reports_why_it_failed_to_start() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(10);
        let result = Nginx::start(NginxOptions {
            root: dir.join("root"),
            extra_server_config: "no_such_directive on;".into(),
            ..Default::default()
        });
        let err = result.err().expect("a bad config must fail").to_string();
        assert!(err.contains("no_such_directive"), "{err}");
    });
}

// ---------------------------------------------------------------- faulty origin

#[test]
fn faulty_origin_serves_files_and_ranges() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(1000);
        let origin = FaultyOrigin::start(dir.join("root"), Fault::None);
        let url = format!("{}/pkg/data.bin", origin.url());
        let data = random_bytes(1000, 7);
        assert_eq!(curl_ok(&[&url]), data);
        assert_eq!(curl_ok(&["-r", "10-19", &url]), data[10..20]);
        assert_eq!(curl_ok(&["-r", "990-", &url]), data[990..]);
        assert_eq!(curl_ok(&["-r", "-5", &url]), data[995..]);
        let (status, headers) = curl_head(&["-r", "10-2000", &url]);
        assert_eq!(status, 206);
        assert_eq!(header(&headers, "content-range"), Some("bytes 10-999/1000"));
        assert_eq!(header(&headers, "content-length"), Some("990"));
        let (status, headers) = curl_head(&["-r", "1000-", &url]);
        assert_eq!(status, 416);
        assert_eq!(header(&headers, "content-range"), Some("bytes */1000"));
        let (status, headers) = curl_head(&["-I", &url]);
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-length"), Some("1000"));
        assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
        assert_eq!(curl_head(&[&format!("{}/pkg/nope", origin.url())]).0, 404);
        assert_eq!(
            curl_head(&[
                &format!("{}/pkg/../../etc/passwd", origin.url()),
                "--path-as-is"
            ])
            .0,
            404
        );
        assert_eq!(origin.requests(), 9);
        assert_eq!(origin.body_bytes_sent(), 1000 + 10 + 10 + 5 + 990);
        let log = origin.request_log();
        assert_eq!(log[1].range.as_deref(), Some("bytes=10-19"));
        assert_eq!(log[1].status, 206);
    });
}

#[test]
fn faulty_origin_corrupt_once_flips_one_byte_in_the_first_covering_response() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(1000);
        let fault = Fault::CorruptOnce {
            path_suffix: "data.bin".into(),
            offset: 500,
        };
        let origin = FaultyOrigin::start(dir.join("root"), fault);
        let url = format!("{}/pkg/data.bin", origin.url());
        let data = random_bytes(1000, 7);
        // A range not covering the offset does not use the fault up.
        assert_eq!(curl_ok(&["-r", "0-99", &url]), data[..100]);
        let got = curl_ok(&["-r", "400-599", &url]);
        assert_eq!(got.len(), 200);
        assert_eq!(got[100], data[500] ^ 0xFF);
        assert_eq!(got[..100], data[400..500]);
        assert_eq!(got[101..], data[501..600]);
        assert_eq!(curl_ok(&[&url]), data, "second covering response is intact");
        assert_eq!(origin.fault_applied(), 1);
    });
}

#[test]
fn faulty_origin_corrupt_always_and_manifest_targeting() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(1000);
        let data = random_bytes(1000, 7);
        let origin = FaultyOrigin::start(
            dir.join("root"),
            Fault::CorruptAlways {
                path_suffix: "data.bin".into(),
                offset: 0,
            },
        );
        let url = format!("{}/pkg/data.bin", origin.url());
        for _ in 0..2 {
            let got = curl_ok(&[&url]);
            assert_eq!(got[0], data[0] ^ 0xFF);
            assert_eq!(got[1..], data[1..]);
        }
        let manifest_url = format!("{}/pkg/manifest.json", origin.url());
        let manifest = std::fs::read(dir.join("root/pkg/manifest.json")).unwrap();
        assert_eq!(curl_ok(&[&manifest_url]), manifest);
        origin.set_fault(Fault::CorruptOnce {
            path_suffix: "manifest.json".into(),
            offset: 2,
        });
        let got = curl_ok(&[&manifest_url]);
        assert_eq!(got[2], manifest[2] ^ 0xFF);
        assert_eq!(curl_ok(&[&url]), data, "data no longer targeted");
    });
}

#[test]
fn faulty_origin_status_applies_n_times_and_spares_the_manifest() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(100);
        let origin = FaultyOrigin::start(
            dir.join("root"),
            Fault::Status {
                status: 503,
                times: 2,
            },
        );
        let url = format!("{}/pkg/data.bin", origin.url());
        let manifest_url = format!("{}/pkg/manifest.json", origin.url());
        assert_eq!(curl_head(&[&manifest_url]).0, 200);
        assert_eq!(curl_head(&[&url]).0, 503);
        assert_eq!(curl_head(&[&url]).0, 503);
        assert_eq!(curl_head(&[&url]).0, 200);
        origin.set_fault(Fault::Status {
            status: 500,
            times: u32::MAX,
        });
        for _ in 0..3 {
            assert_eq!(curl_head(&[&url]).0, 500);
        }
        origin.set_fault(Fault::StatusFor {
            path_suffix: "manifest.json".into(),
            status: 404,
            times: 1,
        });
        assert_eq!(curl_head(&[&url]).0, 200);
        assert_eq!(curl_head(&[&manifest_url]).0, 404);
        assert_eq!(curl_head(&[&manifest_url]).0, 200);
        assert_eq!(origin.requests(), 10);
    });
}

#[test]
fn faulty_origin_truncate_sends_full_length_then_closes_early() {
    with_timeout(TIMEOUT, || {
        let size = 3 * 1024 * 1024;
        let dir = content_root(size);
        let origin = FaultyOrigin::start(
            dir.join("root"),
            Fault::TruncateAfter {
                bytes: 1_000_000,
                times: 1,
            },
        );
        let (head, body, eof) = raw_get(origin.addr(), "/pkg/data.bin", Duration::from_secs(20));
        assert!(eof, "connection closed");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-length: {size}")),
            "{head}"
        );
        assert_eq!(body.len(), 1_000_000);
        assert_eq!(body, random_bytes(1_000_000, 7));
        // The manifest is spared, then the second data response is whole.
        let (_, manifest, _) =
            raw_get(origin.addr(), "/pkg/manifest.json", Duration::from_secs(20));
        assert_eq!(
            manifest,
            std::fs::read(dir.join("root/pkg/manifest.json")).unwrap()
        );
        let (_, body, _) = raw_get(origin.addr(), "/pkg/data.bin", Duration::from_secs(20));
        assert_eq!(body.len() as u64, size);
        // curl sees a transfer closed with bytes remaining (exit 18).
        origin.set_fault(Fault::TruncateAfter {
            bytes: 10,
            times: 1,
        });
        let out = curl(&[&format!("{}/pkg/data.bin", origin.url())]);
        assert_eq!(out.status.code(), Some(18));
        assert_eq!(out.stdout.len(), 10);
    });
}

#[test]
fn faulty_origin_stall_hangs_until_the_client_gives_up() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(1024 * 1024);
        let origin = FaultyOrigin::start(
            dir.join("root"),
            Fault::StallAfter {
                bytes: 4096,
                times: 1,
            },
        );
        let started = Instant::now();
        let (head, body, eof) = raw_get(origin.addr(), "/pkg/data.bin", Duration::from_secs(2));
        assert!(!eof, "a stalled response must not close");
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, random_bytes(4096, 7));
        // curl gives up (exit 28) and the origin goes on serving.
        origin.set_fault(Fault::StallAfter {
            bytes: 100,
            times: 1,
        });
        let url = format!("{}/pkg/data.bin", origin.url());
        let out = curl(&["--max-time", "1", &url]);
        assert_eq!(out.status.code(), Some(28));
        assert_eq!(out.stdout.len(), 100);
        assert_eq!(curl_ok(&[&url]).len(), 1024 * 1024);
    });
}

#[test]
fn faulty_origin_drop_closes_its_port_even_with_a_stalled_connection() {
    with_timeout(TIMEOUT, || {
        let dir = content_root(100_000);
        let origin = FaultyOrigin::start(
            dir.join("root"),
            Fault::StallAfter {
                bytes: 10,
                times: 1,
            },
        );
        let addr = origin.addr();
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(stream, "GET /pkg/data.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 1024];
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert!(stream.read(&mut buf).unwrap() > 0);
        let started = Instant::now();
        drop(origin);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "drop waited for the stall"
        );
        assert!(
            TcpStream::connect(addr).is_err(),
            "still listening after drop"
        );
    });
}

// ---------------------------------------------------------------- PKI

fn x509_text(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pki_ca_is_a_ca_and_issued_certificates_verify_for_their_purpose() {
    with_timeout(TIMEOUT, || {
        let pki = Pki::create();
        let ca = x509_text(&pki.ca_cert());
        assert!(ca.contains("CA:TRUE"), "{ca}");
        assert!(ca.contains("Certificate Sign"), "{ca}");
        assert!(ca.contains("rsaEncryption"), "{ca}");
        let server = pki.server_cert("origin", &["IP:127.0.0.1", "DNS:localhost"]);
        assert_eq!(pki.verify(&server.cert, Some("sslserver")), Ok(()));
        let text = x509_text(&server.cert);
        assert!(
            text.contains("IP Address:127.0.0.1") && text.contains("DNS:localhost"),
            "{text}"
        );
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        let client = pki.client_cert("host1.example");
        assert_eq!(pki.verify(&client.cert, Some("sslclient")), Ok(()));
        let text = x509_text(&client.cert);
        assert!(
            text.contains("TLS Web Client Authentication") && text.contains("CN = host1.example"),
            "{text}"
        );
        let chain = std::fs::read_to_string(&client.chain).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(std::fs::read_to_string(&client.key)
            .unwrap()
            .contains("BEGIN PRIVATE KEY"));
    });
}

#[test]
fn pki_bad_certificates_fail_verification_for_the_right_reason() {
    with_timeout(TIMEOUT, || {
        let pki = Pki::create_with(PkiOptions {
            key: KeyKind::EcP256,
            ..Default::default()
        });
        let expired = pki.expired_client_cert("old");
        let err = pki.verify(&expired.cert, Some("sslclient")).unwrap_err();
        assert!(err.contains("certificate has expired"), "{err}");
        let future = pki.not_yet_valid_client_cert("future");
        let err = pki.verify(&future.cert, None).unwrap_err();
        assert!(err.contains("not yet valid"), "{err}");
        let wrong = pki.wrong_usage_cert("server-only");
        assert_eq!(pki.verify(&wrong.cert, Some("sslserver")), Ok(()));
        let err = pki.verify(&wrong.cert, Some("sslclient")).unwrap_err();
        assert!(
            err.contains("unsuitable certificate purpose")
                || err.contains("unsupported certificate purpose"),
            "{err}"
        );
        let stranger = pki.self_signed_client_cert("stranger");
        let err = pki.verify(&stranger.cert, Some("sslclient")).unwrap_err();
        assert!(
            err.contains("self-signed certificate") || err.contains("self signed"),
            "{err}"
        );
        // Same name twice gives two distinct certificates.
        let again = pki.expired_client_cert("old");
        assert_ne!(again.cert, expired.cert);
    });
}

#[test]
fn pki_pkcs12_bundles_open_with_their_password_only() {
    with_timeout(TIMEOUT, || {
        let pki = Pki::create_with(PkiOptions {
            key: KeyKind::EcP256,
            ..Default::default()
        });
        let client = pki.client_cert("host1");
        let p12 = pki.pkcs12(&client, "secret");
        let open = |pass: &str, legacy: bool, p12: &Path| {
            let mut cmd = Command::new("openssl");
            cmd.args([
                "pkcs12",
                "-noout",
                "-passin",
                &format!("pass:{pass}"),
                "-in",
            ])
            .arg(p12);
            if legacy {
                cmd.arg("-legacy");
            }
            cmd.output().unwrap().status.success()
        };
        assert!(open("secret", false, &p12));
        assert!(!open("wrong", false, &p12));
        let legacy = pki.pkcs12_with(
            &client,
            &pki::Pkcs12Options {
                password: String::new(),
                legacy: true,
                without_chain: false,
            },
        );
        assert!(open("", true, &legacy));
        let thumb = pki::sha1_thumbprint(&client.cert);
        assert_eq!(thumb.len(), 40);
        assert!(
            thumb
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
            "{thumb}"
        );
        assert_ne!(thumb, pki::sha1_thumbprint(&pki.ca_cert()));
    });
}

// ---------------------------------------------------------------- helpers

#[test]
fn random_file_is_deterministic_and_seed_dependent() {
    let dir = TestDir::new();
    random_file(dir.join("a"), 100_003, 1);
    random_file(dir.join("b"), 100_003, 1);
    random_file(dir.join("c"), 100_003, 2);
    random_file(dir.join("d/e/short"), 10, 1);
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap();
    assert_eq!(read("a").len(), 100_003);
    assert_eq!(read("a"), read("b"));
    assert_ne!(read("a"), read("c"));
    assert_eq!(read("d/e/short"), read("a")[..10]);
    assert_eq!(random_bytes(100_003, 1), read("a"));
}

#[test]
fn assert_trees_equal_names_each_kind_of_difference() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new();
    for side in ["a", "b"] {
        random_file(dir.join(format!("{side}/x/file")), 5000, 3);
        dir.write(format!("{side}/top"), b"same");
    }
    support::assert_trees_equal(dir.join("a"), dir.join("b"));
    let fails = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
    dir.write("b/top", b"sane");
    assert!(fails(&|| support::assert_trees_equal(
        dir.join("a"),
        dir.join("b")
    )));
    dir.write("b/top", b"same");
    std::fs::set_permissions(dir.join("b/top"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(fails(&|| support::assert_trees_equal(
        dir.join("a"),
        dir.join("b")
    )));
    std::fs::set_permissions(dir.join("b/top"), std::fs::Permissions::from_mode(0o644)).unwrap();
    support::assert_trees_equal(dir.join("a"), dir.join("b"));
    dir.write("b/x/extra", b"");
    assert!(fails(&|| support::assert_trees_equal(
        dir.join("a"),
        dir.join("b")
    )));
}

#[test]
fn wait_until_and_with_timeout_give_up_on_time() {
    let started = Instant::now();
    assert!(!wait_until(Duration::from_millis(200), || false));
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(wait_until(Duration::from_secs(5), || started.elapsed()
        > Duration::from_millis(250)));
    assert_eq!(with_timeout(Duration::from_secs(5), || 42), 42);
    let timed_out = std::panic::catch_unwind(|| {
        with_timeout(Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(2))
        })
    });
    assert!(timed_out.is_err());
}

#[test]
fn contentdist_binary_is_built() {
    assert!(support::contentdist_bin().is_file());
}
