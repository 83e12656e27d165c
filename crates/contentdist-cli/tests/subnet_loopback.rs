//! A subnet of real agents on 127.0.0.x: one master per content, peers copying
//! from it while it downloads, failover when it dies, preboot and protocol rules.
//! Every agent binds the same UDP port (with address/port reuse) and broadcasts to
//! 127.255.255.255; each test picks its own free port, so tests run side by side.

mod support;

use std::time::Duration;

use support::subnet::{content_bytes, publish, slow_origin, Subnet, MIB};
use support::{assert_trees_equal, wait_until, with_timeout, TestDir};

#[test]
fn eight_agents_one_master_every_block_crosses_the_wan_once() {
    with_timeout(Duration::from_secs(180), || {
        let t = TestDir::new();
        let size = publish(&t, 16 * MIB);
        let nginx = slow_origin(&t, 8 * MIB);
        let net = Subnet::start(&t, &nginx.url(), &["P2PEnabled = 0x28"; 8]);
        net.submit_all(&t, 0..8);
        net.wait_done(&(0..8).collect::<Vec<_>>(), Duration::from_secs(120));
        for i in 0..8 {
            assert_trees_equal(t.join("src"), t.join(format!("dest{i}")));
        }
        let jobs: Vec<_> = (0..8).map(|i| net.job(i)).collect();
        let from_origin: Vec<u64> = jobs
            .iter()
            .map(|j| j["bytes_from_origin"].as_u64().unwrap())
            .collect();
        let masters = from_origin.iter().filter(|&&b| b > 0).count();
        assert_eq!(masters, 1, "exactly one agent downloads: {from_origin:?}");
        for j in &jobs {
            let o = j["bytes_from_origin"].as_u64().unwrap();
            let p = j["bytes_from_peers"].as_u64().unwrap();
            assert!(o == size && p == 0 || o == 0 && p == size, "{j}");
        }
        let wan = nginx.wait_access_log(2, Duration::from_secs(5));
        assert!(!wan.is_empty());
        let served = content_bytes(&nginx);
        assert_eq!(
            served, size,
            "the origin served each byte once (manifests aside)"
        );
        assert!(net.master().is_some());
    });
}

#[test]
fn killing_the_master_half_way_costs_at_most_five_percent_more_wan() {
    with_timeout(Duration::from_secs(240), || {
        let t = TestDir::new();
        let size = publish(&t, 24 * MIB);
        let nginx = slow_origin(&t, 4 * MIB);
        let mut net = Subnet::start(&t, &nginx.url(), &["P2PEnabled = 0x28"; 6]);
        net.submit_all(&t, 0..6);
        let mut master = None;
        assert!(wait_until(Duration::from_secs(60), || {
            master = net.master();
            master.is_some_and(|m| net.job(m)["bytes_verified"].as_u64().unwrap_or(0) >= size / 2)
        }));
        let m = master.unwrap();
        net.agents[m].kill9();
        let rest: Vec<usize> = (0..6).filter(|&i| i != m).collect();
        net.wait_done(&rest, Duration::from_secs(150));
        for &i in &rest {
            assert_trees_equal(t.join("src"), t.join(format!("dest{i}")));
        }
        let served = content_bytes(&nginx);
        assert!(
            served as f64 <= size as f64 * 1.05,
            "origin served {served} for {size}: more than 5% extra"
        );
        let new_master = net.master().expect("a new master");
        assert_ne!(new_master, m);
    });
}

