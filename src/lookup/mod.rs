//! The lookup chain: 3PID → Matrix ID, asking the identity stores in priority order; the
//! first answer wins. A store that fails (down, timed out) never turns into "not found": if
//! no store answered and one failed, the lookup fails naming it. Knows no HTTP.
//!
//! Addresses are normalised (`threepid`) before any store sees them. v2 hashed lookups are
//! answered from [`hash_index::HashIndex`], an index built from the stores that can list.
//!
//! Each store that waits on a backend (LDAP, SQL, REST) is entered through its own
//! [`Bulkhead`] of `http.backendWorkers` places: a call past them fails at once, as a store
//! that fails does, so a frozen backend holds a bounded share of the workers.
//!
//! After a clean local miss, the remote steps ([`remote::Remote`]: the identity server of
//! an e-mail's domain, then the forwarders) for those who may recurse ([`Asker`]).

pub mod hash_index;
pub mod peers;
pub mod remote;

use crate::config::Config;
use crate::federation::identity_client::Vouched;
use crate::federation::ConfiguredClient;
use crate::gate::Bulkhead;
use crate::requester::Requester;
use crate::stores::rest::RestStore;
use crate::stores::{
    ldap::LdapStore, memory::MemoryStore, sql::SqlStore, AuthenticatedUser, Binding, Found,
    IdentityStore, Signed, StoreError,
};
use crate::threepid::{self, Medium};
use crate::user_id::UserId;
use remote::Remote;
use std::collections::HashMap;
use std::fmt;

pub struct Chain {
    stores: Vec<Step>,
    region: Option<phonenumber::country::Id>,
    domain: String,
    /// The remote steps, once [`Chain::with_remote`] gave them.
    remote: Option<Remote>,
}

/// A store of the chain and the bulkhead its calls pass (none for a store that waits on
/// nothing of its own: the static store; the binds made here, bounded with the state).
struct Step {
    store: Box<dyn IdentityStore>,
    bulkhead: Option<Bulkhead>,
}

impl Step {
    /// A store whose calls pass a bulkhead of `max` places.
    fn gated(store: Box<dyn IdentityStore>, max: usize) -> Step {
        let name = format!("identity store {}", store.name());
        let backend = crate::metrics::Backend::store(store.name());
        Step {
            store,
            bulkhead: Some(Bulkhead::new(backend, name, max, "http.backendWorkers")),
        }
    }

    fn ungated(store: Box<dyn IdentityStore>) -> Step {
        Step {
            store,
            bulkhead: None,
        }
    }

    /// `call` on the store, once in its bulkhead; past it, the store's error at once.
    fn call<T>(
        &self,
        call: impl FnOnce(&dyn IdentityStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _pass = match &self.bulkhead {
            Some(bulkhead) => Some(bulkhead.enter().map_err(|refused| StoreError {
                store: self.store.name().to_owned(),
                reason: refused.reason,
            })?),
            None => None,
        };
        call(self.store.as_ref())
    }
}

/// Who a lookup is for, which decides whether it may go on to other identity servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// A client of ours: remote steps when `lookup.recursive.enabled` and it is in
    /// `lookup.recursive.allowedCidr`.
    Client(Requester),
    /// Another identity server forwarding a lookup (our forwarded header): local stores
    /// only, so that servers forwarding to each other end.
    Forwarded,
    /// mxisd itself (store-invite's check, invite resolution: mxisd's forced recursion):
    /// remote steps whenever `lookup.recursive.enabled`.
    Server,
    /// mxisd itself, told to keep to its own stores (`invite.resolution.recursive: false`).
    Local,
}

impl From<Requester> for Asker {
    fn from(requester: Requester) -> Asker {
        Asker::Client(requester)
    }
}

/// Why a lookup has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// Stores failed and none of the others knew the answer.
    Stores(Vec<StoreError>),
    /// The hash index is not built yet (just after start).
    IndexNotReady,
}

impl LookupError {
    /// What is unavailable, for the client (details stay in the log).
    pub fn what(&self) -> String {
        match self {
            LookupError::Stores(failed) => {
                let names: Vec<&str> = failed.iter().map(|e| e.store.as_str()).collect();
                format!("The identity store {}", names.join(", "))
            }
            LookupError::IndexNotReady => "The hash index (being built)".into(),
        }
    }
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::Stores(failed) => {
                let reasons: Vec<String> = failed.iter().map(ToString::to_string).collect();
                f.write_str(&reasons.join("; "))
            }
            LookupError::IndexNotReady => f.write_str("the hash index is not built yet"),
        }
    }
}

