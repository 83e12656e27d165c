//! The Grafana dashboard (`packaging/grafana/contentdist.json`) against what the
//! agents really serve: its model has the datasource and site variables Grafana
//! needs to import it; every panel's query, with the variables filled in as
//! Grafana would, runs on a real Prometheus scraping two agents that copied
//! content; the key panels (origin and peer bytes per site, WAN saved) show the
//! copy's numbers; and every metric the dashboard names is one an agent serves.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::prometheus::Prometheus;
use support::subnet::{agent, publish, slow_origin, Subnet, MIB};
use support::{wait_until, with_timeout, TestDir};

fn dashboard() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/grafana/contentdist.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, those inside collapsed rows included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// (panel title, query) of every target.
fn queries(d: &Value) -> Vec<(String, String)> {
    panels(d)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

/// The queries of the panel titled `title`.
fn panel_queries(d: &Value, title: &str) -> Vec<String> {
    let found: Vec<String> = queries(d)
        .into_iter()
        .filter(|(t, _)| t == title)
        .map(|(_, q)| q)
        .collect();
    assert!(!found.is_empty(), "no panel titled {title:?}");
    found
}

/// `expr` with the variables filled in as Grafana does before it asks
/// Prometheus: all sites, and concrete intervals.
fn fill(expr: &str) -> String {
    let filled = expr
        .replace("${site}", ".*")
        .replace("$site", ".*")
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "10m");
    assert!(!filled.contains('$'), "a variable left in {filled}");
    filled
}

/// The metric names (`contentdist_…`) a query uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("contentdist_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_dashboard_is_a_grafana_model_with_a_datasource_and_a_site_variable() {
    let d = dashboard();
    let schema = d["schemaVersion"].as_u64().unwrap();
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert_eq!(d["uid"], "contentdist");
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let ds = var("DS_PROMETHEUS");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let site = var("site");
    assert_eq!(site["type"], "query");
    assert_eq!(
        site["query"]["query"],
        "label_values(contentdist_agent_info, site)"
    );
    assert_eq!(site["includeAll"], true);
    assert_eq!(site["allValue"], ".*");
    // Every panel but the rows reads the chosen datasource, has a unique id, a
    // place on the grid and a description; every query filters by site.
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap();
        assert!(ids.insert(p["id"].as_u64().unwrap()), "id of {title}");
        let grid = &p["gridPos"];
        assert!(
            grid["w"].as_u64().unwrap() + grid["x"].as_u64().unwrap() <= 24,
            "{title}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        assert!(!p["description"].as_str().unwrap().is_empty(), "{title}");
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = t["expr"].as_str().unwrap();
            assert!(expr.contains("site=~\"$site\""), "{title}: {expr}");
        }
    }
    // What the issue asks for is there.
    for title in [
        "WAN saved (time range)",
        "WAN saved (since the agents started)",
        "Received per site: origin (WAN) against peers (LAN)",
        "Received, all selected sites",
        "Totals per site since the agents started",
        "Jobs by state",
        "Job ends by outcome",
        "Failures by code (time range)",
        "Elections by role",
        "Masterships per site",
        "Refusals by reason",
        "Certificate expiry (days)",
        "Cache per site",
        "Serving now",
    ] {
        panel_queries(&d, title);
    }
}

