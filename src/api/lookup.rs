//! Lookups: 3PID → Matrix ID. v1 (unauthenticated, signed single answers, bulk) and v2
//! (authenticated, hashed). All answered by the lookup chain; a store that failed makes the
//! lookup 503 M_UNKNOWN naming it, never a false "not found".
//!
//! v1 and v2 `none` lookups may go on to other identity servers (the chain decides by the
//! requester); one that another server forwarded to us (`FORWARDED_HEADER`) is answered from
//! our stores only. v2 `sha256` lookups are answered from local data only: the hashes are
//! under our pepper, so neither the address nor its domain can be recovered to ask elsewhere;
//! what local data holds includes the hashes trusted peers pushed (MSC4004), answered as
//! `third_party_mappings` naming the peer.

use super::auth;
use crate::app::App;
use crate::federation::identity_client::FORWARDED_HEADER;
use crate::http::{ApiError, Reply, Request};
use crate::lookup::peers::{Push, PushError};
use crate::lookup::{Asker, LookupError};
use crate::state::PushPart;
use crate::stores::Signed;
use crate::threepid::Medium;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

impl From<PushError> for ApiError {
    fn from(e: PushError) -> ApiError {
        log::warn!("a peer's push refused: {e}");
        match e {
            PushError::NoToken => ApiError::Unauthorized("Missing peer token".into()),
            PushError::NotAPeer => ApiError::Forbidden("Not a configured peer".into()),
            PushError::OtherServer { .. } => {
                ApiError::Forbidden("A peer pushes the hashes of its own addresses only".into())
            }
            PushError::Pepper { ours } => ApiError::InvalidPepper { pepper: ours },
            PushError::Invalid(why) => ApiError::InvalidParam(why),
            PushError::State(e) => e.into(),
        }
    }
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> ApiError {
        log::warn!("lookup failed: {e}");
        ApiError::Unavailable(e.what())
    }
}

/// Who a lookup is for: a lookup another identity server forwarded stays local.
fn asker(req: &Request) -> Asker {
    match req.header(FORWARDED_HEADER) {
        Some(_) => Asker::Forwarded,
        None => Asker::Client(req.client),
    }
}

/// # `GET /_matrix/identity/api/v1/lookup?medium=…&address=…`
///
/// The signed association of one 3PID, or `{}` when no store knows it.
/// - A bind made here: the association as it was bound (normalised address, the `ts`,
///   `not_before` and `not_after` signed at bind time), as sydent answers.
/// - Another identity server's answer (its signature verified): re-signed by `server.name`
///   keeping its `mxid`, `ts`, `not_before` and `not_after`, as mxisd did.
/// - A store's answer: signed by `server.name` with the current key, valid from a minute ago
///   (clock skew) to five minutes from now, as mxisd answered.
pub fn lookup_v1(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let medium = req.require_query("medium")?;
    let address = req.require_query("address")?;
    // A medium that is not a 3PID of the spec is bound to nobody.
    let Some((normalised, found)) = Medium::parse(medium)
        .map(|m| app.lookup.find_signed(asker(req), m, address))
        .transpose()?
        .flatten()
    else {
        return Ok(Reply::json(json!({})));
    };
    let (address, signed) = match found.signed {
        Some(bound) => (normalised.as_str(), bound),
        None => {
            let ts = crate::now_ms();
            let fresh = Signed {
                ts,
                not_before: ts - 60_000,
                not_after: ts + 300_000,
            };
            (address, fresh)
        }
    };
    let mut association = json!({
        "medium": medium, "address": address, "mxid": found.mxid,
        "ts": signed.ts, "not_before": signed.not_before, "not_after": signed.not_after,
    });
    app.keys
        .sign(&app.config.server.name, &mut association)
        .map_err(|e| {
            log::error!("signing a lookup answer: {e}");
            ApiError::Internal
        })?;
    Ok(Reply::json(association))
}

#[derive(Deserialize)]
struct BulkLookup {
    threepids: Vec<(String, String)>,
}

/// # `POST /_matrix/identity/api/v1/bulk_lookup`
///
/// `{"threepids":[[medium,address],…]}` → `{"threepids":[[medium,address,mxid],…]}`, only the
/// 3PIDs found, unsigned; at most `lookup.maxAddresses` (400 M_TOO_LARGE beyond).
pub fn bulk_lookup_v1(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let body: BulkLookup = req.json()?;
    let max = app.config.lookup.max_addresses;
    if body.threepids.len() > max {
        return Err(ApiError::TooManyAddresses(max));
    }
    let asked: Vec<(Medium, String)> = body
        .threepids
        .into_iter()
        .filter_map(|(medium, address)| Some((Medium::parse(&medium)?, address)))
        .collect();
    let found: Vec<[String; 3]> = app
        .lookup
        .find_many(asker(req), &asked)?
        .into_iter()
        .map(|b| [b.medium.as_str().to_owned(), b.address, b.mxid])
        .collect();
    Ok(Reply::json(json!({ "threepids": found })))
}

/// # `GET /_matrix/identity/v2/hash_details`
///
/// The pepper and the algorithms v2 lookups take, and during a rotation's grace period the
/// previous pepper (`alt_lookup_peppers`, MSC4004). Authenticated, terms accepted; or a
/// configured peer's token (`lookup.peers`), which needs our pepper to push.
pub fn hash_details(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let peer = auth::token(req).is_some_and(|t| app.peers.is_peer_token(&t));
    if !peer {
        auth::authorized(app, req)?;
    }
    let mut details = json!({
        "lookup_pepper": app.hash_index.pepper(),
        "algorithms": app.config.hashing.algorithms,
    });
    if let Some(previous) = app.hash_index.previous_pepper() {
        details["alt_lookup_peppers"] = json!([previous]);
    }
    Ok(Reply::json(details))
}

