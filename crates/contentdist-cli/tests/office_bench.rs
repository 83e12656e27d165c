//! Issue 10's office benchmark: a branch office of 16 hosts in network namespaces,
//! nginx behind a 100 Mbit/s WAN, 256 MiB of content, every agent a separate
//! `contentdist agent` process, and in the same run:
//! - one host alone over the same WAN (the reference every ratio divides by);
//! - the 16 hosts with FanOut (`SpecialNetShare` left at its default, 0x2070);
//! - the 16 hosts without FanOut (`SpecialNetShare = 0x2030`: peers copy from the
//!   master only, the old behaviour);
//! - a BitTorrent swarm of the same 16 hosts: aria2c everywhere, Debian's
//!   opentracker (whitelist mode) on host 0, the origin as web seed on host 0 only.
//!
//! Each phase gets a fresh lab (namespaces, nginx, caches), so nothing carries over
//! but the page cache. `NetLab` shapes only the WAN; the LAN's 1 Gbit/s is shaped
//! here, with `tbf` on both ends of every host's port. It prints a table per phase and one summary block at the end,
//! and fails when a host delivers other bytes than published, when a host does not
//! finish in time, or when no non-master host served anything with FanOut.
//!
//! Root only, and `#[ignore]`d: it takes minutes and installs `aria2` and
//! `opentracker` with apt-get when they are missing. Run it with
//! `cargo test --release -p contentdist-cli --test office_bench -- --ignored --nocapture --test-threads 1`.
//! Environment: `OFFICE_BENCH_MIB` (content size, 256), `OFFICE_BENCH_HOSTS` (16),
//! `OFFICE_BENCH_WAN_MBIT` (100), `OFFICE_BENCH_LAN_MBIT` (1000; 0 = LAN unshaped),
//! `OFFICE_BENCH_KEEP` (set: keep each contentdist phase's directory, agent logs
//! and caches included, and print where it is), `OFFICE_BENCH_P2P` (every agent's
//! `P2PEnabled`, 0x28 = HTTP; 0x9, the product's default, copies over SMB with each
//! host's own smbd).

mod support;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::agent::AgentProc;
use support::netns::{skip_unless_root, NetLab, NetLabOptions, NsNginx, LAN_IF};
use support::{random_file, wait_until, with_timeout, TestDir};

const MIB: u64 = 1024 * 1024;
const CONTENT_ID: &str = "OFFICE01";
const FILE_NAME: &str = "app.bin";
/// HTTP peer copy with net literal names (the cheapest serving path, as nginx's),
/// unless `OFFICE_BENCH_P2P` says otherwise.
const P2P_ENABLED: u32 = 0x28;
/// `SpecialNetShare` without FanOut: the default 0x2070 less 0x40.
const NO_FAN_OUT: u32 = 0x2030;
/// BitTorrent piece length (1024 pieces for 256 MiB).
const PIECE_LEN: usize = 256 * 1024;
const TRACKER_PORT: u16 = 6969;
/// The whole benchmark, every phase included.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How often the host waited for is asked for its job's state: seldom, since every
/// ask is a process and the machine has two cores; the makespan comes from the
/// jobs' own clocks, not from this poll.
const JOB_POLL: Duration = Duration::from_millis(500);

/// What the run measures with, from the environment.
#[derive(Debug, Clone)]
struct Settings {
    hosts: usize,
    size: u64,
    wan_kbit: u64,
    /// Rate of every LAN port, each way; `None`: unshaped.
    lan_mbit: Option<u64>,
    /// Every agent's `P2PEnabled`.
    p2p_enabled: u32,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str, default: u64| -> u64 {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{name}={v:?}: {e}")),
                Err(_) => default,
            }
        };
        let lan = var("OFFICE_BENCH_LAN_MBIT", 1000);
        Settings {
            hosts: var("OFFICE_BENCH_HOSTS", 16) as usize,
            size: var("OFFICE_BENCH_MIB", 256) * MIB,
            wan_kbit: var("OFFICE_BENCH_WAN_MBIT", 100) * 1000,
            lan_mbit: (lan > 0).then_some(lan),
            p2p_enabled: match std::env::var("OFFICE_BENCH_P2P") {
                Ok(v) => {
                    let hex = v.trim().trim_start_matches("0x");
                    u32::from_str_radix(hex, 16)
                        .unwrap_or_else(|e| panic!("OFFICE_BENCH_P2P={v:?} (hex): {e}"))
                }
                Err(_) => P2P_ENABLED,
            },
        }
    }

    /// The time the WAN needs for the content at its nominal rate.
    fn wan_seconds(&self) -> f64 {
        self.size as f64 * 8.0 / (self.wan_kbit as f64 * 1000.0)
    }

    /// Bound of one phase's wait: ten WAN times, at least five minutes.
    fn phase_timeout(&self) -> Duration {
        Duration::from_secs_f64((self.wan_seconds() * 10.0).max(300.0))
    }

    fn lan_words(&self) -> String {
        match self.lan_mbit {
            Some(m) => format!(
                "{m} Mbit/s per port each way (tbf on every host's {LAN_IF} egress and on every bridge port's egress)"
            ),
            None => "unshaped (veth pairs on one bridge)".to_string(),
        }
    }
}