#[test]
fn every_dashboard_query_runs_on_prometheus_and_the_key_ones_show_the_copy() {
    with_timeout(Duration::from_secs(240), || {
        let d = dashboard();
        let t = TestDir::new();
        let size = publish(&t, 8 * MIB) as f64;
        let nginx = slow_origin(&t, 16 * MIB);
        // Both agents of one site; HTTPS first (a self-signed server certificate,
        // so its expiry is a series too), then HTTP.
        let settings: Vec<String> = (0..2)
            .map(|i| agent(&t, i, "P2PEnabled = 0x68\nSite = \"branch 12\""))
            .collect();
        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
        let net = Subnet::start(&t, &nginx.url(), &refs);
        let urls: Vec<String> = (0..2)
            .map(|i| {
                let url = net.status(i)["metrics"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert!(url.starts_with("http://127.0.0.1:"), "agent {i}: {url:?}");
                url
            })
            .collect();
        let targets: Vec<String> = urls
            .iter()
            .map(|u| {
                u.trim_start_matches("http://")
                    .trim_end_matches("/metrics")
                    .to_string()
            })
            .collect();
        let prometheus = Prometheus::start(&t, &targets);
        // Scraped once before the copy: the counters' first samples are 0, so
        // increase() over the time range sees the whole copy.
        let scraped = wait_until(Duration::from_secs(30), || {
            prometheus.query("count(contentdist_agent_info)") == Some(2.0)
        });
        assert!(scraped, "not scraped; log:\n{}", prometheus.log());
        net.submit_all(&t, 0..2);
        net.wait_done(&[0, 1], Duration::from_secs(120));
        let origin = r#"sum(contentdist_received_bytes_total{source="origin"})"#;
        let peers = r#"sum(contentdist_received_bytes_total{source="peer"})"#;
        let seen = wait_until(Duration::from_secs(30), || {
            prometheus.query(origin) == Some(size) && prometheus.query(peers) == Some(size)
        });
        assert!(
            seen,
            "origin {:?}, peers {:?} (content {size}); log:\n{}",
            prometheus.query(origin),
            prometheus.query(peers),
            prometheus.log()
        );

        // Every query is valid PromQL once its variables are filled in.
        let mut failed = Vec::new();
        for (title, expr) in queries(&d) {
            let answer = prometheus.query_json(&fill(&expr));
            if answer.as_ref().map(|a| &a["status"]) != Some(&Value::from("success")) {
                failed.push(format!("{title}: {expr}\n  -> {answer:?}"));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));

        // The key panels show the copy: the origin once, the peer once, per site.
        // (the `label` of each series, its value)
        let labelled = |expr: &str, label: &str| -> Vec<(String, f64)> {
            let answer = prometheus.query_json(&fill(expr)).unwrap();
            answer["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["metric"][label].as_str().unwrap_or("").to_string(),
                        r["value"][1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect()
        };
        let series = |expr: &str| labelled(expr, "site");
        let totals = panel_queries(&d, "Totals per site since the agents started");
        assert_eq!(series(&totals[0]), vec![("branch 12".to_string(), size)]);
        assert_eq!(series(&totals[1]), vec![("branch 12".to_string(), size)]);
        // Rates right after the copy: one series per site.
        for q in panel_queries(&d, "Received per site: origin (WAN) against peers (LAN)") {
            let v = series(&q);
            assert!(
                v.len() == 1 && v[0].0 == "branch 12" && v[0].1 > 0.0,
                "{q}: {v:?}"
            );
        }
        // Two agents, one download: half the bytes did not cross the WAN.
        let saved = &panel_queries(&d, "WAN saved (since the agents started)")[0];
        assert_eq!(series(saved), vec![(String::new(), 0.5)]);
        // The time-range panels use increase(), which extrapolates the growth it
        // saw to the end of the range: by up to one sample interval's worth of the
        // average slope. Over 30 samples that is at most ~3%, as over hours of
        // real scrapes; over the copy's few seconds alone it would be ~20%.
        let samples = "min(count_over_time(contentdist_agent_info[10m]))";
        let enough = wait_until(Duration::from_secs(90), || {
            prometheus.query(samples).is_some_and(|n| n >= 30.0)
        });
        assert!(enough, "samples: {:?}", prometheus.query(samples));
        let saved = &panel_queries(&d, "WAN saved (time range)")[0];
        let v = series(saved);
        assert!(
            v.len() == 1 && (v[0].1 - 0.5).abs() < 0.05,
            "{saved}: {v:?}"
        );
        for title in [
            "From the origin (WAN), time range",
            "From peers (LAN), time range",
        ] {
            let v = series(&panel_queries(&d, title)[0]);
            assert!(
                v.len() == 1 && (v[0].1 / size - 1.0).abs() < 0.1,
                "{title}: {v:?} against {size}"
            );
        }
        // One master among the two agents.
        let roles = labelled(&panel_queries(&d, "Elections by role")[0], "role");
        assert!(roles.contains(&("master".to_string(), 1.0)), "{roles:?}");
        let expiry = series(&panel_queries(&d, "Certificate expiry (days)")[0]);
        assert!(
            expiry.len() == 2 && expiry.iter().all(|(_, days)| *days > 300.0),
            "{expiry:?}"
        );

        // The site variable's values, as Grafana asks for them.
        let sites = prometheus
            .api(
                "label/site/values",
                &[("match[]", "contentdist_agent_info")],
            )
            .unwrap();
        assert_eq!(sites["data"], serde_json::json!(["branch 12"]), "{sites}");

        // Every metric the dashboard names is one the agents serve.
        let mut served = BTreeSet::new();
        for url in &urls {
            let out = Command::new("curl")
                .args(["-sf", "--max-time", "5", url])
                .output()
                .unwrap();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if !line.starts_with('#') {
                    let end = line.find(['{', ' ']).unwrap_or(line.len());
                    served.insert(line[..end].to_string());
                }
            }
        }
        let used: BTreeSet<String> = queries(&d)
            .iter()
            .flat_map(|(_, q)| metric_names(q))
            .collect();
        let missing: Vec<&String> = used.difference(&served).collect();
        assert!(
            missing.is_empty(),
            "not served: {missing:?}; served: {served:?}"
        );
        assert!(used.len() >= 15, "{used:?}");
    });
}
