//! The task that owns smbd: start it, watch it, start it again when it dies, stop
//! it with the agent.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::conf::{self, ConfOptions};
use super::machines::Machines;
use super::{SmbError, SmbState, SmbStatus};
use crate::peer::P2P_USER;

/// The first wait before starting smbd again.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait before starting smbd again.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// smbd running this long resets the back-off.
const STABLE: Duration = Duration::from_secs(60);
/// How long smbd has to accept connections once started.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long smbd has to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub(super) struct Supervisor {
    pub(super) conf: ConfOptions,
    pub(super) smbd: PathBuf,
    pub(super) smbpasswd: PathBuf,
    /// To read smbd's counters; `None`: bytes served are not counted.
    pub(super) smbstatus: Option<PathBuf>,
    /// Bytes served by the runs of smbd that ended.
    pub(super) served_before: u64,
    pub(super) status: watch::Sender<SmbStatus>,
    pub(super) password: watch::Receiver<String>,
    /// Machine accounts; `None`: the P2P account only.
    pub(super) machines: Option<Machines>,
    /// Host names heard in elections, to register (see [`super::machines`]).
    pub(super) hosts: mpsc::UnboundedReceiver<String>,
}

/// How one run of smbd ended.
enum Ended {
    /// The agent stops.
    Stopped,
    /// smbd died, or never came up.
    Failed(SmbError),
}

