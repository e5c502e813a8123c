//! `storage`: where mxisd keeps its own state.

use super::check::Resolver;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub sqlite_database: PathBuf,
}

impl Resolver<'_> {
    pub(super) fn storage(&mut self, s: raw::Storage) -> Result<StorageConfig, String> {
        match self.non_empty("storage.backend", s.backend)?.as_deref() {
            None | Some("sqlite") => {}
            Some("postgresql") => {
                return Err(self.at(
                    "storage.backend",
                    "mxisd's own state on PostgreSQL (for several instances on one database) is not in this version yet; use sqlite",
                ))
            }
            Some(other) => {
                return Err(self.at(
                    "storage.backend",
                    format!("'{other}' is not sqlite or postgresql"),
                ))
            }
        }
        let provider = s.provider.unwrap_or_default();
        self.unsupported("storage.provider", &provider.unsupported());
        let database = self
            .non_empty(
                "storage.provider.sqlite.database",
                provider.sqlite.and_then(|s| s.database),
            )?
            .unwrap_or_else(|| "/var/lib/mxisd/mxisd.db".into());
        Ok(StorageConfig {
            sqlite_database: PathBuf::from(database),
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
        } unsupported {
            postgresql = "postgresql",
        }
    }
    section! {
        Sqlite {
            database: String = "database",
        }
    }
}
