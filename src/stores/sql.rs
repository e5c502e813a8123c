//! mxisd's SQL identity store (`sql`, and `synapseSql` for Synapse's own database): SQLite or
//! PostgreSQL, queried with parameters (never string building), one query per 3PID and a
//! listing query for the hash index. Defaults read Synapse's `user_threepids` table, so
//! 3PIDs added in Synapse are found.
//!
//! The hash index holds what single lookups answer. With the default queries, the listing
//! is the lookup's table: a row is listed when its address is stored normalised (a lookup
//! asks with the normalised address and the database compares exactly). With a query of
//! the operator's (`identity.query`, `identity.medium.<medium>` or `lookup.query`), each
//! listed address is asked with the lookup query when the index is built, so a lookup query
//! that leaves rows out (inactive accounts) leaves them out of the index too; the listing
//! must name every address the lookup can find.
//!
//! PostgreSQL connections are made on first use and remade after a drop, so a database that
//! is down at start makes lookups fail (503) rather than stop mxisd. The whole connect
//! (socket, startup exchange, authentication) has `timeout` (`handshake::Handshaker`: one
//! connect at a time), and so has every statement (`statement_timeout`).

use super::{by_medium, Binding, IdentityStore, StoreError};
use crate::config::{SqlKind, SqlStoreConfig, SQL_DEFAULT_LIST_QUERY, SQL_DEFAULT_QUERY};
use crate::pg::{numbered_placeholders, with_causes, PgTarget};
use crate::pool::Pool;
use crate::threepid::{self, Medium};
use crate::user_id::UserId;
use std::collections::{BTreeMap, BTreeSet};

pub struct SqlStore {
    cfg: SqlStoreConfig,
    /// `identity.medium.<medium>`: the queries that replace `identity.query` for a medium.
    medium_queries: BTreeMap<Medium, String>,
    /// Whether each listed address is asked with the lookup query (queries of the
    /// operator's, which may not agree with each other).
    listing_checked: bool,
    domain: String,
    region: Option<phonenumber::country::Id>,
    pool: Pool<Conn>,
    pg: Option<PgTarget>,
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Pg(Option<postgres::Client>),
}

impl SqlStore {
    /// The store of `cfg` with `connections` connections (one per worker), each waited
    /// for at most the store's timeout.
    pub fn open(
        cfg: SqlStoreConfig,
        domain: &str,
        region: Option<phonenumber::country::Id>,
        connections: usize,
    ) -> Result<SqlStore, String> {
        let medium_queries = by_medium(
            &cfg.medium_queries,
            &format!("{}.identity.medium", cfg.name),
        )?;
        let mut conns = Vec::new();
        let mut pg = None;
        match cfg.kind {
            SqlKind::Sqlite => {
                for _ in 0..connections {
                    let conn = rusqlite::Connection::open_with_flags(
                        &cfg.connection,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(|e| format!("{}.connection {}: {e}", cfg.name, cfg.connection))?;
                    conn.busy_timeout(cfg.timeout).map_err(|e| e.to_string())?;
                    conns.push(Conn::Sqlite(conn));
                }
            }
            SqlKind::Postgresql => {
                pg = Some(PgTarget::new(
                    &cfg.connection,
                    (None, None),
                    cfg.timeout,
                    &cfg.tls,
                    &format!("{}.connection", cfg.name),
                )?);
                conns.extend((0..connections).map(|_| Conn::Pg(None)));
            }
        }
        let checkout = cfg.timeout;
        let listing_checked = cfg.query != SQL_DEFAULT_QUERY
            || cfg.list_query != SQL_DEFAULT_LIST_QUERY
            || !medium_queries.is_empty();
        Ok(SqlStore {
            cfg,
            medium_queries,
            listing_checked,
            domain: domain.to_owned(),
            region,
            // A PostgreSQL connection whose user panicked is remade.
            pool: Pool::new(conns, checkout).on_panic(|conn| {
                if let Conn::Pg(slot) = conn {
                    *slot = None;
                }
            }),
            pg,
        })
    }

    /// Runs `sql` with text parameters and hands each row (every column as text) to `row`,
    /// with the names of the columns.
    fn each_row(
        &self,
        sql: &str,
        params: &[&str],
        row: &mut RowSink<'_>,
    ) -> Result<(), StoreError> {
        self.pool
            .with(|conn| match conn {
                Conn::Sqlite(c) => sqlite_each(c, sql, params, row).map_err(|e| self.error(e)),
                Conn::Pg(slot) => {
                    if slot.as_ref().is_none_or(|c| c.is_closed()) {
                        *slot = Some(self.connect()?);
                    }
                    let client = slot.as_mut().ok_or_else(|| self.error("not connected"))?;
                    let result = pg_each(client, &numbered_placeholders(sql), params, row);
                    if result.is_err() && client.is_closed() {
                        *slot = None;
                    }
                    result.map_err(|e| self.error(with_causes(&e)))
                }
            })
            .map_err(|e: StoreError| StoreError {
                store: self.cfg.name.to_owned(),
                ..e
            })
    }

    /// A new PostgreSQL connection, handshake included, within `timeout`.
    fn connect(&self) -> Result<postgres::Client, StoreError> {
        self.pg
            .as_ref()
            .ok_or_else(|| self.error("no PostgreSQL configuration"))?
            .connect()
            .map_err(|e| self.error(format!("connecting: {e}")))
    }

    fn to_mxid(&self, id: &str) -> String {
        if self.cfg.mxid_column {
            id.to_owned()
        } else {
            UserId::of(id, &self.domain).into_string()
        }
    }
}

/// Takes each row of a query: the column names, and every value as text.
type RowSink<'a> = dyn FnMut(&[String], Vec<Option<String>>) + 'a;

fn sqlite_each(
    c: &rusqlite::Connection,
    sql: &str,
    params: &[&str],
    each: &mut RowSink<'_>,
) -> rusqlite::Result<()> {
    let mut stmt = c.prepare_cached(sql)?;
    let columns = stmt.column_count();
    let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get::<_, rusqlite::types::Value>(i)? {
                rusqlite::types::Value::Text(t) => Some(t),
                rusqlite::types::Value::Integer(n) => Some(n.to_string()),
                _ => None,
            });
        }
        each(&names, values);
    }
    Ok(())
}

