//! `hashing_metadata`: the lookup pepper.

use super::{State, StateError};
use rusqlite::OptionalExtension;

impl State {
    /// The stored pepper, or `fresh` stored and returned when there is none yet.
    pub fn pepper_or_insert(&self, fresh: &str) -> Result<String, StateError> {
        self.pool.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO hashing_metadata (id, lookup_pepper) VALUES (1, ?1)",
                [fresh],
            )?;
            let pepper: Option<String> = c
                .query_row(
                    "SELECT lookup_pepper FROM hashing_metadata WHERE id = 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(pepper.unwrap_or_else(|| fresh.to_owned()))
        })
    }
}
