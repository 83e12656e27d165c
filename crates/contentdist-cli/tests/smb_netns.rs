//! Peer copy over SMB between real agents in network namespaces (each host its own
//! smbd on the product's port 445; smbd listens only on an interface's addresses,
//! so these tests need namespaces rather than 127.0.0.x): the product's default
//! `P2PEnabled = 0x9`, a preboot peer, the fall-back of `0x61` from HTTPS to HTTP
//! to SMB as the master's listeners go away, the master's smbd killed mid-copy,
//! peers logging on with their machine accounts, and FanOut over SMB.
//! Root and Samba only; elsewhere each test says it skipped.

mod support;

use std::time::Duration;

use support::netns::skip_unless_root;
use support::office::{content_bytes, Office, OfficeOptions};
use support::{assert_trees_equal, wait_until, with_timeout, TestDir};

const MIB: u64 = 1024 * 1024;

fn skip() -> bool {
    if skip_unless_root() {
        return true;
    }
    if !std::path::Path::new("/usr/sbin/smbd").exists() {
        println!("skipped: needs smbd (Debian's samba package)");
        return true;
    }
    false
}

/// Bytes host `i`'s job received from peers over `protocol` (`http`, `https`, `smb`).
fn from_peers(office: &Office, i: usize, protocol: &str) -> u64 {
    office.job(i)["bytes_from_peers_by_protocol"][protocol]
        .as_u64()
        .unwrap_or(0)
}

/// The value of `series` in host `i`'s metrics (read with curl in its namespace).
fn metric(office: &Office, i: usize, series: &str) -> u64 {
    let url = office.status(i)["metrics"].as_str().unwrap().to_string();
    let out = office
        .net
        .command(office.net.host_ns(i), "curl")
        .args(["-sS", "--max-time", "10", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in host {i}'s metrics:\n{text}"))
        .parse::<f64>()
        .unwrap() as u64
}

/// Content bytes the smbds of `hosts` served (their metrics).
fn served_smb(office: &Office, hosts: &[usize]) -> u64 {
    hosts
        .iter()
        .map(|&i| {
            metric(
                office,
                i,
                r#"contentdist_served_bytes_total{protocol="smb"}"#,
            )
        })
        .sum()
}

/// The master (waiting for the election), and the others.
fn roles(office: &Office) -> (usize, Vec<usize>) {
    let mut m = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            m = office.master();
            m.is_some()
        }),
        "no master elected"
    );
    let m = m.unwrap();
    (m, (0..office.agents.len()).filter(|&i| i != m).collect())
}

/// Check every delivered tree, and that the WAN carried the content once.
fn check_delivered_once(office: &Office, t: &TestDir, nginx: &support::netns::NsNginx, size: u64) {
    for i in 0..office.agents.len() {
        assert_trees_equal(t.join("src"), t.join(format!("dest{i}")));
    }
    nginx.wait_access_log(2, Duration::from_secs(5));
    assert_eq!(
        content_bytes(nginx),
        size,
        "each block crossed the WAN once"
    );
}

/// Submit the content on every host, wait for all, check the deliveries and that
/// every peer took all of it over SMB; returns the master and the peers.
fn copy_everywhere_over_smb(
    office: &Office,
    t: &TestDir,
    nginx: &support::netns::NsNginx,
    size: u64,
) -> (usize, Vec<usize>) {
    let all: Vec<usize> = (0..office.agents.len()).collect();
    for &i in &all {
        office.submit(t, i);
    }
    let (m, peers) = roles(office);
    office.wait_done(&all);
    check_delivered_once(office, t, nginx, size);
    for &i in &peers {
        let job = office.job(i);
        assert_eq!(
            job["final_stats"]["bytes_from_peers"]["smb"], size,
            "host {i}: {job}"
        );
    }
    (m, peers)
}

