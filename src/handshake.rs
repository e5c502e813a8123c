//! Connecting under a deadline, for clients whose whole handshake cannot be bounded from
//! outside: the `postgres` crate's `connect_timeout` covers the socket, not the startup
//! exchange, so a server that accepts and never answers would hold the caller forever.
//!
//! The connect runs on a helper thread; the caller waits for it at most its timeout. A
//! connect still running then is abandoned, not stopped (a blocking library gives no way
//! to): it finishes on its own, and the connection it brings is what the next caller gets
//! (its error too, unless older than that caller's timeout: then the caller tries afresh).
//! While it runs no other connect starts, so a hanging server costs one thread and one
//! socket per `Handshaker`, however many callers try.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One connect at a time for one destination (a pool's).
pub struct Handshaker<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    attempt: Mutex<Attempt<T>>,
    done: Condvar,
}

struct Attempt<T> {
    in_flight: bool,
    /// What the last connect brought, and when.
    outcome: Option<(Result<T, String>, Instant)>,
}

/// Why no connection came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The handshake did not finish within the timeout (it may still, later).
    TimedOut(Duration),
    /// It failed; says why.
    Failed(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::TimedOut(t) => write!(f, "no connection within {} s", t.as_secs_f32()),
            ConnectError::Failed(why) => f.write_str(why),
        }
    }
}

impl<T: Send + 'static> Default for Handshaker<T> {
    fn default() -> Self {
        Handshaker {
            shared: Arc::new(Shared {
                attempt: Mutex::new(Attempt {
                    in_flight: false,
                    outcome: None,
                }),
                done: Condvar::new(),
            }),
        }
    }
}

impl<T: Send + 'static> Handshaker<T> {
    /// A connection made by `connect` on a helper thread, or an error after `timeout`.
    /// When an abandoned connect is still running, this waits for that one instead of
    /// starting another.
    pub fn connect(
        &self,
        timeout: Duration,
        connect: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<T, ConnectError> {
        let deadline = Instant::now() + timeout;
        let connect = Arc::new(connect);
        let mut attempt = crate::lock(&self.shared.attempt);
        loop {
            match attempt.outcome.take() {
                // An error from long ago says little about the server now.
                Some((Err(_), at)) if at.elapsed() > timeout => {}
                Some((outcome, _)) => return outcome.map_err(ConnectError::Failed),
                None => {}
            }
            if !attempt.in_flight {
                self.start(connect.clone())?;
                attempt.in_flight = true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnectError::TimedOut(timeout));
            }
            attempt = self
                .shared
                .done
                .wait_timeout(attempt, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn start(
        &self,
        connect: Arc<impl Fn() -> Result<T, String> + Send + Sync + 'static>,
    ) -> Result<(), ConnectError> {
        let shared = self.shared.clone();
        thread::Builder::new()
            .name("connect".into())
            .spawn(move || {
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| connect()))
                    .unwrap_or_else(|_| Err("the connect panicked".into()));
                let mut attempt = crate::lock(&shared.attempt);
                attempt.in_flight = false;
                attempt.outcome = Some((outcome, Instant::now()));
                shared.done.notify_all();
            })
            .map(drop)
            .map_err(|e| ConnectError::Failed(format!("no thread to connect on: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn a_hanging_connect_times_out_and_no_second_one_starts_meanwhile() {
        let handshaker = Handshaker::<u32>::default();
        let started = Arc::new(AtomicUsize::new(0));
        let (release, hold) = mpsc::channel::<()>();
        let hold = Arc::new(Mutex::new(hold));
        let attempt = |started: &Arc<AtomicUsize>, hold: &Arc<Mutex<mpsc::Receiver<()>>>| {
            let (started, hold) = (started.clone(), hold.clone());
            move || {
                started.fetch_add(1, Ordering::SeqCst);
                let _ = crate::lock(&hold).recv();
                Ok(42)
            }
        };
        let t = Duration::from_millis(50);
        assert_eq!(
            handshaker.connect(t, attempt(&started, &hold)),
            Err(ConnectError::TimedOut(t))
        );
        assert_eq!(
            handshaker.connect(t, attempt(&started, &hold)),
            Err(ConnectError::TimedOut(t))
        );
        assert_eq!(started.load(Ordering::SeqCst), 1, "one connect in flight");
        // The abandoned connect finishes: the next caller gets its connection.
        release.send(()).unwrap();
        assert_eq!(
            handshaker.connect(Duration::from_secs(5), attempt(&started, &hold)),
            Ok(42)
        );
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_old_error_of_an_abandoned_connect_is_not_handed_out() {
        let handshaker = Handshaker::<u32>::default();
        let t = Duration::from_millis(50);
        let slow_failure = || {
            thread::sleep(Duration::from_millis(100));
            Err("refused".to_owned())
        };
        assert_eq!(
            handshaker.connect(t, slow_failure),
            Err(ConnectError::TimedOut(t))
        );
        thread::sleep(Duration::from_millis(200)); // it failed 100 ms ago, more than t
        assert_eq!(handshaker.connect(t, || Ok(7)), Ok(7));
    }

    #[test]
    fn errors_and_panics_are_errors() {
        let handshaker = Handshaker::<u32>::default();
        let t = Duration::from_secs(5);
        assert_eq!(
            handshaker.connect(t, || Err("refused".into())),
            Err(ConnectError::Failed("refused".into()))
        );
        assert_eq!(
            handshaker.connect(t, || panic!("bug")),
            Err(ConnectError::Failed("the connect panicked".into()))
        );
        assert_eq!(handshaker.connect(t, || Ok(1)), Ok(1));
    }
}
