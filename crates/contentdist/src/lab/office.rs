//! `contentdist lab`: a branch office in one process. An origin behind a slow WAN
//! link ([`LabOrigin`]), N real agents on 127.0.0.x electing a master over UDP
//! broadcast and copying from it over HTTP, generated content, every agent fetching
//! it; then a table of who fetched what from where, and the WAN saved against every
//! agent downloading directly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::host::Host;
use super::origin::{LabOrigin, LabOriginOptions};
use crate::agent::{Agent, AgentHandle};
use crate::config::{Config, P2PEnabled};
use crate::election::ElectionState;
use crate::job::{JobInfo, JobRequest, JobState};
use crate::publish::{publish, PublishOptions};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Number of agents (the "hosts" of the office).
    pub agents: usize,
    /// Size of the generated content in bytes.
    pub size: u64,
    /// The WAN link's rate in bytes per second (all origin traffic shares it).
    pub wan_rate: u64,
    /// Kill the master (abruptly: no resignation) once it holds this share (0..1).
    pub kill_master_at: Option<f64>,
    /// Where to put everything; `None`: a temporary directory, removed at the end.
    pub work_dir: Option<PathBuf>,
    /// Give up after this long.
    pub timeout: Duration,
    /// Peer copy on (the product); off gives the baseline: every agent downloads
    /// directly from the origin through the same WAN link.
    pub peer_copy: bool,
    /// Serve each agent's metrics and status page on its own address (a free
    /// port) and give their URLs in the progress lines.
    pub metrics: bool,
}

impl Default for LabOptions {
    /// 8 agents, 64 MiB, a 100 Mbit/s WAN: the master needs ~5.4 s, every agent
    /// downloading directly would need ~43 s.
    fn default() -> Self {
        LabOptions {
            agents: 8,
            size: 64 * 1024 * 1024,
            wan_rate: 100_000_000 / 8,
            kill_master_at: None,
            work_dir: None,
            timeout: Duration::from_secs(600),
            peer_copy: true,
            metrics: false,
        }
    }
}

/// One agent's line of the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AgentRow {
    /// Its address.
    pub addr: IpAddr,
    /// master, peer, or master (killed).
    pub role: String,
    /// Final job state.
    pub state: String,
    /// Bytes it took from the origin.
    pub from_origin: u64,
    /// Bytes it copied from peers.
    pub from_peers: u64,
    /// Seconds from the start of the jobs until it held everything.
    pub seconds: f64,
    /// Its delivered files are byte for byte the published ones.
    pub identical: bool,
}

/// What the lab measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LabReport {
    /// One row per agent.
    pub agents: Vec<AgentRow>,
    /// Size of the content.
    pub content_bytes: u64,
    /// Bytes that crossed the WAN (the origin's body bytes, manifests included).
    pub wan_bytes: u64,
    /// Bytes the WAN would carry if every agent downloaded directly.
    pub direct_wan_bytes: u64,
    /// Percent of WAN bytes saved against that.
    pub wan_saving_percent: f64,
    /// Seconds until every surviving agent held the content.
    pub seconds: f64,
    /// Seconds every agent downloading directly would need at the WAN rate.
    pub direct_seconds: f64,
    /// The WAN rate used, bytes per second.
    pub wan_rate: u64,
    /// How many times an agent became master of the content, counted from the
    /// agents' own election actions (`BecomeMaster`): 1 in a healthy office, 2
    /// after killing the master.
    pub masters_elected: usize,
    /// The most agents that were master of the content at the same time.
    pub most_masters_at_once: usize,
    /// Every agent that was master at some point, with how many times.
    pub masters: Vec<(IpAddr, usize)>,
    /// Origin downloads begun before the election window ended (head starts)...
    pub head_starts: u64,
    /// ...and those of them that ended without a mastership.
    pub head_starts_ended: u64,
}

/// Masterships seen in the lab: (agent, since, until) in lab time.
type Spans = Vec<(IpAddr, Instant, Instant)>;

/// The masterships of agent `a` at `addr`, those still running ended at `now`.
fn spans_of(a: &AgentHandle, addr: IpAddr, now: Instant) -> Spans {
    a.masterships()
        .into_iter()
        .map(|m| (addr, m.since, m.until.unwrap_or(now)))
        .collect()
}

