//! A real Prometheus server (Debian's `prometheus`, its own process on a free
//! port, ended with the test process) scraping agents every second, and queries
//! of its HTTP API.

use std::process::{Child, Command, Stdio};

use super::TestDir;

/// A Prometheus server scraping `targets`; stopped when dropped.
pub struct Prometheus {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Prometheus {
    /// Start Prometheus with its configuration and data under `t/prometheus`,
    /// scraping `targets` (`HOST:PORT`, `/metrics`) every second.
    pub fn start(t: &TestDir, targets: &[String]) -> Prometheus {
        let dir = t.subdir("prometheus");
        let list = targets
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: contentdist\n    static_configs:\n      - targets: [{list}]\n"
            ),
        )
        .unwrap();
        let port = super::free_port();
        let log = dir.join("prometheus.log");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
        // Tied to the test process: a test that times out leaves no server behind.
        let child = super::procs::spawn_tied(cmd)
            .expect("prometheus (Debian package `prometheus`; .ci/run installs it)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// `GET /api/v1/PATH` with `params` (URL-encoded), as JSON; `None` when it
    /// does not answer within 5 s or not with JSON.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Option<serde_json::Value> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "5", "-G"])
            .arg(format!("{}/api/v1/{path}", self.url));
        for (k, v) in params {
            cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        let out = cmd.output().ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The instant query `q`'s whole answer (`status`, `data`, or `error`).
    pub fn query_json(&self, q: &str) -> Option<serde_json::Value> {
        self.api("query", &[("query", q)])
    }

    /// The value of the instant query `q`, if it has exactly one.
    pub fn query(&self, q: &str) -> Option<f64> {
        let v = self.query_json(q)?;
        match v["data"]["result"].as_array()?.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
