//! The content manifest: what was published, and what every block is checked against.
//!
//! `contentdist publish` writes `ORIGIN_ROOT/ID/VERSION/manifest.json` beside the files
//! (under [`CONTENT_DIR`]). The manifest lists every file with its size, its executable
//! bit and the hash of each of its blocks, and ends with a `content_hash`: one hash over
//! all of the above that identifies the content. A job that names the content hash can
//! take the manifest from any peer, because a manifest that does not hash to it is
//! refused ([`Manifest::parse`] recomputes it).
//!
//! # Blocks
//!
//! Every file is cut into blocks of `block_size` bytes (the last one shorter; an empty
//! file has none). Blocks are numbered globally, file after file in manifest order:
//! file 0's blocks first, then file 1's, and so on. A [`BlockRef`] says where block `i`
//! lives (file, offset, length) and what it hashes to.
//!
//! # Why BLAKE3
//!
//! Block hashes and the content hash use BLAKE3 (256-bit). Measured on the build machine
//! (`BENCHMARKS.md`, `cargo bench -p contentdist --bench hashing`), one thread
//! hashes 128 KiB blocks with BLAKE3 at about 5.6-7 GB/s against 1.5-1.8 GB/s for
//! SHA-256 (sha2 0.10), 3.5 to 4 times faster, even though SHA-256 runs on the CPU's SHA
//! extensions there; without them SHA-256 is several times slower still. Every byte is
//! hashed on every hop (origin download, each peer copy, the publish itself), so the
//! hash is on the hot path of every agent: with SHA-256 one core would hash slower than
//! a 10 Gbit/s link delivers, with BLAKE3 it does not. BLAKE3 keeps 128-bit collision
//! and second-preimage resistance, which is what verifying blocks against a trusted
//! manifest needs.
//!
//! # The content hash
//!
//! `content_hash` is BLAKE3 over a canonical binary encoding of every other field, not
//! over the JSON text, so re-indenting or re-ordering the JSON does not change it. The
//! encoding, all integers little-endian, strings as a `u64` byte length then UTF-8 bytes:
//!
//! ```text
//! "contentdist-manifest\0"          21 bytes, domain separation
//! format          u32
//! content_id      string
//! version         u32
//! block_size      u32
//! hash_algorithm  string
//! file count      u64
//! for each file, in manifest order:
//!     path        string
//!     size        u64
//!     executable  u8 (0 or 1)
//!     block count u64
//!     blocks      32 bytes each
//! ```
//!
//! The hash is written as 64 lower-case hex digits.

mod key;
mod validate;
mod wire;

#[cfg(test)]
mod tests;

use std::ops::Range;

pub use key::ContentKey;
pub use validate::{validate_content_id, validate_path};

/// Name of the manifest file inside a published version directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Name of the file beside the manifest that holds its content hash (64 hex digits and
/// a newline): what a peer fetches from the origin to check a manifest it takes from
/// its master over the LAN, so that the manifest crosses the WAN once per subnet while
/// the origin stays the authority on what is published.
pub const CONTENT_HASH_FILE: &str = "content-hash";
/// Directory holding the published files: `ORIGIN_ROOT/ID/VERSION/content/<path>`.
pub const CONTENT_DIR: &str = "content";
/// The only manifest format this agent reads and writes.
pub const FORMAT: u32 = 1;
/// The only hash algorithm this agent knows (`hash_algorithm` field).
pub const HASH_ALGORITHM: &str = "blake3";
/// Smallest allowed block size (the product's `BlockSize` range).
pub const MIN_BLOCK_SIZE: u32 = 4096;
/// Largest allowed block size (the product's `BlockSize` range).
pub const MAX_BLOCK_SIZE: u32 = 4 * 1024 * 1024;
/// The product's default `BlockSize`: 128 KiB.
pub const DEFAULT_BLOCK_SIZE: u32 = 131_072;

/// A block hash or content hash: 32 bytes of BLAKE3.
pub type Hash = [u8; 32];

/// Hash one block (BLAKE3).
pub fn hash_block(data: &[u8]) -> Hash {
    *blake3::hash(data).as_bytes()
}