#[test]
fn a_preboot_agent_never_becomes_master_and_copies_from_peers() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        let size = publish(&t, 4 * MIB);
        let nginx = slow_origin(&t, 8 * MIB);
        // The preboot agent asks first, holds nothing, yet must not win.
        let net = Subnet::start(
            &t,
            &nginx.url(),
            &[
                "P2PEnabled = 0x28\nPreboot = true",
                "P2PEnabled = 0x28",
                "P2PEnabled = 0x28",
            ],
        );
        net.submit_all(&t, 0..1);
        std::thread::sleep(Duration::from_millis(300));
        net.submit_all(&t, 1..3);
        net.wait_done(&[0, 1, 2], Duration::from_secs(90));
        let pre = net.job(0);
        assert_eq!(pre["bytes_from_origin"], 0, "{pre}");
        assert_eq!(pre["bytes_from_peers"].as_u64().unwrap(), size, "{pre}");
        assert_ne!(net.master(), Some(0));
        // Its manifest came from the master too: the origin served one.
        assert!(
            net.agents[0]
                .log()
                .contains("manifest taken from the master, content hash checked"),
            "{}",
            net.agents[0].log()
        );
        let manifests = nginx
            .access_log()
            .iter()
            .filter(|e| e.path.ends_with("/manifest.json"))
            .count();
        assert_eq!(manifests, 1);
        // It serves nobody: no peer-copy listener at all.
        let listeners = net.status(0)["listeners"].to_string();
        assert!(!listeners.contains("http://"), "{listeners}");
        assert_trees_equal(t.join("src"), t.join("dest0"));
    });
}

#[test]
fn a_protocol_mismatch_is_reported_by_name_and_code() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        publish(&t, MIB);
        let nginx = slow_origin(&t, 64 * MIB);
        let net = Subnet::start(
            &t,
            &nginx.url(),
            &["P2PEnabled = 0x20", "P2PEnabled = 0x40"],
        );
        net.submit_all(&t, 0..1);
        net.wait_done(&[0], Duration::from_secs(30));
        let r = net.agents[1].get("OSD00001", 1, &t.join("dest1"), &[]);
        assert_eq!(r.code(), 0xCD0B, "{r:?}");
        let msg = r.json["message"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains("HTTPS") && msg.contains("HTTP"), "{msg}");
        assert!(r.stderr.contains("PROTOCOL_MISMATCH"), "{}", r.stderr);
    });
}

#[test]
fn status_shows_elections_and_listeners() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        publish(&t, MIB);
        let nginx = slow_origin(&t, 64 * MIB);
        let net = Subnet::start(&t, &nginx.url(), &["P2PEnabled = 0x28"]);
        net.submit_all(&t, 0..1);
        net.wait_done(&[0], Duration::from_secs(30));
        // 1 MiB from a local origin can be in before the election window ends (the
        // head start): the agent is master once it ends.
        let master = wait_until(Duration::from_secs(10), || {
            net.status(0)["elections"][0]["state"] == "master"
        });
        assert!(master, "{}", net.status(0));
        let s = net.status(0);
        let e = &s["elections"][0];
        assert_eq!(e["content"], "OSD00001/1", "{s}");
        assert_eq!(e["state"], "master", "{s}");
        let listeners = s["listeners"].to_string();
        assert!(
            listeners.contains("http://127.0.") && listeners.contains("udp://"),
            "{listeners}"
        );
        let text = net.agents[0].cli(&["status"]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("OSD00001/1"), "{text}");
    });
}

#[test]
fn agents_without_the_site_key_are_ignored() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        let size = publish(&t, 2 * MIB);
        let nginx = slow_origin(&t, 32 * MIB);
        let net = Subnet::start(
            &t,
            &nginx.url(),
            &[
                "P2PEnabled = 0x28\nSiteKey = \"branch-office-key-0001\"",
                "P2PEnabled = 0x28\nSiteKey = \"another-site-key-9999\"",
            ],
        );
        net.submit_all(&t, 0..1);
        net.wait_done(&[0], Duration::from_secs(30));
        net.submit_all(&t, 1..2);
        net.wait_done(&[1], Duration::from_secs(60));
        // B could not authenticate A's messages: it elected itself and went to the origin.
        assert_eq!(net.job(1)["bytes_from_origin"].as_u64().unwrap(), size);
        assert_eq!(net.job(1)["bytes_from_peers"], 0);
        let dropped = net.status(1)["election_datagrams_dropped"]
            .as_u64()
            .unwrap_or(0);
        assert!(dropped > 0, "{}", net.status(1));
    });
}

