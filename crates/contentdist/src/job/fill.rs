//! Filling a cache entry: from the origin alone, or as one agent of a subnet.
//!
//! On a subnet the job joins the content's election and follows its role: as
//! master it downloads from the origin (and its peer-copy server hands the blocks on
//! as they are verified); as follower it copies from the master while the master is
//! still downloading. When the role changes (master lost, a better master, this agent
//! elected) the current transfer is dropped and the next one starts from the blocks
//! already verified, so nothing verified is fetched twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::manager::Inner;
use super::run::{origin, set_state, JobError};
use super::{JobId, JobState, Source};
use crate::cache::ContentEntry;
use crate::codes::Code;
use crate::origin::{DownloadCounters, OriginError};
use crate::peer::MasterTarget;
use crate::subnet::{share_permille, Role, SubnetHandle};

/// How a job reaches its peers, when it has any.
#[derive(Clone)]
pub struct PeerSetup {
    /// The election driver.
    pub subnet: SubnetHandle,
    /// The peer-copy client.
    pub client: Arc<crate::peer::PeerClient>,
    /// The protocols this agent accepts (`P2PEnabled`).
    pub protocols: crate::config::Protocols,
    /// False for preboot agents and weight 0: they never become master, so when no
    /// master appears they download from the origin themselves, serving nobody.
    pub can_be_master: bool,
    /// How long to wait for a master before that fallback.
    pub fallback_after: Duration,
}

/// Consecutive failed copies from one master that the election still reports alive
/// before the job gives up with the failure's code (the product's 0x2EFD / 0x4CF:
/// the master's peer-copy server is off or on another port).
const COPY_ATTEMPTS: u32 = 3;

/// How long a master keeps announcing a content after it holds all of it: peers
/// still copying need it; after that it resigns and stays a plain holder (it still
/// answers elections, so a late peer elects it again at once).
const MASTER_LINGER: Duration = Duration::from_secs(600);

/// After a failed copy, how long to wait for the election to notice a dead master
/// (its heartbeats stop: `master_timeout`, 3.5 s) before counting the failure.
const MASTER_GRACE: Duration = Duration::from_secs(5);

