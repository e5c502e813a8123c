//! v2 accounts: access tokens issued after a homeserver vouched for the user (OpenID), and
//! the user's acceptance of the terms. Knows no HTTP.
//!
//! Tokens are random (190 bits), handed to the client once, and kept only as a SHA-256 hash.
//! Caches, each agreeing with the database at every moment, with several instances too:
//! - "has accepted the current terms", only once true: nobody un-accepts terms, and the
//!   terms change only with a restart. "Not accepted" is always read again, so an
//!   acceptance on another instance counts at once.
//! - token → user, under the state's token epoch: a logout on any instance starts a new
//!   epoch, which empties the cache. On SQLite every logout passes here; on PostgreSQL the
//!   other instances hear of it by `LISTEN`, and while an instance cannot prove it hears
//!   (no epoch), it reads the database on every use. So a token logged out on one instance
//!   is refused here at once, and by the others within `state::TRUST_BOUND`.

pub mod register;
pub mod terms;

use crate::crypto::hash::token_hash as hash;
use crate::crypto::random;
use crate::lock;
use crate::state::{State, StateError};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use terms::Terms;

/// Cached tokens beyond this many are forgotten (and read again from the state).
const CACHE_LIMIT: usize = 100_000;

#[derive(Default)]
struct TokenCache {
    users: HashMap<String, String>,
    /// The token epoch `users` was filled in.
    epoch: u64,
}

pub struct Accounts {
    pub terms: Terms,
    /// Token hash → user, for one token epoch.
    users_by_token: Mutex<TokenCache>,
    /// Users known to have accepted the current terms.
    terms_accepted: Mutex<HashSet<String>>,
}

#[derive(Debug)]
pub enum AccountError {
    State(StateError),
    Random(std::io::Error),
    /// A URL that is not one of the current terms.
    UnknownTermsUrl(String),
}

impl From<StateError> for AccountError {
    fn from(e: StateError) -> Self {
        AccountError::State(e)
    }
}

impl Accounts {
    pub fn new(terms: Terms) -> Accounts {
        Accounts {
            terms,
            users_by_token: Mutex::default(),
            terms_accepted: Mutex::default(),
        }
    }

    /// A new access token for `user_id` (creating the account on first use).
    pub fn issue_token(&self, state: &State, user_id: &str) -> Result<String, AccountError> {
        let token = random::string_from(random::ALPHANUMERIC, 32).map_err(AccountError::Random)?;
        state.add_token(user_id, &hash(&token), crate::now_ms())?;
        Ok(token)
    }

    /// The user a token belongs to.
    pub fn user_of(&self, state: &State, token: &str) -> Result<Option<String>, StateError> {
        let key = hash(token);
        let Some(epoch) = state.token_epoch() else {
            return state.token_user(&key);
        };
        {
            let mut cache = lock(&self.users_by_token);
            if cache.epoch < epoch {
                cache.users.clear();
                cache.epoch = epoch;
            } else if cache.epoch > epoch {
                // This request's epoch is already old: no cache for it.
                return state.token_user(&key);
            } else if let Some(user) = cache.users.get(&key) {
                return Ok(Some(user.clone()));
            }
        }
        let user = state.token_user(&key)?;
        if let Some(user) = &user {
            let mut cache = lock(&self.users_by_token);
            // A logout since our read (a new epoch) may have deleted this very token.
            if cache.epoch == epoch && state.token_epoch() == Some(epoch) {
                if cache.users.len() >= CACHE_LIMIT {
                    cache.users.clear();
                }
                cache.users.insert(key, user.clone());
            }
        }
        Ok(user)
    }

    /// Ends a token; whether it existed.
    pub fn logout(&self, state: &State, token: &str) -> Result<bool, StateError> {
        // The state starts a new epoch: this cache is emptied at its next use.
        state.delete_token(&hash(token))
    }

    /// Whether `user_id` accepted every current policy.
    pub fn accepted_terms(&self, state: &State, user_id: &str) -> Result<bool, StateError> {
        if self.terms.is_empty() {
            return Ok(true);
        }
        if lock(&self.terms_accepted).contains(user_id) {
            return Ok(true);
        }
        let ok = self
            .terms
            .all_accepted(&state.accepted_terms_urls(user_id)?);
        if ok {
            self.remember_accepted(user_id);
        }
        Ok(ok)
    }

    /// Records that `user_id` accepts `urls` (each must be a URL of the current terms).
    pub fn accept_terms(
        &self,
        state: &State,
        user_id: &str,
        urls: &[String],
    ) -> Result<(), AccountError> {
        if let Some(unknown) = urls.iter().find(|u| !self.terms.knows_url(u)) {
            return Err(AccountError::UnknownTermsUrl(unknown.clone()));
        }
        state.accept_terms_urls(user_id, urls)?;
        Ok(())
    }

    fn remember_accepted(&self, user_id: &str) {
        let mut cache = lock(&self.terms_accepted);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(user_id.to_owned());
    }
}
