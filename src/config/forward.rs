//! `forward`: the identity servers asked after the local stores and DNS discovery, as labels
//! of `matrix.identity.servers`.

use super::check::Resolver;
use super::matrix::{MatrixConfig, MATRIX_ORG_LABEL};
use super::LookupConfig;

#[derive(Debug, Clone, Default)]
pub struct ForwardConfig {
    /// Base URLs (no trailing `/`) of the forwarders, in the order asked: each label of
    /// `forward.servers` in turn, each of its list's servers in turn.
    pub servers: Vec<String>,
}

impl Resolver<'_> {
    pub(super) fn forward(
        &mut self,
        f: raw::Forward,
        matrix: &MatrixConfig,
        lookup: &LookupConfig,
    ) -> Result<ForwardConfig, String> {
        let mut servers = Vec::new();
        for label in f.servers.unwrap_or_default() {
            let Some(list) = matrix.identity_servers.get(&label) else {
                return Err(self.at(
                    "forward.servers",
                    format!("'{label}' is not a label of matrix.identity.servers"),
                ));
            };
            let v1: Vec<&String> = list
                .iter()
                .filter(|url| !lookup.recursive.access_tokens.contains_key(url.as_str()))
                .collect();
            if label == MATRIX_ORG_LABEL && !v1.is_empty() {
                self.warnings.push(format!(
                    "forward.servers names `{MATRIX_ORG_LABEL}`: {} no longer answers v1 lookups, so forwarding there finds nobody; give it a v2 access token in lookup.recursive.accessTokens (README: \"Lookup process\")",
                    v1.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            for url in list {
                if !servers.contains(url) {
                    servers.push(url.clone());
                }
            }
        }
        Ok(ForwardConfig { servers })
    }
}

/// `forward` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        /// mxisd's forwarders: labels of `matrix.identity.servers`.
        Forward {
            servers: Vec<String> = "servers",
        }
    }
}