/// Fill `entry` with every block.
pub(super) async fn fill(
    inner: &Arc<Inner>,
    id: JobId,
    entry: &Arc<ContentEntry>,
    from_origin: &Arc<AtomicU64>,
    from_peers: &Arc<AtomicU64>,
    stop: &CancellationToken,
) -> Result<(), JobError> {
    let Some(peers) = inner.opts.peers.clone() else {
        return download(inner, id, entry, from_origin, stop).await;
    };
    let key = entry.key().clone();
    let total = entry.manifest().total_size();
    let mut role = peers
        .subnet
        .want(&key, share_permille(entry.verified_bytes(), total));
    let reporter = tokio::spawn(report_progress(
        peers.subnet.clone(),
        Arc::clone(entry),
        stop.child_token(),
    ));
    let _stop_reporter = AbortOnDrop(reporter);
    let mut failures = 0u32;
    let peers_before = from_peers.load(Ordering::Relaxed);
    let result = loop {
        if entry.is_complete() {
            break Ok(());
        }
        let current = role.borrow_and_update().clone();
        match current {
            Role::Electing => {
                set_state(inner, id, JobState::Downloading, Source::None);
                let fallback = async {
                    if peers.can_be_master {
                        std::future::pending::<()>().await
                    } else {
                        tokio::time::sleep(peers.fallback_after).await
                    }
                };
                tokio::select! {
                    _ = role.changed() => {}
                    _ = fallback => {
                        tracing::info!(job = id, content = %key, "no master on the subnet: downloading from the origin without serving");
                        break download(inner, id, entry, from_origin, stop).await;
                    }
                    _ = stop.cancelled() => break Err(JobError::Stopped),
                }
            }
            Role::Master => {
                let r = tokio::select! {
                    r = download(inner, id, entry, from_origin, stop) => Some(r),
                    _ = role.changed() => None,
                };
                if let Some(r) = r {
                    break r;
                }
            }
            Role::Follow(m) => {
                set_state(inner, id, JobState::Downloading, Source::Peer);
                let target = MasterTarget {
                    addr: m.addr,
                    http_port: m.http_port,
                    https_port: m.https_port,
                    protocols: m.protocols,
                    p2p_key: m.p2p_key.0,
                };
                let copy = peers
                    .client
                    .copy(entry, &target, peers.protocols, from_peers, stop);
                let r = tokio::select! {
                    r = copy => Some(r),
                    _ = role.changed() => None,
                };
                match r {
                    None => {}
                    Some(Ok(_)) => break Ok(()),
                    Some(Err(e)) if e.code() == Code::CANCELLED => break Err(JobError::Stopped),
                    Some(Err(e @ crate::peer::PeerError::ProtocolNotImplemented { .. })) => {
                        // A protocol in common exists but is not implemented here yet
                        // (SMB, HTTPS): the content still has to arrive.
                        tracing::warn!(job = id, error = %e, "downloading from the origin instead");
                        break download(inner, id, entry, from_origin, stop).await;
                    }
                    Some(Err(e)) if e.is_master_lost() => {
                        tracing::warn!(job = id, master = %m.addr, error = %e, "copy from master failed; waiting for the election");
                        tokio::select! {
                            // A new master (or this agent): the blocks verified so far stay.
                            _ = role.changed() => failures = 0,
                            _ = tokio::time::sleep(MASTER_GRACE) => {
                                failures += 1;
                                if failures >= COPY_ATTEMPTS {
                                    break Err(JobError::Peer(e));
                                }
                            }
                            _ = stop.cancelled() => break Err(JobError::Stopped),
                        }
                    }
                    Some(Err(e)) => break Err(JobError::Peer(e)),
                }
            }
        }
    };
    let copied = from_peers.load(Ordering::Relaxed) - peers_before;
    inner
        .counters
        .from_peers
        .fetch_add(copied, Ordering::Relaxed);
    if result.is_ok() {
        peers.subnet.complete(&key);
        if *role.borrow() == Role::Master {
            let subnet = peers.subnet.clone();
            let agent_stop = inner.opts.shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(MASTER_LINGER) => {
                        subnet.forget(&key);
                        subnet.complete(&key);
                    }
                    _ = agent_stop.cancelled() => {}
                }
            });
        }
    }
    result
}

/// Download every missing block from the origin.
async fn download(
    inner: &Arc<Inner>,
    id: JobId,
    entry: &Arc<ContentEntry>,
    from_origin: &Arc<AtomicU64>,
    stop: &CancellationToken,
) -> Result<(), JobError> {
    let origin = origin(inner)?;
    set_state(inner, id, JobState::Downloading, Source::Origin);
    let before = from_origin.load(Ordering::Relaxed);
    let r = origin
        .download(entry, &DownloadCounters { from_origin }, stop)
        .await;
    inner.counters.from_origin.fetch_add(
        from_origin.load(Ordering::Relaxed) - before,
        Ordering::Relaxed,
    );
    match r {
        Err(OriginError::Stopped) => Err(JobError::Stopped),
        r => Ok(r?),
    }
}

/// Tell the election how much of the content is verified, each time it grows by a
/// permille: candidates and heartbeats carry it, so a half-done peer can win.
async fn report_progress(subnet: SubnetHandle, entry: Arc<ContentEntry>, stop: CancellationToken) {
    let total = entry.manifest().total_size();
    let mut changes = entry.subscribe();
    let mut last = share_permille(entry.verified_bytes(), total);
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
        let now = share_permille(entry.verified_bytes(), total);
        if now != last {
            last = now;
            subnet.progress(entry.key(), now);
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
