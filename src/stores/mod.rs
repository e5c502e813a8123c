//! Identity stores: where 3PID → Matrix ID bindings live (LDAP, SQL, a REST backend, the
//! static `memory` store). The one seam of the lookup chain: each store implements
//! [`IdentityStore`] and says what it can do. Stores never see HTTP requests.
//!
//! Addresses given to and returned by stores are normalised (see `threepid`).

pub mod ldap;
mod ldap_template;
pub mod local_binds;
pub mod memory;
pub mod rest;
pub mod sql;

use crate::threepid::Medium;
use crate::user_id::UserId;
use std::collections::BTreeMap;
use std::fmt;

/// A 3PID bound to a Matrix ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub medium: Medium,
    pub address: String,
    pub mxid: String,
}

/// The validity an answer was signed with when it was made: the binds made here keep
/// the association signed at bind time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    pub ts: i64,
    pub not_before: i64,
    pub not_after: i64,
}

/// A store's answer to a single lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub mxid: String,
    /// `Some` for a bind made here; a store's answer is signed fresh.
    pub signed: Option<Signed>,
}

/// A store that could not answer: down, timed out, misconfigured. Never "not found".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    pub store: String,
    pub reason: String,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "identity store {}: {}", self.store, self.reason)
    }
}

/// A user whose password a store accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    pub mxid: String,
    pub display_name: Option<String>,
    /// (medium, address), normalised.
    pub threepids: Vec<(Medium, String)>,
}

/// All connections of a store stayed busy; the store renames the error with its own name.
impl From<crate::pool::Exhausted> for StoreError {
    fn from(_: crate::pool::Exhausted) -> Self {
        StoreError {
            store: "identity store".into(),
            reason: "no free connection in time".into(),
        }
    }
}

pub trait IdentityStore: Send + Sync {
    /// A short name for logs and errors (`ldap`, `sql`, `memory`, ...).
    fn name(&self) -> &str;

    /// This store's error: it could not answer, and why.
    fn error(&self, reason: impl fmt::Display) -> StoreError
    where
        Self: Sized,
    {
        StoreError {
            store: self.name().to_owned(),
            reason: reason.to_string(),
        }
    }

    /// The Matrix ID bound to one 3PID (its address normalised).
    fn find(&self, medium: Medium, address: &str) -> Result<Option<String>, StoreError>;

    /// The answer of a single lookup: the Matrix ID and, for a bind made here, the validity
    /// it was signed with.
    fn find_signed(&self, medium: Medium, address: &str) -> Result<Option<Found>, StoreError> {
        Ok(self
            .find(medium, address)?
            .map(|mxid| Found { mxid, signed: None }))
    }

    /// The bindings of many 3PIDs (only those found). Stores that can do better than one
    /// query per 3PID override this.
    fn find_many(&self, threepids: &[(Medium, String)]) -> Result<Vec<Binding>, StoreError> {
        find_one_by_one(self, threepids)
    }

    /// Hands every binding to `sink`, one at a time (the hash index of v2 lookups is built
    /// from them without holding them all); `None` if this store cannot list.
    fn list(&self, _sink: &mut dyn FnMut(Binding)) -> Option<Result<(), StoreError>> {
        None
    }

    /// Checks the password of `user` (one of `matrix.domain`): the user if it is right,
    /// `None` if the user is unknown here or the password wrong (or the store does not
    /// authenticate).
    fn authenticate(
        &self,
        _user: &UserId,
        _password: &str,
    ) -> Result<Option<AuthenticatedUser>, StoreError> {
        Ok(None)
    }
}

/// A config map keyed by medium names (`attribute.threepid`, `identity.medium`), keyed by
/// `Medium`; `key` (`ldap.attribute.threepid`) names it in errors.
pub fn by_medium<V: Clone>(
    map: &BTreeMap<String, V>,
    key: &str,
) -> Result<BTreeMap<Medium, V>, String> {
    map.iter()
        .map(|(m, v)| match Medium::parse(m) {
            Some(medium) => Ok((medium, v.clone())),
            None => Err(format!("{key}.{m}: not a medium (email, msisdn)")),
        })
        .collect()
}

/// Many 3PIDs asked one at a time, for stores without a bulk query.
pub fn find_one_by_one<S: IdentityStore + ?Sized>(
    store: &S,
    threepids: &[(Medium, String)],
) -> Result<Vec<Binding>, StoreError> {
    let mut found = Vec::new();
    for (medium, address) in threepids {
        if let Some(mxid) = store.find(*medium, address)? {
            found.push(Binding {
                medium: *medium,
                address: address.clone(),
                mxid,
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medium_keys_of_the_config_are_mediums() {
        let mut map = BTreeMap::new();
        map.insert("email".to_owned(), 1);
        assert_eq!(
            by_medium(&map, "ldap.attribute.threepid").unwrap()[&Medium::Email],
            1
        );
        map.insert("fax".to_owned(), 2);
        assert_eq!(
            by_medium(&map, "ldap.attribute.threepid").unwrap_err(),
            "ldap.attribute.threepid.fax: not a medium (email, msisdn)"
        );
    }
}
