//! `peer_hashes` and `peer_pushes` (MSC4004): the hashes, under our pepper, of the addresses
//! each trusted peer holds, as its last push under that pepper gave them. A push replaces
//! the peer's hashes under its pepper in one transaction; every instance reads them from
//! here on each lookup (nothing of them is kept in memory, so no instance disagrees with
//! another); a peer's hashes are served only while its last push is younger than its
//! `expireAfter`, and forgotten by the sweep after that.
//!
//! A push too large for one request comes in parts (`add_peer_push_part`): they wait in
//! `peer_part_hashes` until the last, which replaces the peer's hashes with all of them in
//! one transaction.

use super::dialect::{Conn, Param};
use super::{State, StateError};
use std::collections::HashSet;

/// Rows a statement inserts or hashes it asks about at most: well under SQLite's and
/// PostgreSQL's limits on parameters.
const CHUNK: usize = 400;

/// One peer's last push under one pepper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPush {
    pub peer: String,
    pub pepper: String,
    pub pushed_ts: i64,
    pub hashes: i64,
}

/// Which part of a push in parts a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPart {
    /// The push's id, chosen by the peer.
    pub push: String,
    /// 0 for the first.
    pub number: i64,
    pub last: bool,
}

/// What a part did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartAdded {
    /// Kept until the push's last part.
    Waiting,
    /// The last part: the push's hashes (each once) now replace the peer's.
    Complete { hashes: u64 },
    /// Not the next part of a push under way (a part lost, or the push started over
    /// meanwhile); the part this push expects next, if it is the one under way.
    OutOfOrder { expected: Option<i64> },
}

impl State {
    /// `peer` pushed `hashes` under `pepper` at `now_ms`: they replace what it pushed under
    /// that pepper, and what it pushed under any pepper not in `accepted` goes.
    pub fn replace_peer_hashes(
        &self,
        peer: &str,
        pepper: &str,
        accepted: &[&str],
        hashes: &[String],
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.transaction(|c| {
            forget_replaced(c, peer, pepper, accepted)?;
            for chunk in hashes.chunks(CHUNK) {
                insert_hashes(c, "peer_hashes", peer, pepper, chunk)?;
            }
            record_push(c, peer, pepper, hashes.len() as i64, now_ms)
        })
    }

    /// Part `part.number` of the push `part.push` of `peer` under `pepper`: part 0 starts
    /// the push over (dropping the parts of an earlier one never finished), a later part
    /// must be the next one of the same push, and the last replaces the peer's hashes under
    /// that pepper with every part's (as `replace_peer_hashes`), all in one transaction.
    pub fn add_peer_push_part(
        &self,
        peer: &str,
        pepper: &str,
        accepted: &[&str],
        part: &PushPart,
        hashes: &[String],
        now_ms: i64,
    ) -> Result<PartAdded, StateError> {
        let select = format!(
            "SELECT push, next_part FROM peer_push_parts WHERE peer = $1 AND pepper = $2{}",
            self.lock_rows()
        );
        self.transaction(|c| {
            let key = [Param::from(peer), Param::from(pepper)];
            if part.number == 0 {
                forget_parts(c, &key)?;
                c.execute(
                    "INSERT INTO peer_push_parts (peer, pepper, push, next_part, started_ts) VALUES ($1, $2, $3, 0, $4)",
                    &[peer.into(), pepper.into(), part.push.as_str().into(), now_ms.into()],
                )?;
            }
            // The push under way, and the part it expects next.
            let rows = c.query(&select, &key)?;
            let under_way = match rows.first() {
                Some(r) => Some((r.text(0)?, r.int(1)?)),
                None => None,
            };
            match under_way {
                Some((push, next)) if push == part.push && next == part.number => {}
                other => {
                    let expected = other
                        .filter(|(push, _)| *push == part.push)
                        .map(|(_, next)| next);
                    return Ok(PartAdded::OutOfOrder { expected });
                }
            }
            for chunk in hashes.chunks(CHUNK) {
                insert_hashes(c, "peer_part_hashes", peer, pepper, chunk)?;
            }
            if !part.last {
                c.execute(
                    "UPDATE peer_push_parts SET next_part = $3 WHERE peer = $1 AND pepper = $2",
                    &[peer.into(), pepper.into(), (part.number + 1).into()],
                )?;
                return Ok(PartAdded::Waiting);
            }
            forget_replaced(c, peer, pepper, accepted)?;
            let moved = c.execute(
                "INSERT INTO peer_hashes (hash, peer, pepper) SELECT hash, peer, pepper FROM peer_part_hashes WHERE peer = $1 AND pepper = $2",
                &key,
            )?;
            forget_parts(c, &key)?;
            record_push(c, peer, pepper, moved as i64, now_ms)?;
            Ok(PartAdded::Complete { hashes: moved })
        })
    }

    /// Forgets the parts of pushes started before `before_ms` and never finished (their
    /// peer stopped in the middle).
    pub fn forget_peer_push_parts_before(&self, before_ms: i64) -> Result<u64, StateError> {
        self.transaction(|c| {
            c.execute(
                "DELETE FROM peer_part_hashes WHERE EXISTS (SELECT 1 FROM peer_push_parts p WHERE p.peer = peer_part_hashes.peer AND p.pepper = peer_part_hashes.pepper AND p.started_ts < $1)",
                &[before_ms.into()],
            )?;
            c.execute(
                "DELETE FROM peer_push_parts WHERE started_ts < $1",
                &[before_ms.into()],
            )
        })
    }

