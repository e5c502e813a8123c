//! `storage`: where mxisd keeps its own state: SQLite (the embedded default, one instance)
//! or PostgreSQL (ma1sd's `storage.provider.postgresql`; several instances on one database).

use super::check::Resolver;
use super::postgresql::PostgresConfig;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub enum StorageConfig {
    Sqlite { database: PathBuf },
    Postgresql(PostgresConfig),
}

impl StorageConfig {
    /// Where the state is, for messages (never the password).
    pub fn describe(&self) -> String {
        match self {
            StorageConfig::Sqlite { database } => {
                format!("SQLite database {}", database.display())
            }
            StorageConfig::Postgresql(pg) => {
                format!("PostgreSQL database {}", redact(&pg.connection))
            }
        }
    }
}

/// A connection string without its password (`user:secret@` of a URL, `password=…`).
fn redact(connection: &str) -> String {
    let mut out = connection.to_owned();
    if let (Some(scheme), Some(at)) = (out.find("://"), out.find('@')) {
        if let Some(colon) = out[scheme + 3..at].find(':') {
            out.replace_range(scheme + 3 + colon + 1..at, "***");
        }
    }
    if let Some(start) = out.find("password=") {
        let from = start + "password=".len();
        let end = out[from..].find([' ', '&']).map_or(out.len(), |e| from + e);
        out.replace_range(from..end, "***");
    }
    out
}

impl Resolver<'_> {
    pub(super) fn storage(&mut self, s: raw::Storage) -> Result<StorageConfig, String> {
        let provider = s.provider.unwrap_or_default();
        match self.non_empty("storage.backend", s.backend)?.as_deref() {
            None | Some("sqlite") => {
                let database = self
                    .non_empty(
                        "storage.provider.sqlite.database",
                        provider.sqlite.and_then(|s| s.database),
                    )?
                    .unwrap_or_else(|| "/var/lib/mxisd/mxisd.db".into());
                Ok(StorageConfig::Sqlite {
                    database: PathBuf::from(database),
                })
            }
            Some("postgresql") => Ok(StorageConfig::Postgresql(
                self.state_postgresql(provider.postgresql.unwrap_or_default())?,
            )),
            Some(other) => Err(self.at(
                "storage.backend",
                format!("'{other}' is not sqlite or postgresql"),
            )),
        }
    }

    fn state_postgresql(&mut self, p: raw::Postgresql) -> Result<PostgresConfig, String> {
        const AT: &str = "storage.provider.postgresql";
        let database = self.non_empty(&format!("{AT}.database"), p.database)?;
        let connection = self.non_empty(&format!("{AT}.connection"), p.connection)?;
        let (key, written) = match (database, connection) {
            (Some(_), Some(_)) => {
                return Err(self.at(
                    &format!("{AT}.connection"),
                    format!("write either `{AT}.database` (ma1sd's //host[:port]/db) or `connection`, not both"),
                ))
            }
            (Some(d), None) => ("database", d),
            (None, Some(c)) => ("connection", c),
            (None, None) => {
                return Err(self.required(
                    &format!("{AT}.database"),
                    " (//host[:port]/db) when storage.backend is postgresql, or `connection`",
                ))
            }
        };
        let (connection, tls) = self.pg_connection(
            &format!("{AT}.{key}"),
            &written,
            &format!("{AT}.tls"),
            p.tls,
        )?;
        let pool_size = match p.pool_size.unwrap_or(8) {
            n @ 1..=1000 => n as usize,
            n => {
                return Err(self.at(
                    &format!("{AT}.poolSize"),
                    format!("{n} is outside 1..=1000"),
                ))
            }
        };
        Ok(PostgresConfig {
            timeout: self.seconds(&format!("{AT}.timeout"), p.timeout, 5, 300)?,
            tls,
            username: self.non_empty(&format!("{AT}.username"), p.username)?,
            password: p.password,
            pool_size,
            connection,
        })
    }
}

/// `storage` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        Storage {
            backend: String = "backend",
            provider: StorageProvider = "provider",
        }
    }
    section! {
        StorageProvider {
            sqlite: Sqlite = "sqlite",
            postgresql: Postgresql = "postgresql",
        }
    }
    section! {
        Sqlite {
            database: String = "database",
        }
    }
    section! {
        Postgresql {
            database: String = "database",
            username: String = "username",
            password: String = "password",
            connection: String = "connection",
            pool_size: u64 = "poolSize",
            timeout: u64 = "timeout",
            tls: crate::config::postgresql::raw::Tls = "tls",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgresql://mxisd:s3cret@db.example.org:5432/mxisd"),
            "postgresql://mxisd:***@db.example.org:5432/mxisd"
        );
        assert_eq!(
            redact("host=db user=mxisd password=s3cret dbname=mxisd"),
            "host=db user=mxisd password=*** dbname=mxisd"
        );
        assert_eq!(
            redact("postgresql://db.example.org:5432/mxisd?user=a&password=b&x=1"),
            "postgresql://db.example.org:5432/mxisd?user=a&password=***&x=1"
        );
        assert_eq!(redact("postgresql://db:5432/x"), "postgresql://db:5432/x");
    }
}
