//! The binds made here (`binds.local.enabled`), as an identity store: last in the chain, as
//! the configured stores are the operator's directories and more authoritative. v2 hashed
//! lookups see them through the hash index's map of local binds, kept in step by the
//! change feed, so this store does not list. A v1 lookup answers a bind with the validity
//! its association was signed with at bind time, as sydent does.

use super::{Found, IdentityStore, Signed, StoreError};
use crate::state::State;
use crate::threepid::Medium;
use crate::user_id::UserId;
use std::sync::Arc;

pub struct LocalBinds {
    state: Arc<State>,
}

impl LocalBinds {
    pub fn new(state: Arc<State>) -> LocalBinds {
        LocalBinds { state }
    }
}

impl IdentityStore for LocalBinds {
    fn name(&self) -> &str {
        "local binds"
    }

    fn find(&self, medium: Medium, address: &str) -> Result<Option<String>, StoreError> {
        self.state
            .bound(medium, address)
            .map(|mxid| mxid.map(UserId::into_string))
            .map_err(|e| self.error(e))
    }

    fn find_signed(&self, medium: Medium, address: &str) -> Result<Option<Found>, StoreError> {
        let bind = self
            .state
            .bind_of(medium, address)
            .map_err(|e| self.error(e))?;
        Ok(bind.map(|b| Found {
            mxid: b.mxid.into_string(),
            signed: Some(Signed {
                ts: b.ts,
                not_before: b.not_before,
                not_after: b.not_after,
            }),
        }))
    }
}
