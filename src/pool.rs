//! A fixed set of open connections (SQLite, PostgreSQL) shared by the worker threads: a
//! caller takes one, waiting at most the checkout timeout, and gives it back after use.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub struct Pool<C> {
    idle: Mutex<Vec<C>>,
    returned: Condvar,
    checkout_timeout: Duration,
}

/// Every connection stayed in use for longer than the checkout timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

impl<C> Pool<C> {
    pub fn new(conns: Vec<C>, checkout_timeout: Duration) -> Pool<C> {
        Pool {
            idle: Mutex::new(conns),
            returned: Condvar::new(),
            checkout_timeout,
        }
    }

    /// Runs `f` with a connection of the pool, waiting for one if all are in use. `f` may
    /// replace a broken connection by a new one before it goes back.
    pub fn with<T, E: From<Exhausted>>(
        &self,
        f: impl FnOnce(&mut C) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.checkout()?;
        let result = f(&mut conn);
        self.checkin(conn);
        result
    }

    fn checkout(&self) -> Result<C, Exhausted> {
        let deadline = Instant::now() + self.checkout_timeout;
        let mut idle = crate::lock(&self.idle);
        loop {
            if let Some(conn) = idle.pop() {
                return Ok(conn);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Exhausted);
            }
            idle = self
                .returned
                .wait_timeout(idle, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn checkin(&self, conn: C) {
        crate::lock(&self.idle).push(conn);
        self.returned.notify_one();
    }
}
