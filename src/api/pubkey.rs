//! The server's public keys and their validity (v1 and v2 alike; no authentication).

use crate::app::App;
use crate::crypto::b64;
use crate::http::{ApiError, Reply, Request};
use serde_json::json;

/// # `GET /_matrix/identity/v2/pubkey/{keyId}`
///
/// The public key with this id (`ed25519:0`), as unpadded base64.
/// - A key marked invalid is still served; `isvalid` says it is no longer valid.
/// - An unknown id is 404 M_NOT_FOUND.
pub fn get(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let key = app
        .keys
        .find(req.param("keyId"))
        .ok_or_else(|| ApiError::NotFound("The public key".into()))?;
    Ok(Reply::json(json!({ "public_key": key.public_key() })))
}

/// `+` in an unencoded query string arrives as a space; base64 has no spaces.
fn public_key_param(req: &Request) -> Result<String, ApiError> {
    Ok(req.require_query("public_key")?.replace(' ', "+"))
}

/// # `GET /_matrix/identity/v2/pubkey/isvalid?public_key=…`
///
/// Whether the key is one of this server's long-term keys and still valid: `{"valid":bool}`.
pub fn is_valid(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let valid = app.keys.is_valid_public_key(&public_key_param(req)?);
    Ok(Reply::json(json!({ "valid": valid })))
}

/// # `GET /_matrix/identity/v2/pubkey/ephemeral/isvalid?public_key=…`
///
/// Whether the key is an ephemeral key this server handed out with an invite.
/// Any base64 form is accepted; keys are compared in the URL-safe form they are stored in.
pub fn ephemeral_is_valid(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let valid = match b64::decode(&public_key_param(req)?) {
        Some(bytes) => app
            .state
            .ephemeral_key_is_valid(&b64::encode_url_safe(&bytes))?,
        None => false,
    };
    Ok(Reply::json(json!({ "valid": valid })))
}
