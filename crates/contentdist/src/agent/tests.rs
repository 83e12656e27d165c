//! Agents in one process: each stops exactly itself, and leaves no task behind.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::agent::{Agent, AgentHandle};
use crate::config::{Config, P2PEnabled};
use crate::control::ElectionRole;
use crate::job::{JobRequest, JobState};
use crate::test_util::{wait_until, TestOrigin};

fn config(dir: &std::path::Path, i: u8, origin: &str, election_port: u16) -> Config {
    let d = dir.join(format!("agent{i}"));
    Config {
        cache_dir: d.join("cache"),
        control_socket: d.join("control.sock"),
        origin_url: Some(origin.to_string()),
        p2p_enabled: P2PEnabled(P2PEnabled::HTTP | P2PEnabled::NET_LITERAL_NAMES),
        p2p_http_port: 0,
        p2p_port: election_port,
        listen_address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 60 + i)),
        election_address: IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255)),
        // The first agent wins the election, so one master serves the others.
        p2p_election_weight: Some(if i == 0 { 99 } else { 1 }),
        metrics_address: Some("127.0.0.1:0".parse().unwrap()),
        site: format!("site {i}"),
        ..Config::default()
    }
}

/// The body of `GET url` (`http://ADDR/PATH`), over HTTP/1.0.
async fn scrape(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // As Prometheus asks: OpenMetrics.
    let accept = "Accept: application/openmetrics-text;version=1.0.0";
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_in_one_process_stop_with_no_task_left() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start(dir.path(), "TASKS001", 3 << 20, None);
    let port = crate::util::free_udp_port().unwrap();
    let mut agents: Vec<AgentHandle> = Vec::new();
    for i in 0..3 {
        let a = Agent::start(config(dir.path(), i, &origin.url(), port))
            .await
            .unwrap();
        // Typed addresses: what the agent really bound.
        let addrs = a.addrs();
        assert_eq!(addrs.election.map(|e| e.port()), Some(port));
        let http = addrs.peer_http.expect("peer-copy server over HTTP");
        assert_eq!(http.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 60 + i)));
        assert_ne!(http.port(), 0);
        agents.push(a);
    }
    let request = |i: usize| JobRequest {
        content_id: "TASKS001".into(),
        version: 1,
        dest: Some(dir.path().join(format!("dest{i}"))),
        content_hash: None,
        priority: 5,
    };
    agents[0].jobs().submit(request(0)).unwrap();
    wait_until(
        Duration::from_secs(20),
        "the master to be elected",
        || async {
            agents[0]
                .status()
                .elections
                .iter()
                .any(|e| e.state == ElectionRole::Master)
        },
    )
    .await;
    for (i, a) in agents.iter().enumerate().skip(1) {
        a.jobs().submit(request(i)).unwrap();
    }
    wait_until(Duration::from_secs(30), "every job done", || async {
        agents.iter().all(|a| {
            let jobs = a.jobs().list();
            assert!(jobs.iter().all(|j| j.state != JobState::Failed), "{jobs:?}");
            jobs.iter().all(|j| j.state == JobState::Done)
        })
    })
    .await;
    let status = agents[1].status();
    assert!(status.bytes_from_peers > 0, "{status:?}");
    assert!(status.election_free_bytes.unwrap_or(0) > 0, "{status:?}");
    assert!(
        status.election_datagrams_received.unwrap_or(0) > 0,
        "{status:?}"
    );
    assert_eq!(status.election_datagrams_replayed, Some(0), "{status:?}");
    assert!(status.election_recv_buffer.unwrap_or(0) > 0, "{status:?}");
    let served = agents[0].status().peer_server.expect("the master serves");
    assert!(
        served.requests > 0 && served.requests_refused == 0,
        "{served:?}"
    );
    // Each agent's metrics are its own: the master took the content from the
    // origin and served it, the others took it from peers.
    let size = agents[0].jobs().list()[0].bytes_total;
    let mut scraped = Vec::new();
    for a in &agents {
        let url = a.status().metrics.expect("a metrics listener");
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        scraped.push(scrape(&url).await);
    }
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} missing in:\n{text}"))
            .parse()
            .unwrap()
    };
    let origin = r#"contentdist_received_bytes_total{source="origin",protocol="http"}"#;
    let peers = r#"contentdist_received_bytes_total{source="peer",protocol="http"}"#;
    let served = r#"contentdist_served_bytes_total{protocol="http"}"#;
    let done = r#"contentdist_job_ends_total{outcome="done",code="0x0"}"#;
    assert_eq!(value(&scraped[0], origin), size as f64);
    assert!(value(&scraped[0], served) >= size as f64);
    for (i, text) in scraped.iter().enumerate() {
        assert_eq!(value(text, done), 1.0, "{text}");
        let info = format!(
            r#"contentdist_agent_info{{version="{}",site="site {i}"}}"#,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(text, &info), 1.0, "{text}");
    }
    for text in &scraped[1..] {
        assert_eq!(value(text, origin), 0.0, "{text}");
        assert_eq!(value(text, peers), size as f64, "{text}");
    }
    // One election: won by the first agent, lost by the others; no master change.
    let won = r#"contentdist_election_results_total{result="won"}"#;
    let lost = r#"contentdist_election_results_total{result="lost"}"#;
    for (i, text) in scraped.iter().enumerate() {
        let (w, l) = if i == 0 { (1.0, 0.0) } else { (0.0, 1.0) };
        assert_eq!((value(text, won), value(text, lost)), (w, l), "{text}");
        assert_eq!(value(text, "contentdist_master_changes_total"), 0.0);
        assert_eq!(value(text, "contentdist_wan_throttled_seconds_total"), 0.0);
    }
    // The first agent, alone, began its download before its window ended and went
    // on as master. The others found it: any head start of theirs ended.
    let kept = r#"contentdist_head_starts_total{result="kept"}"#;
    let ended = r#"contentdist_head_starts_total{result="ended"}"#;
    assert_eq!(
        (value(&scraped[0], kept), value(&scraped[0], ended)),
        (1.0, 0.0)
    );
    for text in &scraped[1..] {
        assert_eq!(value(text, kept), 0.0, "{text}");
    }
    // Each job's FinalStats record: where its bytes came from, and from whom.
    for (i, a) in agents.iter().enumerate() {
        let job = &a.jobs().list()[0];
        let f = job.final_stats.as_ref().expect("a FinalStats record");
        assert_eq!((f.outcome.as_str(), f.code.as_str()), ("done", "0x0"));
        assert_eq!(f.bytes_total, size);
        assert!(f.duration_ms > 0 && f.ended_unix > 0, "{f:?}");
        let peers = f.bytes_from_peers;
        if i == 0 {
            assert_eq!(f.master.as_deref(), Some("self"));
            assert_eq!((f.bytes_from_origin, peers.total()), (size, 0), "{f:?}");
        } else {
            assert_eq!(f.master.as_deref(), Some("127.0.0.60"));
            assert_eq!((f.bytes_from_origin, peers.http, peers.https), (0, size, 0));
        }
    }

    // While running, the background work is there and has names.
    let live = agents[0].tasks_live();
    assert!(live.contains(&"election driver".to_string()), "{live:?}");
    assert!(live.contains(&"master linger".to_string()), "{live:?}");

    // Stopping one agent stops only that one.
    let first = agents.remove(0);
    first.shutdown();
    first.join().await.expect("the first agent stops in time");
    for a in &agents {
        assert!(a.tasks_live().contains(&"election driver".to_string()));
    }
    for a in &agents {
        a.shutdown();
    }
    for a in agents {
        let cache = std::sync::Arc::clone(a.jobs().cache());
        let tasks = a.tasks.clone();
        a.join().await.expect("every agent stops in time");
        assert_eq!(tasks.live(), Vec::<String>::new());
        assert_eq!(cache.background_flushes(), 0);
    }
}

