//! `3pid/bind` and `3pid/unbind`: publishing a validated 3PID as bound to a Matrix ID, and
//! taking it back. The signed association is answered whether or not this server keeps
//! binds (`binds.local.enabled`); when it does, lookups here see the bind at once.

use super::auth;
use super::session::session_of;
use crate::app::App;
use crate::federation::xmatrix::{self, Signed, XMatrixError};
use crate::http::{ApiError, Reply, Request};
use crate::session::remote::BindRoute;
use crate::state::Bind;
use crate::threepid::{self, Medium};
use crate::user_id::UserId;
use serde::Deserialize;
use serde_json::{json, Value};

/// sydent's validity of a bind's signed association: a hundred years.
const HUNDRED_YEARS_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

#[derive(Deserialize)]
struct BindBody {
    sid: String,
    client_secret: String,
    mxid: String,
}

/// # `POST …/3pid/bind`
///
/// `{sid, client_secret, mxid}` → the signed association `{medium, address, mxid, ts,
/// not_before, not_after, signatures}` of the session's validated 3PID. v2: `mxid` must be
/// the caller (403 M_UNAUTHORIZED). 400 M_SESSION_NOT_VALIDATED, 404 M_NO_VALID_SESSION.
pub fn bind<const V2: bool>(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let caller = if V2 {
        Some(auth::authorized(app, req)?.user_id)
    } else {
        None
    };
    let body: BindBody = req.json()?;
    let mxid = UserId::parse(&body.mxid)
        .ok_or_else(|| ApiError::InvalidParam(format!("'{}' is not a Matrix ID", body.mxid)))?;
    if caller.is_some_and(|c| c != mxid.as_str()) {
        return Err(ApiError::Forbidden(
            "A 3PID can only be bound to the caller's own Matrix ID".into(),
        ));
    }
    let (sid, secret) = session_of(&body.sid, &body.client_secret)?;
    let v = app.sessions.validated(&app.state, &sid, &secret)?;
    // Remote sessions (seed 004): bound on the remote only, or there too.
    if let BindRoute::RemoteOnly(association) =
        app.sessions
            .bind_route(&app.state, &app.federation, &sid, &mxid)?
    {
        return Ok(Reply::json(association));
    }
    let ts = crate::now_ms();
    let validity = (ts, ts, ts.saturating_add(HUNDRED_YEARS_MS));
    let bind = Bind {
        medium: v.medium,
        address: &v.address,
        mxid: &mxid,
    };
    if app.config.binds.local {
        crate::binds::bind(&app.state, &app.hash_index, bind, validity)?;
    }
    app.invites.on_bind(&app.state, bind);
    log::info!("bound a {} to a user of {}", v.medium, mxid.server());
    let mut association = json!({
        "medium": v.medium.as_str(),
        "address": v.address,
        "mxid": mxid.as_str(),
        "ts": validity.0,
        "not_before": validity.1,
        "not_after": validity.2,
    });
    app.keys
        .sign(&app.config.server.name, &mut association)
        .map_err(|e| {
            log::error!("signing a bind: {e}");
            ApiError::Internal
        })?;
    Ok(Reply::json(association))
}

#[derive(Deserialize)]
struct Threepid {
    medium: String,
    address: String,
}

#[derive(Deserialize)]
struct UnbindBody {
    mxid: String,
    threepid: Threepid,
    sid: Option<String>,
    client_secret: Option<String>,
}

/// # `POST …/3pid/unbind`
///
/// `{mxid, threepid: {medium, address}, sid?, client_secret?}` → `{}`. Allowed with the sid
/// and secret of a validated session of that 3PID, or signed by the mxid's homeserver
/// (`Authorization: X-Matrix …`, as Synapse sends it), checked first: a caller who is
/// neither gets the same answer whether the address is bound or not. With local binds off,
/// a no-op answered at once: nothing here can change, so no caller may make us fetch keys.
pub fn unbind<const V2: bool>(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let content: Value = req.json()?;
    let body: UnbindBody =
        serde_json::from_value(content.clone()).map_err(|e| ApiError::BadJson(e.to_string()))?;
    let mxid = UserId::parse(&body.mxid)
        .ok_or_else(|| ApiError::InvalidParam(format!("'{}' is not a Matrix ID", body.mxid)))?;
    let medium = Medium::parse(&body.threepid.medium)
        .ok_or_else(|| ApiError::InvalidParam("threepid.medium is not email or msisdn".into()))?;
    let address = threepid::address(
        medium,
        &body.threepid.address,
        app.config.lookup.default_region,
    )
    .ok_or_else(|| ApiError::InvalidParam("threepid.address is not an address".into()))?;
    if !app.config.binds.local {
        return Ok(Reply::json(json!({})));
    }
    // Who asks is checked before anything is looked up: the answer must not tell an
    // unauthenticated caller whether the address is bound (sydent's order too).
    match (&body.sid, &body.client_secret) {
        (Some(sid), Some(secret)) => {
            let (sid, secret) = session_of(sid, secret)?;
            let v = app.sessions.validated(&app.state, &sid, &secret)?;
            if v.medium != medium || v.address != address {
                return Err(ApiError::Forbidden(
                    "The session did not validate this 3PID".into(),
                ));
            }
        }
        _ => signed_by_homeserver::<V2>(app, req, &content, &mxid)?,
    }
    let bound = app.state.bound(medium, &address)?.as_ref() == Some(&mxid);
    if !bound {
        return Ok(Reply::json(json!({})));
    }
    let bind = Bind {
        medium,
        address: &address,
        mxid: &mxid,
    };
    if crate::binds::unbind(&app.state, &app.hash_index, bind)? {
        app.sessions.unbind_notice(medium, &address, &mxid);
    }
    Ok(Reply::json(json!({})))
}

/// The request must be signed by the server of `mxid`.
fn signed_by_homeserver<const V2: bool>(
    app: &App,
    req: &Request,
    content: &Value,
    mxid: &UserId,
) -> Result<(), ApiError> {
    let header = req.header("Authorization").ok_or_else(|| {
        ApiError::Unauthorized(
            "Unbinding needs a validated session (sid, client_secret) or the homeserver's signature".into(),
        )
    })?;
    let uri = if V2 {
        "/_matrix/identity/v2/3pid/unbind"
    } else {
        "/_matrix/identity/api/v1/3pid/unbind"
    };
    let origin = xmatrix::verify(
        &app.federation,
        &app.server_keys,
        header,
        &Signed {
            method: "POST",
            uri,
            content,
            us: &app.names,
            origin: mxid.server(),
        },
    )
    .map_err(|e| {
        log::warn!("unbind refused: {e}");
        match e {
            XMatrixError::Malformed => ApiError::Unauthorized(e.to_string()),
            // Why the keys could not be fetched (an address, a refusal) stays in the log.
            XMatrixError::Keys { .. } => ApiError::Upstream { timeout: false },
            _ => ApiError::PolicyForbids(e.to_string()),
        }
    })?;
    if origin != mxid.server() {
        log::warn!("unbind refused: {origin} signed for a user of another server");
        return Err(ApiError::PolicyForbids(
            "Only the user's own homeserver may unbind for it".into(),
        ));
    }
    Ok(())
}
