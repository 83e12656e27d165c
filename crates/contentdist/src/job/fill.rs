//! Filling a cache entry: from the origin alone, or as one agent of a subnet.
//!
//! On a subnet the job joins the content's election and follows its role: as
//! master it downloads from the origin (and its peer-copy server hands the blocks on
//! as they are verified); as follower it copies from the master while the master is
//! still downloading. When the role changes (master lost, a better master, this agent
//! elected) the current transfer is dropped and the next one starts from the blocks
//! already verified, so nothing verified is fetched twice. What to do when no master
//! appears or a master fails is the subnet's policy ([`crate::subnet::Membership`]).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::context::{JobContext, PeerSetup};
use super::run::{origin, JobError, JobRun, Outcome};
use super::{JobState, Source};
use crate::cache::ContentEntry;
use crate::manifest::ContentKey;
use crate::origin::DownloadCounters;
use crate::peer::MasterTarget;
use crate::subnet::{share_permille, AfterFailure, Membership, Role, Waited};

/// On a subnet, a job for content this agent holds nothing of joins the content's
/// election as it starts, before it has the manifest. Why: with every agent of an
/// office fetching the manifest first and joining after, the master was elected
/// 1.5 s after its job arrived (0.6 s alone; BENCHMARKS.md §8), which delayed the
/// whole office. The election ranks a holder of nothing like any other, so nothing
/// is lost by joining before the manifest is in. While the window runs the job
/// fetches only the content hash from the origin; once its role is known the master
/// fetches the manifest from the origin and a follower from its master, checked
/// against that hash (`super::manifest`): one manifest over the WAN per subnet.
/// (Followers once fetched their manifests from the origin after the window, behind
/// the master's download, and started copying late; from the master over the LAN
/// they do not wait on the WAN.)
/// Agents that cannot be master (preboot, weight 0) join early too: they follow a
/// master and take its manifest like any follower, and without one their fallback
/// to the origin still comes `fallback_after` after they joined.
/// `None`: not on a subnet, or the content is in the cache already: the manifest
/// comes first, from the cache or the origin.
pub(super) fn join_before_manifest(
    ctx: &JobContext,
    key: &ContentKey,
) -> Result<Option<Membership>, JobError> {
    let Some(peers) = &ctx.peers else {
        return Ok(None);
    };
    if ctx.cache.get(key)?.is_some() {
        return Ok(None);
    }
    Ok(Some(peers.subnet.join(key, 0)))
}

/// A master that does not hold the content yet (404) is asked again this often...
pub(super) const NOT_YET_POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// ...for at most this long after the copy (or the manifest request,
/// `super::manifest`) began; then its 404 fails the job as any other answer would
/// (a master that never gets the content leaves its election when its own job
/// fails, so this is only a bound).
pub(super) const NOT_YET_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Fill `entry` with every block, in the election `early` joined if it did.
pub(super) async fn fill(
    ctx: &JobContext,
    job: &JobRun,
    entry: &Arc<ContentEntry>,
    early: Option<Membership>,
) -> Result<Outcome, JobError> {
    let Some(peers) = &ctx.peers else {
        return download(ctx, job, entry).await;
    };
    let total = entry.manifest().total_size();
    let share = share_permille(entry.verified_bytes(), total);
    let mut member = match early {
        Some(m) => {
            peers.subnet.progress(entry.key(), share);
            m
        }
        None => peers.subnet.join(entry.key(), share),
    };
    let result = follow_roles(ctx, job, peers, &mut member, entry).await;
    if matches!(result, Ok(Outcome::Done)) {
        member.complete(&ctx.tasks);
    }
    result
}

