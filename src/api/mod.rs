//! The endpoints, one file per area of the Identity Service API. Handlers open with the
//! endpoint as the spec writes it, check their input, delegate to a domain module, and shape
//! the answer. Domain errors become `ApiError` here (`From` impls), never in the domain.
//!
//! v1 (`/_matrix/identity/api/v1`) and v2 (`/_matrix/identity/v2`) paths share handlers;
//! `matrix.v1` / `matrix.v2` turn each family off.

mod account;
mod auth;
mod binds;
mod internal;
mod invite;
mod lookup;
mod number;
mod pubkey;
mod session;
mod status;
mod terms;

use crate::app::App;
use crate::config::Config;
use crate::http::{ApiError, Handler, Method, Router};
use crate::state::StateError;

pub(crate) const V1: &str = "/_matrix/identity/api/v1";
pub(crate) const V2: &str = "/_matrix/identity/v2";

/// Every route this server answers, given which API versions are enabled.
pub fn router(config: &Config) -> Router<App> {
    let mut r = Router::new();
    r.add(Method::Get, "/_matrix/identity/versions", status::versions);
    let mut both = |method: Method, path: &str, handler: Handler<App>| {
        for (enabled, prefix) in [(config.matrix.v1, V1), (config.matrix.v2, V2)] {
            if enabled {
                r.add(method, &format!("{prefix}{path}"), handler);
            }
        }
    };
    both(Method::Get, "", status::hello);
    both(Method::Get, "/pubkey/{keyId}", pubkey::get);
    both(Method::Get, "/pubkey/isvalid", pubkey::is_valid);
    both(
        Method::Get,
        "/pubkey/ephemeral/isvalid",
        pubkey::ephemeral_is_valid,
    );
    // Handlers that differ by version only in whether they need an access token.
    let mut versioned = |method: Method, path: &str, v1: Handler<App>, v2: Handler<App>| {
        for (enabled, prefix, handler) in [(config.matrix.v1, V1, v1), (config.matrix.v2, V2, v2)] {
            if enabled {
                r.add(method, &format!("{prefix}{path}"), handler);
            }
        }
    };
    for medium in ["email", "msisdn"] {
        let request: [Handler<App>; 2] = match medium {
            "email" => [
                session::request_email::<false>,
                session::request_email::<true>,
            ],
            _ => [
                session::request_msisdn::<false>,
                session::request_msisdn::<true>,
            ],
        };
        versioned(
            Method::Post,
            &format!("/validate/{medium}/requestToken"),
            request[0],
            request[1],
        );
        versioned(
            Method::Post,
            &format!("/validate/{medium}/submitToken"),
            session::submit::<false>,
            session::submit::<true>,
        );
        // The link in a mail: no access token on either version.
        versioned(
            Method::Get,
            &format!("/validate/{medium}/submitToken"),
            session::submit_link,
            session::submit_link,
        );
    }
    versioned(
        Method::Get,
        "/3pid/getValidated3pid",
        session::get_validated::<false>,
        session::get_validated::<true>,
    );
    versioned(
        Method::Post,
        "/store-invite",
        invite::store::<false>,
        invite::store::<true>,
    );
    versioned(
        Method::Post,
        "/3pid/bind",
        binds::bind::<false>,
        binds::bind::<true>,
    );
    versioned(
        Method::Post,
        "/3pid/unbind",
        binds::unbind::<false>,
        binds::unbind::<true>,
    );
    // The mail's sign URL is a v1 path, served even when v1 is off: it signs only with a
    // key the caller already holds.
    r.add(Method::Post, &format!("{V1}/sign-ed25519"), invite::sign);
    if config.matrix.v2 {
        r.add(Method::Post, &format!("{V2}/sign-ed25519"), invite::sign);
        r.add(
            Method::Post,
            &format!("{V2}/account/register"),
            account::register,
        );
        r.add(Method::Get, &format!("{V2}/account"), account::whoami);
        r.add(
            Method::Post,
            &format!("{V2}/account/logout"),
            account::logout,
        );
        r.add(Method::Get, &format!("{V2}/terms"), terms::get);
        r.add(Method::Post, &format!("{V2}/terms"), terms::accept);
        r.add(
            Method::Get,
            &format!("{V2}/hash_details"),
            lookup::hash_details,
        );
        r.add(Method::Post, &format!("{V2}/lookup"), lookup::lookup_v2);
        // MSC4004: the pushes of `lookup.peers` (refused, 403, when none is configured).
        r.add(Method::Post, &format!("{V2}/lookups"), lookup::push_v2);
    }
    if config.matrix.v1 {
        r.add(Method::Get, &format!("{V1}/lookup"), lookup::lookup_v1);
        // `lookup.bulk.enabled: false`: no bulk lookup (404, as for any unknown path).
        if config.lookup.bulk_enabled {
            r.add(
                Method::Post,
                &format!("{V1}/bulk_lookup"),
                lookup::bulk_lookup_v1,
            );
        }
    }
    // The remote session workflow's pages (links on our pages: no access token).
    r.add(
        Method::Get,
        &format!("{}/validate/requestToken", session::REMOTE),
        session::remote_request,
    );
    r.add(
        Method::Get,
        &format!("{}/validate/check", session::REMOTE),
        session::remote_check,
    );
    r.add(
        Method::Post,
        "/_matrix-internal/identity/v1/check_credentials",
        internal::check_credentials,
    );
    r
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> ApiError {
        log::error!("{e}");
        match e.unavailable_store() {
            Some(store) => ApiError::Unavailable(format!("The state database ({store})")),
            None => ApiError::Internal,
        }
    }
}
