//! A real `contentdist agent` process with its own cache, control socket and
//! settings file, plus helpers to run CLI commands against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use super::{contentdist_bin, procs::spawn_tied, wait_until};

/// A running agent. Killed (SIGKILL) when dropped.
pub struct AgentProc {
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    /// The network namespace the agent runs in, if any.
    netns: Option<String>,
}

/// The result of `contentdist get ... --json`.
#[derive(Debug)]
pub struct GetResult {
    /// Exit status of the command.
    pub status: i32,
    /// Final JobInfo printed with --json (Null when nothing parsed).
    pub json: serde_json::Value,
    /// What the command printed on stderr.
    pub stderr: String,
}

impl GetResult {
    /// The job's code.
    pub fn code(&self) -> u64 {
        self.json["code"].as_u64().unwrap_or(u64::MAX)
    }
    /// Bytes the job took from the origin.
    pub fn origin_bytes(&self) -> u64 {
        self.json["bytes_from_origin"].as_u64().unwrap_or(u64::MAX)
    }
    /// The job's final state.
    pub fn state(&self) -> &str {
        self.json["state"].as_str().unwrap_or("?")
    }
}

impl AgentProc {
    /// Write `dir/contentdist.toml` (cache and socket under `dir`, `origin` as
    /// OriginUrl, short timeouts, then `extra` lines) and start the agent.
    pub fn start(dir: &Path, origin: &str, extra: &str) -> AgentProc {
        Self::start_in(None, dir, origin, extra)
    }

    /// Like [`start`](Self::start), inside network namespace `netns` (`ip netns
    /// exec`, which execs the agent: its pid is the agent's, so `kill9` is real).
    /// The CLI still reaches it from here: the control socket is a file.
    pub fn start_in(netns: Option<&str>, dir: &Path, origin: &str, extra: &str) -> AgentProc {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("contentdist.toml");
        // Never the product's defaults for elections here (SMB on, broadcast to
        // 255.255.255.255): tests send nothing beyond loopback and their own
        // namespaces. A test that wants peer copy says so in `extra`.
        let mut safe = String::new();
        if !extra.contains("P2PEnabled") {
            safe.push_str("P2PEnabled = 0\n");
        }
        if !extra.contains("ElectionAddress") {
            safe.push_str("ElectionAddress = \"127.255.255.255\"\n");
        }
        // Debug logs, unless the test sets its own level.
        if !extra.contains("LogLevel") {
            safe.push_str("LogLevel = \"debug\"\n");
        }
        // Many agents on one host: each its own free metrics port.
        if !extra.contains("MetricsAddress") {
            safe.push_str("MetricsAddress = \"127.0.0.1:0\"\n");
        }
        let toml = format!(
            "CacheDir = \"{cache}\"\nControlSocket = \"{sock}\"\nOriginUrl = \"{origin}\"\n\
             OriginStallTimeoutSecs = 2\nOriginRetries = 3\nOriginConnectTimeoutSecs = 2\n\
             {safe}{extra}\n",
            cache = dir.join("cache").display(),
            sock = dir.join("control.sock").display(),
        );
        std::fs::write(&config, toml).unwrap();
        let mut a = AgentProc {
            dir: dir.to_path_buf(),
            config,
            child: None,
            netns: netns.map(str::to_string),
        };
        a.launch();
        a
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(contentdist_bin());
                c
            }
            None => Command::new(contentdist_bin()),
        };
        cmd.arg("agent")
            .arg("--config")
            .arg(&self.config)
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(spawn_tied(cmd).expect("start the agent"));
        let up = wait_until(Duration::from_secs(20), || {
            self.cli(&["jobs", "--json"]).status.success()
        });
        assert!(up, "agent did not answer on its socket:\n{}", self.log());
    }

    /// The settings file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// Everything the agent logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// `kill -9` the agent and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the agent and wait for it to exit (it must, within 15 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let exited = wait_until(Duration::from_secs(15), || {
                matches!(c.try_wait(), Ok(Some(_)))
            });
            assert!(exited, "agent did not stop on SIGTERM:\n{}", self.log());
        }
    }

    /// Send `signal` to the agent (it must be running).
    pub fn signal(&self, signal: i32) {
        let c = self.child.as_ref().expect("the agent runs");
        unsafe { libc::kill(c.id() as i32, signal) };
    }

    /// The agent's process id (it must be running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the agent runs").id()
    }

    /// True while the agent process has not exited.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Start again with the same settings and cache.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Run `contentdist ARGS --config <ours>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(contentdist_bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run contentdist")
    }

    /// `contentdist get ID --version V --dest DEST --json` plus `extra` arguments.
    pub fn get(&self, id: &str, version: u32, dest: &Path, extra: &[&str]) -> GetResult {
        let v = version.to_string();
        let mut args = vec!["get", id, "--version", &v, "--json"];
        let d = dest.display().to_string();
        args.extend(["--dest", &d]);
        args.extend(extra);
        let out = self.cli(&args);
        GetResult {
            status: out.status.code().unwrap_or(-1),
            json: serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `contentdist get ID --version V --no-wait --dest DEST`: submit, and fail the
    /// test if the agent refuses.
    pub fn submit(&self, id: &str, version: u32, dest: &Path) {
        let (v, d) = (version.to_string(), dest.display().to_string());
        let out = self.cli(&["get", id, "--version", &v, "--no-wait", "--dest", &d]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `contentdist status --json` (null when the agent does not answer).
    pub fn status(&self) -> serde_json::Value {
        let out = self.cli(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// Whether the agent says it is master of an election now.
    pub fn is_master(&self) -> bool {
        self.status()["elections"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["state"] == "master"))
    }

    /// Every job, as `contentdist jobs --json` lists them.
    pub fn jobs(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["jobs", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The first job (an empty value when there is none).
    pub fn first_job(&self) -> serde_json::Value {
        self.jobs().first().cloned().unwrap_or_default()
    }
}

/// Wait until the first job of each of `agents[which]` is done, within `timeout`;
/// a failed job fails the test at once, with its agent's log.
pub fn wait_jobs_done(agents: &[AgentProc], which: &[usize], timeout: Duration) {
    let ok = wait_until(timeout, || {
        which.iter().all(|&i| {
            let j = agents[i].first_job();
            assert_ne!(j["state"], "failed", "agent {i}: {j}\n{}", agents[i].log());
            j["state"] == "done"
        })
    });
    let states: Vec<_> = which.iter().map(|&i| agents[i].first_job()).collect();
    assert!(ok, "not all done: {states:#?}");
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill9();
        // An agent killed with SIGKILL leaves its smbd (its own process group)
        // behind: stop it, as the agent's next start would.
        contentdist::smb::stop_stale(&self.cache_dir().join("smb").join("smb.conf"));
    }
}
