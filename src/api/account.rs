//! v2 accounts: register with an OpenID token, who am I, log out.

use super::auth;
use crate::account::register::{verify_openid, RegisterError};
use crate::account::AccountError;
use crate::app::App;
use crate::federation::homeserver::HomeserverError;
use crate::federation::CallError;
use crate::http::{ApiError, Reply, Request};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct OpenIdToken {
    access_token: String,
    matrix_server_name: String,
}

/// # `POST /_matrix/identity/v2/account/register`
///
/// Exchanges an OpenID token from the user's homeserver for an access token here.
/// - The homeserver (`matrix_server_name`) is asked who the token belongs to, over
///   federation (`/_matrix/federation/v1/openid/userinfo`); the user must be one of its own.
/// - A token the homeserver rejects is 401 M_UNAUTHORIZED. A homeserver we cannot ask is
///   502 (504 for a timeout) M_UNKNOWN "homeserver unreachable or refused by policy"; why
///   (refused by the address policy, DNS, unreachable, TLS) is logged, never answered.
pub fn register(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let body: OpenIdToken = req.json()?;
    let allow_list = &app.config.account.homeserver_allow_list;
    let user_id = verify_openid(
        &app.federation,
        allow_list,
        &body.matrix_server_name,
        &body.access_token,
    )
    .map_err(register_error)?;
    let token = app
        .accounts
        .issue_token(&app.state, &user_id)
        .map_err(account_error)?;
    log::info!(
        "registered a token for a user of {}",
        body.matrix_server_name
    );
    // sydent also sends `access_token`: older clients read that field.
    Ok(Reply::json(
        json!({ "token": token, "access_token": token }),
    ))
}

fn register_error(e: RegisterError) -> ApiError {
    log::warn!("account registration refused: {e}");
    match e {
        RegisterError::BadServerName(_) => ApiError::InvalidParam(e.to_string()),
        RegisterError::NotAllowed(_) => ApiError::Forbidden(e.to_string()),
        RegisterError::ForeignUser { .. } => ApiError::Unauthorized(e.to_string()),
        // Without the status: which server answered HTTP, and how, is the log's.
        RegisterError::Homeserver(HomeserverError::Rejected { .. }) => {
            ApiError::Unauthorized("The homeserver did not accept the OpenID token".into())
        }
        // The client gets a fixed message: the why (an address the name resolves to, the
        // policy's refusal, a TLS or DNS failure) is in the log line above, never in the
        // answer, which anyone could use to map the internal network.
        RegisterError::Homeserver(HomeserverError::Call {
            error: CallError::Timeout,
            ..
        }) => ApiError::Upstream { timeout: true },
        RegisterError::Homeserver(_) => ApiError::Upstream { timeout: false },
    }
}

pub(super) fn account_error(e: AccountError) -> ApiError {
    match e {
        AccountError::State(e) => e.into(),
        AccountError::Random(e) => {
            log::error!("no randomness for a token: {e}");
            ApiError::Internal
        }
        AccountError::UnknownTermsUrl(url) => {
            ApiError::InvalidParam(format!("'{url}' is not a URL of the current terms"))
        }
    }
}

/// # `GET /_matrix/identity/v2/account`
///
/// The caller's Matrix ID.
pub fn whoami(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let user = auth::authorized(app, req)?;
    Ok(Reply::json(json!({ "user_id": user.user_id })))
}

/// # `POST /_matrix/identity/v2/account/logout`
///
/// Ends the access token; terms need not be accepted. An unknown token is 401
/// M_UNKNOWN_TOKEN.
pub fn logout(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let token =
        auth::token(req).ok_or_else(|| ApiError::Unauthorized("Missing access token".into()))?;
    if !app.accounts.logout(&app.state, &token)? {
        return Err(ApiError::UnknownToken);
    }
    Ok(Reply::json(json!({})))
}
