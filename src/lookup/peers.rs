//! MSC4004 between the trusted identity servers of a group (`lookup.peers`): each pushes
//! the others the hashes of the addresses it holds, computed with the receiver's pepper,
//! and a hashed lookup answers, for a hash we do not map but a peer pushed,
//! `third_party_mappings: {"<peer name>": [hash]}`; the client asks that peer with its own
//! pepper.
//!
//! - Receiving (`accept`): a push is authenticated by the shared token of one configured
//!   peer, never by its address; it pushes its own hashes only, under our current pepper or
//!   the previous one during its grace period. Its hashes replace its last push under that
//!   pepper in the state (`state/peers.rs`), read there by every instance on each lookup.
//! - Pushing (`start`): a job per instance looks, every tick, whether a peer is due a push
//!   (never pushed by this instance, the hash index rebuilt since, its pepper changed, or
//!   its last push a refresh interval old) and queues one (`Delivery::PeerPush`, one per
//!   peer at a time) that whichever instance claims makes: the peer's `hash_details`, our
//!   listing (every store that can list, and the binds made here) hashed with its pepper,
//!   one `POST /_matrix/identity/v2/lookups`. Failures are retried with a capped backoff.
//!   Every call goes through the client of configured destinations, within the peer's
//!   `timeout`.

use super::hash_index::HashIndex;
use super::Chain;
use crate::config::{Config, PeerConfig};
use crate::crypto::{b64, constant_time_eq, hash::lookup_digest};
use crate::federation::{CallError, ConfiguredClient};
use crate::jobs::{self, Job, Waker};
use crate::state::{
    Claimed, Delivery, DeliveryKind, PartAdded, PeerPushItem, PushPart, State, StateError,
    HOLD_MARGIN,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The configured peers, their clients, and what this instance last pushed to each.
pub struct Peers {
    peers: Vec<Peer>,
    /// What our pushes name us: the host (and port) of `server.publicUrl`.
    our_name: String,
    /// How often a peer gets a push even when nothing changed (`hashing.refreshInterval`):
    /// its copy must not expire.
    keepalive: Duration,
    /// Peer name → what this instance pushed it last.
    pushed: Mutex<HashMap<String, Pushed>>,
    stopping: Arc<AtomicBool>,
    waker: Waker,
}

struct Peer {
    cfg: PeerConfig,
    client: ConfiguredClient,
}

/// A push made: under which of the peer's peppers, after which index build, when.
#[derive(Clone)]
struct Pushed {
    pepper: String,
    generation: u64,
    at_ms: i64,
}

/// What a push body says.
pub struct Push {
    pub algorithm: String,
    pub pepper: String,
    pub mappings: BTreeMap<String, Vec<String>>,
    /// Which part of a push in parts this is; `None`: the whole push.
    pub part: Option<PushPart>,
}

/// Why a push is refused.
#[derive(Debug)]
pub enum PushError {
    /// No token: who is this?
    NoToken,
    /// A token that is no configured peer's.
    NotAPeer,
    /// A peer pushing for another server than itself.
    OtherServer {
        peer: String,
        named: String,
    },
    /// Not one of our peppers now: ours is given.
    Pepper {
        ours: String,
    },
    /// Not sha256, or a hash that is not one.
    Invalid(String),
    State(StateError),
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::NoToken => f.write_str("a push needs a peer's token"),
            PushError::NotAPeer => f.write_str("the token is no configured peer's"),
            PushError::OtherServer { peer, named } => {
                write!(
                    f,
                    "peer {peer} pushed hashes for {named}: a peer pushes its own"
                )
            }
            PushError::Pepper { .. } => f.write_str("not our current or previous pepper"),
            PushError::Invalid(why) => f.write_str(why),
            PushError::State(e) => e.fmt(f),
        }
    }
}

impl From<StateError> for PushError {
    fn from(e: StateError) -> Self {
        PushError::State(e)
    }
}

