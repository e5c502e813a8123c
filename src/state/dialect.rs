//! The seam between the state's SQL and the two databases it runs on. Statements are
//! written once, in portable SQL with PostgreSQL's `$1` placeholders (`ON CONFLICT`,
//! `RETURNING`, `BIGINT`); a dialect runs them on its own connections, and `Kind` names
//! the few places where the SQL must differ.

use super::StateError;
use crate::opaque_id::{ClientSecret, Sid};
use crate::threepid::Medium;
use crate::user_id::UserId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    /// Names the store in errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "SQLite",
            Kind::Postgres => "PostgreSQL",
        }
    }
}

/// How a unit of work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tx {
    /// Each statement committed on its own.
    Autocommit,
    /// One transaction; on SQLite it takes the write lock at once (the one writer), so two
    /// writers never deadlock upgrading a read lock.
    Transaction,
    /// One transaction holding the lock that other instances' migrations wait for.
    Migrate,
}

/// A statement parameter: every column we store is text or a 64-bit integer.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Param::Text(v)
    }
}

// The typed values are stored as their text: here, at the state's edge, and read back with
// `Row::parsed`.
impl From<Medium> for Param<'_> {
    fn from(v: Medium) -> Self {
        Param::Text(Some(v.as_str()))
    }
}

impl<'a> From<&'a UserId> for Param<'a> {
    fn from(v: &'a UserId) -> Self {
        Param::Text(Some(v.as_str()))
    }
}

impl<'a> From<&'a Sid> for Param<'a> {
    fn from(v: &'a Sid) -> Self {
        Param::Text(Some(v.as_str()))
    }
}

impl<'a> From<&'a ClientSecret> for Param<'a> {
    fn from(v: &'a ClientSecret) -> Self {
        Param::Text(Some(v.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// One row of a result, by column index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    pub fn text(&self, i: usize) -> Result<String, StateError> {
        match self.0.get(i) {
            Some(Value::Text(t)) => Ok(t.clone()),
            other => Err(StateError::schema(format!(
                "column {i}: {other:?} is not text"
            ))),
        }
    }

    /// The text of column `i` (`column` names it in the error) as a typed value: a row that
    /// does not parse is a schema error, never a panic. The value itself stays out of the
    /// error (it may be a secret).
    pub fn parsed<T>(
        &self,
        i: usize,
        column: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, StateError> {
        parse(&self.text(i)?).ok_or_else(|| {
            StateError::schema(format!("column {column}: a value that does not parse"))
        })
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StateError> {
        match self.0.get(i) {
            Some(Value::Null) => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StateError> {
        match self.0.get(i) {
            Some(Value::Null) => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, StateError> {
        match self.0.get(i) {
            Some(Value::Int(n)) => Ok(*n),
            other => Err(StateError::schema(format!(
                "column {i}: {other:?} is not an integer"
            ))),
        }
    }
}

/// A connection, or a transaction on one.
pub trait Conn {
    /// Runs one statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StateError>;
    /// Runs one statement, handing `each` its rows one at a time as they are read: a long
    /// list is never all in memory. The first error, `each`'s included, ends it.
    fn query_each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(Row) -> Result<(), StateError>,
    ) -> Result<(), StateError>;
    /// Runs one statement; its rows.
    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StateError> {
        let mut rows = Vec::new();
        self.query_each(sql, params, &mut |r| {
            rows.push(r);
            Ok(())
        })?;
        Ok(rows)
    }
    /// Runs several statements without parameters (migrations).
    fn batch(&mut self, sql: &str) -> Result<(), StateError>;
}

pub trait Dialect: Send + Sync {
    fn kind(&self) -> Kind;
    /// Runs `work` on a connection of the pool (waiting at most the checkout timeout), in
    /// a transaction as `tx` says: committed when `work` succeeds, rolled back otherwise.
    /// `work` may run twice when the connection turned out to be lost before it did
    /// anything (a database restarted since): what it does must be safe to repeat.
    fn run(
        &self,
        tx: Tx,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<(), StateError>,
    ) -> Result<(), StateError>;
}
