//! The remote steps of the lookup chain, after the local stores: the identity server DNS
//! names for an e-mail's domain (`federation::identity_discovery`), then the forwarders
//! (`forward.servers`), one after another inside one time budget per request
//! (`lookup.recursive.timeout`). No thread of its own: the worker that asked waits, at most
//! the budget.
//!
//! Answers, found or not, are kept `lookup.recursive.cacheTime` (a found one never past the
//! `not_after` its server signed), so a busy client does not become a flood towards another
//! server. A miss is kept only when every server to ask answered: a failure, a timeout or a
//! budget spent is not "nobody". An unsigned bulk answer serves bulk lookups only: a single
//! lookup, which we answer signed, asks for a signed one.
//!
//! One request discovers at most [`DISCOVERIES_MAX`] domains, and none once its budget is
//! spent (the rest go to the forwarders only), so a bulk lookup of many domains whose DNS
//! never answers holds its worker for the budget, not for a DNS timeout per domain. An address this instance is already asking about elsewhere is not asked again
//! meanwhile: it is a miss for that request (not kept), which also ends the loop of two
//! servers that forward to each other without marking their lookups as forwarded.
//!
//! All remote steps together pass one [`Bulkhead`] of `http.backendWorkers` places: past
//! it a request skips them at once (a miss, not kept), so that other servers that stop
//! answering hold a bounded share of the workers.

use crate::config::{Config, RecursiveConfig};
use crate::federation::identity_client::{IdentityClient, RemoteFound, Vouched};
use crate::federation::identity_discovery::IdentityDiscovery;
use crate::federation::Client;
use crate::gate::Bulkhead;
use crate::requester::Requester;
use crate::threepid::Medium;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Answers kept at most; beyond, expired ones go, then all.
const CACHE_MAX: usize = 100_000;
/// Domains one request may ask the DNS about.
const DISCOVERIES_MAX: usize = 16;
/// Longest address asked elsewhere (RFC 5321's longest path); longer ones are nobody's.
const ADDRESS_MAX: usize = 254;

type Key = (Medium, String);

pub struct Remote {
    ids: IdentityClient,
    discovery: IdentityDiscovery,
    /// Base URLs of the forwarders, in order.
    forwarders: Vec<String>,
    /// `matrix.domain`: its addresses are ours, never asked elsewhere by DNS.
    own_domain: String,
    config: RecursiveConfig,
    /// Remote answers (found or not) and until when they hold.
    cache: Mutex<HashMap<Key, (Option<RemoteFound>, Instant)>>,
    /// Addresses being asked about now, by any worker.
    in_flight: Mutex<HashSet<Key>>,
    /// The workers asking other servers (their DNS included) at once.
    bulkhead: Bulkhead,
}

/// The addresses a request is asking about; released when it is done, even on a panic.
struct Claim<'a> {
    remote: &'a Remote,
    keys: Vec<Key>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut in_flight = crate::lock(&self.remote.in_flight);
        for key in &self.keys {
            in_flight.remove(key);
        }
    }
}

impl Remote {
    pub fn new(config: &Config, client: Client) -> Remote {
        Remote {
            ids: IdentityClient::new(client, config.lookup.recursive.access_tokens.clone()),
            discovery: IdentityDiscovery::default(),
            forwarders: config.forward.servers.clone(),
            own_domain: config.matrix.domain.to_ascii_lowercase(),
            config: config.lookup.recursive.clone(),
            cache: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            bulkhead: Bulkhead::new(
                crate::metrics::Backend::RemoteLookups,
                "the lookup on other identity servers",
                config.http.backend_workers,
                "http.backendWorkers",
            ),
        }
    }

    /// Whether `requester`'s lookups may go on to other servers.
    pub fn allows(&self, requester: Requester) -> bool {
        self.config.enabled && requester.is_in(&self.config.allowed)
    }

