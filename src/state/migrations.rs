//! The schema, built by numbered migrations applied in order. `PRAGMA user_version` records
//! how many have run; each runs in its own transaction, so a failed one leaves no trace.

use super::StateError;
use rusqlite::Connection;

/// In order; the schema version is the number of entries applied. Never edit a released
/// entry: add a new one.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_ephemeral_keys",
        include_str!("migrations/0001_ephemeral_keys.sql"),
    ),
    (
        "0002_accounts",
        include_str!("migrations/0002_accounts.sql"),
    ),
    ("0003_hashing", include_str!("migrations/0003_hashing.sql")),
];

pub fn apply(conn: &mut Connection) -> Result<(), StateError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StateError::TooNew { found, known });
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        log::info!("database: applied migration {name}");
    }
    Ok(())
}
