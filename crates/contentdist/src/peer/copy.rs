//! The copy loop: take from the master every block it holds verified and we lack,
//! until the entry is complete, while the master may still be downloading.
//!
//! Each round asks `have` (long-polling when the last round found nothing new to
//! fetch), then fetches runs of consecutive wanted blocks of one file with one Range
//! request each, through the [`crate::transfer`] engine: every block is verified and
//! written by its block writer, off the async runtime. A block that fails is asked
//! for again, up to [`MAX_BAD`] times.
//!
//! A response cut short is asked about: a master cuts a body when it finds the
//! next block changed on its disk, and stops advertising that block first. So the
//! copy asks `have` again: a block no longer held is waited for like any block the
//! master lacks (it comes back once the master repaired it); only a cut at a block
//! the master still claims counts against [`MAX_BAD`].

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::{MasterTarget, PeerClient, Route};
use super::{plan, HaveDoc, PeerBytes, PeerError};
use crate::cache::{BlockRun, ContentEntry};
use crate::config::Protocols;
use crate::transfer::{self, BadBlocks, RunEnd};

/// A block that fails this many times is not asked of this master again.
const MAX_BAD: u32 = 3;

/// How a copy ended well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Every block is verified in the local cache.
    Complete,
}

/// A holder failing this many times (no answer, a refusal, a block that does not
/// verify, an answer cut short) is no longer copied from, for this copy.
const MAX_HOLDER_FAILURES: u32 = 3;

/// At most this many transfers at once, one per source.
const MAX_PARALLEL: usize = 4;

/// An agent that knew of no other holder for more rounds than this in a row takes
/// more than one piece from the master per round, in one request: two, then four,
/// then [`ALONE_MAX_DEPTH`] (one `have`, one plan and one request per 128 MiB
/// instead of per 16 MiB: the pause between pieces was 1.0-1.5 ms on loopback, 5-7 %
/// of a lone copy; BENCHMARKS.md §13, §15 and §16). Not from the first round: peers
/// that start together against a complete master each take their first piece
/// before they learn of each other, and a deeper start would make the master send
/// each of them more first. A holder heard of ends it (the next round plans
/// pieces of 16 MiB again). (Two pieces at once, on two connections, were tried:
/// the HTTPS copy got slower, §15.)
const ALONE_DEEP_AFTER: u32 = 2;

/// At most this many pieces of the master's in one request (128 MiB).
const ALONE_MAX_DEPTH: usize = 8;

/// At most this many holders followed besides the master.
const MAX_HOLDERS: usize = 16;

/// A round that found nothing to fetch while holders are still catching up waits
/// this long before asking again (the master's long-poll does not wake for them).
const HOLDER_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The end of a copy: once this agent lacks at most [`TAIL_BLOCKS`], holders are
/// asked again, and a round that found nothing to fetch waits, only this long. At
/// the end of an office's copy the last blocks reach the master, then their chunk's
/// owner, a few milliseconds apart; waiting [`HOLDER_POLL`] to hear of each step was
/// most of the 16-host office's 0.3 s from the master's last block to the last
/// peer's (BENCHMARKS.md §19). An agent is in that state only for its last chunks,
/// so the faster asking costs the subnet little.
const TAIL_POLL: std::time::Duration = std::time::Duration::from_millis(25);

/// See [`TAIL_POLL`]: two owners' chunks.
const TAIL_BLOCKS: usize = 2 * plan::PIECE_BLOCKS;

/// Whether an agent that lacks `missing` blocks is at the end of its copy.
fn in_tail(missing: usize) -> bool {
    missing <= TAIL_BLOCKS
}

/// How long a round that found nothing to fetch waits, and how often holders are
/// asked again, for an agent that lacks `missing` blocks: [`TAIL_POLL`] at the end
/// of a copy, else [`HOLDER_POLL`].
fn holder_poll(missing: usize) -> std::time::Duration {
    if in_tail(missing) {
        TAIL_POLL
    } else {
        HOLDER_POLL
    }
}

