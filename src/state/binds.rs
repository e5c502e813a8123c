//! `local_binds`: 3PIDs bound here to Matrix IDs (`binds.local.enabled`). Each bind and
//! unbind writes, in the same transaction, a change to the feed (topic `bind`), which every
//! instance applies to its hash index.

use super::changes::append;
use super::{State, StateError};
use serde_json::json;

/// The change feed's topic for binds; the body is `{medium, address, mxid}` (`mxid` null
/// for an unbind).
pub const BIND_TOPIC: &str = "bind";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBind {
    pub medium: String,
    pub address: String,
    pub mxid: String,
    /// The number of the change that made it.
    pub seq: i64,
}

/// A bind made here, as its association was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBind {
    pub mxid: String,
    pub ts: i64,
    pub not_before: i64,
    pub not_after: i64,
}

impl State {
    /// Binds (medium, address) to `mxid`, replacing another bind of that 3PID; the number
    /// of the change.
    pub fn bind(
        &self,
        medium: &str,
        address: &str,
        mxid: &str,
        (ts, not_before, not_after): (i64, i64, i64),
    ) -> Result<i64, StateError> {
        let body = json!({ "medium": medium, "address": address, "mxid": mxid }).to_string();
        self.write(|c| {
            let seq = append(c, BIND_TOPIC, &body, ts)?;
            c.execute(
                "INSERT INTO local_binds (medium, address, mxid, ts, not_before, not_after, seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (medium, address) DO UPDATE SET mxid = $3, ts = $4,
                 not_before = $5, not_after = $6, seq = $7",
                &[
                    medium.into(),
                    address.into(),
                    mxid.into(),
                    ts.into(),
                    not_before.into(),
                    not_after.into(),
                    seq.into(),
                ],
            )?;
            Ok(seq)
        })
    }

    /// Removes the bind of (medium, address) to `mxid`; the number of the change, `None`
    /// if there was no such bind.
    pub fn unbind(
        &self,
        medium: &str,
        address: &str,
        mxid: &str,
    ) -> Result<Option<i64>, StateError> {
        let body = json!({ "medium": medium, "address": address, "mxid": null }).to_string();
        let lock_feed = format!(
            "SELECT seq FROM change_seq WHERE id = 1{}",
            self.lock_rows()
        );
        self.write(|c| {
            // The feed's counter first, as bind takes it first: two writers of one address
            // never wait for each other in opposite orders.
            c.query(&lock_feed, &[])?;
            let removed = c.execute(
                "DELETE FROM local_binds WHERE medium = $1 AND address = $2 AND mxid = $3",
                &[medium.into(), address.into(), mxid.into()],
            )?;
            if removed == 0 {
                return Ok(None);
            }
            append(c, BIND_TOPIC, &body, crate::now_ms()).map(Some)
        })
    }

    /// The bind of (medium, address) made here: its Matrix ID and the validity its
    /// association was signed with.
    pub fn bind_of(&self, medium: &str, address: &str) -> Result<Option<StoredBind>, StateError> {
        self.read(|c| {
            c.query(
                "SELECT mxid, ts, not_before, not_after FROM local_binds
                 WHERE medium = $1 AND address = $2",
                &[medium.into(), address.into()],
            )?
            .first()
            .map(|r| {
                Ok(StoredBind {
                    mxid: r.text(0)?,
                    ts: r.int(1)?,
                    not_before: r.int(2)?,
                    not_after: r.int(3)?,
                })
            })
            .transpose()
        })
    }

    /// The Matrix ID bound to (medium, address) here.
    pub fn bound(&self, medium: &str, address: &str) -> Result<Option<String>, StateError> {
        self.read(|c| {
            c.query(
                "SELECT mxid FROM local_binds WHERE medium = $1 AND address = $2",
                &[medium.into(), address.into()],
            )?
            .first()
            .map(|r| r.text(0))
            .transpose()
        })
    }

    /// Every bind made here.
    pub fn local_binds(&self) -> Result<Vec<LocalBind>, StateError> {
        self.read(|c| {
            c.query("SELECT medium, address, mxid, seq FROM local_binds", &[])?
                .iter()
                .map(|r| {
                    Ok(LocalBind {
                        medium: r.text(0)?,
                        address: r.text(1)?,
                        mxid: r.text(2)?,
                        seq: r.int(3)?,
                    })
                })
                .collect()
        })
    }
}
