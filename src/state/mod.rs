//! Our own state (tokens, terms, the pepper, ephemeral keys, the delivery queue, the change
//! feed; sessions, binds and invites next), on SQLite (the embedded default, one instance)
//! or PostgreSQL (several instances on one database).
//!
//! Each table family has its own file with its SQL next to its functions, written once in
//! portable SQL (`dialect.rs`); `sqlite.rs` and `postgres.rs` run it. The schema is built
//! by named migrations in `migrations/`, applied in order at start under a lock. Callers
//! never see SQL or a database crate's types.

mod accounts;
mod binds;
mod changes;
mod delivery;
mod dialect;
mod hashing;
mod invites;
mod migrations;
mod peers;
mod postgres;
mod queue;
mod remote_sessions;
mod sessions;
mod sqlite;
mod watch;

pub use binds::{Bind, LocalBind, StoredBind, BIND_TOPIC};
pub use changes::{Change, ChangeCursor, Changes};
pub use delivery::{Delivery, DeliveryKind, InviteMail, Onbind, PeerPushItem};
pub use hashing::Peppers;
pub use invites::{InviteRow, NewInvite};
pub use peers::{PartAdded, PeerPush, PushPart};
pub use postgres::target as pg_target;
pub use queue::Claimed;
pub use queue::QueueDepth;
pub use remote_sessions::{NewRemoteSession, RemoteSessionRow};
pub use sessions::{FailureBudget, Requested, SentToken, SessionRow, Submitted, TokenRequest};
pub use watch::TRUST_BOUND;

use crate::config::StorageConfig;
use crate::pool::Exhausted;
use dialect::{Conn, Dialect, Kind, Tx};
use std::fmt;
use std::time::Duration;

/// What a queue item's lease or a session resend's reservation adds to the longest its
/// send may take under the connector's deadlines: time to record the outcome.
pub const HOLD_MARGIN: Duration = Duration::from_secs(5);

pub struct State {
    db: Box<dyn Dialect>,
    /// When answers about tokens cached in memory are stale.
    tokens: std::sync::Arc<watch::TokenWatch>,
    /// Names this process as a claimer of queue items.
    instance: String,
}

#[derive(Debug)]
pub enum StateError {
    /// The database cannot be reached, did not answer in time, or every connection stayed
    /// busy: a 503, worth trying again.
    Unavailable {
        store: &'static str,
        why: String,
    },
    /// What the database refused or answered unexpectedly.
    Database {
        store: &'static str,
        why: String,
    },
    Io(std::io::Error),
    /// Another mxisd uses this SQLite database.
    InUse(String),
    /// The database was migrated by a newer mxisd.
    TooNew {
        unknown: Vec<String>,
    },
}

impl StateError {
    fn schema(why: String) -> StateError {
        StateError::Database {
            store: "state",
            why,
        }
    }

    /// The store named in a 503, when this is one.
    pub fn unavailable_store(&self) -> Option<&'static str> {
        match self {
            StateError::Unavailable { store, .. } => Some(store),
            _ => None,
        }
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Unavailable { store, why } => {
                write!(f, "state database ({store}) unavailable: {why}")
            }
            StateError::Database { store, why } => write!(f, "state database ({store}): {why}"),
            StateError::Io(e) => write!(f, "database file: {e}"),
            StateError::InUse(path) => write!(
                f,
                "another mxisd uses the SQLite database {path}; several instances need storage.backend: postgresql"
            ),
            StateError::TooNew { unknown } => write!(
                f,
                "the database has migrations this mxisd does not know ({}): it was used by a newer version; run that version",
                unknown.join(", ")
            ),
        }
    }
}

impl std::error::Error for StateError {}

impl From<Exhausted> for StateError {
    fn from(_: Exhausted) -> Self {
        // The store is named by `State::run`, which knows it.
        StateError::Unavailable {
            store: "",
            why: "no free connection in time".into(),
        }
    }
}

impl State {
    /// Opens the state `cfg` names, brings its schema up to date (waiting for another
    /// instance that is doing the same) and keeps `connections` SQLite connections open
    /// (PostgreSQL: `poolSize`, connected on first use; no bulkhead: the server's state is
    /// opened with [`State::open_bounded`]).
    pub fn open(cfg: &StorageConfig, connections: usize) -> Result<State, StateError> {
        State::open_bounded(cfg, connections, usize::MAX)
    }

