//! The site key: authentication of election messages and encryption of the P2P key.
//!
//! Two keys are derived from the configured secret with HMAC-SHA256 and distinct
//! labels, so that the tag key and the encryption key are never the same key:
//!
//! - tag: `HMAC-SHA256(mac_key, message)[..16]`, appended to every message;
//! - P2P key encryption: `p2p_key XOR HMAC-SHA256(enc_key, nonce)` with a random
//!   16-byte nonce per message, carried in clear next to the ciphertext. The tag
//!   covers the nonce and the ciphertext, so neither can be altered unnoticed.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// Length of the authentication tag appended to authenticated messages.
pub const TAG_LEN: usize = 16;
/// Length of the per-message nonce that encrypts the P2P key.
pub const NONCE_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 over the concatenation of `parts`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The keys derived from the secret shared by every agent of a site (the `SiteKey`
/// setting: `SiteKey::from(&config_site_key)`).
///
/// With a site key, election messages carry an HMAC tag and the master's P2P key is
/// encrypted, so a host without the key can neither take part in an election nor
/// learn the P2P account key. Use at least 16 random bytes.
#[derive(Clone)]
pub struct SiteKey {
    mac_key: [u8; 32],
    enc_key: [u8; 32],
}

impl SiteKey {
    /// Derive the tag and encryption keys from the configured secret.
    pub fn new(secret: &[u8]) -> SiteKey {
        SiteKey {
            mac_key: hmac(secret, &[b"contentdist election tag v1"]),
            enc_key: hmac(secret, &[b"contentdist election p2p-key v1"]),
        }
    }

    /// The tag of `data`.
    pub(crate) fn tag(&self, data: &[u8]) -> [u8; TAG_LEN] {
        let full = hmac(&self.mac_key, &[data]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Whether `tag` is the tag of `data`, compared in constant time.
    pub(crate) fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac =
            HmacSha256::new_from_slice(&self.mac_key).expect("HMAC accepts any key length");
        mac.update(data);
        mac.verify_truncated_left(tag).is_ok()
    }

    /// The 32 bytes XORed with the P2P key of a message carrying `nonce`.
    pub(crate) fn keystream(&self, nonce: &[u8; NONCE_LEN]) -> [u8; 32] {
        hmac(&self.enc_key, &[nonce])
    }
}

impl From<&crate::config::SiteKey> for SiteKey {
    fn from(key: &crate::config::SiteKey) -> SiteKey {
        SiteKey::new(key.as_bytes())
    }
}

impl fmt::Debug for SiteKey {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SiteKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_verifies_only_for_the_same_key_and_data() {
        let k = SiteKey::new(b"site secret");
        let t = k.tag(b"hello");
        assert!(k.verify(b"hello", &t));
        assert!(!k.verify(b"hellp", &t));
        assert!(!SiteKey::new(b"other secret").verify(b"hello", &t));
        // A shorter tag is not accepted as a prefix match of nothing.
        assert!(!k.verify(b"hello", &[]));
    }

    #[test]
    fn keystream_depends_on_nonce_and_differs_from_tag_key() {
        let k = SiteKey::new(b"site secret");
        assert_ne!(k.keystream(&[0; NONCE_LEN]), k.keystream(&[1; NONCE_LEN]));
        assert_ne!(k.mac_key, k.enc_key);
        assert_eq!(format!("{k:?}"), "SiteKey(..)");
    }
}
