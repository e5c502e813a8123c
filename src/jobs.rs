//! Background jobs: work repeated on its own thread at an interval, stopped with the server.
//! A job that panics is logged and runs again at its next tick: a bug in one run must not
//! end the job for the life of the process.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A running job; `stop` asks it to end and waits for it.
pub struct Job {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// Runs `work` at once, then every `interval` after each run ends, until stopped.
pub fn every(
    name: &str,
    interval: Duration,
    mut work: impl FnMut() + Send + 'static,
) -> std::io::Result<Job> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let job = name.to_owned();
    let handle = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || loop {
            if panic::catch_unwind(AssertUnwindSafe(&mut work)).is_err() {
                log::error!("background job {job} panicked; it runs again in {interval:?}");
            }
            let due = Instant::now() + interval;
            while Instant::now() < due {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(Duration::from_millis(100).min(interval));
            }
        })?;
    Ok(Job { stop, handle })
}

/// Longest `stop` waits for a run in progress: a store that hangs below every timeout we
/// can set (a database server that acknowledges and never answers) must not hold up the
/// exit.
const STOP_WAIT: Duration = Duration::from_secs(5);

impl Job {
    /// Asks the job to end, and waits for it to (at most `STOP_WAIT`).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
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
    use std::sync::atomic::AtomicUsize;

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
}