    /// Every peer's last push under each pepper.
    pub fn peer_pushes(&self) -> Result<Vec<PeerPush>, StateError> {
        self.autocommit(|c| {
            c.query(
                "SELECT peer, pepper, pushed_ts, hashes FROM peer_pushes ORDER BY peer, pepper",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(PeerPush {
                    peer: r.text(0)?,
                    pepper: r.text(1)?,
                    pushed_ts: r.int(2)?,
                    hashes: r.int(3)?,
                })
            })
            .collect()
        })
    }

    /// Of `hashes` (under `pepper`), those that one of `peers` pushed, as (peer, hash);
    /// ordered by peer, then hash.
    pub fn peer_hashes_of(
        &self,
        pepper: &str,
        hashes: &[&str],
        peers: &HashSet<&str>,
    ) -> Result<Vec<(String, String)>, StateError> {
        let mut found = Vec::new();
        if peers.is_empty() {
            return Ok(found);
        }
        for chunk in hashes.chunks(CHUNK) {
            let sql = format!(
                "SELECT peer, hash FROM peer_hashes WHERE pepper = $1 AND hash IN ({})",
                placeholders(2, chunk.len())
            );
            let mut params: Vec<Param<'_>> = vec![pepper.into()];
            params.extend(chunk.iter().map(|h| Param::from(*h)));
            for row in self.autocommit(|c| c.query(&sql, &params))? {
                let peer = row.text(0)?;
                if peers.contains(peer.as_str()) {
                    found.push((peer, row.text(1)?));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Forgets what `peer` pushed under `pepper` (its pushes stopped, or it is no longer
    /// configured).
    pub fn forget_peer_push(&self, peer: &str, pepper: &str) -> Result<(), StateError> {
        self.transaction(|c| {
            for table in ["peer_hashes", "peer_pushes"] {
                c.execute(
                    &format!("DELETE FROM {table} WHERE peer = $1 AND pepper = $2"),
                    &[peer.into(), pepper.into()],
                )?;
            }
            Ok(())
        })
    }
}

/// Deletes what a new push of `peer` under `pepper` replaces: its hashes and push under
/// that pepper, and under every pepper not in `accepted` (no longer ours).
fn forget_replaced(
    c: &mut dyn Conn,
    peer: &str,
    pepper: &str,
    accepted: &[&str],
) -> Result<(), StateError> {
    let stale = not_in(3, accepted.len());
    let mut params: Vec<Param<'_>> = vec![peer.into(), pepper.into()];
    params.extend(accepted.iter().map(|p| Param::from(*p)));
    for table in ["peer_hashes", "peer_pushes"] {
        c.execute(
            &format!("DELETE FROM {table} WHERE peer = $1 AND (pepper = $2 OR {stale})"),
            &params,
        )?;
    }
    Ok(())
}

fn record_push(
    c: &mut dyn Conn,
    peer: &str,
    pepper: &str,
    hashes: i64,
    now_ms: i64,
) -> Result<(), StateError> {
    c.execute(
        "INSERT INTO peer_pushes (peer, pepper, pushed_ts, hashes) VALUES ($1, $2, $3, $4)",
        &[peer.into(), pepper.into(), now_ms.into(), hashes.into()],
    )?;
    Ok(())
}

/// Drops the parts waiting for `key` (peer, pepper).
fn forget_parts(c: &mut dyn Conn, key: &[Param<'_>]) -> Result<(), StateError> {
    for table in ["peer_part_hashes", "peer_push_parts"] {
        c.execute(
            &format!("DELETE FROM {table} WHERE peer = $1 AND pepper = $2"),
            key,
        )?;
    }
    Ok(())
}

/// Inserts `hashes` of `peer` under `pepper` into `table` (`peer_hashes` or
/// `peer_part_hashes`).
fn insert_hashes(
    c: &mut dyn Conn,
    table: &str,
    peer: &str,
    pepper: &str,
    hashes: &[String],
) -> Result<(), StateError> {
    // (hash, $1, $2) rows: the peer and pepper once, each hash its own parameter. A peer
    // that pushes a hash twice is stored once.
    let rows: Vec<String> = (0..hashes.len())
        .map(|i| format!("(${}, $1, $2)", i + 3))
        .collect();
    let sql = format!(
        "INSERT INTO {table} (hash, peer, pepper) VALUES {} ON CONFLICT DO NOTHING",
        rows.join(", ")
    );
    let mut params: Vec<Param<'_>> = vec![peer.into(), pepper.into()];
    params.extend(hashes.iter().map(Param::from));
    c.execute(&sql, &params)?;
    Ok(())
}

/// `$first, …` for `n` parameters.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `pepper NOT IN ($first, …)` for `n` parameters; false-free when `n` is 0.
fn not_in(first: usize, n: usize) -> String {
    if n == 0 {
        return "1 = 1".into();
    }
    format!("pepper NOT IN ({})", placeholders(first, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_from_the_first() {
        assert_eq!(placeholders(3, 2), "$3, $4");
        assert_eq!(not_in(3, 0), "1 = 1");
        assert_eq!(not_in(2, 1), "pepper NOT IN ($2)");
    }
}