impl Chain {
    /// The stores the configuration enables, most authoritative first: the static store,
    /// LDAP, `sql`, `synapseSql`, then the REST backend.
    pub fn from_config(config: &Config) -> Result<Chain, String> {
        let region = config.lookup.default_region;
        let domain = &config.matrix.domain;
        // A connection per worker: none waits for another's.
        let connections = config.http.workers;
        // Workers that may wait on one store at once: the others keep serving.
        let cap = config.http.backend_workers;
        let mut stores: Vec<Step> = Vec::new();
        if let Some(memory) = &config.memory {
            stores.push(Step::ungated(Box::new(MemoryStore::new(
                memory, domain, region,
            ))));
        }
        if let Some(ldap) = &config.ldap {
            let store = Box::new(LdapStore::new(ldap.clone(), domain, region, connections)?);
            stores.push(Step::gated(store, cap));
        }
        for sql in &config.sql {
            let store = Box::new(SqlStore::open(sql.clone(), domain, region, connections)?);
            stores.push(Step::gated(store, cap));
        }
        if let Some(rest) = &config.rest {
            let client = ConfiguredClient::new(&config.federation, rest.timeout)?;
            let store = Box::new(RestStore::new(rest.clone(), domain, region, client));
            stores.push(Step::gated(store, cap));
        }
        Ok(Chain {
            stores,
            region,
            domain: domain.clone(),
            remote: None,
        })
    }

    /// Adds the remote steps (`lookup.recursive`, `forward`), calling out through `client`.
    pub fn with_remote(mut self, config: &Config, client: crate::federation::Client) -> Chain {
        self.remote = Some(Remote::new(config, client));
        self
    }

    /// The remote steps, if `asker` may take them: with the deadline of this request's.
    fn remote_for(&self, asker: Asker) -> Option<(&Remote, std::time::Instant)> {
        let remote = self.remote.as_ref()?;
        let allowed = match asker {
            Asker::Client(requester) => remote.allows(requester),
            Asker::Forwarded | Asker::Local => false,
            Asker::Server => remote.enabled(),
        };
        allowed.then(|| (remote, remote.deadline()))
    }

    /// Adds `store` after the others (the least authoritative: the binds made here).
    pub fn push(&mut self, store: Box<dyn IdentityStore>) {
        self.stores.push(Step::ungated(store));
    }

    /// The Matrix ID bound to this 3PID, if a store (or, for an `asker` who may recurse,
    /// another identity server) knows one.
    pub fn find(
        &self,
        asker: impl Into<Asker>,
        medium: Medium,
        address: &str,
    ) -> Result<Option<String>, LookupError> {
        Ok(self
            .find_signed(asker, medium, address)?
            .map(|(_, found)| found.mxid))
    }

    /// As [`Chain::find`], with the address normalised and, for a bind made here or a
    /// remote's signed answer, the validity its association was signed with (a v1 lookup
    /// answers it with that validity). Other servers are asked only after a clean local
    /// miss: a store that failed is an error, as without recursion.
    pub fn find_signed(
        &self,
        asker: impl Into<Asker>,
        medium: Medium,
        address: &str,
    ) -> Result<Option<(String, Found)>, LookupError> {
        let _counted = crate::metrics::lookups::single();
        let Some(address) = threepid::address(medium, address, self.region) else {
            return Ok(None);
        };
        let step = |store: &dyn IdentityStore| {
            let started = std::time::Instant::now();
            let answer = store.find_signed(medium, &address);
            log::debug!(
                "lookup step: store {}, {medium} {address:?}: {} in {} ms",
                store.name(),
                step_result(&answer),
                started.elapsed().as_millis()
            );
            answer
        };
        if let Some(found) = self.first_answer(step)? {
            crate::metrics::lookups::found(crate::metrics::lookups::Source::Store);
            return Ok(Some((address, found)));
        }
        let Some((remote, deadline)) = self.remote_for(asker.into()) else {
            return Ok(None);
        };
        Ok(remote.find(medium, &address, deadline).map(|r| {
            crate::metrics::lookups::found_there();
            // A signed answer keeps its validity; one a configured server gave over v2 is
            // signed fresh, as a store's is (`find` never returns an unsigned one).
            let signed = match r.vouched {
                Vouched::Signed(ts, not_before, not_after) => Some(Signed {
                    ts,
                    not_before,
                    not_after,
                }),
                Vouched::Configured | Vouched::Unsigned => None,
            };
            (
                address,
                Found {
                    mxid: r.mxid,
                    signed,
                },
            )
        }))
    }

