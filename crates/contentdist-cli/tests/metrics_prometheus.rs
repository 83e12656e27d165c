//! Metrics as an administrator watches them: a real Prometheus server (Debian's
//! `prometheus`, its own process on a free port) scrapes two agents of a loopback
//! subnet while they copy content, and its HTTP API shows the origin and peer bytes
//! with the right totals; `promtool check metrics` accepts what an agent serves.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::prometheus::Prometheus;
use support::subnet::{agent, publish, slow_origin, Subnet, MIB};
use support::{wait_until, with_timeout, TestDir};

#[test]
fn prometheus_scrapes_two_agents_and_sees_origin_and_peer_bytes() {
    with_timeout(Duration::from_secs(180), || {
        let t = TestDir::new();
        let size = publish(&t, 8 * MIB);
        let nginx = slow_origin(&t, 16 * MIB);
        let settings: Vec<String> = (0..2)
            .map(|i| agent(&t, i, &format!("P2PEnabled = 0x28\nSite = \"branch {i}\"")))
            .collect();
        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
        let net = Subnet::start(&t, &nginx.url(), &refs);
        let targets: Vec<String> = (0..2)
            .map(|i| {
                let url = net.status(i)["metrics"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert!(url.starts_with("http://127.0.0.1:"), "agent {i}: {url:?}");
                url.trim_start_matches("http://")
                    .trim_end_matches("/metrics")
                    .to_string()
            })
            .collect();
        let prometheus = Prometheus::start(&t, &targets);
        net.submit_all(&t, 0..2);
        net.wait_done(&[0, 1], Duration::from_secs(120));

        // What crossed the WAN once, and what the LAN carried, summed over the
        // agents as a dashboard would.
        let origin = r#"sum(contentdist_received_bytes_total{source="origin"})"#;
        let peers = r#"sum(contentdist_received_bytes_total{source="peer"})"#;
        let done = r#"sum(contentdist_job_ends_total{outcome="done"})"#;
        let sites = r#"count(contentdist_agent_info{site=~"branch .*"})"#;
        let seen = wait_until(Duration::from_secs(30), || {
            prometheus.query(origin) == Some(size as f64)
                && prometheus.query(peers) == Some(size as f64)
                && prometheus.query(done) == Some(2.0)
                && prometheus.query(sites) == Some(2.0)
        });
        assert!(
            seen,
            "origin {:?}, peers {:?}, done {:?}, sites {:?} (content {size}); prometheus log:\n{}",
            prometheus.query(origin),
            prometheus.query(peers),
            prometheus.query(done),
            prometheus.query(sites),
            std::fs::read_to_string(t.join("prometheus/prometheus.log")).unwrap_or_default()
        );

        // What curl gets (the classic text format) passes promtool's checks.
        let text = Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://{}/metrics", targets[0]))
            .output()
            .unwrap()
            .stdout;
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut check.stdin.take().unwrap(), &text).unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&text)
        );
    });
}

#[test]
fn the_example_scrape_configuration_and_alerts_pass_promtool() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "contentdist-alerts.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian package `prometheus`)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
