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