    /// Whether recursion is on at all (lookups mxisd makes itself: invites).
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The deadline of a request's remote steps starting now.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.config.budget
    }

    /// Who `address` (normalised) belongs to according to other servers, asked in turn
    /// until one knows; `None` when none does, none could answer in time, or another
    /// request of this instance is asking about it now.
    pub fn find(&self, medium: Medium, address: &str, deadline: Instant) -> Option<RemoteFound> {
        if address.len() > ADDRESS_MAX {
            return None;
        }
        let key = (medium, address.to_owned());
        let mut unsigned_hit = false;
        crate::metrics::lookups::source(crate::metrics::lookups::Source::Cache); // if it answers
        match self.cached(&key) {
            // An unsigned bulk answer is not ours to sign: ask for a signed one.
            Some(Some(hit)) if hit.vouched == Vouched::Unsigned => unsigned_hit = true,
            Some(answer) => {
                log::debug!("lookup step: other identity servers' answer kept from an earlier lookup, {medium} {address:?}: {}", answer.as_ref().map_or("not found".into(), |f| format!("found {}", f.mxid)));
                return answer;
            }
            None => {}
        }
        let claim = self.claim(vec![key.clone()]);
        if claim.keys.is_empty() {
            log::debug!("remote lookup of {medium} {address} already running: a miss here");
            return None;
        }
        // Refused: a miss, not kept (logged by the bulkhead).
        let _pass = self.bulkhead.enter().ok()?;
        let mut found = None;
        let (servers, mut definite) = self.servers_for(medium, address, deadline, &mut 0);
        for base in servers {
            if Instant::now() >= deadline {
                log::info!("remote lookup of a {medium}: budget spent before {base}");
                definite = false;
                break;
            }
            let started = Instant::now();
            let answer = self.ids.lookup(&base, medium.as_str(), address, deadline);
            log::debug!(
                "lookup step: identity server {base}, {medium} {address:?}: {} in {} ms",
                remote_result(&answer),
                started.elapsed().as_millis()
            );
            match answer {
                Ok(Some(answer)) if live(&answer) => {
                    crate::metrics::lookups::source(self.source_of(&base));
                    found = Some(answer);
                    break;
                }
                Ok(_) => {}
                Err(why) => {
                    definite = false;
                    log::warn!("identity server {base} skipped: {why}");
                }
            }
        }
        // A miss replaces nothing it does not know better than: not an unsigned hit, which
        // still answers bulk lookups.
        if found.is_some() || (definite && !unsigned_hit) {
            self.keep(key, found.clone());
        }
        found
    }

    /// The bindings other servers know among `asked` (normalised, local misses), as
    /// (medium, address, mxid): one request per server, the servers in the order
    /// [`Remote::find`] asks them.
    pub fn find_many(&self, asked: &[Key], deadline: Instant) -> Vec<(Medium, String, String)> {
        let mut found = Vec::new();
        let mut pending = Vec::new();
        for key in asked.iter().filter(|k| k.1.len() <= ADDRESS_MAX) {
            match self.cached(key) {
                Some(Some(hit)) => found.push((key.0, key.1.clone(), hit.mxid)),
                Some(None) => {}
                None => pending.push(key.clone()),
            }
        }
        crate::metrics::lookups::add(crate::metrics::lookups::Source::Cache, found.len());
        let claim = self.claim(pending);
        // Refused: what the cache knew, the rest misses, not kept (logged by the bulkhead).
        let _pass = match claim.keys.is_empty() {
            true => None,
            false => match self.bulkhead.enter() {
                Ok(pass) => Some(pass),
                Err(_) => return found,
            },
        };
        // Each address's servers, and every server once, in first-seen order.
        let mut order: Vec<String> = Vec::new();
        let mut servers_of: HashMap<&Key, Vec<String>> = HashMap::new();
        let mut undiscovered: HashSet<&Key> = HashSet::new();
        let mut discoveries = 0;
        for key in &claim.keys {
            let (servers, complete) = self.servers_for(key.0, &key.1, deadline, &mut discoveries);
            if !complete {
                undiscovered.insert(key);
            }
            for s in &servers {
                if !order.contains(s) {
                    order.push(s.clone());
                }
            }
            servers_of.insert(key, servers);
        }
        let mut answers: HashMap<&Key, RemoteFound> = HashMap::new();
        // The servers that answered: a key is a definite miss when all of its did.
        let mut answered: HashSet<&str> = HashSet::new();
        for base in &order {
            if Instant::now() >= deadline {
                log::info!("remote bulk lookup: budget spent before {base}");
                break;
            }
            let batch: Vec<(String, String)> = claim
                .keys
                .iter()
                .filter(|k| !answers.contains_key(k) && servers_of[k].contains(base))
                .map(|(m, a)| (m.as_str().to_owned(), a.clone()))
                .collect();
            if batch.is_empty() {
                continue;
            }
            match self.ids.bulk_lookup(base, &batch, deadline) {
                Ok(rows) => {
                    answered.insert(base.as_str());
                    let vouched = self.ids.bulk_vouched(base);
                    for (medium, address, mxid) in rows {
                        if let Some(key) = claim
                            .keys
                            .iter()
                            .find(|(m, a)| m.as_str() == medium && *a == address)
                        {
                            crate::metrics::lookups::add(self.source_of(base), 1);
                            answers.entry(key).or_insert(RemoteFound { mxid, vouched });
                        }
                    }
                }
                Err(why) => log::warn!("identity server {base} skipped: {why}"),
            }
        }
        for key in &claim.keys {
            match answers.get(key) {
                Some(hit) => {
                    found.push((key.0, key.1.clone(), hit.mxid.clone()));
                    self.keep(key.clone(), Some(hit.clone()));
                }
                None if !undiscovered.contains(key)
                    && servers_of[key]
                        .iter()
                        .all(|s| answered.contains(s.as_str())) =>
                {
                    self.keep(key.clone(), None);
                }
                None => {} // not every server answered: not known to be nobody's
            }
        }
        found
    }

    /// The servers to ask about one address, in order: the one its e-mail domain names
    /// (not ours; phone numbers have no domain), then the forwarders; and whether that is
    /// all of them. `discoveries`: the domains this request asked the DNS about so far;
    /// past [`DISCOVERIES_MAX`], or with the budget spent, only the forwarders (not all).
    fn servers_for(
        &self,
        medium: Medium,
        address: &str,
        deadline: Instant,
        discoveries: &mut usize,
    ) -> (Vec<String>, bool) {
        let mut servers = Vec::new();
        let mut complete = true;
        if medium == Medium::Email {
            if let Some((_, domain)) = address.rsplit_once('@') {
                let left = deadline.saturating_duration_since(Instant::now());
                if domain.eq_ignore_ascii_case(&self.own_domain) {
                    // ours: the local stores answered
                } else if left.is_zero() || *discoveries >= DISCOVERIES_MAX {
                    complete = false;
                } else {
                    *discoveries += 1;
                    servers = self.discovery.servers(self.ids.client(), domain, left);
                }
            }
        }
        for f in &self.forwarders {
            if !servers.contains(f) {
                servers.push(f.clone());
            }
        }
        (servers, complete)
    }

    /// A kept answer still valid: `Some(answer)`; `None` when the servers must be asked.
    fn cached(&self, key: &Key) -> Option<Option<RemoteFound>> {
        let cache = crate::lock(&self.cache);
        let (answer, until) = cache.get(key)?;
        if *until <= Instant::now() || answer.as_ref().is_some_and(|a| !live(a)) {
            return None;
        }
        Some(answer.clone())
    }

    fn keep(&self, key: Key, answer: Option<RemoteFound>) {
        let mut hold = self.config.cache_time;
        if let Some(Vouched::Signed(_, _, not_after)) = answer.as_ref().map(|a| a.vouched) {
            let left = u64::try_from(not_after - crate::now_ms()).unwrap_or(0);
            hold = hold.min(Duration::from_millis(left));
        }
        let now = Instant::now();
        let mut cache = crate::lock(&self.cache);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (answer, now + hold));
    }

    /// Marks the addresses of `keys` that no one is asking about as asked by us.
    fn claim(&self, keys: Vec<Key>) -> Claim<'_> {
        let mut in_flight = crate::lock(&self.in_flight);
        let mine = keys
            .into_iter()
            .filter(|k| in_flight.insert(k.clone()))
            .collect();
        Claim {
            remote: self,
            keys: mine,
        }
    }
}

