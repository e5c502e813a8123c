use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::lock;
use std::thread;
use std::time::Duration;

/// Manages a collection of threads.
///
/// A new thread is created every time all the existing threads are full.
/// Any idle thread will automatically die after a few seconds.
pub struct TaskPool {
    sharing: Arc<Sharing>,
}

struct Sharing {
    // list of the tasks to be done by worker threads
    todo: Mutex<Todo>,

    // condvar that will be notified whenever a task is added to `todo`
    condvar: Condvar,

    // number of total worker threads running
    active_tasks: AtomicUsize,
}

// mxisd patch: the count of idle threads lives under the same lock as the tasks. The
// published pool counted waiting threads in an atomic that a woken thread decrements only
// once it runs again: a burst of `spawn`s (connections accepted back to back) all saw the
// same idle threads, queued their tasks behind them, and started no thread. Since a task
// is a whole keep-alive connection, the queued connections then waited for others to close.
struct Todo {
    tasks: VecDeque<Box<dyn FnOnce() + Send>>,
    // Threads waiting for a task, less the tasks already queued for them.
    idle: usize,
}

/// Minimum number of active threads.
static MIN_THREADS: usize = 4;

struct Registration<'a> {
    nb: &'a AtomicUsize,
}

impl<'a> Registration<'a> {
    fn new(nb: &'a AtomicUsize) -> Registration<'a> {
        nb.fetch_add(1, Ordering::Release);
        Registration { nb }
    }
}

impl<'a> Drop for Registration<'a> {
    fn drop(&mut self) {
        self.nb.fetch_sub(1, Ordering::Release);
    }
}

impl TaskPool {
    pub fn new() -> TaskPool {
        let pool = TaskPool {
            sharing: Arc::new(Sharing {
                todo: Mutex::new(Todo {
                    tasks: VecDeque::new(),
                    idle: 0,
                }),
                condvar: Condvar::new(),
                active_tasks: AtomicUsize::new(0),
            }),
        };

        for _ in 0..MIN_THREADS {
            // mxisd patch: threads the pool cannot start now are started on demand.
            let _ = pool.add_thread(None);
        }

        pool
    }

    /// Executes a function in a thread.
    /// If no thread is available, spawns a new one.
    ///
    /// mxisd patch: a thread that cannot be started (a task or memory limit) is an error,
    /// not a panic of the caller; `code` is then dropped unrun. Tasks run once (`FnOnce`).
    pub fn spawn(&self, code: Box<dyn FnOnce() + Send>) -> io::Result<()> {
        let mut todo = lock(&self.sharing.todo);

        if todo.idle == 0 {
            drop(todo);
            self.add_thread(Some(code))
        } else {
            todo.idle -= 1;
            todo.tasks.push_back(code);
            self.sharing.condvar.notify_one();
            Ok(())
        }
    }

    fn add_thread(&self, initial_fn: Option<Box<dyn FnOnce() + Send>>) -> io::Result<()> {
        let sharing = self.sharing.clone();

        // mxisd patch: a named thread with a smaller stack (a connection thread parses a
        // request and little else), started with an error rather than a panic on failure.
        let builder = thread::Builder::new()
            .name("http-connection".into())
            .stack_size(STACK_SIZE);
        builder.spawn(move || {
            let sharing = sharing;
            let _active_guard = Registration::new(&sharing.active_tasks);

            if let Some(f) = initial_fn {
                run(f);
            }

            loop {
                let task: Box<dyn FnOnce() + Send> = {
                    let mut todo = lock(&sharing.todo);
                    // Idle from here; a task taken below was counted out by its `spawn`.
                    todo.idle += 1;

                    let task;
                    loop {
                        if let Some(poped_task) = todo.tasks.pop_front() {
                            task = poped_task;
                            break;
                        }

                        let received =
                            if sharing.active_tasks.load(Ordering::Acquire) <= MIN_THREADS {
                                todo = sharing
                                    .condvar
                                    .wait(todo)
                                    .unwrap_or_else(|e| e.into_inner());
                                true
                            } else {
                                let (new_lock, waitres) = sharing
                                    .condvar
                                    .wait_timeout(todo, Duration::from_millis(5000))
                                    .unwrap_or_else(|e| e.into_inner());
                                todo = new_lock;
                                !waitres.timed_out()
                            };

                        if !received && todo.tasks.is_empty() {
                            todo.idle -= 1;
                            return;
                        }
                    }

                    task
                };

                run(task);
            }
        })?;
        Ok(())
    }
}

/// mxisd patch: stack of a pool thread.
const STACK_SIZE: usize = 256 * 1024;

/// mxisd patch: a task that panics ends its connection, not the pool thread.
fn run(task: Box<dyn FnOnce() + Send>) {
    if panic::catch_unwind(AssertUnwindSafe(task)).is_err() {
        log::error!("a connection thread panicked; its connection is closed");
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.sharing
            .active_tasks
            .store(999_999_999, Ordering::Release);
        self.sharing.condvar.notify_all();
    }
}