/// A source that answered "busy" (503, its `MaxServingConnections` reached) is
/// not asked for blocks again for this long; its blocks are taken from others
/// meanwhile. Not a failure: a busy holder is never dropped for it.
const BUSY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);

/// Another holder of the content, as this copy follows it.
struct HolderSource {
    target: MasterTarget,
    route: Option<Route>,
    bitmap: Vec<u8>,
    failures: u32,
    dropped: bool,
    busy_until: Option<Instant>,
}

/// The master, as this copy uses it.
struct MasterSource {
    route: Route,
    busy_until: Option<Instant>,
    /// Rounds in a row that knew no other holder (see [`ALONE_DEEP_AFTER`]).
    rounds_alone: u32,
}

fn busy(until: Option<Instant>, now: Instant) -> bool {
    until.is_some_and(|t| now < t)
}

impl PeerClient {
    /// Copy into `entry` every block `target` holds, until `entry` is complete.
    ///
    /// Waits for the master while it is still downloading. With FanOut, blocks
    /// other holders have are taken from them (see `plan`), several transfers at
    /// once, one per source; a holder that fails [`MAX_HOLDER_FAILURES`] times is
    /// dropped and its blocks are taken elsewhere. `from_peers` counts every body
    /// byte received. Errors: [`PeerError::is_master_lost`] when the master stops
    /// answering; [`PeerError::Corrupt`] (`DATA_ERROR`) when one block from the
    /// master failed more than 3 times; [`PeerError::ManifestMismatch`] when the
    /// master holds other content; [`PeerError::Stopped`] when `stop` is
    /// cancelled. Verified blocks stay in the cache whatever happens, for the next
    /// attempt. (`entry` is shared with the blocking threads that verify and write
    /// its blocks.)
    pub async fn copy(
        &self,
        entry: &Arc<ContentEntry>,
        target: &MasterTarget,
        local: Protocols,
        from_peers: &PeerBytes,
        stop: &CancellationToken,
    ) -> Result<CopyOutcome, PeerError> {
        let m = entry.manifest();
        let route = tokio::select! {
            r = self.open(target, local, &m.content_id, m.version) => r?,
            _ = stop.cancelled() => return Err(PeerError::Stopped),
        };
        // Who it logged on as: the P2P account, its machine account, or its client
        // certificate (mutual TLS).
        let account = route
            .credentials
            .as_ref()
            .map_or("client certificate", |(user, _)| user.as_str());
        info!(content = %entry.key(), master = %target.addr, protocol = %route.protocol, account, fan_out = self.fan_out(), "copying from the master");
        let mut master = MasterSource {
            route,
            busy_until: None,
            rounds_alone: 0,
        };
        let mut bad = BadBlocks::new(MAX_BAD);
        let mut after: Option<usize> = None;
        let mut holders: Vec<HolderSource> = Vec::new();
        let mut master_only_since = HashMap::new();
        let mut last_follow: Option<std::time::Instant> = None;
        let result = loop {
            if entry.is_complete() {
                break Ok(CopyOutcome::Complete);
            }
            let holding = self.fan_out().then(|| entry.verified_blocks());
            let have = tokio::select! {
                r = self.have_as(&master.route, after, holding) => r,
                _ = stop.cancelled() => break Err(PeerError::Stopped),
            };
            let (doc, bitmap) = match have {
                Ok(h) => h,
                Err(e) => break Err(e),
            };
            if doc.content_hash != m.content_hash || doc.block_count != m.block_count() {
                break Err(PeerError::ManifestMismatch(format!(
                    "master {} holds {}/{} with content hash {} ({} blocks), this agent wants {} ({} blocks)",
                    target.addr,
                    doc.content_id,
                    doc.version,
                    doc.content_hash,
                    doc.block_count,
                    m.content_hash,
                    m.block_count()
                )));
            }
            // New holders are taken in at once (and asked at once); the ones known
            // are asked again at most every HOLDER_POLL: rounds follow each other
            // as fast as pieces arrive, and 16 peers asking 16 holders each round
            // would be a flood of small requests.
            let added = self.fan_out() && take_in(&mut holders, &doc, self.needs_account(), m);
            let missing_blocks = m.block_count().saturating_sub(entry.verified_blocks());
            let poll = holder_poll(missing_blocks);
            if added || (self.fan_out() && last_follow.is_none_or(|t| t.elapsed() >= poll)) {
                self.follow_holders(&mut holders, local, entry, stop).await;
                last_follow = Some(std::time::Instant::now());
            }
            let now = Instant::now();
            let maps: Vec<Option<&[u8]>> = holders
                .iter()
                .map(|h| {
                    (!h.dropped && h.route.is_some() && !busy(h.busy_until, now))
                        .then_some(&h.bitmap[..])
                })
                .collect();
            // A busy master's blocks are left out of this plan (taken from holders,
            // or from it once it has a free connection).
            let master_busy = busy(master.busy_until, now);
            let none = if master_busy {
                vec![0; bitmap.len()]
            } else {
                Vec::new()
            };
            let master_map = if master_busy { &none } else { &bitmap };
            let addrs: Vec<IpAddr> = holders.iter().map(|h| h.target.addr).collect();
            // This agent's address as the master sees it (the holders' are too).
            let me = doc.you.unwrap_or(target.addr);
            let (pos, agents) = plan::position(me, &addrs);
            let pieces = plan::plan(plan::Inputs {
                missing: &entry.missing_runs(|_| true),
                master: master_map,
                holders: &maps,
                me: pos,
                agents,
                chunked: self.fan_out(),
                tail: in_tail(missing_blocks),
                end_game: in_tail(missing_blocks) && doc.complete && !master_busy,
                master_only_since: &mut master_only_since,
                now,
            });
            // Nothing new to fetch: next time, wait until the master verifies
            // more (or, while holders catch up, a moment).
            after = Some(doc.verified);
            if pieces.is_empty() && self.hears_holders() && master.route.smb.is_some() {
                // FanOut over SMB: the other peers see what this one holds in its
                // have.bin, rewritten at each flush, which a block arriving starts
                // (every 250 ms). With nothing to fetch now, none may arrive for a
                // while: flush now, so the last blocks it took are offered at once
                // (otherwise its peers waited for them and took them from the
                // master after STALE). A no-op when nothing is unflushed.
                if let Err(e) = transfer::flush(entry).await {
                    debug!(content = %entry.key(), error = %e, "flush while waiting failed; the next one retries");
                }
            }
            if pieces.is_empty() {
                if (!holders.is_empty() || master_busy) && !entry.is_complete() {
                    let pause = match master.busy_until {
                        Some(t) if master_busy => t.saturating_duration_since(now),
                        _ => poll,
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.cancelled() => break Err(PeerError::Stopped),
                    }
                    after = None;
                }
                continue;
            }
            master.rounds_alone = if holders.is_empty() {
                master.rounds_alone + 1
            } else {
                0
            };
            let fetched = tokio::select! {
                r = self.fetch_pieces(&mut master, &mut holders, pieces, entry, from_peers, &mut bad) => r,
                _ = stop.cancelled() => Err(PeerError::Stopped),
            };
            match fetched {
                // Blocks we fetched, or failed to, may be worth another try at
                // once: do not wait on the next `have`.
                Ok(true) => after = None,
                Ok(false) => {}
                Err(e) => break Err(e),
            }
            if let Some(c) = bad.over_limit(m) {
                break Err(PeerError::Corrupt {
                    path: c.path,
                    block: c.block,
                    times: c.times,
                });
            }
        };
        // Make what was verified durable whatever happened, so a retry resumes.
        let flushed = transfer::flush(entry).await;
        match result {
            Ok(outcome) => {
                flushed?;
                if self.fan_out() && master.route.smb.is_none() {
                    self.say_complete(&master.route, entry, stop).await;
                }
                Ok(outcome)
            }
            Err(e) => {
                if let Err(f) = flushed {
                    warn!(content = %entry.key(), error = %f, "flushing the cache entry after a failed copy");
                }
                Err(e)
            }
        }
    }

