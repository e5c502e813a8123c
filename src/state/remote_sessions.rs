//! `remote_sessions`: a 3PID session of ours continued on another identity server (seed
//! 004). The workflow's rules are `session::remote`'s; here are its steps, each one
//! statement or transaction, so that any instance can serve any page of the workflow.

use super::dialect::{Conn, Row};
use super::{State, StateError};
use crate::opaque_id::{ClientSecret, Sid};
use crate::user_id::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSessionRow {
    /// Our session.
    pub sid: Sid,
    /// The remote server's base URL.
    pub server: String,
    /// The session on the remote server, and the secret we made for it.
    pub remote_sid: String,
    pub remote_secret: ClientSecret,
    /// When the remote said it is validated.
    pub validated_ts: Option<i64>,
    /// Bound here, waiting for the remote to be validated to be bound there too.
    pub bind_mxid: Option<UserId>,
    /// When it was bound on the remote.
    pub bound_ts: Option<i64>,
}

/// A remote session just started.
pub struct NewRemoteSession<'a> {
    pub sid: &'a Sid,
    pub server: &'a str,
    pub remote_sid: &'a str,
    pub remote_secret: &'a ClientSecret,
    pub now_ms: i64,
}

const COLUMNS: &str = "sid, server, remote_sid, remote_secret, validated_ts, bind_mxid, bound_ts";

fn remote_row(r: &Row) -> Result<RemoteSessionRow, StateError> {
    Ok(RemoteSessionRow {
        sid: r.parsed(0, "remote_sessions.sid", Sid::parse)?,
        server: r.text(1)?,
        remote_sid: r.text(2)?,
        remote_secret: r.parsed(3, "remote_sessions.remote_secret", ClientSecret::parse)?,
        validated_ts: r.opt_int(4)?,
        bind_mxid: match r.opt_text(5)? {
            Some(_) => Some(r.parsed(5, "remote_sessions.bind_mxid", UserId::parse)?),
            None => None,
        },
        bound_ts: r.opt_int(6)?,
    })
}

fn by_sid(c: &mut dyn Conn, sid: &Sid) -> Result<Option<RemoteSessionRow>, StateError> {
    c.query(
        &format!("SELECT {COLUMNS} FROM remote_sessions WHERE sid = $1"),
        &[sid.into()],
    )?
    .first()
    .map(remote_row)
    .transpose()
}

impl State {
    /// The remote session of our session `sid`, once started.
    pub fn remote_session(&self, sid: &Sid) -> Result<Option<RemoteSessionRow>, StateError> {
        self.autocommit(|c| by_sid(c, sid))
    }

    /// Records a remote session just started; the one kept. Of two started at once for
    /// the same session (two clicks, two instances), the first recorded is kept: the
    /// other's remote session is left to expire on its server. `None`: our session is
    /// gone (expired meanwhile).
    pub fn remote_session_started(
        &self,
        n: &NewRemoteSession<'_>,
    ) -> Result<Option<RemoteSessionRow>, StateError> {
        self.transaction(|c| {
            let ours = c.query("SELECT sid FROM sessions WHERE sid = $1", &[n.sid.into()])?;
            if ours.is_empty() {
                return Ok(None);
            }
            c.execute(
                "INSERT INTO remote_sessions (sid, server, remote_sid, remote_secret, created_ts)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sid) DO NOTHING",
                &[
                    n.sid.into(),
                    n.server.into(),
                    n.remote_sid.into(),
                    n.remote_secret.into(),
                    n.now_ms.into(),
                ],
            )?;
            by_sid(c, n.sid)
        })
    }

    /// The remote said the session is validated (kept at its first time).
    pub fn remote_session_validated(&self, sid: &Sid, now_ms: i64) -> Result<(), StateError> {
        self.transaction(|c| {
            c.execute(
                "UPDATE remote_sessions SET validated_ts = $1 WHERE sid = $2 AND validated_ts IS NULL",
                &[now_ms.into(), sid.into()],
            )
            .map(|_| ())
        })
    }

    /// The user bound here, to bind on the remote once it has validated.
    pub fn remote_bind_pending(&self, sid: &Sid, mxid: &UserId) -> Result<(), StateError> {
        self.transaction(|c| {
            c.execute(
                "UPDATE remote_sessions SET bind_mxid = $1 WHERE sid = $2",
                &[mxid.into(), sid.into()],
            )
            .map(|_| ())
        })
    }

    /// Bound on the remote as `mxid`.
    pub fn remote_session_bound(
        &self,
        sid: &Sid,
        mxid: &UserId,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.transaction(|c| {
            c.execute(
                "UPDATE remote_sessions SET bind_mxid = $1, bound_ts = $2 WHERE sid = $3",
                &[mxid.into(), now_ms.into(), sid.into()],
            )
            .map(|_| ())
        })
    }
}
