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
    use super::server_name;

    #[test]
    fn a_server_is_named_by_its_host() {
        assert_eq!(server_name("https://matrix.org"), "matrix.org");
        assert_eq!(server_name("http://127.0.0.1:8090/id"), "127.0.0.1:8090");
    }
}
