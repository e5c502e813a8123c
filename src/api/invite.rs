//! `store-invite` (a homeserver stores an invite by e-mail and gets the keys to put in the
//! room) and `sign-ed25519` (the invitee's client has the invite signed with the ephemeral
//! key from the mail). Both take JSON or a form; sign-ed25519 also a query, as
//! matrix-js-sdk POSTs the mail's sign URL with no body.

use super::auth;
use crate::app::App;
use crate::crypto::{b64, sign_json};
use crate::http::{ApiError, Reply, Request};
use crate::invite::{self, InviteError};
use crate::threepid::{self, Medium};
use ed25519_dalek::SigningKey;
use serde_json::{json, Map, Value};

/// The request's parameters: a JSON object, or a form, and (`with_query`) the query.
fn params(req: &Request, with_query: bool) -> Result<Map<String, Value>, ApiError> {
    let form = req
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let mut out = Map::new();
    if with_query {
        for name in ["mxid", "token", "private_key"] {
            if let Some(v) = req.query(name) {
                out.insert(name.into(), Value::String(v.to_owned()));
            }
        }
    }
    let body = req.body();
    if form {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::BadJson("the form is not UTF-8".into()))?;
        for (k, v) in crate::urlencoded::parse_query(text) {
            out.insert(k, Value::String(v));
        }
    } else if !body.iter().all(u8::is_ascii_whitespace) {
        let json: Map<String, Value> = req.json()?;
        out.extend(json);
    }
    Ok(out)
}

fn text<'a>(p: &'a Map<String, Value>, name: &str) -> Result<&'a str, ApiError> {
    p.get(name)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::MissingParams(name.to_owned()))
}

/// # `POST …/store-invite`
///
/// `{medium: "email", address, room_id, sender, …}` → `{token, public_keys, public_key,
/// display_name}`. v2: `sender` must be the caller (403 M_UNAUTHORIZED); v1: only from
/// `invite.v1.allowedCidr`. An address the identity stores or local binds map: 400
/// M_THREEPID_IN_USE with its `mxid`.
pub fn store<const V2: bool>(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let caller = if V2 {
        Some(auth::authorized(app, req)?.user_id)
    } else {
        if !req.client.is_in(&app.config.invite.v1_allowed) {
            log::info!(
                "v1 store-invite from {} refused (invite.v1.allowedCidr)",
                req.client
            );
            return Err(ApiError::Forbidden(
                "Use the v2 API (with an access token) to invite from here".into(),
            ));
        }
        None
    };
    let p = params(req, false)?;
    let medium = text(&p, "medium")?;
    if medium != "email" {
        return Err(ApiError::UnrecognizedMedium(medium.to_owned()));
    }
    let address = threepid::email_to_send_to(text(&p, "address")?).ok_or(ApiError::InvalidEmail)?;
    let room_id = text(&p, "room_id")?;
    let sender = text(&p, "sender")?;
    // Only the fields we know are kept, display fields cut (a refusal would fail the
    // whole invite in Synapse); one of them that is not text is a malformed request.
    let fields = invite::kept_fields(&p).map_err(|invite::NotText(name)| {
        log::info!("store-invite refused: {name} is not a string");
        ApiError::BadJson(format!("{name} must be a string"))
    })?;
    // What the invite keeps is bounded.
    for (name, value, max) in [
        ("room_id", room_id, invite::ID_MAX),
        ("sender", sender, invite::ID_MAX),
        (
            "room_avatar_url",
            p.get("room_avatar_url")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            invite::AVATAR_URL_MAX,
        ),
    ] {
        if value.len() > max {
            log::info!("store-invite refused: {name} of {} bytes", value.len());
            return Err(ApiError::InvalidParam(format!(
                "{name} is longer than {max} bytes"
            )));
        }
    }
    if caller.as_deref().is_some_and(|c| c != sender) {
        return Err(ApiError::Forbidden("sender must be the caller".into()));
    }
    // mxisd's forced recursion: an invitee bound on another identity server is found there
    // (when `lookup.recursive.enabled`), and the homeserver invites the Matrix ID instead.
    if let Some(mxid) = app
        .lookup
        .find(crate::lookup::Asker::Server, Medium::Email, &address)?
    {
        return Err(ApiError::ThreepidInUse { mxid });
    }
    let stored = app
        .invites
        .store(
            &app.state,
            &app.keys.current().id,
            &invite::StoreInvite {
                address: &address,
                room_id,
                sender,
                fields: &fields,
            },
        )
        .map_err(|e| match e {
            InviteError::Limited(wait) => ApiError::LimitExceeded {
                retry_after_ms: wait.as_millis() as u64,
            },
            InviteError::State(e) => e.into(),
            InviteError::Random(e) => {
                log::error!("store-invite: {e}");
                ApiError::Internal
            }
        })?;
    log::info!(
        "invite stored for a room of {}",
        room_id.split_once(':').map_or("", |(_, server)| server)
    );
    let server_key = app.keys.current().public_key();
    Ok(Reply::json(json!({
        "token": stored.token,
        "public_keys": [
            {"public_key": server_key, "key_validity_url": app.invites.key_validity_url(false)},
            {"public_key": stored.ephemeral_public_key, "key_validity_url": app.invites.key_validity_url(true)},
        ],
        "public_key": server_key,
        "display_name": stored.display_name,
    })))
}

/// # `POST …/sign-ed25519`
///
/// `{mxid, token, private_key}` (JSON, form or query) → `{mxid, sender, token, signatures}`
/// signed with the given ephemeral key. An unknown or ended invite: 404 M_UNRECOGNIZED.
pub fn sign(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let p = params(req, true)?;
    let mxid = text(&p, "mxid")?;
    let token = text(&p, "token")?;
    let seed: [u8; 32] = b64::decode(text(&p, "private_key")?)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| ApiError::InvalidParam("private_key is not an ed25519 key".into()))?;
    let invite = app
        .state
        .invite(token, crate::now_ms())?
        .ok_or(ApiError::Unrecognized)?;
    let mut signed = json!({ "mxid": mxid, "sender": invite.sender, "token": token });
    sign_json(
        &mut signed,
        &app.config.server.name,
        "ed25519:0",
        &SigningKey::from_bytes(&seed),
    )
    .map_err(|e| {
        log::error!("sign-ed25519: {e}");
        ApiError::Internal
    })?;
    Ok(Reply::json(signed))
}
