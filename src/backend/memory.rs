//! mxisd's static store (`memory.identities[]`): users written in the config file, for small
//! sites and tests. Each identity's Matrix ID is `@<username>:<matrix.domain>`.

use super::{BackendError, Binding, IdentityStore};
use crate::config::MemoryIdentity;
use crate::threepid;

pub struct MemoryStore {
    bindings: Vec<Binding>,
}

impl MemoryStore {
    /// The identities of the config; 3PIDs that do not normalise are skipped with a warning.
    pub fn new(
        identities: &[MemoryIdentity],
        domain: &str,
        region: Option<phonenumber::country::Id>,
    ) -> MemoryStore {
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
        MemoryStore { bindings }
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

    fn list(&self) -> Option<Result<Vec<Binding>, BackendError>> {
        Some(Ok(self.bindings.clone()))
    }
}