async fn follow_roles(
    ctx: &JobContext,
    job: &JobRun,
    peers: &PeerSetup,
    member: &mut Membership,
    entry: &Arc<ContentEntry>,
) -> Result<Outcome, JobError> {
    // Tell the election how much is verified as it grows, so a half-done peer can
    // win; the reporter stops with this function (its token is dropped-cancelled).
    let reporter_stop = job.stop.child_token();
    let _stop_reporter = reporter_stop.clone().drop_guard();
    let subnet = peers.subnet.clone();
    let e = Arc::clone(entry);
    ctx.tasks.spawn("progress reporter", move |agent_stop| {
        report_progress(subnet, e, agent_stop, reporter_stop)
    });
    let stop = &job.stop;
    let not_yet = std::time::Instant::now();
    loop {
        if entry.is_complete() {
            return Ok(Outcome::Done);
        }
        match member.role() {
            Role::Electing => {
                job.live.report(JobState::Downloading, Source::None);
                tokio::select! {
                    w = member.wait_electing() => if w == Waited::FallBack {
                        tracing::info!(job = job.id, content = %entry.key(), "no master on the subnet: downloading from the origin without serving");
                        return download(ctx, job, entry).await;
                    },
                    _ = stop.cancelled() => return Ok(Outcome::Stopped),
                }
            }
            Role::Master => {
                job.live.set_master("self".into());
                tokio::select! {
                    r = download(ctx, job, entry) => return r,
                    _ = member.changed() => {}
                }
            }
            Role::Follow(m) => {
                job.live.report(JobState::Downloading, Source::Peer);
                job.live.set_master(m.addr.to_string());
                let target = MasterTarget::from_master(&m);
                let copy =
                    peers
                        .client
                        .copy(entry, &target, peers.protocols, &job.live.from_peers, stop);
                let r = tokio::select! {
                    r = copy => r,
                    _ = member.changed() => {
                        member.reset_failures();
                        continue;
                    }
                };
                match r {
                    Ok(_) => return Ok(Outcome::Done),
                    Err(_) if stop.is_cancelled() => return Ok(Outcome::Stopped),
                    // The master was elected before it fetched the manifest
                    // (see `join_before_manifest`) and does not hold the content
                    // yet: ask again in a moment, for as long as it stays master.
                    Err(e) if e.is_not_held() && not_yet.elapsed() < NOT_YET_FOR => {
                        tokio::select! {
                            _ = tokio::time::sleep(NOT_YET_POLL) => {}
                            _ = member.changed() => {}
                            _ = stop.cancelled() => return Ok(Outcome::Stopped),
                        }
                    }
                    Err(e) if e.is_master_lost() => {
                        tracing::warn!(job = job.id, master = %m.addr, error = %e, "copy from master failed; waiting for the election");
                        tokio::select! {
                            a = member.after_copy_failure() => if a == AfterFailure::GiveUp {
                                return Err(JobError::Peer(e));
                            },
                            _ = stop.cancelled() => return Ok(Outcome::Stopped),
                        }
                    }
                    Err(e) => return Err(JobError::Peer(e)),
                }
            }
        }
    }
}

/// Download every missing block from the origin.
async fn download(
    ctx: &JobContext,
    job: &JobRun,
    entry: &Arc<ContentEntry>,
) -> Result<Outcome, JobError> {
    let origin = origin(ctx)?;
    job.live.report(JobState::Downloading, Source::Origin);
    // The agent's totals count the same bytes as they arrive (live for `status`
    // and the metrics), and so does the serving pacer.
    let pacer = ctx.peers.as_ref().and_then(|p| p.pacer.as_ref());
    let also: Vec<&std::sync::atomic::AtomicU64> = std::iter::once(&ctx.counters.from_origin)
        .chain(pacer.map(|p| &p.origin_bytes))
        .collect();
    let counters = DownloadCounters {
        from_origin: &job.live.from_origin,
        also: &also,
        rejected: &ctx.counters.origin_blocks_rejected,
    };
    let r = origin.download(entry, &counters, &job.stop).await;
    match r {
        Ok(()) => Ok(Outcome::Done),
        Err(_) if job.stop.is_cancelled() => Ok(Outcome::Stopped),
        Err(e) => Err(e.into()),
    }
}

/// Tell the election how much of the content is verified, each time it grows by a
/// permille: candidates and heartbeats carry it.
async fn report_progress(
    subnet: crate::subnet::SubnetHandle,
    entry: Arc<ContentEntry>,
    agent_stop: CancellationToken,
    job_stop: CancellationToken,
) {
    let total = entry.manifest().total_size();
    let mut changes = entry.subscribe();
    let mut last = share_permille(entry.verified_bytes(), total);
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = agent_stop.cancelled() => return,
            _ = job_stop.cancelled() => return,
        }
        let now = share_permille(entry.verified_bytes(), total);
        if now != last {
            last = now;
            subnet.progress(entry.key(), now);
        }
    }
}