#[test]
fn the_default_0x9_copies_over_smb_and_a_preboot_peer_copies_without_serving() {
    if skip() {
        return;
    }
    with_timeout(Duration::from_secs(240), || {
        let t = TestDir::new();
        // The product's default P2PEnabled (SMB, net literal names); host 3 is a
        // preboot agent. 40 Mbit/s WAN, 12 MiB: the master needs ~2.5 s.
        let preboot = |i: usize| {
            if i == 3 {
                "Preboot = true".to_string()
            } else {
                String::new()
            }
        };
        let (office, nginx, size) = Office::start(
            &t,
            OfficeOptions {
                hosts: 4,
                wan_kbit: 40_000,
                size: 12 * MIB,
                p2p_enabled: 0x9,
                extra: &preboot,
            },
        );
        for i in 0..4 {
            office.submit(&t, i);
        }
        let (m, peers) = roles(&office);
        assert_ne!(m, 3, "a preboot agent became master");
        office.wait_done(&[0, 1, 2, 3]);
        check_delivered_once(&office, &t, &nginx, size);
        // The master's share: in status, and in the log at start.
        let s = office.status(m);
        assert_eq!(s["smb"]["state"], "running", "{s}");
        // Where it listens (ListenAddress 0.0.0.0: every address, as HTTP does).
        assert_eq!(s["smb"]["url"], "smb://0.0.0.0:445/contentdist", "{s}");
        assert_eq!(s["smb"]["signing"], "mandatory", "{s}");
        assert!(s["listeners"].to_string().contains("smb://"), "{s}");
        assert!(office.agents[m].log().contains("smb://"));
        for &i in &peers {
            let job = office.job(i);
            let stats = &job["final_stats"]["bytes_from_peers"];
            assert_eq!(stats["smb"], size, "host {i}: {job}");
            assert_eq!(job["bytes_from_origin"], 0, "host {i}: {job}");
            let log = office.agents[i].log();
            assert!(log.contains("protocol=SMB"), "host {i}:\n{log}");
        }
        // The metrics count SMB both ways: what each peer received, and what the
        // smbds read for them: three copies and their have.bin polls, from the
        // master and (FanOut, on by default) the peers that serve (not preboot).
        assert_eq!(
            metric(
                &office,
                peers[0],
                r#"contentdist_received_bytes_total{source="peer",protocol="smb"}"#
            ),
            size
        );
        let mut served = 0;
        assert!(
            wait_until(Duration::from_secs(15), || {
                served = served_smb(&office, &[0, 1, 2]);
                served >= 3 * size
            }),
            "the smbds served {served} bytes for 3 copies of {size}"
        );
        assert!(served < 3 * size + MIB, "{served}");
        assert!(
            served_smb(&office, &[m]) >= size,
            "each block left the master"
        );
        // The README's checks by hand: the P2P account from `status --p2p-account`,
        // then smbclient lists the shares and the content's files.
        let out = office.agents[m].cli(&["status", "--p2p-account", "--json"]);
        assert!(out.status.success(), "{out:?}");
        let account: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let user = format!(
            "{}%{}",
            account["user"].as_str().unwrap(),
            account["password"].as_str().unwrap()
        );
        let host = office.net.host_addr(m).to_string();
        let smbclient = |args: &[&str]| {
            let out = office
                .net
                .command(office.net.host_ns(peers[0]), "smbclient")
                .args(["-p", "445", "-m", "SMB3", "-U", &user])
                .args(args)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "smbclient {args:?}: {text}");
            text
        };
        let shares = smbclient(&["-L", &format!("//{host}")]);
        assert!(shares.contains("contentdist"), "{shares}");
        let files = smbclient(&[&format!("//{host}/contentdist"), "-c", "ls APP00001/2/*"]);
        assert!(
            files.contains("manifest.json") && files.contains("have.bin"),
            "{files}"
        );
        // The preboot agent has no account to give.
        let out = office.agents[3].cli(&["status", "--p2p-account"]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no P2P account"),
            "{out:?}"
        );
        // The preboot agent copied and serves nothing: no smbd, only the election's
        // socket.
        let s = office.status(3);
        assert!(s["smb"].is_null(), "a preboot agent runs smbd: {s}");
        let listeners = s["listeners"].to_string();
        assert!(
            !listeners.contains("smb://") && !listeners.contains("http"),
            "a preboot agent serves: {s}"
        );
    });
}