    /// FanOut over HTTP(S): tell the master once more, now that this agent holds
    /// all. It asks no more, and the master keeps a complete holder for
    /// [`COMPLETE_HOLDER_TTL`](super::swarm::COMPLETE_HOLDER_TTL) (one still
    /// copying, 30 s), so that peers starting later copy from it too. Best effort:
    /// the copy is done whatever the master says.
    async fn say_complete(&self, route: &Route, entry: &ContentEntry, stop: &CancellationToken) {
        let all = entry.manifest().block_count();
        tokio::select! {
            r = self.have_as(route, None, Some(all)) => {
                if let Err(e) = r {
                    debug!(content = %entry.key(), error = %e, "telling the master this copy is complete failed");
                }
            }
            _ = stop.cancelled() => {}
        }
    }

    /// Ask each holder followed what it holds now (in parallel). A holder whose
    /// content is not there yet (404) holds nothing; one that fails otherwise
    /// counts a failure.
    async fn follow_holders(
        &self,
        holders: &mut [HolderSource],
        local: Protocols,
        entry: &Arc<ContentEntry>,
        stop: &CancellationToken,
    ) {
        let m = entry.manifest();
        let asks = holders
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.dropped)
            .map(|(i, h)| {
                let target = h.target.clone();
                let route = h.route.clone();
                async move {
                    let asked = async {
                        let route = match route {
                            Some(r) => r,
                            None => self.open(&target, local, &m.content_id, m.version).await?,
                        };
                        let (_, bitmap) = self.have(&route, None).await?;
                        Ok::<_, PeerError>((route, bitmap))
                    };
                    (i, asked.await)
                }
            });
        let answers = tokio::select! {
            a = futures_util::future::join_all(asks) => a,
            _ = stop.cancelled() => return,
        };
        for (i, answer) in answers {
            let h = &mut holders[i];
            match answer {
                Ok((route, bitmap)) => {
                    h.route = Some(route);
                    h.bitmap = bitmap;
                }
                Err(e) if e.is_not_held() => {}
                Err(e) => note_failure(h, entry, &e.to_string()),
            }
        }
    }

    /// Fetch `pieces`, at most one transfer per source and [`MAX_PARALLEL`] at
    /// once. Returns whether anything was asked for again at once (a block that
    /// failed, a piece cut short): the caller then asks `have` without waiting.
    async fn fetch_pieces(
        &self,
        master: &mut MasterSource,
        holders: &mut [HolderSource],
        pieces: Vec<plan::Piece>,
        entry: &Arc<ContentEntry>,
        from_peers: &PeerBytes,
        bad: &mut BadBlocks,
    ) -> Result<bool, PeerError> {
        let mut queues: HashMap<plan::Src, std::collections::VecDeque<BlockRun>> = HashMap::new();
        // With FanOut, one piece per source per round (up to ALONE_MAX_DEPTH from
        // the master, in one request, for an agent alone: ALONE_DEEP_AFTER), taken
        // one after the other: the plan is made again after each (new holders,
        // blocks that holders got meanwhile); without it, the master's runs go one
        // after the other, one request each, as a single source's would.
        let master_depth = match master.rounds_alone.checked_sub(ALONE_DEEP_AFTER) {
            Some(deep) if deep > 0 && self.fan_out() => {
                (1usize << deep.min(8)).min(ALONE_MAX_DEPTH)
            }
            _ => 1,
        };
        let depth = |src: &plan::Src| match src {
            plan::Src::Master => master_depth,
            plan::Src::Holder(_) => 1,
        };
        let mut taken: HashMap<plan::Src, usize> = HashMap::new();
        for p in pieces {
            let n = taken.entry(p.src).or_default();
            if self.fan_out() && *n >= depth(&p.src) {
                continue;
            }
            *n += 1;
            let q = queues.entry(p.src).or_default();
            match q.back_mut() {
                // The master's pieces of a lone agent: one request for all of a
                // stretch (see ALONE_DEEP_AFTER).
                Some(last)
                    if master_depth > 1
                        && p.src == plan::Src::Master
                        && last.file == p.run.file
                        && last.last + 1 == p.run.first =>
                {
                    last.last = p.run.last;
                }
                _ => q.push_back(p.run),
            }
        }
        let mut busy: HashSet<plan::Src> = HashSet::new();
        let mut running = FuturesUnordered::new();
        let mut again = false;
        let routes: Vec<Option<Route>> = holders.iter().map(|h| h.route.clone()).collect();
        loop {
            // Start what may start.
            for (src, q) in queues.iter_mut() {
                if running.len() >= MAX_PARALLEL || busy.contains(src) {
                    continue;
                }
                let Some(run) = q.pop_front() else { continue };
                let route = match src {
                    plan::Src::Master => master.route.clone(),
                    plan::Src::Holder(h) => match &routes[*h] {
                        Some(r) => r.clone(),
                        None => continue,
                    },
                };
                busy.insert(*src);
                let src = *src;
                let c = self.counters();
                let received = [
                    from_peers.of(route.protocol),
                    &c.bytes_received,
                    c.content.of(route.protocol),
                ];
                running.push(async move {
                    let source = self.source(&route);
                    let report = transfer::fetch_run(entry, run, &source, &received).await;
                    (src, run, route, report)
                });
            }
            let Some((src, run, route, report)) = running.next().await else {
                break;
            };
            busy.remove(&src);
            // A cache failure (a full disk) ends the copy whatever the source.
            let report = report?;
            if report.end.as_ref().err().and_then(|f| f.status()) == Some(503) {
                // Busy: its blocks go to other sources for a moment.
                let until = Some(Instant::now() + BUSY_BACKOFF);
                match src {
                    plan::Src::Master => master.busy_until = until,
                    plan::Src::Holder(i) => holders[i].busy_until = until,
                }
                self.counters().busy_answers.fetch_add(1, Ordering::Relaxed);
                debug!(content = %entry.key(), source = ?src, "source busy (MaxServingConnections): its blocks are taken elsewhere for a moment");
                queues.remove(&src);
                again = true;
            } else {
                match src {
                    plan::Src::Master => {
                        match self.master_report(&route, entry, run, report, bad).await? {
                            RunEnd::Done | RunEnd::CutShort { .. } => again = true,
                            RunEnd::NotHeld => {}
                        }
                    }
                    plan::Src::Holder(i) => {
                        let h = &mut holders[i];
                        let problem = match (&report.end, report.rejected.len()) {
                            (Err(e), _) => Some(e.to_string()),
                            (Ok(_), n) if n > 0 => {
                                Some(format!("{n} block(s) failed verification"))
                            }
                            (Ok(RunEnd::CutShort { .. }), _) => Some("answer cut short".into()),
                            _ => None,
                        };
                        self.counters()
                            .blocks_rejected
                            .fetch_add(report.rejected.len() as u64, Ordering::Relaxed);
                        if let Some(why) = problem {
                            note_failure(h, entry, &why);
                            again = true;
                            if h.dropped {
                                queues.remove(&src);
                            }
                        }
                    }
                }
            }
            if queues.values().all(|q| q.is_empty()) && running.is_empty() {
                break;
            }
        }
        Ok(again)
    }

    /// What to make of one run from the master. Blocks that did not verify are
    /// counted in `bad` and asked for again; so is the block at which the answer
    /// broke off, unless the master no longer holds it (then it is left to the
    /// next `have`).
    async fn master_report(
        &self,
        route: &Route,
        entry: &Arc<ContentEntry>,
        run: BlockRun,
        report: transfer::RunReport,
        bad: &mut BadBlocks,
    ) -> Result<RunEnd, PeerError> {
        let m = entry.manifest();
        let rejected = &self.counters().blocks_rejected;
        for block in report.rejected {
            let times = bad.record(block);
            rejected.fetch_add(1, Ordering::Relaxed);
            let path = &m.files[m.block(block).file].path;
            warn!(content = %entry.key(), file = %path, block, times, "block from the master failed verification; it will be asked for again");
        }
        let end = report.end?;
        if let RunEnd::CutShort {
            block, at, cause, ..
        } = &end
        {
            let path = &m.files[run.file].path;
            if let Some(e) = cause {
                debug!(error = %e, "response broke off");
            }
            // A master cuts a body short when it finds a block changed on its disk,
            // and stops advertising the block before the cut. Asking again tells
            // that ("not held", as a 409 for the rest of the run would have said:
            // wait for it like any block the master lacks) from a master that keeps
            // claiming blocks it cannot send (a bad block). The rest of the run is
            // asked about, not only the block cut at: bytes in flight before the
            // cut may be lost with the connection. A master gone away fails this
            // request (master lost).
            let (_, bitmap) = self.have(route, None).await?;
            if (*block..=run.last).any(|i| !HaveDoc::bit(&bitmap, i)) {
                self.counters()
                    .cuts_not_held
                    .fetch_add(1, Ordering::Relaxed);
                info!(content = %entry.key(), file = %path, block, at, "response from the master cut short at a block it no longer holds; waiting for it to hold the block again");
                // Still `CutShort`, so the next round asks at once for the blocks
                // after this one; the next `have` leaves this one out.
                return Ok(end);
            }
            let times = bad.record(*block);
            rejected.fetch_add(1, Ordering::Relaxed);
            warn!(content = %entry.key(), file = %path, block, times, at, "response from the master cut short; the block will be asked for again");
        }
        Ok(end)
    }
}

