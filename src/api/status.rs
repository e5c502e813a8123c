//! Discovery endpoints: which spec versions we speak, and the per-version "hello".

use crate::app::App;
use crate::http::{ApiError, Reply, Request};
use serde_json::json;

/// The Identity Service API versions we answer to: those sydent (the reference server)
/// announces. Each is served in full: every endpoint of v1.5 (and of the r0 versions on
/// the v1 paths, when `matrix.v1` is on) has its route in `api/mod.rs`.
pub const SPEC_VERSIONS: [&str; 8] = [
    "r0.1.0", "r0.2.0", "r0.3.0", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5",
];

/// # `GET /_matrix/identity/versions`
///
/// The spec versions this server supports; no authentication.
pub fn versions(_: &App, _: &Request) -> Result<Reply, ApiError> {
    Ok(Reply::json(json!({ "versions": SPEC_VERSIONS })))
}

/// # `GET /_matrix/identity/v2` (and `/_matrix/identity/api/v1`)
///
/// Says the API is served here: `{}`.
pub fn hello(_: &App, _: &Request) -> Result<Reply, ApiError> {
    Ok(Reply::json(json!({})))
}
