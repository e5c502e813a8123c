//! `sessions`, `session_tokens`: 3PID validation sessions. The rules (who may see a
//! session, what expiry means to a client, the budget of wrong tokens) are the `session`
//! module's; here are the atomic steps, each one transaction, so that two instances
//! answering the same user agree.
//!
//! A resend is made in three steps, none of which needs undoing: `request_token` decides
//! and, when something is to be sent, only *reserves* the attempt (the count of wrong
//! tokens, the codes, the expiry are left as they are); the caller checks its limits and
//! sends; then `token_sent` stores the new token and opens its window (count of wrong tokens
//! since the last code back to 0, new expiry), or `release_request` gives the reservation
//! up. Until then, submitTokens are judged against the session as it was. A new session is
//! created with its first token in the first step (nothing to judge against before), and
//! taken back by `release_request` if that token is not sent.

use super::dialect::{Conn, Row};
use super::{State, StateError};
use crate::opaque_id::{ClientSecret, Sid};
use crate::threepid::Medium;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub sid: Sid,
    pub medium: Medium,
    pub address: String,
    pub client_secret: ClientSecret,
    pub next_link: Option<String>,
    /// The highest attempt whose notification was sent (or, on a new session, is being).
    pub send_attempt: i64,
    pub expires_ts: i64,
    pub validated_ts: Option<i64>,
    /// Wrong tokens since the last code was sent.
    pub failed_attempts: i64,
    /// Wrong tokens over the session's whole life: never reset.
    pub lifetime_failures: i64,
    /// The attempt being sent by some instance, while its reservation holds.
    pub pending_attempt: Option<i64>,
    pub pending_until: Option<i64>,
}

impl SessionRow {
    /// Whether `attempt` is already sent, or being sent under a live reservation.
    fn has_attempt(&self, attempt: i64, now_ms: i64) -> bool {
        let pending = match (self.pending_attempt, self.pending_until) {
            (Some(p), Some(until)) if until > now_ms => p,
            _ => i64::MIN,
        };
        attempt <= self.send_attempt.max(pending)
    }
}

/// How many wrong tokens a session may take: per code sent, and over its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureBudget {
    pub per_code: i64,
    pub lifetime: i64,
}

impl FailureBudget {
    fn spent(&self, s: &SessionRow) -> bool {
        s.failed_attempts >= self.per_code || s.lifetime_failures >= self.lifetime
    }
}

/// A requestToken as the state sees it.
pub struct TokenRequest<'a> {
    pub medium: Medium,
    pub address: &'a str,
    pub client_secret: &'a ClientSecret,
    pub send_attempt: i64,
    pub next_link: Option<&'a str>,
    /// The new token's hash: names the reservation, stored once sent.
    pub token_hash: &'a str,
    /// The sid of a new session.
    pub fresh_sid: &'a Sid,
    pub now_ms: i64,
    pub expires_ts: i64,
    /// Until when a reservation holds: past it, an instance that died while sending no
    /// longer stops a retry of the same attempt.
    pub reserved_until: i64,
    /// A session that spent it gets no new code.
    pub budget: FailureBudget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// A retry (`send_attempt` sent, or being sent by another request): nothing to send.
    Unchanged { sid: Sid },
    /// The attempt is reserved: send, then `release_request` if not sent. A resend
    /// (`created: false`) stores its token with `token_sent` once sent; a new session has
    /// its token already.
    Send { sid: Sid, created: bool },
    /// Its wrong tokens ended the session for good: no code is sent any more.
    Ended { sid: Sid },
}

/// A token whose notification went out.
pub struct SentToken<'a> {
    pub sid: &'a Sid,
    pub medium: Medium,
    pub token_hash: &'a str,
    pub send_attempt: i64,
    pub next_link: Option<&'a str>,
    /// The time of storing, once the notification is out (not the request's): a session
    /// expired by then is not revived, and of codes sent concurrently the one stored last
    /// ranks newest.
    pub now_ms: i64,
    pub expires_ts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// The token is one of the session's: it is validated (now, or it was already).
    Validated(SessionRow),
    /// Not one of its tokens: the counts of failures so far (since the last code sent,
    /// and over the session's life), this one included.
    Wrong {
        failed_attempts: i64,
        lifetime_failures: i64,
    },
    /// No such session with this secret.
    NoSession,
    /// Too many wrong tokens already (for the codes sent so far, or for good).
    TooManyFailures,
    Expired,
}

const COLUMNS: &str = "sid, medium, address, client_secret, next_link, send_attempt, expires_ts, validated_ts, failed_attempts, lifetime_failures, pending_attempt, pending_until";

fn session_row(r: &Row) -> Result<SessionRow, StateError> {
    Ok(SessionRow {
        sid: r.parsed(0, "sessions.sid", Sid::parse)?,
        medium: r.parsed(1, "sessions.medium", Medium::parse)?,
        address: r.text(2)?,
        client_secret: r.parsed(3, "sessions.client_secret", ClientSecret::parse)?,
        next_link: r.opt_text(4)?,
        send_attempt: r.int(5)?,
        expires_ts: r.int(6)?,
        validated_ts: r.opt_int(7)?,
        failed_attempts: r.int(8)?,
        lifetime_failures: r.int(9)?,
        pending_attempt: r.opt_int(10)?,
        pending_until: r.opt_int(11)?,
    })
}