/// [`hash_block`] of the concatenation of `parts` (a block as it arrived, in the
/// network's pieces, hashed without first copying it into one buffer).
pub fn hash_block_parts<P: AsRef<[u8]>>(parts: &[P]) -> Hash {
    match parts {
        [one] => hash_block(one.as_ref()),
        _ => {
            let mut h = blake3::Hasher::new();
            for p in parts {
                h.update(p.as_ref());
            }
            *h.finalize().as_bytes()
        }
    }
}

/// A parsed and fully validated manifest.
///
/// Build one with [`Manifest::parse`] or [`Manifest::build`]: both check every field and
/// compute [`FileEntry::first_block`]. The fields are public for reading; a manifest
/// changed by hand no longer matches its `content_hash` and its block indices may be
/// stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Manifest format, always [`FORMAT`] (1).
    pub format: u32,
    /// Content id (package id), see [`validate_content_id`].
    pub content_id: String,
    /// Content version.
    pub version: u32,
    /// Block size in bytes, `MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE`.
    pub block_size: u32,
    /// Hash algorithm of block hashes and content hash, always [`HASH_ALGORITHM`].
    pub hash_algorithm: String,
    /// The files, in publish order (sorted by path when written by `publish`).
    pub files: Vec<FileEntry>,
    /// BLAKE3 of the canonical encoding of every other field, 64 lower-case hex digits.
    pub content_hash: String,
}

/// One file of the content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative `/`-separated path, see [`validate_path`].
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether the file is published executable (mode 0755 rather than 0644).
    pub executable: bool,
    /// Hash of each block, `ceil(size / block_size)` of them (none for an empty file).
    /// Serialized as lower-case hex strings.
    pub blocks: Vec<Hash>,
    /// Global index of this file's first block. Not serialized: computed by
    /// [`Manifest::parse`] and [`Manifest::build`].
    pub first_block: usize,
}

impl FileEntry {
    /// A file entry; `first_block` is left 0 for [`Manifest::build`] to compute.
    pub fn new(path: impl Into<String>, size: u64, executable: bool, blocks: Vec<Hash>) -> Self {
        FileEntry {
            path: path.into(),
            size,
            executable,
            blocks,
            first_block: 0,
        }
    }
}

/// Where one block lives and what it must hash to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRef {
    /// Global block index.
    pub index: usize,
    /// Index of the file in [`Manifest::files`].
    pub file: usize,
    /// Byte offset of the block within its file.
    pub offset: u64,
    /// Length in bytes (`block_size`, or less for a file's last block).
    pub len: u32,
    /// Expected BLAKE3 hash.
    pub hash: Hash,
}

