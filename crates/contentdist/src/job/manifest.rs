//! Where a job takes its content's manifest from: its master over the LAN when it
//! follows one, else the origin.
//!
//! The manifest is the one thing every agent used to fetch from the origin itself: 16
//! agents sent 16 manifests over the WAN, 128 agents in the lab 128 (4.8 MiB for 64 MiB
//! of content). The origin stays the authority on what is published: a follower
//! fetches only the content hash from it (`content-hash`, 65 bytes, written by
//! `contentdist publish` beside the manifest) while the election runs, then the
//! manifest from its master, and accepts it only when it parses, is for this id and
//! version, and carries that content hash (which covers every field of the manifest,
//! so a master cannot change a block hash or a size without it showing). Anything else
//! (no hash on the origin, no master within the bound, the master's answer refused or
//! failing) falls back to the manifest from the origin, as before, logged.

use std::time::Duration;

use crate::manifest::{ContentKey, Manifest};
use crate::peer::MasterTarget;
use crate::subnet::{Membership, Role};

use super::context::{JobContext, PeerSetup};
use super::fill::{NOT_YET_FOR, NOT_YET_POLL};
use super::run::{origin, JobError};

/// How long a job waits for its role before it fetches the manifest from the origin
/// itself: the election window (0.5 s) and then some.
const ROLE_WAIT: Duration = Duration::from_secs(3);
/// A master elected a moment ago may not hold the manifest yet (it fetches it from
/// the origin once elected): asked again after this, doubling up to the copy's
/// [`NOT_YET_POLL`] (a poll is a `have` and a manifest request, or an SMB log-on),
/// for as long as it stays this job's master and at most [`NOT_YET_FOR`] (a large
/// manifest over a slow WAN takes seconds to reach the master).
const MASTER_POLL_FIRST: Duration = Duration::from_millis(25);

/// The manifest of `key`, checked against `expect_hash` when given. Not
/// cancellation-aware itself: the caller races it against the job's stop.
pub(super) async fn manifest_for(
    ctx: &JobContext,
    key: &ContentKey,
    expect_hash: Option<&str>,
    member: Option<&mut Membership>,
) -> Result<Manifest, JobError> {
    if let (Some(member), Some(peers)) = (member, &ctx.peers) {
        if let Some(m) = from_master(ctx, peers, member, key, expect_hash).await {
            return Ok(m);
        }
    }
    Ok(origin(ctx)?
        .fetch_manifest(key.id(), key.version(), expect_hash)
        .await?)
}

/// The content hash a follower checks its master's manifest with: the job's, else
/// the origin's; `None` when there is none (the origin's file is missing or
/// unreadable), and the manifest then comes from the origin.
async fn content_hash(
    ctx: &JobContext,
    key: &ContentKey,
    expect_hash: Option<&str>,
) -> Option<String> {
    if let Some(h) = expect_hash {
        return Some(h.to_string());
    }
    match origin(ctx)
        .ok()?
        .fetch_content_hash(key.id(), key.version())
        .await
    {
        Ok(Some(h)) => Some(h),
        Ok(None) => {
            tracing::debug!("the origin publishes no content hash for this version: the manifest comes from the origin");
            None
        }
        Err(e) => {
            tracing::info!(error = %e, "no content hash from the origin: the manifest comes from the origin");
            None
        }
    }
}

/// The manifest from the master this job follows, checked against the content hash
/// the job or the origin gives; `None` when this job is master, when there is no
/// hash to check with, when no role is decided within [`ROLE_WAIT`], or when the
/// master gives no manifest that passes while it stays master. A master does not
/// wait for the hash, and without one nobody waits for the role: both fetch from
/// the origin at once, during the election window for the second.
async fn from_master(
    ctx: &JobContext,
    peers: &PeerSetup,
    member: &mut Membership,
    key: &ContentKey,
    expect_hash: Option<&str>,
) -> Option<Manifest> {
    let hash_answer = content_hash(ctx, key, expect_hash);
    tokio::pin!(hash_answer);
    let mut hash = None;
    let deadline = tokio::time::Instant::now() + ROLE_WAIT;
    let master = loop {
        match member.role() {
            Role::Master => return None,
            Role::Follow(m) => break m,
            Role::Electing => {}
        }
        tokio::select! {
            h = &mut hash_answer, if hash.is_none() => hash = Some(h?),
            _ = member.changed() => {}
            _ = tokio::time::sleep_until(deadline) => return None,
        }
    };
    let hash = match hash {
        Some(h) => h,
        None => hash_answer.await?,
    };
    let from = expect_hash.map_or("the origin", |_| "the job");
    let target = MasterTarget::from_master(&master);
    let started = tokio::time::Instant::now();
    let mut pause = MASTER_POLL_FIRST;
    loop {
        let answer = tokio::select! {
            a = peers.client.fetch_manifest(&target, peers.protocols, key.id(), key.version(), Some(&hash)) => a,
            () = other_master(member, master.addr) => return None,
        };
        let e = match answer {
            Ok(m) => {
                tracing::debug!(master = %master.addr, "manifest taken from the master, content hash checked");
                return Some(m);
            }
            Err(e @ crate::peer::PeerError::ManifestMismatch(_)) => {
                tracing::warn!(master = %master.addr, error = %e, hash_from = from,
                    "the master's manifest does not have the expected content hash: the manifest comes from the origin");
                return None;
            }
            Err(e) => e,
        };
        if !e.is_not_held() || started.elapsed() >= NOT_YET_FOR {
            tracing::info!(master = %master.addr, code = %e.code(), error = %e,
                "no manifest from the master: the manifest comes from the origin");
            return None;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = other_master(member, master.addr) => return None,
        }
        pause = (pause * 2).min(NOT_YET_POLL);
    }
}

/// Returns when the election no longer has this job follow the master at `addr`
/// (another master, this agent, or none): its manifest then comes from the origin.
async fn other_master(member: &mut Membership, addr: std::net::IpAddr) {
    loop {
        member.changed().await;
        if !matches!(member.role(), Role::Follow(m) if m.addr == addr) {
            return;
        }
    }
}
