//! `ephemeral_public_keys`: the one-off keys of e-mail invites.

use super::{State, StateError};

impl State {
    /// Whether `public_key` (URL-safe unpadded base64) is an ephemeral key we handed out;
    /// each check is counted, as sydent does.
    pub fn ephemeral_key_is_valid(&self, public_key: &str) -> Result<bool, StateError> {
        self.read(|c| {
            Ok(c.execute(
                "UPDATE ephemeral_public_keys SET verify_count = verify_count + 1
                 WHERE public_key = $1",
                &[public_key.into()],
            )? > 0)
        })
    }

    /// Records an ephemeral public key (store-invite).
    pub fn add_ephemeral_key(&self, public_key: &str, now_ms: i64) -> Result<(), StateError> {
        self.read(|c| {
            c.execute(
                "INSERT INTO ephemeral_public_keys (public_key, created_ts) VALUES ($1, $2)
                 ON CONFLICT (public_key) DO NOTHING",
                &[public_key.into(), now_ms.into()],
            )?;
            Ok(())
        })
    }
}