impl Supervisor {
    pub(super) async fn run(mut self, stop: CancellationToken) {
        if self.machines.is_some() {
            // Machine accounts of an earlier run may come from another machine key:
            // start from an empty database, the names are heard again.
            let db = self.conf.dir.join("private").join("passdb.tdb");
            if let Err(e) = std::fs::remove_file(&db) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %db.display(), error = %e, "SMB: the old password database could not be removed");
                }
            }
        }
        let mut backoff = BACKOFF_MIN;
        loop {
            let started = Instant::now();
            let e = match self.run_once(&stop).await {
                Ended::Stopped => break,
                Ended::Failed(e) => e,
            };
            if started.elapsed() >= STABLE {
                backoff = BACKOFF_MIN;
            }
            tracing::warn!(code = %e.code(), error = %e, retry_in = ?backoff, "SMB server (smbd) stopped serving; starting it again");
            self.status.send_modify(|s| {
                s.state = SmbState::Restarting;
                s.pid = None;
                s.restarts += 1;
                s.error = Some(format!("{} {e}", e.code()));
            });
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => break,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        self.status.send_modify(|s| {
            s.state = SmbState::Stopped;
            s.pid = None;
        });
    }

    /// Prepare, start, wait until it listens, then watch it until it dies or the
    /// agent stops.
    async fn run_once(&mut self, stop: &CancellationToken) -> Ended {
        self.status.send_modify(|s| s.state = SmbState::Starting);
        stop_stale(&self.conf.conf_file());
        // smbd's counters start from nothing with each run (`count_served` counts
        // on it): a killed run's file would hold its counts until the new
        // smbd resets them, at some moment after it listens. (Processes of a
        // killed run still writing to the old file do so unseen: what they served
        // may go uncounted, never counted twice.)
        let profile = self.conf.dir.join("cache").join("smbprofile.tdb");
        if let Err(e) = std::fs::remove_file(&profile) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(path = %profile.display(), error = %e, "smbd's old counters not removed");
            }
        }
        if let Err(e) = prepare(&self.conf) {
            return Ended::Failed(e);
        }
        if let Some(m) = &self.machines {
            let files = super::machines::passwd_file(&self.conf);
            if let Err(source) = m.write_files(&self.conf, &[]) {
                return Ended::Failed(SmbError::Setup {
                    path: files,
                    source,
                });
            }
        }
        let password = self.password.borrow_and_update().clone();
        if let Err(e) = self.set_password(&password).await {
            return Ended::Failed(e);
        }
        // Names heard while smbd was not running.
        let mut pending = Vec::new();
        while let Ok(host) = self.hosts.try_recv() {
            pending.push(host);
        }
        self.register(pending).await;
        let env = self.env();
        let mut child = match spawn(&self.smbd, &self.conf, &env) {
            Ok(c) => c,
            Err(e) => return Ended::Failed(e),
        };
        let pid = child.id();
        let probe = probe_addr(self.conf.listen, self.conf.port);
        let ready = tokio::select! {
            r = wait_listening(probe, &mut child) => r,
            _ = stop.cancelled() => {
                terminate(&mut child, pid).await;
                return Ended::Stopped;
            }
        };
        if let Err(e) = ready {
            terminate(&mut child, pid).await;
            return Ended::Failed(self.with_output(e));
        }
        tracing::info!(url = %super::share_url(self.conf.listen, self.conf.port), share = conf::SHARE_NAME,
            signing = "mandatory", pid, config = %self.conf.conf_file().display(), "SMB share serving the cache (read-only)");
        self.status.send_modify(|s| {
            s.state = SmbState::Running;
            s.pid = pid;
        });
        let mut poll = tokio::time::interval(super::SERVED_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    let e = SmbError::Exited { status, detail: String::new() };
                    terminate(&mut child, pid).await;
                    self.count_served(true).await;
                    return Ended::Failed(self.with_output(e));
                }
                _ = poll.tick() => self.count_served(false).await,
                changed = self.password.changed() => {
                    if changed.is_err() {
                        // The share's handle is gone: nobody can change it any more.
                        std::future::pending::<()>().await;
                    }
                    let password = self.password.borrow_and_update().clone();
                    match self.set_password(&password).await {
                        Ok(()) => tracing::info!("SMB: the P2P account's password changed with the announced key"),
                        Err(e) => tracing::warn!(code = %e.code(), error = %e, "SMB: the P2P account's password could not be changed"),
                    }
                }
                Some(host) = self.hosts.recv(), if self.machines.is_some() => {
                    let mut batch = vec![host];
                    while let Ok(host) = self.hosts.try_recv() {
                        batch.push(host);
                    }
                    self.register(batch).await;
                }
                _ = stop.cancelled() => {
                    // Read before stopping it: a connection's counters reach the
                    // total through the parent smbd, and are lost if both end at
                    // once.
                    self.count_served(false).await;
                    terminate(&mut child, pid).await;
                    self.count_served(true).await;
                    return Ended::Stopped;
                }
            }
        }
    }

    /// The environment smbd and smbpasswd run with: with machine accounts, the
    /// agent's own users (see [`super::machines`]).
    fn env(&self) -> Vec<(&'static str, PathBuf)> {
        self.machines
            .as_ref()
            .map(|m| m.env(&self.conf).to_vec())
            .unwrap_or_default()
    }

    /// Set the P2P account's password.
    async fn set_password(&self, password: &str) -> Result<(), SmbError> {
        smbpasswd_add(
            &self.smbpasswd,
            &self.conf,
            &self.env(),
            conf::UNIX_USER,
            password,
        )
        .await
        .map_err(SmbError::Password)
    }

    /// Register the machine accounts of the hosts in `batch` not registered yet:
    /// their Unix users first (smbpasswd wants them), then their passwords. Hosts
    /// that failed are kept and tried again with the next batch or start of smbd
    /// (the election driver passes each name on only once).
    async fn register(&mut self, batch: Vec<String>) {
        let retry = match &mut self.machines {
            Some(m) => std::mem::take(&mut m.failed),
            None => return,
        };
        let Some(m) = &self.machines else { return };
        let mut new: Vec<String> = Vec::new();
        for host in retry.into_iter().chain(batch) {
            if m.is_new(&host) && !new.iter().any(|n| n.eq_ignore_ascii_case(&host)) {
                new.push(host);
            }
        }
        if new.is_empty() {
            return;
        }
        if let Err(e) = m.write_files(&self.conf, &new) {
            let e = SmbError::Setup {
                path: super::machines::passwd_file(&self.conf),
                source: e,
            };
            tracing::warn!(code = %e.code(), error = %e, "SMB: machine accounts not registered");
            self.status.send_modify(|s| {
                if let Some(a) = &mut s.machine_accounts {
                    a.error = Some(format!("{} {e}", e.code()));
                }
            });
            if let Some(m) = &mut self.machines {
                m.failed = new;
            }
            return;
        }
        let env = self.env();
        let mut done = Vec::new();
        let mut again = Vec::new();
        let mut failed = None;
        for host in new {
            let (account, password) = m.credentials(&host);
            match smbpasswd_add(&self.smbpasswd, &self.conf, &env, &account, &password).await {
                Ok(()) => done.push(host.to_ascii_lowercase()),
                Err(detail) => {
                    again.push(host);
                    failed = Some(SmbError::Machine { account, detail });
                }
            }
        }
        let Some(m) = &mut self.machines else { return };
        let added = done.len();
        m.known.extend(done);
        m.failed = again;
        let registered = m.known.len() as u32;
        if added > 0 {
            tracing::info!(
                added,
                registered,
                "SMB: machine accounts registered for hosts heard in elections"
            );
        }
        if let Some(e) = &failed {
            tracing::warn!(code = %e.code(), error = %e, "SMB: a machine account could not be registered");
        }
        // The error stays until every host heard is registered.
        self.status.send_modify(|s| {
            if let Some(a) = &mut s.machine_accounts {
                a.registered = registered;
                a.error = failed.as_ref().map(|e| format!("{} {e}", e.code()));
            }
        });
    }

    /// Data bytes smbd sent in answers to READs, from its profiling counters (they
    /// outlive it until the next start).
    async fn read_served(&self) -> Option<u64> {
        let smbstatus = self.smbstatus.as_ref()?;
        let out = Command::new(smbstatus)
            .arg("-s")
            .arg(self.conf.conf_file())
            .arg("--profile")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(10), out)
            .await
            .ok()?
            .ok()?;
        if !out.status.success() {
            return None;
        }
        parse_read_bytes(&String::from_utf8_lossy(&out.stdout))
    }

    /// Update `bytes_served` with this run's count; at the run's `end`, keep it for
    /// good. A failed read keeps the last count. A run counts from zero: its
    /// counters file was removed before smbd started. (Counting from a first
    /// reading instead lost a whole run's bytes whenever peers read before it.)
    async fn count_served(&mut self, end: bool) {
        let now = self.read_served().await;
        let before = self.served_before;
        self.status.send_modify(|s| {
            if let Some(n) = now {
                // Never less than a reading before: counters of processes that
                // ended with smbd can drop out of a later one.
                s.bytes_served = s.bytes_served.max(before + n);
            }
        });
        if end {
            self.served_before = self.status.borrow().bytes_served;
        }
    }

    /// `e` with the end of smbd's output, where it says why.
    fn with_output(&self, e: SmbError) -> SmbError {
        let tail = tail_of(&output_file(&self.conf), 6);
        match e {
            SmbError::Exited { status, .. } => SmbError::Exited {
                status,
                detail: tail,
            },
            other => other,
        }
    }
}

