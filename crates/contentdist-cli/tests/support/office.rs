//! A branch office of real agents in network namespaces on one bridge (real
//! broadcast on a real L2 segment), with nginx as the origin behind a tbf-shaped
//! WAN link, and one content (`APP00001` version 2: a file of the given size and a
//! small one). Root only: see [`super::netns`].

use std::time::Duration;

use super::agent::{wait_jobs_done, AgentProc};
use super::netns::{NetLab, NetLabOptions, NsNginx};
use super::{random_file, TestDir};

/// How to build the office.
pub struct OfficeOptions<'a> {
    /// Hosts on the LAN, each one agent.
    pub hosts: usize,
    /// The WAN link's rate.
    pub wan_kbit: u64,
    /// The content's large file.
    pub size: u64,
    /// Every agent's `P2PEnabled`.
    pub p2p_enabled: u32,
    /// More settings for host `i` (one TOML line per entry).
    pub extra: &'a dyn Fn(usize) -> String,
}

/// No more settings for any host.
pub fn no_extra(_: usize) -> String {
    String::new()
}

/// The office: its network and its agents.
pub struct Office {
    pub net: NetLab,
    pub agents: Vec<AgentProc>,
}

impl Office {
    /// Publish the content under `t/origin`, build the network, start nginx and the
    /// agents (the product's ports: these namespaces are ours alone). Returns the
    /// office, the origin and the content's total size.
    pub fn start(t: &TestDir, o: OfficeOptions<'_>) -> (Office, NsNginx, u64) {
        let src = t.subdir("src");
        random_file(src.join("pkg/app.msi"), o.size, 11);
        random_file(src.join("pkg/setup.ini"), 700, 12);
        super::publish(&src, &t.subdir("origin"), "APP00001", 2);
        let net = NetLab::create(NetLabOptions {
            hosts: o.hosts,
            wan_rate_kbit: Some(o.wan_kbit),
        });
        let nginx = net.nginx_in_origin(&t.join("origin"));
        // ListenAddress is left at 0.0.0.0, so each agent finds the address it
        // announces by itself.
        let agents = (0..o.hosts)
            .map(|i| {
                let dir = t.join(format!("host{i}"));
                let extra = format!(
                    "P2PEnabled = {:#x}\nElectionAddress = \"{}\"\nCertStoreDir = \"{}\"\n{}",
                    o.p2p_enabled,
                    net.broadcast(),
                    dir.join("store").display(),
                    (o.extra)(i)
                );
                AgentProc::start_in(Some(net.host_ns(i)), &dir, &nginx.url(), &extra)
            })
            .collect();
        (Office { net, agents }, nginx, o.size + 700)
    }

    /// Host `i`'s job (its first).
    pub fn job(&self, i: usize) -> serde_json::Value {
        self.agents[i].first_job()
    }

    /// Host `i`'s `status --json`.
    pub fn status(&self, i: usize) -> serde_json::Value {
        self.agents[i].status()
    }

    /// The host that is master of an election now, if any.
    pub fn master(&self) -> Option<usize> {
        (0..self.agents.len()).find(|&i| self.agents[i].is_master())
    }

    /// Submit the content on host `i` (`get --no-wait`), delivered to `t/destI`.
    pub fn submit(&self, t: &TestDir, i: usize) {
        self.agents[i].submit("APP00001", 2, &t.join(format!("dest{i}")));
    }

    /// Wait until the jobs of `which` are done (a failed one fails the test).
    pub fn wait_done(&self, which: &[usize]) {
        wait_jobs_done(&self.agents, which, Duration::from_secs(150));
    }

    /// Body bytes host `i`'s peer-copy server sent (0 when it does not answer).
    pub fn served(&self, i: usize) -> u64 {
        self.status(i)["peer_server"]["bytes_served"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Run `nft -f -` with `rules` in host `i`'s namespace.
    pub fn nft(&self, i: usize, rules: &str) {
        use std::io::Write;
        let mut cmd = self.net.command(self.net.host_ns(i), "nft");
        cmd.args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("run nft");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -f - in host {i}: {}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Body bytes of content nginx sent (manifests and the rest left out).
pub fn content_bytes(nginx: &NsNginx) -> u64 {
    nginx
        .access_log()
        .iter()
        .filter(|e| e.path.contains("/content/"))
        .map(|e| e.bytes_sent)
        .sum()
}
