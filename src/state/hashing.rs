//! `hashing_metadata`: the lookup pepper, decided once for every instance.

use super::{State, StateError};

impl State {
    /// The stored pepper, or `fresh` stored and returned when there is none yet. Two
    /// instances starting together store one pepper: the second insert does nothing.
    pub fn pepper_or_insert(&self, fresh: &str) -> Result<String, StateError> {
        self.autocommit(|c| {
            c.execute(
                "INSERT INTO hashing_metadata (id, lookup_pepper) VALUES (1, $1)
                 ON CONFLICT (id) DO NOTHING",
                &[fresh.into()],
            )?;
            c.query(
                "SELECT lookup_pepper FROM hashing_metadata WHERE id = 1",
                &[],
            )?
            .first()
            .map(|r| r.text(0))
            .transpose()?
            .ok_or_else(|| StateError::schema("the pepper row is missing".into()))
        })
    }
}
