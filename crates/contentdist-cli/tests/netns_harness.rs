//! Tests of the network-namespace harness (tests/support/netns.rs): reachability,
//! broadcast, the shaped WAN link, clean-up. Root only; skipped otherwise.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use support::netns::{self, list_namespaces, NetLab, NetLabOptions};
use support::{random_file, wait_until, with_timeout, TestDir};

const TIMEOUT: Duration = Duration::from_secs(90);

/// Taken for writing by the test that plants a stale namespace: any other test's
/// `NetLab::create` would remove it (as it should) before that test could look.
static PLANTING: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    PLANTING.read().unwrap_or_else(|e| e.into_inner())
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `curl` run in `ns`: the body of `url` on stdout.
fn curl(lab: &NetLab, ns: &str, args: &[&str]) -> Output {
    lab.command(ns, "curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl")
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn hosts_reach_each_other_and_the_origin() {
    if netns::skip_unless_root() {
        return;
    }
    with_timeout(TIMEOUT, || {
        let _shared = shared();
        let lab = NetLab::create(NetLabOptions {
            hosts: 3,
            wan_rate_kbit: None,
        });
        let dir = TestDir::new();
        dir.write("hello.txt", "hello from the origin\n");
        let nginx = lab.nginx_in_origin(dir.path());
        for i in 0..3 {
            let url = format!("{}/hello.txt", nginx.url());
            let body = ok(curl(&lab, lab.host_ns(i), &[&url]), "curl the origin");
            assert_eq!(body, "hello from the origin\n", "host {i}");
        }
        assert_eq!(nginx.wait_access_log(3, Duration::from_secs(5)).len(), 3);
        // A TCP echo on host 1, reached from hosts 0 and 2, sockets made in Rust.
        let listener = lab.run_in(lab.host_ns(1), || {
            TcpListener::bind(SocketAddr::from((lab.host_addr(1), 0))).expect("bind on host 1")
        });
        let addr = listener.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, peer) = listener.accept().expect("accept");
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).expect("read");
                s.write_all(format!("{peer}:").as_bytes()).unwrap();
                s.write_all(&buf[..n]).unwrap();
            }
        });
        for i in [0, 2] {
            let reply = lab.run_in(lab.host_ns(i), || {
                let mut s =
                    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
                s.write_all(b"ping").unwrap();
                let mut reply = String::new();
                s.read_to_string(&mut reply).unwrap();
                reply
            });
            let peer_ip = reply.split(':').next().unwrap();
            assert_eq!(peer_ip, lab.host_addr(i).to_string(), "{reply}");
            assert!(reply.ends_with(":ping"), "{reply}");
        }
        echo.join().unwrap();
    })
}

const RECEIVER: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('', int(sys.argv[1])))
s.settimeout(20)
print('ready', flush=True)
data, addr = s.recvfrom(1500)
print(data.decode(), addr[0], flush=True)";

const SENDER: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))";

#[test]
fn a_broadcast_from_one_host_reaches_the_others() {
    if netns::skip_unless_root() {
        return;
    }
    with_timeout(TIMEOUT, || {
        let _shared = shared();
        let lab = NetLab::create(NetLabOptions {
            hosts: 3,
            wan_rate_kbit: None,
        });
        let mut receivers: Vec<_> = [1, 2]
            .into_iter()
            .map(|i| {
                let mut cmd = Command::new("python3");
                cmd.args(["-c", RECEIVER, "1779"]).stdout(Stdio::piped());
                let mut child = lab.spawn(lab.host_ns(i), cmd);
                let mut out = BufReader::new(child.stdout.take().unwrap());
                let mut line = String::new();
                out.read_line(&mut line).unwrap();
                assert_eq!(line.trim(), "ready", "receiver on host {i}");
                (child, out)
            })
            .collect();
        let bcast = lab.broadcast().to_string();
        let sent = lab
            .command(lab.host_ns(0), "python3")
            .args(["-c", SENDER, &bcast, "1779", "election hello"])
            .output()
            .unwrap();
        ok(sent, "send the broadcast");
        for (i, (child, out)) in receivers.iter_mut().enumerate() {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            let expected = format!("election hello {}", lab.host_addr(0));
            assert_eq!(line.trim(), expected, "receiver on host {}", i + 1);
            assert!(child.wait().unwrap().success());
        }
    })
}

