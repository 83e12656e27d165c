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
        policy: RolePolicy::default(),
        cache_dir: Some(cache_dir.to_path_buf()),
        tasks: tasks.clone(),
        heard_hosts: None,
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