impl Manifest {
    /// Parse and validate a manifest document.
    ///
    /// Checks everything: `format` is 1; `hash_algorithm` is known; the content id is
    /// valid; `block_size` is in `4096..=4194304`; every path is safe ([`validate_path`]),
    /// unique, and not also a directory of another path (`a` and `a/b`); every file has
    /// `ceil(size / block_size)` block hashes; and `content_hash` equals the recomputed
    /// hash. Unknown JSON fields are refused. Errors name the field or file at fault.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let doc: wire::ManifestDoc = serde_json::from_slice(bytes).map_err(|source| {
            // A newer format may have fields this one refuses: say "format 2", not
            // "unknown field".
            match wire::peek_format(bytes) {
                Some(found) if found != FORMAT => ManifestError::UnsupportedFormat { found },
                _ => ManifestError::Json { source },
            }
        })?;
        let declared = doc.content_hash.clone();
        let mut manifest = doc.into_manifest()?;
        validate::check(&mut manifest)?;
        validate::check_hash_text(&declared)?;
        let computed = manifest.compute_content_hash();
        if computed != declared {
            return Err(ManifestError::ContentHashMismatch { declared, computed });
        }
        Ok(manifest)
    }

    /// Build a manifest from its parts (as `publish` does): validates like
    /// [`Manifest::parse`], computes every `first_block` and the content hash.
    pub fn build(
        content_id: impl Into<String>,
        version: u32,
        block_size: u32,
        files: Vec<FileEntry>,
    ) -> Result<Manifest, ManifestError> {
        let mut manifest = Manifest {
            format: FORMAT,
            content_id: content_id.into(),
            version,
            block_size,
            hash_algorithm: HASH_ALGORITHM.to_string(),
            files,
            content_hash: String::new(),
        };
        validate::check(&mut manifest)?;
        manifest.content_hash = manifest.compute_content_hash();
        Ok(manifest)
    }

    /// The manifest as pretty-printed JSON; `Manifest::parse(&m.to_json()) == Ok(m)`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(&wire::ManifestDoc::from(self))
            .expect("serializing strings and integers cannot fail");
        out.push(b'\n');
        out
    }

    /// BLAKE3 over the canonical encoding of every field except `content_hash` (see the
    /// module docs), as 64 lower-case hex digits.
    pub fn compute_content_hash(&self) -> String {
        fn string(h: &mut blake3::Hasher, s: &str) {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        let mut h = blake3::Hasher::new();
        h.update(b"contentdist-manifest\0");
        h.update(&self.format.to_le_bytes());
        string(&mut h, &self.content_id);
        h.update(&self.version.to_le_bytes());
        h.update(&self.block_size.to_le_bytes());
        string(&mut h, &self.hash_algorithm);
        h.update(&(self.files.len() as u64).to_le_bytes());
        for f in &self.files {
            string(&mut h, &f.path);
            h.update(&f.size.to_le_bytes());
            h.update(&[u8::from(f.executable)]);
            h.update(&(f.blocks.len() as u64).to_le_bytes());
            for block in &f.blocks {
                h.update(block);
            }
        }
        h.finalize().to_hex().to_string()
    }

    /// Whether this is the content asked for: `id`, `version` and, when given, the
    /// content hash. `Err` says what differs, in words; callers wrap it in their own
    /// mismatch error.
    pub fn check_is(
        &self,
        id: &str,
        version: u32,
        expect_hash: Option<&str>,
    ) -> Result<(), String> {
        if self.content_id != id || self.version != version {
            return Err(format!(
                "asked for {id}/{version}, the manifest is for {}/{}",
                self.content_id, self.version
            ));
        }
        match expect_hash {
            Some(h) if !self.content_hash.eq_ignore_ascii_case(h) => Err(format!(
                "the job expects content hash {h}, the manifest has {}",
                self.content_hash
            )),
            _ => Ok(()),
        }
    }

    /// Total size of all files in bytes.
    pub fn total_size(&self) -> u64 {
        // Cannot overflow for a validated manifest: `check` refuses sums above u64::MAX.
        self.files.iter().map(|f| f.size).sum()
    }

    /// Number of blocks over all files.
    pub fn block_count(&self) -> usize {
        self.files.iter().map(|f| f.blocks.len()).sum()
    }

    /// Block `index` (global).
    ///
    /// # Panics
    ///
    /// If `index >= self.block_count()`. Use [`Manifest::verify_block`] for indices that
    /// come from the network: it returns `false` instead.
    pub fn block(&self, index: usize) -> BlockRef {
        self.try_block(index).unwrap_or_else(|| {
            panic!(
                "block index {index} out of range: content {} has {} blocks",
                self.content_id,
                self.block_count()
            )
        })
    }

    /// Block `index`, or `None` when out of range.
    pub fn try_block(&self, index: usize) -> Option<BlockRef> {
        // Files are in block order; the first whose block range ends after `index` holds
        // it. Empty files end where they start, so they are never chosen.
        let file = self
            .files
            .partition_point(|f| f.first_block + f.blocks.len() <= index);
        let entry = self.files.get(file)?;
        let nth = index - entry.first_block;
        Some(self.block_of(file, nth))
    }

    /// Every block in global order.
    pub fn blocks(&self) -> impl Iterator<Item = BlockRef> + '_ {
        (0..self.files.len())
            .flat_map(move |file| (0..self.files[file].blocks.len()).map(move |nth| (file, nth)))
            .map(|(file, nth)| self.block_of(file, nth))
    }

    /// Global indices of file `file`'s blocks (empty for an empty file).
    ///
    /// # Panics
    ///
    /// If `file >= self.files.len()`.
    pub fn file_blocks(&self, file: usize) -> Range<usize> {
        let f = &self.files[file];
        f.first_block..f.first_block + f.blocks.len()
    }

    /// Index of the file with this path, if any.
    pub fn find_file(&self, path: &str) -> Option<usize> {
        self.files.iter().position(|f| f.path == path)
    }

    /// Whether `data` is block `index`: right length and right hash. An index out of
    /// range gives `false`.
    pub fn verify_block(&self, index: usize, data: &[u8]) -> bool {
        self.verify_block_parts(index, &[data])
    }

    /// [`verify_block`](Self::verify_block) of the concatenation of `parts`.
    pub fn verify_block_parts<P: AsRef<[u8]>>(&self, index: usize, parts: &[P]) -> bool {
        let len: usize = parts.iter().map(|p| p.as_ref().len()).sum();
        match self.try_block(index) {
            Some(b) => len == b.len as usize && hash_block_parts(parts) == b.hash,
            None => false,
        }
    }

    /// The `nth` block of file `file` (both in range).
    fn block_of(&self, file: usize, nth: usize) -> BlockRef {
        let f = &self.files[file];
        let block_size = u64::from(self.block_size);
        let offset = nth as u64 * block_size;
        BlockRef {
            index: f.first_block + nth,
            file,
            offset,
            len: (f.size - offset).min(block_size) as u32,
            hash: f.blocks[nth],
        }
    }
}

