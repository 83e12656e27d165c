//! [`ContentKey`]: which content, by id and version, checked once when it is made.
//!
//! The id becomes a directory name on the origin and in every cache, a URL segment
//! and a field of election datagrams. Checking it wherever it is used let one path
//! forget; a key that cannot hold an invalid id cannot.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{validate_content_id, Manifest, ManifestError};

/// A content id and version. The id always passes [`validate_content_id`]: every way
/// to make one ([`ContentKey::new`], [`ContentKey::of`], deserializing) checks it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "KeyDoc", into = "KeyDoc")]
pub struct ContentKey {
    // Field order is the sort order: by id, then version.
    id: String,
    version: u32,
}

impl ContentKey {
    /// The key of content `id`, version `version`; refused with
    /// [`ManifestError::InvalidContentId`] unless `id` is a valid content id.
    pub fn new(id: impl Into<String>, version: u32) -> Result<Self, ManifestError> {
        let id = id.into();
        validate_content_id(&id)?;
        Ok(ContentKey { id, version })
    }

    /// The key of the content `manifest` describes. Fails only for a manifest whose
    /// `content_id` was changed by hand after it was parsed or built.
    pub fn of(manifest: &Manifest) -> Result<Self, ManifestError> {
        ContentKey::new(manifest.content_id.clone(), manifest.version)
    }

    /// The content id: 1 to 64 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The content version.
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl fmt::Display for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.id, self.version)
    }
}

/// The serialized shape, `{"id": "PKG1", "version": 3}`: deserializing goes through
/// [`ContentKey::new`], so a document cannot smuggle in an invalid id.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDoc {
    id: String,
    version: u32,
}

impl TryFrom<KeyDoc> for ContentKey {
    type Error = ManifestError;

    fn try_from(doc: KeyDoc) -> Result<Self, Self::Error> {
        ContentKey::new(doc.id, doc.version)
    }
}

impl From<ContentKey> for KeyDoc {
    fn from(key: ContentKey) -> Self {
        KeyDoc {
            id: key.id,
            version: key.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_only_from_valid_ids() {
        let k = ContentKey::new("PKG1", 3).unwrap();
        assert_eq!(
            (k.id(), k.version(), k.to_string()),
            ("PKG1", 3, "PKG1/3".into())
        );
        for bad in ["", ".", "..", "../x", "a/b", "a\0b", "a b", &"x".repeat(65)] {
            assert!(
                matches!(
                    ContentKey::new(bad, 1),
                    Err(ManifestError::InvalidContentId { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn deserializing_checks_the_id_like_new() {
        let k: ContentKey = serde_json::from_str(r#"{"id":"PKG1","version":3}"#).unwrap();
        assert_eq!(k, ContentKey::new("PKG1", 3).unwrap());
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            r#"{"id":"PKG1","version":3}"#
        );
        for bad in [
            r#"{"id":"../etc","version":3}"#,
            r#"{"id":"","version":3}"#,
            r#"{"id":"PKG1","version":3,"extra":1}"#,
        ] {
            assert!(serde_json::from_str::<ContentKey>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_sort_by_id_then_version() {
        let k = |id, v| ContentKey::new(id, v).unwrap();
        let mut keys = vec![k("B", 1), k("A", 2), k("A", 1)];
        keys.sort();
        assert_eq!(keys, vec![k("A", 1), k("A", 2), k("B", 1)]);
    }
}
