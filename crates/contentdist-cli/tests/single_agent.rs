//! One agent end to end: publish, download from a real origin, verify, cache,
//! deliver; and every way the origin or the disk can let it down.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::agent::AgentProc;
use support::faulty_origin::{Fault, FaultyOrigin};
use support::nginx::{Nginx, NginxOptions};
use support::{assert_trees_equal, publish, random_file, with_timeout, TestDir};

const MIB: u64 = 1024 * 1024;

/// A source tree with nested directories, an empty file, an executable and files
/// that do and do not end on a block boundary.
fn make_tree(root: &Path, big: u64) {
    random_file(root.join("image.bin"), big, 1);
    random_file(root.join("drivers/net/e1000.ko"), 131_072 * 3, 2);
    random_file(root.join("drivers/net/readme.txt"), 1000, 3);
    std::fs::write(root.join("empty.cfg"), b"").unwrap();
    random_file(root.join("bin/install.sh"), 5000, 4);
    let sh = root.join("bin/install.sh");
    let mut p = std::fs::metadata(&sh).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
    std::fs::set_permissions(&sh, p).unwrap();
}

/// A published tree in `t/origin` from `t/src`.
fn published(t: &TestDir, big: u64) -> String {
    let src = t.subdir("src");
    make_tree(&src, big);
    publish(&src, &t.subdir("origin"), "PKG00001", 3)
}

fn tree_size(t: &TestDir) -> u64 {
    let mut n = 0;
    for e in walk(&t.join("src")) {
        n += std::fs::metadata(e).unwrap().len();
    }
    n
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn delivers_identical_bytes_from_nginx_and_fetches_each_byte_once() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        let hash = published(&t, 5 * MIB + 17);
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            ..Default::default()
        })
        .unwrap();
        let agent = AgentProc::start(&t.join("agent"), &nginx.url(), "");
        let r = agent.get("PKG00001", 3, &t.join("dest"), &["--hash", &hash]);
        assert_eq!(r.status, 0, "{r:?}\n{}", agent.log());
        assert_eq!(r.state(), "done");
        assert_trees_equal(t.join("src"), t.join("dest"));
        let size = tree_size(&t);
        assert_eq!(
            r.origin_bytes(),
            size,
            "every byte crossed the WAN exactly once"
        );
        let log = nginx.wait_access_log(6, Duration::from_secs(5));
        let content_bytes: u64 = log
            .iter()
            .filter(|e| e.path.contains("/content/"))
            .map(|e| e.bytes_sent)
            .sum();
        assert!(
            content_bytes >= size && content_bytes < size + 64 * 1024,
            "{content_bytes} vs {size}"
        );
        // A second job is served from the cache: nothing more from the origin.
        let r2 = agent.get("PKG00001", 3, &t.join("dest2"), &[]);
        assert_eq!(r2.status, 0, "{r2:?}");
        assert_eq!(r2.origin_bytes(), 0);
        assert_trees_equal(t.join("src"), t.join("dest2"));
    });
}

#[test]
fn origin_404_fails_with_0x205d_which_is_a_success_code() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        let nginx = Nginx::start(NginxOptions {
            root: t.subdir("origin"),
            ..Default::default()
        })
        .unwrap();
        let agent = AgentProc::start(&t.join("agent"), &nginx.url(), "");
        let r = agent.get("NOPE", 1, &t.join("dest"), &[]);
        assert_eq!(r.code(), 0x205D, "{r:?}");
        assert_eq!(r.status, 3, "0x205D is in the default SuccessCodes: {r:?}");
        assert!(!t.join("dest").exists());
    });
}

#[test]
fn unreachable_origin_fails_with_0x2efd_after_retries() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        let port = support::free_port();
        let agent = AgentProc::start(&t.join("agent"), &format!("http://127.0.0.1:{port}"), "");
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r.code(), 0x2EFD, "{r:?}");
        assert_eq!(
            r.status, 1,
            "not a success code: the caller may fall back: {r:?}"
        );
        assert!(r.stderr.contains("0x2EFD"), "{}", r.stderr);
    });
}

/// Start a faulty origin over a published tree and an agent pointed at it.
fn faulty_setup(t: &TestDir, fault: Fault) -> (FaultyOrigin, AgentProc) {
    published(t, 2 * MIB);
    let origin = FaultyOrigin::start(t.join("origin"), fault);
    let agent = AgentProc::start(&t.join("agent"), &origin.url(), "");
    (origin, agent)
}

