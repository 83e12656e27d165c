//! Which source each missing block comes from, when peers copy from each other
//! (FanOut): pure planning, no I/O, so it is tested on its own.
//!
//! - A block some other holder has is taken from a holder, the one given the
//!   fewest blocks so far in this plan, ties broken by the chunk and this agent's
//!   position, so that agents planning at the same moment start on different
//!   holders (the load spreads; the master is spared while it downloads).
//! - The end game: an agent that lacks only its last blocks while the master holds
//!   everything takes the master as one more holder (its origin download, which
//!   serving must not slow, is over). Before, the last chunk's owner was the only
//!   holder of it and sent it to every other agent through its one port while the
//!   complete master sent nothing (BENCHMARKS.md §19, §21).
//! - A block only the master has is taken from it by its **owner** only: blocks are
//!   grouped in chunks of [`PIECE_BLOCKS`], and chunk `c` belongs to the agent at
//!   position `c mod n` among the `n` agents copying (this one and the holders the
//!   master named, ordered by address). Every other agent waits for the owner to
//!   hold it and takes it from there, so each block crosses the master's port about
//!   once instead of once per agent. A chunk left with the master alone for
//!   [`STALE`] is taken by anyone (its owner may be slow or gone).
//! - Without FanOut there are no holders and every block comes from the master,
//!   in runs as long as they go, as before. With it, the master's pieces stop at
//!   chunk ends, so that an agent alone so far plans again every chunk and takes
//!   in the holders that appeared meanwhile.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::HaveDoc;
use crate::cache::BlockRun;

/// A holder's piece: at most this many blocks (2 MiB of 128 KiB blocks), so that
/// several holders share a run; also the size of an owner's chunk.
pub(super) const PIECE_BLOCKS: usize = 16;

/// An agent that knows no other holder takes this many chunks (16 MiB) from the
/// master in one piece: fewer rounds (each asks the master's `have` and plans
/// again) while it is alone, and still a new plan every 16 MiB to take in holders
/// that appeared. (64 MiB was tried: the pauses between pieces, ~1.3 ms each on
/// loopback, 6-7 % of a lone 1 GiB copy, shrink, but peers starting together each
/// took a whole 64 MiB piece from a complete master before learning of the others,
/// and the master served twice as much.)
pub(super) const ALONE_CHUNKS: usize = 8;

/// At the end of a copy (`Inputs::tail`), a piece from a holder is at most this
/// many blocks (512 KiB): every agent then wants the same last blocks, and a
/// holder they all chose answers each of them late (one answer took 0.2 s, the
/// whole office's tail, in BENCHMARKS.md §21); short pieces are planned again
/// sooner, from the agents that got those blocks meanwhile.
pub(super) const TAIL_PIECE_BLOCKS: usize = 4;

/// A chunk only the master has is taken by anyone after this long.
pub(super) const STALE: Duration = Duration::from_secs(2);

/// Where a piece comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Src {
    Master,
    /// Index into the holders.
    Holder(usize),
}

/// Consecutive blocks of one file from one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Piece {
    pub(super) src: Src,
    pub(super) run: BlockRun,
}

/// What the planner knows.
pub(super) struct Inputs<'a> {
    /// The blocks this agent lacks, as runs.
    pub(super) missing: &'a [BlockRun],
    /// The master's verified map.
    pub(super) master: &'a [u8],
    /// Each holder's verified map; `None` for a holder not to be used now.
    pub(super) holders: &'a [Option<&'a [u8]>],
    /// This agent's position among the agents copying, and their number (1 when
    /// alone: it owns every chunk).
    pub(super) me: usize,
    pub(super) agents: usize,
    /// FanOut: the master's pieces stop at chunk ends even when this agent is
    /// alone, so that it plans again (and learns of new holders) every chunk.
    pub(super) chunked: bool,
    /// This agent lacks only its last blocks: holders' pieces are short
    /// ([`TAIL_PIECE_BLOCKS`]).
    pub(super) tail: bool,
    /// The end game (FanOut, the master holds every block, and `tail`): the
    /// master is chosen like a holder.
    pub(super) end_game: bool,
    /// When each chunk was first seen with the master only (kept by the caller
    /// across plans; updated here).
    pub(super) master_only_since: &'a mut HashMap<usize, Instant>,
    pub(super) now: Instant,
}

/// This agent's position among `others` and itself, by address, and their count.
pub(super) fn position(me: IpAddr, others: &[IpAddr]) -> (usize, usize) {
    let below = others.iter().filter(|a| **a < me).count();
    (below, others.len() + 1)
}

