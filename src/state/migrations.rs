//! The schema, built by named migrations applied in order, each recorded in
//! `schema_migrations`. All of them run in one transaction holding the migration lock
//! (PostgreSQL: an advisory lock; SQLite: the write lock), so instances starting together
//! apply each migration once, and a failed start leaves no half-built schema.
//!
//! The SQL files up to 0003 once said `INTEGER` where they now say `BIGINT`: they had only
//! ever run on SQLite, where both are the same 64-bit type.

use super::dialect::{Conn, Dialect, Tx};
use super::StateError;

/// In order. Never edit what an entry does once released: add a new one.
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
    (
        "0004_delivery_queue",
        include_str!("migrations/0004_delivery_queue.sql"),
    ),
    ("0005_changes", include_str!("migrations/0005_changes.sql")),
    (
        "0006_sessions",
        include_str!("migrations/0006_sessions.sql"),
    ),
    (
        "0007_local_binds",
        include_str!("migrations/0007_local_binds.sql"),
    ),
    ("0008_invites", include_str!("migrations/0008_invites.sql")),
    ("0009_imports", include_str!("migrations/0009_imports.sql")),
    (
        "0010_session_resends",
        include_str!("migrations/0010_session_resends.sql"),
    ),
    (
        "0011_drop_ephemeral_keys",
        include_str!("migrations/0011_drop_ephemeral_keys.sql"),
    ),
    (
        "0012_remote_sessions",
        include_str!("migrations/0012_remote_sessions.sql"),
    ),
    (
        "0013_peer_hashes",
        include_str!("migrations/0013_peer_hashes.sql"),
    ),
    (
        "0014_peer_push_parts",
        include_str!("migrations/0014_peer_push_parts.sql"),
    ),
];

pub fn apply(db: &dyn Dialect) -> Result<(), StateError> {
    let kind = db.kind();
    let mut applied = Vec::new();
    db.run(Tx::Migrate, &mut |c| {
        applied.clear(); // a repeated run starts over
        c.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 name       TEXT PRIMARY KEY NOT NULL,
                 applied_ts BIGINT NOT NULL
             )",
        )?;
        let done = recorded(c)?;
        let unknown: Vec<String> = done
            .iter()
            .filter(|d| !MIGRATIONS.iter().any(|(name, _)| name == d))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(StateError::TooNew { unknown });
        }
        for (name, sql) in MIGRATIONS {
            if !done.iter().any(|d| d == name) {
                c.batch(sql)?;
                record(c, name)?;
                applied.push(*name);
            }
        }
        Ok(())
    })?;
    for name in applied {
        log::info!("database ({}): applied migration {name}", kind.name());
    }
    Ok(())
}

fn recorded(c: &mut dyn Conn) -> Result<Vec<String>, StateError> {
    c.query("SELECT name FROM schema_migrations", &[])?
        .iter()
        .map(|r| r.text(0))
        .collect()
}

fn record(c: &mut dyn Conn, name: &str) -> Result<(), StateError> {
    c.execute(
        "INSERT INTO schema_migrations (name, applied_ts) VALUES ($1, $2)",
        &[name.into(), crate::now_ms().into()],
    )?;
    Ok(())
}

/// The newest migration this build knows (`check-config --connect` compares a database's).
pub fn latest() -> &'static str {
    MIGRATIONS.last().map_or("", |(name, _)| name)
}
