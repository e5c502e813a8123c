//! `peer_hashes` and `peer_pushes` (MSC4004): the hashes, under our pepper, of the addresses
//! each trusted peer holds, as its last push under that pepper gave them. A push replaces
//! the peer's hashes under its pepper in one transaction; every instance reads them from
//! here on each lookup (nothing of them is kept in memory, so no instance disagrees with
//! another); a peer's hashes are served only while its last push is younger than its
//! `expireAfter`, and forgotten by the sweep after that.

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
        let stale = not_in(3, accepted.len());
        let forget_hashes =
            format!("DELETE FROM peer_hashes WHERE peer = $1 AND (pepper = $2 OR {stale})");
        let forget_pushes =
            format!("DELETE FROM peer_pushes WHERE peer = $1 AND (pepper = $2 OR {stale})");
        let mut params: Vec<Param<'_>> = vec![peer.into(), pepper.into()];
        params.extend(accepted.iter().map(|p| Param::from(*p)));
        self.transaction(|c| {
            c.execute(&forget_hashes, &params)?;
            c.execute(&forget_pushes, &params)?;
            for chunk in hashes.chunks(CHUNK) {
                insert_hashes(c, peer, pepper, chunk)?;
            }
            c.execute(
                "INSERT INTO peer_pushes (peer, pepper, pushed_ts, hashes) VALUES ($1, $2, $3, $4)",
                &[
                    peer.into(),
                    pepper.into(),
                    now_ms.into(),
                    (hashes.len() as i64).into(),
                ],
            )?;
            Ok(())
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

fn insert_hashes(
    c: &mut dyn Conn,
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
        "INSERT INTO peer_hashes (hash, peer, pepper) VALUES {} ON CONFLICT DO NOTHING",
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
