//! Background jobs: work repeated on its own thread at an interval, stopped with the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A running job; `stop` asks it to end and waits for it.
pub struct Job {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// Runs `work` every `interval` (first after one interval) until stopped.
pub fn every(
    name: &str,
    interval: Duration,
    mut work: impl FnMut() + Send + 'static,
) -> std::io::Result<Job> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || loop {
            let due = Instant::now() + interval;
            while Instant::now() < due {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(Duration::from_millis(100).min(interval));
            }
            work();
        })?;
    Ok(Job { stop, handle })
}

impl Job {
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.handle.join();
    }
}
