//! 3PID validation sessions: a user proves they own an address by a token sent to it
//! (`requestToken`), then given back (`submitToken`, by a link in a mail or an SMS code).
//! The rules live here; each step is one state transaction (`state/sessions.rs`), so any
//! instance may answer any step. Knows no HTTP.
//!
//! - The same (medium, address, client_secret) is the same session; a notification goes out
//!   only when `send_attempt` is higher than the last one sent or being sent (a retry costs
//!   nothing, and two instances answering the same retry send once).
//! - Tokens: e-mail 32 alphanumerics (190 bits, URL-safe), SMS 6 digits; kept as SHA-256
//!   hashes; every token of a session stays valid until it validates or expires (SMS: the
//!   newest 3 codes sent).
//! - The budget of wrong tokens (6 digits are guessable otherwise): `MAX_FAILURES` since the
//!   last code sent end the session until a new code is sent; `MAX_LIFETIME_FAILURES` over
//!   its whole life end it for good (no new code is sent then). Neither is configurable,
//!   and the lifetime count is never reset.
//! - A resend changes nothing unless its notification is sent: the state only reserves its
//!   attempt, then the limits and the send decide, and only a code actually sent is stored
//!   with its window (count since the last code back to 0, new expiry). A refused or
//!   failed resend gives up the reservation and nothing else: the codes already delivered,
//!   the counts and the expiry stay as they were, and the client's retry with the same
//!   `send_attempt` sends again. A new session whose first code is not sent goes.
//! - A reservation lasts the longest its send may take under the medium's connector
//!   deadlines (`Connector::longest_send`, as the invite queue's mail lease), plus a margin
//!   (`HOLD_MARGIN`): a retry meanwhile never sends a second code, and an instance that
//!   died while sending holds it no longer.
//! - A code is stored at the time of storing (after its send), not of its request: a
//!   session that expired meanwhile is not revived, and of concurrent resends the code
//!   stored last ranks newest in the SMS rotation.
//!
//! Known limits, accepted:
//! - A new session is created with its first code in one transaction (one write per new
//!   session, kept for throughput), not reserved then stored after the send as a resend
//!   is. So if the instance dies mid-send, or the release after a failed first send fails,
//!   an identical retry of that `send_attempt` answers the sid without sending, until the
//!   client raises `send_attempt` (as Element's "resend" does).
//! - A code submitted before the `token_sent` of its resend commits counts as wrong.
//! - If `token_sent` fails after the send, the delivered code does not work (logged as an
//!   error; the client gets the state error and asks again).

pub(crate) mod next_link;
mod pages;
pub mod policy;
pub mod remote;

pub use pages::Pages;

use crate::config::{Config, SessionConfig};
use crate::crypto::hash::token_hash as hash;
use crate::crypto::random;
use crate::notify::{Notifier, NotifyError, Validation};
use crate::opaque_id::{ClientSecret, Sid};
use crate::ratelimit::Buckets;
use crate::state::{
    FailureBudget, Requested, SentToken, SessionRow, State, StateError, Submitted, TokenRequest,
    HOLD_MARGIN,
};
use crate::threepid::Medium;
use crate::user_id::UserId;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Wrong tokens that end a session until a new code is sent.
pub const MAX_FAILURES: i64 = 5;
/// Wrong tokens that end a session for good, however many codes were sent.
pub const MAX_LIFETIME_FAILURES: i64 = 3 * MAX_FAILURES;
const BUDGET: FailureBudget = FailureBudget {
    per_code: MAX_FAILURES,
    lifetime: MAX_LIFETIME_FAILURES,
};
pub struct Sessions {
    cfg: SessionConfig,
    domain: String,
    notifier: Arc<Notifier>,
    /// `<publicUrl>/_matrix/identity/<v2 or api/v1>`: where the mail's link points.
    link_base: String,
    limits: Limits,
    /// Other identity servers, for remote sessions (`remote.rs`).
    remotes: remote::Remotes,
}

/// `session.rateLimit`, counted on notifications actually sent (per instance).
struct Limits {
    per_address: Buckets,
    per_client: Buckets,
    per_user: Buckets,
    sms_per_country: Buckets,
    sms_global: Buckets,
}

#[derive(Debug)]
pub enum SessionError {
    /// The policy refuses: says why, naming the key.
    Forbidden(String),
    SendFailed(Medium, NotifyError),
    /// No session of this sid and secret.
    NoSession,
    /// Ended by too many wrong tokens.
    Ended,
    Expired,
    TokenIncorrect,
    NotValidated,
    /// A rate limit: try again after this long.
    Limited(Duration),
    /// The remote identity server of a remote session could not do its part: why.
    Remote {
        server: String,
        why: String,
    },
    Random(std::io::Error),
    State(StateError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Forbidden(why) => f.write_str(why),
            SessionError::SendFailed(m, e) => write!(f, "{m} notification: {e}"),
            SessionError::NoSession => f.write_str("no session of this sid and client secret"),
            SessionError::Ended => f.write_str("session ended by too many wrong tokens"),
            SessionError::Expired => f.write_str("session expired"),
            SessionError::TokenIncorrect => f.write_str("wrong token"),
            SessionError::NotValidated => f.write_str("session not validated"),
            SessionError::Limited(wait) => write!(f, "rate limited for {} ms", wait.as_millis()),
            SessionError::Random(e) => write!(f, "no randomness: {e}"),
            SessionError::Remote { server, why } => write!(f, "{server}: {why}"),
            SessionError::State(e) => e.fmt(f),
        }
    }
}

