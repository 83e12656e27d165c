//! The driver's bookkeeping: roles of forgotten contents go, free space is measured,
//! a renewed certificate is announced.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::election::{LocalInfo, Timing};
use crate::tasks::Tasks;
use crate::test_util::wait_until;

fn start_driver(tasks: &Tasks, cache_dir: &std::path::Path) -> SubnetHandle {
    start_driver_with(tasks, cache_dir, RolePolicy::default())
}

fn start_driver_with(
    tasks: &Tasks,
    cache_dir: &std::path::Path,
    policy: RolePolicy,
) -> SubnetHandle {
    let port = crate::util::free_udp_port().unwrap();
    start(SubnetOptions {
        local: LocalInfo {
            node_id: 7,
            addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 70)),
            free_bytes: 0,
            ..LocalInfo::default()
        },
        timing: Timing::default(),
        port,
        broadcast: IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255)),
        site_key: None,
        policy,
        cache_dir: Some(cache_dir.to_path_buf()),
        tasks: tasks.clone(),
        heard_hosts: None,
        heard_holders: None,
        advertise_holding: None,
    })
    .unwrap()
}

#[tokio::test]
async fn a_forgotten_content_leaves_the_role_map_unless_a_job_still_watches_it() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks::new(CancellationToken::new());
    let subnet = start_driver(&tasks, dir.path());
    let keys: Vec<ContentKey> = (1..=3)
        .map(|v| ContentKey::new("ROLES001", v).unwrap())
        .collect();
    for k in &keys {
        drop(subnet.join(k, 0));
    }
    let watched = subnet.join(&keys[0], 0);
    assert_eq!(subnet.roles_held(), 3);
    for k in &keys {
        subnet.forget(k);
    }
    wait_until(
        Duration::from_secs(5),
        "the roles to be dropped",
        || async { subnet.roles_held() == 1 },
    )
    .await;
    drop(watched);
    subnet.forget(&keys[0]);
    wait_until(Duration::from_secs(5), "the last role to go", || async {
        subnet.roles_held() == 0
    })
    .await;
    tasks.shutdown();
    tasks.join(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn free_cache_space_is_measured_not_frozen_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks::new(CancellationToken::new());
    // Started with 0 bytes free: the driver measures the cache's file system.
    let subnet = start_driver(&tasks, dir.path());
    drop(subnet.join(&ContentKey::new("FREE0001", 1).unwrap(), 0));
    let (free, _) = crate::cache::clean::disk_space(dir.path()).unwrap();
    wait_until(Duration::from_secs(5), "free space measured", || async {
        subnet.free_bytes() > 0
    })
    .await;
    let measured = subnet.free_bytes();
    // Other tests write meanwhile: within 1 GiB of our own measurement.
    assert!(measured.abs_diff(free) < 1 << 30, "{measured} vs {free}");
    tasks.shutdown();
    tasks.join(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_renewed_certificate_is_broadcast_by_the_master_at_once() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let tasks = Tasks::new(CancellationToken::new());
        let (subnet, heard, content, _) = super::flood_tests::master(&tasks, None).await;
        subnet.set_cert_fingerprint(Some([0xCE; 32]));
        let mut buf = [0u8; 2048];
        loop {
            let len = heard.recv(&mut buf).await.unwrap();
            let Ok(m) = crate::election::decode(&buf[..len], None) else {
                continue;
            };
            if let crate::election::Body::Master(a) = m.body {
                if a.cert_fingerprint == Some([0xCE; 32]) {
                    assert_eq!(m.key, content);
                    break;
                }
            }
        }
        tasks.shutdown();
        tasks.join(Duration::from_secs(5)).await.unwrap();
    })
    .await
    .expect("the new fingerprint is announced within 30 s");
}

