//! Cache clean-up: by age (`MaxCacheDays`), by size (`MaxCacheSizeMB`) and by free
//! disk (`PercentAvailableDisk`), evicting the lowest cache priority first and, within
//! a priority, the least recently used. An entry in use (a job or a transfer holds a
//! lease) is never touched, whatever the limits say.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::entry::now_unix;
use super::CleanReport;
use super::{Cache, CacheError};

/// The clean-up limits; 0 switches a limit off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanPolicy {
    /// Remove entries not used for this many days.
    pub max_days: u32,
    /// Keep the cache under this many bytes.
    pub max_size_bytes: u64,
    /// Keep at least this percentage of the cache's file system free.
    pub percent_available_disk: u32,
}

/// Free and total bytes of the file system holding `path`.
pub fn disk_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

impl Cache {
    /// Apply `policy`, also making room for `incoming` more bytes. Returns what was
    /// removed.
    pub fn clean(&self, policy: CleanPolicy, incoming: u64) -> Result<CleanReport, CacheError> {
        let mut report = CleanReport::default();
        let mut candidates = Vec::new();
        let mut total = 0u64;
        for key in self.keys() {
            let Some(e) = self.get(&key)? else { continue };
            let size = e.manifest().total_size();
            total += size;
            if !e.in_use() {
                candidates.push((e.meta(), size, key));
            }
        }
        // Lowest priority first, then least recently used.
        candidates.sort_by_key(|(m, _, _)| (m.priority, m.last_used_unix));
        let now = now_unix();
        let mut keep = Vec::new();
        for (meta, size, key) in candidates {
            let age_days = now.saturating_sub(meta.last_used_unix) / 86_400;
            if policy.max_days > 0 && age_days >= u64::from(policy.max_days) {
                self.remove(&key)?;
                total -= size;
                report.bytes_freed += size;
                report
                    .removed
                    .push(format!("{key} (unused for {age_days} days)"));
            } else {
                keep.push((size, key));
            }
        }
        for (size, key) in keep {
            let over_size = policy.max_size_bytes > 0 && total + incoming > policy.max_size_bytes;
            let low_disk = policy.percent_available_disk > 0 && {
                let (free, all) = disk_space(&self.root).map_err(|source| CacheError::Io {
                    path: self.root.clone(),
                    source,
                })?;
                let free_after = free.saturating_sub(incoming) as f64;
                all > 0
                    && free_after * 100.0 / (all as f64) < f64::from(policy.percent_available_disk)
            };
            if !over_size && !low_disk {
                break;
            }
            self.remove(&key)?;
            total -= size;
            report.bytes_freed += size;
            let why = if over_size {
                "cache over MaxCacheSizeMB"
            } else {
                "free disk under PercentAvailableDisk"
            };
            report.removed.push(format!("{key} ({why})"));
        }
        for r in &report.removed {
            tracing::info!(entry = %r, "cache clean-up removed");
        }
        Ok(report)
    }
}
