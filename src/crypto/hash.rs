//! The lookup hash of the v2 API: `sha256("<address> <medium> <pepper>")` in unpadded
//! URL-safe base64 (identity service API, "Hashing" / MSC2134); and the hash secrets are
//! kept as (access tokens, session tokens).

use super::b64;
use sha2::{Digest, Sha256};

/// The form a secret token is stored in: SHA-256, unpadded URL-safe base64.
pub fn token_hash(token: &str) -> String {
    b64::encode_url_safe(&Sha256::digest(token.as_bytes()))
}

pub fn lookup_hash(address: &str, medium: &str, pepper: &str) -> String {
    b64::encode_url_safe(&lookup_digest(address, medium, pepper))
}

/// The lookup hash as its 32 bytes (what the hash index keys by).
pub fn lookup_digest(address: &str, medium: &str, pepper: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(address.as_bytes());
    hasher.update(b" ");
    hasher.update(medium.as_bytes());
    hasher.update(b" ");
    hasher.update(pepper.as_bytes());
    hasher.finalize().into()
}
