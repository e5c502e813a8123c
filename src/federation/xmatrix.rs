//! Requests a homeserver signs with its server key (`Authorization: X-Matrix …`), as Synapse
//! signs its unbind requests to identity servers: the header's parts, the origin's keys
//! (`/_matrix/key/v2/server`, fetched through the guarded client and kept until their
//! `valid_until_ts`), and the check of the signature over `{method, uri, origin,
//! destination_is | destination, content}`.

use super::client::{CallError, Client};
use super::discovery;
use crate::crypto::{b64, verify_json};
use ed25519_dalek::VerifyingKey;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Longest we keep a server key, whatever its `valid_until_ts` says.
const KEEP_AT_MOST_MS: i64 = 7 * 24 * 3600 * 1000;

/// The parts of an `X-Matrix` authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XMatrix {
    pub origin: String,
    pub key: String,
    pub sig: String,
    pub destination: Option<String>,
}

/// `X-Matrix origin=…,key="…",sig="…"[,destination="…"]` (values quoted or not).
pub fn parse(header: &str) -> Option<XMatrix> {
    let (scheme, params) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("X-Matrix") {
        return None;
    }
    let mut found: HashMap<String, String> = HashMap::new();
    for part in params.split(',') {
        let (name, value) = part.split_once('=')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        found.insert(name.trim().to_ascii_lowercase(), value.to_owned());
    }
    Some(XMatrix {
        origin: found.remove("origin")?,
        key: found.remove("key")?,
        sig: found.remove("sig")?,
        destination: found.remove("destination"),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XMatrixError {
    /// No usable header.
    Malformed,
    /// The signed request names another destination than us.
    WrongDestination(String),
    /// The origin's key could not be fetched.
    Keys { origin: String, error: String },
    /// The key is not one of the origin's, or the signature does not verify.
    BadSignature { origin: String },
    /// Signed by another server than the one that may ask.
    WrongOrigin(String),
}

impl fmt::Display for XMatrixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XMatrixError::Malformed => f.write_str("no valid X-Matrix authorization"),
            XMatrixError::WrongDestination(d) => write!(f, "signed for another server ({d})"),
            XMatrixError::Keys { origin, error } => write!(f, "keys of {origin}: {error}"),
            XMatrixError::BadSignature { origin } => {
                write!(f, "the signature does not verify with {origin}'s key")
            }
            XMatrixError::WrongOrigin(o) => write!(f, "signed by {o}, not the user's homeserver"),
        }
    }
}

/// Server keys fetched so far, and origins whose keys could not be fetched lately.
#[derive(Default)]
pub struct KeyCache {
    /// (server, key id) → (key, valid until, ms).
    keys: Mutex<HashMap<(String, String), (VerifyingKey, i64)>>,
    /// server → until when not to ask it again (ms).
    failed: Mutex<HashMap<String, i64>>,
    /// Key fetches running now.
    fetching: AtomicUsize,
}

/// Keys kept at most; beyond, expired ones go, then all.
const KEYS_MAX: usize = 10_000;
/// How long an origin whose keys could not be fetched is not asked again.
const FAILED_FOR_MS: i64 = 5 * 60 * 1000;
/// Key fetches at once, all origins together: each can hold a worker for the outbound
/// timeouts, so requests naming slow origins cannot take every worker.
const FETCHES_MAX: usize = 2;

/// A signed request as received.
pub struct Signed<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub content: &'a Value,
    /// What the request may name as its destination (our server name, our public host).
    pub us: &'a [String],
    /// The only origin accepted (the user's homeserver): any other is refused before a key
    /// is fetched.
    pub origin: &'a str,
}

/// Checks `header` over `request`; the origin that signed it.
pub fn verify(
    client: &Client,
    cache: &KeyCache,
    header: &str,
    request: &Signed<'_>,
) -> Result<String, XMatrixError> {
    let auth = parse(header).ok_or(XMatrixError::Malformed)?;
    if auth.origin != request.origin {
        return Err(XMatrixError::WrongOrigin(auth.origin));
    }
    // Synapse signs requests to identity servers with `destination_is` in the object (and
    // names the same server as `destination` in the header, or not at all); federation
    // requests sign `destination`. Each name we go by is tried, both ways.
    let candidates: Vec<&String> = match &auth.destination {
        Some(d) if !request.us.contains(d) => {
            return Err(XMatrixError::WrongDestination(d.clone()))
        }
        Some(d) => vec![d],
        None => request.us.iter().collect(),
    };
    let key = server_key(client, cache, &auth.origin, &auth.key)?;
    let signed = json!({
        "method": request.method,
        "uri": request.uri,
        "origin": auth.origin,
        "content": request.content,
        "signatures": { auth.origin.as_str(): { auth.key.as_str(): auth.sig } },
    });
    for us in candidates {
        for field in ["destination_is", "destination"] {
            let mut attempt = signed.clone();
            attempt[field] = json!(us);
            if verify_json(&attempt, &auth.origin, &auth.key, &key).is_ok() {
                return Ok(auth.origin);
            }
        }
    }
    Err(XMatrixError::BadSignature {
        origin: auth.origin,
    })
}