/// A driver on `port` at 127.0.0.`last`, as a FanOut agent serving SMB would run it.
fn start_holder(
    tasks: &Tasks,
    port: u16,
    last: u8,
    site: Option<&[u8]>,
) -> (SubnetHandle, crate::peer::swarm::HeardHolders) {
    let addr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    let heard = crate::peer::swarm::HeardHolders {
        registry: std::sync::Arc::default(),
        me: addr,
    };
    let subnet = start(SubnetOptions {
        local: LocalInfo {
            node_id: u64::from(last),
            addr,
            weight: 50,
            protocols: crate::config::Protocols::NONE.with(crate::config::Protocol::Smb),
            p2p_key: crate::election::P2pKey([last; 32]),
            free_bytes: 1 << 30,
            ..LocalInfo::default()
        },
        timing: Timing::default(),
        port,
        broadcast: IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255)),
        site_key: site.map(crate::election::SiteKey::new),
        policy: RolePolicy::default(),
        cache_dir: None,
        tasks: tasks.clone(),
        heard_hosts: None,
        heard_holders: Some(heard.clone()),
        advertise_holding: Some(Box::new(|| true)),
    })
    .unwrap();
    (subnet, heard)
}

#[tokio::test]
async fn followers_serving_smb_are_heard_as_holders_with_their_keys_by_agents_that_want_the_content(
) {
    for site in [None, Some(&b"site secret"[..])] {
        tokio::time::timeout(Duration::from_secs(30), async {
            let tasks = Tasks::new(CancellationToken::new());
            let port = crate::util::free_udp_port().unwrap();
            let (master, master_heard) = start_holder(&tasks, port, 71, site);
            let (a, a_heard) = start_holder(&tasks, port, 72, site);
            let (b, b_heard) = start_holder(&tasks, port, 73, site);
            let (_idle, idle_heard) = start_holder(&tasks, port, 74, site);
            let key = ContentKey::new("HOLD0001", 1).unwrap();
            // 71 holds it all (no job): it answers the election and becomes master.
            master.complete(&key);
            let ip = |l: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, l));
            let mut roles = [a.want(&key, 0), b.want(&key, 0)];
            for role in &mut roles {
                role.wait_for(|r| matches!(r, Role::Follow(m) if m.addr == ip(71)))
                    .await
                    .unwrap();
            }
            a.progress(&key, 250);
            b.progress(&key, 300);
            // Each follower hears the other, with its key decrypted.
            for (heard, other) in [(&a_heard, 73u8), (&b_heard, 72u8)] {
                wait_until(
                    Duration::from_secs(10),
                    "the other holder heard",
                    || async { !heard.registry.others(&key, heard.me).is_empty() },
                )
                .await;
                let holders = heard.registry.others(&key, heard.me);
                assert_eq!(holders.len(), 1, "{holders:?}");
                assert_eq!(holders[0].addr, ip(other));
                let target = holders[0].target(true).unwrap();
                assert_eq!(target.p2p_key, [other; 32], "the key, decrypted");
            }
            // An agent that takes no part in the content keeps no holders of it;
            // the master is never heard as one (it follows no one).
            assert!(idle_heard.registry.others(&key, idle_heard.me).is_empty());
            assert!(master_heard
                .registry
                .others(&key, master_heard.me)
                .iter()
                .all(|h| h.addr != ip(71)));
            assert!(a_heard
                .registry
                .others(&key, a_heard.me)
                .iter()
                .all(|h| h.addr != ip(71)));
            tasks.shutdown();
            tasks.join(Duration::from_secs(5)).await.unwrap();
        })
        .await
        .expect("within 30 s");
    }
}