impl Peers {
    /// The peers of `config` (`lookup.peers`), each with a client of its `timeout`.
    pub fn new(config: &Config) -> Result<Peers, String> {
        let peers = config
            .lookup
            .peers
            .iter()
            .map(|cfg| {
                Ok(Peer {
                    client: ConfiguredClient::new(&config.federation, cfg.timeout)?,
                    cfg: cfg.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Peers {
            peers,
            our_name: authority(&config.server.public_url),
            keepalive: config.hashing.refresh_interval,
            pushed: Mutex::new(HashMap::new()),
            stopping: Arc::new(AtomicBool::new(false)),
            waker: Waker::new(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The peer whose token `token` is (compared in constant time).
    fn by_token(&self, token: &str) -> Option<&PeerConfig> {
        self.peers
            .iter()
            .map(|p| &p.cfg)
            .find(|p| constant_time_eq(p.token.as_bytes(), token.as_bytes()))
    }

    /// Whether `token` is a configured peer's (its calls to `hash_details`).
    pub fn is_peer_token(&self, token: &str) -> bool {
        self.by_token(token).is_some()
    }

    /// A push (`POST /_matrix/identity/v2/lookups`) carrying `token`: stored if it is a
    /// configured peer's, for itself, under one of our peppers; the peer's name.
    pub fn accept(
        &self,
        state: &State,
        index: &HashIndex,
        token: Option<&str>,
        push: Push,
    ) -> Result<String, PushError> {
        let peer = self
            .by_token(token.ok_or(PushError::NoToken)?)
            .ok_or(PushError::NotAPeer)?;
        if push.algorithm != "sha256" {
            return Err(PushError::Invalid(format!(
                "algorithm {} is not sha256",
                push.algorithm
            )));
        }
        if index.under(&push.pepper).is_none() {
            return Err(PushError::Pepper {
                ours: index.pepper().to_owned(),
            });
        }
        let mut hashes = Vec::new();
        for (named, list) in push.mappings {
            if named != peer.name {
                return Err(PushError::OtherServer {
                    peer: peer.name.clone(),
                    named,
                });
            }
            hashes = list;
        }
        if let Some(bad) = hashes.iter().find(|h| !is_hash(h)) {
            let start: String = bad.chars().take(60).collect();
            return Err(PushError::Invalid(format!(
                "'{start}' is not a sha256 lookup hash"
            )));
        }
        let mut accepted = vec![index.pepper()];
        accepted.extend(index.previous_pepper());
        let which = if push.pepper == index.pepper() {
            "current"
        } else {
            "previous"
        };
        let Some(part) = push.part else {
            state.replace_peer_hashes(
                &peer.name,
                &push.pepper,
                &accepted,
                &hashes,
                crate::now_ms(),
            )?;
            log::info!(
                "peer {}: {} hashes pushed under our {which} pepper",
                peer.name,
                hashes.len()
            );
            return Ok(peer.name.clone());
        };
        if !is_push_id(&part.push) {
            return Err(PushError::Invalid(
                "a push id is 1 to 64 letters, digits, '-' or '_'".into(),
            ));
        }
        let added = state.add_peer_push_part(
            &peer.name,
            &push.pepper,
            &accepted,
            &part,
            &hashes,
            crate::now_ms(),
        )?;
        match added {
            PartAdded::Waiting => log::debug!(
                "peer {}: part {} of push {} kept ({} hashes)",
                peer.name,
                part.number,
                part.push,
                hashes.len()
            ),
            PartAdded::Complete { hashes } => log::info!(
                "peer {}: {hashes} hashes pushed in {} parts under our {which} pepper",
                peer.name,
                part.number + 1
            ),
            PartAdded::OutOfOrder { expected } => {
                let expected = expected.map_or("its part 0".into(), |n| format!("part {n}"));
                return Err(PushError::Invalid(format!(
                    "part {} of push {} is not the next one: {expected} is; start the push over",
                    part.number, part.push
                )));
            }
        }
        Ok(peer.name.clone())
    }

    /// Of `missed` (hashes under `pepper`, which we do not map), those a configured peer
    /// pushed and still serves, by peer name.
    pub fn third_party(
        &self,
        state: &State,
        pepper: &str,
        missed: &[&str],
    ) -> Result<BTreeMap<String, Vec<String>>, StateError> {
        let mut by_peer: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if self.peers.is_empty() || missed.is_empty() {
            return Ok(by_peer);
        }
        let now = crate::now_ms();
        let serving: HashSet<&str> = state
            .peer_pushes()?
            .into_iter()
            .filter(|p| p.pepper == pepper)
            .filter_map(|p| {
                let peer = self.peers.iter().find(|c| c.cfg.name == p.peer)?;
                let expires = p.pushed_ts.saturating_add(millis(peer.cfg.expire_after));
                (expires > now).then_some(peer.cfg.name.as_str())
            })
            .collect();
        for (peer, hash) in state.peer_hashes_of(pepper, missed, &serving)? {
            by_peer.entry(peer).or_default().push(hash);
        }
        Ok(by_peer)
    }

    /// Forgets pushes of peers no longer configured, or whose last push expired.
    fn sweep(&self, state: &State) {
        let now = crate::now_ms();
        match state.forget_peer_push_parts_before(now - millis(ABANDONED_PARTS)) {
            Ok(0) => {}
            Ok(n) => log::info!("peer hashes: {n} pushes in parts never finished, forgotten"),
            Err(e) => log::warn!("peer hashes: unfinished pushes in parts stay: {e}"),
        }
        let pushes = match state.peer_pushes() {
            Ok(p) => p,
            Err(e) => {
                log::warn!("peer hashes: the pushes could not be read: {e}");
                return;
            }
        };
        for p in pushes {
            let live = self.peers.iter().any(|c| {
                c.cfg.name == p.peer && p.pushed_ts.saturating_add(millis(c.cfg.expire_after)) > now
            });
            if !live {
                match state.forget_peer_push(&p.peer, &p.pepper) {
                    Ok(()) => log::info!(
                        "peer {}: its {} hashes expired (not pushed again, or no longer a peer)",
                        p.peer,
                        p.hashes
                    ),
                    Err(e) => log::warn!("peer {}: its expired hashes stay: {e}", p.peer),
                }
            }
        }
    }
}

/// A push id: 1 to 64 of `[A-Za-z0-9_-]`, logged and stored as given.
fn is_push_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A sha256 lookup hash: 32 bytes in unpadded URL-safe base64.
fn is_hash(h: &str) -> bool {
    h.len() == 43 && b64::decode(h).is_some_and(|b| b.len() == 32)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The host (and port) of a URL: what our pushes name us.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// What the push job uses of the server it runs in (the `App`).
pub trait Host: Send + Sync + 'static {
    fn peers(&self) -> &Peers;
    fn state(&self) -> &State;
    fn lookup(&self) -> &Chain;
    fn hash_index(&self) -> &HashIndex;
}

/// The running push job.
pub struct Jobs {
    job: Option<Job>,
    stopping: Arc<AtomicBool>,
}

impl Jobs {
    /// The server is stopping: the job ends after what it has in hand.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Some(job) = self.job {
            job.stop();
        }
    }
}

/// How often the push job looks whether a peer is due a push, at most.
const LONGEST_TICK: Duration = Duration::from_secs(30);

/// Starts the push job when peers are configured (pushing is off otherwise).
pub fn start<H: Host>(host: &Arc<H>) -> Result<Jobs, String> {
    let peers = host.peers();
    let stopping = peers.stopping.clone();
    if peers.is_empty() {
        return Ok(Jobs {
            job: None,
            stopping,
        });
    }
    let tick = peers.keepalive.clamp(Duration::from_secs(1), LONGEST_TICK);
    let h = host.clone();
    let job = jobs::every_or_woken("peer-push", tick, &peers.waker, move || {
        let peers = h.peers();
        peers.sweep(h.state());
        peers.queue_due(h.state(), h.hash_index());
        // Read before listing: a rebuild meanwhile makes the next tick push again.
        let generation = h.hash_index().generation();
        peers.deliver_due(h.state(), h.lookup(), generation);
    })
    .map_err(|e| format!("the peer push: {e}"))?;
    Ok(Jobs {
        job: Some(job),
        stopping,
    })
}

/// A failed push is tried again after this, doubled each time up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// What a lease adds to the calls' deadlines: listing the stores and hashing, and sending
/// a push in parts. A push that takes longer may be claimed and made again by another
/// instance meanwhile; its first part then starts the peer's copy over, and the first
/// instance's next part is refused.
const LISTING_TIME: Duration = Duration::from_secs(900);
/// The parts of a push in parts not finished after this are dropped by the receiver
/// (the sender stopped): well past a lease.
const ABANDONED_PARTS: Duration = Duration::from_secs(3600);

impl Peers {
    /// Queues a push for each peer that is due one and has none queued.
    fn queue_due(&self, state: &State, index: &HashIndex) {
        let generation = index.generation();
        let now = crate::now_ms();
        for peer in &self.peers {
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            let last = crate::lock(&self.pushed).get(&peer.cfg.name).cloned();
            let why = match &last {
                None => Some("first push"),
                Some(l) if l.generation != generation => Some("hash index rebuilt"),
                Some(l) if now - l.at_ms >= millis(self.keepalive) => Some("keepalive"),
                Some(l) => match self.peer_pepper(peer) {
                    Ok(p) if p != l.pepper => Some("its pepper changed"),
                    Ok(_) => None,
                    Err(e) => {
                        log::debug!("peer {}: hash_details: {e}", peer.cfg.name);
                        None
                    }
                },
            };
            let Some(why) = why else { continue };
            let item = Delivery::PeerPush(PeerPushItem {
                peer: peer.cfg.name.clone(),
            });
            match state.is_delivery_queued(&item) {
                Ok(true) => {}
                Ok(false) => match state.queue_delivery(&item, now) {
                    Ok(_) => log::debug!("peer {}: push queued ({why})", peer.cfg.name),
                    Err(e) => log::warn!("peer {}: push not queued: {e}", peer.cfg.name),
                },
                Err(e) => log::warn!("peer {}: the queue could not be read: {e}", peer.cfg.name),
            }
        }
    }

    /// Every due push, each claimed just before it is made.
    /// Every due push: all claimed at once, so that one listing of the stores serves every
    /// peer due a push (each needs it hashed with its own pepper).
    fn deliver_due(&self, state: &State, chain: &Chain, generation: u64) {
        // The calls of every peer, one after the other: its hash_details, and a push.
        let calls: Duration = self.peers.iter().map(|p| p.client.longest_call() * 2).sum();
        let lease = HOLD_MARGIN + LISTING_TIME + calls;
        let most = i64::try_from(self.peers.len()).unwrap_or(i64::MAX).max(1);
        while !self.stopping.load(Ordering::Relaxed) {
            match state.claim_deliveries(DeliveryKind::PeerPush, most, lease, crate::now_ms()) {
                Ok(claimed) if claimed.is_empty() => break,
                Ok(claimed) => self.deliver(state, chain, &claimed, generation),
                Err(e) => {
                    log::warn!("peer-push: the queue could not be read: {e}");
                    break;
                }
            }
        }
    }

    /// Makes the `claimed` pushes: each peer's pepper, one listing hashed with all of them,
    /// each peer's push.
    fn deliver(&self, state: &State, chain: &Chain, claimed: &[Claimed], generation: u64) {
        let mut due = Vec::new();
        for item in claimed {
            let Delivery::PeerPush(push) = &item.delivery else {
                continue;
            };
            match self.peers.iter().find(|p| p.cfg.name == push.peer) {
                // A peer no longer configured: nothing to push.
                None => self.finish(state, item, &push.peer, Ok(None)),
                Some(peer) => match self.peer_pepper(peer) {
                    Ok(pepper) => due.push((item, peer, pepper)),
                    Err(e) => self.finish(state, item, &push.peer, Err(e)),
                },
            }
        }
        if due.is_empty() {
            return;
        }
        let peppers: Vec<&str> = due.iter().map(|(_, _, pepper)| pepper.as_str()).collect();
        match our_hashes(state, chain, &peppers) {
            Err(e) => {
                for (item, peer, _) in &due {
                    self.finish(state, item, &peer.cfg.name, Err(e.clone()));
                }
            }
            Ok(listed) => {
                for ((item, peer, pepper), hashes) in due.into_iter().zip(listed) {
                    let pushed = self.push(peer, &pepper, hashes).map(|()| {
                        Some(Pushed {
                            pepper,
                            generation,
                            at_ms: crate::now_ms(),
                        })
                    });
                    self.finish(state, item, &peer.cfg.name, pushed);
                }
            }
        }
    }

    /// Records a push's outcome: delivered (and what was pushed), or retried with backoff.
    fn finish(
        &self,
        state: &State,
        claimed: &Claimed,
        peer: &str,
        outcome: Result<Option<Pushed>, String>,
    ) {
        let (id, attempt) = (claimed.id(), claimed.attempts());
        let done = match outcome {
            Ok(pushed) => {
                if let Some(p) = pushed {
                    crate::lock(&self.pushed).insert(peer.to_owned(), p);
                }
                state.delivered(claimed)
            }
            Err(e) => {
                let wait = claimed.backoff_ms(RETRY_FIRST, RETRY_MAX);
                log::warn!(
                    "peer {peer}: push failed (attempt {attempt}): {e}; again in {} s",
                    wait / 1000
                );
                state
                    .retry_delivery_at(claimed, crate::now_ms() + wait)
                    .map(drop)
            }
        };
        if let Err(e) = done {
            log::warn!("peer-push {id}: the queue could not be updated: {e}");
        }
    }

    /// The peer's current pepper, from its `hash_details` (sha256 offered).
    fn peer_pepper(&self, peer: &Peer) -> Result<String, String> {
        let url = format!("{}/_matrix/identity/v2/hash_details", peer.cfg.url);
        let details = call(peer, &url, None)?;
        let offers_sha256 = details
            .get("algorithms")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("sha256")));
        if !offers_sha256 {
            return Err("does not offer sha256".into());
        }
        details
            .get("lookup_pepper")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "hash_details without lookup_pepper".into())
    }

    /// One push to `peer`: its pepper, our listing hashed with it, sent.
    fn push(&self, peer: &Peer, pepper: &str, hashes: Vec<[u8; 32]>) -> Result<(), String> {
        let url = format!("{}/_matrix/identity/v2/lookups", peer.cfg.url);
        let per_part = peer.cfg.hashes_per_push;
        if per_part == 0 || hashes.len() <= per_part {
            let body = push_body(pepper, &self.our_name, &hashes, None);
            drop(hashes);
            call(peer, &url, Some(&body))?;
        } else {
            // A new id for each push: the peer drops the parts of one it never got whole.
            let id =
                crate::crypto::random::string_from(b"0123456789abcdefghijklmnopqrstuvwxyz", 16)
                    .map_err(|e| format!("no random push id: {e}"))?;
            let parts = hashes.len().div_ceil(per_part);
            for (number, chunk) in hashes.chunks(per_part).enumerate() {
                let part = PushPart {
                    push: id.clone(),
                    number: number as i64,
                    last: number + 1 == parts,
                };
                let body = push_body(pepper, &self.our_name, chunk, Some(&part));
                call(peer, &url, Some(&body))
                    .map_err(|e| format!("part {number} of {parts}: {e}"))?;
            }
        }
        log::info!(
            "peer {}: pushed the hashes of our addresses under its pepper",
            peer.cfg.name
        );
        Ok(())
    }
}

/// Our bindings' hashes under each of `peppers`, each list sorted, each hash once: every
/// store that can list, and the binds made here, listed once for all. A store that cannot
/// list fails the pushes (the peers would drop its addresses).
fn our_hashes(
    state: &State,
    chain: &Chain,
    peppers: &[&str],
) -> Result<Vec<Vec<[u8; 32]>>, String> {
    let mut lists: Vec<Vec<[u8; 32]>> = peppers.iter().map(|_| Vec::new()).collect();
    let mut add = |medium: &str, address: &str| {
        for (list, pepper) in lists.iter_mut().zip(peppers) {
            list.push(lookup_digest(address, medium, pepper));
        }
    };
    let failed = chain.list_all(&mut |b| add(b.medium.as_str(), &b.address));
    if let Some(e) = failed.first() {
        return Err(format!("a store could not list its bindings: {e}"));
    }
    state
        .local_binds(&mut |b| add(b.medium.as_str(), &b.address))
        .map_err(|e| e.to_string())?;
    for list in &mut lists {
        list.sort_unstable();
        list.dedup();
    }
    Ok(lists)
}

/// `{"algorithm":"sha256","pepper":…,"mappings":{<us>:[…]}}`, written straight from the
/// hashes (a million of them would be a million strings as a `Value`); for a part, with
/// `"mxisd.push_part":{"push":…,"number":…,"last":…}`.
fn push_body(pepper: &str, our_name: &str, hashes: &[[u8; 32]], part: Option<&PushPart>) -> String {
    let mut body = String::with_capacity(hashes.len() * 46 + 192);
    body.push_str(r#"{"algorithm":"sha256","pepper":"#);
    body.push_str(&Value::from(pepper).to_string());
    if let Some(p) = part {
        let part = serde_json::json!({"push": p.push, "number": p.number, "last": p.last});
        body.push_str(r#","mxisd.push_part":"#);
        body.push_str(&part.to_string());
    }
    body.push_str(r#","mappings":{"#);
    body.push_str(&Value::from(our_name).to_string());
    body.push_str(":[");
    for (i, h) in hashes.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push('"');
        body.push_str(&b64::encode_url_safe(h));
        body.push('"');
    }
    body.push_str("]}}");
    body
}

/// One call to `peer` with its token: a 2xx JSON object, or why not.
fn call(peer: &Peer, url: &str, body: Option<&str>) -> Result<Value, String> {
    let bearer = format!("Bearer {}", peer.cfg.token);
    let answer = peer
        .client
        .call(url, &[("Authorization", &bearer)], body)
        .map_err(|e: CallError| e.to_string())?;
    if !(200..300).contains(&answer.status) {
        return Err(answer.refusal());
    }
    answer.object().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_body_is_the_msc_shape() {
        let h = [7u8; 32];
        let body = push_body("pep\"per", "id.example.net:8443", &[h, h], None);
        let v: Value = serde_json::from_str(&body).unwrap();
        let hash = b64::encode_url_safe(&h);
        assert_eq!(
            v,
            serde_json::json!({
                "algorithm": "sha256",
                "pepper": "pep\"per",
                "mappings": {"id.example.net:8443": [hash, hash]},
            })
        );
        assert_eq!(
            push_body("p", "n", &[], None),
            r#"{"algorithm":"sha256","pepper":"p","mappings":{"n":[]}}"#
        );
        let part = PushPart {
            push: "abc".into(),
            number: 2,
            last: true,
        };
        let v: Value = serde_json::from_str(&push_body("p", "n", &[h], Some(&part))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "algorithm": "sha256",
                "pepper": "p",
                "mxisd.push_part": {"push": "abc", "number": 2, "last": true},
                "mappings": {"n": [hash]},
            })
        );
    }

    #[test]
    fn names_are_the_authority_of_the_public_url() {
        assert_eq!(
            authority("https://id.example.net:8443/x"),
            "id.example.net:8443"
        );
        assert_eq!(authority("http://127.0.0.1:9"), "127.0.0.1:9");
    }

    #[test]
    fn only_sha256_hashes_are_taken() {
        let h = b64::encode_url_safe(&[1u8; 32]);
        assert!(is_hash(&h));
        assert!(!is_hash(&h[1..]));
        assert!(!is_hash("not a hash at all, but forty-three chars!!"));
    }

    /// A store that counts its listings; it lists `b@x.org` twice (two stores may hold
    /// one address).
    struct Counting(Arc<std::sync::atomic::AtomicUsize>);

    impl crate::stores::IdentityStore for Counting {
        fn name(&self) -> &str {
            "counting"
        }

        fn find(
            &self,
            _: crate::threepid::Medium,
            _: &str,
        ) -> Result<Option<String>, crate::stores::StoreError> {
            Ok(None)
        }

        fn list(
            &self,
            sink: &mut dyn FnMut(crate::stores::Binding),
        ) -> Option<Result<(), crate::stores::StoreError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            for address in ["a@x.org", "b@x.org", "b@x.org"] {
                sink(crate::stores::Binding {
                    medium: crate::threepid::Medium::Email,
                    address: address.into(),
                    mxid: "@u:x.org".into(),
                });
            }
            Some(Ok(()))
        }
    }

    #[test]
    fn one_listing_gives_the_hashes_under_every_peers_pepper() {
        let listings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let chain = Chain::of_stores(vec![Box::new(Counting(listings.clone()))]);
        let t = crate::state::testing::temp_state("peers");
        let lists = our_hashes(&t.state, &chain, &["p1", "p2"]).unwrap();
        assert_eq!(listings.load(Ordering::SeqCst), 1);
        for (list, pepper) in lists.iter().zip(["p1", "p2"]) {
            let mut expected = vec![
                lookup_digest("a@x.org", "email", pepper),
                lookup_digest("b@x.org", "email", pepper),
            ];
            expected.sort_unstable();
            assert_eq!(*list, expected, "under {pepper}");
        }
        assert_ne!(lists[0], lists[1]);
    }
}
