//! The SQLite dialect: the embedded default, for one mxisd. A lock file next to the
//! database keeps a second mxisd off it: our caches rely on being its only writer, and
//! several instances need PostgreSQL.

use super::dialect::{Conn, Dialect, Kind, Param, Row, Tx, Value};
use super::StateError;
use crate::pool::Pool;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::TransactionBehavior;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another writer before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free connection before it fails.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Sqlite {
    pool: Pool<rusqlite::Connection>,
    /// Held (locked) for as long as we use the database.
    _lock: File,
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path` with `connections` connections.
    pub fn open(path: &Path, connections: usize) -> Result<Sqlite, StateError> {
        create_private_file(path).map_err(StateError::Io)?;
        // One lock per file, however the path to it is written (a symlink, `..`).
        let lock = lock_file(&fs::canonicalize(path).map_err(StateError::Io)?)?;
        let mut conns = Vec::new();
        for _ in 0..connections.max(1) {
            let conn = rusqlite::Connection::open(path).map_err(sqlite_error)?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(sqlite_error)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(sqlite_error)?;
            conn.pragma_update(None, "foreign_keys", "ON")
                .map_err(sqlite_error)?;
            conns.push(conn);
        }
        Ok(Sqlite {
            pool: Pool::new(conns, CHECKOUT_TIMEOUT),
            _lock: lock,
        })
    }
}

impl Dialect for Sqlite {
    fn kind(&self) -> Kind {
        Kind::Sqlite
    }

    fn run(
        &self,
        tx: Tx,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        self.pool.with(|c| match tx {
            Tx::Autocommit => work(c),
            Tx::Transaction | Tx::Migrate => {
                let t = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                work(&mut &*t)?;
                t.commit().map_err(sqlite_error)
            }
        })
    }
}

impl Conn for rusqlite::Connection {
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StateError> {
        Conn::execute(&mut &*self, sql, params)
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(Row) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        Conn::query_each(&mut &*self, sql, params, each)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StateError> {
        Conn::batch(&mut &*self, sql)
    }
}

/// A transaction derefs to its connection: both run statements through this.
impl Conn for &rusqlite::Connection {
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StateError> {
        let mut stmt = self
            .prepare_cached(&question_marks(sql))
            .map_err(sqlite_error)?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params))
            .map_err(sqlite_error)?;
        Ok(n as u64)
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(Row) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let mut stmt = self
            .prepare_cached(&question_marks(sql))
            .map_err(sqlite_error)?;
        let columns = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(sqlite_error)?;
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(sqlite_error)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    other => {
                        return Err(StateError::schema(format!(
                            "column {i}: unexpected {:?}",
                            other.data_type()
                        )))
                    }
                });
            }
            each(Row(values))?;
        }
        Ok(())
    }

    fn batch(&mut self, sql: &str) -> Result<(), StateError> {
        self.execute_batch(sql).map_err(sqlite_error)
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Int(Some(n)) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(n)),
            Param::Text(Some(t)) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Param::Int(None) | Param::Text(None) => {
                ToSqlOutput::Owned(rusqlite::types::Value::Null)
            }
        })
    }
}

/// `$1` placeholders (written for PostgreSQL) as SQLite's `?1`: SQLite reads `$1` as a
/// *named* parameter numbered by first appearance, which would bind wrongly whenever a
/// statement names `$2` before `$1`.
fn question_marks(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => quoted = !quoted,
            '$' if !quoted => {
                out.push('?');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

fn sqlite_error(e: rusqlite::Error) -> StateError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match e.sqlite_error_code() {
        // Another writer held the database for longer than the busy timeout.
        Some(DatabaseBusy | DatabaseLocked) => StateError::Unavailable {
            store: Kind::Sqlite.name(),
            why: e.to_string(),
        },
        _ => StateError::Database {
            store: Kind::Sqlite.name(),
            why: e.to_string(),
        },
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

/// `<database>.lock`, locked for us alone. A separate file: an `flock` on the database
/// itself would be safe, but a second descriptor on it is not (closing it drops SQLite's
/// own POSIX locks).
fn lock_file(database: &Path) -> Result<File, StateError> {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&name)
        .map_err(StateError::Io)?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(StateError::InUse(database.display().to_string()));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::question_marks;

    #[test]
    fn placeholders_are_numbered_question_marks() {
        assert_eq!(
            question_marks("SELECT a FROM t WHERE b = $2 AND c = '$1' AND d = $1"),
            "SELECT a FROM t WHERE b = ?2 AND c = '$1' AND d = ?1"
        );
    }
}
