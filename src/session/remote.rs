//! Remote 3PID sessions (mxisd's seed 004): a session validated here is continued on another
//! identity server on the user's behalf, so that the address is published there too
//! (`toLocal` and `toRemote`: offered once validated here) or only there (`toRemote`
//! alone: our own token then only starts the remote session; nothing is validated or
//! bound here).
//!
//! The workflow, each step a page the user opens (`api::session`), any instance serving
//! any step (the state holds it, `state/remote_sessions.rs`):
//! 1. our link validates our token; then the offer (`LocalOffer`), or the remote session
//!    started at once (`Remote`);
//! 2. starting it: the remote's v1 requestToken with a secret of ours, the remote mails
//!    the user its own link;
//! 3. the check: the remote's getValidated3pid says the user followed that link;
//! 4. the bind (`3pid/bind` to us): over v1 on the remote, with the user's Matrix ID —
//!    at once if the remote is validated, else at the check.
//!
//! Whether the remote can take it (v1 served, reachable) is found when a session needs it,
//! never at start: when it cannot, the offer is not shown, the local flow completes, and
//! the page and the log say why. What was found is kept a while (`USABLE_FOR`,
//! `UNUSABLE_FOR`), so that a busy page does not ask the remote each time.
//!
//! Every call to a remote passes one [`Bulkhead`] of `http.backendWorkers` places, as the
//! remote lookups do theirs: past it a step fails at once (503, the page says the server
//! is busy), so that remotes that stop answering hold a bounded share of the workers. A
//! refusal is not kept as what was found of the server.

use super::policy::{self, Route};
use super::{SessionError, Sessions};
use crate::crypto::random;
use crate::federation::remote_session as remote;
use crate::federation::Client;
use crate::gate::Bulkhead;
use crate::opaque_id::{ClientSecret, Sid};
use crate::state::{NewRemoteSession, RemoteSessionRow, SessionRow, State};
use crate::threepid::Medium;
use crate::user_id::UserId;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a remote found able to take sessions is believed.
const USABLE_FOR: Duration = Duration::from_secs(300);
/// How long a remote found unable (v2 only, down) is believed.
const UNUSABLE_FOR: Duration = Duration::from_secs(30);

/// What was found of a server, and when: usable, or why not.
type Found = (Instant, Result<(), String>);

/// `matrix.identity.servers`, what was found of each server, and the workers calling them.
pub struct Remotes {
    servers: BTreeMap<String, Vec<String>>,
    found: Mutex<HashMap<String, Found>>,
    /// The workers waiting on remotes at once (`http.backendWorkers`).
    bulkhead: Bulkhead,
}

impl Remotes {
    /// The `servers`, at most `max` workers waiting on them at once.
    pub fn new(servers: BTreeMap<String, Vec<String>>, max: usize) -> Remotes {
        Remotes {
            servers,
            found: Mutex::new(HashMap::new()),
            bulkhead: Bulkhead::new(
                crate::metrics::Backend::RemoteSessions,
                "the remote identity servers of 3PID sessions",
                max,
                "http.backendWorkers",
            ),
        }
    }

    /// `call` to a remote once in the bulkhead; past it, at once, why it was refused.
    fn gated<T>(&self, call: impl FnOnce() -> Result<T, remote::RemoteError>) -> Result<T, String> {
        let _pass = self.bulkhead.enter().map_err(|refused| refused.reason)?;
        call().map_err(|e| e.to_string())
    }

    pub fn servers(&self) -> &BTreeMap<String, Vec<String>> {
        &self.servers
    }

    /// Whether `base` can take remote sessions and binds (it serves v1); else why not.
    fn usable(&self, client: &Client, base: &str) -> Result<(), String> {
        if let Some((at, known)) = crate::lock(&self.found).get(base) {
            let for_how_long = if known.is_ok() {
                USABLE_FOR
            } else {
                UNUSABLE_FOR
            };
            if at.elapsed() < for_how_long {
                return known.clone();
            }
        }
        // Refused by the bulkhead: not kept, the server was not asked.
        let _pass = self.bulkhead.enter().map_err(|refused| refused.reason)?;
        let found = remote::v1_available(client, base).map_err(|e| e.to_string());
        crate::lock(&self.found).insert(base.to_owned(), (Instant::now(), found.clone()));
        found
    }
}

