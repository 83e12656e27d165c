//! `contentdist lab`, the README's main job, end to end.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{contentdist_bin, with_timeout};

fn lab(args: &[&str]) -> serde_json::Value {
    let out = Command::new(contentdist_bin())
        .arg("lab")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lab failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_lab_crosses_the_wan_once_and_beats_its_baseline() {
    with_timeout(Duration::from_secs(180), || {
        let v = lab(&[
            "--agents",
            "4",
            "--size",
            "8M",
            "--wan-rate",
            "100Mbit",
            "--baseline",
        ]);
        let r = &v["lab"];
        let b = &v["baseline"];
        let agents = r["agents"].as_array().unwrap();
        assert_eq!(agents.len(), 4);
        assert!(agents.iter().all(|a| a["identical"] == true), "{r}");
        let masters = agents.iter().filter(|a| a["role"] == "master").count();
        assert_eq!(masters, 1, "{r}");
        // Counted from the agents' own election actions, not from who downloaded.
        assert_eq!(r["masters_elected"], 1, "{r}");
        assert_eq!(r["most_masters_at_once"], 1, "{r}");
        // Head starts that did not become the mastership ended.
        let (starts, ended) = (&r["head_starts"], &r["head_starts_ended"]);
        assert!(
            starts.as_u64().unwrap() <= ended.as_u64().unwrap() + 1,
            "{r}"
        );
        let content = r["content_bytes"].as_u64().unwrap();
        let wan = r["wan_bytes"].as_u64().unwrap();
        // The content once, plus one manifest per agent.
        assert!(wan < content + content / 20, "wan {wan} content {content}");
        let direct = b["wan_bytes"].as_u64().unwrap();
        assert!(direct >= 4 * content, "baseline {direct}");
        // Time is for benchmarks (bench/lab.sh, BENCHMARKS.md), not for a test on a
        // shared machine: both runs report one, and that is all checked here. (An
        // election that took 5 s instead of 0.5 s, seen twice on 2026-11-30, made the
        // lab slower than its baseline once in CI: an open defect, not a flake to
        // hide; see the README's lab section.)
        assert!(r["seconds"].as_f64().unwrap() > 0.0 && b["seconds"].as_f64().unwrap() > 0.0);
    });
}

#[test]
fn the_lab_survives_killing_its_master_half_way() {
    with_timeout(Duration::from_secs(180), || {
        // What a killed master takes with it is about a constant: the blocks in
        // flight and the last chunk it verified that no peer had copied yet (with
        // FanOut, one peer owns each chunk; measured: 0.9-1.0 MiB plus the
        // manifests). 48 MiB keeps that well inside the 5% asserted below; at 16 MiB
        // it was 5.7-6.4%.
        let v = lab(&[
            "--agents",
            "5",
            "--size",
            "48M",
            "--wan-rate",
            "50Mbit",
            "--kill-master-at",
            "50%",
        ]);
        let r = &v["lab"];
        let agents = r["agents"].as_array().unwrap();
        let killed = agents
            .iter()
            .filter(|a| a["role"] == "master (killed)")
            .count();
        assert_eq!(killed, 1, "{r}");
        assert!(agents.iter().any(|a| a["role"] == "new master"), "{r}");
        // The killed master and its successor, one after the other.
        assert_eq!(r["masters_elected"], 2, "{r}");
        assert_eq!(r["most_masters_at_once"], 1, "{r}");
        for a in agents.iter().filter(|a| a["role"] != "master (killed)") {
            assert_eq!(a["identical"], true, "{a}");
        }
        let content = r["content_bytes"].as_u64().unwrap() as f64;
        let wan = r["wan_bytes"].as_u64().unwrap() as f64;
        assert!(
            wan <= content * 1.05,
            "losing the master cost {wan} for {content}"
        );
    });
}

#[test]
fn the_lab_refuses_bad_arguments_with_a_clear_message() {
    let out = Command::new(contentdist_bin())
        .args(["lab", "--kill-master-at", "150%"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("below 100%"));
}
