//! The cheap way to serve a complete file: one open per response, reads straight
//! from the page cache on the async thread, no hashing.
//!
//! A read with `RWF_NOWAIT` (`preadv2`, Linux 4.14) returns only what is in the
//! page cache and never blocks on the disk: when it returns the whole chunk, no
//! thread of the blocking pool is woken for it (the hand-off per chunk cost the
//! master about 30 % of its time in wake-ups, issue 10). When the bytes are not
//! cached, or the file is not stamped, the caller takes the blocking path as
//! before (`files::read_chunk`: reads on the pool, each block hashed unless the
//! file's stamp still matches).
//!
//! "Never serve a block that changed after it was verified" holds as on the
//! blocking path: the file's stamp (inode, size, mtime, ctime recorded when it was
//! verified) is compared with the open handle's `fstat` *after* the read; a
//! mismatch throws the bytes away and the blocking path hashes them.

use std::fs::File;
use std::io::IoSliceMut;

use bytes::{Bytes, BytesMut};
use rustix::io::{preadv2, ReadWriteFlags};

use crate::cache::ContentEntry;

/// Read up to `max` bytes of file `fi` from `pos` (before `end`), from the page
/// cache only, when every block they come from is verified and not `hidden`, and
/// the open file `f` still equals its stamp after the read. `None`: take the
/// blocking path.
pub(super) fn cached_read(
    entry: &ContentEntry,
    fi: usize,
    f: &File,
    (pos, end): (u64, u64),
    max: usize,
    hidden: &[usize],
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
    let mut buf = BytesMut::zeroed(len);
    let n = match preadv2(
        f,
        &mut [IoSliceMut::new(&mut buf)],
        pos,
        ReadWriteFlags::NOWAIT,
    ) {
        Ok(n) if n > 0 => n,
        // EAGAIN (not cached), an old kernel without RWF_NOWAIT, end of file, an
        // I/O error: the blocking path handles each with its own answer.
        _ => return None,
    };
    if !entry.open_file_unchanged(fi, f) {
        return None;
    }
    buf.truncate(n);
    Some(buf.freeze())
}
