//! Asking another identity server who an address belongs to.
//!
//! - v1 (`/_matrix/identity/api/v1/lookup` and `bulk_lookup`): a single answer must carry a
//!   signature that verifies with one of the keys the same server publishes
//!   (`/_matrix/identity/api/v1/pubkey/<key id>`, kept once verified); bulk answers are
//!   unsigned, as the spec has them.
//! - v2, where the operator gave us an access token for that server: `hash_details`, then
//!   `sha256` hashes under the remote's pepper, so the address never leaves in clear. A
//!   server that does not offer `sha256` is not asked.
//!
//! Every call carries [`FORWARDED_HEADER`] (a server of ours answers it from its own stores
//! only) and fits in the deadline it is given. An answer that is not what the spec says
//! (4xx, 5xx, not JSON, a bad signature) is an error the caller logs and skips.

use super::client::Client;
use crate::crypto::{b64, hash, sign};
use crate::urlencoded;
use ed25519_dalek::VerifyingKey;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

/// Marks a lookup one identity server forwards to another: answered from local stores only,
/// so that two servers forwarding to each other do not ask each other forever.
pub const FORWARDED_HEADER: &str = "X-Mxisd-Lookup-Forwarded";

/// Verified keys kept at most; beyond, all go.
const KEYS_MAX: usize = 1_000;

/// A remote's answer for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFound {
    pub mxid: String,
    pub vouched: Vouched,
}

/// What stands behind a remote's answer, which decides whether our key may sign it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vouched {
    /// A v1 single answer whose signature verified with a key its server publishes:
    /// `(ts, not_before, not_after)` in ms as it signed them, kept when we re-sign it.
    Signed(i64, i64, i64),
    /// A v2 answer (v2 answers are not signed) of a server the operator gave us a token
    /// for: the operator's choice of server vouches for it.
    Configured,
    /// A v1 bulk answer: unsigned. Good for bulk answers, which are unsigned too; never
    /// signed by us.
    Unsigned,
}

/// How far a remote's clock may be ahead of ours for a `ts` or `not_before` it signed.
const CLOCK_SKEW_MS: i64 = 300_000;

/// Whether a signed validity can be served now: sane and current.
fn current(ts: i64, not_before: i64, not_after: i64, now_ms: i64) -> bool {
    not_before <= not_after
        && not_after > now_ms
        && not_before <= now_ms.saturating_add(CLOCK_SKEW_MS)
        && ts <= now_ms.saturating_add(CLOCK_SKEW_MS)
}

/// A remote's Matrix ID, if it is one.
fn user_id(mxid: &str) -> Option<String> {
    crate::user_id::UserId::parse(mxid).map(|u| u.into_string())
}

/// The client of other identity servers: the guarded client, our tokens, keys verified.
pub struct IdentityClient {
    client: Client,
    /// Base URL → our access token there (`lookup.recursive.accessTokens`).
    tokens: BTreeMap<String, String>,
    /// (base URL, key id) → the key, fetched from that base URL.
    keys: Mutex<HashMap<(String, String), VerifyingKey>>,
}

