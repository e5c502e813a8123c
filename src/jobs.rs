//! Background jobs: work repeated on its own thread at an interval, stopped with the server.
//! A job that panics is logged and runs again at its next tick: a bug in one run must not
//! end the job for the life of the process.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A running job; `stop` asks it to end and waits for it.
pub struct Job {
    signal: Arc<Signal>,
    handle: JoinHandle<()>,
}

/// Makes a job run now rather than at its next tick (work was just queued for it), from
/// any thread, without waiting for the run. Made before its job (`every_or_woken`), so
/// that what queues work holds it from the start; a wake before the job runs is kept.
#[derive(Clone, Default)]
pub struct Waker(Arc<Signal>);

impl Waker {
    pub fn new() -> Waker {
        Waker::default()
    }

    pub fn wake(&self) {
        self.0.set(|f| f.woken = true);
    }
}

/// What a job's thread waits on between runs: asked to stop, or to run now.
#[derive(Default)]
struct Signal {
    flags: Mutex<Flags>,
    changed: Condvar,
}

#[derive(Default)]
struct Flags {
    stop: bool,
    woken: bool,
}

impl Signal {
    fn set(&self, change: impl FnOnce(&mut Flags)) {
        let mut flags = self.flags.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut flags);
        self.changed.notify_all();
    }

    /// Waits until `due`, a wake-up or a stop; whether to stop.
    fn wait(&self, due: Instant) -> bool {
        let mut flags = self.flags.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if flags.stop {
                return true;
            }
            if flags.woken {
                flags.woken = false;
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return false;
            }
            flags = match self.changed.wait_timeout(flags, due - now) {
                Ok((f, _)) => f,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// Runs `work` at once, then every `interval` after each run ends, until stopped.
pub fn every(
    name: &str,
    interval: Duration,
    work: impl FnMut() + Send + 'static,
) -> std::io::Result<Job> {
    every_or_woken(name, interval, &Waker::new(), work)
}

/// As `every`, and also as soon as `waker` is woken (a wake-up during a run makes the next
/// run start as soon as that one ends). One job per waker.
pub fn every_or_woken(
    name: &str,
    interval: Duration,
    waker: &Waker,
    mut work: impl FnMut() + Send + 'static,
) -> std::io::Result<Job> {
    let signal = waker.0.clone();
    let waits = signal.clone();
    let job = name.to_owned();
    let handle = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || loop {
            if panic::catch_unwind(AssertUnwindSafe(&mut work)).is_err() {
                log::error!("background job {job} panicked; it runs again in {interval:?}");
            }
            if waits.wait(Instant::now() + interval) {
                return;
            }
        })?;
    Ok(Job { signal, handle })
}

/// Longest `stop` waits for a run in progress: a store that hangs below every timeout we
/// can set (a database server that acknowledges and never answers) must not hold up the
/// exit.
const STOP_WAIT: Duration = Duration::from_secs(5);

impl Job {
    /// Asks the job to end, and waits for it to (at most `STOP_WAIT`).
    pub fn stop(self) {
        self.signal.set(|f| f.stop = true);
        let deadline = Instant::now() + STOP_WAIT;
        while !self.handle.is_finished() {
            if Instant::now() > deadline {
                log::warn!(
                    "background job {} still running: not waiting for it",
                    self.handle.thread().name().unwrap_or("?")
                );
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.handle.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_job_runs_at_once_and_again_after_a_panic() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let job = every("test-job", Duration::from_millis(20), move || {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("the first run fails");
            }
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while runs.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        job.stop();
        assert!(runs.load(Ordering::SeqCst) >= 3);
    }

    #[test]
    fn a_woken_job_runs_before_its_tick() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let waker = Waker::new();
        let job = every_or_woken("woken-job", Duration::from_secs(3600), &waker, move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while runs.load(Ordering::SeqCst) < 1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        waker.wake();
        while runs.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "woken once, not at its hourly tick"
        );
        let stopped = Instant::now();
        job.stop();
        assert!(
            stopped.elapsed() < Duration::from_secs(1),
            "a stop ends the wait"
        );
    }
}