/// The published content, its origin tree and its hash.
struct Content {
    dir: TestDir,
    size: u64,
    hash: blake3::Hash,
}

impl Content {
    /// `src/app.bin`, published as OFFICE01 v1 into `origin/`, and hard-linked as
    /// `origin/bt/app.bin` for the BitTorrent web seed: the same bytes, one file.
    fn prepare(size: u64) -> Content {
        let dir = TestDir::new();
        let src = dir.subdir("src");
        random_file(src.join(FILE_NAME), size, 10);
        support::publish(&src, &dir.subdir("origin"), CONTENT_ID, 1);
        std::fs::create_dir_all(dir.join("origin/bt")).unwrap();
        std::fs::hard_link(src.join(FILE_NAME), dir.join("origin/bt").join(FILE_NAME)).unwrap();
        let hash = hash_file(&src.join(FILE_NAME));
        Content { dir, size, hash }
    }

    fn origin_root(&self) -> PathBuf {
        self.dir.join("origin")
    }

    fn file(&self) -> PathBuf {
        self.dir.join("src").join(FILE_NAME)
    }
}

fn hash_file(path: &Path) -> blake3::Hash {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = blake3::Hasher::new();
    h.update_reader(f)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    h.finalize()
}

/// A lab of `hosts` with the WAN shaped, and the LAN too when the settings say so.
fn office(s: &Settings, hosts: usize) -> NetLab {
    let lab = NetLab::create(NetLabOptions {
        hosts,
        wan_rate_kbit: Some(s.wan_kbit),
    });
    if let Some(mbit) = s.lan_mbit {
        // 2 ms at the rate as burst (at least 128 KiB, so GSO segments pass whole),
        // a 20 ms queue: a switch's small buffers, not a bufferbloated modem.
        let burst = (mbit * 1_000_000 / 8 / 500).max(128 * 1024).to_string();
        let rate = format!("{mbit}mbit");
        let tbf = |ns: &str, dev: &str| {
            let out = lab
                .command(ns, "tc")
                .args(["qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate])
                .args(["burst", &burst, "latency", "20ms"])
                .output()
                .expect("run tc");
            assert!(
                out.status.success(),
                "tc on {dev} in {ns}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // Host to switch: each host's interface.
        for i in 0..hosts {
            tbf(lab.host_ns(i), LAN_IF);
        }
        // Switch to host: every port of the bridge (the origin's port too, which
        // only carries requests). `namespaces()` lists the switch first.
        let switch = lab.namespaces()[0].to_string();
        let out = lab
            .command(&switch, "ip")
            .args(["-o", "link", "show", "master", "br0"])
            .output()
            .expect("run ip");
        let ports: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|name| name.trim().split('@').next().unwrap_or("").to_string())
            .filter(|name| !name.is_empty())
            .collect();
        assert_eq!(ports.len(), hosts + 1, "bridge ports: {ports:?}");
        for port in &ports {
            tbf(&switch, port);
        }
    }
    lab
}

/// One host's line of a contentdist phase.
#[derive(Debug, Clone)]
struct HostRow {
    state: String,
    from_origin: u64,
    from_peers: u64,
    served: u64,
    /// Seconds from the first submission until the job was done (its own clock).
    done_at: f64,
    elected_master: bool,
    /// The election's term at the end.
    term: u64,
    /// Seconds from the job's arrival to this agent's first "elected master" or
    /// "following master" line (the two log clocks).
    joined: Option<f64>,
    /// Election datagrams the kernel dropped (full receive queue).
    overflowed: u64,
    holder_failures: usize,
    holders_dropped: usize,
    warnings: Vec<String>,
}

/// What one contentdist phase measured.
#[derive(Debug, Clone)]
struct CdPhase {
    label: String,
    hosts: Vec<HostRow>,
    /// max(done_at): from the jobs' own clocks.
    makespan: f64,
    /// From the first submission until this test saw the last job done (coarser).
    polled: f64,
    origin_content: u64,
    origin_other: u64,
    origin_requests: usize,
}

impl CdPhase {
    /// Hosts that took bytes from the origin: the master(s), or more when it broke.
    fn downloaders(&self) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].from_origin > 0)
            .collect()
    }

    fn elected(&self) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].elected_master)
            .collect()
    }

    /// When the (first) master finished its origin download.
    fn master_done(&self) -> Option<f64> {
        self.downloaders()
            .iter()
            .map(|&i| self.hosts[i].done_at)
            .reduce(f64::min)
    }

    /// Bytes served by hosts that took nothing from the origin.
    fn served_by_non_masters(&self) -> u64 {
        self.hosts
            .iter()
            .filter(|h| h.from_origin == 0)
            .map(|h| h.served)
            .sum()
    }

    fn print(&self, size: u64) {
        println!(
            "\n--- {}: makespan {:.2} s (jobs' clocks; polled {:.2} s), origin content {} B = {:.4}x, other origin bytes {} in {} requests",
            self.label,
            self.makespan,
            self.polled,
            self.origin_content,
            self.origin_content as f64 / size as f64,
            self.origin_other,
            self.origin_requests
        );
        println!(
            "host  role     state   elected_s  term  done_at_s  from_origin_MiB  from_peers_MiB  served_MiB  holder_failed  holder_dropped"
        );
        for (i, h) in self.hosts.iter().enumerate() {
            let role = match (h.from_origin > 0, h.elected_master) {
                (true, true) => "master",
                (true, false) => "origin",
                (false, true) => "master?",
                (false, false) => "peer",
            };
            println!(
                "{i:>4}  {role:<7}  {:<6}  {:>9}  {:>4}  {:>9.2}  {:>15.2}  {:>14.2}  {:>10.2}  {:>13}  {:>14}",
                h.state,
                h.joined.map_or("?".to_string(), |j| format!("{j:.2}")),
                h.term,
                h.done_at,
                h.from_origin as f64 / MIB as f64,
                h.from_peers as f64 / MIB as f64,
                h.served as f64 / MIB as f64,
                h.holder_failures,
                h.holders_dropped
            );
        }
        for (i, h) in self.hosts.iter().enumerate() {
            for w in &h.warnings {
                println!("  host {i}: {w}");
            }
        }
    }
}