impl IdentityClient {
    pub fn new(client: Client, tokens: BTreeMap<String, String>) -> IdentityClient {
        IdentityClient {
            client,
            tokens,
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether `base` is asked over v2 (a token of ours is configured for it).
    pub fn uses_v2(&self, base: &str) -> bool {
        self.tokens.contains_key(base)
    }

    /// Who `address` belongs to, according to the server at `base`.
    pub fn lookup(
        &self,
        base: &str,
        medium: &str,
        address: &str,
        deadline: Instant,
    ) -> Result<Option<RemoteFound>, String> {
        if self.uses_v2(base) {
            let asked = [(medium.to_owned(), address.to_owned())];
            let found = self.lookup_v2(base, &asked, deadline)?;
            return Ok(found.into_iter().next().map(|(_, _, mxid)| RemoteFound {
                mxid,
                vouched: Vouched::Configured,
            }));
        }
        let url = format!(
            "{base}/_matrix/identity/api/v1/lookup?medium={}&address={}",
            urlencoded::encode(medium),
            urlencoded::encode(address)
        );
        let answer = self.json(&url, None, None, deadline)?;
        if answer.get("mxid").is_none() && answer.as_object().is_some_and(|o| o.is_empty()) {
            return Ok(None);
        }
        let field = |name: &str| answer.get(name).and_then(Value::as_str);
        if field("medium") != Some(medium)
            || !field("address").is_some_and(|a| a.eq_ignore_ascii_case(address))
        {
            return Err("answered for another address".into());
        }
        let mxid = field("mxid")
            .and_then(user_id)
            .ok_or("answer without a Matrix ID")?;
        let number = |name: &str| answer.get(name).and_then(Value::as_i64);
        let (Some(ts), Some(not_before), Some(not_after)) =
            (number("ts"), number("not_before"), number("not_after"))
        else {
            return Err("answer without ts, not_before or not_after".into());
        };
        if !current(ts, not_before, not_after, crate::now_ms()) {
            return Err(format!(
                "signed validity not current (ts {ts}, not_before {not_before}, not_after {not_after})"
            ));
        }
        self.verify(base, &answer, deadline)?;
        Ok(Some(RemoteFound {
            mxid,
            vouched: Vouched::Signed(ts, not_before, not_after),
        }))
    }

    /// What stands behind the bulk answers of the server at `base`.
    pub fn bulk_vouched(&self, base: &str) -> Vouched {
        if self.uses_v2(base) {
            Vouched::Configured
        } else {
            Vouched::Unsigned
        }
    }

    /// The bindings among `asked` (medium, address) the server at `base` knows, as
    /// (medium, address as asked, mxid): one request (v1 bulk, or v2 sha256).
    pub fn bulk_lookup(
        &self,
        base: &str,
        asked: &[(String, String)],
        deadline: Instant,
    ) -> Result<Vec<(String, String, String)>, String> {
        if asked.is_empty() {
            return Ok(Vec::new());
        }
        if self.uses_v2(base) {
            return self.lookup_v2(base, asked, deadline);
        }
        let url = format!("{base}/_matrix/identity/api/v1/bulk_lookup");
        let body = json!({ "threepids": asked });
        let answer = self.json(&url, Some(&body), None, deadline)?;
        let rows = answer
            .get("threepids")
            .and_then(Value::as_array)
            .ok_or("no threepids list")?;
        let mut found = Vec::new();
        for row in rows {
            let cell = |i: usize| row.get(i).and_then(Value::as_str);
            let (Some(medium), Some(address), Some(mxid)) = (cell(0), cell(1), cell(2)) else {
                return Err("a threepids row is not [medium, address, mxid]".into());
            };
            // Only what we asked: a remote does not get to add bindings of its choosing.
            let Some(mxid) = user_id(mxid) else {
                continue; // not a Matrix ID: nobody
            };
            if let Some((m, a)) = asked
                .iter()
                .find(|(m, a)| m == medium && a.eq_ignore_ascii_case(address))
            {
                found.push((m.clone(), a.clone(), mxid));
            }
        }
        Ok(found)
    }

    /// v2: the remote's pepper, then one sha256 lookup of every address asked.
    fn lookup_v2(
        &self,
        base: &str,
        asked: &[(String, String)],
        deadline: Instant,
    ) -> Result<Vec<(String, String, String)>, String> {
        let token = self.tokens.get(base).map(String::as_str);
        let details = self.json(
            &format!("{base}/_matrix/identity/v2/hash_details"),
            None,
            token,
            deadline,
        )?;
        let pepper = details
            .get("lookup_pepper")
            .and_then(Value::as_str)
            .ok_or("hash_details without lookup_pepper")?;
        let offers_sha256 = details
            .get("algorithms")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("sha256")));
        if !offers_sha256 {
            return Err("does not offer sha256: addresses are not sent in clear".into());
        }
        let hashes: Vec<String> = asked
            .iter()
            .map(|(medium, address)| hash::lookup_hash(address, medium, pepper))
            .collect();
        let body = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": hashes });
        let answer = self.json(
            &format!("{base}/_matrix/identity/v2/lookup"),
            Some(&body),
            token,
            deadline,
        )?;
        let mappings = answer
            .get("mappings")
            .and_then(Value::as_object)
            .ok_or("no mappings")?;
        Ok(asked
            .iter()
            .zip(&hashes)
            .filter_map(|((medium, address), h)| {
                let mxid = user_id(mappings.get(h)?.as_str()?)?;
                Some((medium.clone(), address.clone(), mxid))
            })
            .collect())
    }

