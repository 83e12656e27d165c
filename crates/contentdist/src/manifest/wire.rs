//! The JSON shape of a manifest (serde), kept apart from [`Manifest`] so that parse
//! errors can name the file whose block hash is malformed.

use serde::{Deserialize, Serialize};

use super::{validate, FileEntry, Hash, Manifest, ManifestError};

/// `manifest.json` as written: field order is the order shown to people.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ManifestDoc {
    format: u32,
    content_id: String,
    version: u32,
    block_size: u32,
    hash_algorithm: String,
    files: Vec<FileDoc>,
    pub(super) content_hash: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    path: String,
    size: u64,
    executable: bool,
    blocks: Vec<String>,
}

impl ManifestDoc {
    /// Decode the block hashes; everything else is checked by `validate::check`.
    pub(super) fn into_manifest(self) -> Result<Manifest, ManifestError> {
        let files = self
            .files
            .into_iter()
            .map(FileDoc::into_entry)
            .collect::<Result<_, _>>()?;
        Ok(Manifest {
            format: self.format,
            content_id: self.content_id,
            version: self.version,
            block_size: self.block_size,
            hash_algorithm: self.hash_algorithm,
            files,
            content_hash: self.content_hash,
        })
    }
}

impl FileDoc {
    fn into_entry(self) -> Result<FileEntry, ManifestError> {
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for (block, text) in self.blocks.iter().enumerate() {
            blocks.push(
                decode_hash(text).ok_or_else(|| ManifestError::InvalidBlockHash {
                    path: self.path.clone(),
                    block,
                    found: text.clone(),
                })?,
            );
        }
        Ok(FileEntry::new(
            self.path,
            self.size,
            self.executable,
            blocks,
        ))
    }
}

/// The `format` field alone, from a document that may not be format 1.
pub(super) fn peek_format(bytes: &[u8]) -> Option<u32> {
    #[derive(Deserialize)]
    struct Peek {
        format: u32,
    }
    serde_json::from_slice::<Peek>(bytes).ok().map(|p| p.format)
}

/// 64 lower-case hex digits to 32 bytes.
fn decode_hash(text: &str) -> Option<Hash> {
    if !validate::is_hash_text(text) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

impl From<&Manifest> for ManifestDoc {
    fn from(m: &Manifest) -> Self {
        ManifestDoc {
            format: m.format,
            content_id: m.content_id.clone(),
            version: m.version,
            block_size: m.block_size,
            hash_algorithm: m.hash_algorithm.clone(),
            files: m
                .files
                .iter()
                .map(|f| FileDoc {
                    path: f.path.clone(),
                    size: f.size,
                    executable: f.executable,
                    blocks: f.blocks.iter().map(hex::encode).collect(),
                })
                .collect(),
            content_hash: m.content_hash.clone(),
        }
    }
}
