//! `accounts`, `tokens`, `accepted_terms_urls`: v2 accounts and what they accepted.

use super::dialect::Kind;
use super::{State, StateError};

impl State {
    /// Creates the account if new and records a token (by its hash) for it.
    pub fn add_token(
        &self,
        user_id: &str,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.transaction(|c| {
            c.execute(
                "INSERT INTO accounts (user_id, created_ts) VALUES ($1, $2)
                 ON CONFLICT (user_id) DO NOTHING",
                &[user_id.into(), now_ms.into()],
            )?;
            c.execute(
                "INSERT INTO tokens (token_hash, user_id, created_ts) VALUES ($1, $2, $3)",
                &[token_hash.into(), user_id.into(), now_ms.into()],
            )?;
            Ok(())
        })
    }

    /// The user a token (by its hash) belongs to.
    pub fn token_user(&self, token_hash: &str) -> Result<Option<String>, StateError> {
        self.autocommit(|c| {
            c.query(
                "SELECT user_id FROM tokens WHERE token_hash = $1",
                &[token_hash.into()],
            )?
            .first()
            .map(|r| r.text(0))
            .transpose()
        })
    }

    /// Deletes a token; whether it existed. Other instances hear of it when it commits
    /// (their caches of token answers start a new epoch), this one at once.
    pub fn delete_token(&self, token_hash: &str) -> Result<bool, StateError> {
        let notify = self.db.kind() == Kind::Postgres;
        let existed = self.transaction(|c| {
            let existed = c.execute(
                "DELETE FROM tokens WHERE token_hash = $1",
                &[token_hash.into()],
            )? > 0;
            if existed && notify {
                c.execute("SELECT pg_notify($1, '')", &[super::watch::LOGOUTS.into()])?;
            }
            Ok(existed)
        });
        self.tokens.bump();
        existed
    }

    pub fn accepted_terms_urls(&self, user_id: &str) -> Result<Vec<String>, StateError> {
        self.autocommit(|c| {
            c.query(
                "SELECT url FROM accepted_terms_urls WHERE user_id = $1",
                &[user_id.into()],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect()
        })
    }

    pub fn accept_terms_urls(&self, user_id: &str, urls: &[String]) -> Result<(), StateError> {
        self.transaction(|c| {
            for url in urls {
                c.execute(
                    "INSERT INTO accepted_terms_urls (user_id, url) VALUES ($1, $2)
                     ON CONFLICT (user_id, url) DO NOTHING",
                    &[user_id.into(), url.into()],
                )?;
            }
            Ok(())
        })
    }
}
