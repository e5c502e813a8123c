//! The terms of service (ma1sd's `policy.policies`).

use super::{account::account_error, auth};
use crate::app::App;
use crate::http::{ApiError, Reply, Request};
use serde::Deserialize;
use serde_json::json;

/// # `GET /_matrix/identity/v2/terms`
///
/// The policies a user must accept, each with its version and a document per language.
pub fn get(app: &App, _: &Request) -> Result<Reply, ApiError> {
    Ok(Reply::json(app.accounts.terms.to_json()))
}

#[derive(Deserialize)]
struct Accept {
    user_accepts: Vec<String>,
}

/// # `POST /_matrix/identity/v2/terms`
///
/// Records the URLs the caller accepts; accepting one language's URL of a policy accepts
/// that policy. Authenticated, without the terms check (this is how terms get accepted).
pub fn accept(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let user = auth::authenticated(app, req)?;
    let body: Accept = req.json()?;
    app.accounts
        .accept_terms(&app.state, &user.user_id, &body.user_accepts)
        .map_err(account_error)?;
    Ok(Reply::json(json!({})))
}
