//! The cheap way to serve a complete file: one open per response, one read per
//! chunk into a buffer that is not zeroed first, no hashing.
//!
//! Where the read runs depends on the load (`files`):
//!
//! - with fewer responses sending than the machine has cores, on the blocking
//!   pool, one chunk ahead of the one being sent: reading overlaps sending on
//!   another core (measured, BENCHMARKS.md §9: a lone client gets 1.1–1.5× nginx's
//!   rate this way, 0.85 with both on one thread);
//! - with as many or more, on the async thread itself, from the page cache only
//!   (`preadv2` with `RWF_NOWAIT`, Linux 4.14: it never waits for the disk): no
//!   hand-off to the pool per chunk (its wake-ups cost a busy master about 30 % of
//!   its time, issue 10), no chunk read ahead per connection (memory), about a
//!   quarter less CPU per byte. A chunk that is not cached sends that response
//!   back to the pool.
//!
//! A file that is not stamped (an incomplete entry, or one written since) is read
//! block by block and each block hashed (`files::read_chunk`).
//!
//! "Never serve a block that changed after it was verified" holds as on the
//! blocking path: the file's stamp (inode, size, mtime, ctime recorded when it was
//! verified) is compared with the open handle's `fstat` *after* the read; a
//! mismatch throws the bytes away and the blocking path hashes them.

use std::fs::File;
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};

use crate::cache::ContentEntry;

/// How [`read_stamped`] may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReadMode {
    /// From the page cache only, never waiting for the disk (on the async thread).
    CachedOnly,
    /// Waiting for the disk if need be (on the blocking pool).
    Blocking,
}

/// Read up to `max` bytes of file `fi` from `pos` (before `end`) with one read of
/// the open file `f`, when every block they come from is verified and not
/// `hidden`, and `f` still equals the file's stamp after the read. `None`: take
/// the path that hashes (`files::read_chunk`).
pub(super) fn read_stamped(
    entry: &ContentEntry,
    fi: usize,
    f: &File,
    (pos, end): (u64, u64),
    max: usize,
    hidden: &[usize],
    mode: ReadMode,
) -> Option<Bytes> {
    let len = (end.saturating_sub(pos)).min(max as u64) as usize;
    if len == 0 {
        return None;
    }
    let m = entry.manifest();
    let bs = u64::from(m.block_size);
    let first = m.files[fi].first_block;
    let blocks = first + (pos / bs) as usize..=first + ((pos + len as u64 - 1) / bs) as usize;
    if blocks
        .clone()
        .any(|i| !entry.has_block(i) || hidden.contains(&i))
    {
        return None;
    }
    let mut buf = BytesMut::with_capacity(len);
    let spare = buf.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: len,
    };
    // Read into the buffer's spare capacity, not a zeroed buffer: zeroing 256 KiB
    // per chunk cost about a tenth of serving a cached file.
    // SAFETY: `iov` covers the `len` bytes of spare capacity `buf` has; the kernel
    // writes at most that many, and only the `n` it reports written are marked
    // initialized below.
    let flags = match mode {
        ReadMode::CachedOnly => libc::RWF_NOWAIT,
        ReadMode::Blocking => 0,
    };
    let n = unsafe { libc::preadv2(f.as_raw_fd(), &iov, 1, pos as libc::off_t, flags) };
    // EAGAIN (not cached), an old kernel without RWF_NOWAIT, end of file, an I/O
    // error: the blocking path handles each with its own answer.
    let Ok(n) = usize::try_from(n) else {
        return None;
    };
    if n == 0 || n > len {
        return None;
    }
    // SAFETY: the kernel initialized the first `n` bytes (n <= capacity).
    unsafe { buf.set_len(n) };
    if !entry.open_file_unchanged(fi, f) {
        return None;
    }
    Some(buf.freeze())
}
