//! `ephemeral_public_keys`: ephemeral keys recorded before invites kept their own
//! (`invites.rs`), still answered as valid. Nothing writes it any more.

use super::{State, StateError};

impl State {
    /// Whether `public_key` (URL-safe unpadded base64) is the ephemeral key of a live
    /// invite, or one recorded before invites kept their own. Reads only: the endpoint that
    /// asks is unauthenticated.
    pub fn ephemeral_key_is_valid(&self, public_key: &str) -> Result<bool, StateError> {
        if public_key.is_empty() {
            return Ok(false); // what invites imported from mxisd have: no ephemeral key
        }
        if self.invite_key_is_live(public_key, crate::now_ms())? {
            return Ok(true);
        }
        self.read(|c| {
            Ok(!c
                .query(
                    "SELECT 1 FROM ephemeral_public_keys WHERE public_key = $1",
                    &[public_key.into()],
                )?
                .is_empty())
        })
    }
}