/// `METHOD url` over HTTP/1.0: the status line and headers, and the body.
async fn request(method: &str, url: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{method} /{path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_finished_job_its_election_and_its_bytes() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let size = 3 << 20;
        let origin = TestOrigin::start(dir.path(), "PAGE0001", size, None);
        let port = crate::util::free_udp_port().unwrap();
        let agent = Agent::start(config(dir.path(), 0, &origin.url(), port))
            .await
            .unwrap();
        agent
            .jobs()
            .submit(JobRequest {
                content_id: "PAGE0001".into(),
                version: 1,
                dest: Some(dir.path().join("dest")),
                content_hash: None,
                priority: 5,
            })
            .unwrap();
        wait_until(Duration::from_secs(30), "the job done", || async {
            let jobs = agent.jobs().list();
            assert!(jobs.iter().all(|j| j.state != JobState::Failed), "{jobs:?}");
            jobs.iter().all(|j| j.state == JobState::Done)
        })
        .await;
        // With the head start, 3 MiB from a local origin can be in before the
        // election window ends, which makes the agent master.
        wait_until(Duration::from_secs(10), "the agent master", || async {
            agent
                .status()
                .elections
                .iter()
                .any(|e| e.state == ElectionRole::Master)
        })
        .await;
        let job = agent.jobs().list().remove(0);
        let metrics = agent.status().metrics.expect("a metrics listener");
        let root = metrics.trim_end_matches("metrics");

        let (head, page) = request("GET", root).await;
        assert!(head.contains(" 200 "), "{head}");
        assert!(head.contains("text/html; charset=utf-8"), "{head}");
        assert!(
            head.contains("content-security-policy: default-src 'none'"),
            "{head}"
        );
        let total = job.bytes_total;
        assert!(total > size as u64, "{job:?}");
        for text in [
            "<tr id=\"job-1\">".to_string(),
            "<td>PAGE0001/1</td><td class=\"state-done\">done</td>".to_string(),
            " 100%".to_string(),
            // Verified, total and from the origin: the whole content.
            format!("title=\"{total} bytes\""),
            // The agent alone on its subnet: master of its content's election.
            "class=\"role-master\">master".to_string(),
            "site 0".to_string(),
            "http://127.0.0.60:".to_string(),
        ] {
            assert!(page.contains(&text), "{text} in:\n{page}");
        }
        // The job's verified, total and from-origin cells, and the agent's bytes
        // from the origin (the WAN): all the whole content.
        assert_eq!(
            page.matches(&format!("title=\"{total} bytes\"")).count(),
            4,
            "{page}"
        );

        let (head, json) = request("GET", &format!("{root}status.json")).await;
        assert!(head.contains("application/json"), "{head}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["jobs"][0]["content"], "PAGE0001/1");
        assert_eq!(v["jobs"][0]["state"], "done");
        assert_eq!(v["jobs"][0]["bytes_verified"], total);
        assert_eq!(v["bytes_from_origin"], total);
        assert_eq!(v["elections"][0]["role"], "master");
        assert_eq!(v["certificates"][1]["usage"], "client");

        // HEAD: the headers of a GET and no body; other methods and paths refused.
        let (head, body) = request("HEAD", root).await;
        assert!(
            head.contains(" 200 ") && head.contains("text/html"),
            "{head}"
        );
        assert_eq!(body, "");
        let (head, _) = request("POST", root).await;
        assert!(head.contains(" 405 "), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("allow: get, head"),
            "{head}"
        );
        let (head, _) = request("GET", &format!("{root}nothing")).await;
        assert!(head.contains(" 404 "), "{head}");

        agent.shutdown();
        agent.join().await.expect("the agent stops in time");
    })
    .await
    .expect("within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_the_live_settings_and_names_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::util::free_udp_port().unwrap();
    let first = Config {
        wan_rate_kbps: 0,
        max_work_rate: 50,
        ..config(dir.path(), 7, "http://127.0.0.1:9", port)
    };
    let a = Agent::start(first.clone()).await.unwrap();
    assert_eq!(a.jobs().rate_limit(), None);
    let next = Config {
        // 8000 kbit/s at MaxWorkRate 100%: 1,000,000 bytes per second.
        wan_rate_kbps: 8_000,
        max_work_rate: 100,
        max_cache_days: 3,
        cert_issuer: vec!["Example Issuing CA".into()],
        p2p_http_port: 6080,
        site: "elsewhere".into(),
        ..first.clone()
    };
    let report = a.reload(&next);
    let mut applied = report.applied.clone();
    applied.sort();
    assert_eq!(
        applied,
        ["CertIssuer", "MaxCacheDays", "MaxWorkRate", "WanRateKbps"].map(String::from)
    );
    let mut restart = report.needs_restart.clone();
    restart.sort();
    assert_eq!(restart, ["P2PHttpPort", "Site"].map(String::from));
    // In force now: the throttle, the clean-up limits, the settings status shows;
    // the restart-only ones keep their old values.
    assert_eq!(a.jobs().rate_limit(), Some(1_000_000));
    assert_eq!(a.jobs().clean_policy().max_days, 3);
    let c = a.config();
    assert_eq!((c.wan_rate_kbps, c.max_cache_days), (8_000, 3));
    assert_eq!(c.cert_issuer, vec!["Example Issuing CA".to_string()]);
    assert_eq!((c.p2p_http_port, c.site.as_str()), (0, "site 7"));
    // Lifting the throttle lifts it for downloads in progress too.
    let report = a.reload(&Config {
        wan_rate_kbps: 0,
        ..next.clone()
    });
    assert!(
        report.applied.contains(&"WanRateKbps".to_string()),
        "{report:?}"
    );
    assert_eq!(a.jobs().rate_limit(), None);
    a.shutdown();
    a.join().await.unwrap();
}
