//! A PostgreSQL connection as written under `storage.provider.postgresql` (our own state)
//! and in the `sql` / `synapseSql` identity stores: the connection string and its `tls`
//! subsection (`mode: disable | require | verify-full`, `caFile`).

use super::check::Resolver;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// Encrypted, the server's certificate not checked (libpq's `require`).
    Require,
    /// Encrypted, the certificate checked against `caFile` (else the system's CAs) and the
    /// host name.
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbTls {
    pub mode: TlsMode,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// What the `postgres` crate reads: a `postgresql://` URL or `key=value` pairs (mxisd's
    /// JDBC-style `//host[:port]/db` is turned into a URL).
    pub connection: String,
    /// The user and password written apart from the connection (ma1sd's keys), if any.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The connect deadline, `statement_timeout`, `lock_timeout` and the pool's checkout.
    pub timeout: Duration,
    pub pool_size: usize,
    pub tls: DbTls,
}

/// mxisd's JDBC-style `//host[:port]/db?user=…` as a URL; anything else as written.
pub fn connection_text(written: &str) -> String {
    match written.strip_prefix("//") {
        Some(rest) => format!("postgresql://{rest}"),
        None => written.to_owned(),
    }
}

impl Resolver<'_> {
    /// The `tls` subsection at `path`. Unwritten: what the connection string's `sslmode`
    /// asks for (`require`), else no TLS, as before these keys existed.
    pub(super) fn db_tls(
        &self,
        path: &str,
        t: Option<raw::Tls>,
        connection: &str,
    ) -> Result<DbTls, String> {
        let t = t.unwrap_or_default();
        let mode_path = format!("{path}.mode");
        let mode = match self.non_empty(&mode_path, t.mode)?.as_deref() {
            Some("disable") => TlsMode::Disable,
            Some("require") => TlsMode::Require,
            Some("verify-full") => TlsMode::VerifyFull,
            Some(other) => {
                return Err(self.at(
                    &mode_path,
                    format!("'{other}' is not disable, require or verify-full"),
                ))
            }
            None if connection.contains("sslmode=require") => TlsMode::Require,
            None => TlsMode::Disable,
        };
        let ca_path = format!("{path}.caFile");
        let ca_file = self.readable_file(&ca_path, t.ca_file)?;
        if ca_file.is_some() && mode != TlsMode::VerifyFull {
            return Err(self.at(
                &ca_path,
                format!("is only used with `{mode_path}: verify-full`"),
            ));
        }
        Ok(DbTls { mode, ca_file })
    }
}

pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        Tls {
            mode: String = "mode",
            ca_file: String = "caFile",
        }
    }
}
