//! Copy one file through a fixed buffer, hashing each block on the way.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::walk::kind_name;
use super::{io_err, PublishError};
use crate::manifest::Hash;

/// What one copy produced.
pub(super) struct Copied {
    /// Bytes copied (the size recorded in the manifest: exactly what was hashed).
    pub size: u64,
    /// Whether the source had any execute bit.
    pub executable: bool,
    /// One hash per block.
    pub blocks: Vec<Hash>,
}

/// Copy `src` to the new file `dest` through `buf`, hashing blocks of `block_size`.
/// Memory use is `buf` plus one hash per block, whatever the file size.
pub(super) fn copy_and_hash(
    src: &Path,
    dest: &Path,
    block_size: u32,
    buf: &mut [u8],
) -> Result<Copied, PublishError> {
    // O_NOFOLLOW and O_NONBLOCK: if the walked file was replaced by a symlink or a FIFO
    // since, the open fails or returns at once instead of following or blocking, and
    // the type check below refuses it.
    let mut input = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(src)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => PublishError::NotRegularFile {
                path: src.to_path_buf(),
                kind: "symbolic link",
            },
            _ => io_err("opening", src)(e),
        })?;
    let meta = input.metadata().map_err(io_err("inspecting", src))?;
    if !meta.is_file() {
        return Err(PublishError::NotRegularFile {
            path: src.to_path_buf(),
            kind: kind_name(meta.file_type()),
        });
    }
    let executable = meta.permissions().mode() & 0o111 != 0;
    let mode = if executable { 0o755 } else { 0o644 };
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(dest)
        .map_err(io_err("creating", dest))?;

    let block_size = block_size as usize;
    let expected_blocks = meta.len().div_ceil(block_size as u64);
    // The size is only a hint (the file may change while copied): cap the reservation.
    let mut blocks = Vec::with_capacity(expected_blocks.min(1 << 20) as usize);
    let mut hasher = blake3::Hasher::new();
    let mut in_block = 0usize;
    let mut size = 0u64;
    loop {
        let n = match input.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading", src)(e)),
        };
        output
            .write_all(&buf[..n])
            .map_err(io_err("writing", dest))?;
        size += n as u64;
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            let take = chunk.len().min(block_size - in_block);
            hasher.update(&chunk[..take]);
            in_block += take;
            chunk = &chunk[take..];
            if in_block == block_size {
                blocks.push(*hasher.finalize().as_bytes());
                hasher.reset();
                in_block = 0;
            }
        }
    }
    if in_block > 0 {
        blocks.push(*hasher.finalize().as_bytes());
    }
    // The umask may have cleared bits of `mode` at creation: set it exactly.
    output
        .set_permissions(Permissions::from_mode(mode))
        .map_err(io_err("setting the mode of", dest))?;
    sync(&output, dest)?;
    Ok(Copied {
        size,
        executable,
        blocks,
    })
}

fn sync(file: &File, path: &Path) -> Result<(), PublishError> {
    file.sync_all().map_err(io_err("flushing", path))
}
