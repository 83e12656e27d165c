//! The systemd service: the unit passes `systemd-analyze verify`, its exposure
//! (`systemd-analyze security --offline`) is at most 3, and an agent that does not
//! manage its firewall and serves no SMB keeps no `CAP_NET_ADMIN`, `CAP_SETUID` or
//! `CAP_SETGID` in any thread.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::agent::AgentProc;
use support::{contentdist_bin, with_timeout, TestDir};

/// The unit with `ExecStart` pointing at the binary under test (verify checks that
/// the program exists).
fn unit_under_test(t: &TestDir) -> std::path::PathBuf {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/contentdist.service");
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/bin/contentdist agent"),
        "{text}"
    );
    let text = text.replace(
        "ExecStart=/usr/bin/contentdist",
        &format!("ExecStart={}", contentdist_bin().display()),
    );
    t.write("contentdist.service", text)
}

#[test]
fn the_unit_verifies_and_its_exposure_is_at_most_3() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        let unit = unit_under_test(&t);
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit)
            .output()
            .expect("systemd-analyze (package systemd)");
        let said = String::from_utf8_lossy(&verify.stderr).into_owned();
        assert!(verify.status.success(), "{said}");
        // Nothing about our unit (the host's own units may have remarks).
        assert!(!said.contains("contentdist.service:"), "{said}");
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&security.stdout);
        let exposure: f64 = text
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for contentdist.service: "))
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no exposure in:\n{text}"));
        assert!(exposure <= 3.0, "exposure {exposure}:\n{text}");
    });
}

/// The capability sets of every thread of `pid`, as hex masks by name.
fn thread_caps(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
                if let Some(v) = line.strip_prefix(set) {
                    out.push((set.to_string(), u64::from_str_radix(v.trim(), 16).unwrap()));
                }
            }
        }
    }
    out
}

#[test]
fn an_agent_without_firewall_or_smb_keeps_none_of_their_capabilities() {
    with_timeout(Duration::from_secs(60), || {
        let t = TestDir::new();
        const CAP_NET_ADMIN: u64 = 1 << 12;
        // Peer copy off (the harness's default): no smbd, so no user switching.
        const CAP_SETUID_SETGID: u64 = (1 << 7) | (1 << 6);
        for setting in ["ManageFirewall = false", "ManageFirewall = \"auto\""] {
            // "auto" on loopback: not managed either.
            let agent = AgentProc::start(
                &t.join(setting.len().to_string()),
                "http://127.0.0.1:9",
                setting,
            );
            let caps = thread_caps(agent.pid());
            assert!(caps.len() >= 3 * 2, "threads: {caps:?}");
            for (set, mask) in &caps {
                assert_eq!(mask & CAP_NET_ADMIN, 0, "{setting}: {set} {mask:#x}");
                assert_eq!(mask & CAP_SETUID_SETGID, 0, "{setting}: {set} {mask:#x}");
            }
        }
    });
}