    /// Asks the stores in priority order; the first that answers `Some` wins. Fails only if
    /// none did and one could not answer.
    fn first_answer<T>(
        &self,
        ask: impl Fn(&dyn IdentityStore) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, LookupError> {
        let mut failed = Vec::new();
        for step in &self.stores {
            match step.call(&ask) {
                Ok(Some(answer)) => return Ok(Some(answer)),
                Ok(None) => {}
                Err(e) => {
                    crate::metrics::lookups::failed();
                    log::warn!("{e}");
                    failed.push(e);
                }
            }
        }
        if failed.is_empty() {
            Ok(None)
        } else {
            Err(LookupError::Stores(failed))
        }
    }

    /// The bindings of many 3PIDs, keyed by the (medium, address) as asked; `asker` as
    /// for [`Chain::find`]: the local misses go to other servers in one batch per server.
    pub fn find_many(
        &self,
        asker: impl Into<Asker>,
        asked: &[(Medium, String)],
    ) -> Result<Vec<Binding>, LookupError> {
        // normalised (medium, address) -> the forms it was asked in
        let mut wanted: HashMap<(Medium, String), Vec<String>> = HashMap::new();
        for (medium, address) in asked {
            if let Some(norm) = threepid::address(*medium, address, self.region) {
                wanted
                    .entry((*medium, norm))
                    .or_default()
                    .push(address.clone());
            }
        }
        let mut found = Vec::new();
        let mut failed = Vec::new();
        for step in &self.stores {
            if wanted.is_empty() {
                break;
            }
            let store = step.store.as_ref();
            let query: Vec<(Medium, String)> = wanted.keys().cloned().collect();
            let started = std::time::Instant::now();
            let answer = step.call(|store| store.find_many(&query));
            log::debug!(
                "lookup step: store {}, {} addresses: {} in {} ms",
                store.name(),
                query.len(),
                answer.as_ref().map_or_else(
                    |e| format!("failed: {}", e.reason),
                    |b| format!("{} found", b.len())
                ),
                started.elapsed().as_millis()
            );
            match answer {
                Ok(bindings) => {
                    for b in bindings {
                        if let Some(forms) = wanted.remove(&(b.medium, b.address.clone())) {
                            crate::metrics::lookups::add(crate::metrics::lookups::Source::Store, 1);
                            found.extend(forms.into_iter().map(|address| Binding {
                                medium: b.medium,
                                address,
                                mxid: b.mxid.clone(),
                            }));
                        }
                    }
                }
                Err(e) => {
                    log::warn!("{e}");
                    failed.push(e);
                }
            }
        }
        if !failed.is_empty() && !wanted.is_empty() {
            crate::metrics::lookups::add(crate::metrics::lookups::Source::Error, wanted.len());
            return Err(LookupError::Stores(failed));
        }
        if wanted.is_empty() {
            return Ok(found);
        }
        if let Some((remote, deadline)) = self.remote_for(asker.into()) {
            let misses: Vec<(Medium, String)> = wanted.keys().cloned().collect();
            for (medium, address, mxid) in remote.find_many(&misses, deadline) {
                if let Some(forms) = wanted.remove(&(medium, address)) {
                    found.extend(forms.into_iter().map(|address| Binding {
                        medium,
                        address,
                        mxid: mxid.clone(),
                    }));
                }
            }
        }
        crate::metrics::lookups::add(crate::metrics::lookups::Source::Miss, wanted.len());
        Ok(found)
    }

    /// Checks `password` for `user` (one of `matrix.domain`): the first store that accepts it
    /// answers. Fails only if no store accepted and one could not answer.
    pub fn authenticate(
        &self,
        user: &UserId,
        password: &str,
    ) -> Result<Option<AuthenticatedUser>, LookupError> {
        if user.server() != self.domain {
            return Ok(None); // not one of our users
        }
        self.first_answer(|store| store.authenticate(user, password))
    }

    /// Hands every binding of the stores that can list them to `sink`, most authoritative
    /// store first; returns the failures of those that could not (their bindings are then
    /// missing). Not through the bulkheads: the index job is one thread, not a worker, and
    /// a listing refused would leave the index without a store's bindings.
    pub fn list_all(&self, sink: &mut dyn FnMut(Binding)) -> Vec<StoreError> {
        let mut failed = Vec::new();
        for step in &self.stores {
            if let Some(Err(e)) = step.store.list(sink) {
                log::warn!("{e}");
                failed.push(e);
            }
        }
        failed
    }
}

/// A single lookup step's answer, for the log: the Matrix ID, "not found", or why it failed.
fn step_result(answer: &Result<Option<Found>, StoreError>) -> String {
    match answer {
        Ok(Some(found)) => format!("found {}", found.mxid),
        Ok(None) => "not found".into(),
        Err(e) => format!("failed: {}", e.reason),
    }
}

/// An address no store can hold (`.invalid` is reserved, RFC 2606): looking it up makes a
/// store do one real round trip (a search, a query, a call) with nothing to find.
const READINESS_PROBE: &str = "mxisd-readiness-probe@readiness.invalid";

impl Chain {
    /// The names of the identity stores, in the chain's order (readiness names them).
    pub fn store_names(&self) -> Vec<String> {
        self.stores
            .iter()
            .map(|s| s.store.name().to_owned())
            .collect()
    }

