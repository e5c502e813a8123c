//! `matrix`: the Matrix domain this server answers for, and which API versions it serves.

use super::check::Resolver;

#[derive(Debug, Clone)]
pub struct MatrixConfig {
    /// The Matrix domain of the homeserver(s) this server is authoritative for.
    pub domain: String,
    /// Serve the unauthenticated `/_matrix/identity/api/v1` paths.
    pub v1: bool,
    /// Serve the `/_matrix/identity/v2` paths.
    pub v2: bool,
}

impl Resolver<'_> {
    pub(super) fn matrix(&mut self, m: raw::Matrix) -> Result<MatrixConfig, String> {
        self.unsupported("matrix", &m.unsupported());
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
        Ok(MatrixConfig {
            domain,
            v1: m.v1.unwrap_or(true),
            v2: m.v2.unwrap_or(true),
        })
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
        } unsupported {
            identity = "identity",
        }
    }
}