    /// Accepts `answer` if one of its signatures verifies with the key of that id published
    /// at `base`.
    fn verify(&self, base: &str, answer: &Value, deadline: Instant) -> Result<(), String> {
        let signatures = answer
            .get("signatures")
            .and_then(Value::as_object)
            .ok_or("unsigned answer")?;
        for (server, by_key) in signatures {
            let Some(by_key) = by_key.as_object() else {
                continue;
            };
            for key_id in by_key.keys().filter(|k| k.starts_with("ed25519:")) {
                let key = match self.key(base, key_id, deadline) {
                    Ok(key) => key,
                    Err(why) => {
                        log::info!("identity server {base}: key {key_id}: {why}");
                        continue;
                    }
                };
                if sign::verify_json(answer, server, key_id, &key).is_ok() {
                    return Ok(());
                }
            }
        }
        Err("no signature verifies with the keys it publishes".into())
    }

    fn key(&self, base: &str, key_id: &str, deadline: Instant) -> Result<VerifyingKey, String> {
        let id = (base.to_owned(), key_id.to_owned());
        if let Some(key) = crate::lock(&self.keys).get(&id) {
            return Ok(*key);
        }
        let url = format!(
            "{base}/_matrix/identity/api/v1/pubkey/{}",
            urlencoded::encode(key_id)
        );
        let answer = self.json(&url, None, None, deadline)?;
        let key = answer
            .get("public_key")
            .and_then(Value::as_str)
            .and_then(b64::decode)
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
            .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
            .ok_or("not an ed25519 public key")?;
        let mut keys = crate::lock(&self.keys);
        if keys.len() >= KEYS_MAX {
            keys.clear();
        }
        keys.insert(id, key);
        Ok(key)
    }

    /// One call within `deadline`, marked forwarded; a 200 JSON object or the reason not.
    fn json(
        &self,
        url: &str,
        body: Option<&Value>,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Value, String> {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![(FORWARDED_HEADER, "1")];
        if let Some(b) = &bearer {
            headers.push(("Authorization", b.as_str()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = self
            .client
            .call_within(url, &headers, body, left)
            .map_err(|e| e.to_string())?;
        if answer.status != 200 {
            return Err(answer.refusal());
        }
        answer.object().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sane_current_validity_is_signed_again() {
        let now = 1_700_000_000_000;
        assert!(current(now, now - 1, now + 1, now));
        assert!(
            current(now + 1000, now + 1000, now + 5000, now),
            "clock skew"
        );
        assert!(!current(now, now, now, now), "expired at not_after");
        assert!(
            !current(now, now + 10, now + 5, now),
            "not_before after not_after"
        );
        let later = now + CLOCK_SKEW_MS + 1;
        assert!(!current(now, later, later + 1, now), "not valid yet");
        assert!(!current(later, now, now + 10, now), "made in the future");
    }

    #[test]
    fn remote_matrix_ids_must_be_matrix_ids() {
        assert_eq!(user_id("@a:example.net").as_deref(), Some("@a:example.net"));
        assert_eq!(user_id("a:example.net"), None);
        assert_eq!(user_id("@a"), None);
        assert_eq!(user_id(""), None);
    }
}
