//! `/_matrix-internal/`: endpoints for the homeserver, not for clients. They answer only to
//! addresses in `internal.allowedCidr` (default: loopback).

use crate::app::App;
use crate::http::{ApiError, Reply, Request};
use crate::requester::Requester;
use crate::threepid::Medium;
use crate::user_id::UserId;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize)]
struct Credentials {
    user: User,
}

/// Who logs in: a Matrix ID (`id`), or a 3PID (`medium`, `address`) that this server's
/// identity stores map to one (a login by e-mail or phone number).
#[derive(Deserialize)]
struct User {
    id: Option<String>,
    medium: Option<String>,
    address: Option<String>,
    password: String,
}

/// # `POST /_matrix-internal/identity/v1/check_credentials`
///
/// The Synapse password-auth module's check (ours, in `etc/synapse/`, or the REST auth
/// module), against the identity stores (an LDAP bind, the static store, the REST
/// backend): `{"user":{"id","password"}}`, or `{"user":{"medium","address","password"}}` →
/// `{"auth":{"success":true,"mxid","id":{"type":"mxid","value"},"profile":{"display_name",
/// "three_pids"}}}` (no `display_name` when the store has none: Synapse refuses a null), or
/// `{"auth":{"success":false}}`.
/// - A password oracle: only for `internal.allowedCidr`, and at most `internal.rateLimit`
///   checks per user per minute (429 M_LIMIT_EXCEEDED beyond); a 3PID counts as the user
///   it names, so both ways of logging in share one limit.
pub fn check_credentials(app: &App, req: &Request) -> Result<Reply, ApiError> {
    if !req.client.is_in(&app.config.internal.allowed) {
        log::warn!(
            "check_credentials refused to {}: not in internal.allowedCidr",
            req.client
        );
        return Err(ApiError::Forbidden("Not allowed from this address".into()));
    }
    let body: Credentials = req.json()?;
    let Some(who) = user_named(app, &body.user)? else {
        // An unknown 3PID: limited by its address, so that guessing stays slow.
        limit(app, &unknown_key(&body.user))?;
        return Ok(failure());
    };
    limit(app, &who)?;
    // A user id that is not one is nobody's.
    let Some(user) = UserId::parse(&who)
        .map(|id| app.lookup.authenticate(&id, &body.user.password))
        .transpose()?
        .flatten()
    else {
        return Ok(failure());
    };
    let three_pids: Vec<_> = user
        .threepids
        .iter()
        .map(|(m, a)| json!({ "medium": m.as_str(), "address": a }))
        .collect();
    let mut profile = Map::new();
    if let Some(name) = user.display_name.filter(|n| !n.is_empty()) {
        profile.insert("display_name".into(), Value::String(name));
    }
    profile.insert("three_pids".into(), Value::Array(three_pids));
    Ok(Reply::json(json!({
        "auth": {
            "success": true,
            "mxid": user.mxid,
            "id": { "type": "mxid", "value": user.mxid },
            "profile": profile,
        }
    })))
}

/// The Matrix ID the request names: its `id` (its localpart lower-cased, as the stores
/// give theirs and Synapse makes its users': "Alice" typed at the login is alice), or the
/// user this server's identity stores map its 3PID to (never another server's: a login is
/// for our users).
fn user_named(app: &App, user: &User) -> Result<Option<String>, ApiError> {
    if let Some(id) = &user.id {
        return Ok(Some(match UserId::parse(id) {
            Some(u) => UserId::of(u.localpart(), u.server()).into_string(),
            None => id.clone(),
        }));
    }
    let (Some(medium), Some(address)) = (&user.medium, &user.address) else {
        return Err(ApiError::MissingParams(
            "user needs an id, or a medium and an address".into(),
        ));
    };
    let medium = Medium::parse(medium)
        .ok_or_else(|| ApiError::InvalidParam(format!("unknown medium '{medium}'")))?;
    Ok(app.lookup.find(Requester::Unknown, medium, address)?)
}

fn unknown_key(user: &User) -> String {
    format!(
        "{} {}",
        user.medium.as_deref().unwrap_or_default(),
        user.address.as_deref().unwrap_or_default().to_lowercase()
    )
}

fn limit(app: &App, key: &str) -> Result<(), ApiError> {
    app.credential_checks
        .check(key)
        .map_err(|wait| ApiError::LimitExceeded {
            retry_after_ms: wait.as_millis() as u64,
        })
}

fn failure() -> Reply {
    Reply::json(json!({ "auth": { "success": false } }))
}
