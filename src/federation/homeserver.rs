//! Calls to homeservers' federation API.

use super::client::{CallError, Client};
use super::discovery;
use std::fmt;

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
        encode_component(access_token)
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

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_encoded_for_the_query() {
        assert_eq!(
            super::encode_component("a b&c=d/é"),
            "a%20b%26c%3Dd%2F%C3%A9"
        );
    }
}
