//! Who is calling: the access token (`Authorization: Bearer …`, or `?access_token=…`, which
//! Synapse still sends) → the user, from the accounts cache; and whether they accepted the
//! current terms. Every authenticated handler starts with one of the two functions here.

use crate::app::App;
use crate::http::{ApiError, Request};

/// An authenticated caller.
pub struct User {
    pub user_id: String,
}

/// The access token of the request, if it carries one.
pub fn token(req: &Request) -> Option<String> {
    let bearer = req.header("Authorization").and_then(|h| {
        let (scheme, value) = h.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("Bearer")
            .then(|| value.trim().to_owned())
    });
    bearer
        .or_else(|| req.query("access_token").map(str::to_owned))
        .filter(|t| !t.is_empty())
}

/// The caller, by a valid token; terms not checked (logout and `POST /terms` only).
pub fn authenticated(app: &App, req: &Request) -> Result<User, ApiError> {
    let token = token(req).ok_or_else(|| ApiError::Unauthorized("Missing access token".into()))?;
    match app.accounts.user_of(&app.state, &token)? {
        Some(user_id) => Ok(User { user_id }),
        None => Err(ApiError::Unauthorized("Unrecognised access token".into())),
    }
}

/// The caller, by a valid token, having accepted every current policy.
pub fn authorized(app: &App, req: &Request) -> Result<User, ApiError> {
    let user = authenticated(app, req)?;
    if !app.accounts.accepted_terms(&app.state, &user.user_id)? {
        return Err(ApiError::TermsNotSigned);
    }
    Ok(user)
}