/// The server a page names: the host (and port) of its base URL.
pub fn server_name(base: &str) -> &str {
    let rest = base.split_once("://").map_or(base, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// What follows our token's validation.
#[derive(Debug)]
pub enum AfterLocal {
    /// Done here. `note`: why the remote offer due here is not shown.
    Done { note: Option<(String, String)> },
    /// Validated here; publishing on this server is offered.
    Offer { server: String },
    /// Validated here only to start the session on this server (remote only): started.
    Started { server: String },
    /// Remote only, and the remote session could not start: why.
    Failed { server: String, why: String },
}

/// How a bind goes.
pub enum BindRoute {
    /// Here (and on the remote too when the user published there).
    Local,
    /// On the remote only: its signed association.
    RemoteOnly(Value),
}

impl Sessions {
    /// Where a session of (medium, address) runs.
    pub fn route(&self, medium: Medium, address: &str) -> Result<Route, String> {
        policy::route(
            &self.cfg.policy,
            self.remotes.servers(),
            medium,
            address,
            &self.domain,
        )
    }

    /// The route of an existing session: a policy changed since it started is read as
    /// local (the session was allowed when it started).
    fn route_of(&self, s: &SessionRow) -> Route {
        self.route(s.medium, &s.address).unwrap_or(Route::Local)
    }

    /// After our token validated `session`: the offer, the remote session started, or
    /// done here (saying why an offer due is not shown).
    pub fn after_local(&self, state: &State, client: &Client, session: &SessionRow) -> AfterLocal {
        match self.route_of(session) {
            Route::Local => AfterLocal::Done { note: None },
            Route::LocalOffer(base) => match self.remotes.usable(client, &base) {
                Ok(()) => AfterLocal::Offer {
                    server: server_name(&base).to_owned(),
                },
                Err(why) => {
                    log::warn!(
                        "session {}: publishing on {base} not offered: {why}",
                        session.sid
                    );
                    AfterLocal::Done {
                        note: Some((server_name(&base).to_owned(), why)),
                    }
                }
            },
            Route::Remote(base) => {
                let server = server_name(&base).to_owned();
                match self.start_for(state, client, session, &base) {
                    Ok(_) => AfterLocal::Started { server },
                    Err(e) => AfterLocal::Failed {
                        server,
                        why: e.to_string(),
                    },
                }
            }
        }
    }

    /// Starts (or finds) the remote session of our validated session `sid` (the user
    /// accepted the offer); the remote server's name and the address.
    pub fn start_remote(
        &self,
        state: &State,
        client: &Client,
        sid: &Sid,
        secret: &ClientSecret,
    ) -> Result<(String, String), SessionError> {
        let session = self.live(state, sid, secret)?;
        if session.validated_ts.is_none() {
            return Err(SessionError::NotValidated);
        }
        let base = self
            .route_of(&session)
            .remote()
            .map(str::to_owned)
            .ok_or_else(|| {
                SessionError::Forbidden(
                    "publishing this address on another server is not offered here".into(),
                )
            })?;
        self.start_for(state, client, &session, &base)?;
        Ok((server_name(&base).to_owned(), session.address))
    }

    fn start_for(
        &self,
        state: &State,
        client: &Client,
        session: &SessionRow,
        base: &str,
    ) -> Result<RemoteSessionRow, SessionError> {
        if let Some(row) = state.remote_session(&session.sid)? {
            return Ok(row);
        }
        let failed = |why: String| {
            log::warn!(
                "session {}: no remote session on {base}: {why}",
                session.sid
            );
            SessionError::Remote {
                server: server_name(base).to_owned(),
                why,
            }
        };
        if session.medium != Medium::Email {
            return Err(failed(
                "phone numbers are validated on another server by e-mail only".into(),
            ));
        }
        self.remotes.usable(client, base).map_err(failed)?;
        let secret = random::string_from(random::ALPHANUMERIC, 32).map_err(SessionError::Random)?;
        let secret =
            ClientSecret::parse(&secret).ok_or_else(|| failed("no secret could be made".into()))?;
        let remote_sid = self
            .remotes
            .gated(|| {
                remote::request_email_token(client, base, secret.as_str(), &session.address, 1)
            })
            .map_err(failed)?;
        let row = state
            .remote_session_started(&NewRemoteSession {
                sid: &session.sid,
                server: base,
                remote_sid: &remote_sid,
                remote_secret: &secret,
                now_ms: crate::now_ms(),
            })?
            .ok_or(SessionError::Expired)?;
        log::info!("session {}: remote session started on {base}", session.sid);
        Ok(row)
    }

    /// The user says they followed the remote's link: asks the remote, and binds there a
    /// user bound here meanwhile. The server's name and the session.
    pub fn check_remote(
        &self,
        state: &State,
        client: &Client,
        sid: &Sid,
        secret: &ClientSecret,
    ) -> Result<(String, SessionRow), SessionError> {
        let session = self.live(state, sid, secret)?;
        let row = state.remote_session(sid)?.ok_or(SessionError::NoSession)?;
        self.remote_validated(state, client, &row)?;
        if let (Some(mxid), None) = (&row.bind_mxid, row.bound_ts) {
            self.bind_there(state, client, &session, &row, mxid)?;
        }
        Ok((server_name(&row.server).to_owned(), session))
    }

    /// Whether `sid` counts as validated for getValidated3pid and bind beyond our own
    /// token: a remote-only session once its remote is validated.
    pub fn remote_gate(
        &self,
        state: &State,
        client: &Client,
        sid: &Sid,
    ) -> Result<(), SessionError> {
        let session = state.session(sid)?.ok_or(SessionError::NoSession)?;
        if !matches!(self.route_of(&session), Route::Remote(_)) {
            return Ok(());
        }
        let row = state
            .remote_session(sid)?
            .ok_or(SessionError::NotValidated)?;
        self.remote_validated(state, client, &row)
    }

    /// Binds the validated session `sid` to `mxid` where its route says: the remote's
    /// association for a remote-only session; here otherwise, and on the remote too when
    /// the user published there (at once if validated there, else at the check).
    pub fn bind_route(
        &self,
        state: &State,
        client: &Client,
        sid: &Sid,
        mxid: &UserId,
    ) -> Result<BindRoute, SessionError> {
        let session = state.session(sid)?.ok_or(SessionError::NoSession)?;
        let route = self.route_of(&session);
        if route == Route::Local {
            return Ok(BindRoute::Local);
        }
        let row = state.remote_session(sid)?;
        if let Route::Remote(_) = route {
            let row = row.ok_or(SessionError::NotValidated)?;
            self.remote_validated(state, client, &row)?;
            return self
                .bind_there(state, client, &session, &row, mxid)
                .map(BindRoute::RemoteOnly);
        }
        let Some(row) = row.filter(|r| r.bound_ts.is_none()) else {
            return Ok(BindRoute::Local);
        };
        match self.remote_validated(state, client, &row) {
            Ok(()) => {
                if let Err(e) = self.bind_there(state, client, &session, &row, mxid) {
                    // The bind here stands; the check page tries again.
                    log::warn!("session {sid}: bound here, not on {}: {e}", row.server);
                    state.remote_bind_pending(sid, mxid)?;
                }
            }
            Err(_) => state.remote_bind_pending(sid, mxid)?,
        }
        Ok(BindRoute::Local)
    }

    /// Our session `sid` with this secret, while it lives.
    fn live(
        &self,
        state: &State,
        sid: &Sid,
        secret: &ClientSecret,
    ) -> Result<SessionRow, SessionError> {
        // `==` on secrets is constant-time (`ClientSecret`).
        let session = state
            .session(sid)?
            .filter(|s| s.client_secret == *secret)
            .ok_or(SessionError::NoSession)?;
        if session.expires_ts <= crate::now_ms() {
            return Err(SessionError::Expired);
        }
        Ok(session)
    }

    /// Ok once the remote says the session is validated (recorded the first time).
    fn remote_validated(
        &self,
        state: &State,
        client: &Client,
        row: &RemoteSessionRow,
    ) -> Result<(), SessionError> {
        if row.validated_ts.is_some() {
            return Ok(());
        }
        let validated = self
            .remotes
            .gated(|| {
                remote::validated(
                    client,
                    &row.server,
                    &row.remote_sid,
                    row.remote_secret.as_str(),
                )
            })
            .map_err(|why| {
                log::warn!("session {}: asking {} failed: {why}", row.sid, row.server);
                SessionError::Remote {
                    server: server_name(&row.server).to_owned(),
                    why,
                }
            })?;
        if !validated {
            return Err(SessionError::NotValidated);
        }
        state.remote_session_validated(&row.sid, crate::now_ms())?;
        Ok(())
    }

    /// Binds on the remote; its signed association.
    fn bind_there(
        &self,
        state: &State,
        client: &Client,
        session: &SessionRow,
        row: &RemoteSessionRow,
        mxid: &UserId,
    ) -> Result<Value, SessionError> {
        let association = self
            .remotes
            .gated(|| {
                remote::bind(
                    client,
                    &row.server,
                    (&row.remote_sid, row.remote_secret.as_str()),
                    (session.medium.as_str(), &session.address),
                    mxid.as_str(),
                )
            })
            .map_err(|why| {
                log::warn!("session {}: bind on {} failed: {why}", row.sid, row.server);
                SessionError::Remote {
                    server: server_name(&row.server).to_owned(),
                    why,
                }
            })?;
        state.remote_session_bound(&row.sid, mxid, crate::now_ms())?;
        log::info!(
            "session {}: bound on {} to a user of {}",
            row.sid,
            row.server,
            mxid.server()
        );
        Ok(association)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hash::token_hash;
    use crate::notify::Notifier;
    use crate::state::testing::temp_state;
    use crate::state::{Requested, TokenRequest};
    use std::sync::Arc;

    /// The remote: a closed loopback port (discard, 9), so that every call to it fails at
    /// once ("unreachable") and nothing leaves the machine. What a remote that answers
    /// does is `tests/remote_sessions.rs`'s, with a second mxisd.
    const DOWN: &str = "http://127.0.0.1:9";

    /// The seed's three policies, each with `remote` (DOWN) as the list of `toRemote`.
    fn policy(for_local: (bool, bool), for_remote: (bool, bool)) -> String {
        let scope = |key: &str, (to_local, to_remote): (bool, bool)| {
            format!("      {key}:\n        enabled: true\n        toLocal: {to_local}\n        toRemote:\n          enabled: {to_remote}\n          server: 'remote'\n")
        };
        format!(
            "session:\n  policy:\n    validation:\n      enabled: true\n{}{}",
            scope("forLocal", for_local),
            scope("forRemote", for_remote)
        )
    }
    fn local_only() -> String {
        policy((true, false), (true, false))
    }
    fn local_and_remote() -> String {
        policy((true, true), (false, true))
    }
    fn remote_only() -> String {
        policy((false, true), (false, true))
    }

    /// A session service under `policy`, its remote DOWN (loopback allowed), and the guarded
    /// client calls to it go through. The e-mail connector (an SMTP relay on the same closed
    /// port) is never used: sessions are stored directly.
    fn sessions(policy: &str) -> (Sessions, Client) {
        let text = format!(
            "matrix:\n  domain: example.org\n  identity:\n    servers:\n      remote: ['{DOWN}']\nfederation:\n  ipRangeWhitelist: ['127.0.0.0/8']\n  connectTimeout: 2\n  timeout: 4\nthreepid:\n  medium:\n    email:\n      identity:\n        from: 'id@example.org'\n      connectors:\n        smtp:\n          host: 127.0.0.1\n          port: 9\n          tls: 0\n{policy}"
        );
        let config = crate::config::load_str(&text, "test").unwrap().config;
        let notifier = Arc::new(Notifier::from_config(&config).unwrap());
        let client = Client::new(&config.federation).unwrap();
        (Sessions::new(&config, notifier), client)
    }

    /// A session of `address` stored with the token `tok` (as `request_token` stores a new
    /// one), expiring at `expires_ts`.
    fn stored(state: &State, medium: Medium, address: &str, expires_ts: i64) -> Sid {
        let now = crate::now_ms();
        let fresh = Sid::generate().unwrap();
        let requested = state
            .request_token(&TokenRequest {
                medium,
                address,
                client_secret: &secret(),
                send_attempt: 1,
                next_link: None,
                token_hash: &token_hash("tok"),
                fresh_sid: &fresh,
                now_ms: now,
                expires_ts,
                reserved_until: now + 1_000,
                budget: crate::session::BUDGET,
            })
            .unwrap();
        match requested {
            Requested::Send { sid, created: true } => sid,
            other => panic!("not a new session: {other:?}"),
        }
    }

    fn secret() -> ClientSecret {
        ClientSecret::parse("s3cret").unwrap()
    }

    /// A live session of `address`, validated here by its token.
    fn validated(s: &Sessions, state: &State, address: &str) -> SessionRow {
        let sid = stored(state, Medium::Email, address, crate::now_ms() + 600_000);
        s.submit_token(state, &sid, &secret(), "tok").unwrap()
    }

    /// A remote session of `sid` on DOWN, recorded as `start_for` records one.
    fn remote_row(state: &State, sid: &Sid) -> RemoteSessionRow {
        state
            .remote_session_started(&NewRemoteSession {
                sid,
                server: DOWN,
                remote_sid: "remote-sid",
                remote_secret: &ClientSecret::parse("theirs").unwrap(),
                now_ms: crate::now_ms(),
            })
            .unwrap()
            .unwrap()
    }

    /// The `Remote` error's server and why; panics on any other outcome.
    fn remote_error<T>(r: Result<T, SessionError>) -> (String, String) {
        match r {
            Err(SessionError::Remote { server, why }) => (server, why),
            Err(other) => panic!("not a remote's failure: {other:?}"),
            Ok(_) => panic!("succeeded, the remote down"),
        }
    }

    fn mxid() -> UserId {
        UserId::parse("@a:example.org").unwrap()
    }

    #[test]
    fn a_server_is_named_by_its_host() {
        assert_eq!(server_name("https://matrix.org"), "matrix.org");
        assert_eq!(server_name("http://127.0.0.1:8090/id"), "127.0.0.1:8090");
    }

    #[test]
    fn a_route_names_the_server_of_the_policy() {
        let (s, _) = sessions(&local_and_remote());
        let servers = BTreeMap::from([("remote".to_owned(), vec![DOWN.to_owned()])]);
        assert_eq!(s.remotes.servers(), &servers);
        assert_eq!(
            s.route(Medium::Email, "a@example.org"),
            Ok(Route::LocalOffer(DOWN.into()))
        );
        assert_eq!(
            s.route(Medium::Email, "a@gmail.example"),
            Ok(Route::Remote(DOWN.into()))
        );
        let (s, _) = sessions(&remote_only());
        assert_eq!(
            s.route(Medium::Email, "a@example.org"),
            Ok(Route::Remote(DOWN.into()))
        );
        let (s, _) = sessions(&local_only());
        assert_eq!(s.route(Medium::Email, "a@example.org"), Ok(Route::Local));
    }

    #[test]
    fn what_was_found_of_a_remote_is_believed_a_while() {
        assert_eq!(USABLE_FOR, Duration::from_secs(300));
        assert_eq!(UNUSABLE_FOR, Duration::from_secs(30));
        let (s, client) = sessions(&local_and_remote());
        let r = &s.remotes;
        // Nothing known: asked, and what it said is kept.
        let why = r.usable(&client, DOWN).unwrap_err();
        assert!(why.starts_with("unreachable"), "{why}");
        let kept = crate::lock(&r.found).get(DOWN).map(|(_, k)| k.clone());
        assert_eq!(kept, Some(Err(why)));
        // What was found is believed, not asked again: the remote is down, yet usable.
        let found = |ago: Duration, known: Result<(), String>| {
            let at = Instant::now().checked_sub(ago).expect("a clock that old");
            crate::lock(&r.found).insert(DOWN.to_owned(), (at, known));
            r.usable(&client, DOWN)
        };
        let second = Duration::from_secs(1);
        assert_eq!(found(Duration::ZERO, Ok(())), Ok(()));
        assert_eq!(found(UNUSABLE_FOR + second, Ok(())), Ok(()));
        assert_eq!(
            found(UNUSABLE_FOR - second, Err("said".into())),
            Err("said".into())
        );
        // Past its time it is asked again.
        let asked = found(USABLE_FOR + second, Ok(())).unwrap_err();
        assert!(asked.starts_with("unreachable"), "{asked}");
        let asked = found(UNUSABLE_FOR + second, Err("said".into())).unwrap_err();
        assert!(asked.starts_with("unreachable"), "{asked}");
    }

    #[test]
    fn a_session_lives_with_its_secret_until_it_expires() {
        let t = temp_state("remote-live");
        let (s, _) = sessions(&local_and_remote());
        let sid = stored(
            &t.state,
            Medium::Email,
            "a@example.org",
            crate::now_ms() + 600_000,
        );
        assert_eq!(s.live(&t.state, &sid, &secret()).unwrap().sid, sid);
        let other = ClientSecret::parse("other").unwrap();
        assert!(matches!(
            s.live(&t.state, &sid, &other),
            Err(SessionError::NoSession)
        ));
        let gone = stored(
            &t.state,
            Medium::Email,
            "b@example.org",
            crate::now_ms() - 1,
        );
        assert!(matches!(
            s.live(&t.state, &gone, &secret()),
            Err(SessionError::Expired)
        ));
    }

    #[test]
    fn a_remote_session_starts_from_a_validated_session_whose_route_offers_it() {
        let t = temp_state("remote-start");
        let (s, client) = sessions(&local_and_remote());
        let start = |sid: &Sid| s.start_remote(&t.state, &client, sid, &secret());
        let unvalidated = stored(
            &t.state,
            Medium::Email,
            "a@example.org",
            crate::now_ms() + 600_000,
        );
        assert!(matches!(
            start(&unvalidated),
            Err(SessionError::NotValidated)
        ));
        // Offered, and the remote is down: it says so, and nothing is recorded.
        let session = validated(&s, &t.state, "b@example.org");
        let (server, why) = remote_error(start(&session.sid));
        assert_eq!(server, "127.0.0.1:9");
        assert!(why.starts_with("unreachable"), "{why}");
        assert!(t.state.remote_session(&session.sid).unwrap().is_none());
        // Started already (another instance): that one, the remote not asked.
        remote_row(&t.state, &session.sid);
        assert_eq!(
            start(&session.sid).unwrap(),
            ("127.0.0.1:9".to_owned(), "b@example.org".to_owned())
        );
        // Not offered here.
        let (local, _) = sessions(&local_only());
        let session = validated(&local, &t.state, "c@example.org");
        assert!(matches!(
            local.start_remote(&t.state, &client, &session.sid, &secret()),
            Err(SessionError::Forbidden(_))
        ));
    }

    #[test]
    fn a_phone_number_never_starts_a_remote_session() {
        let t = temp_state("remote-phone");
        let (s, client) = sessions(&remote_only());
        let sid = stored(
            &t.state,
            Medium::Msisdn,
            "447700900001",
            crate::now_ms() + 600_000,
        );
        let session = t.state.session(&sid).unwrap().unwrap();
        let (_, why) = remote_error(s.start_for(&t.state, &client, &session, DOWN));
        assert_eq!(
            why,
            "phone numbers are validated on another server by e-mail only"
        );
    }

    #[test]
    fn after_our_token_the_offer_or_the_remote_session_or_why_not() {
        let t = temp_state("remote-after");
        let (s, client) = sessions(&local_and_remote());
        let here = validated(&s, &t.state, "a@example.org");
        match s.after_local(&t.state, &client, &here) {
            AfterLocal::Done {
                note: Some((server, why)),
            } => {
                assert_eq!(server, "127.0.0.1:9");
                assert!(why.starts_with("unreachable"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let elsewhere = validated(&s, &t.state, "a@gmail.example");
        match s.after_local(&t.state, &client, &elsewhere) {
            AfterLocal::Failed { server, why } => {
                assert_eq!(server, "127.0.0.1:9");
                assert!(why.contains("unreachable"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // Found usable (kept from before): offered.
        crate::lock(&s.remotes.found).insert(DOWN.to_owned(), (Instant::now(), Ok(())));
        assert!(matches!(
            s.after_local(&t.state, &client, &here),
            AfterLocal::Offer { server } if server == "127.0.0.1:9"
        ));
        let (local, _) = sessions(&local_only());
        assert!(matches!(
            local.after_local(&t.state, &client, &here),
            AfterLocal::Done { note: None }
        ));
    }

    #[test]
    fn a_remote_only_session_counts_as_validated_once_its_remote_says_so() {
        let t = temp_state("remote-gate");
        let (s, client) = sessions(&local_and_remote());
        let gate = |sid: &Sid| s.remote_gate(&t.state, &client, sid);
        // Validated here (its route offers the remote): nothing more to ask.
        let here = validated(&s, &t.state, "a@example.org");
        assert!(gate(&here.sid).is_ok());
        // Remote only: not before its remote session starts, nor while the remote cannot
        // say; once it said so (recorded), without asking again.
        let elsewhere = validated(&s, &t.state, "a@gmail.example");
        assert!(matches!(
            gate(&elsewhere.sid),
            Err(SessionError::NotValidated)
        ));
        remote_row(&t.state, &elsewhere.sid);
        let (server, why) = remote_error(gate(&elsewhere.sid));
        assert_eq!(server, "127.0.0.1:9");
        assert!(why.starts_with("unreachable"), "{why}");
        t.state
            .remote_session_validated(&elsewhere.sid, crate::now_ms())
            .unwrap();
        assert!(gate(&elsewhere.sid).is_ok());
        let unknown = Sid::generate().unwrap();
        assert!(matches!(gate(&unknown), Err(SessionError::NoSession)));
    }

    #[test]
    fn a_bind_goes_where_the_route_says() {
        let t = temp_state("remote-bind");
        let (s, client) = sessions(&local_and_remote());
        let bind = |sid: &Sid| s.bind_route(&t.state, &client, sid, &mxid());
        // Remote only: the remote's, once validated there; its failure is the bind's.
        let elsewhere = validated(&s, &t.state, "a@gmail.example");
        assert!(matches!(
            bind(&elsewhere.sid),
            Err(SessionError::NotValidated)
        ));
        remote_row(&t.state, &elsewhere.sid);
        t.state
            .remote_session_validated(&elsewhere.sid, crate::now_ms())
            .unwrap();
        let (server, why) = remote_error(bind(&elsewhere.sid));
        assert_eq!(server, "127.0.0.1:9");
        assert!(why.starts_with("unreachable"), "{why}");
        assert_eq!(
            t.state
                .remote_session(&elsewhere.sid)
                .unwrap()
                .unwrap()
                .bound_ts,
            None
        );
        // Offered and not taken: here.
        let here = validated(&s, &t.state, "a@example.org");
        assert!(matches!(bind(&here.sid), Ok(BindRoute::Local)));
        // Taken, the remote not validated (or down): here, and pending there.
        remote_row(&t.state, &here.sid);
        assert!(matches!(bind(&here.sid), Ok(BindRoute::Local)));
        let row = t.state.remote_session(&here.sid).unwrap().unwrap();
        assert_eq!(row.bind_mxid, Some(mxid()));
        assert_eq!(row.bound_ts, None);
        // The check finds the remote still down: says so, still pending.
        let (_, why) = remote_error(s.check_remote(&t.state, &client, &here.sid, &secret()));
        assert!(why.starts_with("unreachable"), "{why}");
        let (local, _) = sessions(&local_only());
        let session = validated(&local, &t.state, "b@example.org");
        assert!(matches!(
            local.bind_route(&t.state, &client, &session.sid, &mxid()),
            Ok(BindRoute::Local)
        ));
        assert!(matches!(
            local.check_remote(&t.state, &client, &session.sid, &secret()),
            Err(SessionError::NoSession)
        ));
    }
}