#[test]
fn origin_downloads_are_shaped_but_lan_copies_are_not() {
    if netns::skip_unless_root() {
        return;
    }
    with_timeout(TIMEOUT, || {
        let _shared = shared();
        const SIZE: u64 = 4 << 20;
        let lab = NetLab::create(NetLabOptions {
            hosts: 2,
            wan_rate_kbit: Some(16_000),
        });
        let dir = TestDir::new();
        random_file(dir.join("big.bin"), SIZE, 3);
        let nginx = lab.nginx_in_origin(dir.path());
        let timed = |url: &str| {
            let start = Instant::now();
            let out = curl(
                &lab,
                lab.host_ns(0),
                &["-o", "/dev/null", "-w", "%{size_download}", url],
            );
            let took = start.elapsed();
            assert_eq!(ok(out, url), SIZE.to_string());
            took
        };
        let wan = timed(&format!("{}/big.bin", nginx.url()));
        // 4 MiB at 2 MB/s: 2.1 s, less the 100 kB burst.
        assert!(
            wan >= Duration::from_millis(1500),
            "origin download took only {wan:?}"
        );
        assert_eq!(
            nginx.wait_access_log(1, Duration::from_secs(5))[0].bytes_sent,
            SIZE
        );
        // The same file from host 1 over the LAN.
        let mut server = Command::new("python3");
        server.args([
            "-m",
            "http.server",
            "8000",
            "--bind",
            &lab.host_addr(1).to_string(),
        ]);
        server
            .arg("--directory")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut server = lab.spawn(lab.host_ns(1), server);
        let addr = SocketAddr::from((lab.host_addr(1), 8000));
        let ready = wait_until(Duration::from_secs(20), || {
            lab.run_in(lab.host_ns(0), || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })
        });
        assert!(ready, "python http.server on host 1 did not start");
        let lan = timed(&format!("http://{addr}/big.bin"));
        assert!(
            lan * 3 < wan,
            "LAN copy took {lan:?}, origin download {wan:?}"
        );
        server.kill().unwrap();
        server.wait().unwrap();
    })
}

#[test]
fn dropping_the_lab_kills_its_processes_and_deletes_its_namespaces() {
    if netns::skip_unless_root() {
        return;
    }
    with_timeout(TIMEOUT, || {
        let _shared = shared();
        let lab = NetLab::create(NetLabOptions {
            hosts: 2,
            wan_rate_kbit: Some(8000),
        });
        let names: Vec<String> = lab.namespaces().iter().map(|s| s.to_string()).collect();
        assert_eq!(names.len(), 4);
        let listed = list_namespaces();
        assert!(
            names.iter().all(|n| listed.contains(n)),
            "{names:?} not all in {listed:?}"
        );
        let mut sleep = Command::new("sleep");
        sleep.arg("600");
        let mut sleeper = lab.spawn(lab.host_ns(1), sleep);
        let dir = TestDir::new();
        let nginx = lab.nginx_in_origin(dir.path());
        let (sleep_pid, nginx_pid) = (sleeper.id(), nginx.pid());
        assert!(alive(sleep_pid) && alive(nginx_pid));
        drop(lab);
        let listed = list_namespaces();
        assert!(
            names.iter().all(|n| !listed.contains(n)),
            "{names:?} left in {listed:?}"
        );
        assert!(!alive(sleep_pid), "the process spawned in a host survived");
        assert!(!sleeper.wait().unwrap().success());
        assert!(!alive(nginx_pid), "nginx survived");
        drop(nginx);

        // A panic while the lab is up cleans up too.
        let names = std::thread::spawn(|| {
            let lab = NetLab::create(NetLabOptions::default());
            let names: Vec<String> = lab.namespaces().iter().map(|s| s.to_string()).collect();
            std::panic::panic_any(names)
        })
        .join()
        .unwrap_err()
        .downcast::<Vec<String>>()
        .unwrap();
        let listed = list_namespaces();
        assert!(
            names.iter().all(|n| !listed.contains(n)),
            "{names:?} left in {listed:?}"
        );
    })
}

#[test]
fn namespaces_left_by_a_dead_test_process_are_removed_at_create() {
    if netns::skip_unless_root() {
        return;
    }
    with_timeout(TIMEOUT, || {
        let _planting = PLANTING.write().unwrap_or_else(|e| e.into_inner());
        // No process can have a pid above pid_max: this one is surely dead.
        let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let stale = format!("cdl-{}-0-h0", pid_max + 1);
        ok(
            Command::new("ip")
                .args(["netns", "add", &stale])
                .output()
                .unwrap(),
            "ip netns add",
        );
        assert!(list_namespaces().contains(&stale));
        let lab = NetLab::create(NetLabOptions {
            hosts: 1,
            wan_rate_kbit: None,
        });
        assert!(
            !list_namespaces().contains(&stale),
            "{stale} survived create"
        );
        // Our own live namespaces are kept.
        assert!(lab
            .namespaces()
            .iter()
            .all(|n| list_namespaces().contains(&n.to_string())));
    })
}
