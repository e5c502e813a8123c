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

/// The lookup peppers: the current one, and the one it replaced with when (ms), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peppers {
    pub current: String,
    pub previous: Option<(String, i64)>,
}

impl State {
    /// The stored peppers, `fresh` stored first when there is none yet; with `chosen` (the
    /// operator's `hashing.pepper`) differing from the stored one, `chosen` replaces it at
    /// `now_ms` and the stored one becomes the previous. In one transaction: instances
    /// starting together on a new `chosen` rotate once.
    pub fn peppers(
        &self,
        chosen: Option<&str>,
        fresh: &str,
        now_ms: i64,
    ) -> Result<Peppers, StateError> {
        let select = format!(
            "SELECT lookup_pepper, previous_pepper, rotated_ts FROM hashing_metadata WHERE id = 1{}",
            self.lock_rows()
        );
        self.transaction(|c| {
            c.execute(
                "INSERT INTO hashing_metadata (id, lookup_pepper) VALUES (1, $1)
                 ON CONFLICT (id) DO NOTHING",
                &[chosen.unwrap_or(fresh).into()],
            )?;
            let rows = c.query(&select, &[])?;
            let row = rows
                .first()
                .ok_or_else(|| StateError::schema("the pepper row is missing".into()))?;
            let stored = Peppers {
                current: row.text(0)?,
                previous: match (row.opt_text(1)?, row.opt_int(2)?) {
                    (Some(p), Some(ts)) => Some((p, ts)),
                    _ => None,
                },
            };
            match chosen {
                Some(new) if new != stored.current => {
                    c.execute(
                        "UPDATE hashing_metadata
                         SET previous_pepper = lookup_pepper, lookup_pepper = $1, rotated_ts = $2
                         WHERE id = 1",
                        &[new.into(), now_ms.into()],
                    )?;
                    Ok(Peppers {
                        current: new.to_owned(),
                        previous: Some((stored.current, now_ms)),
                    })
                }
                _ => Ok(stored),
            }
        })
    }
}
