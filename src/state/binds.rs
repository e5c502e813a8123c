//! `local_binds`: 3PIDs bound here to Matrix IDs (`binds.local.enabled`). Each bind and
//! unbind writes, in the same transaction, a change to the feed (topic `bind`), which every
//! instance applies to its hash index.

use super::changes::append;
use super::dialect::Row;
use super::{State, StateError};
use crate::threepid::Medium;
use crate::user_id::UserId;
use serde_json::json;

/// The change feed's topic for binds; the body is `{medium, address, mxid}` (`mxid` null
/// for an unbind).
pub const BIND_TOPIC: &str = "bind";

/// A 3PID bound (or to be bound, or unbound) here to a Matrix ID; its address normalised.
/// Named fields, so that an address and a Matrix ID cannot be swapped unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    pub medium: Medium,
    pub address: &'a str,
    pub mxid: &'a UserId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBind {
    pub medium: Medium,
    pub address: String,
    pub mxid: UserId,
    /// The number of the change that made it.
    pub seq: i64,
}

/// A bind made here, as its association was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBind {
    pub mxid: UserId,
    pub ts: i64,
    pub not_before: i64,
    pub not_after: i64,
}

impl State {
    /// Binds (medium, address) to `mxid`, replacing another bind of that 3PID; the number
    /// of the change.
    pub fn bind(
        &self,
        bind: Bind<'_>,
        (ts, not_before, not_after): (i64, i64, i64),
    ) -> Result<i64, StateError> {
        let Bind {
            medium,
            address,
            mxid,
        } = bind;
        let body = json!({ "medium": medium.as_str(), "address": address, "mxid": mxid.as_str() })
            .to_string();
        self.transaction(|c| {
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
    pub fn unbind(&self, bind: Bind<'_>) -> Result<Option<i64>, StateError> {
        let Bind {
            medium,
            address,
            mxid,
        } = bind;
        let body =
            json!({ "medium": medium.as_str(), "address": address, "mxid": null }).to_string();
        let lock_feed = format!(
            "SELECT seq FROM change_seq WHERE id = 1{}",
            self.lock_rows()
        );
        self.transaction(|c| {
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
    pub fn bind_of(&self, medium: Medium, address: &str) -> Result<Option<StoredBind>, StateError> {
        self.autocommit(|c| {
            c.query(
                "SELECT mxid, ts, not_before, not_after FROM local_binds
                 WHERE medium = $1 AND address = $2",
                &[medium.into(), address.into()],
            )?
            .first()
            .map(|r| {
                Ok(StoredBind {
                    mxid: mxid_of(r, 0)?,
                    ts: r.int(1)?,
                    not_before: r.int(2)?,
                    not_after: r.int(3)?,
                })
            })
            .transpose()
        })
    }

    /// The Matrix ID bound to (medium, address) here.
    pub fn bound(&self, medium: Medium, address: &str) -> Result<Option<UserId>, StateError> {
        self.autocommit(|c| {
            c.query(
                "SELECT mxid FROM local_binds WHERE medium = $1 AND address = $2",
                &[medium.into(), address.into()],
            )?
            .first()
            .map(|r| mxid_of(r, 0))
            .transpose()
        })
    }

    /// Every bind made here, handed to `each` as it is read (a reload of them all must not
    /// hold the list twice over).
    pub fn local_binds(&self, each: &mut dyn FnMut(LocalBind)) -> Result<(), StateError> {
        self.autocommit(|c| {
            c.query_each(
                "SELECT medium, address, mxid, seq FROM local_binds",
                &[],
                &mut |r| {
                    each(LocalBind {
                        medium: r.parsed(0, "local_binds.medium", Medium::parse)?,
                        address: r.text(1)?,
                        mxid: mxid_of(&r, 2)?,
                        seq: r.int(3)?,
                    });
                    Ok(())
                },
            )
        })
    }
}

fn mxid_of(r: &Row, i: usize) -> Result<UserId, StateError> {
    r.parsed(i, "local_binds.mxid", UserId::parse)
}
