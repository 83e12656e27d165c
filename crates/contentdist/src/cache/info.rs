//! The cache as the control socket reports it: entries and what a clean-up removed.

use serde::{Deserialize, Serialize};

/// One content version held in the cache.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CacheEntryInfo {
    /// Content id.
    pub content_id: String,
    /// Content version.
    pub version: u32,
    /// Size of the whole content.
    pub bytes_total: u64,
    /// Bytes verified so far.
    pub bytes_verified: u64,
    /// True when every block is verified.
    pub complete: bool,
    /// Cache priority 1 (evicted first) to 9.
    pub priority: u8,
    /// Seconds since the Unix epoch of the last use.
    pub last_used_unix: u64,
    /// True while a job uses it (never evicted then).
    pub in_use: bool,
}

/// What a cache clean-up removed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CleanReport {
    /// `id/version` of each removed entry, with the reason.
    pub removed: Vec<String>,
    /// Bytes freed.
    pub bytes_freed: u64,
}
