//! The PostgreSQL dialect: several mxisd instances on one database. Connections are made
//! on first use and remade after a failure, so a database that goes away makes requests
//! fail (503) until it is back, with no restart; every call is bounded as `pg` describes,
//! and a caller waits at most the timeout for a free connection.
//!
//! Every call passes a [`Bulkhead`] first (`http.backendWorkers` places, fewer than the
//! workers): a database that stalls holds that many workers, and a call past them fails at
//! once (503) instead of waiting for a connection, so the other endpoints keep serving.

use super::dialect::{Conn, Dialect, Kind, Param, Row, Tx, Value};
use super::StateError;
use crate::config::PostgresConfig;
use crate::gate::Bulkhead;
use crate::pg::{with_causes, PgTarget};
use crate::pool::Pool;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The advisory lock migrations hold ("mxisd" in ASCII): one instance migrates at a time.
const MIGRATION_LOCK: i64 = 0x006d_7869_7364;
/// How long a migration may wait for another instance's and run; longer than a
/// statement's timeout, as a migration may rewrite a table.
const MIGRATION_TIMEOUT: &str = "120s";

pub struct Postgres {
    target: PgTarget,
    pool: Pool<PgConn>,
    /// The callers that may wait on the database at once.
    bulkhead: Bulkhead,
}

/// A pooled connection (none until first used, or after a failure) and its prepared
/// statements.
struct PgConn {
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
    last_used: Instant,
}

impl Default for PgConn {
    fn default() -> Self {
        PgConn {
            client: None,
            statements: HashMap::new(),
            last_used: Instant::now(),
        }
    }
}

/// A connection unused for this long is checked (one round trip) before it is used again.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Where the state database is and how to connect to it (`storage.provider.postgresql`):
/// for the pool, the logout listener and `check-config --connect` alike.
pub fn target(cfg: &PostgresConfig) -> Result<PgTarget, String> {
    PgTarget::new(
        &cfg.connection,
        (cfg.username.as_deref(), cfg.password.as_deref()),
        cfg.timeout,
        &cfg.tls,
        "storage.provider.postgresql",
    )
}

impl Postgres {
    /// The state database `cfg` names, at most `callers` calls waiting on it at once.
    pub fn open(cfg: &PostgresConfig, callers: usize) -> Result<Postgres, StateError> {
        let target = target(cfg).map_err(|why| StateError::Database {
            store: Kind::Postgres.name(),
            why,
        })?;
        let conns = (0..cfg.pool_size).map(|_| PgConn::default()).collect();
        Ok(Postgres {
            pool: Pool::new(conns, cfg.timeout).on_panic(|c| *c = PgConn::default()),
            target,
            bulkhead: Bulkhead::new(
                crate::metrics::Backend::State,
                "the state database (PostgreSQL)",
                callers,
                "http.backendWorkers",
            ),
        })
    }

    /// `work` in the way `tx` says, on `conn` (connected here if it is not, checked first
    /// if it sat idle: a database restarted since would fail the work half-way).
    fn attempt(
        &self,
        conn: &mut PgConn,
        tx: Tx,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let stale = conn.last_used.elapsed() > IDLE_CHECK
            && conn
                .client
                .as_mut()
                .is_some_and(|c| c.is_valid(self.target.timeout()).is_err());
        if stale || conn.client.as_ref().is_none_or(|c| c.is_closed()) {
            *conn = PgConn::default();
            conn.client = Some(
                self.target
                    .connect()
                    .map_err(|e| unavailable(e.to_string()))?,
            );
        }
        conn.last_used = Instant::now();
        if tx == Tx::Autocommit {
            return work(conn);
        }
        let result = begin(conn, tx).and_then(|()| work(conn));
        match result {
            Ok(()) => conn.batch("COMMIT"),
            Err(e) => {
                if conn.batch("ROLLBACK").is_err() {
                    *conn = PgConn::default();
                }
                Err(e)
            }
        }
    }
}