#[test]
fn a_block_corrupted_once_is_fetched_again_and_never_delivered() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        let fault = Fault::CorruptOnce {
            path_suffix: "image.bin".into(),
            offset: 300_000,
        };
        let (origin, agent) = faulty_setup(&t, fault);
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", agent.log());
        assert_eq!(origin.fault_applied(), 1);
        assert_trees_equal(t.join("src"), t.join("dest"));
        assert!(
            agent.log().contains("failed verification"),
            "{}",
            agent.log()
        );
    });
}

#[test]
fn a_block_always_corrupted_fails_with_a_data_error_and_delivers_nothing() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        let fault = Fault::CorruptAlways {
            path_suffix: "image.bin".into(),
            offset: 300_000,
        };
        let (_origin, agent) = faulty_setup(&t, fault);
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r.code(), 0x17, "{r:?}");
        assert_eq!(r.status, 1);
        assert!(!t.join("dest").join("image.bin").exists());
    });
}

#[test]
fn truncated_responses_are_resumed_with_range_requests() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        let fault = Fault::TruncateAfter {
            bytes: 700_000,
            times: 2,
        };
        let (origin, agent) = faulty_setup(&t, fault);
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", agent.log());
        assert_eq!(origin.fault_applied(), 2);
        assert_trees_equal(t.join("src"), t.join("dest"));
        // Resumed with Range requests, not restarted: at most the cut blocks again.
        assert!(
            r.origin_bytes() < tree_size(&t) + 2 * 131_072,
            "{}",
            r.origin_bytes()
        );
        let ranged = origin
            .request_log()
            .iter()
            .filter(|e| {
                e.path.ends_with("image.bin")
                    && e.range
                        .as_deref()
                        .is_some_and(|r| !r.starts_with("bytes=0-"))
            })
            .count();
        assert!(ranged >= 2, "{:?}", origin.request_log());
    });
}

#[test]
fn a_stalled_response_is_abandoned_and_resumed() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        let fault = Fault::StallAfter {
            bytes: 500_000,
            times: 1,
        };
        let (_origin, agent) = faulty_setup(&t, fault);
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", agent.log());
        assert_trees_equal(t.join("src"), t.join("dest"));
        assert!(agent.log().contains("no data for 2 s"), "{}", agent.log());
    });
}

#[test]
fn server_errors_are_retried_then_reported_as_0xcd03() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        let (origin, agent) = faulty_setup(
            &t,
            Fault::Status {
                status: 500,
                times: 2,
            },
        );
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r.status, 0, "two 500s then success: {r:?}\n{}", agent.log());
        assert_trees_equal(t.join("src"), t.join("dest"));

        // Always 503 for the content (the manifest still comes): a fresh agent retries
        // OriginRetries times and then reports the server error.
        origin.set_fault(Fault::Status {
            status: 503,
            times: u32::MAX,
        });
        let agent2 = AgentProc::start(&t.join("agent2"), &origin.url(), "");
        let r = agent2.get("PKG00001", 3, &t.join("dest5"), &[]);
        assert_eq!(r.code(), 0xCD03, "{r:?}");
        assert_eq!(r.status, 1);
    });
}

#[test]
fn a_manifest_that_does_not_parse_or_does_not_match_is_refused() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        let hash = published(&t, MIB);
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            ..Default::default()
        })
        .unwrap();
        let agent = AgentProc::start(&t.join("agent"), &nginx.url(), "");
        let wrong = format!(
            "{}{}",
            &hash[..63],
            if hash.ends_with('0') { "1" } else { "0" }
        );
        let r = agent.get("PKG00001", 3, &t.join("dest"), &["--hash", &wrong]);
        assert_eq!(r.code(), 0xCD02, "{r:?}");
        // Damage the manifest on the origin.
        let m = t.join("origin/PKG00001/3/manifest.json");
        let text = std::fs::read_to_string(&m).unwrap();
        std::fs::write(&m, &text[..text.len() / 2]).unwrap();
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r.code(), 0xCD01, "{r:?}");
        // A manifest whose text was edited no longer matches its own content hash.
        std::fs::write(&m, text.replacen("\"size\": 1000", "\"size\": 1001", 1)).unwrap();
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r.code(), 0xCD01, "{r:?}");
        assert!(!t.join("dest").exists());
    });
}

/// A tmpfs mounted on a test's directory (only root can), unmounted when dropped:
/// a small file system of the test's own, to fill up.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, opts: &str) -> Tmpfs {
        let t = Tmpfs(dir.to_path_buf());
        t.remount(opts);
        t
    }

    /// Mount again with `opts` (`remount,size=64m` makes room).
    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Verified bytes of the (single) job, from `contentdist jobs --json`.