fn by_sid(c: &mut dyn Conn, sid: &Sid) -> Result<Option<SessionRow>, StateError> {
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
    pub fn session(&self, sid: &Sid) -> Result<Option<SessionRow>, StateError> {
        self.autocommit(|c| by_sid(c, sid))
    }

    /// Finds or creates the session of (medium, address, client_secret) and decides whether
    /// a notification goes out; if so, reserves its attempt and changes nothing else. An
    /// expired session of the same key is replaced. The row is locked while deciding
    /// (PostgreSQL; SQLite has one writer), so two instances answering the same retry
    /// agree (one sends, the other finds the reservation), and a new session raced by
    /// another instance is found, not duplicated. A new session is created reserved, with
    /// its token and window at once (one transaction on the way of every new session):
    /// `release_request` takes it back if that first code is not sent.
    pub fn request_token(&self, r: &TokenRequest<'_>) -> Result<Requested, StateError> {
        let by_key = format!(
            "SELECT {COLUMNS} FROM sessions WHERE medium = $1 AND address = $2 AND client_secret = $3{}",
            self.lock_rows()
        );
        self.transaction(|c| {
            let key = [r.medium.into(), r.address.into(), r.client_secret.into()];
            let mut found = c
                .query(&by_key, &key)?
                .first()
                .map(session_row)
                .transpose()?;
            if let Some(old) = found.as_ref().filter(|s| s.expires_ts <= r.now_ms) {
                c.execute("DELETE FROM sessions WHERE sid = $1", &[(&old.sid).into()])?;
                found = None;
            }
            if found.is_none() {
                let created = c.execute(
                    "INSERT INTO sessions (sid, medium, address, client_secret, next_link,
                     send_attempt, created_ts, expires_ts, pending_attempt, pending_token,
                     pending_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $6, $9, $10)
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
                        r.token_hash.into(),
                        r.reserved_until.into(),
                    ],
                )?;
                if created == 1 {
                    add_token(c, r.medium, r.fresh_sid, r.token_hash, r.now_ms)?;
                    return Ok(Requested::Send {
                        sid: r.fresh_sid.clone(),
                        created: true,
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
            if s.has_attempt(r.send_attempt, r.now_ms) {
                return Ok(Requested::Unchanged { sid: s.sid });
            }
            if s.validated_ts.is_none() && s.lifetime_failures >= r.budget.lifetime {
                return Ok(Requested::Ended { sid: s.sid });
            }
            c.execute(
                "UPDATE sessions SET pending_attempt = $1, pending_token = $2, pending_until = $3
                 WHERE sid = $4",
                &[
                    r.send_attempt.into(),
                    r.token_hash.into(),
                    r.reserved_until.into(),
                    (&s.sid).into(),
                ],
            )?;
            Ok(Requested::Send {
                sid: s.sid,
                created: false,
            })
        })
    }

    /// Stores a token whose notification was sent, and opens its window: the count of
    /// wrong tokens since the last code starts over (the lifetime count does not), the
    /// session lives `expires_ts` more, and an SMS session keeps its newest codes. Whether
    /// the session was still there to take it: one that expired meanwhile (swept or not)
    /// is left as it is, never revived.
    pub fn token_sent(&self, t: &SentToken<'_>) -> Result<bool, StateError> {
        let locked = format!(
            "SELECT {COLUMNS} FROM sessions WHERE sid = $1{}",
            self.lock_rows()
        );
        self.transaction(|c| {
            let found = c
                .query(&locked, &[t.sid.into()])?
                .first()
                .map(session_row)
                .transpose()?;
            let Some(s) = found.filter(|s| s.expires_ts > t.now_ms) else {
                return Ok(false);
            };
            c.execute(
                "UPDATE sessions SET send_attempt = $1, failed_attempts = 0,
                 expires_ts = $2, next_link = COALESCE($3, next_link) WHERE sid = $4",
                &[
                    s.send_attempt.max(t.send_attempt).into(),
                    s.expires_ts.max(t.expires_ts).into(),
                    t.next_link.into(),
                    t.sid.into(),
                ],
            )?;
            clear_reservation(c, t.sid, t.token_hash)?;
            add_token(c, t.medium, t.sid, t.token_hash, t.now_ms)?;
            Ok(true)
        })
    }

    /// Gives up the reservation of a request whose notification was not sent (a limit
    /// refused it, or the send failed): the session is as it was, and a retry with the same
    /// `send_attempt` may send again. A resend stored nothing, so nothing else is touched
    /// (its new code may equal one already delivered: that one stays). A new session
    /// (`created`) goes with its unsent first token, unless a later request reserved it
    /// meanwhile (then only that token goes, and the session too if no code of it is
    /// left).
    pub fn release_request(
        &self,
        sid: &Sid,
        token_hash: &str,
        created: bool,
    ) -> Result<(), StateError> {
        let locked = format!(
            "SELECT sid FROM sessions WHERE sid = $1{}",
            self.lock_rows()
        );
        self.transaction(|c| {
            // The session row first, as every step locks it before its tokens.
            if c.query(&locked, &[sid.into()])?.is_empty() {
                return Ok(());
            }
            if created {
                // The first token was stored with the session (same `created_ts`); a code
                // of a later resend that happens to be equal was stored later, and stays.
                c.execute(
                    "DELETE FROM session_tokens WHERE sid = $1 AND token_hash = $2
                     AND created_ts = (SELECT created_ts FROM sessions WHERE sid = $1)",
                    &[sid.into(), token_hash.into()],
                )?;
                c.execute(
                    "DELETE FROM sessions WHERE sid = $1 AND pending_token = $2
                     AND NOT EXISTS (SELECT 1 FROM session_tokens WHERE sid = $1)",
                    &[sid.into(), token_hash.into()],
                )?;
            }
            clear_reservation(c, sid, token_hash)
        })
    }

    /// Checks a token against the session `sid` of `client_secret`, counting wrong ones
    /// against `budget`; a right one validates the session.
    pub fn submit_token(
        &self,
        sid: &Sid,
        client_secret: &ClientSecret,
        token_hash: &str,
        now_ms: i64,
        budget: FailureBudget,
    ) -> Result<Submitted, StateError> {
        let locked = format!(
            "SELECT {COLUMNS} FROM sessions WHERE sid = $1{}",
            self.lock_rows()
        );
        self.transaction(|c| {
            let found = c
                .query(&locked, &[sid.into()])?
                .first()
                .map(session_row)
                .transpose()?;
            // `==` on secrets is constant-time (`ClientSecret`).
            let Some(s) = found.filter(|s| s.client_secret == *client_secret) else {
                return Ok(Submitted::NoSession);
            };
            if s.expires_ts <= now_ms {
                return Ok(Submitted::Expired);
            }
            if s.validated_ts.is_none() && budget.spent(&s) {
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
                    "UPDATE sessions SET failed_attempts = failed_attempts + 1,
                     lifetime_failures = lifetime_failures + 1 WHERE sid = $1",
                    &[sid.into()],
                )?;
                return Ok(Submitted::Wrong {
                    failed_attempts: s.failed_attempts + 1,
                    lifetime_failures: s.lifetime_failures + 1,
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

    /// Deletes sessions expired before `now_ms` (their tokens go with them: `ON DELETE
    /// CASCADE`); how many. Safe to run on every instance at once. Each session row is
    /// locked before its tokens, in the order every other step takes them (on PostgreSQL,
    /// deleting the tokens first could deadlock with a `token_sent` holding the session).
    pub fn sweep_sessions(&self, now_ms: i64) -> Result<u64, StateError> {
        self.transaction(|c| {
            c.execute(
                "DELETE FROM sessions WHERE expires_ts <= $1",
                &[now_ms.into()],
            )
        })
    }
}

/// Ends the reservation named by `token_hash`, if it is still the session's.
fn clear_reservation(c: &mut dyn Conn, sid: &Sid, token_hash: &str) -> Result<(), StateError> {
    c.execute(
        "UPDATE sessions SET pending_attempt = NULL, pending_token = NULL, pending_until = NULL
         WHERE sid = $1 AND pending_token = $2",
        &[sid.into(), token_hash.into()],
    )?;
    Ok(())
}

/// SMS codes valid at once per session: each code sent adds one, and a guess at a 6-digit
/// code wins with (codes / 10^6), so older codes are dropped beyond these — only when a new
/// code was sent, never for a resend that was not. E-mail tokens (190 bits) all stay valid
/// until the session ends.
const SMS_CODES_KEPT: i64 = 3;

fn add_token(
    c: &mut dyn Conn,
    medium: Medium,
    sid: &Sid,
    token_hash: &str,
    now_ms: i64,
) -> Result<(), StateError> {
    // A code equal to one the session holds is sent now all the same: it ranks as the
    // newest, so that the rotation below never drops the code that just went out.
    c.execute(
        "INSERT INTO session_tokens (sid, token_hash, created_ts) VALUES ($1, $2, $3)
         ON CONFLICT (sid, token_hash) DO UPDATE SET created_ts = excluded.created_ts",
        &[sid.into(), token_hash.into(), now_ms.into()],
    )?;
    if medium == Medium::Msisdn {
        c.execute(
            "DELETE FROM session_tokens WHERE sid = $1 AND token_hash NOT IN (
                 SELECT token_hash FROM session_tokens WHERE sid = $1
                 ORDER BY created_ts DESC, token_hash LIMIT $2)",
            &[sid.into(), SMS_CODES_KEPT.into()],
        )?;
    }
    Ok(())
}