/// The data bytes smbd sent in answers to READs, from `smbstatus --profile`:
/// `smb2_read_outbytes` less the 80 bytes of SMB2 header and READ response of each
/// answer (`smb2_read_count`). (`syscall_*pread_bytes` would not do: smbd counts
/// its own reads of its databases there too.) `None` when the output has no such
/// counters (profiling off, or another output).
pub(super) fn parse_read_bytes(profile: &str) -> Option<u64> {
    let value = |name: &str| {
        profile.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n.trim() == name).then(|| v.trim().parse::<u64>().ok())?
        })
    };
    let out = value("smb2_read_outbytes")?;
    let count = value("smb2_read_count")?;
    Some(out.saturating_sub(count.saturating_mul(80)))
}

/// The file smbd's standard output and error go to (messages from before its log
/// opens: a port in use, a bad setting).
fn output_file(conf: &ConfOptions) -> PathBuf {
    conf.dir.join("log").join("smbd.out")
}

/// The last `n` non-empty lines of `path`, joined with ` | `.
fn tail_of(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Write the directories, the configuration and the user map.
fn prepare(c: &ConfOptions) -> Result<(), SmbError> {
    let setup = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SmbError::Setup { path, source }
    };
    for d in c.dirs() {
        std::fs::create_dir_all(&d).map_err(setup(&d))?;
    }
    // The password database is smbd's secret: only root reads it.
    let private = c.dir.join("private");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))
        .map_err(setup(&private))?;
    let file = c.conf_file();
    std::fs::write(&file, conf::render(c)).map_err(setup(&file))?;
    let map = c.user_map();
    std::fs::write(&map, conf::render_user_map(P2P_USER)).map_err(setup(&map))?;
    Ok(())
}

