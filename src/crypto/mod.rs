//! Cryptography of the identity service: canonical JSON, ed25519 JSON signatures, the mxisd
//! key store, the base64 forms Matrix uses, and random tokens.
//!
//! Depends on nothing else in mxisd; knows nothing about HTTP or storage of our own state.

pub mod b64;
pub(crate) mod canonical;
pub mod hash;
pub(crate) mod keys;
pub(crate) mod random;
pub(crate) mod sign;

pub use keys::{KeyError, SigningKeys};
pub use sign::{sign_json, verify_json};

#[cfg(test)]
mod vectors;

/// Compares without stopping at the first difference, so that timing says nothing of how
/// much of a secret (a password, a client secret) was right; only the length shows.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_every_byte_and_the_length() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"Secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        // Two differences of the same bits: they must add up, not cancel out (`^`).
        assert!(!constant_time_eq(b"ab", b"ba"));
        assert!(!constant_time_eq(b"aa", b"bb"));
    }

    #[test]
    fn hashes_are_sha256_in_url_safe_base64() {
        // sha256("") and sha256("abc"), known values.
        assert_eq!(
            hash::token_hash(""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert_eq!(
            hash::token_hash("abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        assert_eq!(
            hash::lookup_hash("a", "b", "c"),
            hash::token_hash("a b c"),
            "the address, medium and pepper joined by spaces"
        );
        assert_eq!(
            b64::encode_url_safe(&hash::lookup_digest("a", "b", "c")),
            hash::lookup_hash("a", "b", "c")
        );
    }
}