#[test]
fn with_0x61_peers_move_from_https_to_http_to_smb_as_the_masters_listeners_go() {
    if skip() {
        return;
    }
    with_timeout(Duration::from_secs(300), || {
        let t = TestDir::new();
        // 16 Mbit/s WAN, 48 MiB: the master downloads for ~25 s while the peers
        // follow it. FanOut off (SpecialNetShare 0x2030): peers copy from the master
        // only, so each of its listeners is all they have.
        let no_fan_out = |_| "SpecialNetShare = 0x2030".to_string();
        let (office, nginx, size) = Office::start(
            &t,
            OfficeOptions {
                hosts: 3,
                wan_kbit: 16_000,
                size: 48 * MIB,
                p2p_enabled: 0x61,
                extra: &no_fan_out,
            },
        );
        for i in 0..3 {
            office.submit(&t, i);
        }
        let (m, peers) = roles(&office);
        let copying = |protocol: &str, at_least: u64| {
            let ok = wait_until(Duration::from_secs(60), || {
                peers
                    .iter()
                    .all(|&i| from_peers(&office, i, protocol) >= at_least)
            });
            assert!(
                ok,
                "peers did not copy {at_least} bytes over {protocol}: {:#?}",
                peers.iter().map(|&i| office.job(i)).collect::<Vec<_>>()
            );
        };
        copying("https", 2 * MIB);
        // The master's HTTPS listener goes away (connections reset, new ones refused).
        office.nft(
            m,
            "table inet cdtest {\n chain input {\n  type filter hook input priority -10;\n  tcp dport 5443 reject with tcp reset\n }\n}\n",
        );
        copying("http", MIB);
        // Then its HTTP listener.
        office.nft(
            m,
            "add rule inet cdtest input tcp dport 5080 reject with tcp reset\n",
        );
        copying("smb", MIB);
        office.wait_done(&[0, 1, 2]);
        check_delivered_once(&office, &t, &nginx, size);
        for &i in &peers {
            let log = office.agents[i].log();
            for step in [
                "peer copy over HTTPS failed; trying HTTP",
                "peer copy over HTTP failed; trying SMB",
                "protocol=HTTPS",
                "protocol=HTTP ",
                "protocol=SMB",
            ] {
                assert!(log.contains(step), "host {i} did not log {step:?}:\n{log}");
            }
            let job = office.job(i);
            let by = &job["final_stats"]["bytes_from_peers"];
            println!("host {i}: from peers {by}");
            let total: u64 = ["https", "http", "smb"]
                .iter()
                .map(|p| by[p].as_u64().unwrap())
                .sum();
            // What each protocol carried adds up to the content, give or take the
            // blocks in flight when a connection was reset (received, not kept).
            assert!((size..size + 4 * MIB).contains(&total), "host {i}: {job}");
        }
    });
}

#[test]
fn a_masters_smbd_killed_mid_copy_is_restarted_and_the_peers_resume() {
    if skip() {
        return;
    }
    with_timeout(Duration::from_secs(300), || {
        let t = TestDir::new();
        // SMB only; 16 Mbit/s WAN, 32 MiB: ~17 s of download to follow.
        let (office, nginx, size) = Office::start(
            &t,
            OfficeOptions {
                hosts: 3,
                wan_kbit: 16_000,
                size: 32 * MIB,
                p2p_enabled: 0x9,
                extra: &support::office::no_extra,
            },
        );
        for i in 0..3 {
            office.submit(&t, i);
        }
        let (m, peers) = roles(&office);
        assert!(wait_until(Duration::from_secs(60), || peers
            .iter()
            .all(|&i| from_peers(&office, i, "smb") >= 4 * MIB)));
        let s = office.status(m);
        let pid = s["smb"]["pid"].as_u64().expect("smbd's pid") as i32;
        // SAFETY: kill(2) on a pid read from the master's status: its smbd.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        assert!(
            wait_until(Duration::from_secs(30), || {
                let s = office.status(m);
                s["smb"]["restarts"].as_u64() >= Some(1) && s["smb"]["state"] == "running"
            }),
            "smbd was not started again: {}",
            office.status(m)
        );
        office.wait_done(&[0, 1, 2]);
        check_delivered_once(&office, &t, &nginx, size);
        for &i in &peers {
            let job = office.job(i);
            let smb = job["final_stats"]["bytes_from_peers"]["smb"]
                .as_u64()
                .unwrap();
            println!("host {i}: {smb} bytes over SMB for {size}");
            let log = office.agents[i].log();
            assert!(
                log.contains("copy from master failed; waiting for the election"),
                "host {i} did not see smbd die:\n{log}"
            );
            // Verified blocks are not fetched again: only what was in flight when
            // smbd died (at most the READ window of 8 MiB) was received twice.
            assert!((size..size + 8 * MIB).contains(&smb), "host {i}: {job}");
            assert_eq!(job["bytes_from_origin"], 0, "host {i}: {job}");
        }
    });
}