#[tokio::test]
async fn a_peer_that_starts_after_the_others_finished_learns_of_them_by_asking() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let tasks = Tasks::new(CancellationToken::new());
        let port = crate::util::free_udp_port().unwrap();
        let site = Some(&b"site secret"[..]);
        let (master, _) = start_holder(&tasks, port, 81, site);
        let (a, _) = start_holder(&tasks, port, 82, site);
        // 84 copies along with 82: it tells when 82's last message went.
        let (witness, witness_heard) = start_holder(&tasks, port, 84, site);
        let key = ContentKey::new("LATE0001", 1).unwrap();
        master.complete(&key);
        let ip = |l: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, l));
        let mut roles = [a.want(&key, 0), witness.want(&key, 0)];
        for role in &mut roles {
            role.wait_for(|r| matches!(r, Role::Follow(m) if m.addr == ip(81)))
                .await
                .unwrap();
        }
        a.progress(&key, 1000);
        a.complete(&key);
        drop(roles);
        wait_until(Duration::from_secs(10), "82's last message", || async {
            let all = witness_heard.registry.others(&key, witness_heard.me);
            all.iter()
                .any(|h| h.addr == ip(82) && h.ad.verified == 1000)
        })
        .await;
        // 83 starts now: it heard nothing of 82 while it took no part, and 82,
        // complete, says nothing more unless asked.
        let (b, b_heard) = start_holder(&tasks, port, 83, site);
        let mut role = b.want(&key, 0);
        role.wait_for(|r| matches!(r, Role::Follow(m) if m.addr == ip(81)))
            .await
            .unwrap();
        wait_until(Duration::from_secs(10), "82 answers 83's query", || async {
            !b_heard.registry.others(&key, b_heard.me).is_empty()
        })
        .await;
        let holders = b_heard.registry.others(&key, b_heard.me);
        // The master does not answer (its peers copy from it anyway).
        assert_eq!(holders.len(), 1, "{holders:?}");
        assert_eq!(holders[0].addr, ip(82));
        assert_eq!(holders[0].ad.verified, 1000, "all of it");
        assert_eq!(holders[0].target(true).unwrap().p2p_key, [82; 32]);
        tasks.shutdown();
        tasks.join(Duration::from_secs(5)).await.unwrap();
    })
    .await
    .expect("within 30 s");
}

/// An agent that cannot be master falls back to the origin `fallback_after` after
/// its job joined, even when the job first spent time waiting for its role (for the
/// manifest); a later wait, after a master was lost, gets the whole delay again.
#[tokio::test]
async fn the_first_fallback_counts_from_the_join_and_later_ones_from_their_start() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks::new(CancellationToken::new());
    let port = crate::util::free_udp_port().unwrap();
    let subnet = start(SubnetOptions {
        local: LocalInfo {
            node_id: 9,
            addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 71)),
            preboot: true,
            ..LocalInfo::default()
        },
        timing: Timing::default(),
        port,
        broadcast: IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255)),
        site_key: None,
        policy: RolePolicy {
            can_be_master: false,
            fallback_after: Duration::from_millis(800),
            ..RolePolicy::default()
        },
        cache_dir: Some(dir.path().to_path_buf()),
        tasks: tasks.clone(),
        heard_hosts: None,
        heard_holders: None,
        advertise_holding: None,
    })
    .unwrap();
    let key = ContentKey::new("FALL0001", 1).unwrap();
    let mut member = subnet.join(&key, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = tokio::time::Instant::now();
    assert_eq!(member.wait_electing().await, Waited::FallBack);
    let first = t.elapsed();
    assert!(first < Duration::from_millis(600), "{first:?}");
    let t = tokio::time::Instant::now();
    assert_eq!(member.wait_electing().await, Waited::FallBack);
    let second = t.elapsed();
    assert!(second >= Duration::from_millis(790), "{second:?}");
    tasks.shutdown();
}

#[tokio::test]
async fn a_master_resigns_after_its_linger_time_and_stays_a_holder() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks::new(CancellationToken::new());
    let policy = RolePolicy {
        linger: Duration::from_millis(200),
        ..RolePolicy::default()
    };
    let subnet = start_driver_with(&tasks, dir.path(), policy);
    let key = ContentKey::new("LINGER01", 1).unwrap();
    let member = subnet.join(&key, 0);
    wait_until(Duration::from_secs(5), "this agent master", || async {
        subnet.is_master_of(&key)
    })
    .await;
    member.complete(&tasks);
    // The linger task (a real mastership: the election's state, not the role a
    // head start also sets) resigns, and the content stays held.
    wait_until(Duration::from_secs(5), "the master resigned", || async {
        subnet
            .status()
            .iter()
            .any(|s| s.key == key && s.state == crate::election::ElectionState::Idle)
    })
    .await;
    assert!(!subnet.is_master_of(&key));
    assert_eq!(
        subnet.masterships().last().map(|m| m.until.is_some()),
        Some(true)
    );
    tasks.shutdown();
    tasks.join(Duration::from_secs(5)).await.unwrap();
}