/// `key_id` of `server`, from the cache or from the server itself (its answer checked to be
/// signed by that key and still valid).
fn server_key(
    client: &Client,
    cache: &KeyCache,
    server: &str,
    key_id: &str,
) -> Result<VerifyingKey, XMatrixError> {
    let now = crate::now_ms();
    let failed = |error: String| XMatrixError::Keys {
        origin: server.to_owned(),
        error,
    };
    let id = (server.to_owned(), key_id.to_owned());
    if let Some((key, until)) = crate::lock(&cache.keys).get(&id) {
        if *until > now {
            return Ok(*key);
        }
    }
    if crate::lock(&cache.failed)
        .get(server)
        .is_some_and(|until| *until > now)
    {
        return Err(failed("failed lately; not asked again yet".into()));
    }
    if cache.fetching.fetch_add(1, Ordering::SeqCst) >= FETCHES_MAX {
        cache.fetching.fetch_sub(1, Ordering::SeqCst);
        return Err(failed("too many key fetches under way".into()));
    }
    let fetched = fetch_key(client, server, key_id, now);
    cache.fetching.fetch_sub(1, Ordering::SeqCst);
    match fetched {
        Ok((key, until)) => {
            let mut keys = crate::lock(&cache.keys);
            if keys.len() >= KEYS_MAX {
                keys.retain(|_, (_, until)| *until > now);
                if keys.len() >= KEYS_MAX {
                    keys.clear();
                }
            }
            keys.insert(id, (key, until));
            Ok(key)
        }
        Err(why) => {
            let mut failures = crate::lock(&cache.failed);
            if failures.len() >= KEYS_MAX {
                failures.retain(|_, until| *until > now);
            }
            failures.insert(server.to_owned(), now + FAILED_FOR_MS);
            Err(failed(why))
        }
    }
}

/// GETs `server`'s `/_matrix/key/v2/server`: `key_id`, and until when it is valid.
fn fetch_key(
    client: &Client,
    server: &str,
    key_id: &str,
    now: i64,
) -> Result<(VerifyingKey, i64), String> {
    let call = |e: CallError| e.to_string();
    let dest = discovery::resolve(client, server).map_err(call)?;
    let answer = client
        .get(
            &format!("{}/_matrix/key/v2/server", dest.base_url),
            dest.pin,
        )
        .map_err(call)?;
    if answer.status != 200 {
        return Err(format!("HTTP {}", answer.status));
    }
    let keys = answer.json().map_err(call)?;
    if keys.get("server_name").and_then(Value::as_str) != Some(server) {
        return Err("the answer is for another server".into());
    }
    let key = keys
        .get("verify_keys")
        .and_then(|k| k.get(key_id))
        .and_then(|k| k.get("key"))
        .and_then(Value::as_str)
        .and_then(b64::decode)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| format!("no key {key_id}"))?;
    verify_json(&keys, server, key_id, &key)
        .map_err(|_| "its key answer is not signed by the key".to_owned())?;
    let until = keys
        .get("valid_until_ts")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .min(now.saturating_add(KEEP_AT_MOST_MS));
    if until <= now {
        return Err("its key answer has expired (valid_until_ts)".into());
    }
    Ok((key, until))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_quoted_or_not() {
        let a = parse("X-Matrix origin=hs.example,key=\"ed25519:a_1\",sig=\"c2ln\"").unwrap();
        assert_eq!(
            a,
            XMatrix {
                origin: "hs.example".into(),
                key: "ed25519:a_1".into(),
                sig: "c2ln".into(),
                destination: None
            }
        );
        let b = parse(
            "X-Matrix origin=\"hs.example\",key=ed25519:a,sig=c2ln,destination=\"id.example\"",
        )
        .unwrap();
        assert_eq!(b.destination.as_deref(), Some("id.example"));
        assert!(parse("Bearer abc").is_none());
        assert!(parse("X-Matrix origin=a,key=b").is_none());
    }
}
