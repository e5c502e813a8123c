//! Our own state (tokens, terms, sessions, invites, ephemeral keys, the pepper): SQLite now,
//! behind this `State` API so that PostgreSQL can serve the same calls later.
//!
//! Each table family has its own file with its SQL next to its functions; the schema is
//! built by numbered migrations in `migrations/`, applied in order at start. Callers never
//! see SQL or rusqlite types.

mod accounts;
mod ephemeral_keys;
mod hashing;
mod migrations;

use crate::pool::{Exhausted, Pool};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another writer before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free connection before it fails.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct State {
    pool: Pool<rusqlite::Connection>,
}

#[derive(Debug)]
pub enum StateError {
    Sqlite(rusqlite::Error),
    Io(std::io::Error),
    /// Every connection stayed busy for longer than the checkout timeout.
    Exhausted,
    /// The database was written by a newer mxisd.
    TooNew {
        found: i64,
        known: i64,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Sqlite(e) => write!(f, "database: {e}"),
            StateError::Io(e) => write!(f, "database file: {e}"),
            StateError::Exhausted => f.write_str("database: no free connection in time"),
            StateError::TooNew { found, known } => write!(
                f,
                "database schema version {found} is newer than this mxisd knows ({known}); run the newer version"
            ),
        }
    }
}

impl std::error::Error for StateError {}

impl From<Exhausted> for StateError {
    fn from(_: Exhausted) -> Self {
        StateError::Exhausted
    }
}

impl From<rusqlite::Error> for StateError {
    fn from(e: rusqlite::Error) -> Self {
        StateError::Sqlite(e)
    }
}

impl State {
    /// Opens (creating if needed) the SQLite database at `path`, brings its schema up to
    /// date and keeps `connections` connections open.
    pub fn open_sqlite(path: &Path, connections: usize) -> Result<State, StateError> {
        create_private_file(path).map_err(StateError::Io)?;
        let open = || -> Result<rusqlite::Connection, StateError> {
            let conn = rusqlite::Connection::open(path)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            Ok(conn)
        };
        let mut first = open()?;
        migrations::apply(&mut first)?;
        let mut conns = vec![first];
        for _ in 1..connections.max(1) {
            conns.push(open()?);
        }
        Ok(State {
            pool: Pool::new(conns, CHECKOUT_TIMEOUT),
        })
    }

    /// The schema version now in the database.
    pub fn schema_version(&self) -> Result<i64, StateError> {
        self.pool
            .with(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
    }
}

/// The database holds secrets (token hashes, session tokens): create it and its directory
/// readable by us alone. An existing file keeps the mode the operator gave it.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}
