//! `ephemeral_public_keys`: the one-off keys of e-mail invites.

use super::{State, StateError};
use rusqlite::OptionalExtension;

impl State {
    /// Whether `public_key` (URL-safe unpadded base64) is an ephemeral key we handed out;
    /// each check is counted, as sydent does.
    pub fn ephemeral_key_is_valid(&self, public_key: &str) -> Result<bool, StateError> {
        self.pool.with(|c| {
            let found = c
                .query_row(
                    "SELECT 1 FROM ephemeral_public_keys WHERE public_key = ?1",
                    [public_key],
                    |_| Ok(()),
                )
                .optional()?;
            if found.is_some() {
                c.execute(
                    "UPDATE ephemeral_public_keys SET verify_count = verify_count + 1 WHERE public_key = ?1",
                    [public_key],
                )?;
            }
            Ok(found.is_some())
        })
    }

    /// Records an ephemeral public key (store-invite).
    pub fn add_ephemeral_key(&self, public_key: &str, now_ms: i64) -> Result<(), StateError> {
        self.pool.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO ephemeral_public_keys (public_key, created_ts) VALUES (?1, ?2)",
                rusqlite::params![public_key, now_ms],
            )?;
            Ok(())
        })
    }
}
