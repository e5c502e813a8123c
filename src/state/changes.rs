//! `changes`: the feed that keeps what each instance serves from memory (the hash index
//! over local binds) in step with the database. A change is written in the same
//! transaction as the data it describes and numbered by `change_seq`; an instance applies
//! its own changes at once and reads the others' with a `ChangeCursor`, polling.
//!
//! Old changes are pruned; a cursor that fell behind the oldest kept change is told so
//! (`Changes::Gap`), and its reader rebuilds from the data itself.

use super::dialect::Conn;
use super::{State, StateError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub topic: String,
    pub body: String,
}

/// What a poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// The changes after the cursor, in order (maybe none).
    New(Vec<Change>),
    /// Changes after the cursor were pruned: take a new `change_cursor()`, then rebuild
    /// from the data, then go on from that cursor.
    Gap,
}

/// Where a reader is in the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeCursor(pub i64);

/// Appends a change inside `c`'s transaction; its number. Writers wait for each other on
/// the counter's row until they commit, so the numbers become visible in order.
pub(super) fn append(
    c: &mut dyn Conn,
    topic: &str,
    body: &str,
    now_ms: i64,
) -> Result<i64, StateError> {
    let seq = c
        .query(
            "UPDATE change_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq",
            &[],
        )?
        .first()
        .map(|r| r.int(0))
        .transpose()?
        .ok_or_else(|| StateError::schema("the change_seq row is missing".into()))?;
    c.execute(
        "INSERT INTO changes (seq, topic, body, created_ts) VALUES ($1, $2, $3, $4)",
        &[seq.into(), topic.into(), body.into(), now_ms.into()],
    )?;
    Ok(seq)
}

impl State {
    /// A cursor at the newest change: a reader that has just loaded the data.
    pub fn change_cursor(&self) -> Result<ChangeCursor, StateError> {
        self.autocommit(|c| {
            c.query("SELECT seq FROM change_seq WHERE id = 1", &[])?
                .first()
                .map(|r| r.int(0))
                .transpose()
                .map(|seq| ChangeCursor(seq.unwrap_or(0)))
        })
    }

    /// Up to `limit` changes after `cursor`, and the cursor after them.
    pub fn changes_after(
        &self,
        cursor: ChangeCursor,
        limit: i64,
    ) -> Result<(Changes, ChangeCursor), StateError> {
        self.autocommit(|c| {
            let rows = c.query(
                "SELECT seq, topic, body FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[cursor.0.into(), limit.into()],
            )?;
            let changes = rows
                .iter()
                .map(|r| {
                    Ok(Change {
                        seq: r.int(0)?,
                        topic: r.text(1)?,
                        body: r.text(2)?,
                    })
                })
                .collect::<Result<Vec<_>, StateError>>()?;
            // Numbers are consecutive and pruning takes only the oldest: a hole after the
            // cursor means changes this reader never saw are gone.
            let holes = changes
                .iter()
                .zip(std::iter::once(cursor.0).chain(changes.iter().map(|c| c.seq)))
                .any(|(c, before)| c.seq != before + 1);
            match holes {
                true => Ok((Changes::Gap, cursor)),
                false => {
                    let next = changes.last().map_or(cursor, |c| ChangeCursor(c.seq));
                    Ok((Changes::New(changes), next))
                }
            }
        })
    }

    /// Forgets the oldest changes, up to the newest one written before `before_ms`, always
    /// keeping the newest of all (its number tells a reader whether it missed any). Only a
    /// run from the oldest up is removed, whatever the writers' clocks said, so a reader
    /// never finds a hole in the middle.
    pub fn prune_changes(&self, before_ms: i64) -> Result<u64, StateError> {
        self.autocommit(|c| {
            c.execute(
                "DELETE FROM changes
                 WHERE seq <= (SELECT MAX(seq) FROM changes WHERE created_ts < $1)
                   AND seq < (SELECT seq FROM change_seq WHERE id = 1)",
                &[before_ms.into()],
            )
        })
    }
}