fn job_verified(agent: &AgentProc) -> u64 {
    agent
        .jobs()
        .first()
        .and_then(|j| j["bytes_verified"].as_u64())
        .unwrap_or(0)
}

#[test]
fn kill_9_mid_download_resumes_from_verified_blocks_without_refetching() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        let hash = published(&t, 8 * MIB);
        let size = tree_size(&t);
        // A slow WAN: 4 MiB/s per connection.
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            rate_limit_bytes_per_sec: Some(4 * MIB),
            ..Default::default()
        })
        .unwrap();
        let mut agent = AgentProc::start(&t.join("agent"), &nginx.url(), "");
        let out = agent.cli(&[
            "get",
            "PKG00001",
            "--version",
            "3",
            "--no-wait",
            "--hash",
            &hash,
            "--dest",
            &t.join("dest").display().to_string(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(support::wait_until(
            Duration::from_secs(30),
            || job_verified(&agent) > size / 3
        ));
        agent.kill9();
        agent.restart();
        // The persisted job resumes by itself.
        let done = support::wait_until(Duration::from_secs(60), || {
            agent
                .jobs()
                .first()
                .map(|j| j["state"] == "done")
                .unwrap_or(false)
        });
        assert!(done, "{:?}\n{}", agent.jobs(), agent.log());
        assert_trees_equal(t.join("src"), t.join("dest"));
        // Only what was not verified before the kill is fetched again: the origin
        // served the content once, plus at most what was in flight at the kill.
        let total = nginx.bytes_sent_total();
        assert!(total < size + MIB, "origin sent {total} for {size}");
    });
}

#[test]
fn pause_resume_and_cancel_work_from_the_command_line() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        published(&t, 6 * MIB);
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            rate_limit_bytes_per_sec: Some(2 * MIB),
            ..Default::default()
        })
        .unwrap();
        let agent = AgentProc::start(&t.join("agent"), &nginx.url(), "");
        let dest = t.join("dest").display().to_string();
        let out = agent.cli(&[
            "get",
            "PKG00001",
            "--version",
            "3",
            "--no-wait",
            "--dest",
            &dest,
        ]);
        assert!(out.status.success());
        assert!(support::wait_until(
            Duration::from_secs(30),
            || job_verified(&agent) > 0
        ));
        let id = agent.jobs()[0]["id"].as_u64().unwrap().to_string();
        assert!(agent.cli(&["jobs", "pause", &id]).status.success());
        let state = || agent.jobs()[0]["state"].as_str().unwrap().to_string();
        assert_eq!(state(), "paused");
        let v1 = job_verified(&agent);
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            job_verified(&agent) <= v1 + 512 * 1024,
            "a paused job does not progress"
        );
        let resumed = support::wait_until(Duration::from_secs(5), || {
            agent.cli(&["jobs", "resume", &id]).status.success()
        });
        assert!(resumed);
        assert!(
            support::wait_until(Duration::from_secs(60), || state() == "done"),
            "{}",
            state()
        );
        assert_trees_equal(t.join("src"), t.join("dest"));

        // Cancel a running job: it stops, reports 0x4C7, delivers nothing; a new job
        // resumes from the blocks it verified.
        publish(&t.join("src"), &t.join("origin"), "PKG00002", 1);
        let dest2 = t.join("dest2").display().to_string();
        let out = agent.cli(&[
            "get",
            "PKG00002",
            "--version",
            "1",
            "--no-wait",
            "--dest",
            &dest2,
        ]);
        assert!(out.status.success());
        let second = || agent.jobs()[1].clone();
        assert!(support::wait_until(Duration::from_secs(30), || {
            second()["bytes_verified"].as_u64().unwrap_or(0) > MIB
        }));
        let id2 = second()["id"].as_u64().unwrap().to_string();
        assert!(agent.cli(&["jobs", "cancel", &id2]).status.success());
        let j = second();
        assert_eq!(j["state"], "cancelled", "{j}");
        assert_eq!(j["code"], 0x4C7, "{j}");
        assert!(!t.join("dest2").exists());
        let kept = j["bytes_verified"].as_u64().unwrap();
        let r = agent.get("PKG00002", 1, &t.join("dest2"), &[]);
        assert_eq!(r.status, 0, "{r:?}");
        assert!(
            r.origin_bytes() <= tree_size(&t) - kept + 512 * 1024,
            "{} {kept}",
            r.origin_bytes()
        );
        assert_trees_equal(t.join("src"), t.join("dest2"));
    });
}

