//! The manifest crosses the WAN once per subnet: followers take it from their master
//! and check it against the content hash the origin publishes beside it
//! (`content-hash`); a manifest that does not carry that hash is refused and taken
//! from the origin, and so is every manifest of a publication without the file.

mod support;

use std::time::{Duration, Instant};

use support::nginx::Nginx;
use support::subnet::{content_bytes, publish, slow_origin, Subnet, MIB};
use support::{assert_trees_equal, wait_until, with_timeout, TestDir};

const AGENTS: usize = 4;
const HASH_FILE: &str = "origin/OSD00001/1/content-hash";

/// How many times the origin served `name` of OSD00001/1 (any status).
fn requests(nginx: &Nginx, name: &str) -> usize {
    let path = format!("/OSD00001/1/{name}");
    nginx.access_log().iter().filter(|e| e.path == path).count()
}

/// Four agents get OSD00001/1 together; every delivery is checked.
fn office(t: &TestDir, nginx: &Nginx, size: u64) -> Subnet {
    let net = Subnet::start(t, &nginx.url(), &["P2PEnabled = 0x28"; AGENTS]);
    net.submit_all(t, 0..AGENTS);
    let all: Vec<usize> = (0..AGENTS).collect();
    net.wait_done(&all, Duration::from_secs(90));
    for i in 0..AGENTS {
        assert_trees_equal(t.join("src"), t.join(format!("dest{i}")));
    }
    // Every agent's content came once over the WAN, whatever the manifests did.
    nginx.wait_access_log(AGENTS + 2, Duration::from_secs(5));
    assert_eq!(content_bytes(nginx), size);
    net
}

/// The agents whose log has a line containing `needle`.
fn logging(net: &Subnet, needle: &str) -> Vec<usize> {
    (0..AGENTS)
        .filter(|&i| net.agents[i].log().contains(needle))
        .collect()
}

#[test]
fn followers_take_the_manifest_from_their_master_and_the_origin_serves_it_once() {
    with_timeout(Duration::from_secs(150), || {
        let t = TestDir::new();
        let size = publish(&t, 8 * MIB);
        let hash = std::fs::read_to_string(t.join(HASH_FILE)).expect("publish writes content-hash");
        assert_eq!(hash.trim().len(), 64, "{hash:?}");
        let nginx = slow_origin(&t, 16 * MIB);
        let net = office(&t, &nginx, size);
        assert_eq!(
            requests(&nginx, "manifest.json"),
            1,
            "{:#?}",
            nginx.access_log()
        );
        // Every follower asked; the master may have been elected before it did.
        let hashes = requests(&nginx, "content-hash");
        assert!((AGENTS - 1..=AGENTS).contains(&hashes), "{hashes}");
        let master = net.master().expect("a master");
        let took = logging(&net, "manifest taken from the master, content hash checked");
        let followers: Vec<usize> = (0..AGENTS).filter(|&i| i != master).collect();
        assert_eq!(took, followers);
    });
}

#[test]
fn a_manifest_without_the_origins_content_hash_is_refused_and_taken_from_the_origin() {
    with_timeout(Duration::from_secs(150), || {
        let t = TestDir::new();
        let size = publish(&t, 4 * MIB);
        // The origin now says another content hash: what a master serving a changed
        // manifest looks like to its followers.
        std::fs::write(t.join(HASH_FILE), format!("{}\n", "0f".repeat(32))).unwrap();
        let nginx = slow_origin(&t, 16 * MIB);
        let net = office(&t, &nginx, size);
        assert_eq!(requests(&nginx, "manifest.json"), AGENTS);
        let master = net.master().expect("a master");
        let refused = logging(
            &net,
            "the master's manifest does not have the expected content hash",
        );
        let followers: Vec<usize> = (0..AGENTS).filter(|&i| i != master).collect();
        assert_eq!(refused, followers);
        assert!(logging(&net, "manifest taken from the master").is_empty());
    });
}

#[test]
fn without_a_content_hash_on_the_origin_every_agent_takes_the_manifest_from_it() {
    with_timeout(Duration::from_secs(150), || {
        let t = TestDir::new();
        let size = publish(&t, 4 * MIB);
        std::fs::remove_file(t.join(HASH_FILE)).unwrap();
        let nginx = slow_origin(&t, 16 * MIB);
        let net = office(&t, &nginx, size);
        assert_eq!(requests(&nginx, "manifest.json"), AGENTS);
        assert!(logging(&net, "manifest taken from the master").is_empty());
        assert!(logging(&net, "no content hash from the origin").is_empty());
    });
}

#[test]
fn a_job_cancelled_while_its_master_fetches_the_manifest_ends_at_once() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        // 32 MiB in 128 KiB blocks: a manifest of some 20 KB, which the origin hands
        // out at 1 KiB/s, so the master is still fetching it long after the election.
        publish(&t, 32 * MIB);
        let nginx = slow_origin(&t, 1024);
        let net = Subnet::start(
            &t,
            &nginx.url(),
            &[
                "P2PEnabled = 0x28\nP2PElectionWeight = 99",
                "P2PEnabled = 0x28",
            ],
        );
        net.agents[0].submit("OSD00001", 1, &t.join("dest0"));
        assert!(wait_until(Duration::from_secs(10), || net.agents[0].is_master()));
        net.agents[1].submit("OSD00001", 1, &t.join("dest1"));
        // The follower knows its master and asks it for the manifest (not there yet).
        assert!(
            wait_until(Duration::from_secs(10), || net.agents[1]
                .log()
                .contains("following master")),
            "{}",
            net.agents[1].log()
        );
        let id = net.job(1)["id"].to_string();
        let asked = Instant::now();
        let out = net.agents[1].cli(&["jobs", "cancel", &id]);
        assert!(out.status.success(), "{out:?}");
        // The job's task ends (and records its end) at once, not after the wait.
        assert!(
            wait_until(Duration::from_secs(10), || net.agents[1].log().lines().any(
                |l| l.contains("FinalStats") && l.contains("outcome=\"cancelled\"")
            )),
            "{:#}\n{}",
            net.job(1),
            net.agents[1].log()
        );
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
        // It fetched no manifest of its own from the origin.
        assert!(
            !net.agents[1]
                .log()
                .contains("manifest request answered remote=\"origin\""),
            "{}",
            net.agents[1].log()
        );
    });
}
