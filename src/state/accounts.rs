//! `accounts`, `tokens`, `accepted_terms_urls`: v2 accounts and what they accepted.

use super::{State, StateError};
use rusqlite::{params, OptionalExtension};

impl State {
    /// Creates the account if new and records a token (by its hash) for it.
    pub fn add_token(
        &self,
        user_id: &str,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.pool.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO accounts (user_id, created_ts) VALUES (?1, ?2)",
                params![user_id, now_ms],
            )?;
            tx.execute(
                "INSERT INTO tokens (token_hash, user_id, created_ts) VALUES (?1, ?2, ?3)",
                params![token_hash, user_id, now_ms],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The user a token (by its hash) belongs to.
    pub fn token_user(&self, token_hash: &str) -> Result<Option<String>, StateError> {
        self.pool.with(|c| {
            Ok(c.query_row(
                "SELECT user_id FROM tokens WHERE token_hash = ?1",
                [token_hash],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    /// Deletes a token; whether it existed.
    pub fn delete_token(&self, token_hash: &str) -> Result<bool, StateError> {
        self.pool
            .with(|c| Ok(c.execute("DELETE FROM tokens WHERE token_hash = ?1", [token_hash])? > 0))
    }

    pub fn accepted_terms_urls(&self, user_id: &str) -> Result<Vec<String>, StateError> {
        self.pool.with(|c| {
            let mut stmt = c.prepare("SELECT url FROM accepted_terms_urls WHERE user_id = ?1")?;
            let urls = stmt
                .query_map([user_id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(urls)
        })
    }

    pub fn accept_terms_urls(&self, user_id: &str, urls: &[String]) -> Result<(), StateError> {
        self.pool.with(|c| {
            let tx = c.transaction()?;
            for url in urls {
                tx.execute(
                    "INSERT OR IGNORE INTO accepted_terms_urls (user_id, url) VALUES (?1, ?2)",
                    params![user_id, url],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}