#[test]
fn https_origin_is_verified_against_the_configured_ca() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        published(&t, MIB);
        let pki = support::pki::Pki::create();
        let server = pki.server_cert("origin", &["IP:127.0.0.1", "DNS:localhost"]);
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            tls: Some(support::nginx::TlsFiles {
                cert: server.cert.clone(),
                key: server.key.clone(),
            }),
            ..Default::default()
        })
        .unwrap();
        let extra = format!("OriginCaFile = \"{}\"", pki.ca_cert().display());
        let agent = AgentProc::start(&t.join("a"), &nginx.url(), &extra);
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", agent.log());
        assert_trees_equal(t.join("src"), t.join("dest"));
        // Without our CA the certificate is untrusted: a secure channel failure.
        let agent2 = AgentProc::start(&t.join("b"), &nginx.url(), "");
        let r = agent2.get("PKG00001", 3, &t.join("dest2"), &[]);
        assert_eq!(r.code(), 0x2F8F, "{r:?}");
    });
}

#[test]
fn throttling_keeps_the_origin_download_under_max_work_rate() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        published(&t, 3 * MIB);
        let size = tree_size(&t);
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            ..Default::default()
        })
        .unwrap();
        // 16 Mbit/s WAN at MaxWorkRate 50 => 1 MB/s.
        let agent = AgentProc::start(
            &t.join("a"),
            &nginx.url(),
            "WanRateKbps = 16000\nMaxWorkRate = 50",
        );
        let start = std::time::Instant::now();
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        let took = start.elapsed().as_secs_f64();
        assert_eq!(r.status, 0, "{r:?}");
        let floor = size as f64 / 1_000_000.0 - 0.2;
        assert!(
            took >= floor,
            "took {took:.2} s, the throttle allows no less than {floor:.2} s"
        );
    });
}

#[test]
fn disk_full_fails_cleanly_and_the_job_resumes_once_there_is_room() {
    // Needs a small file system of its own: a tmpfs, which only root can mount.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to mount a small tmpfs");
        return;
    }
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        published(&t, 6 * MIB);
        let size = tree_size(&t);
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            ..Default::default()
        })
        .unwrap();
        let small = t.subdir("small");
        let tmpfs = Tmpfs::mount(&small, "size=3m");
        let agent = AgentProc::start(&small.join("agent"), &nginx.url(), "");
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r.code(), 0x70, "{r:?}\n{}", agent.log());
        assert_eq!(r.status, 3, "0x70 is in SuccessCodes");
        let verified = r.json["bytes_verified"].as_u64().unwrap();
        assert!(verified > 0 && verified < size, "{verified}");
        // Make room and run again: the cache was left consistent, verified blocks
        // are kept, and only the rest comes from the origin.
        tmpfs.remount("remount,size=64m");
        let r2 = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r2.status, 0, "{r2:?}\n{}", agent.log());
        assert_trees_equal(t.join("src"), t.join("dest"));
        assert!(
            r2.origin_bytes() <= size - verified + 256 * 1024,
            "{} {}",
            r2.origin_bytes(),
            verified
        );
    });
}

#[test]
fn a_user_the_control_socket_refuses_is_told_so_and_which_group_grants_access() {
    // Needs another user than the agent's: only root can switch to `nobody`.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run the CLI as another user");
        return;
    }
    with_timeout(Duration::from_secs(60), || {
        use std::os::unix::fs::PermissionsExt;
        let t = TestDir::new();
        let agent = AgentProc::start(&t.join("agent"), "http://127.0.0.1:9/", "");
        // Let `nobody` reach the settings and a copy of the binary, not the socket.
        let open = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        open(t.path(), 0o755);
        open(&t.join("agent"), 0o755);
        open(agent.config(), 0o644);
        let bin = t.join("contentdist");
        std::fs::copy(support::contentdist_bin(), &bin).unwrap();
        open(&bin, 0o755);
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["status", "--config"])
            .arg(agent.config())
            .env_remove("CONTENTDIST_CONFIG")
            .output()
            .unwrap();
        let msg = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(4), "{msg}");
        assert!(
            msg.contains("was refused") && msg.contains("group 'root'") && msg.contains("0660"),
            "{msg}"
        );
        assert!(!msg.contains("running?"), "{msg}");
        // Root (owner) still gets in.
        assert!(agent.cli(&["status"]).status.success());
    });
}

