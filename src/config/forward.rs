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

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    /// The config with `extra`, and the warnings about forwarding.
    fn load(extra: &str) -> Result<crate::config::Loaded, String> {
        load_str(&format!("matrix:\n  domain: example.org\n{extra}"), "test")
            .map(|mut l| {
                l.warnings.retain(|w| w.contains("forward"));
                l
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn labels_become_base_urls_in_order_and_unknown_labels_are_refused() {
        let c = load("  identity:\n    servers:\n      a: ['https://a.example/', 'https://b.example']\n      c: ['https://c.example', 'https://a.example']\nforward:\n  servers: ['c', 'a']\n").unwrap();
        assert_eq!(
            c.config.forward.servers,
            [
                "https://c.example",
                "https://a.example",
                "https://b.example"
            ]
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let e = load("forward:\n  servers: ['lan']\n").unwrap_err();
        assert!(e.contains("forward.servers") && e.contains("'lan'"), "{e}");
        assert!(load("").unwrap().config.forward.servers.is_empty());
    }

    #[test]
    fn matrix_org_over_v1_is_warned_and_over_v2_is_not() {
        let v1 = load("forward:\n  servers: ['matrix-org']\n").unwrap();
        assert_eq!(v1.warnings.len(), 1, "{:?}", v1.warnings);
        assert!(
            v1.warnings[0].contains("https://matrix.org"),
            "{:?}",
            v1.warnings
        );
        let v2 = load("forward:\n  servers: ['matrix-org']\nlookup:\n  recursive:\n    accessTokens:\n      'https://matrix.org/': 'tok'\n").unwrap();
        assert!(v2.warnings.is_empty(), "{:?}", v2.warnings);
        assert_eq!(
            v2.config
                .lookup
                .recursive
                .access_tokens
                .get("https://matrix.org")
                .map(String::as_str),
            Some("tok")
        );
    }
}
