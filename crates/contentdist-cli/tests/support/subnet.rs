//! A subnet of real agents on 127.0.X.Y sharing one election port, and the
//! content and origin the subnet tests use.

use std::time::Duration;

use std::path::{Path, PathBuf};

use super::agent::{wait_jobs_done, AgentProc};
use super::nginx::{Nginx, NginxOptions};
use super::pki::{CertFiles, Pki};
use super::{random_file, TestDir};

/// Settings of agent `i` of a certificate test: its names (`dp0I`,
/// `dp0I.branch.example`), its own certificate store, and `extra`.
pub fn agent(t: &TestDir, i: usize, extra: &str) -> String {
    format!(
        "HostName = \"dp0{i}\"\nFqdn = \"dp0{i}.branch.example\"\nCertStoreDir = \"{}\"\n{extra}",
        store(t, i).display()
    )
}

/// Agent `i`'s certificate store.
pub fn store(t: &TestDir, i: usize) -> PathBuf {
    t.join(format!("store{i}"))
}

/// Put `files` (certificate with chain, and key) into `store/my/` as `NAME.pem`,
/// through a temporary name and a rename: the agent may look at any moment.
pub fn install(files: &CertFiles, store: &Path, name: &str) {
    let my = store.join("my");
    std::fs::create_dir_all(&my).unwrap();
    let tmp = store.join(format!("{name}.tmp"));
    let pem = [
        std::fs::read(&files.chain).unwrap(),
        std::fs::read(&files.key).unwrap(),
    ]
    .concat();
    std::fs::write(&tmp, pem).unwrap();
    std::fs::rename(&tmp, my.join(format!("{name}.pem"))).unwrap();
}

/// Put the CA of `pki` into `store/trusted/`.
pub fn trust(pki: &Pki, store: &Path) {
    std::fs::create_dir_all(store.join("trusted")).unwrap();
    std::fs::copy(pki.ca_cert(), store.join("trusted/ca.pem")).unwrap();
}

pub const MIB: u64 = 1024 * 1024;

pub fn publish(t: &TestDir, size: u64) -> u64 {
    let src = t.subdir("src");
    random_file(src.join("os/image.wim"), size, 7);
    random_file(src.join("os/boot.cfg"), 3000, 8);
    super::publish(&src, &t.subdir("origin"), "OSD00001", 1);
    size + 3000
}

/// Agents sharing one election port, each on its own loopback address.
pub struct Subnet {
    pub agents: Vec<AgentProc>,
}

impl Subnet {
    pub fn start(t: &TestDir, origin: &str, settings: &[&str]) -> Subnet {
        let port = super::free_udp_port();
        // 127.0.X.(i+1) with X from the port: addresses differ between tests too,
        // which keeps their logs apart (ports already keep their traffic apart).
        let agents = settings
            .iter()
            .enumerate()
            .map(|(i, extra)| {
                let extra = format!(
                    "P2P_Port = {port}\nP2PHttpPort = 0\nP2PHttpsPort = 0\nListenAddress = \"127.0.{}.{}\"\n\
                     ElectionAddress = \"127.255.255.255\"\n{extra}",
                    port % 250,
                    i + 1
                );
                AgentProc::start(&t.join(format!("agent{i}")), origin, &extra)
            })
            .collect();
        Subnet { agents }
    }

    pub fn status(&self, i: usize) -> serde_json::Value {
        self.agents[i].status()
    }

    /// Index of the agent that says it is master of the content.
    pub fn master(&self) -> Option<usize> {
        (0..self.agents.len()).find(|&i| self.agents[i].is_master())
    }

    pub fn submit_all(&self, t: &TestDir, which: impl Iterator<Item = usize>) {
        for i in which {
            self.agents[i].submit("OSD00001", 1, &t.join(format!("dest{i}")));
        }
    }

    pub fn job(&self, i: usize) -> serde_json::Value {
        self.agents[i].first_job()
    }

    pub fn wait_done(&self, which: &[usize], timeout: Duration) {
        wait_jobs_done(&self.agents, which, timeout);
    }
}

pub fn content_bytes(nginx: &Nginx) -> u64 {
    nginx
        .access_log()
        .iter()
        .filter(|e| e.path.contains("/content/"))
        .map(|e| e.bytes_sent)
        .sum()
}

pub fn slow_origin(t: &TestDir, rate: u64) -> Nginx {
    Nginx::start(NginxOptions {
        root: t.join("origin"),
        rate_limit_bytes_per_sec: Some(rate),
        ..Default::default()
    })
    .unwrap()
}

/// The listener of `status` whose URL starts with `scheme://`, without its path
/// (`https://10.0.0.1:5443`).
pub fn listener(status: &serde_json::Value, scheme: &str) -> String {
    status["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .find(|l| l.starts_with(&format!("{scheme}://")))
        .unwrap_or_else(|| panic!("no {scheme} listener: {status:#}"))
        .trim_end_matches("/content/")
        .to_string()
}

/// curl with `args`, quiet but for errors, bounded to 10 s.
pub fn curl(args: &[&str]) -> std::process::Output {
    std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl")
}