/// How many masterships overlap at most (one ending as another starts does not).
fn most_at_once(spans: &Spans) -> usize {
    let mut edges: Vec<(Instant, i32)> = spans
        .iter()
        .flat_map(|&(_, a, b)| [(a, 1), (b, -1)])
        .collect();
    // At the same instant, ends before starts.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// Why the lab failed.
#[derive(Debug, thiserror::Error)]
pub enum LabRunError {
    /// Preparing the work directory or the content failed.
    #[error("lab: {0}")]
    Setup(String),
    /// An agent did not start.
    #[error("lab: agent {addr}: {source}")]
    Agent {
        /// The agent's address.
        addr: IpAddr,
        /// The cause.
        source: crate::agent::AgentError,
    },
    /// Not every agent finished in time.
    #[error("lab: not every agent finished within {0:?}")]
    Timeout(Duration),
    /// The origin did not start.
    #[error(transparent)]
    Origin(#[from] super::LabError),
}

impl LabRunError {
    /// The catalogue code.
    pub fn code(&self) -> crate::codes::Code {
        use crate::codes::Code;
        match self {
            LabRunError::Agent { source, .. } => source.code(),
            LabRunError::Timeout(_) => Code::TIMEOUT,
            LabRunError::Origin(e) => e.code(),
            LabRunError::Setup(_) => Code::CONFIG_INVALID,
        }
    }
}

const ID: &str = "LAB00001";

/// Deterministic pseudo-random bytes (BLAKE3 in extended-output mode: fast and
/// incompressible, so nothing along the way can shortcut the transfer).
fn generate(path: &Path, size: u64, seed: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut xof = blake3::Hasher::new().update(seed.as_bytes()).finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.read_exact(&mut buf[..n])?;
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()
}

fn same_file(a: &Path, b: &Path) -> bool {
    let hash = |p: &Path| -> Option<blake3::Hash> {
        let mut h = blake3::Hasher::new();
        h.update_reader(std::fs::File::open(p).ok()?).ok()?;
        Some(h.finalize())
    };
    matches!((hash(a), hash(b)), (Some(x), Some(y)) if x == y)
}

/// The settings of lab agent `i`.
fn agent_config(
    work: &Path,
    i: usize,
    origin: &str,
    election_port: u16,
    peer_copy: bool,
) -> Config {
    let dir = work.join(format!("agent{i:02}"));
    let p2p = if peer_copy {
        P2PEnabled::HTTP | P2PEnabled::NET_LITERAL_NAMES
    } else {
        0
    };
    Config {
        cache_dir: dir.join("cache"),
        control_socket: dir.join("control.sock"),
        origin_url: Some(origin.to_string()),
        p2p_enabled: P2PEnabled(p2p),
        p2p_http_port: 0,
        p2p_port: election_port,
        listen_address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i as u8)),
        election_address: IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255)),
        origin_stall_timeout_secs: 10,
        site: "lab".into(),
        // Many agents in one process: no metrics listener each, unless asked
        // (`LabOptions::metrics`).
        metrics_address: None,
        ..Config::default()
    }
}

/// The most agents one lab runs (each has its own addresses, sockets and tasks).
pub const MAX_AGENTS: usize = 200;

