//! `matrix`: the Matrix domain this server answers for, and which API versions it serves.

use super::check::Resolver;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct MatrixConfig {
    /// The Matrix domain of the homeserver(s) this server is authoritative for.
    pub domain: String,
    /// Serve the unauthenticated `/_matrix/identity/api/v1` paths.
    pub v1: bool,
    /// Serve the `/_matrix/identity/v2` paths.
    pub v2: bool,
    /// `matrix.identity.servers`: lists of other identity servers by label (base URLs without
    /// a trailing `/`), named by `forward.servers` and by the session policy's `toRemote.server`.
    pub identity_servers: BTreeMap<String, Vec<String>>,
}

/// The label mxisd 1.4.6 defined by default; matrix.org no longer serves v1.
pub const MATRIX_ORG_LABEL: &str = "matrix-org";

impl Resolver<'_> {
    pub(super) fn matrix(&mut self, m: raw::Matrix) -> Result<MatrixConfig, String> {
        let domain = self.non_empty("matrix.domain", m.domain)?.ok_or_else(|| {
            self.required(
                "matrix.domain",
                ": the domain of your Matrix IDs (e.g. example.org for @alice:example.org)",
            )
        })?;
        if domain.contains('/') || domain.contains('@') || domain.contains(char::is_whitespace) {
            return Err(self.at(
                "matrix.domain",
                format!("'{domain}' is not a domain name (no scheme, path or user)"),
            ));
        }
        let identity_servers = self.identity_servers(m.identity.and_then(|i| i.servers))?;
        Ok(MatrixConfig {
            domain,
            v1: m.v1.unwrap_or(true),
            v2: m.v2.unwrap_or(true),
            identity_servers,
        })
    }

    /// `matrix.identity.servers`, mxisd's default (`matrix-org: [https://matrix.org]`) when
    /// absent. Every entry an http(s) base URL; trailing `/` dropped so paths join cleanly.
    fn identity_servers(
        &self,
        written: Option<BTreeMap<String, Vec<String>>>,
    ) -> Result<BTreeMap<String, Vec<String>>, String> {
        let Some(written) = written else {
            return Ok(BTreeMap::from([(
                MATRIX_ORG_LABEL.to_owned(),
                vec!["https://matrix.org".to_owned()],
            )]));
        };
        let mut lists = BTreeMap::new();
        for (label, urls) in written {
            let path = format!("matrix.identity.servers.{label}");
            if urls.is_empty() {
                return Err(self.at(&path, "lists no server"));
            }
            let mut list = Vec::with_capacity(urls.len());
            for url in urls {
                self.http_url(&path, &url)?;
                list.push(url.trim_end_matches('/').to_owned());
            }
            lists.insert(label, list);
        }
        Ok(lists)
    }
}

/// `matrix` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        Matrix {
            domain: String = "domain",
            v1: bool = "v1",
            v2: bool = "v2",
            identity: MatrixIdentity = "identity",
        }
    }
    section! {
        MatrixIdentity {
            servers: std::collections::BTreeMap<String, Vec<String>> = "servers",
        }
    }
}