    /// As [`State::open`], at most `callers` calls waiting on PostgreSQL at once
    /// (`http.backendWorkers`; past them a call fails at once).
    pub fn open_bounded(
        cfg: &StorageConfig,
        connections: usize,
        callers: usize,
    ) -> Result<State, StateError> {
        let db: Box<dyn Dialect> = match cfg {
            StorageConfig::Sqlite { database } => {
                Box::new(sqlite::Sqlite::open(database, connections)?)
            }
            StorageConfig::Postgresql(pg) => Box::new(postgres::Postgres::open(pg, callers)?),
        };
        migrations::apply(db.as_ref())?;
        let pg = match cfg {
            StorageConfig::Postgresql(pg) => Some(pg),
            StorageConfig::Sqlite { .. } => None,
        };
        Ok(State {
            tokens: watch::TokenWatch::start(db.kind(), pg),
            db,
            instance: instance_id(),
        })
    }

    /// What a SELECT in a write transaction adds to lock the rows it reads until the
    /// transaction ends: PostgreSQL's `FOR UPDATE`; nothing on SQLite, whose write
    /// transactions already exclude each other.
    fn lock_rows(&self) -> &'static str {
        match self.db.kind() {
            Kind::Postgres => " FOR UPDATE",
            Kind::Sqlite => "",
        }
    }

    /// "SQLite" or "PostgreSQL".
    pub fn store(&self) -> &'static str {
        self.db.kind().name()
    }

    /// The epoch under which token → user answers may be kept in memory now; `None` when
    /// they must be read from the database (the logout listener has not heard itself
    /// lately). Each logout, here or on another instance, starts a new epoch.
    pub fn token_epoch(&self) -> Option<u64> {
        self.tokens.epoch()
    }

    /// `work` with a connection, each statement committed on its own: for single
    /// statements and reads, which need no transaction.
    fn autocommit<T>(
        &self,
        mut work: impl FnMut(&mut dyn Conn) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        self.run(Tx::Autocommit, &mut work)
    }

    /// `work` in one transaction: all its statements or none.
    fn transaction<T>(
        &self,
        mut work: impl FnMut(&mut dyn Conn) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        self.run(Tx::Transaction, &mut work)
    }

    fn run<T>(
        &self,
        tx: Tx,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut out = None;
        self.db
            .run(tx, &mut |c| {
                out = Some(work(c)?);
                Ok(())
            })
            .inspect_err(|e| {
                crate::metrics::state_error(matches!(e, StateError::Unavailable { .. }))
            })
            .map_err(|e| match e {
                StateError::Unavailable { store: "", why } => StateError::Unavailable {
                    store: self.store(),
                    why,
                },
                e => e,
            })?;
        out.ok_or_else(|| StateError::schema("the work gave no result".into()))
    }
}

/// Host, process and a random part: unique among the instances sharing a database.
fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let random = crate::crypto::random::string_from(crate::crypto::random::ALPHANUMERIC, 8)
        .unwrap_or_default();
    format!("{host}/{}/{random}", std::process::id())
}

/// The newest schema migration this build applies: a database whose `schema_migrations`
/// ends here is current.
pub fn latest_migration() -> &'static str {
    migrations::latest()
}

impl State {
    /// Whether the database answers a trivial query (readiness).
    pub fn ping(&self) -> Result<(), StateError> {
        self.autocommit(|c| c.query("SELECT 1", &[]).map(|_| ()))
    }
}

/// For unit tests: a state of its own.
#[cfg(test)]
pub mod testing {
    use super::State;
    use crate::config::StorageConfig;

    /// A state in a new SQLite file, in a directory removed when it is dropped.
    pub struct TempState {
        pub state: State,
        dir: std::path::PathBuf,
    }

    impl Drop for TempState {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    pub fn temp_state(name: &str) -> TempState {
        let dir = std::env::temp_dir().join(format!(
            "mxisd-state-{name}-{}-{}",
            std::process::id(),
            crate::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let storage = StorageConfig::Sqlite {
            database: dir.join("state.db"),
        };
        TempState {
            state: State::open(&storage, 2).unwrap(),
            dir,
        }
    }
}
