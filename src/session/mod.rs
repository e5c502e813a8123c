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

#[cfg(test)]
mod tests {
    use super::*;

    /// A session service of a configuration, with an e-mail connector that is never used
    /// (an SMTP relay on a closed loopback port): nothing here sends.
    fn sessions(extra: &str) -> Sessions {
        let text = format!(
            "matrix:\n  domain: example.org\nthreepid:\n  medium:\n    email:\n      identity:\n        from: 'id@example.org'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: 9\n          tls: 0\n{extra}"
        );
        let config = crate::config::load_str(&text, "test").unwrap().config;
        Sessions::new(&config, Arc::new(Notifier::from_config(&config).unwrap()))
    }

    fn ask<'a>(
        medium: Medium,
        address: &'a str,
        secret: &'a ClientSecret,
        client: &'a str,
        user: Option<&'a str>,
    ) -> TokenAsk<'a> {
        TokenAsk {
            medium,
            address,
            client_secret: secret,
            send_attempt: 1,
            next_link: None,
            client,
            user,
            country: None,
        }
    }

    /// A session stored with the e-mail token `token` (as `request_token` stores a new
    /// one), expiring at `expires_ts`.
    fn stored(state: &State, secret: &ClientSecret, token: &str, expires_ts: i64) -> Sid {
        let now = crate::now_ms();
        let fresh = Sid::generate().unwrap();
        let requested = state
            .request_token(&TokenRequest {
                medium: Medium::Email,
                address: "a@example.org",
                client_secret: secret,
                send_attempt: 1,
                next_link: None,
                token_hash: &hash(token),
                fresh_sid: &fresh,
                now_ms: now,
                expires_ts,
                reserved_until: now + 1_000,
                budget: BUDGET,
            })
            .unwrap();
        match requested {
            Requested::Send { sid, created: true } => sid,
            other => panic!("not a new session: {other:?}"),
        }
    }

    #[test]
    fn the_failure_budget_written_out() {
        assert_eq!(MAX_FAILURES, 5);
        assert_eq!(MAX_LIFETIME_FAILURES, 15);
        assert_eq!(
            BUDGET,
            FailureBudget {
                per_code: 5,
                lifetime: 15
            }
        );
    }

    #[test]
    fn errors_say_what_happened() {
        let said = |e: SessionError| e.to_string();
        assert_eq!(said(SessionError::Forbidden("no".into())), "no");
        assert_eq!(
            said(SessionError::NoSession),
            "no session of this sid and client secret"
        );
        assert_eq!(
            said(SessionError::Ended),
            "session ended by too many wrong tokens"
        );
        assert_eq!(said(SessionError::Expired), "session expired");
        assert_eq!(said(SessionError::TokenIncorrect), "wrong token");
        assert_eq!(said(SessionError::NotValidated), "session not validated");
        assert_eq!(
            said(SessionError::Limited(Duration::from_millis(1500))),
            "rate limited for 1500 ms"
        );
        assert_eq!(
            said(SessionError::Remote {
                server: "b.example".into(),
                why: "down".into()
            }),
            "b.example: down"
        );
    }

    #[test]
    fn a_reservation_outlasts_the_slowest_send() {
        let s = sessions("");
        let longest = s.notifier.longest_send(Medium::Email);
        assert!(longest > Duration::ZERO);
        assert_eq!(s.reservation(Medium::Email), longest + HOLD_MARGIN);
        assert_eq!(HOLD_MARGIN, Duration::from_secs(5));
        // No SMS connector: no send, the margin alone.
        assert_eq!(s.reservation(Medium::Msisdn), HOLD_MARGIN);
    }

    #[test]
    fn a_session_expires_its_lifetime_after_its_last_code() {
        let s = sessions("session:\n  expiration: 3600\n");
        assert_eq!(s.config().expiration, Duration::from_secs(3600));
        assert_eq!(s.expiry_from(1_000), 1_000 + 3_600_000);
        assert_eq!(s.expiry_from(i64::MAX - 1), i64::MAX);
    }

    #[test]
    fn limits_by_address_client_user_and_sms_country() {
        let s = sessions("");
        let secret = ClientSecret::parse("s3cret").unwrap();
        let keys = |r: &TokenAsk<'_>| -> Vec<(usize, String)> {
            let all = [
                &s.limits.per_address,
                &s.limits.per_client,
                &s.limits.per_user,
                &s.limits.sms_per_country,
                &s.limits.sms_global,
            ];
            s.limits_of(r)
                .into_iter()
                .map(|(b, k)| {
                    let which = all.iter().position(|a| std::ptr::eq(*a, b));
                    (which.expect("one of the session limits"), k)
                })
                .collect()
        };
        let mail = ask(Medium::Email, "a@example.org", &secret, "10.1.2.3", None);
        assert_eq!(
            keys(&mail),
            [(0, "email:a@example.org".into()), (1, "10.1.2.3".into())]
        );
        let mail = ask(
            Medium::Email,
            "a@example.org",
            &secret,
            "10.1.2.3",
            Some("@u:example.org"),
        );
        assert_eq!(keys(&mail).len(), 3);
        assert_eq!(keys(&mail)[2], (2, "@u:example.org".into()));
        let sms = ask(Medium::Msisdn, "447700900001", &secret, "10.1.2.3", None);
        assert_eq!(
            keys(&sms),
            [
                (0, "msisdn:447700900001".into()),
                (1, "10.1.2.3".into()),
                (3, "44".into()),
                (4, String::new()),
            ]
        );
    }

    #[test]
    fn limits_are_taken_all_or_none() {
        let s = sessions(
            "session:\n  rateLimit:\n    perAddress:\n      burst: 1\n      perMinute: 1\n    perClient:\n      burst: 1\n      perMinute: 1\n",
        );
        let secret = ClientSecret::parse("s3cret").unwrap();
        let a = ask(Medium::Email, "a@example.org", &secret, "10.0.0.1", None);
        assert_eq!(s.take_limits(&s.limits_of(&a)), Ok(()));
        assert!(s.take_limits(&s.limits_of(&a)).is_err());
        // The address b is taken, then the client refuses: b is given back.
        let b = ask(Medium::Email, "b@example.org", &secret, "10.0.0.1", None);
        assert!(s.take_limits(&s.limits_of(&b)).is_err());
        let b_elsewhere = ask(Medium::Email, "b@example.org", &secret, "10.0.0.2", None);
        assert_eq!(s.take_limits(&s.limits_of(&b_elsewhere)), Ok(()));
    }

    #[test]
    fn a_validated_session_needs_its_secret_its_token_and_time() {
        let t = crate::state::testing::temp_state("validated");
        let s = sessions("");
        let secret = ClientSecret::parse("s3cret").unwrap();
        let other = ClientSecret::parse("other").unwrap();
        let sid = stored(&t.state, &secret, "tok", crate::now_ms() + 600_000);
        assert!(matches!(
            s.validated(&t.state, &sid, &secret),
            Err(SessionError::NotValidated)
        ));
        assert!(matches!(
            s.submit_token(&t.state, &sid, &secret, "wrong"),
            Err(SessionError::TokenIncorrect)
        ));
        let row = s.submit_token(&t.state, &sid, &secret, " tok ").unwrap();
        assert_eq!(row.sid, sid);
        let v = s.validated(&t.state, &sid, &secret).unwrap();
        assert_eq!(
            (v.medium, v.address.as_str()),
            (Medium::Email, "a@example.org")
        );
        assert_eq!(Some(v.validated_at), row.validated_ts);
        assert!(matches!(
            s.validated(&t.state, &sid, &other),
            Err(SessionError::NoSession)
        ));
        // Expired: validated or not, it is no more.
        let gone = stored(&t.state, &other, "tok2", crate::now_ms() - 1);
        assert!(matches!(
            s.validated(&t.state, &gone, &other),
            Err(SessionError::Expired)
        ));
    }

    #[test]
    fn the_sweep_forgets_expired_sessions_only() {
        let t = crate::state::testing::temp_state("sweep");
        let s = sessions("");
        let secret = ClientSecret::parse("s3cret").unwrap();
        let old = stored(&t.state, &secret, "tok", crate::now_ms() - 1);
        let live = stored(
            &t.state,
            &ClientSecret::parse("other").unwrap(),
            "tok",
            crate::now_ms() + 600_000,
        );
        s.sweep(&t.state);
        assert!(t.state.session(&old).unwrap().is_none());
        assert!(t.state.session(&live).unwrap().is_some());
    }
}
