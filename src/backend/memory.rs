//! mxisd's static store (`memory.identities[]`): users written in the config file, for small
//! sites and tests. Each identity's Matrix ID is `@<username>:<matrix.domain>`.

use super::{AuthenticatedUser, BackendError, Binding, IdentityStore};
use crate::config::MemoryConfig;
use crate::threepid;

pub struct MemoryStore {
    bindings: Vec<Binding>,
    users: Vec<User>,
    /// `memory.hashEnabled`: listed into the hash index.
    listed: bool,
}

struct User {
    localpart: String,
    password: Option<String>,
    display_name: Option<String>,
}

impl MemoryStore {
    /// The identities of the config; 3PIDs that do not normalise are skipped with a warning.
    pub fn new(
        config: &MemoryConfig,
        domain: &str,
        region: Option<phonenumber::country::Id>,
    ) -> MemoryStore {
        let identities = &config.identities;
        let mut bindings = Vec::new();
        for id in identities {
            let mxid = format!("@{}:{domain}", id.username);
            for (medium, address) in &id.threepids {
                match threepid::address(medium, address, region) {
                    Some(address) => bindings.push(Binding {
                        medium: medium.clone(),
                        address,
                        mxid: mxid.clone(),
                    }),
                    None => {
                        log::warn!("memory store: {mxid} has a {medium} that is not valid: skipped")
                    }
                }
            }
        }
        let users = identities
            .iter()
            .map(|id| User {
                localpart: id.username.clone(),
                password: id.password.clone(),
                display_name: id.display_name.clone(),
            })
            .collect();
        MemoryStore {
            bindings,
            users,
            listed: config.listed,
        }
    }
}

impl IdentityStore for MemoryStore {
    fn name(&self) -> &str {
        "memory"
    }

    fn find(&self, medium: &str, address: &str) -> Result<Option<String>, BackendError> {
        Ok(self
            .bindings
            .iter()
            .find(|b| b.medium == medium && b.address == address)
            .map(|b| b.mxid.clone()))
    }

    fn list(&self, sink: &mut dyn FnMut(Binding)) -> Option<Result<(), BackendError>> {
        if !self.listed {
            return None;
        }
        self.bindings.iter().cloned().for_each(sink);
        Some(Ok(()))
    }

    fn authenticate(
        &self,
        localpart: &str,
        mxid: &str,
        password: &str,
    ) -> Result<Option<AuthenticatedUser>, BackendError> {
        let Some(user) = self.users.iter().find(|u| u.localpart == localpart) else {
            return Ok(None);
        };
        let right = user
            .password
            .as_deref()
            .is_some_and(|p| !p.is_empty() && constant_time_eq(p.as_bytes(), password.as_bytes()));
        Ok(right.then(|| AuthenticatedUser {
            mxid: mxid.to_owned(),
            display_name: user.display_name.clone(),
            threepids: self
                .bindings
                .iter()
                .filter(|b| b.mxid == mxid)
                .map(|b| (b.medium.clone(), b.address.clone()))
                .collect(),
        }))
    }
}

/// Compares without stopping at the first difference, so timing says nothing of the password.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