#[derive(Deserialize)]
struct PushBody {
    algorithm: String,
    pepper: String,
    mappings: BTreeMap<String, Vec<String>>,
    /// mxisd's extension: which part of a push too large for one request this is.
    #[serde(rename = "mxisd.push_part", default)]
    part: Option<PartBody>,
}

#[derive(Deserialize)]
struct PartBody {
    push: String,
    number: u32,
    last: bool,
}

/// # `POST /_matrix/identity/v2/lookups` (MSC4004)
///
/// `{"algorithm":"sha256","pepper","mappings":{<peer name>:[hashes]}}` from a configured
/// peer, by its token: the hashes (under our current or previous pepper) of the addresses
/// it holds, replacing its last push under that pepper → `{}`. No token: 401; a token that
/// is no peer's, or hashes for another server: 403 M_UNAUTHORIZED; not our pepper: 400
/// M_INVALID_PEPPER.
///
/// A push too large for one request comes in parts, each with
/// `"mxisd.push_part": {"push": <id>, "number": n, "last": bool}` (mxisd's extension):
/// the parts wait until the last, whose `{}` means the whole push replaced the last one. A
/// part that is not the next of its push: 400 M_INVALID_PARAM (the peer starts over).
pub fn push_v2(app: &App, req: &Request) -> Result<Reply, ApiError> {
    let token = auth::token(req);
    if token.is_none() {
        return Err(PushError::NoToken.into());
    }
    let body: PushBody = req.json()?;
    let push = Push {
        algorithm: body.algorithm,
        pepper: body.pepper,
        mappings: body.mappings,
        part: body.part.map(|p| PushPart {
            push: p.push,
            number: i64::from(p.number),
            last: p.last,
        }),
    };
    app.peers
        .accept(&app.state, &app.hash_index, token.as_deref(), push)?;
    Ok(Reply::json(json!({})))
}

#[derive(Deserialize)]
struct HashedLookup {
    algorithm: String,
    pepper: String,
    addresses: Vec<String>,
}

/// # `POST /_matrix/identity/v2/lookup`
///
/// `{"algorithm","pepper","addresses"}` → `{"mappings":{address:mxid}}` for those found.
/// - `sha256`: addresses are lookup hashes, answered from the hash index.
/// - `none`: addresses are `"<address> <medium>"`, answered by the stores.
/// - `sha256` hashes we do not map but a configured peer pushed (`lookup.peers`):
///   `third_party_mappings: {<peer name>: [hash]}`, present whenever peers are configured;
///   our own mappings always win.
/// - Another pepper than ours (or than the previous one, during its grace period): 400
///   M_INVALID_PEPPER with ours; an algorithm we do not offer: 400 M_INVALID_PARAM; more
///   than `lookup.maxAddresses`: 400 M_TOO_LARGE.
pub fn lookup_v2(app: &App, req: &Request) -> Result<Reply, ApiError> {
    auth::authorized(app, req)?;
    let body: HashedLookup = req.json()?;
    if !app.config.hashing.algorithms.contains(&body.algorithm) {
        return Err(ApiError::InvalidParam(format!(
            "Unsupported algorithm: {}",
            body.algorithm
        )));
    }
    let Some(under) = app.hash_index.under(&body.pepper) else {
        return Err(ApiError::InvalidPepper {
            pepper: app.hash_index.pepper().to_owned(),
        });
    };
    let max = app.config.lookup.max_addresses;
    if body.addresses.len() > max {
        return Err(ApiError::TooManyAddresses(max));
    }
    let mut third_party = None;
    let mappings = if body.algorithm == "sha256" {
        let found = app.hash_index.lookup_under(under, &body.addresses)?;
        if !app.peers.is_empty() {
            third_party = Some(peers_of(app, &body.pepper, &body.addresses, &found)?);
        }
        found
    } else {
        // "<address> <medium>": the medium is the last word.
        let asked: Vec<(Medium, String)> = body
            .addresses
            .iter()
            .filter_map(|a| {
                let (address, medium) = a.rsplit_once(' ')?;
                Some((Medium::parse(medium)?, address.to_owned()))
            })
            .collect();
        app.lookup
            .find_many(asker(req), &asked)?
            .into_iter()
            .map(|b| (format!("{} {}", b.address, b.medium), b.mxid))
            .collect()
    };
    Ok(Reply::json_of(&Mappings(mappings, third_party)))
}

/// Of the hashes `asked`, those we do not map (`found`) but a peer pushed, by peer.
fn peers_of(
    app: &App,
    pepper: &str,
    asked: &[String],
    found: &[(String, String)],
) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let ours: std::collections::HashSet<&str> = found.iter().map(|(h, _)| h.as_str()).collect();
    let missed: Vec<&str> = asked
        .iter()
        .map(String::as_str)
        .filter(|h| !ours.contains(h))
        .collect();
    Ok(app.peers.third_party(&app.state, pepper, &missed)?)
}

/// `{"mappings":{address: mxid, …}}`, written straight from the pairs found, and the
/// `third_party_mappings` of MSC4004 when peers are configured.
struct Mappings(Vec<(String, String)>, Option<BTreeMap<String, Vec<String>>>);

impl Serialize for Mappings {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Pairs<'a>(&'a [(String, String)]);
        impl Serialize for Pairs<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (address, mxid) in self.0 {
                    map.serialize_entry(address, mxid)?;
                }
                map.end()
            }
        }
        let mut outer = serializer.serialize_map(Some(1 + usize::from(self.1.is_some())))?;
        outer.serialize_entry("mappings", &Pairs(&self.0))?;
        if let Some(third_party) = &self.1 {
            outer.serialize_entry("third_party_mappings", third_party)?;
        }
        outer.end()
    }
}
