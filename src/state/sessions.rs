//! `sessions`, `session_tokens`: 3PID validation sessions. The rules (who may see a
//! session, what expiry means to a client) are the `session` module's; here are the
//! atomic steps, each one transaction, so that two instances answering the same user agree.

use super::dialect::{Conn, Row};
use super::{State, StateError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub sid: String,
    pub medium: String,
    pub address: String,
    pub client_secret: String,
    pub next_link: Option<String>,
    pub send_attempt: i64,
    pub expires_ts: i64,
    pub validated_ts: Option<i64>,
    pub failed_attempts: i64,
}

/// A requestToken as the state sees it.
pub struct TokenRequest<'a> {
    pub medium: &'a str,
    pub address: &'a str,
    pub client_secret: &'a str,
    pub send_attempt: i64,
    pub next_link: Option<&'a str>,
    /// The new token's hash, stored only when a notification is to go out.
    pub token_hash: &'a str,
    /// The sid of a new session.
    pub fresh_sid: &'a str,
    pub now_ms: i64,
    pub expires_ts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// A retry (`send_attempt` not higher than before): nothing to send.
    Unchanged { sid: String },
    /// A new session, or a new token for the session: send it. `undo` puts things back
    /// if the notification cannot be sent.
    Send { sid: String, undo: Undo },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Delete the new session.
    Created,
    /// Forget the new token and restore what the resend (of `attempt`) changed.
    Resent {
        attempt: i64,
        previous_attempt: i64,
        previous_failed: i64,
        previous_expires: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// The token is one of the session's: it is validated (now, or it was already).
    Validated(SessionRow),
    /// Not one of its tokens: the count of failures so far, this one included.
    Wrong {
        failed_attempts: i64,
    },
    /// No such session with this secret, or too many wrong tokens already.
    NoSession,
    TooManyFailures,
    Expired,
}

const COLUMNS: &str = "sid, medium, address, client_secret, next_link, send_attempt, expires_ts, validated_ts, failed_attempts";

fn session_row(r: &Row) -> Result<SessionRow, StateError> {
    Ok(SessionRow {
        sid: r.text(0)?,
        medium: r.text(1)?,
        address: r.text(2)?,
        client_secret: r.text(3)?,
        next_link: r.opt_text(4)?,
        send_attempt: r.int(5)?,
        expires_ts: r.int(6)?,
        validated_ts: r.opt_int(7)?,
        failed_attempts: r.int(8)?,
    })
}

fn by_sid(c: &mut dyn Conn, sid: &str) -> Result<Option<SessionRow>, StateError> {
    c.query(
        &format!("SELECT {COLUMNS} FROM sessions WHERE sid = $1"),
        &[sid.into()],
    )?
    .first()
    .map(session_row)
    .transpose()
}

impl State {
    /// A session by its sid.
    pub fn session(&self, sid: &str) -> Result<Option<SessionRow>, StateError> {
        self.read(|c| by_sid(c, sid))
    }

    /// Finds or creates the session of (medium, address, client_secret) and decides whether
    /// a notification goes out. An expired session of the same key is replaced. The row is
    /// locked while deciding (PostgreSQL; SQLite has one writer), so two instances answering
    /// the same retry agree, and a new session raced by another instance is found, not
    /// duplicated.
    pub fn request_token(&self, r: &TokenRequest<'_>) -> Result<Requested, StateError> {
        let by_key = format!(
            "SELECT {COLUMNS} FROM sessions WHERE medium = $1 AND address = $2 AND client_secret = $3{}",
            self.lock_rows()
        );
        self.write(|c| {
            let key = [r.medium.into(), r.address.into(), r.client_secret.into()];
            let mut found = c
                .query(&by_key, &key)?
                .first()
                .map(session_row)
                .transpose()?;
            if let Some(old) = found.as_ref().filter(|s| s.expires_ts <= r.now_ms) {
                c.execute(
                    "DELETE FROM sessions WHERE sid = $1",
                    &[old.sid.as_str().into()],
                )?;
                found = None;
            }
            if found.is_none() {
                let created = c.execute(
                    "INSERT INTO sessions (sid, medium, address, client_secret, next_link,
                     send_attempt, created_ts, expires_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (medium, address, client_secret) DO NOTHING",
                    &[
                        r.fresh_sid.into(),
                        r.medium.into(),
                        r.address.into(),
                        r.client_secret.into(),
                        r.next_link.into(),
                        r.send_attempt.into(),
                        r.now_ms.into(),
                        r.expires_ts.into(),
                    ],
                )?;
                if created == 1 {
                    add_token(c, r.medium, r.fresh_sid, r.token_hash, r.now_ms)?;
                    return Ok(Requested::Send {
                        sid: r.fresh_sid.to_owned(),
                        undo: Undo::Created,
                    });
                }
                // Another instance created it just now: that one sends.
                found = c
                    .query(&by_key, &key)?
                    .first()
                    .map(session_row)
                    .transpose()?;
            }
            let Some(s) = found else {
                return Err(StateError::schema(
                    "a session vanished while requested".into(),
                ));
            };
            if r.send_attempt <= s.send_attempt {
                return Ok(Requested::Unchanged { sid: s.sid });
            }
            c.execute(
                "UPDATE sessions SET send_attempt = $1, failed_attempts = 0, expires_ts = $2,
                 next_link = COALESCE($3, next_link) WHERE sid = $4",
                &[
                    r.send_attempt.into(),
                    r.expires_ts.into(),
                    r.next_link.into(),
                    s.sid.as_str().into(),
                ],
            )?;
            add_token(c, r.medium, &s.sid, r.token_hash, r.now_ms)?;
            Ok(Requested::Send {
                undo: Undo::Resent {
                    attempt: r.send_attempt,
                    previous_attempt: s.send_attempt,
                    previous_failed: s.failed_attempts,
                    previous_expires: s.expires_ts,
                },
                sid: s.sid,
            })
        })
    }