#[test]
fn machine_accounts_are_accepted_with_authenticated_users_1_and_refused_with_2() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        let size = publish(&t, 2 * MIB);
        let nginx = slow_origin(&t, 32 * MIB);
        let key = "MachineKey = \"site machine secret 0042\"";
        let machine = format!("P2PEnabled = 0x28\nSpecialNetShare = 0x20F0\n{key}");
        let net = Subnet::start(
            &t,
            &nginx.url(),
            &[
                &format!("P2PEnabled = 0x28\nAuthenticatedUsers = 1\n{key}"),
                &machine,
            ],
        );
        net.submit_all(&t, 0..1);
        net.wait_done(&[0], Duration::from_secs(30));
        net.submit_all(&t, 1..2);
        net.wait_done(&[1], Duration::from_secs(60));
        assert_eq!(net.job(1)["bytes_from_peers"].as_u64().unwrap(), size);

        // A master that takes the P2P account only refuses the machine account.
        let t2 = TestDir::new();
        publish(&t2, MIB);
        let nginx2 = slow_origin(&t2, 32 * MIB);
        let net2 = Subnet::start(
            &t2,
            &nginx2.url(),
            &[
                &format!("P2PEnabled = 0x28\nAuthenticatedUsers = 2\n{key}"),
                &machine,
            ],
        );
        net2.submit_all(&t2, 0..1);
        net2.wait_done(&[0], Duration::from_secs(30));
        let r = net2.agents[1].get("OSD00001", 1, &t2.join("dest1"), &[]);
        assert_eq!(r.code(), 0xCD04, "{r:?}");
        assert!(
            net2.agents[0].log().contains("403") || net2.agents[0].log().contains("refus"),
            "{}",
            net2.agents[0].log()
        );
    });
}

#[test]
fn in_an_inhibited_subnet_every_agent_is_its_own_master() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        let size = publish(&t, 2 * MIB);
        let nginx = slow_origin(&t, 32 * MIB);
        let inhibited = "P2PEnabled = 0x28\nNomadInhibitedSubnets = \"127.0.0.0/8\"";
        let net = Subnet::start(&t, &nginx.url(), &[inhibited, inhibited]);
        net.submit_all(&t, 0..2);
        net.wait_done(&[0, 1], Duration::from_secs(60));
        for i in 0..2 {
            let j = net.job(i);
            assert_eq!(j["bytes_from_origin"].as_u64().unwrap(), size, "{j}");
            assert_eq!(j["bytes_from_peers"], 0, "{j}");
            let s = net.status(i);
            assert_eq!(s["elections"], serde_json::json!([]), "no election: {s}");
            assert_eq!(s["listeners"], serde_json::json!([]), "no listener: {s}");
        }
        nginx.wait_access_log(4, Duration::from_secs(5));
        assert_eq!(content_bytes(&nginx), 2 * size);
    });
}

#[test]
fn a_master_whose_delivered_file_was_changed_repairs_it_and_the_peer_completes() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        publish(&t, 8 * MIB);
        let nginx = slow_origin(&t, 64 * MIB);
        let net = Subnet::start(
            &t,
            &nginx.url(),
            &[
                "P2PEnabled = 0x28\nP2PElectionWeight = 99",
                "P2PEnabled = 0x28",
            ],
        );
        let master_dest = t.join("dest0");
        let r = net.agents[0].get("OSD00001", 1, &master_dest, &[]);
        assert_eq!(r.status, 0, "{r:?}");
        // An administrator writes into the delivered file: a hard link into the
        // master's cache, so the cached block changes too.
        let image = master_dest.join("os/image.wim");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"EVIL", 5 * 131072 + 7).unwrap();
        drop(file);
        let before = content_bytes(&nginx);
        let started = std::time::Instant::now();
        let r = net.agents[1].get("OSD00001", 1, &t.join("dest1"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", net.agents[0].log());
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_trees_equal(t.join("src"), t.join("dest1"));
        // The master fetched the changed block again, from the origin, and only that.
        let refetched = content_bytes(&nginx) - before;
        assert!(refetched > 0 && refetched <= 2 * MIB, "{refetched}");
        assert!(net.agents[0].log().contains("repairing the content"));
        // Its own delivered copy is whole again (it shares the cache's inode).
        assert_trees_equal(t.join("src"), &master_dest);
    });
}