fn pg_each(
    client: &mut postgres::Client,
    sql: &str,
    params: &[&str],
    each: &mut RowSink<'_>,
) -> Result<(), postgres::Error> {
    use postgres::fallible_iterator::FallibleIterator;
    let mut rows = client.query_raw(sql, params.iter().copied())?;
    let mut names: Option<Vec<String>> = None;
    while let Some(row) = rows.next()? {
        let names = names
            .get_or_insert_with(|| row.columns().iter().map(|c| c.name().to_owned()).collect());
        each(
            names,
            (0..row.len())
                .map(|i| row.try_get::<_, Option<String>>(i).ok().flatten())
                .collect(),
        );
    }
    Ok(())
}

/// Where a listing query's medium, address and user id are: by name when the query names
/// `medium` and `address` (ma1sd documents `select user_id as mxid, medium, address`), the
/// id being the other column; else in that order.
fn listing_columns(names: &[String]) -> [usize; 3] {
    let named = |wanted: &str| names.iter().position(|n| n.eq_ignore_ascii_case(wanted));
    match (named("medium"), named("address")) {
        (Some(medium), Some(address)) => {
            let id = (0..names.len())
                .find(|i| *i != medium && *i != address)
                .unwrap_or(2);
            [medium, address, id]
        }
        _ => [0, 1, 2],
    }
}

impl IdentityStore for SqlStore {
    fn name(&self) -> &str {
        self.cfg.name
    }

    fn find(&self, medium: Medium, address: &str) -> Result<Option<String>, StoreError> {
        let query = self.medium_queries.get(&medium).unwrap_or(&self.cfg.query);
        let mut first = None;
        log::debug!(
            "{}: query {query:?} with ({:?}, {address:?})",
            self.cfg.name,
            medium.as_str()
        );
        self.each_row(query, &[medium.as_str(), address], &mut |_, row| {
            if first.is_none() {
                first = row.into_iter().next().flatten();
            }
        })?;
        Ok(first.map(|id| self.to_mxid(&id)))
    }

    fn list(&self, sink: &mut dyn FnMut(Binding)) -> Option<Result<(), StoreError>> {
        if !self.listing_checked {
            // The lookup's own table: what it finds is a row stored normalised.
            return Some(self.listed(&mut |medium, address, stored_so, id| {
                if stored_so {
                    sink(Binding {
                        medium,
                        address,
                        mxid: self.to_mxid(&id),
                    });
                }
            }));
        }
        // Each address asked as a single lookup asks it, once the listing is read (its
        // connection is then free again).
        let mut listed = BTreeSet::new();
        Some(
            self.listed(&mut |medium, address, _, _| {
                listed.insert((medium, address));
            })
            .and_then(|()| {
                for (medium, address) in listed {
                    if let Some(mxid) = self.find(medium, &address)? {
                        sink(Binding {
                            medium,
                            address,
                            mxid,
                        });
                    }
                }
                Ok(())
            }),
        )
    }
}

impl SqlStore {
    /// Each row of the listing query: its medium, its address normalised and whether it is
    /// stored so, and its id.
    fn listed(&self, each: &mut dyn FnMut(Medium, String, bool, String)) -> Result<(), StoreError> {
        let mut layout = None;
        self.each_row(&self.cfg.list_query, &[], &mut |names, mut row| {
            let [m, a, i] = *layout.get_or_insert_with(|| listing_columns(names));
            let mut take = |i: usize| row.get_mut(i).and_then(Option::take);
            let (Some(medium), Some(stored), Some(id)) = (take(m), take(a), take(i)) else {
                return;
            };
            let Some(medium) = Medium::parse(&medium) else {
                return; // not a medium of ours
            };
            if let Some(address) = threepid::address(medium, &stored, self.region) {
                let stored_so = address == stored;
                each(medium, address, stored_so, id);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_columns_are_found_by_name_or_position() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            listing_columns(&names(&["mxid", "medium", "address"])),
            [1, 2, 0]
        );
        assert_eq!(
            listing_columns(&names(&["Address", "user_id", "MEDIUM"])),
            [2, 0, 1]
        );
        assert_eq!(
            listing_columns(&names(&["medium", "address", "user_id"])),
            [0, 1, 2]
        );
        assert_eq!(listing_columns(&names(&["m", "a", "u"])), [0, 1, 2]);
    }
}
