//! `memory`: mxisd's static identity store, written in the config.

use super::check::Resolver;

#[derive(Debug, Clone)]
pub struct MemoryConfig {
    pub identities: Vec<MemoryIdentity>,
    /// Whether its bindings are listed into the hash index of v2 lookups
    /// (`memory.hashEnabled`).
    pub listed: bool,
}

#[derive(Debug, Clone)]
pub struct MemoryIdentity {
    pub username: String,
    pub password: Option<String>,
    pub display_name: Option<String>,
    /// (medium, address) as written; stores normalise them.
    pub threepids: Vec<(String, String)>,
}

impl Resolver<'_> {
    /// The static store, when `memory.enabled` is true (mxisd's default: off).
    pub(super) fn memory(&mut self, m: raw::Memory) -> Result<Option<MemoryConfig>, String> {
        if m.enabled != Some(true) {
            return Ok(None);
        }
        let mut identities = Vec::new();
        for (i, id) in m.identities.unwrap_or_default().into_iter().enumerate() {
            let at = format!("memory.identities[{i}]");
            if !id.unsupported().is_empty() {
                self.unsupported(&at, &id.unsupported());
            }
            let username = id
                .username
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| self.required(&format!("{at}.username"), ""))?;
            let threepids = id
                .threepids
                .unwrap_or_default()
                .into_iter()
                .map(|t| match (t.medium, t.address) {
                    (Some(m), Some(a)) => Ok((m, a)),
                    _ => Err(self.required(
                        &format!("{at}.threepids[].medium"),
                        " with an address in every entry",
                    )),
                })
                .collect::<Result<_, _>>()?;
            identities.push(MemoryIdentity {
                username: username.trim().to_owned(),
                password: id.password,
                display_name: id.display_name,
                threepids,
            });
        }
        Ok(Some(MemoryConfig {
            identities,
            listed: m.hash_enabled.unwrap_or(true),
        }))
    }
}

/// `memory` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        /// mxisd's static identity store.
        Memory {
            enabled: bool = "enabled",
            hash_enabled: bool = "hashEnabled",
            identities: Vec<MemoryIdentity> = "identities",
        }
    }
    section! {
        MemoryIdentity {
            username: String = "username",
            password: String = "password",
            display_name: String = "displayName",
            threepids: Vec<ThreePid> = "threepids",
        } unsupported {
            roles = "roles",
        }
    }
    section! {
        ThreePid {
            medium: String = "medium",
            address: String = "address",
        }
    }
}