    /// Takes back a `Requested::Send` whose notification was not sent (it failed, or a
    /// limit refused it): no half-made session is left, a resend that sent nothing resets
    /// nothing (the count of wrong tokens, the expiry), and a retry with the same
    /// `send_attempt` sends again. A later request that changed the session meanwhile is
    /// left alone.
    pub fn undo_request(&self, sid: &str, token_hash: &str, undo: &Undo) -> Result<(), StateError> {
        self.write(|c| {
            match undo {
                Undo::Created => {
                    c.execute("DELETE FROM sessions WHERE sid = $1", &[sid.into()])?;
                }
                Undo::Resent {
                    attempt,
                    previous_attempt,
                    previous_failed,
                    previous_expires,
                } => {
                    c.execute(
                        "DELETE FROM session_tokens WHERE sid = $1 AND token_hash = $2",
                        &[sid.into(), token_hash.into()],
                    )?;
                    c.execute(
                        "UPDATE sessions SET send_attempt = $1, failed_attempts = $2, expires_ts = $3
                         WHERE sid = $4 AND send_attempt = $5",
                        &[
                            (*previous_attempt).into(),
                            (*previous_failed).into(),
                            (*previous_expires).into(),
                            sid.into(),
                            (*attempt).into(),
                        ],
                    )?;
                }
            }
            Ok(())
        })
    }

    /// Checks a token against the session `sid` of `client_secret`, counting wrong ones;
    /// a right one validates the session.
    pub fn submit_token(
        &self,
        sid: &str,
        client_secret: &str,
        token_hash: &str,
        now_ms: i64,
        max_failures: i64,
    ) -> Result<Submitted, StateError> {
        let locked = format!(
            "SELECT {COLUMNS} FROM sessions WHERE sid = $1{}",
            self.lock_rows()
        );
        self.write(|c| {
            let found = c
                .query(&locked, &[sid.into()])?
                .first()
                .map(session_row)
                .transpose()?;
            let Some(s) = found.filter(|s| s.client_secret == client_secret) else {
                return Ok(Submitted::NoSession);
            };
            if s.expires_ts <= now_ms {
                return Ok(Submitted::Expired);
            }
            if s.failed_attempts >= max_failures && s.validated_ts.is_none() {
                return Ok(Submitted::TooManyFailures);
            }
            let known = !c
                .query(
                    "SELECT 1 FROM session_tokens WHERE sid = $1 AND token_hash = $2",
                    &[sid.into(), token_hash.into()],
                )?
                .is_empty();
            if !known {
                c.execute(
                    "UPDATE sessions SET failed_attempts = failed_attempts + 1 WHERE sid = $1",
                    &[sid.into()],
                )?;
                return Ok(Submitted::Wrong {
                    failed_attempts: s.failed_attempts + 1,
                });
            }
            if s.validated_ts.is_none() {
                c.execute(
                    "UPDATE sessions SET validated_ts = $1 WHERE sid = $2",
                    &[now_ms.into(), sid.into()],
                )?;
            }
            Ok(Submitted::Validated(SessionRow {
                validated_ts: s.validated_ts.or(Some(now_ms)),
                ..s
            }))
        })
    }

    /// Deletes sessions expired before `now_ms` (and their tokens); how many. Safe to run
    /// on every instance at once.
    pub fn sweep_sessions(&self, now_ms: i64) -> Result<u64, StateError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM session_tokens WHERE sid IN (SELECT sid FROM sessions WHERE expires_ts <= $1)",
                &[now_ms.into()],
            )?;
            c.execute("DELETE FROM sessions WHERE expires_ts <= $1", &[now_ms.into()])
        })
    }
}

/// SMS codes valid at once per session: each resend adds one, and a guess at a 6-digit code
/// wins with (codes / 10^6), so older codes are dropped beyond these. E-mail tokens (190
/// bits) all stay valid until the session ends.
const SMS_CODES_KEPT: i64 = 3;

fn add_token(
    c: &mut dyn Conn,
    medium: &str,
    sid: &str,
    token_hash: &str,
    now_ms: i64,
) -> Result<(), StateError> {
    c.execute(
        "INSERT INTO session_tokens (sid, token_hash, created_ts) VALUES ($1, $2, $3)
         ON CONFLICT (sid, token_hash) DO NOTHING",
        &[sid.into(), token_hash.into(), now_ms.into()],
    )?;
    if medium == "msisdn" {
        c.execute(
            "DELETE FROM session_tokens WHERE sid = $1 AND token_hash NOT IN (
                 SELECT token_hash FROM session_tokens WHERE sid = $1
                 ORDER BY created_ts DESC, token_hash LIMIT $2)",
            &[sid.into(), SMS_CODES_KEPT.into()],
        )?;
    }
    Ok(())
}
