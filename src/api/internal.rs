//! `/_matrix-internal/`: endpoints for the homeserver, not for clients. They answer only to
//! addresses in `internal.allowedCidr` (default: loopback).

use crate::app::App;
use crate::http::{ApiError, Reply, Request};
use crate::user_id::UserId;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Credentials {
    user: User,
}

#[derive(Deserialize)]
struct User {
    id: String,
    password: String,
}

/// # `POST /_matrix-internal/identity/v1/check_credentials`
///
/// The Synapse REST auth module's password check, against the identity stores (an LDAP
/// bind, the static store, the REST backend): `{"user":{"id","password"}}` →
/// `{"auth":{"success":true,"id":{"type":"mxid","value"},"profile":{"display_name",
/// "three_pids"}}}`, or `{"auth":{"success":false}}`.
/// - A password oracle: only for `internal.allowedCidr`, and at most `internal.rateLimit`
///   checks per user id per minute (429 M_LIMIT_EXCEEDED beyond).
pub fn check_credentials(app: &App, req: &Request) -> Result<Reply, ApiError> {
    if !req.client.is_in(&app.config.internal.allowed) {
        log::warn!(
            "check_credentials refused to {}: not in internal.allowedCidr",
            req.client
        );
        return Err(ApiError::Forbidden("Not allowed from this address".into()));
    }
    let body: Credentials = req.json()?;
    if let Err(wait) = app.credential_checks.check(&body.user.id) {
        return Err(ApiError::LimitExceeded {
            retry_after_ms: wait.as_millis() as u64,
        });
    }
    // A user id that is not one is nobody's.
    let Some(user) = UserId::parse(&body.user.id)
        .map(|id| app.lookup.authenticate(&id, &body.user.password))
        .transpose()?
        .flatten()
    else {
        return Ok(Reply::json(json!({ "auth": { "success": false } })));
    };
    let three_pids: Vec<_> = user
        .threepids
        .iter()
        .map(|(m, a)| json!({ "medium": m.as_str(), "address": a }))
        .collect();
    Ok(Reply::json(json!({
        "auth": {
            "success": true,
            "id": { "type": "mxid", "value": user.mxid },
            "profile": { "display_name": user.display_name, "three_pids": three_pids },
        }
    })))
}
