//! A fixed set of open SQLite connections shared by the worker threads. WAL mode lets the
//! readers run side by side; writers queue on SQLite's busy timeout.

use super::StoreError;
use rusqlite::Connection;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub struct Pool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
    checkout_timeout: Duration,
}

impl Pool {
    pub fn new(conns: Vec<Connection>, checkout_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(conns),
            returned: Condvar::new(),
            checkout_timeout,
        }
    }

    /// Runs `f` with a connection of the pool, waiting for one if all are in use.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.checkout()?;
        let result = f(&mut conn);
        self.checkin(conn);
        result
    }

    fn checkout(&self) -> Result<Connection, StoreError> {
        let deadline = Instant::now() + self.checkout_timeout;
        // A poisoned lock only means a thread panicked while holding the Vec: the Vec is fine.
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(conn) = idle.pop() {
                return Ok(conn);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Exhausted);
            }
            idle = self
                .returned
                .wait_timeout(idle, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn checkin(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        self.returned.notify_one();
    }
}
