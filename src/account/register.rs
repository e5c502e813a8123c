//! Registering with an OpenID token: the user's homeserver must vouch for the token, and the
//! user it names must live on that homeserver.

use crate::federation::discovery::parse_server_name;
use crate::federation::homeserver::{openid_userinfo, HomeserverError};
use crate::federation::Client;
use crate::user_id::UserId;
use std::fmt;

#[derive(Debug)]
pub enum RegisterError {
    /// `matrix_server_name` is not a server name.
    BadServerName(String),
    /// Not in `account.homeserverAllowList`.
    NotAllowed(String),
    Homeserver(HomeserverError),
    /// The homeserver vouched for a user of another server.
    ForeignUser {
        server: String,
        user_id: String,
    },
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::BadServerName(s) => write!(f, "'{s}' is not a server name"),
            RegisterError::NotAllowed(s) => write!(f, "homeserver {s} may not register here"),
            RegisterError::Homeserver(e) => e.fmt(f),
            RegisterError::ForeignUser { server, user_id } => {
                write!(
                    f,
                    "homeserver {server} vouched for {user_id}, who is not one of its users"
                )
            }
        }
    }
}

/// The Matrix ID the OpenID `token` from `server` belongs to.
pub fn verify_openid(
    client: &Client,
    allow_list: &[String],
    server: &str,
    token: &str,
) -> Result<String, RegisterError> {
    parse_server_name(server).ok_or_else(|| RegisterError::BadServerName(server.to_owned()))?;
    if !allow_list.is_empty() && !allow_list.iter().any(|s| s.eq_ignore_ascii_case(server)) {
        return Err(RegisterError::NotAllowed(server.to_owned()));
    }
    let user_id = openid_userinfo(client, server, token).map_err(RegisterError::Homeserver)?;
    match UserId::parse(&user_id) {
        Some(user) if user.server() == server => Ok(user.into_string()),
        _ => Err(RegisterError::ForeignUser {
            server: server.to_owned(),
            user_id,
        }),
    }
}