    /// Whether store number `i` answers a lookup (of an address no one has): the
    /// readiness check of one store (from the metrics listener, not a worker: not through
    /// the bulkhead, so that a store busy under load is not reported down).
    pub fn check_store(&self, i: usize) -> Result<(), StoreError> {
        let Some(step) = self.stores.get(i) else {
            return Ok(());
        };
        step.store.find(Medium::Email, READINESS_PROBE).map(|_| ())
    }
}

#[cfg(test)]
impl Chain {
    /// A chain of `stores` alone, without bulkheads or remote steps, for unit tests.
    pub(crate) fn of_stores(stores: Vec<Box<dyn IdentityStore>>) -> Chain {
        Chain {
            stores: stores.into_iter().map(Step::ungated).collect(),
            region: None,
            domain: "example.org".into(),
            remote: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::Mutex;

    /// A store whose lookups say they started, then wait until told to answer: a backend
    /// that stopped answering, for as long as the test wants.
    struct Stalled {
        started: Mutex<Sender<()>>,
        release: Mutex<Receiver<()>>,
    }

    impl IdentityStore for Stalled {
        fn name(&self) -> &str {
            "stalled"
        }

        fn find(&self, _: Medium, _: &str) -> Result<Option<String>, StoreError> {
            let _ = crate::lock(&self.started).send(());
            let _ = crate::lock(&self.release).recv();
            Ok(Some("@alice:example.org".into()))
        }
    }

    /// A chain of one stalled store behind a bulkhead of one place, and the ends of the
    /// store's channels: (started, release).
    fn stalled_chain() -> (Chain, Receiver<()>, Sender<()>) {
        let (started_tx, started_rx) = channel();
        let (release_tx, release_rx) = channel();
        let store = Stalled {
            started: Mutex::new(started_tx),
            release: Mutex::new(release_rx),
        };
        let chain = Chain {
            stores: vec![Step::gated(Box::new(store), 1)],
            region: None,
            domain: "example.org".into(),
            remote: None,
        };
        (chain, started_rx, release_tx)
    }

    #[test]
    fn a_store_past_its_bulkhead_fails_at_once_naming_it_and_recovers() {
        let (chain, started, release) = stalled_chain();
        std::thread::scope(|s| {
            let held = s.spawn(|| chain.find(Asker::Local, Medium::Email, "a@example.org"));
            // With a deadline: a lookup that never reaches the store fails the test, not hangs it.
            started
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("the first lookup reached the store");
            // The only place is held: the second lookup fails without reaching the store.
            let refused = chain.find(Asker::Local, Medium::Email, "b@example.org");
            assert_eq!(
                refused,
                Err(LookupError::Stores(vec![StoreError {
                    store: "stalled".into(),
                    reason: "busy: 1 workers already wait on it (http.backendWorkers)".into(),
                }]))
            );
            assert_eq!(
                refused.map_err(|e| e.what()),
                Err("The identity store stalled".into())
            );
            assert!(started.try_recv().is_err(), "the store was not called");
            release.send(()).expect("the store listens");
            assert_eq!(
                held.join().expect("no panic"),
                Ok(Some("@alice:example.org".into()))
            );
        });
        // The place was given back: the store answers again.
        release.send(()).expect("the store listens");
        assert_eq!(
            chain.find(Asker::Local, Medium::Email, "c@example.org"),
            Ok(Some("@alice:example.org".into()))
        );
    }

    #[test]
    fn a_bulk_lookup_past_the_bulkhead_fails_naming_the_store() {
        let (chain, started, release) = stalled_chain();
        std::thread::scope(|s| {
            let held = s.spawn(|| chain.find(Asker::Local, Medium::Email, "a@example.org"));
            // With a deadline: a lookup that never reaches the store fails the test, not hangs it.
            started
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("the first lookup reached the store");
            let asked = [(Medium::Email, "b@example.org".to_owned())];
            let refused = chain.find_many(Asker::Local, &asked);
            assert_eq!(
                refused.map_err(|e| e.what()),
                Err("The identity store stalled".into())
            );
            release.send(()).expect("the store listens");
            assert!(held.join().expect("no panic").is_ok());
        });
    }
}
