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
use super::run::{origin, JobError};

/// How long a job waits for its role before it fetches the manifest from the origin
/// itself: the election window (0.5 s) and then some.
const ROLE_WAIT: Duration = Duration::from_secs(3);
/// A master elected a moment ago may not hold the manifest yet (it fetches it from
/// the origin once elected): asked again this often...
const MASTER_POLL: Duration = Duration::from_millis(25);
/// ...for at most this long.
const MASTER_WAIT: Duration = Duration::from_secs(2);

/// The manifest of `key`, checked against `expect_hash` when given.
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

/// The manifest from the master this job follows, checked against the content hash
/// the job or the origin gives; `None` when this job is master, has no hash to check
/// with, or the master does not give a manifest that passes.
async fn from_master(
    ctx: &JobContext,
    peers: &PeerSetup,
    member: &mut Membership,
    key: &ContentKey,
    expect_hash: Option<&str>,
) -> Option<Manifest> {
    let hash = async {
        if let Some(h) = expect_hash {
            return Some(h.to_string());
        }
        match origin(ctx)
            .ok()?
            .fetch_content_hash(key.id(), key.version())
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "no content hash from the origin: the manifest comes from the origin");
                None
            }
        }
    };
    let role = tokio::time::timeout(ROLE_WAIT, async {
        loop {
            match member.role() {
                Role::Electing => member.changed().await,
                role => return role,
            }
        }
    });
    let (hash, role) = tokio::join!(hash, role);
    let (Some(hash), Ok(Role::Follow(master))) = (hash, role) else {
        return None;
    };
    let target = MasterTarget::from_master(&master);
    let started = tokio::time::Instant::now();
    loop {
        let answer = peers
            .client
            .fetch_manifest(&target, peers.protocols, key.id(), key.version())
            .await;
        let e = match answer {
            Ok(m) => match m.check_is(key.id(), key.version(), Some(&hash)) {
                Ok(()) => {
                    tracing::debug!(master = %master.addr, "manifest taken from the master, content hash checked");
                    return Some(m);
                }
                Err(e) => {
                    tracing::warn!(master = %master.addr, error = %e,
                        "the master's manifest is not the one the origin publishes: the manifest comes from the origin");
                    return None;
                }
            },
            Err(e) => e,
        };
        let not_yet = matches!(&e, crate::peer::PeerError::Http(f) if f.status() == Some(404));
        if !not_yet || started.elapsed() >= MASTER_WAIT {
            tracing::info!(master = %master.addr, code = %e.code(), error = %e,
                "no manifest from the master: the manifest comes from the origin");
            return None;
        }
        tokio::time::sleep(MASTER_POLL).await;
    }
}
