//! Content bytes received from peers, by protocol: counted once per job (its
//! final statistics) and once per agent (`status`, the metrics), as they arrive.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::Protocol;

/// Live counters of body bytes received from peers, one per protocol.
#[derive(Debug, Default)]
pub struct PeerBytes {
    http: AtomicU64,
    https: AtomicU64,
    smb: AtomicU64,
}

/// [`PeerBytes`] at one moment, as jobs are persisted and reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerBytesByProtocol {
    pub http: u64,
    pub https: u64,
    pub smb: u64,
}

impl PeerBytesByProtocol {
    /// Over every protocol.
    pub fn total(&self) -> u64 {
        self.http + self.https + self.smb
    }
}

impl PeerBytes {
    /// Counters starting at `start` (a job resumed after a restart).
    pub fn from_snapshot(start: PeerBytesByProtocol) -> PeerBytes {
        PeerBytes {
            http: AtomicU64::new(start.http),
            https: AtomicU64::new(start.https),
            smb: AtomicU64::new(start.smb),
        }
    }

    /// The counter of `protocol`.
    pub fn of(&self, protocol: Protocol) -> &AtomicU64 {
        match protocol {
            Protocol::Http => &self.http,
            Protocol::Https => &self.https,
            Protocol::Smb => &self.smb,
        }
    }

    /// Over every protocol.
    pub fn total(&self) -> u64 {
        self.snapshot().total()
    }

    /// The counts now.
    pub fn snapshot(&self) -> PeerBytesByProtocol {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PeerBytesByProtocol {
            http: load(&self.http),
            https: load(&self.https),
            smb: load(&self.smb),
        }
    }
}