/// Run the lab; `progress` receives a line about every second.
pub async fn run(
    opts: LabOptions,
    mut progress: impl FnMut(&str),
) -> Result<LabReport, LabRunError> {
    if opts.agents == 0 || opts.agents > MAX_AGENTS {
        return Err(LabRunError::Setup(format!(
            "--agents must be 1..={MAX_AGENTS}, not {}",
            opts.agents
        )));
    }
    let temp;
    let work = match &opts.work_dir {
        Some(d) => d.clone(),
        None => {
            temp = TempDir::new()?;
            temp.0.clone()
        }
    };
    let setup = |e: std::io::Error| LabRunError::Setup(e.to_string());
    let src = work.join("src");
    generate(&src.join("image.wim"), opts.size, "image")?;
    generate(&src.join("drivers/net.ko"), 300_000, "net").map_err(setup)?;
    generate(&src.join("setup.cfg"), 2_000, "cfg").map_err(setup)?;
    let origin_root = work.join("origin");
    publish(&PublishOptions {
        source_dir: src.clone(),
        content_id: ID.into(),
        version: 1,
        out_root: origin_root.clone(),
        force: true,
        ..PublishOptions::default()
    })
    .map_err(|e| LabRunError::Setup(e.to_string()))?;
    let content_bytes = opts.size + 302_000;

    let stop = CancellationToken::new();
    // The origin on a thread of its own, as a separate machine (see `host`).
    let origin_host = Host::start("lab-origin").map_err(setup)?;
    let origin_opts = LabOriginOptions {
        root: origin_root,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        rate_bytes_per_sec: Some(opts.wan_rate),
        shutdown: stop.clone(),
    };
    let origin = origin_host
        .run(async move { LabOrigin::start(origin_opts) })
        .await
        .map_err(LabRunError::Setup)??;
    let port = crate::util::free_udp_port()
        .map_err(|e| LabRunError::Setup(format!("no free UDP port: {e}")))?;
    let mut agents: Vec<Option<AgentHandle>> = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..opts.agents {
        let mut config = agent_config(&work, i, &origin.url(), port, opts.peer_copy);
        let addr = config.listen_address;
        if opts.metrics {
            config.metrics_address = Some(SocketAddr::new(addr, 0));
        }
        let a = Agent::start(config)
            .await
            .map_err(|source| LabRunError::Agent { addr, source })?;
        agents.push(Some(a));
        addrs.push(addr);
    }
    progress(&format!(
        "{} agents on 127.0.0.10-{}{}, origin {} behind a {:.0} Mbit/s WAN, content {:.1} MiB",
        opts.agents,
        9 + opts.agents,
        if opts.peer_copy {
            ""
        } else {
            " (baseline: peer copy off, each downloads directly)"
        },
        origin.url(),
        opts.wan_rate as f64 * 8.0 / 1e6,
        content_bytes as f64 / 1048576.0
    ));

    for a in agents.iter().flatten().filter(|_| opts.metrics) {
        if let Some(url) = a.status().metrics {
            progress(&format!(
                "status page {}  metrics {url}",
                url.trim_end_matches("metrics")
            ));
        }
    }

    let started = Instant::now();
    for (i, a) in agents.iter().enumerate() {
        let a = a.as_ref().expect("running");
        a.jobs()
            .submit(JobRequest {
                content_id: ID.into(),
                version: 1,
                dest: Some(work.join(format!("agent{i:02}/delivered"))),
                content_hash: None,
                priority: 5,
            })
            .map_err(|e| LabRunError::Setup(e.message))?;
    }

    let mut finished: Vec<Option<(JobInfo, f64)>> = vec![None; opts.agents];
    let mut killed: Option<usize> = None;
    let mut spans: Spans = Vec::new();
    let mut last_line = Instant::now();
    loop {
        for (i, a) in agents.iter().enumerate() {
            let Some(a) = a else { continue };
            if finished[i].is_some() {
                continue;
            }
            if let Some(j) = a.jobs().list().into_iter().next() {
                if j.state.is_final() {
                    finished[i] = Some((j, started.elapsed().as_secs_f64()));
                }
            }
        }
        if let (Some(at), None) = (opts.kill_master_at, killed) {
            if let Some(m) = master_index(&agents) {
                let j = agents[m].as_ref().expect("running").jobs().list();
                let share = j
                    .first()
                    .map_or(0.0, |j| j.bytes_verified as f64 / content_bytes as f64);
                if share >= at {
                    let a = agents[m].take().expect("running");
                    spans.extend(spans_of(&a, addrs[m], Instant::now()));
                    a.kill();
                    progress(&format!(
                        "killed the master {} at {:.0}% (no resignation: the others must notice)",
                        addrs[m],
                        share * 100.0
                    ));
                    killed = Some(m);
                    finished[m] = j
                        .into_iter()
                        .next()
                        .map(|j| (j, started.elapsed().as_secs_f64()));
                }
            }
        }
        let running: Vec<usize> = (0..opts.agents)
            .filter(|&i| finished[i].is_none())
            .collect();
        if running.is_empty() {
            break;
        }
        if started.elapsed() > opts.timeout {
            stop.cancel();
            return Err(LabRunError::Timeout(opts.timeout));
        }
        if last_line.elapsed() >= Duration::from_secs(1) {
            last_line = Instant::now();
            let mut held = 0u64;
            for a in agents.iter().flatten() {
                held += a.jobs().list().first().map_or(0, |j| j.bytes_verified);
            }
            let master =
                master_index(&agents).map_or("electing".to_string(), |m| addrs[m].to_string());
            progress(&format!(
                "t={:5.1}s  master {master}  {} of {} agents done  {:.0}% of all copies held  WAN {:.1} MiB",
                started.elapsed().as_secs_f64(),
                opts.agents - running.len(),
                opts.agents,
                held as f64 * 100.0 / (content_bytes as f64 * agents.iter().flatten().count() as f64),
                origin.bytes_served() as f64 / 1048576.0
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let wan_bytes = origin.bytes_served();

    let mut rows = Vec::new();
    for i in 0..opts.agents {
        let (j, t) = finished[i].clone().expect("every agent finished");
        let dest = work.join(format!("agent{i:02}/delivered"));
        let identical = j.state == JobState::Done
            && ["image.wim", "drivers/net.ko", "setup.cfg"]
                .iter()
                .all(|f| same_file(&src.join(f), &dest.join(f)));
        let role = match (Some(i) == killed, j.bytes_from_origin > 0) {
            _ if !opts.peer_copy => "direct".to_string(),
            (true, _) => "master (killed)".to_string(),
            (false, true) if killed.is_some() => "new master".to_string(),
            (false, true) => "master".to_string(),
            (false, false) => "peer".to_string(),
        };
        rows.push(AgentRow {
            addr: addrs[i],
            role,
            state: j.state.to_string(),
            from_origin: j.bytes_from_origin,
            from_peers: j.bytes_from_peers,
            seconds: t,
            identical,
        });
    }
    let end = Instant::now();
    for (i, a) in agents.iter().enumerate() {
        if let Some(a) = a {
            spans.extend(spans_of(a, addrs[i], end));
        }
    }
    let mut masters: Vec<(IpAddr, usize)> = Vec::new();
    for (addr, ..) in &spans {
        match masters.iter_mut().find(|(a, _)| a == addr) {
            Some((_, n)) => *n += 1,
            None => masters.push((*addr, 1)),
        }
    }
    let agents: Vec<_> = agents.into_iter().flatten().collect();
    let (head_starts, head_starts_ended) = agents
        .iter()
        .map(|a| a.head_starts())
        .fold((0, 0), |(s, e), h| (s + h.taken, e + h.ended));
    for a in &agents {
        a.shutdown();
    }
    for a in agents {
        let _ = a.join().await;
    }
    stop.cancel();
    let direct_wan_bytes = content_bytes * opts.agents as u64;
    Ok(LabReport {
        agents: rows,
        content_bytes,
        wan_bytes,
        direct_wan_bytes,
        wan_saving_percent: 100.0 * (1.0 - wan_bytes as f64 / direct_wan_bytes as f64),
        seconds,
        direct_seconds: direct_wan_bytes as f64 / opts.wan_rate as f64,
        wan_rate: opts.wan_rate,
        masters_elected: spans.len(),
        most_masters_at_once: most_at_once(&spans),
        masters,
        head_starts,
        head_starts_ended,
    })
}

/// The agent that says it is master of the lab's content.
fn master_index(agents: &[Option<AgentHandle>]) -> Option<usize> {
    agents.iter().position(|a| {
        a.as_ref().is_some_and(|a| {
            a.elections()
                .iter()
                .any(|e| e.state == ElectionState::Master)
        })
    })
}

/// A directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, LabRunError> {
        let p = std::env::temp_dir().join(format!(
            "contentdist-lab-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p)
            .map_err(|e| LabRunError::Setup(format!("{}: {e}", p.display())))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl From<std::io::Error> for LabRunError {
    fn from(e: std::io::Error) -> Self {
        LabRunError::Setup(e.to_string())
    }
}
