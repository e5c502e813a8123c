//! mxisd patch: `Turn`, how a connection learns that the answer to its request is written.
//!
//! The connection thread reads the next request only once the previous one is answered,
//! so a client never has two requests in flight on one connection. The worker passes the
//! turn when its response writer is dropped: `true` if the response went out whole.
//! Passing makes no wake-up call when nobody waits, the usual case: the connection thread
//! waits on the socket for the next request and finds the turn already passed.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::lock;
use std::time::Instant;

pub(crate) struct Turn {
    state: Mutex<State>,
    passed: Condvar,
}

struct State {
    /// Whether the response went out whole, and when the turn was passed.
    written: Option<(bool, Instant)>,
    /// Whether a thread waits in `wait`: only then does `pass` make a wake-up call.
    waiting: bool,
}

impl Turn {
    pub(crate) fn new() -> Arc<Turn> {
        Arc::new(Turn {
            state: Mutex::new(State {
                written: None,
                waiting: false,
            }),
            passed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn pass(&self, written: bool) {
        let mut state = self.lock();
        state.written = Some((written, Instant::now()));
        let wake = state.waiting;
        drop(state);
        if wake {
            self.passed.notify_one();
        }
    }

    /// Whether the response was written whole, and when it was done; blocks until then.
    pub(crate) fn wait(&self) -> (bool, Instant) {
        let mut state = self.lock();
        loop {
            if let Some(done) = state.written {
                state.waiting = false;
                return done;
            }
            state.waiting = true;
            state = self.passed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}