/// Plan the pieces to fetch now.
pub(super) fn plan(i: Inputs<'_>) -> Vec<Piece> {
    let Inputs {
        missing,
        master,
        holders,
        me,
        agents,
        chunked,
        tail,
        end_game,
        master_only_since,
        now,
    } = i;
    // The sources chosen by load: the holders, then, in the end game, the master (an
    // agent alone keeps taking it in long pieces).
    let sources = holders.len() + usize::from(end_game && chunked && !holders.is_empty());
    let mut load = vec![0usize; sources];
    let mut pieces: Vec<Piece> = Vec::new();
    let holder_has = |h: usize, b: usize| holders[h].is_some_and(|m| HaveDoc::bit(m, b));
    let source_has = |s: usize, b: usize| {
        if s < holders.len() {
            holder_has(s, b)
        } else {
            HaveDoc::bit(master, b)
        }
    };
    for run in missing {
        let mut b = run.first;
        while b <= run.last {
            let chunk = b / PIECE_BLOCKS;
            let choice = (0..sources)
                .filter(|&s| source_has(s, b))
                .min_by_key(|&s| (load[s], (s + chunk + me) % sources.max(1)));
            if choice.is_some() {
                master_only_since.remove(&chunk);
            }
            let src = match choice {
                Some(h) if h < holders.len() => Src::Holder(h),
                Some(_) => Src::Master,
                None if HaveDoc::bit(master, b) => {
                    let since = *master_only_since.entry(chunk).or_insert(now);
                    let mine = agents <= 1 || chunk % agents == me;
                    if !mine && now.duration_since(since) < STALE {
                        b += 1;
                        continue;
                    }
                    Src::Master
                }
                None => {
                    b += 1;
                    continue;
                }
            };
            // Extend while the same source has the next block: a piece from a
            // source chosen by load (a holder, the master in the end game) stops at
            // PIECE_BLOCKS (TAIL_PIECE_BLOCKS at the end of a copy), the master's
            // own at the end of the chunk unless this agent takes every chunk
            // (alone, or no FanOut).
            let limit = match choice {
                Some(_) if tail => b + TAIL_PIECE_BLOCKS,
                Some(_) => b + PIECE_BLOCKS,
                None if !chunked => run.last + 1,
                None if agents <= 1 => (chunk + ALONE_CHUNKS) * PIECE_BLOCKS,
                None => (chunk + 1) * PIECE_BLOCKS,
            };
            let mut last = b;
            while last < run.last && last + 1 < limit {
                let next = last + 1;
                let has = match choice {
                    Some(s) => source_has(s, next),
                    // The master for blocks only it has: up to one a holder has.
                    None => {
                        HaveDoc::bit(master, next)
                            && !(0..holders.len()).any(|h| holder_has(h, next))
                    }
                };
                if !has {
                    break;
                }
                last = next;
            }
            if let Some(s) = choice {
                load[s] += last - b + 1;
            }
            pieces.push(Piece {
                src,
                run: BlockRun {
                    file: run.file,
                    first: b,
                    last,
                },
            });
            b = last + 1;
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(n: usize, set: impl Fn(usize) -> bool) -> Vec<u8> {
        let mut v = vec![0u8; n.div_ceil(8)];
        for i in (0..n).filter(|&i| set(i)) {
            v[i / 8] |= 1 << (i % 8);
        }
        v
    }

    fn run(first: usize, last: usize) -> BlockRun {
        BlockRun {
            file: 0,
            first,
            last,
        }
    }

    #[test]
    fn without_holders_every_block_comes_from_the_master_in_whole_runs() {
        let master = bits(100, |_| true);
        let mut since = HashMap::new();
        let p = plan(Inputs {
            missing: &[run(0, 99)],
            master: &master,
            holders: &[],
            me: 0,
            agents: 1,
            chunked: false,
            tail: false,
            end_game: false,
            master_only_since: &mut since,
            now: Instant::now(),
        });
        assert_eq!(
            p,
            vec![Piece {
                src: Src::Master,
                run: run(0, 99)
            }]
        );
    }

    #[test]
    fn blocks_a_holder_has_come_from_holders_spread_in_pieces() {
        let master = bits(64, |_| true);
        let h = bits(64, |_| true);
        let holders = [Some(&h[..]), Some(&h[..])];
        let mut since = HashMap::new();
        let p = plan(Inputs {
            missing: &[run(0, 63)],
            master: &master,
            holders: &holders,
            me: 0,
            agents: 3,
            chunked: true,
            tail: false,
            end_game: false,
            master_only_since: &mut since,
            now: Instant::now(),
        });
        assert!(p.iter().all(|x| x.src != Src::Master), "{p:?}");
        assert!(p.iter().all(|x| x.run.last - x.run.first < PIECE_BLOCKS));
        let from = |h| p.iter().filter(|x| x.src == Src::Holder(h)).count();
        assert_eq!((from(0), from(1)), (2, 2));
    }

    #[test]
    fn master_only_chunks_are_taken_by_their_owner_and_by_anyone_once_stale() {
        let master = bits(64, |_| true);
        let nobody = bits(64, |_| false);
        let holders = [Some(&nobody[..])];
        let t0 = Instant::now();
        let mut since = HashMap::new();
        // Two agents: this one is at position 1, so it owns chunks 1 and 3.
        let p = plan(Inputs {
            missing: &[run(0, 63)],
            master: &master,
            holders: &holders,
            me: 1,
            agents: 2,
            chunked: true,
            tail: false,
            end_game: false,
            master_only_since: &mut since,
            now: t0,
        });
        assert_eq!(
            p,
            vec![
                Piece {
                    src: Src::Master,
                    run: run(16, 31)
                },
                Piece {
                    src: Src::Master,
                    run: run(48, 63)
                },
            ]
        );
        // Later, with chunks 0 and 2 still only at the master: taken too.
        let p = plan(Inputs {
            missing: &[run(0, 15), run(32, 47)],
            master: &master,
            holders: &holders,
            me: 1,
            agents: 2,
            chunked: true,
            tail: false,
            end_game: false,
            master_only_since: &mut since,
            now: t0 + STALE,
        });
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn in_the_end_game_the_master_is_one_more_holder_and_agents_start_on_different_sources() {
        let master = bits(64, |_| true);
        let h = bits(64, |_| true);
        let holders = [Some(&h[..]), Some(&h[..])];
        let plan_for = |me: usize, end_game: bool| {
            plan(Inputs {
                missing: &[run(0, 63)],
                master: &master,
                holders: &holders,
                me,
                agents: 4,
                chunked: true,
                tail: false,
                end_game,
                master_only_since: &mut HashMap::new(),
                now: Instant::now(),
            })
        };
        let p = plan_for(0, true);
        let from = |p: &[Piece], s| p.iter().filter(|x| x.src == s).count();
        assert_eq!(
            (
                from(&p, Src::Holder(0)),
                from(&p, Src::Holder(1)),
                from(&p, Src::Master)
            ),
            (2, 1, 1),
            "{p:?}"
        );
        assert!(p.iter().all(|x| x.run.last - x.run.first < PIECE_BLOCKS));
        // Agents at other positions begin with another source.
        let firsts: Vec<Src> = (0..3).map(|me| plan_for(me, true)[0].src).collect();
        assert_eq!(firsts, [Src::Holder(0), Src::Master, Src::Holder(1)]);
        // Still downloading, the master is spared.
        assert_eq!(from(&plan_for(0, false), Src::Master), 0);
    }

    #[test]
    fn at_the_end_of_a_copy_pieces_from_holders_are_short() {
        let master = bits(32, |_| true);
        let h = bits(32, |_| true);
        let holders = [Some(&h[..]), Some(&h[..])];
        let p = plan(Inputs {
            missing: &[run(0, 31)],
            master: &master,
            holders: &holders,
            me: 0,
            agents: 3,
            chunked: true,
            tail: true,
            end_game: false,
            master_only_since: &mut HashMap::new(),
            now: Instant::now(),
        });
        assert_eq!(p.len(), 32 / TAIL_PIECE_BLOCKS, "{p:?}");
        assert!(p.iter().all(|x| x.src != Src::Master), "{p:?}");
        assert!(p
            .iter()
            .all(|x| x.run.last - x.run.first < TAIL_PIECE_BLOCKS));
    }

    #[test]
    fn an_agent_alone_takes_long_pieces_from_the_master_in_the_end_game_too() {
        let master = bits(256, |_| true);
        let p = plan(Inputs {
            missing: &[run(0, 255)],
            master: &master,
            holders: &[],
            me: 0,
            agents: 1,
            chunked: true,
            tail: true,
            end_game: true,
            master_only_since: &mut HashMap::new(),
            now: Instant::now(),
        });
        assert_eq!(p[0].run, run(0, ALONE_CHUNKS * PIECE_BLOCKS - 1), "{p:?}");
    }

    #[test]
    fn positions_are_by_address() {
        let a = |i: u8| IpAddr::from([10, 0, 0, i]);
        assert_eq!(position(a(5), &[a(9), a(1), a(3)]), (2, 4));
        assert_eq!(position(a(5), &[]), (0, 1));
    }
}