/// Why a manifest, content id or path was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The document is not JSON of the expected shape.
    #[error("manifest is not a valid format-1 JSON document: {source}")]
    Json {
        /// The parser's error (with line and column).
        source: serde_json::Error,
    },
    /// `format` is not 1.
    #[error("manifest field `format` is {found}; this agent reads format {FORMAT}")]
    UnsupportedFormat {
        /// The value found.
        found: u32,
    },
    /// `hash_algorithm` is not one this agent knows.
    #[error(
        "manifest field `hash_algorithm` is {found:?}; this agent knows only {HASH_ALGORITHM:?}"
    )]
    UnknownHashAlgorithm {
        /// The value found.
        found: String,
    },
    /// The content id is not allowed.
    #[error("invalid content id {id:?}: {reason}")]
    InvalidContentId {
        /// The id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `block_size` is out of range.
    #[error(
        "manifest field `block_size` is {found}; it must be {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE}"
    )]
    InvalidBlockSize {
        /// The value found.
        found: u32,
    },
    /// A file path is unsafe or malformed.
    #[error("invalid file path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two files have the same path.
    #[error("manifest lists file {path:?} twice")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// A file's path is also a directory of another file's path (`a` and `a/b`).
    #[error("manifest lists {file:?} as a file and as a directory (of {other:?})")]
    PathConflict {
        /// The path listed as a file.
        file: String,
        /// The path that needs it to be a directory.
        other: String,
    },
    /// A file's block list does not match its size.
    #[error(
        "file {path:?}: {size} bytes need {expected} blocks of {block_size} bytes, the manifest lists {found}"
    )]
    BlockCount {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// The manifest's block size.
        block_size: u32,
        /// `ceil(size / block_size)`.
        expected: u64,
        /// Number of block hashes listed.
        found: usize,
    },
    /// A block hash is not 64 lower-case hex digits.
    #[error("file {path:?} block {block}: hash {found:?} is not 64 lower-case hex digits")]
    InvalidBlockHash {
        /// The file.
        path: String,
        /// Block number within the file.
        block: usize,
        /// The text found.
        found: String,
    },
    /// The total size of the files does not fit in 64 bits.
    #[error("manifest files add up to more than 2^64 bytes")]
    TooLarge,
    /// `content_hash` is not 64 lower-case hex digits.
    #[error("manifest field `content_hash` {found:?} is not 64 lower-case hex digits")]
    InvalidContentHash {
        /// The text found.
        found: String,
    },
    /// `content_hash` does not match the rest of the manifest.
    #[error(
        "manifest field `content_hash` is {declared} but the manifest hashes to {computed}: it was altered or corrupted"
    )]
    ContentHashMismatch {
        /// The value in the document.
        declared: String,
        /// The value recomputed from the other fields.
        computed: String,
    },
}

impl ManifestError {
    /// The catalogue code: `INVALID_PACKAGE_PATH` for a bad content id or file path,
    /// `MANIFEST_INVALID` for everything else.
    pub fn code(&self) -> crate::codes::Code {
        use crate::codes::Code;
        match self {
            ManifestError::InvalidContentId { .. } | ManifestError::InvalidPath { .. } => {
                Code::INVALID_PACKAGE_PATH
            }
            _ => Code::MANIFEST_INVALID,
        }
    }
}
