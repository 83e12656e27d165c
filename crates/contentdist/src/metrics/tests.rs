use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::*;

fn sample() -> Sample {
    Sample {
        site: "Branch 12".into(),
        version: "0.1.0".into(),
        start_time_unix: 1_796_000_000.0,
        origin_bytes: 1000,
        origin_protocol: "https",
        peer_bytes_http: 20,
        peer_bytes_https: 300,
        peer_bytes_smb: 30,
        served_bytes_http: 4,
        served_bytes_https: 5,
        served_bytes_smb: 6,
        blocks_rejected_origin: 1,
        blocks_rejected_peer: 2,
        jobs_by_state: vec![("done".into(), 3), ("downloading".into(), 1)],
        job_ends: vec![("done", "0x0".into(), 3), ("failed", "0x205D".into(), 1)],
        elections_by_role: vec![("master", 1), ("follower", 2)],
        masterships: 4,
        elections_lost: 9,
        master_changes: 2,
        head_starts: (4, 1),
        datagrams_dropped: vec![("undecodable", 6), ("overflowed", 0)],
        refusals: vec![("bad_credentials", 7), ("busy", 8)],
        serving_now: 2,
        wan_throttle_bytes_per_second: 10_000_000,
        wan_throttled_seconds: 12.5,
        cache_bytes_verified: 1 << 30,
        cache_bytes_free: 1 << 34,
        cache_entries: 3,
        cert_expiry_seconds: vec![("server", 86_400.0)],
    }
}

/// The value of the line starting with `series ` (name and labels as written).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[test]
fn every_number_of_the_sample_is_a_series_with_bounded_labels() {
    let text = render(&sample());
    let expect = [
        (
            r#"contentdist_received_bytes_total{source="origin",protocol="https"}"#,
            1000.0,
        ),
        (
            r#"contentdist_received_bytes_total{source="peer",protocol="http"}"#,
            20.0,
        ),
        (
            r#"contentdist_received_bytes_total{source="peer",protocol="https"}"#,
            300.0,
        ),
        (
            r#"contentdist_received_bytes_total{source="peer",protocol="smb"}"#,
            30.0,
        ),
        (r#"contentdist_served_bytes_total{protocol="https"}"#, 5.0),
        (r#"contentdist_served_bytes_total{protocol="smb"}"#, 6.0),
        (r#"contentdist_blocks_rejected_total{source="peer"}"#, 2.0),
        (r#"contentdist_jobs{state="downloading"}"#, 1.0),
        (
            r#"contentdist_job_ends_total{outcome="failed",code="0x205D"}"#,
            1.0,
        ),
        (r#"contentdist_elections{role="follower"}"#, 2.0),
        ("contentdist_masterships_total", 4.0),
        (r#"contentdist_election_results_total{result="won"}"#, 4.0),
        (r#"contentdist_election_results_total{result="lost"}"#, 9.0),
        ("contentdist_master_changes_total", 2.0),
        (r#"contentdist_head_starts_total{result="kept"}"#, 4.0),
        (r#"contentdist_head_starts_total{result="ended"}"#, 1.0),
        ("contentdist_wan_throttled_seconds_total", 12.5),
        (
            r#"contentdist_election_datagrams_dropped_total{reason="undecodable"}"#,
            6.0,
        ),
        (r#"contentdist_peer_refusals_total{reason="busy"}"#, 8.0),
        ("contentdist_serving", 2.0),
        ("contentdist_wan_throttle_bytes_per_second", 10e6),
        ("contentdist_cache_entries", 3.0),
        (
            r#"contentdist_certificate_expiry_seconds{usage="server"}"#,
            86_400.0,
        ),
        ("contentdist_start_time_seconds", 1_796_000_000.0),
        (
            r#"contentdist_agent_info{version="0.1.0",site="Branch 12"}"#,
            1.0,
        ),
    ];
    for (series, v) in expect {
        assert_eq!(value(&text, series), Some(v), "{series} in:\n{text}");
    }
    // Every sample line is `name{labels} value`, every family typed and
    // described, and no content id or host appears as a label.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, v) = line.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "{line}");
        assert!(series.starts_with("contentdist_"), "{line}");
        assert!(
            !series.contains("content_id") && !series.contains("host"),
            "{line}"
        );
    }
    assert!(
        text.contains("# TYPE contentdist_received_bytes counter"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn two_agents_in_one_process_keep_their_own_numbers() {
    let a = Arc::new(AtomicU64::new(0));
    let b = Arc::new(AtomicU64::new(0));
    let metrics = |n: &Arc<AtomicU64>| {
        let n = Arc::clone(n);
        Metrics::new(Arc::new(move || Sample {
            origin_bytes: n.load(Ordering::Relaxed),
            origin_protocol: "http",
            ..Sample::default()
        }))
    };
    let (ma, mb) = (metrics(&a), metrics(&b));
    a.store(10, Ordering::Relaxed);
    b.store(20, Ordering::Relaxed);
    let series = r#"contentdist_received_bytes_total{source="origin",protocol="http"}"#;
    assert_eq!(value(&ma.encode(), series), Some(10.0));
    assert_eq!(value(&mb.encode(), series), Some(20.0));
    // Live: the next scrape sees what arrived since.
    a.fetch_add(5, Ordering::Relaxed);
    assert_eq!(value(&ma.encode(), series), Some(15.0));
}

#[test]
fn the_classic_format_types_counters_by_their_total_names_and_has_no_eof() {
    let text = render_classic(&sample());
    assert!(
        text.contains("# TYPE contentdist_received_bytes_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP contentdist_received_bytes_total Body bytes"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE contentdist_agent_info gauge\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE contentdist_jobs gauge\n"), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
    // The same samples as the OpenMetrics text.
    let samples = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(samples(&text), samples(&render(&sample())));
}