impl From<StateError> for SessionError {
    fn from(e: StateError) -> Self {
        SessionError::State(e)
    }
}

/// A validated 3PID (`getValidated3pid`).
pub struct Validated {
    pub medium: Medium,
    pub address: String,
    pub validated_at: i64,
}

/// What a requestToken asks for, its address already normalised.
pub struct TokenAsk<'a> {
    pub medium: Medium,
    pub address: &'a str,
    pub client_secret: &'a ClientSecret,
    pub send_attempt: i64,
    pub next_link: Option<&'a str>,
    /// Who asked (the client's address, or `unknown`), and as whom (v2).
    pub client: &'a str,
    pub user: Option<&'a str>,
    /// SMS: the country the number was given in.
    pub country: Option<&'a str>,
}

impl Sessions {
    pub fn new(config: &Config, notifier: Arc<Notifier>) -> Sessions {
        let api = if config.matrix.v2 { "v2" } else { "api/v1" };
        let l = &config.session.limits;
        let limits = Limits {
            per_address: Buckets::new(l.per_address.burst, l.per_address.per_minute),
            per_client: Buckets::new(l.per_client.burst, l.per_client.per_minute),
            per_user: Buckets::new(l.per_user.burst, l.per_user.per_minute),
            sms_per_country: Buckets::new(l.sms_per_country, l.sms_per_country),
            sms_global: Buckets::new(l.sms_global, l.sms_global),
        };
        for said in policy::unusable_labels(&config.session.policy, &config.matrix.identity_servers)
        {
            log::warn!("{said}");
        }
        Sessions {
            remotes: remote::Remotes::new(
                config.matrix.identity_servers.clone(),
                config.http.backend_workers,
            ),
            limits,
            cfg: config.session.clone(),
            domain: config.matrix.domain.clone(),
            notifier,
            link_base: format!("{}/_matrix/identity/{api}", config.server.public_url),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// How long a request being sent holds its attempt: a retry of the same attempt
    /// meanwhile (the client's, or the same retry reaching another instance) sends nothing.
    /// Longer than the slowest send the medium's connector allows; past it, an instance
    /// that died while sending no longer stops a retry.
    fn reservation(&self, medium: Medium) -> Duration {
        self.notifier.longest_send(medium) + HOLD_MARGIN
    }

    /// When a session whose last code is sent at `sent_ms` expires.
    fn expiry_from(&self, sent_ms: i64) -> i64 {
        sent_ms.saturating_add(self.cfg.expiration.as_millis() as i64)
    }

    /// Starts or continues the session of `r`; its sid. Sends a token when `send_attempt`
    /// is new.
    pub fn request_token(&self, state: &State, r: &TokenAsk<'_>) -> Result<Sid, SessionError> {
        self.route(r.medium, r.address)
            .map_err(SessionError::Forbidden)?;
        let token = match r.medium {
            Medium::Email => random::string_from(random::ALPHANUMERIC, 32),
            Medium::Msisdn => random::string_from(b"0123456789", 6),
        }
        .map_err(SessionError::Random)?;
        let fresh_sid = Sid::generate().map_err(SessionError::Random)?;
        let token_hash = hash(&token);
        let now = crate::now_ms();
        let expires_ts = self.expiry_from(now);
        let requested = state.request_token(&TokenRequest {
            medium: r.medium,
            address: r.address,
            client_secret: r.client_secret,
            send_attempt: r.send_attempt,
            next_link: r.next_link,
            token_hash: &token_hash,
            fresh_sid: &fresh_sid,
            now_ms: now,
            expires_ts,
            reserved_until: now.saturating_add(self.reservation(r.medium).as_millis() as i64),
            budget: BUDGET,
        })?;
        let (sid, created) = match requested {
            Requested::Unchanged { sid } => return Ok(sid),
            Requested::Ended { sid } => {
                log::info!("session {sid}: no new code, its wrong tokens ended it for good");
                return Err(SessionError::Ended);
            }
            Requested::Send { sid, created } => (sid, created),
        };
        let release = |why: &str| {
            if let Err(e) = state.release_request(&sid, &token_hash, created) {
                // The reservation lapses by itself (`reservation`).
                log::error!("session {sid}: the reservation of a {why} request stays: {e}");
            }
        };
        let limits = self.limits_of(r);
        if let Err(wait) = self.take_limits(&limits) {
            release("limited");
            return Err(SessionError::Limited(wait));
        }
        let link = format!(
            "{}/validate/{}/submitToken?sid={}&client_secret={}&token={}",
            self.link_base,
            r.medium,
            crate::urlencoded::encode(sid.as_str()),
            crate::urlencoded::encode(r.client_secret.as_str()),
            crate::urlencoded::encode(&token)
        );
        let sent = self.notifier.validation(
            r.medium,
            &Validation {
                address: r.address,
                token: &token,
                link: &link,
                next_url: r.next_link.unwrap_or_default(),
            },
        );
        if let Err(e) = sent {
            // Only notifications actually sent count.
            for (bucket, key) in &limits {
                bucket.refund(key);
            }
            release("failed");
            return Err(SessionError::SendFailed(r.medium, e));
        }
        if created {
            // Its token and window were stored with it.
            return Ok(sid);
        }
        // The time of storing, not of the request: the send took a while.
        let stored_at = crate::now_ms();
        let kept = state.token_sent(&SentToken {
            sid: &sid,
            medium: r.medium,
            token_hash: &token_hash,
            send_attempt: r.send_attempt,
            next_link: r.next_link,
            now_ms: stored_at,
            expires_ts: self.expiry_from(stored_at),
        });
        match kept {
            Ok(true) => Ok(sid),
            Ok(false) => {
                log::warn!("session {sid}: it expired while its code was sent");
                Err(SessionError::Expired)
            }
            Err(e) => {
                log::error!(
                    "session {sid}: a {} was sent but its token not stored: {e}",
                    r.medium
                );
                Err(SessionError::State(e))
            }
        }
    }

    /// The limits a notification for `r` counts against, and its key in each.
    fn limits_of(&self, r: &TokenAsk<'_>) -> Vec<(&Buckets, String)> {
        let mut applies = vec![
            (
                &self.limits.per_address,
                format!("{}:{}", r.medium, r.address),
            ),
            (&self.limits.per_client, r.client.to_owned()),
        ];
        if let Some(user) = r.user {
            applies.push((&self.limits.per_user, user.to_owned()));
        }
        if r.medium == Medium::Msisdn {
            // The number's own country, not the one the client says it typed it in.
            let code = crate::threepid::calling_code(r.address).unwrap_or_default();
            applies.push((&self.limits.sms_per_country, code.to_string()));
            applies.push((&self.limits.sms_global, String::new()));
        }
        applies
    }

    /// Counts a notification against every limit that applies, all or none; else how long
    /// until it may go.
    fn take_limits(&self, applies: &[(&Buckets, String)]) -> Result<(), Duration> {
        for (i, (bucket, key)) in applies.iter().enumerate() {
            if let Err(wait) = bucket.try_take(key) {
                for (taken, key) in &applies[..i] {
                    taken.refund(key);
                }
                return Err(wait);
            }
        }
        Ok(())
    }

    /// Validates the session `sid` with `token`; the session.
    pub fn submit_token(
        &self,
        state: &State,
        sid: &Sid,
        client_secret: &ClientSecret,
        token: &str,
    ) -> Result<SessionRow, SessionError> {
        let submitted = state.submit_token(
            sid,
            client_secret,
            &hash(token.trim()),
            crate::now_ms(),
            BUDGET,
        )?;
        match submitted {
            Submitted::Validated(session) => Ok(session),
            Submitted::Wrong {
                failed_attempts,
                lifetime_failures,
            } => {
                log::info!(
                    "session {sid}: wrong token ({failed_attempts} of {MAX_FAILURES} for the codes sent, {lifetime_failures} of {MAX_LIFETIME_FAILURES} for good)"
                );
                Err(SessionError::TokenIncorrect)
            }
            Submitted::NoSession => Err(SessionError::NoSession),
            Submitted::TooManyFailures => Err(SessionError::Ended),
            Submitted::Expired => Err(SessionError::Expired),
        }
    }

    /// The session's 3PID, once validated.
    pub fn validated(
        &self,
        state: &State,
        sid: &Sid,
        client_secret: &ClientSecret,
    ) -> Result<Validated, SessionError> {
        // `==` on secrets is constant-time (`ClientSecret`).
        let session = state
            .session(sid)?
            .filter(|s| s.client_secret == *client_secret)
            .ok_or(SessionError::NoSession)?;
        if session.expires_ts <= crate::now_ms() {
            return Err(SessionError::Expired);
        }
        let validated_at = session.validated_ts.ok_or(SessionError::NotValidated)?;
        Ok(Validated {
            medium: session.medium,
            address: session.address,
            validated_at,
        })
    }

    /// Tells `address` it is no longer bound to `mxid`, when the operator asked for it
    /// (`session.policy.unbind.notifications`). A notice that cannot be sent is logged: the
    /// unbind stands.
    pub fn unbind_notice(&self, medium: Medium, address: &str, mxid: &UserId) {
        if !self.cfg.unbind_notice {
            return;
        }
        if let Err(e) = self.notifier.unbind_notice(medium, address, mxid.as_str()) {
            log::warn!("unbind notice to a {medium} not sent: {e}");
        }
    }

    /// The background sweep: forgets expired sessions.
    pub fn sweep(&self, state: &State) {
        match state.sweep_sessions(crate::now_ms()) {
            Ok(0) => {}
            Ok(n) => log::info!("sessions: {n} expired sessions removed"),
            Err(e) => log::warn!("sessions: the sweep failed: {e}"),
        }
    }
}