/// `smbpasswd -c CONF -a -s USER`, the password twice on standard input; the
/// error says what failed.
async fn smbpasswd_add(
    smbpasswd: &Path,
    c: &ConfOptions,
    env: &[(&'static str, PathBuf)],
    user: &str,
    password: &str,
) -> Result<(), String> {
    let mut child = Command::new(smbpasswd)
        .arg("-c")
        .arg(c.conf_file())
        .args(["-a", "-s", user])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        let input = format!("{password}\n{password}\n");
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| "no answer within 30 s".to_string())?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(format!("{}: {said}", out.status))
    }
}

/// Start smbd in the foreground, in its own process group (so that stopping it
/// stops the children it forks for connections too).
fn spawn(smbd: &Path, c: &ConfOptions, env: &[(&'static str, PathBuf)]) -> Result<Child, SmbError> {
    let out_path = output_file(c);
    let out = std::fs::File::create(&out_path).map_err(|source| SmbError::Setup {
        path: out_path.clone(),
        source,
    })?;
    let err = out.try_clone().map_err(|source| SmbError::Setup {
        path: out_path,
        source,
    })?;
    Command::new(smbd)
        .args(["--foreground", "--no-process-group"])
        .arg("-s")
        .arg(c.conf_file())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(SmbError::Spawn)
}

/// Stop every smbd still running with our configuration file: one left by an
/// earlier run of this agent that was killed (`kill -9`, a crash) before it could
/// stop its smbd, which lives in its own process group. It would hold the port, so
/// that ours could never start, and serve the cache with the old run's password.
/// Found by its command line (`-s CONF`), so a system smbd or another agent's is
/// never touched.
pub fn stop_stale(conf: &Path) -> Vec<i32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let conf = conf.as_os_str().as_encoded_bytes();
    let mut stopped = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let ours = args.first().is_some_and(|a| a.ends_with(b"smbd"))
            && args.windows(2).any(|w| w[0] == b"-s" && w[1] == conf);
        if ours && pid != std::process::id() as i32 {
            // SAFETY: kill has no memory effects; the group is that smbd's own (it
            // was started with process_group(0)), so its children go with it.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
            tracing::warn!(pid, "an smbd of an earlier run of this agent was still running with its configuration; stopped it");
            stopped.push(pid);
        }
    }
    stopped
}

/// Where to check that smbd accepts connections.
fn probe_addr(listen: IpAddr, port: u16) -> SocketAddr {
    let ip = match listen {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        a => a,
    };
    SocketAddr::new(ip, port)
}

/// Wait until `addr` accepts a connection, or smbd exits, or the time is up.
async fn wait_listening(addr: SocketAddr, child: &mut Child) -> Result<(), SmbError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(SmbError::Exited {
                status: status.to_string(),
                detail: String::new(),
            });
        }
        if Instant::now() >= deadline {
            return Err(SmbError::NotListening {
                addr,
                secs: READY_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// SIGTERM to smbd's process group, SIGKILL after [`STOP_GRACE`].
/// `pid` is smbd's, taken at start: once reaped, the child no longer says it, and
/// the connection processes it forked may still live in its group.
async fn terminate(child: &mut Child, pid: Option<u32>) {
    let Some(pid) = pid else { return };
    let group = -(pid as i32);
    // SAFETY: kill has no memory effects; the group is smbd's own (process_group(0)).
    unsafe { libc::kill(group, libc::SIGTERM) };
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = child.wait().await;
    }
    // Children that outlived their parent.
    unsafe { libc::kill(group, libc::SIGKILL) };
}