/// Count a failure of holder `h`; at [`MAX_HOLDER_FAILURES`] it is dropped, said
/// once with its address.
fn note_failure(h: &mut HolderSource, entry: &ContentEntry, why: &str) {
    h.failures += 1;
    if h.failures >= MAX_HOLDER_FAILURES && !h.dropped {
        h.dropped = true;
        warn!(content = %entry.key(), holder = %h.target.addr, failures = h.failures, last = why,
            "holder dropped as a source for this content; its blocks are taken from others");
    } else {
        debug!(content = %entry.key(), holder = %h.target.addr, failures = h.failures, why, "copy from a holder failed");
    }
}

/// Take in the holders the master named that are not followed yet (up to
/// [`MAX_HOLDERS`]); true when any was.
fn take_in(
    holders: &mut Vec<HolderSource>,
    doc: &HaveDoc,
    needs_account: bool,
    m: &crate::manifest::Manifest,
) -> bool {
    let mut added = false;
    for h in &doc.holders {
        if holders.len() >= MAX_HOLDERS {
            break;
        }
        if holders.iter().any(|k| k.target.addr == h.addr) {
            continue;
        }
        if let Some(target) = h.target(needs_account) {
            holders.push(HolderSource {
                target,
                route: None,
                bitmap: vec![0; m.block_count().div_ceil(8)],
                failures: 0,
                dropped: false,
                busy_until: None,
            });
            added = true;
        }
    }
    added
}

#[cfg(test)]
mod tail_tests {
    use super::*;

    #[test]
    fn holders_are_asked_often_only_at_the_end_of_a_copy() {
        // More than two chunks to go: the usual pace, so that an office of agents
        // does not flood each other with small requests.
        assert_eq!(holder_poll(TAIL_BLOCKS + 1), HOLDER_POLL);
        assert_eq!(holder_poll(100_000), HOLDER_POLL);
        // The last two chunks: asked often.
        assert_eq!(holder_poll(TAIL_BLOCKS), TAIL_POLL);
        assert_eq!(holder_poll(1), TAIL_POLL);
        assert!(TAIL_POLL * 4 <= HOLDER_POLL);
    }
}