/// Opens the transaction; a migration's also waits for the migration lock.
fn begin(conn: &mut PgConn, tx: Tx) -> Result<(), StateError> {
    conn.batch("BEGIN")?;
    if tx == Tx::Migrate {
        conn.batch(&format!(
            "SET LOCAL statement_timeout = '{MIGRATION_TIMEOUT}'; SET LOCAL lock_timeout = '{MIGRATION_TIMEOUT}'"
        ))?;
        conn.execute("SELECT pg_advisory_xact_lock($1)", &[MIGRATION_LOCK.into()])?;
    }
    Ok(())
}

impl Dialect for Postgres {
    fn kind(&self) -> Kind {
        Kind::Postgres
    }

    fn run(
        &self,
        tx: Tx,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let _pass = self.bulkhead.enter().map_err(|r| unavailable(r.reason))?;
        self.pool.with(|conn| {
            let result = self.attempt(conn, tx, work);
            // A connection that failed with the database unavailable (lost, timed out, a
            // server gone read-only) is not trusted again: the next use connects anew.
            if matches!(result, Err(StateError::Unavailable { .. }))
                || conn.client.as_ref().is_none_or(|c| c.is_closed())
            {
                *conn = PgConn::default();
            }
            result
        })
    }
}

impl PgConn {
    fn client(&mut self) -> Result<&mut postgres::Client, StateError> {
        self.client
            .as_mut()
            .ok_or_else(|| unavailable("not connected".into()))
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, StateError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.client()?.prepare(sql).map_err(pg_error)?;
        self.statements.insert(sql.to_owned(), prepared.clone());
        Ok(prepared)
    }
}

impl Conn for PgConn {
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StateError> {
        let stmt = self.statement(sql)?;
        self.client()?
            .execute(&stmt, &to_sql(params))
            .map_err(pg_error)
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(Row) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let stmt = self.statement(sql)?;
        let mut rows = self
            .client()?
            .query_raw(&stmt, to_sql(params))
            .map_err(pg_error)?;
        while let Some(r) = rows.next().map_err(pg_error)? {
            each(row(&r)?)?;
        }
        Ok(())
    }

    fn batch(&mut self, sql: &str) -> Result<(), StateError> {
        self.client()?.batch_execute(sql).map_err(pg_error)
    }
}

fn to_sql<'a>(params: &'a [Param<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            Param::Int(v) => v as &(dyn ToSql + Sync),
            Param::Text(v) => v as &(dyn ToSql + Sync),
        })
        .collect()
}

fn row(r: &postgres::Row) -> Result<Row, StateError> {
    let mut values = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let value = match *column.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|n| Value::Int(n.into()))),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|b| Value::Int(b.into()))),
            _ => r
                .try_get::<_, Option<String>>(i)
                .map(|v| v.map(Value::Text)),
        };
        values.push(
            value
                .map_err(|e| StateError::schema(format!("column {i}: {e}")))?
                .unwrap_or(Value::Null),
        );
    }
    Ok(Row(values))
}

fn unavailable(why: String) -> StateError {
    StateError::Unavailable {
        store: Kind::Postgres.name(),
        why,
    }
}

/// A lost connection, a timeout, a server that refuses more work or writes (a standby after
/// a failover) is the database being unavailable (503, try again; the connection is not
/// used again); anything else, a statement or a value the server or the client refused,
/// is a bug of ours or of the schema (500).
fn pg_error(e: postgres::Error) -> StateError {
    let why = with_causes(&e);
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    let transient = e.is_closed()
        || io
        || e.code().is_some_and(|code| {
            let c = code.code();
            // 08: connection exceptions; 53: insufficient resources (too many
            // connections); 57: operator intervention (statement timeout, shutdown);
            // 40: serialization failure, deadlock; 55P03: lock_timeout; 25006: read-only.
            ["08", "53", "57", "40"]
                .iter()
                .any(|class| c.starts_with(class))
                || c == "55P03"
                || c == "25006"
        });
    if transient {
        unavailable(why)
    } else {
        StateError::Database {
            store: Kind::Postgres.name(),
            why,
        }
    }
}
