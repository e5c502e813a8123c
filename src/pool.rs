//! A fixed set of open connections (SQLite, PostgreSQL, LDAP) shared by the worker threads:
//! a caller takes one, waiting at most the checkout timeout, and gives it back after use.
//! A connection always goes back, also when its user panics (then reset by the pool's
//! `on_panic`, e.g. to reconnect): otherwise each panic would shrink the pool for good.

use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub struct Pool<C> {
    idle: Mutex<Vec<C>>,
    returned: Condvar,
    checkout_timeout: Duration,
    /// Applied to a connection whose user panicked, before it goes back.
    on_panic: fn(&mut C),
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
            on_panic: |_| {},
        }
    }

    /// Resets a connection whose user panicked (its state is unknown) before it goes back.
    pub fn on_panic(self, reset: fn(&mut C)) -> Pool<C> {
        Pool {
            on_panic: reset,
            ..self
        }
    }

    /// Runs `f` with a connection of the pool, waiting for one if all are in use. `f` may
    /// replace a broken connection by a new one before it goes back.
    pub fn with<T, E: From<Exhausted>>(
        &self,
        f: impl FnOnce(&mut C) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut checked_out = CheckedOut {
            pool: self,
            conn: Some(self.checkout()?),
        };
        match checked_out.conn.as_mut() {
            Some(conn) => f(conn),
            None => Err(Exhausted.into()),
        }
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

/// A connection out of the pool; it goes back when this is dropped, panic or not.
struct CheckedOut<'p, C> {
    pool: &'p Pool<C>,
    conn: Option<C>,
}

impl<C> Drop for CheckedOut<'_, C> {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if thread::panicking() {
                (self.pool.on_panic)(&mut conn);
            }
            self.pool.checkin(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    #[test]
    fn a_connection_whose_user_panicked_goes_back_reset() {
        // One connection: `Some(n)` is a live one, `None` one to be remade.
        let pool = Pool::new(vec![Some(7)], Duration::from_millis(50)).on_panic(|c| *c = None);
        for _ in 0..4 {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                pool.with(|_: &mut Option<u32>| -> Result<(), Exhausted> { panic!("a bug") })
            }));
            assert!(outcome.is_err());
        }
        let seen = pool.with(|c| -> Result<Option<u32>, Exhausted> { Ok(*c) });
        assert_eq!(seen, Ok(None), "back in the pool, reset");
    }

    #[test]
    fn a_checkout_waits_at_most_the_timeout() {
        let pool = Pool::new(Vec::<u32>::new(), Duration::from_millis(20));
        assert_eq!(pool.with(|_| Ok::<(), Exhausted>(())), Err(Exhausted));
    }
}
