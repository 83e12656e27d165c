//! A candidate's claim to be master, and the order that picks the winner.

use std::cmp::Ordering;

/// The highest share of a content, in permille: the candidate holds all of it.
pub const FULL_SHARE: u16 = 1000;
/// The highest election weight (`P2PElectionWeight` is 0–99).
pub const MAX_WEIGHT: u8 = 99;

/// What a candidate claims in an election. The highest rank wins.
///
/// The order is total and the same on every agent: not-preboot first, then the
/// share of the content already verified, then the election weight, then free cache
/// space, then the node id. Because node ids are unique on a subnet, two different
/// agents never have equal ranks, so every agent that saw the same candidates picks
/// the same winner, provided each counts itself by the rank it claimed (a rank can
/// change while an election runs: free space, share).
///
/// A rank with weight 0 or `preboot` set can never be master ([`Rank::can_be_master`]);
/// such candidates are ignored when the winner is picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rank {
    /// The agent runs in preboot mode (download only, never master).
    pub preboot: bool,
    /// Share of the content already verified, 0..=1000 permille.
    pub share_permille: u16,
    /// Election weight, 0..=99 (`P2PElectionWeight`): server 61, default 50,
    /// laptop 40, wireless 30, preboot 10; 0 = never master and never answers.
    pub weight: u8,
    /// Free cache space in bytes.
    pub free_bytes: u64,
    /// The candidate's node id (unique on the subnet): the last tie-break.
    pub node_id: u64,
}

impl Rank {
    /// Whether an agent with this rank may ever become master: not preboot and a
    /// weight above 0.
    pub fn can_be_master(&self) -> bool {
        !self.preboot && self.weight > 0
    }

    /// The tuple the order compares, highest wins.
    fn key(&self) -> (bool, u16, u8, u64, u64) {
        (
            !self.preboot,
            self.share_permille,
            self.weight,
            self.free_bytes,
            self.node_id,
        )
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(preboot: bool, share: u16, weight: u8, free: u64, node: u64) -> Rank {
        Rank {
            preboot,
            share_permille: share,
            weight,
            free_bytes: free,
            node_id: node,
        }
    }

    #[test]
    fn order_is_preboot_then_share_then_weight_then_free_then_node() {
        // Each pair differs in one field, and the earlier field outweighs all later ones.
        assert!(rank(false, 0, 1, 0, 0) > rank(true, 1000, 99, u64::MAX, u64::MAX));
        assert!(rank(false, 201, 1, 0, 0) > rank(false, 200, 99, u64::MAX, u64::MAX));
        assert!(rank(false, 200, 61, 0, 0) > rank(false, 200, 50, u64::MAX, u64::MAX));
        assert!(rank(false, 200, 50, 11, 0) > rank(false, 200, 50, 10, u64::MAX));
        assert!(rank(false, 200, 50, 10, 2) > rank(false, 200, 50, 10, 1));
        assert_eq!(
            rank(false, 200, 50, 10, 2).cmp(&rank(false, 200, 50, 10, 2)),
            Ordering::Equal
        );
    }

    #[test]
    fn preboot_and_weight_zero_can_never_be_master() {
        assert!(rank(false, 0, 1, 0, 0).can_be_master());
        assert!(!rank(true, 1000, 10, 0, 0).can_be_master());
        assert!(!rank(false, 1000, 0, 0, 0).can_be_master());
    }
}
