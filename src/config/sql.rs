//! `sql` and `synapseSql`: mxisd's SQL identity store, SQLite or PostgreSQL, and its
//! Synapse preset.

use super::check::Resolver;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlKind {
    Sqlite,
    Postgresql,
}

#[derive(Debug, Clone)]
pub struct SqlStoreConfig {
    /// `sql` or `synapseSql`: the name in logs and errors.
    pub name: &'static str,
    pub kind: SqlKind,
    /// SQLite: the file. PostgreSQL: mxisd's `//host[:port]/db?user=…&password=…`, a
    /// `postgresql://` URL, or `key=value` pairs.
    pub connection: String,
    /// Connect and statement timeout.
    pub timeout: Duration,
    /// PostgreSQL: `<name>.tls`.
    pub tls: super::DbTls,
    /// The query column holds full Matrix IDs (`true`) or localparts.
    pub mxid_column: bool,
    /// Finds one 3PID: parameters medium, address (`?` placeholders).
    pub query: String,
    /// Per-medium replacements of `query`.
    pub medium_queries: std::collections::BTreeMap<String, String>,
    /// Lists every binding for the hash index: columns medium, address, id.
    pub list_query: String,
}

/// mxisd's default: Synapse's table of 3PIDs.
pub const SQL_DEFAULT_QUERY: &str =
    "SELECT user_id AS uid FROM user_threepids WHERE medium = ? AND address = ?";
pub const SQL_DEFAULT_LIST_QUERY: &str = "SELECT medium, address, user_id FROM user_threepids";

impl Resolver<'_> {
    pub(super) fn sql(
        &mut self,
        name: &'static str,
        s: raw::Sql,
    ) -> Result<Option<SqlStoreConfig>, String> {
        if s.enabled != Some(true) {
            return Ok(None);
        }
        self.unsupported(name, &s.unsupported());
        // mxisd's default type is sqlite.
        let kind = match self.non_empty(&format!("{name}.type"), s.kind)?.as_deref() {
            None | Some("sqlite") => SqlKind::Sqlite,
            Some("postgresql") => SqlKind::Postgresql,
            Some(other @ ("mysql" | "mariadb")) => {
                return Err(self.at(
                    &format!("{name}.type"),
                    format!("this version does not implement the {other} identity store (sqlite and postgresql only): mxisd would stop here rather than answer every lookup with nothing"),
                ))
            }
            Some(other) => {
                return Err(self.at(
                    &format!("{name}.type"),
                    format!("'{other}' is not sqlite or postgresql"),
                ))
            }
        };
        let written = self
            .non_empty(&format!("{name}.connection"), s.connection)?
            .ok_or_else(|| self.required(&format!("{name}.connection"), ""))?;
        let timeout = self.seconds(&format!("{name}.timeout"), s.timeout, 10, 300)?;
        let (connection, tls) = match kind {
            SqlKind::Postgresql => self.pg_connection(
                &format!("{name}.connection"),
                &written,
                &format!("{name}.tls"),
                s.tls,
            )?,
            SqlKind::Sqlite if s.tls.is_some() => {
                return Err(self.at(&format!("{name}.tls"), "is for `type: postgresql` only"))
            }
            SqlKind::Sqlite => (
                written,
                super::DbTls {
                    mode: super::TlsMode::Disable,
                    ca_file: None,
                },
            ),
        };
        // Accepted, with nothing to do: room names come with the store-invite request.
        let _ = s.legacy_room_names;
        let identity = s.identity.unwrap_or_default();
        if identity.enabled == Some(false) {
            return Ok(None); // the store serves no lookups
        }
        let mxid_column = match identity.kind.as_deref() {
            None | Some("mxid") => true,
            Some("localpart") | Some("uid") => false,
            Some(other) => {
                return Err(self.at(
                    &format!("{name}.identity.type"),
                    format!("'{other}' is not mxid or localpart"),
                ))
            }
        };
        Ok(Some(SqlStoreConfig {
            name,
            kind,
            connection,
            timeout,
            tls,
            mxid_column,
            query: identity.query.unwrap_or_else(|| SQL_DEFAULT_QUERY.into()),
            medium_queries: identity.medium.unwrap_or_default(),
            list_query: s
                .lookup
                .and_then(|l| l.query)
                .unwrap_or_else(|| SQL_DEFAULT_LIST_QUERY.into()),
        }))
    }
}

/// `sql` and `synapseSql` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        /// mxisd's SQL identity store (`sql`) and its Synapse preset (`synapseSql`).
        Sql {
            enabled: bool = "enabled",
            kind: String = "type",
            connection: String = "connection",
            timeout: u64 = "timeout",
            identity: SqlIdentity = "identity",
            lookup: SqlLookup = "lookup",
            legacy_room_names: bool = "legacyRoomNames",
            tls: crate::config::postgresql::raw::Tls = "tls",
        } unsupported {
            auth = "auth",
            directory = "directory",
            profile = "profile",
        }
    }
    section! {
        SqlIdentity {
            enabled: bool = "enabled",
            kind: String = "type",
            query: String = "query",
            medium: std::collections::BTreeMap<String, String> = "medium",
        }
    }
    section! {
        SqlLookup {
            query: String = "query",
        }
    }
}
