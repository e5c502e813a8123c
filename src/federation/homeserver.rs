//! Calls to homeservers' federation API. Each finds its homeserver through
//! `discovery::resolve`: the operator's `dns.overwrite.homeserver.federation` entry for it
//! if there is one, else the server-server specification's steps.

use super::client::{CallError, Client};
use super::discovery;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeserverError {
    /// The homeserver could not be asked (policy, DNS, connection, TLS, timeout).
    Call { server: String, error: CallError },
    /// The homeserver answered that the token is not valid.
    Rejected { server: String, status: u16 },
    /// It answered, but not with what the API says.
    BadAnswer { server: String, why: String },
}

impl fmt::Display for HomeserverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HomeserverError::Call { server, error } => write!(f, "homeserver {server}: {error}"),
            HomeserverError::Rejected { server, status } => {
                write!(
                    f,
                    "homeserver {server} rejected the OpenID token (HTTP {status})"
                )
            }
            HomeserverError::BadAnswer { server, why } => write!(f, "homeserver {server}: {why}"),
        }
    }
}

/// `GET /_matrix/federation/v1/openid/userinfo?access_token=…` on `server`: the user the
/// OpenID token belongs to (`sub`).
pub fn openid_userinfo(
    client: &Client,
    server: &str,
    access_token: &str,
) -> Result<String, HomeserverError> {
    let call = |error| HomeserverError::Call {
        server: server.to_owned(),
        error,
    };
    let bad = |why: String| HomeserverError::BadAnswer {
        server: server.to_owned(),
        why,
    };
    let dest = discovery::resolve(client, server).map_err(call)?;
    let url = format!(
        "{}/_matrix/federation/v1/openid/userinfo?access_token={}",
        dest.base_url,
        crate::urlencoded::encode(access_token)
    );
    let answer = client.get(&url, dest.pin).map_err(call)?;
    match answer.status {
        200 => {}
        401 | 403 | 404 => {
            return Err(HomeserverError::Rejected {
                server: server.to_owned(),
                status: answer.status,
            })
        }
        other => return Err(bad(format!("userinfo answered HTTP {other}"))),
    }
    let json = answer.json().map_err(|e| bad(e.to_string()))?;
    json.get("sub")
        .and_then(|s| s.as_str())
        .map(str::to_owned)
        .ok_or_else(|| bad("userinfo has no `sub`".into()))
}

/// How an onbind call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Onbind {
    Delivered,
    /// The homeserver says the request is malformed (400): sending it again cannot help.
    Refused(String),
    /// Worth trying again: unreachable, timeout, 429, 5xx, 403 (Synapse's answer when a key
    /// check fails, which may be on our side).
    Retry(String),
}

/// The longest `onbind` can take under `client`'s deadlines: finding the homeserver
/// (`.well-known`: one call; then SRV: up to three DNS lookups, each up to two tries of
/// the connect timeout), then POST and perhaps PUT.
pub fn longest_onbind(client: &Client) -> Duration {
    client.timeout() * 3 + client.connect_timeout() * 6
}

/// `POST /_matrix/federation/v1/3pid/onbind` on `server` (Synapse has only POST), then PUT
/// (the spec's method) when the POST is not known there (404, 405, M_UNRECOGNIZED).
pub fn onbind(client: &Client, server: &str, body: &serde_json::Value) -> Onbind {
    let dest = match discovery::resolve(client, server) {
        Ok(d) => d,
        Err(e) => return Onbind::Retry(format!("homeserver {server}: {e}")),
    };
    let url = format!("{}/_matrix/federation/v1/3pid/onbind", dest.base_url);
    let mut outcome = Onbind::Retry("not tried".into());
    for method in ["POST", "PUT"] {
        let answer = match client.send_json(method, &url, dest.pin.clone(), body) {
            Ok(a) => a,
            Err(e) => return Onbind::Retry(format!("homeserver {server}: {e}")),
        };
        let unknown =
            answer.status == 404 || answer.status == 405 || answer.body.contains("M_UNRECOGNIZED");
        outcome = match answer.status {
            200..=299 => return Onbind::Delivered,
            400 if !unknown => {
                return Onbind::Refused(format!(
                    "homeserver {server} refused it (400): {}",
                    answer.body.chars().take(200).collect::<String>()
                ))
            }
            status => Onbind::Retry(format!(
                "homeserver {server} answered {method} with {status}"
            )),
        };
        if !unknown {
            break;
        }
    }
    outcome
}
