//! Cryptography of the identity service: canonical JSON, ed25519 JSON signatures, the mxisd
//! key store, the base64 forms Matrix uses, and random tokens.
//!
//! Depends on nothing else in mxisd; knows nothing about HTTP or storage of our own state.

pub mod b64;
pub mod canonical;
pub mod hash;
pub mod keys;
pub mod random;
pub mod sign;

pub use canonical::canonical_json;
pub use keys::{KeyError, SigningKeys};
pub use sign::{sign_json, verify_json, SignError};

#[cfg(test)]
mod vectors;
