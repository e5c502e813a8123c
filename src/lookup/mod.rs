//! The lookup chain: 3PID → Matrix ID, asking the identity stores in priority order; the
//! first answer wins. A store that fails (down, timed out) never turns into "not found": if
//! no store answered and one failed, the lookup fails naming it. Knows no HTTP.
//!
//! Addresses are normalised (`threepid`) before any store sees them. v2 hashed lookups are
//! answered from [`hash_index::HashIndex`], an index built from the stores that can list.
//!
//! After a clean local miss, the remote steps ([`remote::Remote`]: the identity server of
//! an e-mail's domain, then the forwarders) for those who may recurse ([`Asker`]).

pub mod hash_index;
pub mod remote;

use crate::config::Config;
use crate::federation::identity_client::Vouched;
use crate::federation::ConfiguredClient;
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
    stores: Vec<Box<dyn IdentityStore>>,
    region: Option<phonenumber::country::Id>,
    domain: String,
    /// The remote steps, once [`Chain::with_remote`] gave them.
    remote: Option<Remote>,
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
        let mut stores: Vec<Box<dyn IdentityStore>> = Vec::new();
        if let Some(memory) = &config.memory {
            stores.push(Box::new(MemoryStore::new(memory, domain, region)));
        }
        if let Some(ldap) = &config.ldap {
            stores.push(Box::new(LdapStore::new(
                ldap.clone(),
                domain,
                region,
                connections,
            )?));
        }
        for sql in &config.sql {
            stores.push(Box::new(SqlStore::open(
                sql.clone(),
                domain,
                region,
                connections,
            )?));
        }
        if let Some(rest) = &config.rest {
            let client = ConfiguredClient::new(&config.federation, rest.timeout)?;
            stores.push(Box::new(RestStore::new(
                rest.clone(),
                domain,
                region,
                client,
            )));
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
        self.stores.push(store);
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
        for store in &self.stores {
            match ask(store.as_ref()) {
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
        for store in &self.stores {
            if wanted.is_empty() {
                break;
            }
            let query: Vec<(Medium, String)> = wanted.keys().cloned().collect();
            let started = std::time::Instant::now();
            let answer = store.find_many(&query);
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
    /// missing).
    pub fn list_all(&self, sink: &mut dyn FnMut(Binding)) -> Vec<StoreError> {
        let mut failed = Vec::new();
        for store in &self.stores {
            if let Some(Err(e)) = store.list(sink) {
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
        self.stores.iter().map(|s| s.name().to_owned()).collect()
    }

    /// Whether store number `i` answers a lookup (of an address no one has): the
    /// readiness check of one store.
    pub fn check_store(&self, i: usize) -> Result<(), StoreError> {
        let Some(store) = self.stores.get(i) else {
            return Ok(());
        };
        store.find(Medium::Email, READINESS_PROBE).map(|_| ())
    }
}