/// Runs one contentdist phase: `hosts` agents, all jobs submitted at once, waited
/// for, checked byte for byte (hash) against the content.
fn run_contentdist(
    s: &Settings,
    content: &Content,
    hosts: usize,
    special_net_share: Option<u32>,
    label: &str,
) -> CdPhase {
    println!("\n=== {label}: starting {hosts} agent(s)");
    let t = TestDir::new();
    let lab = office(s, hosts);
    let nginx = lab.nginx_in_origin(&content.origin_root());
    let agents: Vec<AgentProc> = (0..hosts)
        .map(|i| {
            let dir = t.join(format!("host{i}"));
            let mut extra = format!(
                "P2PEnabled = {:#x}\nElectionAddress = \"{}\"\nCertStoreDir = \"{}\"",
                s.p2p_enabled,
                lab.broadcast(),
                dir.join("store").display()
            );
            if let Some(sns) = special_net_share {
                let _ = write!(extra, "\nSpecialNetShare = {sns:#x}");
            }
            AgentProc::start_in(Some(lab.host_ns(i)), &dir, &nginx.url(), &extra)
        })
        .collect();
    // Every `get --no-wait` from its own thread, so the jobs start together.
    let t0 = Instant::now();
    let submitted: Vec<f64> = std::thread::scope(|scope| {
        let threads: Vec<_> = agents
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let dest = t.join(format!("dest{i}")).display().to_string();
                scope.spawn(move || {
                    let at = t0.elapsed().as_secs_f64();
                    let out = a.cli(&[
                        "get",
                        CONTENT_ID,
                        "--version",
                        "1",
                        "--no-wait",
                        "--dest",
                        &dest,
                    ]);
                    assert!(
                        out.status.success(),
                        "submit on host {i}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    at
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // One host at a time, in order: a later host is usually done by the time its
    // turn comes, so this asks a few times a second in all, not once per host.
    let mut done: Vec<serde_json::Value> = Vec::with_capacity(hosts);
    let mut polled = 0.0;
    let deadline = Instant::now() + s.phase_timeout();
    for (i, agent) in agents.iter().enumerate() {
        loop {
            let job = agent.jobs().first().cloned().unwrap_or_default();
            match job["state"].as_str() {
                Some("done") => {
                    polled = t0.elapsed().as_secs_f64();
                    done.push(job);
                    break;
                }
                Some("failed") | Some("cancelled") => {
                    panic!("{label}: host {i}: {job}\n{}", tail(&agent.log(), 40))
                }
                _ => {}
            }
            if Instant::now() > deadline {
                let left: Vec<String> = (i..hosts)
                    .map(|k| format!("host {k}: {:?}", agents[k].jobs().first()))
                    .collect();
                panic!(
                    "{label}: not done within {:?}: {left:#?}",
                    s.phase_timeout()
                );
            }
            std::thread::sleep(JOB_POLL);
        }
    }
    println!("{label}: all {hosts} jobs done, checking");
    // nginx logs a request when its response is complete: the master's are, since
    // it is done; allow a moment for the log line to land.
    wait_until(Duration::from_secs(5), || {
        content_bytes(&nginx, "/content/") >= content.size
    });
    let log = nginx.access_log();
    let origin_content = content_bytes(&nginx, "/content/");
    let origin_other = log
        .iter()
        .filter(|e| !e.path.contains("/content/"))
        .map(|e| e.bytes_sent)
        .sum();
    let rows: Vec<HostRow> = (0..hosts)
        .map(|i| {
            let job = &done[i];
            let out = agents[i].cli(&["status", "--json"]);
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let elected_master = status["elections"]
                .as_array()
                .is_some_and(|es| es.iter().any(|e| e["state"] == "master"));
            let agent_log = agents[i].log();
            let warnings = agent_log
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .take(8)
                .map(str::to_string)
                .collect();
            HostRow {
                state: job["state"].as_str().unwrap_or("?").to_string(),
                from_origin: job["bytes_from_origin"].as_u64().unwrap_or(0),
                from_peers: job["bytes_from_peers"].as_u64().unwrap_or(0),
                // HTTP(S) and SMB (each host's smbd) alike.
                served: status["peer_server"]["bytes_served"].as_u64().unwrap_or(0)
                    + status["smb"]["bytes_served"].as_u64().unwrap_or(0),
                done_at: submitted[i] + job["elapsed_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                elected_master,
                term: status["elections"][0]["term"].as_u64().unwrap_or(0),
                joined: election_delay(&agent_log),
                overflowed: status["election_datagrams_overflowed"]
                    .as_u64()
                    .unwrap_or(0),
                holder_failures: agent_log.matches("copy from a holder failed").count(),
                holders_dropped: agent_log.matches("holder dropped").count(),
                warnings,
            }
        })
        .collect();
    for i in 0..hosts {
        let got = hash_file(&t.join(format!("dest{i}")).join(FILE_NAME));
        assert_eq!(got, content.hash, "{label}: host {i} delivered other bytes");
    }
    println!(
        "{label}: {hosts} deliveries identical (blake3 {})",
        &content.hash.to_hex()[..16]
    );
    let makespan = rows.iter().map(|r| r.done_at).fold(0.0, f64::max);
    drop(agents);
    drop(nginx);
    drop(lab);
    if std::env::var_os("OFFICE_BENCH_KEEP").is_some() {
        println!(
            "{label}: kept {} (agent logs in hostN/agent.log)",
            t.keep().display()
        );
    }
    CdPhase {
        label: label.to_string(),
        hosts: rows,
        makespan,
        polled,
        origin_content,
        origin_other,
        origin_requests: log.len(),
    }
}

/// Seconds of a log line's time of day (`2026-11-30T08:43:22.389097Z ...`).
fn log_clock(line: &str) -> Option<f64> {
    let t = line.get(11..26)?;
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// From the job's submission (the control socket's POST) to the first line saying
/// who the master is, in the agent's own log.
fn election_delay(log: &str) -> Option<f64> {
    let at = |needle: &[&str]| {
        log.lines()
            .find(|l| needle.iter().any(|n| l.contains(n)))
            .and_then(log_clock)
    };
    let posted = at(&["method=POST path=/v1/jobs"])?;
    let known = at(&["elected master", "following master"])?;
    Some((known - posted).rem_euclid(86_400.0))
}

fn content_bytes(nginx: &NsNginx, under: &str) -> u64 {
    nginx
        .access_log()
        .iter()
        .filter(|e| e.path.contains(under))
        .map(|e| e.bytes_sent)
        .sum()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------- BitTorrent

/// Children killed (SIGKILL) and reaped when dropped: aria2c seeds until then.
struct Killed(Vec<(String, Child)>);

impl Drop for Killed {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Makes sure aria2c and opentracker are installed (apt-get when missing) and
/// returns what was done, in words, with the versions.
fn ensure_bittorrent_tools() -> String {
    let have = |bin: &str| Path::new(bin).exists();
    let mut words = String::new();
    let missing: Vec<&str> = [
        ("aria2", "/usr/bin/aria2c"),
        ("opentracker", "/usr/bin/opentracker"),
    ]
    .into_iter()
    .filter(|(_, bin)| !have(bin))
    .map(|(pkg, _)| pkg)
    .collect();
    if missing.is_empty() {
        words.push_str("aria2 and opentracker already installed");
    } else {
        println!(
            "installing {missing:?}: apt-get install -y {}",
            missing.join(" ")
        );
        let mut out = Command::new("apt-get")
            .args(["install", "-y"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("run apt-get");
        if !out.status.success() {
            println!("apt-get install failed; apt-get update, then again");
            let _ = Command::new("apt-get").arg("update").output();
            out = Command::new("apt-get")
                .args(["install", "-y"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .expect("run apt-get");
        }
        assert!(
            out.status.success(),
            "apt-get install -y {missing:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{}", tail(&String::from_utf8_lossy(&out.stdout), 6));
        let _ = write!(words, "installed {} with apt-get", missing.join(" and "));
    }
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${Package} ${Version}, ",
            "aria2",
            "opentracker",
        ])
        .output()
        .expect("run dpkg-query");
    let _ = write!(
        words,
        " ({})",
        String::from_utf8_lossy(&out.stdout).trim_end_matches([',', ' '])
    );
    words
}

fn bencode_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(format!("{}:", b.len()).as_bytes());
    out.extend_from_slice(b);
}

fn bencode_int(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(format!("i{n}e").as_bytes());
}

/// The torrent's info dictionary, bencoded (keys in sorted order, as bencode wants).
fn torrent_info(file: &Path, name: &str) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    let mut f = std::fs::File::open(file).unwrap();
    let mut pieces = Vec::new();
    let mut buf = vec![0u8; PIECE_LEN];
    let mut length = 0u64;
    loop {
        let mut n = 0;
        while n < PIECE_LEN {
            match f.read(&mut buf[n..]).unwrap() {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        length += n as u64;
        pieces.extend_from_slice(&Sha1::digest(&buf[..n]));
        if n < PIECE_LEN {
            break;
        }
    }
    let mut info = b"d".to_vec();
    bencode_bytes(&mut info, b"length");
    bencode_int(&mut info, length);
    bencode_bytes(&mut info, b"name");
    bencode_bytes(&mut info, name.as_bytes());
    bencode_bytes(&mut info, b"piece length");
    bencode_int(&mut info, PIECE_LEN as u64);
    bencode_bytes(&mut info, b"pieces");
    bencode_bytes(&mut info, &pieces);
    info.push(b'e');
    info
}

/// A .torrent: announce URL, the info dictionary, and a web seed (BEP 19) if any.
fn torrent(announce: &str, info: &[u8], web_seed: Option<&str>) -> Vec<u8> {
    let mut t = b"d".to_vec();
    bencode_bytes(&mut t, b"announce");
    bencode_bytes(&mut t, announce.as_bytes());
    bencode_bytes(&mut t, b"info");
    t.extend_from_slice(info);
    if let Some(url) = web_seed {
        bencode_bytes(&mut t, b"url-list");
        bencode_bytes(&mut t, url.as_bytes());
    }
    t.push(b'e');
    t
}

/// Announces a peer that leaves (`event=stopped`, `numwant=0`, so it is never
/// listed): the tracker answers without "failure reason" once it runs and its
/// whitelist holds the hash.
fn tracker_accepts(addr: SocketAddr, info_hash: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let hash: String = info_hash.iter().map(|b| format!("%{b:02X}")).collect();
    let req = format!(
        "GET /announce?info_hash={hash}&peer_id=-PROBE-0000000000000&port=1&uploaded=0&downloaded=0&left=0&event=stopped&numwant=0&compact=1 HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    let text = String::from_utf8_lossy(&body);
    if text.contains("interval") && !text.contains("failure reason") {
        Ok(())
    } else {
        Err(text.into_owned())
    }
}

/// What the BitTorrent phase measured.
#[derive(Debug, Clone)]
struct BtPhase {
    makespan: f64,
    done_at: Vec<f64>,
    origin_bytes: u64,
    origin_requests: usize,
    tools: String,
}

fn run_bittorrent(s: &Settings, content: &Content) -> BtPhase {
    let hosts = s.hosts;
    println!("\n=== BitTorrent: {hosts} aria2c, opentracker on host 0, web seed on host 0");
    let tools = ensure_bittorrent_tools();
    println!("{tools}");
    let t = TestDir::new();
    let lab = office(s, hosts);
    let nginx = lab.nginx_in_origin(&content.origin_root());
    let tracker_ip: Ipv4Addr = lab.host_addr(0);
    let announce = format!("http://{tracker_ip}:{TRACKER_PORT}/announce");
    let web_seed = format!("{}/bt/{FILE_NAME}", nginx.url());
    let info = torrent_info(&content.file(), FILE_NAME);
    let info_hash: [u8; 20] = {
        use sha1::{Digest, Sha1};
        Sha1::digest(&info).into()
    };
    let hex: String = info_hash.iter().map(|b| format!("{b:02x}")).collect();
    let seeded = t.write("seeded.torrent", torrent(&announce, &info, Some(&web_seed)));
    let swarm = t.write("swarm.torrent", torrent(&announce, &info, None));
    println!("torrent {hex}: {PIECE_LEN} B pieces, announce {announce}, url-list {web_seed} (host 0 only)");

    // The tracker, in whitelist mode as Debian builds it. It refuses to run as
    // root: it chroots into `tracker/` and becomes `nobody`, so the whitelist is
    // named relative to that directory, which `nobody` may read.
    let tracker_dir = t.subdir("tracker");
    std::fs::set_permissions(&tracker_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let whitelist = t.write("tracker/whitelist.txt", format!("{hex}\n"));
    std::fs::set_permissions(&whitelist, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut procs = Killed(Vec::new());
    let mut cmd = Command::new("opentracker");
    cmd.args([
        "-i",
        &tracker_ip.to_string(),
        "-p",
        &TRACKER_PORT.to_string(),
    ])
    .args(["-P", &TRACKER_PORT.to_string(), "-u", "nobody", "-d"])
    .arg(&tracker_dir)
    .args(["-w", "whitelist.txt"])
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(t.join("opentracker.log")).unwrap())
    .stderr(std::fs::File::create(t.join("opentracker.err")).unwrap());
    procs
        .0
        .push(("opentracker".into(), lab.spawn(lab.host_ns(0), cmd)));
    let tracker = SocketAddr::from((tracker_ip, TRACKER_PORT));
    let mut last = String::new();
    let ready = wait_until(Duration::from_secs(20), || {
        match lab.run_in(lab.host_ns(0), || tracker_accepts(tracker, &info_hash)) {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(
        ready,
        "opentracker not ready: {last}\n{}",
        std::fs::read_to_string(t.join("opentracker.err")).unwrap_or_default()
    );

    // The hook aria2 runs when a download is complete (before seeding): it marks
    // the file; this test polls the marks.
    let hook = t.write("done.sh", "#!/bin/sh\ntouch \"$3.done\"\n");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dirs: Vec<PathBuf> = (0..hosts).map(|i| t.subdir(format!("bt{i}"))).collect();
    let t0 = Instant::now();
    for (i, dir) in dirs.iter().enumerate() {
        let mut cmd = Command::new("aria2c");
        cmd.arg(format!("--dir={}", dir.display()))
            .args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=true",
                "--disable-ipv6=true",
                "--seed-ratio=0.0",
                "--bt-tracker-interval=5",
                "--bt-max-peers=0",
                "--file-allocation=falloc",
                "--allow-overwrite=true",
                "--auto-file-renaming=false",
                "--summary-interval=0",
                "--console-log-level=warn",
                "--enable-color=false",
                "--log-level=notice",
                "--listen-port=6881",
            ])
            .arg(format!("--log={}", dir.join("aria2.log").display()))
            .arg(format!("--on-bt-download-complete={}", hook.display()))
            .arg("-T")
            .arg(if i == 0 { &seeded } else { &swarm })
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("aria2.out")).unwrap())
            .stderr(Stdio::inherit());
        procs
            .0
            .push((format!("aria2c host {i}"), lab.spawn(lab.host_ns(i), cmd)));
    }
    let mut done_at: Vec<Option<f64>> = vec![None; hosts];
    let deadline = Instant::now() + s.phase_timeout();
    while done_at.iter().any(Option::is_none) {
        for i in 0..hosts {
            if done_at[i].is_none() && dirs[i].join(format!("{FILE_NAME}.done")).exists() {
                done_at[i] = Some(t0.elapsed().as_secs_f64());
            }
        }
        for (name, c) in &mut procs.0 {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("{name} exited with {status}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "BitTorrent: not done within {:?}: {done_at:?}; host 1's log: {}",
            s.phase_timeout(),
            tail(
                &std::fs::read_to_string(dirs[1].join("aria2.log")).unwrap_or_default(),
                20
            )
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let done_at: Vec<f64> = done_at.into_iter().map(Option::unwrap).collect();
    drop(procs);
    println!("BitTorrent: all {hosts} downloads complete, checking");
    for (i, dir) in dirs.iter().enumerate() {
        assert_eq!(
            hash_file(&dir.join(FILE_NAME)),
            content.hash,
            "BitTorrent: host {i} has other bytes"
        );
    }
    println!("BitTorrent: {hosts} downloads identical");
    wait_until(Duration::from_secs(5), || {
        content_bytes(&nginx, "/bt/") >= content.size
    });
    let log = nginx.access_log();
    let origin_bytes = content_bytes(&nginx, "/bt/");
    let makespan = done_at.iter().copied().fold(0.0, f64::max);
    println!(
        "\n--- BitTorrent: makespan {makespan:.2} s, origin {origin_bytes} B = {:.4}x in {} requests",
        origin_bytes as f64 / content.size as f64,
        log.len()
    );
    let times: Vec<String> = done_at.iter().map(|d| format!("{d:.2}")).collect();
    println!("done_at_s by host: {}", times.join(" "));
    BtPhase {
        makespan,
        done_at,
        origin_bytes,
        origin_requests: log.len(),
        tools,
    }
}

// ---------------------------------------------------------------- the benchmark

#[test]
#[ignore = "a benchmark: minutes long, root only, installs aria2 and opentracker"]
fn sixteen_hosts_with_fan_out_against_one_host_alone_without_fan_out_and_bittorrent() {
    if skip_unless_root() {
        return;
    }
    with_timeout(TOTAL_TIMEOUT, || {
        let started = Instant::now();
        let load_at_start = load_average();
        let s = Settings::from_env();
        println!("settings: {s:?}");
        let content = Content::prepare(s.size);
        let n = s.hosts;
        let alone = run_contentdist(&s, &content, 1, None, "alone (1 host)");
        alone.print(s.size);
        let fan = run_contentdist(&s, &content, n, None, "FanOut (default)");
        fan.print(s.size);
        let old = run_contentdist(&s, &content, n, Some(NO_FAN_OUT), "no FanOut (0x2030)");
        old.print(s.size);
        let bt = run_bittorrent(&s, &content);
        summary(
            &s,
            &alone,
            &fan,
            &old,
            &bt,
            started.elapsed(),
            (load_at_start, load_average()),
        );
        for phase in [&fan, &old] {
            let d = phase.downloaders();
            assert!(
                d.len() == 1,
                "{}: {} hosts downloaded from the origin: {d:?}",
                phase.label,
                d.len()
            );
        }
        assert!(
            fan.served_by_non_masters() > 0,
            "FanOut: no non-master host served anything"
        );
    });
}

fn summary(
    s: &Settings,
    alone: &CdPhase,
    fan: &CdPhase,
    old: &CdPhase,
    bt: &BtPhase,
    wall: Duration,
    load: (String, String),
) {
    let size = s.size as f64;
    let a = alone.makespan;
    let a_wan = alone.master_done().unwrap_or(f64::NAN);
    let mut o = String::new();
    let line = "=".repeat(100);
    let _ = writeln!(o, "\n{line}\noffice benchmark (issue 10): summary");
    let _ = writeln!(
        o,
        "settings: {} hosts, each a `contentdist agent` process in its own network namespace; content {} MiB ({} B, one file); \
         WAN {} Mbit/s (tbf on the origin's egress; nginx 1.22, sendfile); LAN {}; \
         contentdist: P2PEnabled {:#x} ({}), other settings default but the test harness's \
         (LogLevel debug, OriginStallTimeoutSecs 2, OriginConnectTimeoutSecs 2, OriginRetries 3); jobs submitted together (`get --no-wait` from {} threads); \
         makespan = max over hosts of (submission + the job's elapsed_ms), from the first submission; \
         BitTorrent: aria2c on every host (DHT and LPD off, PEX on, seeding until all are done, {} KiB pieces), \
         opentracker (whitelist mode) on host 0, the origin URL as web seed (url-list) in host 0's .torrent only, \
         makespan from the first aria2c start to the last completion hook; {}",
        s.hosts,
        s.size / MIB,
        s.size,
        s.wan_kbit / 1000,
        s.lan_words(),
        s.p2p_enabled,
        if s.p2p_enabled & 0x60 != 0 {
            "HTTP(S) peer copy"
        } else {
            "SMB peer copy"
        },
        s.hosts,
        PIECE_LEN / 1024,
        bt.tools
    );
    let _ = writeln!(
        o,
        "{:<34} {:>10} {:>8} {:>16} {:>22} {:>8} {:>13}",
        "phase",
        "makespan",
        "/alone",
        "origin/content",
        "origin download done",
        "/alone",
        "from origin"
    );
    let _ = writeln!(
        o,
        "{:<34} {:>8.2} s {:>8.3} {:>15.4}x {:>20.2} s {:>8.3} {:>13}",
        "1 host alone",
        a,
        1.0,
        alone.origin_content as f64 / size,
        a_wan,
        1.0,
        format!("{:?}", alone.downloaders())
    );
    for (p, label) in [
        (fan, "FanOut (0x2070, default)"),
        (old, "no FanOut (0x2030)"),
    ] {
        let m = p.master_done().unwrap_or(f64::NAN);
        let _ = writeln!(
            o,
            "{:<34} {:>8.2} s {:>8.3} {:>15.4}x {:>20.2} s {:>8.3} {:>13}",
            format!("{} hosts, {label}", s.hosts),
            p.makespan,
            p.makespan / a,
            p.origin_content as f64 / size,
            m,
            m / a_wan,
            format!("{:?}", p.downloaders())
        );
    }
    let _ = writeln!(
        o,
        "{:<34} {:>8.2} s {:>8.3} {:>15.4}x {:>20.2} s {:>8.3} {:>13}",
        format!("{} hosts, BitTorrent", s.hosts),
        bt.makespan,
        bt.makespan / a,
        bt.origin_bytes as f64 / size,
        bt.done_at[0],
        bt.done_at[0] / a_wan,
        "[0] web seed"
    );
    let _ = writeln!(
        o,
        "(origin download done: when the master's job, or the web-seed host's download, was complete; origin/content counts \
         content bytes only, manifests excluded: {} B per contentdist phase with {} hosts)",
        fan.origin_other, s.hosts
    );
    let _ = writeln!(
        o,
        "ratios: FanOut / alone = {:.3} (goal <= 1.10); no FanOut / alone = {:.3} (issue: 1.51); \
         FanOut / BitTorrent = {:.3} (goal <= 0.95); no FanOut / BitTorrent = {:.3}",
        fan.makespan / a,
        old.makespan / a,
        fan.makespan / bt.makespan,
        old.makespan / bt.makespan
    );
    let _ = writeln!(
        o,
        "origin bytes: alone {}, FanOut {}, no FanOut {}, BitTorrent {} in {} request(s) (content {} B; nominal WAN time {:.2} s)",
        alone.origin_content,
        fan.origin_content,
        old.origin_content,
        bt.origin_bytes,
        bt.origin_requests,
        s.size,
        s.wan_seconds()
    );
    let peers = |p: &CdPhase| p.hosts.iter().map(|h| h.from_peers).sum::<u64>();
    let failures = |p: &CdPhase| p.hosts.iter().map(|h| h.holder_failures).sum::<usize>();
    let dropped = |p: &CdPhase| p.hosts.iter().map(|h| h.holders_dropped).sum::<usize>();
    let _ = writeln!(
        o,
        "correctness: every delivery (1 + 3 x {} hosts) has the content's BLAKE3; FanOut: peers copied {} B, \
         non-master hosts served {} B (> 0), master served {} B; holder copy failures / holders dropped: \
         FanOut {} / {}, no FanOut {} / {}; elected masters at the end: FanOut {:?}, no FanOut {:?}",
        s.hosts,
        peers(fan),
        fan.served_by_non_masters(),
        fan.hosts.iter().filter(|h| h.from_origin > 0).map(|h| h.served).sum::<u64>(),
        failures(fan),
        dropped(fan),
        failures(old),
        dropped(old),
        fan.elected(),
        old.elected()
    );
    let elections = |p: &CdPhase| {
        let mut j: Vec<f64> = p.hosts.iter().filter_map(|h| h.joined).collect();
        j.sort_by(f64::total_cmp);
        let terms: Vec<u64> = p.hosts.iter().map(|h| h.term).collect();
        format!(
            "{:.2}..{:.2} s (term {}..{}, datagrams overflowed {})",
            j.first().copied().unwrap_or(f64::NAN),
            j.last().copied().unwrap_or(f64::NAN),
            terms.iter().min().unwrap_or(&0),
            terms.iter().max().unwrap_or(&0),
            p.hosts.iter().map(|h| h.overflowed).sum::<u64>()
        )
    };
    let _ = writeln!(
        o,
        "elections, from a job's arrival to its agent knowing the master: alone {}; FanOut {}; no FanOut {}",
        elections(alone),
        elections(fan),
        elections(old)
    );
    let _ = writeln!(
        o,
        "machine: load average {} at the start, {} at the end; wall time of the benchmark {:.1} s\n{line}",
        load.0,
        load.1,
        wall.as_secs_f64()
    );
    println!("{o}");
}

/// The first three fields of /proc/loadavg: the machine is shared, say how busy.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