#[test]
fn peers_set_for_machine_accounts_log_on_to_the_masters_share_with_them() {
    if skip() {
        return;
    }
    if contentdist::smb::machines::find_nss_wrapper().is_none() {
        println!("skipped: needs libnss-wrapper");
        return;
    }
    with_timeout(Duration::from_secs(240), || {
        let t = TestDir::new();
        // The default P2PEnabled 0x9 and AuthenticatedUsers 1; every host has its
        // own name, the site's machine key, and SpecialNetShare 0x80 on top of the
        // default 0x2070.
        let machine = |i: usize| {
            format!(
                "HostName = \"branch-pc{i}\"\nMachineKey = \"the site machine key, 16+ chars\"\nSpecialNetShare = 0x20F0"
            )
        };
        let (office, nginx, size) = Office::start(
            &t,
            OfficeOptions {
                hosts: 3,
                wan_kbit: 40_000,
                size: 12 * MIB,
                p2p_enabled: 0x9,
                extra: &machine,
            },
        );
        let (m, peers) = copy_everywhere_over_smb(&office, &t, &nginx, size);
        for &i in &peers {
            let log = office.agents[i].log();
            let line = log
                .lines()
                .find(|l| l.contains("copying from the master"))
                .unwrap_or_else(|| panic!("host {i} did not copy from the master:\n{log}"));
            assert!(
                line.contains("protocol=SMB")
                    && line.contains(&format!("account=\"BRANCH-PC{i}$\"")),
                "host {i}: {line}"
            );
        }
        // The master registered the hosts it heard (the others, at least).
        let s = office.status(m);
        let accounts = &s["smb"]["machine_accounts"];
        assert!(accounts["registered"].as_u64().unwrap() >= 2, "{s}");
        assert!(accounts["error"].is_null(), "{s}");
        assert!(
            office.agents[m]
                .log()
                .contains("machine accounts registered"),
            "{}",
            office.agents[m].log()
        );
    });
}

#[test]
fn with_fan_out_over_smb_peers_copy_from_each_other_not_only_from_the_master() {
    if skip() {
        return;
    }
    with_timeout(Duration::from_secs(300), || {
        let t = TestDir::new();
        // The defaults (P2PEnabled 0x9, SpecialNetShare 0x2070: FanOut) and a site
        // key, so the holders' P2P keys travel encrypted. 5 hosts, 40 Mbit/s WAN,
        // 24 MiB: the master needs ~5 s, and its peers follow it. The fifth host
        // starts when the others are done.
        let site = |_: usize| "SiteKey = \"the site election key, 16+\"".to_string();
        let hosts = 5;
        let (office, nginx, size) = Office::start(
            &t,
            OfficeOptions {
                hosts,
                wan_kbit: 40_000,
                size: 24 * MIB,
                p2p_enabled: 0x9,
                extra: &site,
            },
        );
        let all: Vec<usize> = (0..hosts).collect();
        let late = hosts - 1;
        let first: Vec<usize> = (0..late).collect();
        for &i in &first {
            office.submit(&t, i);
        }
        let (m, _) = roles(&office);
        office.wait_done(&first);
        let peers: Vec<usize> = first.iter().copied().filter(|&i| i != m).collect();
        // Every copy was served once, by the master or a peer; the peers served
        // some of them: the master's share was not the only source.
        let copies = peers.len() as u64 * size;
        let mut served = 0;
        assert!(
            wait_until(Duration::from_secs(15), || {
                served = served_smb(&office, &all);
                served >= copies
            }),
            "the smbds served {served} bytes for {copies}"
        );
        let by_master = served_smb(&office, &[m]);
        let by_peers = served_smb(&office, &peers);
        println!("served over SMB: master {by_master}, peers {by_peers}, copies {copies}");
        assert!(
            by_master >= size,
            "each block left the master once at least"
        );
        assert!(
            by_peers >= 4 * MIB,
            "the peers served {by_peers} bytes: FanOut over SMB did not happen"
        );
        assert!(
            by_master + by_peers < copies + 2 * MIB,
            "{by_master} + {by_peers}"
        );
        // The late host heard none of the holders while they copied, and they are
        // silent now: it learns of them by asking, and copies from them too.
        office.submit(&t, late);
        office.wait_done(&[late]);
        check_delivered_once(&office, &t, &nginx, size);
        let job = office.job(late);
        assert_eq!(job["final_stats"]["bytes_from_peers"]["smb"], size, "{job}");
        let copies = copies + size;
        assert!(
            wait_until(Duration::from_secs(15), || {
                served = served_smb(&office, &all);
                served >= copies
            }),
            "the smbds served {served} bytes for {copies}"
        );
        let late_by_peers = served_smb(&office, &peers) - by_peers;
        println!("the late copy: {late_by_peers} bytes from the peers' smbds");
        assert!(
            late_by_peers >= size / 4,
            "the late host took {late_by_peers} bytes from the finished peers"
        );
        for &i in &all {
            let log = office.agents[i].log();
            assert!(!log.contains("holder dropped"), "host {i}:\n{log}");
        }
    });
}
