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
    verify_with(header, request, |origin, key_id| {
        server_key(client, cache, origin, key_id)
    })
}

/// `verify`, the origin's key from `key_of(origin, key id)` (the tests' seam: no network).
fn verify_with(
    header: &str,
    request: &Signed<'_>,
    key_of: impl FnOnce(&str, &str) -> Result<VerifyingKey, XMatrixError>,
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
    let key = key_of(&auth.origin, &auth.key)?;
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
    cached_or_fetched(cache, server, key_id, crate::now_ms(), |now| {
        fetch_key(client, server, key_id, now)
    })
}

/// `server_key` at `now`, fetching with `fetch(now)` (the tests' seam: a fake fetcher).
fn cached_or_fetched(
    cache: &KeyCache,
    server: &str,
    key_id: &str,
    now: i64,
    fetch: impl FnOnce(i64) -> Result<(VerifyingKey, i64), String>,
) -> Result<VerifyingKey, XMatrixError> {
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
    let fetched = fetch(now);
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
    key_from_answer(&keys, server, key_id, now)
}

/// `key_id` out of `server`'s key answer `keys`, if the answer is `server`'s, signed by that
/// key and still valid at `now`; with until when it is kept.
fn key_from_answer(
    keys: &Value,
    server: &str,
    key_id: &str,
    now: i64,
) -> Result<(VerifyingKey, i64), String> {
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
    verify_json(keys, server, key_id, &key)
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

    #[test]
    fn header_edge_cases() {
        let a =
            parse("  x-matrix  Origin = hs.example , KEY=\"ed25519:a\", sig=\"c2ln\" ").unwrap();
        assert_eq!(
            (a.origin.as_str(), a.key.as_str(), a.sig.as_str()),
            ("hs.example", "ed25519:a", "c2ln")
        );
        // One quote is no quoting: kept as it is.
        let b = parse("X-Matrix origin=\"hs,key=k,sig=s").unwrap();
        assert_eq!(b.origin, "\"hs");
        assert_eq!(parse("X-Matrix origin=a,key=b,sig=c,junk"), None);
        assert_eq!(parse("X-Matrix"), None);
        assert_eq!(parse("X-Matrixorigin=a,key=b,sig=c"), None);
        assert_eq!(parse("X-Matrix origin=a,sig=c"), None);
        assert_eq!(parse("X-Matrix key=b,sig=c"), None);
    }

    #[test]
    fn errors_say_what_failed() {
        let says = |e: XMatrixError| e.to_string();
        assert_eq!(
            says(XMatrixError::Malformed),
            "no valid X-Matrix authorization"
        );
        assert_eq!(
            says(XMatrixError::WrongDestination("x.example".into())),
            "signed for another server (x.example)"
        );
        assert_eq!(
            says(XMatrixError::Keys {
                origin: "hs.example".into(),
                error: "HTTP 404".into()
            }),
            "keys of hs.example: HTTP 404"
        );
        assert_eq!(
            says(XMatrixError::BadSignature {
                origin: "hs.example".into()
            }),
            "the signature does not verify with hs.example's key"
        );
        assert_eq!(
            says(XMatrixError::WrongOrigin("evil.example".into())),
            "signed by evil.example, not the user's homeserver"
        );
    }

    use crate::crypto::sign_json;
    use ed25519_dalek::SigningKey;

    const HS: &str = "hs.example";
    const KEY_ID: &str = "ed25519:a";
    const NOW: i64 = 1_700_000_000_000;

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn us() -> Vec<String> {
        vec!["id.example".into(), "matrix.id.example".into()]
    }

    /// The `X-Matrix` header for the request signed by `key` with `destination` set in `field`.
    fn header_for(key: &SigningKey, content: &Value, field: &str, destination: &str) -> String {
        let mut object = json!({
            "method": "POST",
            "uri": "/_matrix/identity/v2/3pid/unbind",
            "origin": HS,
            "content": content,
        });
        object[field] = json!(destination);
        sign_json(&mut object, HS, KEY_ID, key).unwrap();
        let sig = object["signatures"][HS][KEY_ID].as_str().unwrap();
        format!("X-Matrix origin={HS},key=\"{KEY_ID}\",sig=\"{sig}\"")
    }

    fn check(header: &str, content: &Value, key: &SigningKey) -> Result<String, XMatrixError> {
        let us = us();
        let request = Signed {
            method: "POST",
            uri: "/_matrix/identity/v2/3pid/unbind",
            content,
            us: &us,
            origin: HS,
        };
        let public = key.verifying_key();
        verify_with(header, &request, |origin, key_id| {
            assert_eq!((origin, key_id), (HS, KEY_ID));
            Ok(public)
        })
    }

    #[test]
    fn verifies_either_destination_field_for_any_of_our_names() {
        let key = signing_key(1);
        let content = json!({"medium": "email", "address": "a@example.org"});
        for field in ["destination_is", "destination"] {
            for name in us() {
                let header = header_for(&key, &content, field, &name);
                assert_eq!(
                    check(&header, &content, &key),
                    Ok(HS.to_owned()),
                    "{field} {name}"
                );
                let named = format!("{header},destination=\"{name}\"");
                assert_eq!(
                    check(&named, &content, &key),
                    Ok(HS.to_owned()),
                    "{field} {name}"
                );
            }
        }
    }

    #[test]
    fn refuses_what_does_not_verify() {
        let key = signing_key(1);
        let content = json!({"address": "a@example.org"});
        let header = header_for(&key, &content, "destination_is", "id.example");
        let bad = Err(XMatrixError::BadSignature { origin: HS.into() });
        // Another content, another signer, another destination than the one signed.
        assert_eq!(
            check(&header, &json!({"address": "b@example.org"}), &key),
            bad
        );
        assert_eq!(check(&header, &content, &signing_key(2)), bad);
        let elsewhere = header_for(&key, &content, "destination_is", "other.example");
        assert_eq!(check(&elsewhere, &content, &key), bad);
        // The header names one of our names, the signature covers the other.
        let named = format!("{header},destination=\"matrix.id.example\"");
        assert_eq!(check(&named, &content, &key), bad);
    }

    #[test]
    fn refuses_before_fetching_a_key() {
        let us = us();
        let content = json!({});
        let request = Signed {
            method: "POST",
            uri: "/",
            content: &content,
            us: &us,
            origin: HS,
        };
        let no_fetch = |_: &str, _: &str| -> Result<VerifyingKey, XMatrixError> {
            panic!("no key is fetched for a request refused anyway")
        };
        assert_eq!(
            verify_with("Bearer x", &request, no_fetch),
            Err(XMatrixError::Malformed)
        );
        assert_eq!(
            verify_with(
                "X-Matrix origin=evil.example,key=k,sig=s",
                &request,
                no_fetch
            ),
            Err(XMatrixError::WrongOrigin("evil.example".into()))
        );
        assert_eq!(
            verify_with(
                &format!("X-Matrix origin={HS},key=k,sig=s,destination=other.example"),
                &request,
                no_fetch
            ),
            Err(XMatrixError::WrongDestination("other.example".into()))
        );
        // A key that cannot be had is the error.
        let no_keys = XMatrixError::Keys {
            origin: HS.into(),
            error: "down".into(),
        };
        assert_eq!(
            verify_with(
                &format!("X-Matrix origin={HS},key=k,sig=s"),
                &request,
                |_, _| { Err(no_keys.clone()) }
            ),
            Err(no_keys.clone())
        );
    }

    /// A fetcher that must not be called.
    fn no_fetch(_: i64) -> Result<(VerifyingKey, i64), String> {
        panic!("the key was fetched")
    }

    fn keys_error(error: &str) -> Result<VerifyingKey, XMatrixError> {
        Err(XMatrixError::Keys {
            origin: HS.into(),
            error: error.into(),
        })
    }

    #[test]
    fn a_key_is_kept_until_its_valid_until_ts_then_fetched_again() {
        let cache = KeyCache::default();
        let (old, new) = (
            signing_key(1).verifying_key(),
            signing_key(2).verifying_key(),
        );
        let fetched = cached_or_fetched(&cache, HS, KEY_ID, NOW, |now| {
            assert_eq!(now, NOW);
            Ok((old, NOW + 1000))
        });
        assert_eq!(fetched, Ok(old));
        assert_eq!(
            cached_or_fetched(&cache, HS, KEY_ID, NOW + 999, no_fetch),
            Ok(old)
        );
        // Another key id of the same server is fetched.
        let other = cached_or_fetched(&cache, HS, "ed25519:b", NOW, |_| Ok((new, NOW + 1000)));
        assert_eq!(other, Ok(new));
        // At its valid_until_ts the key is no longer trusted: it is fetched again.
        let refetched = cached_or_fetched(&cache, HS, KEY_ID, NOW + 1000, |now| {
            assert_eq!(now, NOW + 1000);
            Ok((new, NOW + 5000))
        });
        assert_eq!(refetched, Ok(new));
        assert_eq!(
            cached_or_fetched(&cache, HS, KEY_ID, NOW + 4999, no_fetch),
            Ok(new)
        );
        assert_eq!(cache.fetching.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_origin_whose_keys_failed_is_not_asked_again_for_a_while() {
        let cache = KeyCache::default();
        let key = signing_key(1).verifying_key();
        assert_eq!(
            cached_or_fetched(&cache, HS, KEY_ID, NOW, |_| Err("HTTP 500".into())),
            keys_error("HTTP 500")
        );
        assert_eq!(cache.fetching.load(Ordering::SeqCst), 0);
        // Five minutes.
        assert_eq!(FAILED_FOR_MS, 300_000);
        let later = NOW + FAILED_FOR_MS - 1;
        assert_eq!(
            cached_or_fetched(&cache, HS, KEY_ID, later, no_fetch),
            keys_error("failed lately; not asked again yet")
        );
        // Other origins are asked meanwhile.
        let other = cached_or_fetched(&cache, "other.example", KEY_ID, later, |_| {
            Ok((key, NOW + FAILED_FOR_MS * 2))
        });
        assert_eq!(other, Ok(key));
        // Once the back-off is over, asked again.
        let again = cached_or_fetched(&cache, HS, KEY_ID, NOW + FAILED_FOR_MS, |_| {
            Ok((key, NOW + FAILED_FOR_MS * 2))
        });
        assert_eq!(again, Ok(key));
    }

    #[test]
    fn at_most_two_key_fetches_at_once() {
        let cache = KeyCache::default();
        let key = signing_key(1).verifying_key();
        // Fetching the first origin's key, a request for a second comes; fetching that one, a
        // request for a third: it is refused, not queued.
        let first = cached_or_fetched(&cache, "one.example", KEY_ID, NOW, |_| {
            let second = cached_or_fetched(&cache, "two.example", KEY_ID, NOW, |_| {
                assert_eq!(cache.fetching.load(Ordering::SeqCst), 2);
                let third = cached_or_fetched(&cache, "three.example", KEY_ID, NOW, no_fetch);
                assert_eq!(
                    third,
                    Err(XMatrixError::Keys {
                        origin: "three.example".into(),
                        error: "too many key fetches under way".into()
                    })
                );
                assert_eq!(cache.fetching.load(Ordering::SeqCst), 2);
                Ok((key, NOW + 1000))
            });
            assert_eq!(second, Ok(key));
            assert_eq!(cache.fetching.load(Ordering::SeqCst), 1);
            Ok((key, NOW + 1000))
        });
        assert_eq!(first, Ok(key));
        assert_eq!(cache.fetching.load(Ordering::SeqCst), 0);
        // The refused origin is not held to have failed: asked at the next request.
        let third = cached_or_fetched(&cache, "three.example", KEY_ID, NOW, |_| Ok((key, NOW + 1)));
        assert_eq!(third, Ok(key));
    }

    #[test]
    fn a_full_key_cache_drops_expired_keys_then_all() {
        let cache = KeyCache::default();
        let key = signing_key(1).verifying_key();
        {
            let mut keys = crate::lock(&cache.keys);
            keys.insert(("expired".into(), KEY_ID.into()), (key, NOW));
            for i in 0..KEYS_MAX - 1 {
                keys.insert((format!("s{i}"), KEY_ID.into()), (key, NOW + 1));
            }
        }
        assert_eq!(
            cached_or_fetched(&cache, HS, KEY_ID, NOW, |_| Ok((key, NOW + 1))),
            Ok(key)
        );
        {
            let keys = crate::lock(&cache.keys);
            assert_eq!(keys.len(), KEYS_MAX, "the expired one made room");
            assert!(!keys.contains_key(&("expired".to_owned(), KEY_ID.to_owned())));
        }
        // Full of valid keys: all go.
        let fetched = cached_or_fetched(&cache, "new.example", KEY_ID, NOW, |_| Ok((key, NOW + 1)));
        assert_eq!(fetched, Ok(key));
        assert_eq!(crate::lock(&cache.keys).len(), 1);
        // Below the cap nothing is dropped, not even expired keys.
        crate::lock(&cache.keys).insert(("expired".into(), KEY_ID.into()), (key, NOW));
        let fetched = cached_or_fetched(&cache, HS, KEY_ID, NOW, |_| Ok((key, NOW + 1)));
        assert_eq!(fetched, Ok(key));
        assert_eq!(crate::lock(&cache.keys).len(), 3);
    }

    #[test]
    fn a_full_failure_list_drops_the_failures_that_are_over() {
        let cache = KeyCache::default();
        {
            let mut failed = crate::lock(&cache.failed);
            failed.insert("over".into(), NOW);
            for i in 0..KEYS_MAX - 1 {
                failed.insert(format!("s{i}"), NOW + 1);
            }
        }
        let fetched = cached_or_fetched(&cache, HS, KEY_ID, NOW, |_| Err("down".into()));
        assert_eq!(fetched, keys_error("down"));
        let failed = crate::lock(&cache.failed);
        assert_eq!(failed.len(), KEYS_MAX);
        assert!(!failed.contains_key("over"));
        assert_eq!(failed.get(HS), Some(&(NOW + FAILED_FOR_MS)));
    }

    /// `server`'s key answer, signed by `key` as `KEY_ID`.
    fn answer(server: &str, key: &SigningKey, valid_until_ts: Option<i64>) -> Value {
        let mut keys = json!({
            "server_name": server,
            "verify_keys": { KEY_ID: { "key": b64::encode(key.verifying_key().as_bytes()) } },
            "old_verify_keys": {},
        });
        if let Some(ts) = valid_until_ts {
            keys["valid_until_ts"] = json!(ts);
        }
        sign_json(&mut keys, server, KEY_ID, key).unwrap();
        keys
    }

    #[test]
    fn a_key_answer_is_checked() {
        let key = signing_key(1);
        let public = key.verifying_key();
        let good = answer(HS, &key, Some(NOW + 1));
        assert_eq!(
            key_from_answer(&good, HS, KEY_ID, NOW),
            Ok((public, NOW + 1))
        );
        // Kept a week at most, whatever it says.
        assert_eq!(KEEP_AT_MOST_MS, 604_800_000);
        let long = answer(HS, &key, Some(NOW + 10 * KEEP_AT_MOST_MS));
        assert_eq!(
            key_from_answer(&long, HS, KEY_ID, NOW),
            Ok((public, NOW + KEEP_AT_MOST_MS))
        );
        let fails = |keys: &Value, key_id: &str| key_from_answer(keys, HS, key_id, NOW).err();
        let expired = Some("its key answer has expired (valid_until_ts)".to_owned());
        assert_eq!(fails(&answer(HS, &key, Some(NOW)), KEY_ID), expired);
        assert_eq!(fails(&answer(HS, &key, None), KEY_ID), expired);
        assert_eq!(
            fails(&answer("other.example", &key, Some(NOW + 1)), KEY_ID),
            Some("the answer is for another server".to_owned())
        );
        assert_eq!(
            fails(&good, "ed25519:b"),
            Some("no key ed25519:b".to_owned())
        );
        // Signed by another key than the one it gives.
        let mut forged = answer(HS, &signing_key(2), Some(NOW + 1));
        forged["verify_keys"][KEY_ID]["key"] = json!(b64::encode(public.as_bytes()));
        assert_eq!(
            fails(&forged, KEY_ID),
            Some("its key answer is not signed by the key".to_owned())
        );
        let mut short = good.clone();
        short["verify_keys"][KEY_ID]["key"] = json!(b64::encode(&[1; 31]));
        assert_eq!(fails(&short, KEY_ID), Some(format!("no key {KEY_ID}")));
    }

    #[test]
    fn verify_uses_a_cached_key_without_asking() {
        // No key is fetched here; were one fetched, the test resolver is the local dnsmasq.
        let text = "matrix:\n  domain: id.example\nfederation:\n  resolver: '127.0.0.1:5354'\n";
        let config = crate::config::load_str(text, "test").unwrap().config;
        let client = Client::new(&config.federation).unwrap();
        let cache = KeyCache::default();
        let key = signing_key(1);
        let far = crate::now_ms() + 3_600_000;
        crate::lock(&cache.keys).insert((HS.into(), KEY_ID.into()), (key.verifying_key(), far));
        let content = json!({"address": "a@example.org"});
        let us = us();
        let request = Signed {
            method: "POST",
            uri: "/_matrix/identity/v2/3pid/unbind",
            content: &content,
            us: &us,
            origin: HS,
        };
        let header = header_for(&key, &content, "destination_is", "id.example");
        assert_eq!(
            verify(&client, &cache, &header, &request),
            Ok(HS.to_owned())
        );
        let forged = header_for(&signing_key(2), &content, "destination_is", "id.example");
        assert_eq!(
            verify(&client, &cache, &forged, &request),
            Err(XMatrixError::BadSignature { origin: HS.into() })
        );
        assert_eq!(
            verify(&client, &cache, "X-Matrix", &request),
            Err(XMatrixError::Malformed)
        );
    }
}