/// A remote answer is never served after the `not_after` its server signed.
fn live(answer: &RemoteFound) -> bool {
    match answer.vouched {
        Vouched::Signed(_, _, not_after) => not_after > crate::now_ms(),
        Vouched::Configured | Vouched::Unsigned => true,
    }
}

/// A remote step's answer, for the log: the Matrix ID, "not found", or why it failed.
fn remote_result(answer: &Result<Option<RemoteFound>, String>) -> String {
    match answer {
        Ok(Some(found)) => format!("found {}", found.mxid),
        Ok(None) => "not found".into(),
        Err(why) => format!("failed: {why}"),
    }
}

impl Remote {
    /// Where an answer of the server at `base` counts as coming from: a forwarder, or the
    /// identity server DNS named.
    fn source_of(&self, base: &str) -> crate::metrics::lookups::Source {
        if self.forwarders.iter().any(|f| f == base) {
            crate::metrics::lookups::Source::Forwarder
        } else {
            crate::metrics::lookups::Source::Dns
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(extra: &str) -> Remote {
        let text = format!("matrix:\n  domain: example.org\n{extra}");
        let config = crate::config::load_str(&text, "test").unwrap().config;
        let client = Client::new(&config.federation).unwrap();
        Remote::new(&config, client)
    }

    fn found(not_after: i64) -> RemoteFound {
        RemoteFound {
            mxid: "@a:example.net".into(),
            vouched: Vouched::Signed(0, 0, not_after),
        }
    }

    #[test]
    fn the_policy_follows_enabled_and_allowed_cidr() {
        let loopback = Requester::Ip("127.0.0.1".parse().unwrap());
        let public = Requester::Ip("203.0.113.7".parse().unwrap());
        let r = remote("");
        assert!(r.allows(loopback) && r.enabled());
        assert!(!r.allows(public) && !r.allows(Requester::Unknown));
        let off = remote("lookup:\n  recursive:\n    enabled: false\n");
        assert!(!off.allows(loopback) && !off.enabled());
        let narrow = remote("lookup:\n  recursive:\n    allowedCidr: ['203.0.113.0/24']\n");
        assert!(narrow.allows(public) && !narrow.allows(loopback));
    }

    #[test]
    fn answers_are_kept_misses_too_but_never_past_not_after() {
        let r = remote("");
        let key = |a: &str| (Medium::Email, a.to_owned());
        r.keep(key("miss@example.net"), None);
        assert_eq!(r.cached(&key("miss@example.net")), Some(None));
        r.keep(
            key("hit@example.net"),
            Some(found(crate::now_ms() + 60_000)),
        );
        assert!(matches!(r.cached(&key("hit@example.net")), Some(Some(_))));
        // Signed to expire already: not served, asked again.
        r.keep(key("old@example.net"), Some(found(crate::now_ms() - 1)));
        assert_eq!(r.cached(&key("old@example.net")), None);
        assert_eq!(r.cached(&key("unasked@example.net")), None);
    }

    #[test]
    fn an_address_in_flight_is_claimed_once() {
        let r = remote("");
        let key = (Medium::Email, "x@example.net".to_owned());
        let first = r.claim(vec![key.clone()]);
        assert_eq!(first.keys.len(), 1);
        assert!(r.claim(vec![key.clone()]).keys.is_empty());
        drop(first);
        assert_eq!(r.claim(vec![key]).keys.len(), 1);
    }

    #[test]
    fn our_own_domain_and_phone_numbers_go_to_forwarders_only() {
        let r = remote(
            "  identity:\n    servers:\n      lan: ['https://id.lan.example']\nforward:\n  servers: ['lan']\n",
        );
        // The forwarders are the only servers: no DNS is asked for these.
        let deadline = Instant::now();
        assert_eq!(
            r.servers_for(Medium::Email, "bob@example.org", deadline, &mut 0),
            (vec!["https://id.lan.example".to_owned()], true)
        );
        assert_eq!(
            r.servers_for(Medium::Msisdn, "442079460001", deadline, &mut 0),
            (vec!["https://id.lan.example".to_owned()], true)
        );
    }

    #[test]
    fn with_the_budget_spent_no_domain_is_discovered_and_no_miss_is_kept() {
        let r = remote("");
        let spent = Instant::now();
        // Another domain, no forwarders: nobody could be asked, so "nobody" is not known.
        assert_eq!(
            r.servers_for(Medium::Email, "bob@example.net", spent, &mut 0),
            (vec![], false)
        );
        assert_eq!(r.find(Medium::Email, "bob@example.net", spent), None);
        let key = (Medium::Email, "bob@example.net".to_owned());
        assert_eq!(r.cached(&key), None, "the miss was not kept");
        // Past the cap of discoveries per request, the same.
        let later = Instant::now() + Duration::from_secs(60);
        let mut discoveries = DISCOVERIES_MAX;
        assert_eq!(
            r.servers_for(Medium::Email, "bob@example.net", later, &mut discoveries),
            (vec![], false)
        );
    }

    #[test]
    fn an_unsigned_bulk_hit_answers_bulk_lookups_and_never_a_single_one() {
        let r = remote("");
        let key = (Medium::Email, "carol@example.net".to_owned());
        let unsigned = RemoteFound {
            mxid: "@carol:example.net".into(),
            vouched: Vouched::Unsigned,
        };
        r.keep(key.clone(), Some(unsigned));
        let spent = Instant::now();
        assert_eq!(
            r.find_many(std::slice::from_ref(&key), spent),
            vec![(
                Medium::Email,
                "carol@example.net".to_owned(),
                "@carol:example.net".to_owned()
            )]
        );
        // A single lookup wants a signed answer; none can be had now, so none, and the
        // unsigned hit stays for bulk lookups.
        assert_eq!(r.find(Medium::Email, "carol@example.net", spent), None);
        assert!(matches!(r.cached(&key), Some(Some(_))));
    }

    #[test]
    fn addresses_longer_than_any_e_mail_are_not_asked_about() {
        let r = remote("");
        let long = format!("{}@example.net", "a".repeat(ADDRESS_MAX));
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(r.find(Medium::Email, &long, later), None);
        assert!(r
            .find_many(&[(Medium::Email, long.clone())], later)
            .is_empty());
        assert_eq!(r.cached(&(Medium::Email, long)), None);
    }

    #[test]
    fn past_the_bulkhead_the_remote_steps_are_skipped_and_nothing_is_kept() {
        // Port 9 (discard) on loopback: never asked, the bulkhead refuses first.
        let r = remote(
            "  identity:\n    servers:\n      lan: ['http://127.0.0.1:9']\nhttp:\n  workers: 2\n  backendWorkers: 1\nlookup:\n  recursive:\n    enabled: true\nforward:\n  servers: ['lan']\n",
        );
        let _held = r.bulkhead.enter().expect("the only place");
        let deadline = r.deadline();
        assert_eq!(r.find(Medium::Email, "a@elsewhere.test", deadline), None);
        let key = (Medium::Email, "a@elsewhere.test".to_owned());
        assert_eq!(r.cached(&key), None, "a refusal is not a miss to keep");
        assert_eq!(r.find_many(std::slice::from_ref(&key), deadline), vec![]);
        assert_eq!(r.cached(&key), None);
        assert!(crate::lock(&r.in_flight).is_empty(), "claims released");
    }
}
