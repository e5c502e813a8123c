//! mxisd's static store (`memory.identities[]`): users written in the config file, for small
//! sites and tests. Each identity's Matrix ID is `@<username>:<matrix.domain>`.

use super::{AuthenticatedUser, Binding, IdentityStore, StoreError};
use crate::config::MemoryConfig;
use crate::crypto::constant_time_eq;
use crate::threepid::{self, Medium};
use crate::user_id::UserId;

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
            let mxid = UserId::of(&id.username, domain).into_string();
            for (medium, address) in &id.threepids {
                let normal = Medium::parse(medium)
                    .and_then(|m| Some((m, threepid::address(m, address, region)?)));
                match normal {
                    Some((medium, address)) => bindings.push(Binding {
                        medium,
                        address,
                        mxid: mxid.clone(),
                    }),
                    None => log::warn!(
                        "memory store: {mxid} has a {medium} '{address}' that is not valid: skipped"
                    ),
                }
            }
        }
        let users = identities
            .iter()
            .map(|id| User {
                localpart: UserId::of(&id.username, domain).localpart().to_owned(),
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

    fn find(&self, medium: Medium, address: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .bindings
            .iter()
            .find(|b| b.medium == medium && b.address == address)
            .map(|b| b.mxid.clone()))
    }

    fn list(&self, sink: &mut dyn FnMut(Binding)) -> Option<Result<(), StoreError>> {
        if !self.listed {
            return None;
        }
        self.bindings.iter().cloned().for_each(sink);
        Some(Ok(()))
    }

    fn authenticate(
        &self,
        user_id: &UserId,
        password: &str,
    ) -> Result<Option<AuthenticatedUser>, StoreError> {
        let Some(user) = self
            .users
            .iter()
            .find(|u| u.localpart == user_id.localpart())
        else {
            return Ok(None);
        };
        let mxid = user_id.as_str();
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
                .map(|b| (b.medium, b.address.clone()))
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MemoryIdentity;

    #[test]
    fn users_are_found_by_normalised_3pids_under_lower_case_ids() {
        let config = MemoryConfig {
            identities: vec![MemoryIdentity {
                username: "Carol".into(),
                password: Some("pw".into()),
                display_name: None,
                threepids: vec![
                    ("email".into(), "Carol@Example.org".into()),
                    ("fax".into(), "123".into()),
                ],
            }],
            listed: true,
        };
        let store = MemoryStore::new(&config, "example.org", None);
        assert_eq!(
            store.find(Medium::Email, "carol@example.org"),
            Ok(Some("@carol:example.org".into()))
        );
        let user = UserId::parse("@carol:example.org").unwrap();
        let found = store.authenticate(&user, "pw").unwrap().unwrap();
        assert_eq!(
            found.threepids,
            [(Medium::Email, "carol@example.org".into())]
        );
        assert_eq!(store.authenticate(&user, "nope"), Ok(None));
    }
}