/// `bytes_from_origin` of the job as last saved in `jobs.json`.
fn saved_origin_bytes(agent: &AgentProc) -> u64 {
    std::fs::read(agent.cache_dir().join("jobs.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["jobs"][0]["bytes_from_origin"].as_u64())
        .unwrap_or(0)
}

#[test]
fn bytes_from_the_origin_are_counted_across_a_kill_9() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        published(&t, 16 * MIB);
        let size = tree_size(&t);
        let rate = 4 * MIB;
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            rate_limit_bytes_per_sec: Some(rate),
            ..Default::default()
        })
        .unwrap();
        let mut agent = AgentProc::start(&t.join("agent"), &nginx.url(), "");
        let dest = t.join("dest").display().to_string();
        let out = agent.cli(&[
            "get",
            "PKG00001",
            "--version",
            "3",
            "--no-wait",
            "--dest",
            &dest,
        ]);
        assert!(out.status.success());
        // Kill as soon as the saved record holds half the content.
        assert!(support::wait_until(Duration::from_secs(30), || {
            saved_origin_bytes(&agent) > size / 2
        }));
        agent.kill9();
        agent.restart();
        assert!(support::wait_until(Duration::from_secs(60), || {
            agent.jobs().first().is_some_and(|j| j["state"] == "done")
        }));
        let reported = agent.jobs()[0]["bytes_from_origin"].as_u64().unwrap();
        let served = nginx.bytes_sent_total();
        // What crossed the WAN is reported, less at most what arrived between the
        // last save (every 0.5 s) and the kill, and what was in flight.
        assert!(
            reported + rate / 2 + MIB >= served && reported <= served,
            "reported {reported}, nginx served {served}"
        );
    });
}

#[test]
fn a_job_that_failed_on_a_full_disk_stays_failed_after_a_restart() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to mount a small tmpfs");
        return;
    }
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        published(&t, 6 * MIB);
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            ..Default::default()
        })
        .unwrap();
        let small = t.subdir("small");
        let _tmpfs = Tmpfs::mount(&small, "size=3m");
        let mut agent = AgentProc::start(&small.join("agent"), &nginx.url(), "");
        let r = agent.get("PKG00001", 3, &t.join("dest"), &[]);
        assert_eq!(r.code(), 0x70, "{r:?}\n{}", agent.log());
        // The disk is still full: the failure must be on disk all the same.
        agent.stop();
        agent.restart();
        let jobs = agent.jobs();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0]["state"], "failed", "{jobs:?}\n{}", agent.log());
        assert_eq!(jobs[0]["code"], 0x70, "{jobs:?}");
        assert!(!agent.log().contains("resuming job"), "{}", agent.log());
        // No half-written file stays behind: a spare (`NAME.tmp`, which each save
        // writes and swaps in) holds a whole earlier version or is gone.
        let out = Command::new("find")
            .arg(&small)
            .args(["-name", "*.tmp"])
            .output()
            .unwrap();
        for spare in String::from_utf8_lossy(&out.stdout).lines() {
            let spare = std::path::Path::new(spare);
            let bytes = std::fs::read(spare).unwrap();
            match spare.file_name().and_then(|n| n.to_str()) {
                Some("jobs.tmp" | "meta.tmp") => assert!(
                    serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                    "{} is not a whole earlier version",
                    spare.display()
                ),
                Some("have.tmp") => assert_eq!(
                    bytes.len() as u64,
                    std::fs::metadata(spare.with_extension("bin"))
                        .unwrap()
                        .len(),
                    "{} is not a whole earlier bitmap",
                    spare.display()
                ),
                _ => panic!("temporary file left: {}", spare.display()),
            }
        }
    });
}

#[test]
fn delivery_refuses_to_follow_a_symlinked_directory_in_the_destination() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        let src = t.subdir("src");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("a/x"), b"payload").unwrap();
        publish(&src, &t.subdir("origin"), "PKG00001", 3);
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            ..Default::default()
        })
        .unwrap();
        let agent = AgentProc::start(&t.join("agent"), &nginx.url(), "");
        // Someone who can write into the destination plants a link to elsewhere.
        let dest = t.subdir("D");
        let elsewhere = t.subdir("O");
        std::os::unix::fs::symlink(&elsewhere, dest.join("a")).unwrap();
        let r = agent.get("PKG00001", 3, &dest, &[]);
        assert_eq!(r.code(), 0xCD09, "{r:?}");
        let msg = r.json["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("symbolic link") && msg.contains("/D/a"),
            "{msg}"
        );
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    });
}
