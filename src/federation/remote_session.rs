//! Calls to another identity server on a user's behalf (remote 3PID sessions, mxisd's seed
//! 004): its v1 `requestToken`, `getValidated3pid` and `3pid/bind`, and whether it serves
//! v1 at all. Only v1 can take a remote bind: over v2 a server binds only the user of the
//! account that calls it (ours), never the user we act for.
//!
//! Every call goes through the guarded [`Client`]: its DNS, address policy and deadlines
//! (`federation.connectTimeout`, `federation.timeout`), so a slow remote holds a worker no
//! longer than one call's deadline.

use super::client::{Answer, CallError, Client};
use serde_json::{json, Value};
use std::fmt;

const V1: &str = "/_matrix/identity/api/v1";

/// Why the remote server could not do what we asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// It could not be asked (policy, names, connection, TLS, timeout).
    Call(CallError),
    /// It does not serve the v1 API (a v2-only server cannot take a remote bind).
    NoV1 { status: u16 },
    /// It answered with an error of the spec.
    Refused {
        status: u16,
        errcode: String,
        error: String,
    },
    /// It answered something the spec does not say.
    BadAnswer(String),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Call(e) => e.fmt(f),
            RemoteError::NoV1 { status } => write!(
                f,
                "it does not serve the v1 API (HTTP {status}); over v2 a server binds only its own account's user, so it cannot take binds for our users"
            ),
            RemoteError::Refused {
                status,
                errcode,
                error,
            } => write!(f, "it refused: HTTP {status} {errcode} {error}"),
            RemoteError::BadAnswer(why) => write!(f, "unusable answer: {why}"),
        }
    }
}

impl From<CallError> for RemoteError {
    fn from(e: CallError) -> Self {
        RemoteError::Call(e)
    }
}

/// Whether `base` serves the v1 API: `GET /api/v1` answers a JSON object (sydent, us), or
/// else its public key of v1 does (servers without the bare path).
pub fn v1_available(client: &Client, base: &str) -> Result<(), RemoteError> {
    let hello = client.get(&format!("{base}{V1}"), None)?;
    if hello.status == 200 && hello.json().is_ok_and(|v| v.is_object()) {
        return Ok(());
    }
    if hello.status >= 500 {
        return Err(refused(&hello));
    }
    let key = client.get(&format!("{base}{V1}/pubkey/ed25519:0"), None)?;
    match key.status {
        200 if key.json().is_ok_and(|v| v["public_key"].is_string()) => Ok(()),
        s if s >= 500 => Err(refused(&key)),
        status => Err(RemoteError::NoV1 { status }),
    }
}

/// v1 `validate/email/requestToken` for `email`: the remote's sid. The remote mails the
/// user its own link.
pub fn request_email_token(
    client: &Client,
    base: &str,
    client_secret: &str,
    email: &str,
    send_attempt: i64,
) -> Result<String, RemoteError> {
    let body = json!({
        "client_secret": client_secret,
        "email": email,
        "send_attempt": send_attempt,
    });
    let answer = client.send_json(
        "POST",
        &format!("{base}{V1}/validate/email/requestToken"),
        None,
        &body,
    )?;
    let v = ok_json(&answer)?;
    // The spec says a string; some servers send a number.
    match &v["sid"] {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(RemoteError::BadAnswer("no sid".into())),
    }
}

/// v1 `3pid/getValidated3pid`: whether the user validated the remote session (`false`:
/// not yet).
pub fn validated(
    client: &Client,
    base: &str,
    sid: &str,
    client_secret: &str,
) -> Result<bool, RemoteError> {
    let url = format!(
        "{base}{V1}/3pid/getValidated3pid?sid={}&client_secret={}",
        crate::urlencoded::encode(sid),
        crate::urlencoded::encode(client_secret)
    );
    let answer = client.get(&url, None)?;
    if answer.status == 400 && errcode(&answer) == "M_SESSION_NOT_VALIDATED" {
        return Ok(false);
    }
    let v = ok_json(&answer)?;
    Ok(v["validated_at"].is_number() || v["address"].is_string())
}

/// v1 `3pid/bind` of the remote session (sid, client secret): the remote's signed
/// association of the session's 3PID (medium, address) with `mxid`.
pub fn bind(
    client: &Client,
    base: &str,
    (sid, client_secret): (&str, &str),
    (medium, address): (&str, &str),
    mxid: &str,
) -> Result<Value, RemoteError> {
    let body = json!({"sid": sid, "client_secret": client_secret, "mxid": mxid});
    let answer = client.send_json("POST", &format!("{base}{V1}/3pid/bind"), None, &body)?;
    let v = ok_json(&answer)?;
    let same_3pid = v["medium"].as_str() == Some(medium)
        && v["address"]
            .as_str()
            .is_some_and(|a| a.eq_ignore_ascii_case(address));
    if v["mxid"].as_str() != Some(mxid) || !same_3pid || !v["signatures"].is_object() {
        return Err(RemoteError::BadAnswer(
            "not a signed association of this user".into(),
        ));
    }
    Ok(v)
}

/// The JSON object of a 200, else what the remote said.
fn ok_json(answer: &Answer) -> Result<Value, RemoteError> {
    if answer.status != 200 {
        return Err(refused(answer));
    }
    Ok(answer.object()?)
}

fn errcode(answer: &Answer) -> String {
    answer
        .json()
        .ok()
        .and_then(|v| v["errcode"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A refusal, its message cut short (it goes to logs and pages).
fn refused(answer: &Answer) -> RemoteError {
    let v = answer.json().unwrap_or_default();
    let text = |key: &str| {
        v[key]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect::<String>()
    };
    RemoteError::Refused {
        status: answer.status,
        errcode: text("errcode"),
        error: text("error"),
    }
}
